/**
 * The scheduler: the dispatcher decides which trigger runs next (`Dispatcher`), each claimed
 * trigger runs as a job in a fiber of the scheduler's (`Job`), each attempt of a job runs its
 * agent (`Attempt`), and what a job does is told by `JobEvents`. Closing the scheduler's scope
 * stops the dispatcher first, then interrupts every job: its agent's process group is stopped
 * and its trigger is put back in the queue (the attempt is not counted). A memory emergency
 * (`Capacity`) stops the youngest running attempt the same way, without stopping the daemon.
 */
import * as path from "node:path"
import { Clock, Context, Effect, Fiber, FiberSet, Layer, Ref, Schema, Stream } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import type { ProjectPaths } from "../domain/ProjectPaths.js"
import { isoSeconds } from "../domain/time.js"
import { readStateFile, writeBehind, writeFileAtomic } from "../io/stateFile.js"
import { TriggerQueue } from "../queue/TriggerQueue.js"
import type { ClaimedTrigger } from "../queue/TriggerQueue.js"
import { Spawner } from "../process/Spawner.js"
import { Capacity } from "../resources/Capacity.js"
import { AgentSlots } from "../slots/AgentSlots.js"
import { DaemonLog } from "../observability/DaemonLog.js"
import * as Attempt from "./Attempt.js"
import * as Dispatcher from "./Dispatcher.js"
import * as Job from "./Job.js"
import * as JobEvents from "./JobEvents.js"
import { type Waiting, WaitReason, whyJson } from "./Why.js"

export type { JobView } from "./Job.js"
export { agentLogFile, reportedOutcome } from "./Attempt.js"
export { retryPolicy } from "./Job.js"
export { type AttemptSummary, summaryOf } from "./JobEvents.js"
export { describeWait, type Waiting, WaitReason, whyJson } from "./Why.js"

export interface SchedulerShape {
  /** Asks the dispatcher to look at the queue again. */
  readonly wake: Effect.Effect<void>
  /** The claimed triggers, running or waiting for a retry. */
  readonly jobs: Effect.Effect<ReadonlyArray<Job.JobView>>
  /**
   * The triggers that wait, in queue order, each with the reason the dispatcher gives it (at most
   * `limit`), then the failed ones waiting for their retry delay.
   */
  readonly waiting: (limit?: number) => Effect.Effect<ReadonlyArray<Waiting>>
}

/** `C/daemon/waiting.json`: what `waiting` says, for `daemon status --why` and `--json`. */
export const WaitingFile = Schema.Struct({
  updated_at: Schema.String,
  /** Triggers waiting in all; `waiting` holds the first `WAITING_FILE_LIMIT`. */
  total: Schema.Number,
  waiting: Schema.Array(Schema.Struct({
    trigger: Schema.String,
    agent: Schema.String,
    ticket: Schema.NullOr(Schema.String),
    attempt: Schema.Number,
    why: Schema.Record({ key: Schema.String, value: Schema.Unknown })
  }))
})
export type WaitingFile = typeof WaitingFile.Type

/** The most waiting triggers the file lists (a queue of thousands is counted, not listed). */
export const WAITING_FILE_LIMIT = 1000
/** At most one write of the file per this many ms. */
const WAITING_FILE_SPACING_MS = 1000

export const waitingJson = (w: Waiting): WaitingFile["waiting"][number] => ({
  trigger: w.trigger,
  agent: w.agent,
  ticket: w.ticket,
  attempt: w.attempt,
  why: whyJson(w.why)
})

/** Reads `C/daemon/waiting.json`; undefined when it is missing or not of its shape. */
export const readWaiting = (paths: ProjectPaths): WaitingFile | undefined => {
  const read = readStateFile(path.join(paths.daemonDir, "waiting.json"), Schema.decodeUnknownEither(Schema.parseJson(WaitingFile)))
  return read._tag === "Valid" ? read.value : undefined
}

export class Scheduler extends Context.Tag("starforge/Scheduler")<Scheduler, SchedulerShape>() {}

