/**
 * Which trigger runs next. Dispatch is first-runnable in queue order over the pending triggers
 * and the retries waiting for their agent: a trigger whose agent is busy stays queued and never
 * blocks the triggers of other agents. One slot per agent; at most `MAX_CONCURRENT_AGENTS` busy
 * slots (1 in sequential mode), or fewer while dynamic scaling lowers the cap (`Capacity`).
 *
 * The cap is counted here, from the slot table, and not by a `Semaphore`: a semaphore hands its
 * permits to whoever asked first, but the rule is "the first runnable trigger in queue order",
 * and a retry keeps its original place in that order. Both hold only when one loop looks at the
 * whole queue and the free slots together and decides.
 */
import { Clock, Deferred, Duration, Effect, Option, Queue, Ref, Stream } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { isoSeconds } from "../domain/time.js"
import { compareOrder, ticketOf } from "../domain/Trigger.js"
import { NO_STACK } from "../observability/Tracing.js"
import { type ClaimedTrigger, type QueuedTrigger, TriggerQueue } from "../queue/TriggerQueue.js"
import { Capacity } from "../resources/Capacity.js"
import { AgentSlots } from "../slots/AgentSlots.js"
import { DaemonState } from "../state/DaemonState.js"
import { limitKey, Usage } from "../state/Usage.js"
import type { JobEvents } from "./JobEvents.js"

/** Attempts (and their times) carried over a requeue that was no fault of the agent. */
export interface Carried {
  readonly attempt: number
  readonly timestamps: ReadonlyArray<string>
  /** Not dispatched again before this time (epoch ms). */
  readonly notBefore: number
}

/** A job's next attempt, waiting for its agent's slot. */
interface Waiter {
  readonly queued: QueuedTrigger
  readonly attempt: number
  readonly granted: Deferred.Deferred<void>
}

interface DispatchState {
  readonly waiters: ReadonlyMap<string, Waiter>
  readonly carried: ReadonlyMap<string, Carried>
  readonly stopping: boolean
}

/** `map` with `key` set to `value`, or removed when it is undefined. */
export const withEntry = <V>(map: ReadonlyMap<string, V>, key: string, value: V | undefined): ReadonlyMap<string, V> => {
  const next = new Map(map)
  if (value === undefined) next.delete(key)
  else next.set(key, value)
  return next
}

/** Queue order over pending files and waiting retries. */
const merged = (pending: ReadonlyArray<QueuedTrigger>, waiters: Iterable<Waiter>): ReadonlyArray<QueuedTrigger> => {
  const retries = Array.from(waiters, (w) => w.queued)
  return retries.length === 0 ? pending : [...pending, ...retries].sort(compareOrder)
}

/** `start` runs a claimed trigger's job (with what it carried over), in a fiber of the scheduler's. */
export const make = (events: JobEvents, start: (claimed: ClaimedTrigger, carried: Carried | undefined) => Effect.Effect<unknown>) =>
  Effect.gen(function*() {
    const { settings } = yield* DaemonConfig
    const queue = yield* TriggerQueue
    const slots = yield* AgentSlots
    const state = yield* DaemonState
    const usage = yield* Usage
    const capacity = yield* Capacity
    const scope = yield* Effect.scope
    const commandKey = limitKey(settings.agentCommand)
    const wakeups = yield* Queue.sliding<void>(1)
    const wake = Queue.offer(wakeups, undefined).pipe(Effect.asVoid)
    const current = yield* Ref.make<DispatchState>({ waiters: new Map(), carried: new Map(), stopping: false })

    const dispatch = Effect.gen(function*() {
      const { carried, stopping, waiters } = yield* Ref.get(current)
      if (stopping) return
      // Paused by a usage limit: nothing with this command starts (a timer wakes us at the end).
      if ((yield* usage.pausedUntil(commandKey)) !== undefined) return
      const busy = new Set(yield* slots.listBusy)
      const cap = (yield* capacity.current).effective_cap
      if (busy.size >= cap) return
      const now = yield* Clock.currentTimeMillis
      for (const next of merged(yield* queue.pending, waiters.values())) {
        if (busy.size >= cap || (yield* Ref.get(current)).stopping) break
        if (busy.has(next.agent)) continue
        const waiter = waiters.get(next.name)
        const held = carried.get(next.name)
        if (waiter === undefined && held !== undefined && held.notBefore > now) continue
        let claimed: ClaimedTrigger | undefined
        if (waiter === undefined) {
          const claim = yield* queue.claim(next).pipe(
            Effect.catchAll((error) => events.leftQueued(error).pipe(Effect.as(Option.none())))
          )
          if (Option.isNone(claim)) continue
          claimed = claim.value
        }
        yield* slots.markBusy(next.agent, {
          ticket: ticketOf(next.trigger),
          trigger: `${next.name}.trigger`,
          attempt: waiter?.attempt ?? held?.attempt ?? 1,
          traceId: next.trigger.trace_id ?? null,
          startedAt: isoSeconds(yield* Clock.currentTimeMillis)
        })
        busy.add(next.agent)
        if (waiter !== undefined) {
          yield* Ref.update(current, (s) => ({ ...s, waiters: withEntry(s.waiters, next.name, undefined) }))
          yield* Deferred.succeed(waiter.granted, undefined)
        } else {
          yield* Ref.update(current, (s) => ({ ...s, carried: withEntry(s.carried, next.name, undefined) }))
          yield* state.started(`${next.name}.trigger`)
          yield* start(claimed!, held)
        }
      }
    }).pipe(Effect.withSpan("Scheduler.dispatch", NO_STACK))

    return {
      wake,
      /** Dispatches at every wake-up (and every change of the queue) until the scope closes. */
      run: Effect.gen(function*() {
        yield* queue.changed.pipe(Effect.zipRight(wake), Effect.forever, Effect.forkScoped)
        yield* capacity.changes.pipe(Stream.runForEach(() => wake), Effect.forkScoped)
        yield* Queue.take(wakeups).pipe(Effect.zipRight(dispatch), Effect.forever, Effect.forkScoped)
        yield* wake
      }),
      /** Waits until the dispatcher hands the agent's slot to this retry. */
      awaitSlot: (queued: QueuedTrigger, attempt: number) =>
        Effect.gen(function*() {
          const granted = yield* Deferred.make<void>()
          yield* Ref.update(current, (s) => ({ ...s, waiters: withEntry(s.waiters, queued.name, { queued, attempt, granted }) }))
          yield* wake
          yield* Deferred.await(granted).pipe(
            Effect.ensuring(Ref.update(current, (s) => ({ ...s, waiters: withEntry(s.waiters, queued.name, undefined) })))
          )
        }),
      /** A requeued trigger keeps its attempts; it is looked at again at `notBefore`. */
      carry: (name: string, carried: Carried) =>
        // Recorded now, only the wake-up is forked: the caller requeues the file right after.
        Ref.update(current, (s) => ({ ...s, carried: withEntry(s.carried, name, carried) })).pipe(
          Effect.zipRight(
            Clock.currentTimeMillis.pipe(
              Effect.flatMap((now) => Effect.sleep(Duration.millis(Math.max(0, carried.notBefore - now)))),
              Effect.zipRight(wake),
              Effect.forkIn(scope)
            )
          ),
          Effect.asVoid
        ),
      /** No new work from now on. */
      stop: Ref.update(current, (s) => ({ ...s, stopping: true }))
    }
  })

export type Dispatcher = Effect.Effect.Success<ReturnType<typeof make>>
