#!/usr/bin/env node
// The `starforge` command (copied to dist/bin.cjs by scripts/bundle.mjs). It runs the bundled CLI,
// dist/cli.cjs (built from src/bin.ts), through a V8 code cache: Node 20 has no
// `module.enableCompileCache()` (Node 22+), and compiling the bundle was a third of every
// command's start-up. The cache lives in `$XDG_CACHE_HOME/starforge` (default
// `~/.cache/starforge`, mode 0700, owned by the user), one file per bundle build, Node version and
// Node options; it is written once, when a command ends without a usable cache. Any problem with
// it (read-only home, another owner, a rejected cache) only means running without one.
// CommonJS, not an ES module: Node's ES module loader took 15-25 ms of every command's start
// (`daemon status` with 10,000 pending triggers: medians 284-300 -> 256-286 ms, 6 sets of 8 calls).
"use strict"
const crypto = require("node:crypto")
const fs = require("node:fs")
const Module = require("node:module")
const os = require("node:os")
const path = require("node:path")
const vm = require("node:vm")

const bundle = path.join(__dirname, "cli.cjs")
let source = fs.readFileSync(bundle, "utf8")
if (source.startsWith("#!")) source = "//" + source.slice(2)

const ours = (stat) => stat.uid === process.getuid?.() && (stat.mode & 0o022) === 0

const cacheFile = (() => {
  try {
    const dir = path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "starforge")
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
    if (!ours(fs.statSync(dir))) return undefined
    const build = fs.statSync(bundle)
    const key = crypto.createHash("sha256")
      .update([build.size, build.mtimeMs, build.ino, process.version, process.arch, process.execArgv.join(" ")].join("\0"))
      .digest("hex")
      .slice(0, 32)
    return path.join(dir, `cli-${key}.v8cache`)
  } catch {
    return undefined
  }
})()

/** Caches kept: each build, Node version and set of Node options (the daemon's, the commands') has its own. */
const KEEP_CACHES = 4

/** Old builds' caches would pile up (about 2 MB each): only the most recently written ones are kept. */
const pruneCaches = (dir) => {
  const caches = fs.readdirSync(dir)
    .filter((name) => /^cli-[0-9a-f]{32}\.v8cache$/.test(name))
    .map((name) => ({ file: path.join(dir, name), mtime: fs.statSync(path.join(dir, name)).mtimeMs }))
    .sort((a, b) => b.mtime - a.mtime)
  for (const { file } of caches.slice(KEEP_CACHES)) fs.rmSync(file, { force: true })
}

const readCache = () => {
  if (cacheFile === undefined) return undefined
  try {
    const fd = fs.openSync(cacheFile, "r")
    try {
      return ours(fs.fstatSync(fd)) ? fs.readFileSync(fd) : undefined
    } finally {
      fs.closeSync(fd)
    }
  } catch {
    return undefined
  }
}

let cachedData = readCache()
const script = new vm.Script(Module.wrap(source), {
  filename: bundle,
  cachedData,
  importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER
})
const cacheUsable = cachedData !== undefined && !script.cachedDataRejected
// V8 keeps its own (wrapped) copy of the source; ours and the cache's bytes would be held for the
// life of the process (a daemon's: days) for nothing.
source = cachedData = undefined
if (cacheFile !== undefined && !cacheUsable) {
  // At exit the cache also holds every function the command compiled on the way.
  process.once("exit", () => {
    try {
      const tmp = `${cacheFile}.${process.pid}.tmp`
      fs.writeFileSync(tmp, script.createCachedData(), { mode: 0o600 })
      fs.renameSync(tmp, cacheFile)
      pruneCaches(path.dirname(cacheFile))
    } catch {
      // Next time, then.
    }
  })
}
const cli = { exports: {} }
script.runInThisContext()(cli.exports, Module.createRequire(bundle), cli, bundle, path.dirname(bundle))
