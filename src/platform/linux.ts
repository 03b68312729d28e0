/**
 * The Linux layer of the platform services, through `/proc` and abstract unix sockets. The only
 * module that reads `/proc` (a test checks it).
 *
 * - Identity: a process's start time is `/proc/<pid>/stat` field 22 (clock ticks since boot).
 * - The lock: an abstract socket named after the project root; it leaves no file behind.
 * - Usage: one scan of `/proc/<pid>/stat` for every group asked about (`usage`); memory from
 *   `/proc/meminfo` (`machineLayer`).
 */
import { execFileSync } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import { Effect, Layer } from "effect"
import { answerAt, ask, InstanceLock, type InstanceLockShape, listen, LockHeld } from "./InstanceLock.js"
import { MachineState, type MachineReading } from "./MachineState.js"
import {
  type AgentLeader,
  ATTEMPT_TOKEN_VARIABLE,
  type AttemptProcess,
  groupIsEmpty,
  type ProcessEntry,
  ProcessTable,
  type ProcessTableShape,
  type ProcessUsage,
  sendSignal,
  type TreeUsage,
  treeUsage
} from "./ProcessTable.js"

export interface ProcStat {
  readonly pid: number
  readonly state: string
  readonly ppid: number
  readonly pgid: number
  readonly sid: number
  readonly startTime: string
}

export const readStat = (pid: number): ProcStat | undefined => {
  let text: string
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  } catch {
    return undefined
  }
  return parseStat(pid, text)
}

export const parseStat = (pid: number, text: string): ProcStat | undefined => {
  // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
  const close = text.lastIndexOf(")")
  if (close < 0) return undefined
  const fields = text.slice(close + 2).split(" ")
  const state = fields[0]
  const startTime = fields[19]
  if (state === undefined || startTime === undefined) return undefined
  return {
    pid,
    state,
    ppid: Number(fields[1]),
    pgid: Number(fields[2]),
    sid: Number(fields[3]),
    startTime
  }
}

const isLive = (stat: ProcStat | undefined): stat is ProcStat => stat !== undefined && stat.state !== "Z" && stat.state !== "X"

/** The start time of a live process, or undefined when it is gone (or a zombie). */
export const startTimeOf = (pid: number): string | undefined => {
  const stat = readStat(pid)
  return isLive(stat) ? stat.startTime : undefined
}

export type Identity = "same" | "gone" | "different"

/**
 * Is `pid` still the process that started at `startTime`? Without a recorded start time the
 * answer is never "same": an unverifiable pid must not be signalled.
 */
export const identify = (pid: number, startTime: string | null | undefined): Identity => {
  const stat = readStat(pid)
  if (!isLive(stat)) return "gone"
  return startTime !== null && startTime !== undefined && stat.startTime === startTime ? "same" : "different"
}

export const isAlive = (pid: number): boolean => isLive(readStat(pid))

/** Every process group one scan of `/proc` saw, with its live members (none when all were zombies). */
let lastScan: { readonly at: number; readonly groups: ReadonlyMap<number, ReadonlyArray<ProcStat>> } | undefined
/** How long a scan answers for the groups it saw (about two polls of a sweep). */
const SCAN_REUSE_MS = 50

const scanGroups = (): ReadonlyMap<number, ReadonlyArray<ProcStat>> => {
  const groups = new Map<number, Array<ProcStat>>()
  for (const entry of fs.readdirSync("/proc")) {
    const c = entry.charCodeAt(0)
    if (c < 48 || c > 57) continue
    const stat = readStat(Number(entry))
    if (stat === undefined) continue
    let members = groups.get(stat.pgid)
    if (members === undefined) groups.set(stat.pgid, members = [])
    if (isLive(stat)) members.push(stat)
  }
  lastScan = { at: performance.now(), groups }
  return groups
}

/**
 * Live (non-zombie) members of a process group.
 *
 * A shutdown sweeps every agent's group at the same moment, and a scan of `/proc` per group
 * (100 agents: 100 reads of every process's stat) was a quarter of the daemon's shutdown (bench
 * B8). So a scan younger than `SCAN_REUSE_MS` answers for the groups it saw. That is safe: only a
 * live member can add a process to its group, so a group seen with zombies only stays without
 * members, and a member that died since only costs the caller one more poll. A group the scan
 * did not see (created since) gets a fresh scan.
 */
export const groupMembers = (pgid: number): ReadonlyArray<ProcStat> => {
  // Cheap check first: no process at all in the group.
  if (groupIsEmpty(pgid)) return []
  const recent = lastScan !== undefined && performance.now() - lastScan.at < SCAN_REUSE_MS ? lastScan.groups.get(pgid) : undefined
  return recent ?? scanGroups().get(pgid) ?? []
}

