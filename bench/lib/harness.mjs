// The benchmark's side effects: temporary projects, the recording agent, the real daemon
// (`dist/bin.cjs daemon start --foreground`), /proc sampling, and the clean-up that runs however
// the run ends (normal end, failure, Ctrl-C, SIGTERM).
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import { median, parseRecords } from "./stats.mjs"

/** This checkout's build (the `after` variants; the baseline's is in `variant.bin`, see lib/variants.mjs). */
export const BIN = fileURLToPath(new URL("../../dist/bin.cjs", import.meta.url))
/**
 * Extra node options for every daemon and CLI call, for profiling: e.g.
 * `BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof"` (Node 20 refuses --cpu-prof in NODE_OPTIONS).
 */
const NODE_ARGS = (process.env.BENCH_NODE_ARGS ?? "").split(" ").filter((a) => a !== "")
export const TICKS_PER_SECOND = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100

/** Wall-clock time in ns on the same clock as the agents' `date +%s%N` (CLOCK_REALTIME), at µs precision. */
export const nowNs = () => BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `condition` until it returns a value other than undefined/false; throws after `timeoutMs`. */
export const waitFor = async (condition, { timeoutMs, intervalMs = 20, what }) => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = condition()
    if (value !== undefined && value !== false) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`)
    await sleep(intervalMs)
  }
}

/**
 * The recording agent. It appends `start <ns> <pid> <agent>` and `end …` to `$BENCH_RECORDS`
 * (one `echo >>` each: an atomic append), sleeps as its trigger's action says (`sleep-S`, read
 * from `STARFORGE_ACTION`, no fork needed) and exits 0. A SIGTERM ends it (sh's default).
 * Run by `xargs`, it gets no STARFORGE_* variables: it exits at once.
 */
const AGENT = `#!/bin/sh
echo "start $(date +%s%N) $$ $STARFORGE_AGENT_ID" >> "$BENCH_RECORDS"
case "$STARFORGE_ACTION" in sleep-*) sleep "\${STARFORGE_ACTION#sleep-}" ;; esac
echo "end $(date +%s%N) $$ $STARFORGE_AGENT_ID" >> "$BENCH_RECORDS"
`

// ---------------------------------------------------------------------------------------------
// Clean-up: every temporary directory and every process this run started.
// ---------------------------------------------------------------------------------------------

const tempDirs = new Set()
/** Children we spawned in their own process group (daemons, xargs, shell loops). */
const groups = new Set()

const alive = (pid) => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3)
    return state !== "Z" && state !== "X"
  } catch {
    return false
  }
}

const signal = (pid, sig) => {
  try {
    process.kill(pid, sig)
  } catch {
    // Already gone.
  }
}

const blockFor = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)

/**
 * Processes started (directly or not) by this run: their environment names one of our temporary
 * directories (every daemon, agent and baseline child gets `BENCH_RECORDS` inside one).
 */
export const ourProcesses = () => {
  const found = []
  if (tempDirs.size === 0) return found
  for (const entry of fs.readdirSync("/proc")) {
    const c = entry.charCodeAt(0)
    if (c < 48 || c > 57) continue
    const pid = Number(entry)
    if (pid === process.pid || !alive(pid)) continue
    let environ
    try {
      environ = fs.readFileSync(`/proc/${pid}/environ`, "utf8")
    } catch {
      continue
    }
    for (const dir of tempDirs) if (environ.includes(`BENCH_RECORDS=${dir}/`)) found.push(pid)
  }
  return found
}

/**
 * Synchronous, so it also runs from signal handlers and `exit`: SIGTERM to our daemons (they stop
 * their agents), a short wait, then SIGKILL to whatever of ours is left. The directories stay.
 */
export const stopAll = () => {
  for (const pid of groups) signal(pid, "SIGTERM")
  const deadline = Date.now() + 5_000
  while ([...groups].some(alive) && Date.now() < deadline) blockFor(50)
  for (const pid of groups) signal(-pid, "SIGKILL")
  groups.clear()
  for (let round = 0; round < 5; round++) {
    const left = ourProcesses()
    if (left.length === 0) break
    for (const pid of left) signal(pid, "SIGKILL")
    blockFor(100)
  }
}

/**
 * Every process stopped, then every temporary directory removed: only when the run ends. Files
 * deleted during a run would slow the files the next workloads create (each job's log, for the
 * daemon; nothing for xargs): ext4 without a journal, as this benchmark's machine has, skips every
 * inode freed in the last minute (five more while its inode table is not written back) when it
 * allocates one, at a lookup each. One empty file took 0.03 ms to create on a quiet disk here and
 * 0.9–1.5 ms after a few thousand deletions (`fileCreateMs` reads it).
 */
export const cleanupAll = () => {
  stopAll()
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true })
  tempDirs.clear()
}

let installed = false
/** Cleans up on Ctrl-C, SIGTERM, SIGHUP and any exit. */
export const installCleanup = () => {
  if (installed) return
  installed = true
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}, cleaning up...\n`)
      cleanupAll()
      process.exit(130)
    })
  }
  process.on("exit", cleanupAll)
}

