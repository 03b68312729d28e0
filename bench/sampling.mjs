#!/usr/bin/env node
// The cost of resource sampling: one `ProcessTable.usage` pass over every agent's group, on each
// platform layer (linux: one scan of /proc; posix: one `ps` call), with N agents running.
//
//   npx tsc -p tsconfig.build.json   # builds dist/ (this script imports dist/platform/*.js)
//   node bench/sampling.mjs [--agents 100] [--passes 20] [--dist DIR] [--json]
//
// --dist DIR measures another build's layers (DIR/platform/*.js, with the `effect` that build
// resolves; default: this checkout's dist/); --json prints one JSON object instead of the table
// (B9 of `npm run bench` runs it so). A build with no `usage` in its process tables (one older than
// resource sampling) exits with code 3.
//
// Each agent is `sh -c 'sleep 600 & exec sleep 600'` started detached: a group of its own with two
// processes (the leader and its child), like an agent and one tool it runs. The passes of the
// layers alternate (linux, posix, linux, ...) after one warm-up pass each, so both see the same
// machine. Measure, never assert. Every process started is SIGKILLed with its group on any exit
// (end, error, Ctrl-C, SIGTERM, SIGHUP).
//
// What is counted, per pass:
// - daemon CPU: this process's user + system CPU over the pass (`process.cpuUsage()`, µs), i.e.
//   what the daemon itself spends (the /proc reads and parsing, or spawning `ps` and parsing its
//   output, and the tree walk);
// - ps CPU: the CPU of the `ps` child the posix layer runs. Node does not give a child's rusage,
//   but the kernel adds a reaped child's CPU to its parent's cutime + cstime (/proc/self/stat
//   fields 16-17, clock ticks), and the sleeps this script started are never reaped during the
//   passes, so the rise of those fields over all passes is the `ps` calls' CPU alone (resolution
//   one tick in total, so it is given as a mean per pass). Linux only (needs /proc/self/stat);
// - wall: the pass from call to answer.
// The CPU share is (daemon CPU median + ps CPU mean) per pass over the sampling interval, in %
// of one core: RESOURCE_SAMPLE_INTERVAL's default of 5 s, and 1 s.
import { execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { fmt, markdownTable, median, percentile } from "./lib/stats.mjs"

const usageText = "usage: node bench/sampling.mjs [--agents N (100)] [--passes N (20)] [--dist DIR (this checkout's dist/)] [--json]"
const options = { agents: 100, passes: 20 }
let distDir = fileURLToPath(new URL("../dist/", import.meta.url))
let json = false
const argv = process.argv.slice(2)
for (let i = 0; i < argv.length; i++) {
  const name = argv[i]
  if (name === "--help" || name === "-h") {
    console.log(usageText)
    process.exit(0)
  }
  if (name === "--json") {
    json = true
    continue
  }
  if (name === "--dist") {
    const dir = argv[++i]
    if (dir === undefined || dir === "") {
      console.error(`sampling: --dist needs a directory\n${usageText}`)
      process.exit(2)
    }
    distDir = path.resolve(dir)
    continue
  }
  const key = name.replace(/^--/, "")
  const value = Number(argv[++i])
  if (!(key in options) || !Number.isInteger(value) || value < 1) {
    console.error(`sampling: bad option ${name} ${argv[i] ?? ""}\n${usageText}`)
    process.exit(2)
  }
  options[key] = value
}

const dist = (file) => pathToFileURL(path.join(distDir, "platform", file))
const shownDist = path.relative(process.cwd(), distDir).startsWith("..") ? distDir : path.relative(process.cwd(), distDir) || "."
if (!fs.existsSync(path.join(distDir, "bin.cjs")) && !fs.existsSync(path.join(distDir, "index.js"))) {
  console.error(`sampling: ${shownDist} is no build (no bin.cjs, no index.js): run \`npx tsc -p tsconfig.build.json\` first`)
  process.exit(2)
}
/** Exit code 3: the build is there but has no resource sampling (no platform layers, or no `usage`). */
const noSampling = (why) => {
  console.error(`sampling: ${shownDist} ${why}: a build without resource sampling (or rebuild it: \`npx tsc -p tsconfig.build.json\`)`)
  process.exit(3)
}
if (!fs.existsSync(fileURLToPath(dist("posix.js")))) noSampling("has no platform/posix.js")
if (process.platform === "linux" && !fs.existsSync(fileURLToPath(dist("linux.js")))) noSampling("has no platform/linux.js")
/**
 * The `effect` the build itself imports (resolved from its directory, its ESM entry), so that the
 * effects its layers return run on their own runtime; this checkout's if that fails.
 */
const Effect = await (async () => {
  try {
    const pkgFile = createRequire(path.join(distDir, "index.js")).resolve("effect/package.json")
    const pkg = JSON.parse(fs.readFileSync(pkgFile, "utf8"))
    const entry = pkg.exports?.["."]?.import ?? pkg.module ?? pkg.main
    return (await import(pathToFileURL(path.join(path.dirname(pkgFile), entry)).href)).Effect
  } catch {
    return (await import("effect")).Effect
  }
})()
const Posix = await import(dist("posix.js").href)
const Linux = process.platform === "linux" ? await import(dist("linux.js").href) : undefined
if (typeof Posix.makeProcessTable !== "object" || (Linux !== undefined && typeof Linux.processTable?.usage !== "function")) {
  noSampling("has no `usage` in its process tables")
}

// ---------------------------------------------------------------------------------------------
// The agents, and their clean-up whatever happens
// ---------------------------------------------------------------------------------------------

const groups = new Set()
const killAll = () => {
  for (const pgid of groups) {
    try {
      process.kill(-pgid, "SIGKILL")
    } catch {
      // Already gone.
    }
  }
  groups.clear()
}
process.on("exit", killAll)
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(signal, () => {
    process.stderr.write(`\nsampling: ${signal}, stopping the agents\n`)
    killAll()
    process.exit(130)
  })
}
process.on("uncaughtException", (error) => {
  process.stderr.write(`sampling: ${error?.stack ?? error}\n`)
  killAll()
  process.exit(1)
})
process.on("unhandledRejection", (error) => {
  process.stderr.write(`sampling: ${error?.stack ?? error}\n`)
  killAll()
  process.exit(1)
})

