/**
 * The portable POSIX layer of the platform services (macOS, and Linux when forced with
 * `STARFORGE_PLATFORM=posix`). It never reads `/proc`:
 *
 * - The process table comes from one `ps` snapshot (`/bin/ps -A -ww -o pid=,ppid=,pgid=,uid=,stat=,
 *   lstart=,command=` under `LC_ALL=C TZ=UTC`, whose columns mean the same on macOS and on
 *   Linux). Concurrent questions share one call, and a fresh snapshot answers for a moment.
 *   `kill(pid, 0)` answers "gone" without any call.
 * - A process's start time is its `lstart` (one-second resolution) as UTC ISO-8601.
 * - Agents are found by their environment with `ps -E` (macOS) or `ps e` (Linux): macOS shows
 *   the environment only of the caller's own processes, and not of Apple's own binaries.
 * - Usage (`usage`): one `ps -A -o pid=,ppid=,pgid=,stat=,rss=,<cpu>=` per sampling pass for
 *   every group, with the flag that sums reaped children: `-S` and `time` on macOS, `S` and
 *   `bsdtime` on Linux (see `USAGE_ARGS`). Memory: `sysctl` on macOS (`machineLayer`).
 * - The lock is a unix socket file: `C/daemon/daemon.sock`, or `/tmp/starforge-<uid>/<hash>.sock`
 *   where that path would exceed the 103 bytes a socket address may hold. A file left by a dead
 *   holder is taken over under a `mkdir` lock, after a second probe.
 */
import { execFile } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Data, Duration, Effect, Layer, Schedule, type Scope } from "effect"
import { answerAt, ask, InstanceLock, type InstanceLockShape, listen, lockError, LockHeld } from "./InstanceLock.js"
import type { StorageError } from "../domain/errors.js"
import { MachineState, type MachineReading } from "./MachineState.js"
import {
  type AgentLeader,
  ATTEMPT_TOKEN_VARIABLE,
  type AttemptProcess,
  type Identity,
  type ProcessEntry,
  ProcessTable,
  type ProcessTableShape,
  type ProcessUsage,
  sendSignal,
  type TreeUsage,
  treeUsage
} from "./ProcessTable.js"

