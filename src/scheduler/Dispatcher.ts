/**
 * Which trigger runs next. Dispatch is first-runnable in queue order over the pending triggers
 * and the retries waiting for their agent: a trigger whose agent is busy (or paused by a usage
 * limit, or over its daily budget) stays queued and never blocks the triggers of other agents.
 * One slot per agent; at most `MAX_CONCURRENT_AGENTS` busy slots (1 in sequential mode), or fewer
 * while dynamic scaling lowers the cap (`Capacity`). One function, `decide`, makes the decision
 * for each trigger; `waiting` reports the same decision as the reason a trigger waits (`Why`).
 *
 * The cap is counted here, from the slot table, and not by a `Semaphore`: a semaphore hands its
 * permits to whoever asked first, but the rule is "the first runnable trigger in queue order",
 * and a retry keeps its original place in that order. Both hold only when one loop looks at the
 * whole queue and the free slots together and decides.
 */
import { Clock, Deferred, Duration, Effect, Option, PubSub, Queue, Ref, Stream } from "effect"
import { agentVariableSuffix, DaemonConfig, settingsFor } from "../config/DaemonConfig.js"
import { isoSeconds } from "../domain/time.js"
import { compareOrder, ticketOf } from "../domain/Trigger.js"
import { NO_STACK } from "../observability/Tracing.js"
import { type ClaimedTrigger, type QueuedTrigger, TriggerQueue } from "../queue/TriggerQueue.js"
import { Capacity, type CapacityView } from "../resources/Capacity.js"
import { AgentSlots } from "../slots/AgentSlots.js"
import { DaemonState } from "../state/DaemonState.js"
import { type DayCost, dayOf, limitKey, Usage } from "../state/Usage.js"
import type { JobEvents } from "./JobEvents.js"
import { type Waiting, WaitReason } from "./Why.js"

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

/** The longest the dispatcher sleeps while waiting for the next UTC day. */
const BUDGET_LOOK_MS = 60_000

/** The start of the next UTC day (epoch ms): when a daily budget is whole again. */
export const nextUtcDay = (nowMs: number): number => (Math.floor(nowMs / 86_400_000) + 1) * 86_400_000

/** What the dispatcher sees at one pass, the same for every trigger it looks at. */
export interface Pass {
  readonly now: number
  readonly stopping: boolean
  /** The agents whose slot is taken, growing as the pass starts triggers. */
  readonly busy: Set<string>
  readonly capacity: CapacityView
  /** Why the agent cannot start anything now (a usage-limit pause, a spent budget), by agent; computed once per pass. */
  readonly blocked: (agent: string) => Effect.Effect<WaitReason | undefined>
}

/**
 * The dispatcher's one decision for the trigger `next`: start it, or why it waits. `waiter` is
 * set for a job's retry waiting for the slot, `held` for a trigger put back until a time.
 */
export const decide = (pass: Pass, next: QueuedTrigger, waiter: Waiter | undefined, held: Carried | undefined) =>
  Effect.gen(function*() {
    if (pass.stopping) return WaitReason.Stopping()
    const blocked = yield* pass.blocked(next.agent)
    if (blocked !== undefined) return blocked
    if (waiter === undefined && held !== undefined && held.notBefore > pass.now) return WaitReason.HeldBack({ until: isoSeconds(held.notBefore) })
    if (pass.busy.has(next.agent)) return WaitReason.AgentBusy({ agent: next.agent, trigger: null, since: null })
    const cap = pass.capacity.effective_cap
    if (pass.busy.size >= cap) {
      return WaitReason.CapReached({ running: pass.busy.size, cap, max: pass.capacity.max_concurrent, reason: pass.capacity.reason })
    }
    return "start" as const
  })

