/**
 * The scheduler: the dispatcher decides which trigger runs next (`Dispatcher`), each claimed
 * trigger runs as a job in a fiber of the scheduler's (`Job`), each attempt of a job runs its
 * agent (`Attempt`), and what a job does is told by `JobEvents`. Closing the scheduler's scope
 * stops the dispatcher first, then interrupts every job: its agent's process group is stopped
 * and its trigger is put back in the queue (the attempt is not counted). A memory emergency
 * (`Capacity`) stops the youngest running attempt the same way, without stopping the daemon.
 */
import { Context, Effect, Fiber, FiberSet, Layer, Ref, Stream } from "effect"
import type { ClaimedTrigger } from "../queue/TriggerQueue.js"
import { Spawner } from "../process/Spawner.js"
import { Capacity } from "../resources/Capacity.js"
import { AgentSlots } from "../slots/AgentSlots.js"
import { DaemonLog } from "../observability/DaemonLog.js"
import * as Attempt from "./Attempt.js"
import * as Dispatcher from "./Dispatcher.js"
import * as Job from "./Job.js"
import * as JobEvents from "./JobEvents.js"

export type { JobView } from "./Job.js"
export { agentLogFile, reportedOutcome } from "./Attempt.js"
export { retryPolicy } from "./Job.js"
export { type AttemptSummary, summaryOf } from "./JobEvents.js"

export interface SchedulerShape {
  /** Asks the dispatcher to look at the queue again. */
  readonly wake: Effect.Effect<void>
  /** The claimed triggers, running or waiting for a retry. */
  readonly jobs: Effect.Effect<ReadonlyArray<Job.JobView>>
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

  yield* dispatcher.run
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
    jobs: Effect.map(Ref.get(views), (all) => Array.from(all.values()))
  } satisfies SchedulerShape
})

export const layer = Layer.scoped(Scheduler, make)