/** One line of the snapshot: the table's entry, its owner and its command line (with the environment when asked). */
export interface PsEntry extends ProcessEntry {
  readonly uid: number
  readonly command: string
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

/** `Mon Dec  7 21:31:18 2026` (the C locale's `%c` in UTC) as `2026-12-07T21:31:18Z`; undefined if it is not that. */
export const lstartToIso = (tokens: ReadonlyArray<string>): string | undefined => {
  const [, month, day, time, year] = tokens
  const m = MONTHS.indexOf(month ?? "")
  if (m < 0 || !/^\d{1,2}$/.test(day ?? "") || !/^\d{2}:\d{2}:\d{2}$/.test(time ?? "") || !/^\d{4}$/.test(year ?? "")) return undefined
  return `${year}-${String(m + 1).padStart(2, "0")}-${day!.padStart(2, "0")}T${time}Z`
}

/** Parses one line of `ps -o pid=,ppid=,pgid=,uid=,stat=,lstart=,command=`. */
export const parsePsLine = (line: string): PsEntry | undefined => {
  const tokens = line.trim().split(/\s+/)
  if (tokens.length < 10) return undefined
  const [pid, ppid, pgid, uid] = tokens.slice(0, 4).map(Number)
  const stat = tokens[4]!
  const startTime = lstartToIso(tokens.slice(5, 10))
  if (![pid, ppid, pgid, uid].every((n) => Number.isInteger(n)) || startTime === undefined) return undefined
  // The command is what follows the date: find it after the year, keeping its own spacing.
  const year = tokens[9]!
  const at = line.indexOf(` ${year}`, line.indexOf(tokens[7]!)) + year.length + 1
  return {
    pid: pid!,
    ppid: ppid!,
    pgid: pgid!,
    uid: uid!,
    state: stat.charAt(0),
    // `s` in `stat`: a session leader (macOS's `ps` has no `sid` column).
    sessionLeader: stat.includes("s"),
    startTime,
    command: line.slice(at).trim()
  }
}

const isLive = (entry: PsEntry | undefined): entry is PsEntry => entry !== undefined && entry.state !== "Z"

/** `ps` by absolute path where there is one (on macOS, the entitled build), else from `PATH`. */
const PS = fs.existsSync("/bin/ps") ? "/bin/ps" : "ps"
const COLUMNS = "pid=,ppid=,pgid=,uid=,stat=,lstart=,command="

/**
 * Runs `ps` with `args` and parses each line of its output with `parse` (a line it rejects, such
 * as a header, is skipped). Under `LC_ALL=C TZ=UTC`, so dates and numbers read the same anywhere.
 */
const psLines = <A>(args: ReadonlyArray<string>, parse: (line: string) => A | undefined): Effect.Effect<ReadonlyArray<A>> =>
  Effect.async<ReadonlyArray<A>>((resume) => {
    const child = execFile(
      PS,
      args,
      { env: { ...process.env, LC_ALL: "C", TZ: "UTC" }, maxBuffer: 256 * 1024 * 1024 },
      (error, stdout) => {
        // `ps` exits 1 when it lists nothing; what it printed is still the answer.
        if (error && stdout === "") return resume(Effect.die(new Error(`${PS} failed: ${error.message}`)))
        const parsed: Array<A> = []
        for (const line of stdout.split("\n")) {
          const entry = parse(line)
          if (entry !== undefined) parsed.push(entry)
        }
        resume(Effect.succeed(parsed))
      }
    )
    return Effect.sync(() => void child.kill())
  })

/** Runs `ps` over every process; with `environment`, each command line is followed by the environment. */
export const runPs = (environment: boolean): Effect.Effect<ReadonlyArray<PsEntry>> =>
  psLines(["-A", "-ww", "-o", COLUMNS, ...(environment ? [process.platform === "darwin" ? "-E" : "e"] : [])], parsePsLine)

// ---------------------------------------------------------------------------------------------
// Resource usage
// ---------------------------------------------------------------------------------------------

/**
 * CPU time as `ps` prints it, in seconds: `[dd-][hh:]mm:ss[.cc]`. Linux's `time` is
 * `[dd-]hh:mm:ss`, its `bsdtime` and macOS's `time` are `MMM:SS[.cc]` (minutes past 59, then
 * hundredths). Undefined when the text is none of these.
 */
export const parseCpuTime = (text: string): number | undefined => {
  const m = /^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d{1,2})(?:\.(\d+))?$/.exec(text.trim())
  if (m === null) return undefined
  const [, days, hours, minutes, seconds, fraction] = m
  if (Number(seconds) > 59 || (hours !== undefined && Number(minutes) > 59) || (days !== undefined && hours === undefined)) return undefined
  return (
    Number(days ?? 0) * 86_400 +
    Number(hours ?? 0) * 3_600 +
    Number(minutes) * 60 +
    Number(seconds) +
    (fraction === undefined ? 0 : Number(`0.${fraction}`))
  )
}

/**
 * The columns of a sampling pass, CPU time last, with the flag that adds to each process the
 * children it has reaped. On Linux (procps) only `bsdtime` (`MMM:SS`, whole seconds) honours
 * `S`: its `time` ignores it. macOS's `ps` takes `-S`, but its `time` leaves reaped children out
 * whatever the flag (adv_cmds-237 `print.c`: the sum is compiled out): there a tree's CPU time is
 * that of its live processes.
 */
const USAGE_ARGS = process.platform === "darwin"
  ? ["-A", "-S", "-o", "pid=,ppid=,pgid=,stat=,rss=,time="]
  : ["-A", "S", "-o", "pid=,ppid=,pgid=,stat=,rss=,bsdtime="]

