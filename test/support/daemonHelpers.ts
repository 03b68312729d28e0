/**
 * Extra helpers for the integration tests: a foreground daemon the test can signal, the slot,
 * state and pid files, the queue's directories, overlap of agent runs, process groups.
 */
import type { ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { type AgentRecord, listDir, projectProcesses, readText, type TestProject, waitFor } from "./project.js"

export interface SlotEntry {
  readonly status: "busy" | "idle"
  readonly pid: string | null
  readonly ticket: string | null
  readonly started_at: string | null
  readonly [key: string]: unknown
}

export type SlotFile = Record<string, SlotEntry>

export const slotsPath = (p: TestProject) => path.join(p.claude, "daemon", "agent-slots.json")

/** The slot file, or undefined when it does not exist yet. Throws when it is not valid JSON. */
export const readSlots = (p: TestProject): SlotFile | undefined => {
  const text = readText(slotsPath(p))
  return text === undefined ? undefined : (JSON.parse(text) as SlotFile)
}

/** Writes a slot file before the daemon starts, as a crashed daemon would have left it. */
export const writeSlots = (p: TestProject, slots: Record<string, Record<string, unknown>>) => {
  fs.mkdirSync(path.dirname(slotsPath(p)), { recursive: true })
  fs.writeFileSync(slotsPath(p), JSON.stringify(slots, null, 2))
}

export const busyAgents = (slots: SlotFile | undefined): Array<string> =>
  Object.entries(slots ?? {}).filter(([, s]) => s.status === "busy").map(([a]) => a).sort()

/** `2025-10-25T05:00:00Z` (fractional seconds tolerated). */
export const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/

export interface Foreground {
  readonly child: ChildProcess
  readonly pid: number
  /** Everything the daemon wrote to stdout and stderr so far. */
  readonly output: () => string
  /** What the daemon wrote to stderr so far (its log echo and the ready line). */
  readonly stderr: () => string
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  readonly hasExited: () => boolean
}

/** `starforge daemon start --foreground` as a child of the test, once it takes triggers. */
export const startForeground = async (p: TestProject, env: Record<string, string> = {}): Promise<Foreground> => {
  const child = p.foreground(env)
  let output = ""
  let stderr = ""
  let done = false
  // Always drain the pipes: a full stderr pipe would block the daemon.
  child.stdout?.on("data", (d) => (output += String(d)))
  child.stderr?.on("data", (d) => {
    output += String(d)
    stderr += String(d)
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      done = true
      resolve({ code, signal })
    })
  )
  const pid = await waitFor(
    () => {
      if (done) throw new Error(`the foreground daemon exited during start-up:\n${output}`)
      // The ready line, not the log's `START: Daemon started (PID: N) for …` echo.
      const m = /^Daemon started \(PID: (\d+)\)$/m.exec(output)
      return m ? Number(m[1]) : undefined
    },
    { timeoutMs: 20_000, what: "the foreground daemon to be ready" }
  )
  return { child, pid, output: () => output, stderr: () => stderr, exited, hasExited: () => done }
}