// ---------------------------------------------------------------------------------------------
// Projects and the daemon.
// ---------------------------------------------------------------------------------------------

/** A new `<tmp>/starforge-bench-XXXX`, removed when the run ends (see `cleanupAll`). */
const tempDir = () => {
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "starforge-bench-")))
  tempDirs.add(dir)
  return dir
}

/**
 * The median time, in ms, to create one empty file (as the daemon creates each job's log) in a
 * new directory of the temporary directory: how the filesystem stands right now (see
 * `cleanupAll`). It deletes nothing.
 */
export const fileCreateMs = (count = 100) => {
  const dir = path.join(tempDir(), "probe")
  fs.mkdirSync(dir)
  const times = []
  for (let i = 0; i < count; i++) {
    const t0 = process.hrtime.bigint()
    fs.closeSync(fs.openSync(path.join(dir, `${i}.log`), "a"))
    times.push(Number(process.hrtime.bigint() - t0) / 1e6)
  }
  return median(times)
}

/** Above this, `fileCreateMs` shows recently deleted files slowing every file created (a quiet disk here: 0.02–0.07 ms). */
const SLOW_FILE_CREATE_MS = 0.1

/**
 * After a burst of deletions (an earlier run's clean-up, a test suite) file creation is slow
 * until their inodes have been on disk for a minute: then this writes them out (`sync`), waits
 * `waitSeconds` without touching the disk (every file created meanwhile would dirty the inode
 * tables again, and a dirty one keeps its freed inodes skipped for five minutes more) and reads
 * it again. Returns the last reading and how long it waited.
 */
export const settleFileCreation = async (say, waitSeconds = 65) => {
  const createMs = fileCreateMs()
  if (createMs <= SLOW_FILE_CREATE_MS) return { createMs, waitedSeconds: 0 }
  say(`creating one file takes ${createMs.toFixed(3)} ms: files deleted in the last minutes slow it down (ext4 without a journal); waiting ${waitSeconds} s for them to age`)
  spawnSync("sync")
  await sleep(waitSeconds * 1000)
  spawnSync("sync")
  return { createMs: fileCreateMs(), waitedSeconds: waitSeconds }
}

/**
 * A temporary project: `<tmp>/starforge-bench-XXXX/project` (the parent holds only our files, so
 * no agent worktree `<parent>/project-<agent>` can exist), the agent script and the records file.
 */
export const makeProject = (settings = {}) => {
  const base = tempDir()
  const root = path.join(base, "project")
  const triggers = path.join(root, ".claude", "triggers")
  fs.mkdirSync(path.join(triggers, "staging"), { recursive: true })
  const agent = path.join(base, "agent.sh")
  fs.writeFileSync(agent, AGENT, { mode: 0o755 })
  const records = path.join(base, "records.txt")
  fs.writeFileSync(records, "")
  const env = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? base,
    BENCH_RECORDS: records,
    AGENT_COMMAND: agent,
    PARALLEL_DAEMON: "true",
    ORCHESTRATOR_INTERVAL: "0",
    // How the daemons start agents (helper or direct), when the run is asked for one.
    ...(process.env.STARFORGE_SPAWNER === undefined ? {} : { STARFORGE_SPAWNER: process.env.STARFORGE_SPAWNER }),
    // How often the daemons sample their agents' resources, when the run is asked for it (default 5 s).
    ...(process.env.RESOURCE_SAMPLE_INTERVAL === undefined ? {} : { RESOURCE_SAMPLE_INTERVAL: process.env.RESOURCE_SAMPLE_INTERVAL }),
    ...settings
  }
  let staged = 0
  return {
    base,
    root,
    triggers,
    agent,
    records,
    env,
    processed: path.join(triggers, "processed"),
    /** Writes `<name>.trigger` directly (for a queue filled before the daemon starts). */
    write: (name, trigger) => fs.writeFileSync(path.join(triggers, `${name}.trigger`), JSON.stringify(trigger)),
    /** Writes a staging file, then renames it into place (as producers should); returns the time of the rename. */
    drop: (name, trigger) => {
      const tmp = path.join(triggers, "staging", `${name}.${staged++}.tmp`)
      fs.writeFileSync(tmp, JSON.stringify(trigger))
      const at = nowNs()
      fs.renameSync(tmp, path.join(triggers, `${name}.trigger`))
      return at
    },
    readRecords: () => parseRecords(fs.readFileSync(records, "utf8")),
    /** How many lines of `kind` the agents recorded so far (cheap enough to poll). */
    countRecords: (kind) => {
      const text = fs.readFileSync(records, "utf8")
      let n = 0
      for (let i = text.indexOf(kind + " "); i >= 0; i = text.indexOf("\n" + kind + " ", i + 1)) n++
      return n
    },
    processedCount: () => {
      try {
        return fs.readdirSync(path.join(triggers, "processed")).filter((n) => n.endsWith(".trigger")).length
      } catch {
        return 0
      }
    },
  }
}