/** Parses one line of a sampling pass (`pid ppid pgid stat rss time`); undefined for a zombie or another line. */
export const parseUsageLine = (line: string): ProcessUsage | undefined => {
  const tokens = line.trim().split(/\s+/)
  if (tokens.length !== 6) return undefined
  const [pid, ppid, pgid] = tokens.slice(0, 3).map(Number)
  const rssKib = Number(tokens[4])
  const cpuSeconds = parseCpuTime(tokens[5]!)
  if (![pid, ppid, pgid, rssKib].every(Number.isInteger) || cpuSeconds === undefined) return undefined
  if (tokens[3]!.startsWith("Z")) return undefined
  return { pid: pid!, ppid: ppid!, pgid: pgid!, rssBytes: rssKib * 1024, cpuSeconds }
}

/** Every live process's usage from one `ps` call, then each group's tree (see `ProcessTableShape.usage`). */
export const usage = (pgids: ReadonlyArray<number>): Effect.Effect<ReadonlyMap<number, TreeUsage>> =>
  pgids.length === 0
    ? Effect.succeed(new Map())
    : Effect.map(psLines(USAGE_ARGS, parseUsageLine), (all) => treeUsage(all, pgids))

/** How long a snapshot answers for the processes it saw: a pid it does not have is looked up again. */
const SNAPSHOT_REUSE = Duration.millis(100)

/**
 * Snapshots of the process table: a question asked while `ps` runs waits for that call, and one
 * asked within `SNAPSHOT_REUSE` after it gets its answer. A pid missing from a reused snapshot is
 * looked up in a new one (it may have started since).
 */
const makeSnapshots = Effect.gen(function*() {
  const [recent, forget] = yield* Effect.cachedInvalidateWithTTL(
    Effect.map(runPs(false), (entries) => new Map(entries.map((e) => [e.pid, e]))),
    SNAPSHOT_REUSE
  )
  const lookup = (pid: number) =>
    Effect.flatMap(recent, (byPid) =>
      byPid.has(pid) ? Effect.succeed(byPid.get(pid)) : Effect.map(Effect.zipRight(forget, recent), (again) => again.get(pid)))
  return { lookup, all: recent }
})

/** Does the environment `ps` showed after the command name the project at `root`? */
const hasRoot = (entry: PsEntry, root: string): boolean => {
  const marker = ` STARFORGE_PROJECT_ROOT=${root}`
  const at = entry.command.indexOf(marker)
  return at >= 0 && /^(\s|$)/.test(entry.command.slice(at + marker.length))
}