for (let i = 0; i < options.agents; i++) {
  const child = spawn("sh", ["-c", "sleep 600 & exec sleep 600"], { detached: true, stdio: "ignore" })
  if (child.pid === undefined) throw new Error("could not start sh")
  groups.add(child.pid)
  child.unref()
}
const pgids = [...groups]

const tables = []
if (Linux !== undefined) tables.push({ name: "linux", usage: (g) => Effect.runPromise(Linux.processTable.usage(g)) })
const posixTable = await Effect.runPromise(Posix.makeProcessTable)
if (typeof posixTable.usage !== "function") noSampling("has no `usage` in its posix process table")
tables.push({ name: "posix", usage: (g) => Effect.runPromise(posixTable.usage(g)) })

// Every agent up, both processes, on every layer (before a deadline).
for (const table of tables) {
  const deadline = Date.now() + 30_000
  for (;;) {
    const seen = await table.usage(pgids)
    const complete = pgids.filter((g) => seen.get(g)?.processes === 2).length
    if (complete === pgids.length) break
    if (Date.now() > deadline) throw new Error(`${table.name}: ${complete} of ${pgids.length} agents seen with 2 processes after 30 s`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

// ---------------------------------------------------------------------------------------------
// The passes
// ---------------------------------------------------------------------------------------------

/** cutime + cstime of this process (the CPU of the children it has reaped), in seconds; undefined without /proc. */
const ticksPerSecond = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100
  } catch {
    return 100
  }
})()
const reapedChildrenSeconds = () => {
  try {
    const text = fs.readFileSync("/proc/self/stat", "utf8")
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ")
    return (Number(fields[13]) + Number(fields[14])) / ticksPerSecond
  } catch {
    return undefined
  }
}

const results = new Map(tables.map((t) => [t.name, { wallMs: [], cpuMs: [], childrenSeconds: 0, processesSeen: 0 }]))
// One warm-up pass each (the JIT; getconf, once, for the linux layer), not counted.
for (const table of tables) await table.usage(pgids)
for (let pass = 0; pass < options.passes; pass++) {
  for (const table of tables) {
    const result = results.get(table.name)
    const children = reapedChildrenSeconds()
    const cpu = process.cpuUsage()
    const start = performance.now()
    const answer = await table.usage(pgids)
    const wallMs = performance.now() - start
    const used = process.cpuUsage(cpu)
    const childrenAfter = reapedChildrenSeconds()
    result.wallMs.push(wallMs)
    result.cpuMs.push((used.user + used.system) / 1000)
    if (children !== undefined && childrenAfter !== undefined) result.childrenSeconds += childrenAfter - children
    else result.childrenSeconds = NaN
    if (answer.size !== pgids.length) throw new Error(`${table.name}: a pass saw ${answer.size} of ${pgids.length} groups`)
    result.processesSeen = [...answer.values()].reduce((sum, u) => sum + u.processes, 0)
  }
}
const processTableSize = (() => {
  try {
    return fs.readdirSync("/proc").filter((e) => /^\d+$/.test(e)).length
  } catch {
    return undefined
  }
})()
killAll()

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