/**
 * The agents of the project at `root` still running, found by what the daemon put in their
 * environment (`STARFORGE_PROJECT_ROOT`, `STARFORGE_AGENT_ID`). Only session leaders count:
 * every agent is started in a session of its own, so a descendant that merely inherited the
 * environment is not taken for an agent (it goes with its agent's group).
 */
export const agentLeaders = (root: string): ReadonlyArray<AgentLeader> => {
  const found: Array<AgentLeader> = []
  const marker = `STARFORGE_PROJECT_ROOT=${root}`
  for (const entry of fs.readdirSync("/proc")) {
    const c = entry.charCodeAt(0)
    if (c < 48 || c > 57) continue
    const pid = Number(entry)
    if (pid === process.pid) continue
    const stat = readStat(pid)
    if (!isLive(stat) || stat.sid !== pid || stat.pgid !== pid) continue
    let environ: Array<string>
    try {
      environ = fs.readFileSync(`/proc/${pid}/environ`, "utf8").split("\0")
    } catch {
      continue
    }
    if (!environ.includes(marker)) continue
    const agent = environ.find((v) => v.startsWith("STARFORGE_AGENT_ID="))?.slice("STARFORGE_AGENT_ID=".length)
    const token = environ.find((v) => v.startsWith(`${ATTEMPT_TOKEN_VARIABLE}=`))?.slice(ATTEMPT_TOKEN_VARIABLE.length + 1)
    if (agent) found.push({ pid, agent, startTime: stat.startTime, ...(token ? { token } : {}) })
  }
  return found
}

/** See `ProcessTableShape.attemptProcesses`: every process's environment, read from `/proc/<pid>/environ`. */
export const attemptProcesses = (root: string): ReadonlyArray<AttemptProcess> => {
  const found: Array<AttemptProcess> = []
  const marker = `STARFORGE_PROJECT_ROOT=${root}`
  const tokenPrefix = `${ATTEMPT_TOKEN_VARIABLE}=`
  for (const entry of fs.readdirSync("/proc")) {
    const c = entry.charCodeAt(0)
    if (c < 48 || c > 57) continue
    const pid = Number(entry)
    if (pid === process.pid) continue
    let environ: Array<string>
    try {
      environ = fs.readFileSync(`/proc/${pid}/environ`, "utf8").split("\0")
    } catch {
      continue // Gone, or another user's.
    }
    const token = environ.find((v) => v.startsWith(tokenPrefix))?.slice(tokenPrefix.length)
    if (!token || !environ.includes(marker)) continue
    const stat = readStat(pid)
    if (!isLive(stat)) continue
    found.push({ pid, token, startTime: stat.startTime })
  }
  return found
}

export type { AgentLeader }
export const signalGroup = (pgid: number, signal: NodeJS.Signals): boolean => sendSignal(-pgid, signal)
export const signalProcess = (pid: number, signal: NodeJS.Signals): boolean => sendSignal(pid, signal)

/** The real user id of a live process (`Uid:` in `/proc/<pid>/status`). */
export const ownerOf = (pid: number): number | undefined => {
  try {
    const uid = /^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]
    return uid === undefined ? undefined : Number(uid)
  } catch {
    return undefined
  }
}

// ---------------------------------------------------------------------------------------------
// Resource usage
// ---------------------------------------------------------------------------------------------

/** The units of `/proc/<pid>/stat`: bytes per page (rss) and clock ticks per second (CPU times). */
export interface StatUnits {
  readonly pageSize: number
  readonly ticksPerSecond: number
}

const getconf = (name: string, fallback: number): number => {
  try {
    const value = Number(execFileSync("getconf", [name], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 5_000 }).trim())
    return Number.isFinite(value) && value > 0 ? value : fallback
  } catch {
    return fallback
  }
}

let units: StatUnits | undefined
/** Asked of `getconf` once, at the first sampling pass (4096 and 100 where it cannot answer). */
export const statUnits = (): StatUnits => (units ??= { pageSize: getconf("PAGESIZE", 4096), ticksPerSecond: getconf("CLK_TCK", 100) })

/** What a sampling pass needs of a stat line, in its own units. */
export interface StatUsage {
  readonly pid: number
  readonly state: string
  readonly ppid: number
  readonly pgid: number
  /** utime + stime + cutime + cstime (fields 14-17), in clock ticks. */
  readonly cpuTicks: number
  /** Field 24, in pages. */
  readonly rssPages: number
}