export const makeProcessTable: Effect.Effect<ProcessTableShape> = Effect.map(makeSnapshots, (snapshots) => {
  /** A live entry of `pid`; `kill(pid, 0)` answers "gone" without asking `ps`. */
  const live = (pid: number) =>
    sendSignal(pid, 0) ? Effect.map(snapshots.lookup(pid), (e) => (isLive(e) ? e : undefined)) : Effect.succeed(undefined)
  return {
    startTimeOf: (pid) => Effect.map(live(pid), (e) => e?.startTime),
    identify: (pid, startTime) =>
      Effect.map(live(pid), (e): Identity =>
        e === undefined ? "gone" : startTime !== null && startTime !== undefined && e.startTime === startTime ? "same" : "different"),
    isAlive: (pid) => Effect.map(live(pid), (e) => e !== undefined),
    groupMembers: (pgid) =>
      // No process at all in the group (not even a zombie): nothing to ask.
      sendSignal(-pgid, 0)
        ? Effect.map(snapshots.all, (byPid) => Array.from(byPid.values()).filter((e) => e.pgid === pgid && isLive(e)))
        : Effect.succeed([]),
    agentLeaders: (root) =>
      Effect.map(runPs(true), (entries) => {
        const found: Array<AgentLeader> = []
        for (const e of entries) {
          if (!isLive(e) || e.pid === process.pid || e.pgid !== e.pid || !e.sessionLeader || !hasRoot(e, root)) continue
          const agent = / STARFORGE_AGENT_ID=(\S+)/.exec(e.command)?.[1]
          const token = new RegExp(` ${ATTEMPT_TOKEN_VARIABLE}=(\\S+)`).exec(e.command)?.[1]
          if (agent) found.push({ pid: e.pid, agent, startTime: e.startTime, ...(token ? { token } : {}) })
        }
        return found
      }),
    attemptProcesses: (root) =>
      Effect.map(runPs(true), (entries) => {
        const found: Array<AttemptProcess> = []
        const tokenPattern = new RegExp(` ${ATTEMPT_TOKEN_VARIABLE}=(\\S+)`)
        for (const e of entries) {
          if (!isLive(e) || e.pid === process.pid || !hasRoot(e, root)) continue
          const token = tokenPattern.exec(e.command)?.[1]
          if (token) found.push({ pid: e.pid, token, startTime: e.startTime })
        }
        return found
      }),
    ownerOf: (pid) => Effect.map(live(pid), (e) => e?.uid),
    usage,
    signalGroup: (pgid, signal) => Effect.sync(() => sendSignal(-pgid, signal)),
    signalProcess: (pid, signal) => Effect.sync(() => sendSignal(pid, signal))
  }
})

// ---------------------------------------------------------------------------------------------
// The lock
// ---------------------------------------------------------------------------------------------

/** The longest socket address macOS holds (104 bytes with its terminating NUL). */
export const MAX_SOCKET_PATH_BYTES = 103

/** Where the lock of the project at `root` listens. */
export const lockAddress = (root: string): string => {
  const inProject = path.join(root, ".claude", "daemon", "daemon.sock")
  if (Buffer.byteLength(inProject) <= MAX_SOCKET_PATH_BYTES) return inProject
  const hash = crypto.createHash("sha256").update(root).digest("hex").slice(0, 40)
  return path.join("/tmp", `starforge-${process.getuid?.() ?? "user"}`, `${hash}.sock`)
}

/** Another start is taking over a dead holder's socket file right now. */
class TakeoverBusy extends Data.TaggedError("TakeoverBusy") {}

/** A takeover lock older than this was left by a start that died halfway. */
const STALE_TAKEOVER_MS = 10_000

/**
 * Holds `address` for the scope. A socket file nobody listens on is a dead holder's: it is
 * replaced, but only under `<address>.takeover` (made with `mkdir`, which only one process can
 * make) and after a second probe, so two starts never both win and a live holder's file is never
 * removed.
 */