const psVersion = (() => {
  try {
    return execFileSync("/bin/ps", ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim()
  } catch {
    return "ps (no --version)"
  }
})()
const INTERVALS_MS = { default: 5_000, fast: 1_000 }
const figures = tables.map(({ name }) => {
  const r = results.get(name)
  const childrenMs = (r.childrenSeconds * 1000) / options.passes
  const psCpuMs = Number.isFinite(childrenMs) ? childrenMs : undefined
  const perPassMs = median(r.cpuMs) + (psCpuMs ?? 0)
  return {
    name,
    wallMs: { median: median(r.wallMs), p95: percentile(r.wallMs, 95) },
    daemonCpuMs: { median: median(r.cpuMs), p95: percentile(r.cpuMs, 95) },
    psCpuMsMean: psCpuMs,
    cpuPerPassMs: perPassMs,
    shareAt5s: (perPassMs / INTERVALS_MS.default) * 100,
    shareAt1s: (perPassMs / INTERVALS_MS.fast) * 100,
    processesCounted: r.processesSeen
  }
})

if (json) {
  // Numbers unrounded; null where a figure could not be measured (ps CPU without /proc/self/stat).
  const layers = Object.fromEntries(
    figures.map((f) => [
      f.name,
      {
        daemonCpuMsPerPass: f.daemonCpuMs,
        psCpuMsPerPassMean: f.psCpuMsMean ?? null,
        cpuPerPassMs: f.cpuPerPassMs,
        wallMs: f.wallMs,
        sharePercentOfCore: { at5s: f.shareAt5s, at1s: f.shareAt1s },
        processesCounted: f.processesCounted
      }
    ])
  )
  console.log(
    JSON.stringify({
      dist: distDir,
      agents: options.agents,
      passes: options.passes,
      processesStarted: pgids.length * 2,
      processTable: processTableSize ?? null,
      machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model ?? "cpu", platform: os.platform(), release: os.release(), node: process.version, ps: psVersion },
      layers
    })
  )
} else {
  const rows = figures.map((f) => [
    f.name,
    options.passes,
    fmt(f.wallMs.median, 2),
    fmt(f.wallMs.p95, 2),
    fmt(f.daemonCpuMs.median, 2),
    fmt(f.daemonCpuMs.p95, 2),
    f.psCpuMsMean === undefined ? "n/a" : fmt(f.psCpuMsMean, 2),
    fmt(f.cpuPerPassMs, 2),
    `${fmt(f.shareAt5s, 3)} %`,
    `${fmt(f.shareAt1s, 3)} %`
  ])

  console.log(`## Resource sampling: one \`usage\` pass over ${options.agents} agents (${pgids.length * 2} processes in their groups)\n`)
  console.log(
    `${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}, ${os.platform()} ${os.release()}, Node ${process.version}, ${psVersion}; ` +
      `${processTableSize ?? "?"} processes in the table; counted in the agents' trees by the last pass: ${figures.map((f) => `${f.name} ${f.processesCounted}`).join(", ")}.\n`
  )
  console.log(
    markdownTable(
      [
        "layer",
        "passes",
        "wall median (ms)",
        "wall p95 (ms)",
        "daemon CPU median (ms)",
        "daemon CPU p95 (ms)",
        "ps CPU mean (ms)",
        "CPU per pass (ms)",
        "share @ 5 s",
        "share @ 1 s"
      ],
      rows
    )
  )
  console.log(`
- daemon CPU: this process's user + system CPU during the pass (process.cpuUsage).
- ps CPU: the \`ps\` children's user + system CPU (this process's cutime + cstime, /proc/self/stat), their total over the passes / passes; 0 for the linux layer, which starts no process.
- CPU per pass: daemon CPU median + ps CPU mean. share: CPU per pass / sampling interval, in % of one core (5 s: RESOURCE_SAMPLE_INTERVAL's default).`)
}
