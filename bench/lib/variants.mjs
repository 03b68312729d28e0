// The daemons under test (issue 20): this checkout's build on each platform layer, and a baseline
// build of an earlier commit, measured in the same run.
//
//   after/linux   this checkout's dist/, STARFORGE_PLATFORM=linux (reads /proc)
//   after/posix   the same build, STARFORGE_PLATFORM=posix (the portable layer: `ps`, never /proc)
//   before/linux  dist/ of a build of REF (`--before REF`, default: the commit in bench/BASELINE),
//                 STARFORGE_PLATFORM=linux (a build older than the variable ignores it)
//
// The baseline is built once and cached in bench/.cache/build-<commit>/ (ignored by git): the
// commit's tree from `git archive` (no worktree is registered in the repository), this checkout's
// node_modules linked in when both package-lock.json files are equal (else `npm ci
// --ignore-scripts`), then `npm run build`. It is built in a temporary directory renamed into place
// when the build succeeded, so a directory there is always a complete build; a second run reuses it.
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

export const ROOT = fileURLToPath(new URL("../../", import.meta.url))
const CACHE = path.join(ROOT, "bench", ".cache")
const BASELINE_FILE = path.join(ROOT, "bench", "BASELINE")

/** The names `--variants` takes, in their default order. */
export const VARIANT_NAMES = ["after", "after-posix", "before"]
const LABELS = { after: "after/linux", "after-posix": "after/posix", before: "before/linux" }

const git = (args, options = {}) => {
  const result = spawnSync("git", args, { cwd: ROOT, encoding: options.encoding ?? "utf8", maxBuffer: 256 * 2 ** 20 })
  if (result.status !== 0) throw new Error(`git ${args.join(" ")} failed: ${String(result.stderr).trim()}`)
  return result.stdout
}

/** The full commit of a ref of this repository. */
export const resolveCommit = (ref) => git(["rev-parse", "--verify", `${ref}^{commit}`]).trim()

/** This checkout's commit, with `+changes` when its tracked files differ from it. */
export const checkoutCommit = () => {
  const head = git(["rev-parse", "HEAD"]).trim()
  const dirty = git(["status", "--porcelain", "--untracked-files=no", "--", "src", "scripts", "package.json", "package-lock.json"]).trim() !== ""
  return { commit: head, dirty }
}

/** The default baseline: the first word of bench/BASELINE (comments after `#`), if the file exists. */
export const defaultBaselineRef = () => {
  try {
    const text = fs.readFileSync(BASELINE_FILE, "utf8").replace(/#.*$/gm, "").trim()
    return text === "" ? undefined : text.split(/\s+/)[0]
  } catch {
    return undefined
  }
}

const run = (command, args, cwd, say) => {
  say(`  ${command} ${args.join(" ")}  (in ${path.relative(ROOT, cwd) || "."})`)
  const result = spawnSync(command, args, { cwd, stdio: ["ignore", "pipe", "pipe"], encoding: "utf8", maxBuffer: 256 * 2 ** 20 })
  if (result.status !== 0) throw new Error(`${command} ${args.join(" ")} failed (exit ${result.status}):\n${(result.stdout + result.stderr).slice(-3000)}`)
}

/**
 * The directory of a build of `commit` (its dist/bin.cjs exists): the cached one, or a new one.
 * Returns { dir, cached, seconds, modules } (modules: how node_modules was made).
 */
export const baselineBuild = (commit, say) => {
  const dir = path.join(CACHE, `build-${commit}`)
  if (fs.existsSync(path.join(dir, "dist", "bin.cjs"))) return { dir, cached: true, seconds: 0, modules: "cached" }
  const t0 = Date.now()
  fs.mkdirSync(CACHE, { recursive: true })
  const tmp = fs.mkdtempSync(path.join(CACHE, `tmp-${commit.slice(0, 12)}-`))
  try {
    say(`building the baseline ${commit.slice(0, 12)} in ${path.relative(ROOT, dir)} (once; later runs reuse it)`)
    const tar = git(["archive", "--format=tar", commit], { encoding: "buffer" })
    const untar = spawnSync("tar", ["-x", "-C", tmp], { input: tar })
    if (untar.status !== 0) throw new Error(`tar -x failed: ${String(untar.stderr)}`)
    const theirLock = path.join(tmp, "package-lock.json")
    const ourLock = path.join(ROOT, "package-lock.json")
    const sameLock = fs.existsSync(theirLock) && fs.existsSync(ourLock) && fs.readFileSync(theirLock, "utf8") === fs.readFileSync(ourLock, "utf8")
    let modules
    if (sameLock && fs.existsSync(path.join(ROOT, "node_modules"))) {
      fs.symlinkSync(fs.realpathSync(path.join(ROOT, "node_modules")), path.join(tmp, "node_modules"), "dir")
      modules = "this checkout's node_modules (equal package-lock.json)"
    } else {
      run("npm", ["ci", "--ignore-scripts", "--no-audit", "--no-fund"], tmp, say)
      modules = "npm ci (package-lock.json differs)"
    }
    run("npm", ["run", "build"], tmp, say)
    if (!fs.existsSync(path.join(tmp, "dist", "bin.cjs"))) throw new Error("the baseline build made no dist/bin.cjs")
    fs.rmSync(dir, { recursive: true, force: true })
    fs.renameSync(tmp, dir)
    return { dir, cached: false, seconds: (Date.now() - t0) / 1000, modules }
  } catch (error) {
    fs.rmSync(tmp, { recursive: true, force: true })
    throw error
  }
}

/** The Node options a build gives its background daemon (none if it has no such module). */
const nodeOptionsOf = async (root) => {
  const file = path.join(root, "dist", "daemon", "nodeOptions.js")
  if (!fs.existsSync(file)) return []
  const module = await import(pathToFileURL(file).href)
  return module.DAEMON_NODE_OPTIONS ?? []
}

/**
 * The variants to measure, in order: { name, label, root, bin, nodeOptions, env, commit, build }.
 * `beforeRef` is needed when "before" is among `names`.
 */
export const loadVariants = async (names, beforeRef, say) => {
  const variants = []
  const here = checkoutCommit()
  for (const name of names) {
    if (!VARIANT_NAMES.includes(name)) throw new Error(`unknown variant ${name} (known: ${VARIANT_NAMES.join(", ")})`)
    let root = ROOT
    let commit = here.commit
    let build = `this checkout's dist/${here.dirty ? " (with uncommitted changes to src/, scripts/ or the package files)" : ""}`
    if (name === "before") {
      if (beforeRef === undefined) throw new Error("the before variant needs --before REF (or a commit in bench/BASELINE)")
      commit = resolveCommit(beforeRef)
      const built = baselineBuild(commit, say)
      root = built.dir
      build = built.cached
        ? `cached build in ${path.relative(ROOT, built.dir)}`
        : `built in ${Math.round(built.seconds)} s in ${path.relative(ROOT, built.dir)}, with ${built.modules}`
    }
    const bin = path.join(root, "dist", "bin.cjs")
    if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: run 'npm run build' first`)
    variants.push({
      name,
      label: LABELS[name],
      root,
      bin,
      nodeOptions: await nodeOptionsOf(root),
      env: { STARFORGE_PLATFORM: name === "after-posix" ? "posix" : "linux" },
      commit,
      dirty: name !== "before" && here.dirty,
      build
    })
  }
  return variants
}

/** The variants in the order of repetition `r`: rotated by one each time, so no variant always goes first. */
export const rotated = (variants, r) => variants.map((_, i) => variants[(i + r) % variants.length])