const holdAddress = (root: string, address: string, answer: string) =>
  Effect.gen(function*() {
    yield* Effect.try({
      try: () => fs.mkdirSync(path.dirname(address), { recursive: true, ...(address.startsWith("/tmp/") ? { mode: 0o700 } : {}) }),
      catch: (cause) => lockError(root, cause)
    })
    const takeover = `${address}.takeover`
    const held = (other: { _tag: string; line?: string }) => new LockHeld({ answer: other._tag === "Answered" ? other.line : undefined })
    /** One try: this process listens, or someone else holds the lock, or (`TakeoverBusy`) try again. */
    const attempt: Effect.Effect<void, LockHeld | StorageError | TakeoverBusy, Scope.Scope> = Effect.gen(function*() {
      if (yield* listen(address, answer)) return
      const other = yield* ask(address)
      if (other._tag !== "Nobody") return yield* Effect.fail(held(other))
      const mine = yield* Effect.try({
        try: () => {
          try {
            fs.mkdirSync(takeover)
            return true
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e
            const age = Date.now() - (fs.statSync(takeover, { throwIfNoEntry: false })?.mtimeMs ?? Date.now())
            if (age > STALE_TAKEOVER_MS) fs.rmSync(takeover, { recursive: true, force: true })
            return false
          }
        },
        catch: (cause) => lockError(root, cause)
      })
      if (!mine) return yield* new TakeoverBusy()
      yield* Effect.gen(function*() {
        const again = yield* ask(address)
        if (again._tag !== "Nobody") return yield* Effect.fail(held(again))
        yield* Effect.try({ try: () => fs.rmSync(address, { force: true }), catch: (cause) => lockError(root, cause) })
        if (!(yield* listen(address, answer))) return yield* new TakeoverBusy()
      }).pipe(Effect.ensuring(Effect.sync(() => fs.rmSync(takeover, { recursive: true, force: true }))))
    })
    yield* attempt.pipe(
      Effect.retry({ schedule: Schedule.spaced("20 millis"), while: (e) => e._tag === "TakeoverBusy", times: 500 }),
      Effect.catchTag("TakeoverBusy", () => Effect.fail(lockError(root, new Error(`${takeover} stayed in place for 10 seconds`))))
    )
    // The file goes with the lock (a file left by a crash is taken over by the next start).
    yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(address, { force: true })))
  })

export const instanceLock: InstanceLockShape = {
  hold: (root, answer) => holdAddress(root, lockAddress(root), answer),
  probe: (root, timeoutMs) => answerAt(lockAddress(root), timeoutMs),
  address: lockAddress
}

export const layer: Layer.Layer<ProcessTable | InstanceLock> = Layer.merge(
  Layer.effect(ProcessTable, makeProcessTable),
  Layer.succeed(InstanceLock, instanceLock)
)

// ---------------------------------------------------------------------------------------------
// The machine
// ---------------------------------------------------------------------------------------------

const SYSCTL = fs.existsSync("/usr/sbin/sysctl") ? "/usr/sbin/sysctl" : "sysctl"

/**
 * Available memory from `sysctl -n kern.memorystatus_level hw.memsize` (two lines: the percentage
 * of memory free, as macOS's memory pressure counts it, then the memory size in bytes).
 */
export const parseMemoryStatus = (text: string): number | undefined => {
  const [level, memsize] = text.trim().split(/\s+/).map(Number)
  if (level === undefined || memsize === undefined || !Number.isFinite(level) || !Number.isFinite(memsize)) return undefined
  if (level < 0 || level > 100 || memsize <= 0) return undefined
  return Math.round((level / 100) * memsize)
}

/**
 * Memory a new process could get. On macOS `os.freemem()` leaves out the inactive and purgeable
 * pages it would hand back, so ask `sysctl` (falling back to `os.freemem()` if it fails);
 * elsewhere `os.freemem()` (on Linux, libuv's own read of `MemAvailable`).
 */
const availableMemory: Effect.Effect<number> = process.platform === "darwin"
  ? Effect.async<number>((resume) => {
    const child = execFile(SYSCTL, ["-n", "kern.memorystatus_level", "hw.memsize"], { env: { ...process.env, LC_ALL: "C" } }, (error, stdout) => {
      const available = error ? undefined : parseMemoryStatus(stdout)
      resume(Effect.succeed(available ?? os.freemem()))
    })
    return Effect.sync(() => void child.kill())
  })
  : Effect.sync(() => os.freemem())

export const readMachine: Effect.Effect<MachineReading> = Effect.map(availableMemory, (available) => {
  const total = os.totalmem()
  return {
    cores: os.availableParallelism(),
    loadAverage: os.loadavg()[0] ?? 0,
    availableMemoryBytes: Math.min(available, total),
    totalMemoryBytes: total
  }
})

/** The machine's state without `/proc`: cores and load from `os`, memory as `availableMemory` says. */
export const machineLayer: Layer.Layer<MachineState> = Layer.succeed(MachineState, { read: readMachine })