/** `start` runs a claimed trigger's job (with what it carried over), in a fiber of the scheduler's. */
export const make = (events: JobEvents, start: (claimed: ClaimedTrigger, carried: Carried | undefined) => Effect.Effect<unknown>) =>
  Effect.gen(function*() {
    const config = yield* DaemonConfig
    const { settings } = config
    const queue = yield* TriggerQueue
    const slots = yield* AgentSlots
    const state = yield* DaemonState
    const usage = yield* Usage
    const capacity = yield* Capacity
    const scope = yield* Effect.scope
    const wakeups = yield* Queue.sliding<void>(1)
    // Each pass, for what reports the queue's state (`waiting.json`).
    const passes = yield* PubSub.sliding<void>(1)
    const wake = Queue.offer(wakeups, undefined).pipe(Effect.asVoid)
    const current = yield* Ref.make<DispatchState>({ waiters: new Map(), carried: new Map(), stopping: false })
    // The budgets already announced, by day and what they cover: one notification each.
    const announced = yield* Ref.make<ReadonlySet<string>>(new Set())
    const budgeted = settings.dailyBudgetUsd > 0 || Object.keys(settings.agentBudgetsUsd).length > 0

    /** A spent daily budget that covers `agent`, announced the first time it is found. */
    const budgetOf = (agent: string, cost: DayCost, now: number) =>
      Effect.gen(function*() {
        const suffix = agentVariableSuffix(agent)
        const own = settings.agentBudgetsUsd[suffix]
        // The budget is the key's (`DAILY_BUDGET_USD_<AGENT>`): every agent written so shares it, as `status` counts it.
        let agentSpent = 0
        if (own !== undefined) for (const [name, usd] of cost.byAgent) if (agentVariableSuffix(name) === suffix) agentSpent += usd
        const until = isoSeconds(nextUtcDay(now))
        const spent = own !== undefined && agentSpent >= own
          ? WaitReason.Budget({ until, spentUsd: agentSpent, budgetUsd: own, scope: "agent" })
          : settings.dailyBudgetUsd > 0 && cost.totalUsd >= settings.dailyBudgetUsd
          ? WaitReason.Budget({ until, spentUsd: cost.totalUsd, budgetUsd: settings.dailyBudgetUsd, scope: "all" })
          : undefined
        if (spent === undefined) return undefined
        const key = `${dayOf(now)} ${spent.scope === "agent" ? suffix : "*"}`
        if (!(yield* Ref.modify(announced, (keys) => [keys.has(key), new Set(keys).add(key)]))) {
          yield* events.budgetReached(spent.scope === "agent" ? agent : null, spent.spentUsd, spent.budgetUsd, spent.until)
        }
        return spent
      })

    /** What the dispatcher sees now; `blocked` asks the usage pauses and budgets once per agent. */
    const look = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const cost = budgeted ? yield* usage.costToday : undefined
      const seen = new Map<string, WaitReason | undefined>()
      const blocked = (agent: string) =>
        seen.has(agent) ? Effect.succeed(seen.get(agent)) : Effect.gen(function*() {
          const pause = yield* usage.pauseOf(limitKey(settingsFor(config, agent).agentCommand))
          const reason = pause !== undefined
            ? WaitReason.UsageLimit({ until: pause.until, reason: pause.reason })
            : cost === undefined
            ? undefined
            : yield* budgetOf(agent, cost, now)
          seen.set(agent, reason)
          return reason
        })
      return {
        now,
        stopping: (yield* Ref.get(current)).stopping,
        busy: new Set(yield* slots.listBusy),
        capacity: yield* capacity.current,
        blocked
      } satisfies Pass
    })

    const dispatch = Effect.gen(function*() {
      const pass = yield* look
      // Nothing can start: every trigger would wait for this same reason (or a longer one).
      if (pass.stopping || pass.busy.size >= pass.capacity.effective_cap) return
      const { carried, waiters } = yield* Ref.get(current)
      for (const next of merged(yield* queue.pending, waiters.values())) {
        if (pass.busy.size >= pass.capacity.effective_cap || (yield* Ref.get(current)).stopping) break
        const waiter = waiters.get(next.name)
        const held = carried.get(next.name)
        if ((yield* decide(pass, next, waiter, held)) !== "start") continue
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
        pass.busy.add(next.agent)
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

    /**
     * Every trigger that waits, in queue order, with the reason the dispatcher's own decision
     * gives it; at most `limit`. A trigger the next pass would start is `Next`; the ones of its
     * agent after it wait for that agent.
     */
    const waiting = (limit: number) =>
      Effect.gen(function*() {
        const pass = yield* look
        const table = yield* slots.snapshot
        const { carried, waiters } = yield* Ref.get(current)
        const starting = new Map<string, string>()
        const result: Array<Waiting> = []
        for (const next of merged(yield* queue.pending, waiters.values())) {
          if (result.length >= limit) break
          const waiter = waiters.get(next.name)
          const held = carried.get(next.name)
          let why = yield* decide(pass, next, waiter, held)
          if (why === "start") {
            pass.busy.add(next.agent)
            starting.set(next.agent, `${next.name}.trigger`)
            why = WaitReason.Next()
          } else if (why._tag === "AgentBusy") {
            const slot = table[next.agent]
            why = WaitReason.AgentBusy({
              agent: next.agent,
              trigger: starting.get(next.agent) ?? slot?.trigger ?? null,
              since: starting.has(next.agent) ? null : slot?.started_at ?? null
            })
          }
          result.push({
            trigger: `${next.name}.trigger`,
            agent: next.agent,
            ticket: ticketOf(next.trigger),
            attempt: waiter?.attempt ?? held?.attempt ?? 1,
            why
          })
        }
        return result
      })

    return {
      wake,
      waiting,
      /** An element after each pass of the dispatcher. */
      passes: Stream.fromPubSub(passes),
      /** Dispatches at every wake-up (and every change of the queue) until the scope closes. */
      run: Effect.gen(function*() {
        yield* queue.changed.pipe(Effect.zipRight(wake), Effect.forever, Effect.forkScoped)
        yield* capacity.changes.pipe(Stream.runForEach(() => wake), Effect.forkScoped)
        yield* Queue.take(wakeups).pipe(Effect.zipRight(dispatch), Effect.zipRight(PubSub.publish(passes, undefined)), Effect.forever, Effect.forkScoped)
        // A spent daily budget is whole again at the start of each UTC day. The clock is looked at
        // at least once a minute: a timer does not count the time a machine spends asleep.
        if (budgeted) {
          const nextDay = Effect.gen(function*() {
            const day = dayOf(yield* Clock.currentTimeMillis)
            yield* Clock.currentTimeMillis.pipe(
              Effect.flatMap((now) => Effect.sleep(Duration.millis(Math.min(nextUtcDay(now) - now, BUDGET_LOOK_MS)))),
              Effect.zipRight(Clock.currentTimeMillis),
              Effect.repeat({ until: (now) => dayOf(now) !== day })
            )
          })
          yield* nextDay.pipe(Effect.zipRight(wake), Effect.forever, Effect.forkScoped)
        }
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