/** Parses the fields of `/proc/<pid>/stat` a sampling pass needs; undefined when the line is not one. */
export const parseStatUsage = (pid: number, text: string): StatUsage | undefined => {
  const close = text.lastIndexOf(")")
  if (close < 0) return undefined
  // Index 0 is field 3 (state): field n is at index n - 3.
  const fields = text.slice(close + 2).split(" ", 22)
  if (fields.length < 22) return undefined
  const cpuTicks = Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])
  const rssPages = Number(fields[21])
  const ppid = Number(fields[1])
  const pgid = Number(fields[2])
  if (![cpuTicks, rssPages, ppid, pgid].every(Number.isFinite)) return undefined
  return { pid, state: fields[0]!, ppid, pgid, cpuTicks, rssPages }
}

/** Every live (non-zombie) process's usage, from one scan of `/proc`. */
export const scanUsage = (): Array<ProcessUsage> => {
  const { pageSize, ticksPerSecond } = statUnits()
  const all: Array<ProcessUsage> = []
  for (const entry of fs.readdirSync("/proc")) {
    const c = entry.charCodeAt(0)
    if (c < 48 || c > 57) continue
    const pid = Number(entry)
    let text: string
    try {
      text = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    } catch {
      continue // Gone since the directory was read.
    }
    const stat = parseStatUsage(pid, text)
    if (stat === undefined || stat.state === "Z" || stat.state === "X") continue
    all.push({
      pid,
      ppid: stat.ppid,
      pgid: stat.pgid,
      rssBytes: stat.rssPages * pageSize,
      cpuSeconds: stat.cpuTicks / ticksPerSecond
    })
  }
  return all
}

/** What each group's tree uses (see `ProcessTableShape.usage`). */
export const usage = (pgids: ReadonlyArray<number>): ReadonlyMap<number, TreeUsage> =>
  pgids.length === 0 ? new Map() : treeUsage(scanUsage(), pgids)

/** `MemAvailable` of `/proc/meminfo` in bytes; undefined when it is not there (kernels before 3.14). */
export const parseMemAvailable = (meminfo: string): number | undefined => {
  const kb = /^MemAvailable:\s+(\d+)\s*kB/m.exec(meminfo)?.[1]
  return kb === undefined ? undefined : Number(kb) * 1024
}

export const readMachine = (): MachineReading => {
  let available: number | undefined
  try {
    available = parseMemAvailable(fs.readFileSync("/proc/meminfo", "utf8"))
  } catch {
    available = undefined
  }
  const total = os.totalmem()
  return {
    cores: os.availableParallelism(),
    loadAverage: os.loadavg()[0] ?? 0,
    availableMemoryBytes: Math.min(available ?? os.freemem(), total),
    totalMemoryBytes: total
  }
}

/** The machine's state: cores and load from `os`, available memory from `/proc/meminfo`. */
export const machineLayer: Layer.Layer<MachineState> = Layer.succeed(MachineState, { read: Effect.sync(readMachine) })

const entryOf = (stat: ProcStat): ProcessEntry => ({
  pid: stat.pid,
  ppid: stat.ppid,
  pgid: stat.pgid,
  state: stat.state,
  startTime: stat.startTime,
  sessionLeader: stat.sid === stat.pid
})

export const processTable: ProcessTableShape = {
  startTimeOf: (pid) => Effect.sync(() => startTimeOf(pid)),
  identify: (pid, startTime) => Effect.sync(() => identify(pid, startTime)),
  isAlive: (pid) => Effect.sync(() => isAlive(pid)),
  groupMembers: (pgid) => Effect.sync(() => groupMembers(pgid).map(entryOf)),
  agentLeaders: (root) => Effect.sync(() => agentLeaders(root)),
  attemptProcesses: (root) => Effect.sync(() => attemptProcesses(root)),
  ownerOf: (pid) => Effect.sync(() => ownerOf(pid)),
  usage: (pgids) => Effect.sync(() => usage(pgids)),
  signalGroup: (pgid, signal) => Effect.sync(() => sendSignal(-pgid, signal)),
  signalProcess: (pid, signal) => Effect.sync(() => sendSignal(pid, signal))
}

/** The abstract socket name of a project's lock: a hash of its root, so any path length fits. */
export const lockAddress = (root: string): string =>
  "\0starforge-" + crypto.createHash("sha256").update(root).digest("hex").slice(0, 40)

export const instanceLock: InstanceLockShape = {
  hold: (root, answer) =>
    Effect.flatMap(listen(lockAddress(root), answer), (bound) =>
      bound ? Effect.void : Effect.flatMap(ask(lockAddress(root)), (other) =>
        Effect.fail(new LockHeld({ answer: other._tag === "Answered" ? other.line : undefined })))),
  probe: (root, timeoutMs) => answerAt(lockAddress(root), timeoutMs),
  address: lockAddress
}

export const layer: Layer.Layer<ProcessTable | InstanceLock> = Layer.merge(
  Layer.succeed(ProcessTable, processTable),
  Layer.succeed(InstanceLock, instanceLock)
)