/** Resolves with the exit of `fg`, or throws after `ms`. */
export const exitWithin = async (fg: Foreground, ms: number) => {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the daemon did not exit within ${ms} ms:\n${fg.output()}`)), ms)
  })
  try {
    return await Promise.race([fg.exited, timeout])
  } finally {
    clearTimeout(timer)
  }
}

export interface Run {
  readonly agent: string
  readonly trigger: string
  readonly attempt: number
  readonly pid: number
  readonly start: bigint
  /** undefined: the run never wrote its end line (killed, or still running). */
  readonly end: bigint | undefined
}

/** Pairs the recording agent's start and end lines by process. */
export const runsOf = (recs: ReadonlyArray<AgentRecord>): Array<Run> => {
  const runs = new Map<number, { agent: string; trigger: string; attempt: number; pid: number; start: bigint; end: bigint | undefined }>()
  for (const r of recs) {
    if (r.kind === "start") runs.set(r.pid, { agent: r.agent, trigger: r.trigger, attempt: r.attempt, pid: r.pid, start: r.ns, end: undefined })
    else {
      const run = runs.get(r.pid)
      if (run) run.end = r.ns
    }
  }
  return Array.from(runs.values()).sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0))
}

/** The largest number of runs in progress at one instant (a run without an end never ends). */
export const maxOverlap = (runs: ReadonlyArray<Run>): number => {
  const events: Array<[bigint, number]> = []
  for (const r of runs) {
    events.push([r.start, 1])
    if (r.end !== undefined) events.push([r.end, -1])
  }
  // At the same instant, ends before starts.
  events.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] - b[1]))
  let current = 0
  let max = 0
  for (const [, delta] of events) {
    current += delta
    max = Math.max(max, current)
  }
  return max
}

/**
 * The agent's log says the recording agent got past its set-up (traps installed, grandchild
 * started, its one line of output written: after that it writes to stdout no more, so a daemon
 * killed now does not take it down through its output pipe).
 */
export const agentReady = (p: TestProject, agent: string) =>
  waitFor(() => {
    const logs = path.join(p.claude, "logs")
    return listDir(logs).some((n) => n.startsWith(`${agent}-`) && (readText(path.join(logs, n)) ?? "").includes(`agent ${agent} running:`))
  }, { what: `${agent} to be past its set-up` })

/** `grandchild <pid>` lines of the recording agent. */
export const grandchildPids = (p: TestProject): Array<number> => {
  const text = readText(p.records) ?? ""
  return text.split("\n").filter((l) => l.startsWith("grandchild ")).map((l) => Number(l.split(" ")[1]))
}

/** Live (non-zombie) processes of a process group. */
export const groupMembers = (pgid: number): Array<number> => {
  const members: Array<number> = []
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8")
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      if (fields[0] === "Z" || fields[0] === "X") continue
      if (Number(fields[2]) === pgid) members.push(Number(entry))
    } catch {
      // Exited while we looked.
    }
  }
  return members
}

/** `/proc/<pid>/stat` process group and start time, or undefined when gone. */
export const statOf = (pid: number): { pgid: number; sid: number; startTime: string } | undefined => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return { pgid: Number(fields[2]), sid: Number(fields[3]), startTime: fields[19]! }
  } catch {
    return undefined
  }
}

export const archivedTriggers = (p: TestProject) =>
  listDir(path.join(p.triggers, "processed")).filter((n) => n.endsWith(".trigger"))

/** Everything in `processed/invalid/`: the invalid triggers and their `.reason.txt` files. */
export const invalidEntries = (p: TestProject) => listDir(path.join(p.triggers, "processed", "invalid"))

export const deadLetters = (p: TestProject) => listDir(path.join(p.triggers, "dead-letter")).filter((n) => n.endsWith(".trigger"))

/** Top-level queue files: `X.trigger` and `X.processing`. */
export const queueFiles = (p: TestProject) =>
  listDir(p.triggers).filter((n) => n.endsWith(".trigger") || n.endsWith(".processing"))

/** Daemon processes of this project (the background start re-executes itself with --foreground). */
export const daemonProcesses = (p: TestProject) =>
  projectProcesses(p.root).filter((x) => x.cmdline.includes("daemon start --foreground") && x.cmdline.includes(p.root))

export const readState = (p: TestProject) =>
  JSON.parse(fs.readFileSync(path.join(p.claude, "daemon-state.json"), "utf8")) as Record<string, unknown>

export const pidFile = (p: TestProject) => path.join(p.claude, "daemon.pid")

/** The pid in the pid file, or undefined when there is none. */
export const readPidFile = (p: TestProject): number | undefined => {
  const text = readText(pidFile(p))
  return text === undefined ? undefined : Number(text.trim())
}
