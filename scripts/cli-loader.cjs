#!/usr/bin/env node
// The `starforge` command (copied to dist/bin.cjs by scripts/bundle.mjs). It runs the bundled CLI,
// dist/cli.cjs (built from src/bin.ts), through a V8 code cache: Node 20 has no
// `module.enableCompileCache()` (Node 22+), and compiling the bundle was a third of every
// command's start-up. The cache lives in `$XDG_CACHE_HOME/starforge` (default
// `~/.cache/starforge`, mode 0700, owned by the user), one file per bundle build, Node version and
// Node options; it is written when a command ends without a usable cache, or with one that its
// command has not added its functions to yet (see below). Any problem with
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

/**
 * A cache holds the functions compiled by the commands that wrote it, and only those: one written
 * by `starforge --help` left out most of what `daemon status` runs, which then compiled it anew at
 * every call (about 160 ms). So the file names the commands it has seen (the first two words of
 * the command line), and a command it has not seen writes it again, its own functions added to
 * those it read. Layout: "SFC1", the length of the JSON list of commands (4 bytes, LE), the list,
 * then V8's data.
 */
const MAGIC = "SFC1"
/** A bound on rewrites by commands never seen before (typos are commands too). */
const MAX_COMMANDS = 32
const command = process.argv.slice(2).filter((word) => !word.startsWith("-")).slice(0, 2).join(" ")

const readCache = () => {
  if (cacheFile === undefined) return undefined
  try {
    const fd = fs.openSync(cacheFile, "r")
    try {
      if (!ours(fs.fstatSync(fd))) return undefined
      const file = fs.readFileSync(fd)
      if (file.length < 8 || file.toString("latin1", 0, 4) !== MAGIC) return undefined
      const end = 8 + file.readUInt32LE(4)
      const commands = JSON.parse(file.toString("utf8", 8, end))
      return Array.isArray(commands) ? { commands, data: file.subarray(end) } : undefined
    } finally {
      fs.closeSync(fd)
    }
  } catch {
    return undefined
  }
}

let cached = readCache()
const script = new vm.Script(Module.wrap(source), {
  filename: bundle,
  cachedData: cached?.data,
  importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER
})
const cacheUsable = cached !== undefined && !script.cachedDataRejected
const commands = cacheUsable ? cached.commands : []
// V8 keeps its own (wrapped) copy of the source; ours and the cache's bytes would be held for the
// life of the process (a daemon's: days) for nothing.
source = cached = undefined
if (cacheFile !== undefined && (!cacheUsable || (!commands.includes(command) && commands.length < MAX_COMMANDS))) {
  // At exit the cache holds every function compiled so far: those it was read with, and this command's.
  process.once("exit", () => {
    try {
      const list = Buffer.from(JSON.stringify([...commands, command]))
      const header = Buffer.alloc(8)
      header.write(MAGIC, 0, "latin1")
      header.writeUInt32LE(list.length, 4)
      const tmp = `${cacheFile}.${process.pid}.tmp`
      fs.writeFileSync(tmp, Buffer.concat([header, list, script.createCachedData()]), { mode: 0o600 })
      fs.renameSync(tmp, cacheFile)
      pruneCaches(path.dirname(cacheFile))
    } catch {
      // Next time, then.
    }
  })
}
const cli = { exports: {} }
script.runInThisContext()(cli.exports, Module.createRequire(bundle), cli, bundle, path.dirname(bundle))
