/**
 * The one way the daemon stops processes: SIGTERM, up to the kill grace for them to go, then
 * SIGKILL. Agents are stopped as whole process groups, so background grandchildren go with them.
 * Used when an agent's scope closes (exit, timeout, stall, shutdown), for what an attempt left
 * outside its group, and for orphans found at start; `ladder` works on any target (a single
 * process, for the CLI's `daemon stop`).
 */
import { Duration, Effect } from "effect"
import { pollUntil } from "../io/pollUntil.js"
import { ProcessTable } from "../platform/ProcessTable.js"

/** The signal that ended a target. */
export type StopSignal = "SIGTERM" | "SIGKILL"

/** How long SIGKILLed processes may take to be gone (the kernel frees them quickly). */
const KILL_WAIT = Duration.seconds(2)

/** What a ladder needs to know about its target. */
export interface Target {
  /** Sends a signal; false when there was nothing left to receive it. */
  readonly signal: (signal: StopSignal) => Effect.Effect<boolean>
  readonly gone: Effect.Effect<boolean>
}

/** SIGTERM, SIGKILL after `grace`; the signal that ended the target, undefined if it was gone already. */
export const ladder = (target: Target, grace: Duration.DurationInput): Effect.Effect<StopSignal | undefined> =>
  Effect.gen(function*() {
    if (yield* target.gone) return undefined
    if (!(yield* target.signal("SIGTERM"))) return undefined
    if (yield* pollUntil(target.gone, grace)) return "SIGTERM" as const
    yield* target.signal("SIGKILL")
    yield* pollUntil(target.gone, KILL_WAIT)
    return "SIGKILL" as const
  })

/** The ladder over a process group (an agent and everything it started). */
export const stopGroup = (pgid: number, grace: Duration.DurationInput) =>
  Effect.flatMap(ProcessTable, (table) =>
    ladder({
      signal: (signal) => table.signalGroup(pgid, signal),
      gone: Effect.map(table.groupMembers(pgid), (members) => members.length === 0)
    }, grace))

/** The ladder over one process. */
export const stopProcess = (pid: number, grace: Duration.DurationInput) =>
  Effect.flatMap(ProcessTable, (table) =>
    ladder({ signal: (signal) => table.signalProcess(pid, signal), gone: Effect.map(table.isAlive(pid), (alive) => !alive) }, grace))

/**
 * The ladder over processes known by pid and start time (an agent's escaped descendants): only
 * those still the same process are signalled, so a pid reused since is left alone.
 */
export const stopProcesses = (processes: ReadonlyArray<{ readonly pid: number; readonly startTime: string }>, grace: Duration.DurationInput) =>
  Effect.flatMap(ProcessTable, (table) => {
    const left = Effect.filter(processes, (p) => Effect.map(table.identify(p.pid, p.startTime), (identity) => identity === "same"))
    return ladder({
      signal: (signal) =>
        Effect.flatMap(left, (alive) => Effect.map(Effect.forEach(alive, (p) => table.signalProcess(p.pid, signal)), (sent) => sent.some(Boolean))),
      gone: Effect.map(left, (alive) => alive.length === 0)
    }, grace)
  })

/** What happened to a process an earlier daemon left. */
export type OrphanFate = "stopped" | "gone" | "different"

/**
 * Stops an agent left by an earlier daemon if, and only if, its pid is still that process (same
 * start time). When it is gone, what is left of its group is stopped: a group cannot outlive its
 * leader's pid being reused, so its members are the agent's own.
 */
export const stopOrphan = (pid: number, startTime: string | null, grace: Duration.DurationInput) =>
  Effect.gen(function*() {
    const table = yield* ProcessTable
    const identity = yield* table.identify(pid, startTime)
    if (identity === "different") return "different" as const
    yield* stopGroup(pid, grace)
    return identity === "gone" ? "gone" as const : "stopped" as const
  }).pipe(Effect.withSpan("KillLadder.stopOrphan", { attributes: { pid } }))