/** Spawns a child in its own process group, registered for clean-up. */
export const spawnTracked = (command, args, options) => {
  const child = spawn(command, args, { ...options, detached: true })
  if (child.pid !== undefined) groups.add(child.pid)
  const exited = new Promise((resolve) =>
    child.once("exit", (code, sig) => {
      groups.delete(child.pid)
      resolve({ code, signal: sig })
    })
  )
  return { child, pid: child.pid, exited }
}

/** The environment of a variant's daemon or CLI on the project (its STARFORGE_PLATFORM, lib/variants.mjs). */
const variantEnv = (project, variant) => ({ ...project.env, ...variant.env })

/**
 * `starforge daemon start --foreground` of the variant's build on the project, with the Node
 * options that build gives its background daemon; resolves once it prints its ready line.
 * Its output goes to `<base>/daemon.out` (shown if it fails).
 */
export const startDaemon = async (project, variant, { readyTimeoutMs = 60_000 } = {}) => {
  const outFile = path.join(project.base, "daemon.out")
  const out = fs.openSync(outFile, "a")
  const startedNs = nowNs()
  const daemon = spawnTracked(process.execPath, [...variant.nodeOptions, ...NODE_ARGS, variant.bin, "daemon", "start", "--foreground", "--project", project.root], {
    cwd: project.root,
    env: variantEnv(project, variant),
    stdio: ["ignore", out, out]
  })
  fs.closeSync(out)
  let exited = false
  daemon.exited.then(() => (exited = true))
  const output = () => fs.readFileSync(outFile, "utf8")
  await waitFor(() => {
    if (exited) throw new Error(`the ${variant.label} daemon exited during start-up:\n${output().slice(-2000)}`)
    return /^Daemon started \(PID: \d+\)$/m.test(output())
  }, { timeoutMs: readyTimeoutMs, what: `the ${variant.label} daemon to be ready` })
  return {
    pid: daemon.pid,
    startedNs,
    readyNs: nowNs(),
    exited: daemon.exited,
    output,
    /** SIGTERM and wait for the graceful shutdown (SIGKILL after `timeoutMs`). */
    stop: async (timeoutMs = 60_000) => {
      signal(daemon.pid, "SIGTERM")
      const timer = setTimeout(() => signal(-daemon.pid, "SIGKILL"), timeoutMs)
      const result = await daemon.exited
      clearTimeout(timer)
      return result
    }
  }
}

/** Runs the variant's `starforge <args> --project root` to its end; returns its wall time in ms and its output. */
export const timeCli = (project, args, variant) => {
  const t0 = performance.now()
  const result = spawnSync(process.execPath, [...NODE_ARGS, variant.bin, ...args, "--project", project.root], {
    cwd: project.root,
    env: variantEnv(project, variant),
    encoding: "utf8",
    timeout: 60_000
  })
  return { ms: performance.now() - t0, status: result.status, stdout: result.stdout, stderr: result.stderr }
}

/** Wall time in ms of a bare `node -e 0`: what any Node CLI pays before its own code runs. */
export const timeNode = () => {
  const t0 = performance.now()
  spawnSync(process.execPath, ["-e", "0"], { stdio: "ignore" })
  return performance.now() - t0
}

// ---------------------------------------------------------------------------------------------
// /proc sampling.
// ---------------------------------------------------------------------------------------------

/** utime + stime of a process, in clock ticks. */
export const cpuTicks = (pid) => {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return Number(fields[11]) + Number(fields[12])
}

/** utime + stime of a process plus those of the children it has waited for (cutime + cstime: e.g. a `ps` it ran), in clock ticks. */
export const cpuTicksWithChildren = (pid) => {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])
}

/** Busy time of the whole machine (every core: user, nice, system, irq, softirq), in clock ticks. */
export const systemCpuTicks = () => {
  const fields = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/ +/).slice(1).map(Number)
  return fields[0] + fields[1] + fields[2] + fields[5] + fields[6]
}

/** The pid of the daemon's spawn helper (its child titled `starforge-spawn-helper`), if it has one. */
export const spawnHelperOf = (daemonPid) => {
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8")
      const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1])
      if (parent === daemonPid && fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").startsWith("starforge-spawn-helper")) return Number(entry)
    } catch {
      // Gone meanwhile.
    }
  }
  return undefined
}

/** `VmRSS` and `VmHWM` (peak RSS) of a process, in MiB. */
export const memory = (pid) => {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8")
  const kib = (key) => Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? NaN)
  return { rssMiB: kib("VmRSS") / 1024, peakMiB: kib("VmHWM") / 1024 }
}

export { alive }

/** Machine facts for the results. */
export const machine = () => ({
  cores: os.cpus().length,
  cpu: os.cpus()[0]?.model ?? "unknown",
  memoryGiB: Math.round(os.totalmem() / 2 ** 30),
  node: process.version,
  load: os.loadavg()
})
