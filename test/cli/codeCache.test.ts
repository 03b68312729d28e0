/**
 * The `starforge` command's V8 code cache (dist/bin.cjs, from scripts/cli-loader.cjs): one per
 * build, Node version and Node options, written again by each command it has not seen yet, and
 * old builds' caches do not pile up.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"

const BIN = path.resolve(__dirname, "../../dist/bin.cjs")
const dirs: Array<string> = []
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
})

describe("code cache", () => {
  it("a run without a usable cache writes one and keeps only the 4 newest caches; other files are left alone", () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-cache-"))
    dirs.push(home)
    const dir = path.join(home, "starforge")
    fs.mkdirSync(dir, { mode: 0o700 })
    // Six caches of earlier builds, oldest first, and a file that is not a cache.
    const old = Array.from({ length: 6 }, (_, i) => path.join(dir, `cli-${String(i).repeat(32)}.v8cache`))
    old.forEach((file, i) => {
      fs.writeFileSync(file, "old", { mode: 0o600 })
      const t = new Date(Date.now() - (10 - i) * 86_400_000)
      fs.utimesSync(file, t, t)
    })
    fs.writeFileSync(path.join(dir, "notes.txt"), "mine")

    const run = spawnSync(process.execPath, [BIN, "--version"], { env: { ...process.env, XDG_CACHE_HOME: home }, encoding: "utf8" })
    expect(run.status).toBe(0)
    const caches = fs.readdirSync(dir).filter((n) => n.endsWith(".v8cache"))
    expect(caches).toHaveLength(4)
    // The new one and the three newest of the old ones.
    expect(caches.filter((n) => !old.includes(path.join(dir, n)))).toHaveLength(1)
    expect(caches.filter((n) => old.includes(path.join(dir, n))).sort()).toEqual(old.slice(3).map((f) => path.basename(f)).sort())
    expect(fs.readFileSync(path.join(dir, "notes.txt"), "utf8")).toBe("mine")

    // The next run uses the cache: nothing is written or removed.
    const again = spawnSync(process.execPath, [BIN, "--version"], { env: { ...process.env, XDG_CACHE_HOME: home }, encoding: "utf8" })
    expect(again.stdout).toBe(run.stdout)
    expect(fs.readdirSync(dir).filter((n) => n.endsWith(".v8cache")).sort()).toEqual(caches.sort())
  })

  it("a command the cache has not seen writes it again with its own functions added; a command it has seen leaves it as it is", () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-cache-"))
    dirs.push(home)
    const project = path.join(home, "project")
    fs.mkdirSync(project)
    const env = { ...process.env, XDG_CACHE_HOME: home }
    const run = (...args: Array<string>) => spawnSync(process.execPath, [BIN, ...args], { env, cwd: project, encoding: "utf8" })
    const cache = () => {
      const [name] = fs.readdirSync(path.join(home, "starforge")).filter((n) => n.endsWith(".v8cache"))
      const file = fs.readFileSync(path.join(home, "starforge", name!))
      const end = 8 + file.readUInt32LE(4)
      return { magic: file.toString("latin1", 0, 4), commands: JSON.parse(file.toString("utf8", 8, end)), size: file.length, bytes: file }
    }

    expect(run("--version").status).toBe(0)
    const first = cache()
    expect(first.magic).toBe("SFC1")
    expect(first.commands).toEqual([""])

    // Not running: exit code 1, and the cache now holds what `daemon status` compiled as well.
    expect(run("daemon", "status", "--project", project).status).toBe(1)
    const second = cache()
    expect(second.commands).toEqual(["", "daemon status"])
    expect(second.size).toBeGreaterThan(first.size)

    expect(run("daemon", "status", "--project", project).status).toBe(1)
    expect(run("--version").status).toBe(0)
    expect(cache().bytes.equals(second.bytes)).toBe(true)
  })
})