export const make = Effect.gen(function*() {
  const slots = yield* AgentSlots
  const log = yield* DaemonLog
  const spawner = yield* Spawner
  const capacity = yield* Capacity
  const events = yield* JobEvents.make
  const runAttempt = yield* Attempt.make(events)
  const views = yield* Ref.make<ReadonlyMap<string, Job.JobView>>(new Map())
  const jobs = yield* FiberSet.make<unknown, never>()
  const start = (claimed: ClaimedTrigger, carried: Dispatcher.Carried | undefined): Effect.Effect<unknown> =>
    FiberSet.run(jobs, job.run(claimed, carried).pipe(Effect.provideService(Spawner, spawner)))
  const dispatcher = yield* Dispatcher.make(events, start)
  const job = yield* Job.make(events, dispatcher, runAttempt, views)

  /** The dispatcher's waiting triggers, then the jobs in their retry delay. */
  const waiting = (limit = Number.POSITIVE_INFINITY) =>
    Effect.gen(function*() {
      const queued = yield* dispatcher.waiting(limit)
      const listed = new Set(queued.map((w) => w.trigger))
      const delayed: Array<Waiting> = []
      for (const view of (yield* Ref.get(views)).values()) {
        if (view.phase !== "waiting-retry" || view.retryAtMs === undefined || listed.has(`${view.name}.trigger`)) continue
        delayed.push({
          trigger: `${view.name}.trigger`,
          agent: view.agent,
          ticket: view.ticket,
          attempt: view.attempt,
          why: WaitReason.RetryDelay({ until: isoSeconds(view.retryAtMs), attempt: view.attempt })
        })
      }
      return [...queued, ...delayed]
    })

  yield* dispatcher.run
  // `waiting.json` for the CLI: after the dispatcher's passes, at most once a second, when what it says changed.
  const { paths } = yield* DaemonConfig
  const queue = yield* TriggerQueue
  const waitingFile = path.join(paths.daemonDir, "waiting.json")
  const written = yield* Ref.make("")
  const current = Effect.gen(function*() {
    const all = yield* waiting(WAITING_FILE_LIMIT + 1)
    const total = all.length > WAITING_FILE_LIMIT
      ? (yield* queue.pending).length + Array.from((yield* Ref.get(views)).values()).filter((v) => v.phase === "waiting-retry").length
      : all.length
    return { total, waiting: all.slice(0, WAITING_FILE_LIMIT).map(waitingJson) }
  })
  const file = yield* writeBehind(current, (now) =>
    Effect.gen(function*() {
      const body = JSON.stringify(now)
      if (body === (yield* Ref.getAndSet(written, body))) return
      const content: WaitingFile = { updated_at: new Date(yield* Clock.currentTimeMillis).toISOString(), ...now }
      yield* writeFileAtomic(waitingFile, JSON.stringify(content) + "\n").pipe(Effect.catchAll((error) => Effect.logWarning(error.message)))
    }), WAITING_FILE_SPACING_MS)
  yield* dispatcher.passes.pipe(Stream.runForEach(() => file.changed), Effect.forkScoped)
  // A memory emergency stops the youngest running attempt (its trigger goes back to the queue).
  yield* capacity.emergencies.pipe(Stream.runForEach(job.preemptYoungest), Effect.forkScoped)
  // Registered last, so it runs first at shutdown: no new work while the jobs are being stopped.
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      yield* dispatcher.stop
      const running = yield* FiberSet.size(jobs)
      if (running > 0) yield* log.event("STOP", `Stopping ${running} running job${running === 1 ? "" : "s"}`)
      // All at once: each job may wait up to AGENT_KILL_GRACE for its process group.
      yield* Fiber.interruptAll(Array.from(jobs))
      // Whatever a race left reserved (a retry granted as it was interrupted), nothing runs now.
      for (const agent of yield* slots.listBusy) yield* slots.markIdle(agent)
    })
  )
  return {
    wake: dispatcher.wake,
    jobs: Effect.map(Ref.get(views), (all) => Array.from(all.values())),
    waiting
  } satisfies SchedulerShape
})

export const layer = Layer.scoped(Scheduler, make)
