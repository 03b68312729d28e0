/**
 * What an agent leaves running outside its process group: a child that called `setsid`, a
 * double-forked daemon, a detached Node child. Each attempt gives its agent a token in its
 * environment (`STARFORGE_ATTEMPT_ID`), which everything it starts inherits. Once the attempt has
 * ended and its group is swept, the processes that still carry the token are stopped with the
 * kill ladder. Nothing else is ever signalled: a process must carry the token of an attempt of
 * this project, and have started no earlier than that attempt's agent.
 *
 * Sweeps run in one fiber: attempts that end while it looks at the process table share its next
 * look. Closing the scope sweeps what is still queued.
 */
import { Chunk, Context, Duration, Effect, Layer, Queue } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { DaemonLog } from "../observability/DaemonLog.js"
import { type AttemptProcess, ProcessTable, startedSince } from "../platform/ProcessTable.js"
import { stopProcesses } from "./KillLadder.js"

/** An attempt that ended: its agent, its token, and its agent's start time (null when unknown). */
export interface EndedAttempt {
  readonly agent: string
  readonly token: string
  readonly since: string | null
}

export interface LeftoversShape {
  /** Stops, soon, whatever the attempt left running; returns at once. */
  readonly afterAttempt: (attempt: EndedAttempt) => Effect.Effect<void>
  /** Stops what these attempts left running, and returns once it is stopped (at start-up: an earlier daemon's attempts). */
  readonly sweepNow: (attempts: ReadonlyArray<EndedAttempt>) => Effect.Effect<void>
}

export class Leftovers extends Context.Tag("starforge/Leftovers")<Leftovers, LeftoversShape>() {}

const pidList = (processes: ReadonlyArray<AttemptProcess>) => processes.map((p) => p.pid).join(", ")

export const make = Effect.gen(function*() {
  const { paths, settings } = yield* DaemonConfig
  const table = yield* ProcessTable
  const log = yield* DaemonLog
  const grace = Duration.millis(settings.killGraceMs)
  const ended = yield* Queue.unbounded<EndedAttempt>()
  const stop = (left: ReadonlyArray<AttemptProcess>) => stopProcesses(left, grace).pipe(Effect.provideService(ProcessTable, table))

  const sweep = (attempts: ReadonlyArray<EndedAttempt>) =>
    Effect.gen(function*() {
      if (attempts.length === 0) return
      const carrying = yield* table.attemptProcesses(paths.root)
      if (carrying.length === 0) return
      yield* Effect.forEach(attempts, (attempt) => {
        const left = carrying.filter((p) => p.token === attempt.token && (attempt.since === null || startedSince(p.startTime, attempt.since)))
        return left.length === 0 ? Effect.void : stop(left).pipe(
          Effect.zipRight(log.event(
            "MONITOR",
            `Stopped ${left.length} process${left.length === 1 ? "" : "es"} that ${attempt.agent}'s attempt left running outside its process group (PID ${pidList(left)})`,
            { agent: attempt.agent }
          ))
        )
      }, { concurrency: "unbounded", discard: true })
    }).pipe(Effect.uninterruptible)

  yield* Queue.take(ended).pipe(
    Effect.flatMap((first) => Effect.map(Queue.takeAll(ended), (rest) => [first, ...Chunk.toArray(rest)])),
    Effect.flatMap(sweep),
    Effect.forever,
    Effect.forkScoped
  )
  // Runs before the fiber above is interrupted: the attempts stopped at shutdown are swept too.
  yield* Effect.addFinalizer(() => Effect.flatMap(Queue.takeAll(ended), (rest) => sweep(Chunk.toArray(rest))))

  return {
    afterAttempt: (attempt) => Queue.offer(ended, attempt).pipe(Effect.asVoid),
    sweepNow: sweep
  } satisfies LeftoversShape
})

export const layer = Layer.scoped(Leftovers, make)
