/**
 * One claimed trigger's attempts and its archive. Attempts run under `Effect.retry` with the retry
 * schedule (`INITIAL_RETRY_DELAY`, doubling, `MAX_RETRIES` attempts in all); what ends an attempt
 * is a typed value:
 * - success: the trigger is archived in `processed/`;
 * - `AttemptFailed` (exit code, signal, timeout, stall, a command that cannot start): retried,
 *   and once the attempts are used up the trigger goes to the dead-letter queue;
 * - `UsageLimitHit` (the agent hit its provider's limit) and `LogUnwritable` (its log cannot be
 *   opened: the agent was not started): not counted; the trigger goes back to its place in the
 *   queue with its attempts so far;
 * - interruption (the daemon stops): the agent is stopped and the trigger requeued, unless the
 *   agent had already succeeded, in which case it is archived.
 * Between attempts the agent's slot is free; a retry waits for the dispatcher like any trigger.
 * An archive or dead-letter move the storage refuses is tried again every
 * `PROCESS_MONITOR_INTERVAL`, without running the agent again.
 */
import { Clock, Data, Duration, Effect, Either, Option, Ref, Schedule, ScheduleDecision } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import type { StorageError } from "../domain/errors.js"
import { describeOutcome, exitCodeOf, failureKind, isSuccess, signalOf } from "../domain/Outcome.js"
import { isoSeconds } from "../domain/time.js"
import { ticketOf } from "../domain/Trigger.js"
import { endedSpan, jobParent, NO_STACK, spanSince } from "../observability/Tracing.js"
import type { ClaimedTrigger } from "../queue/TriggerQueue.js"
import { TriggerQueue } from "../queue/TriggerQueue.js"
import { AgentSlots } from "../slots/AgentSlots.js"
import { DaemonState } from "../state/DaemonState.js"
import { outcomeOf } from "../state/History.js"
import { Usage } from "../state/Usage.js"
import type { LimitSignal } from "../stream/StreamJson.js"
import type { ExitProbe, RunAttempt } from "./Attempt.js"
import type { Carried, Dispatcher } from "./Dispatcher.js"
import { type AttemptResult, type JobEvents, summaryOf } from "./JobEvents.js"

/** The attempt failed; it is retried while attempts are left. */
export class AttemptFailed extends Data.TaggedError("AttemptFailed")<{ readonly attempt: number; readonly result: AttemptResult }> {}
/** The agent hit a usage limit: the attempt does not count. */
export class UsageLimitHit extends Data.TaggedError("UsageLimitHit")<{ readonly attempt: number; readonly limit: LimitSignal }> {}
/** The agent's log could not be opened, so it was not started: the attempt does not count. */
export class LogUnwritable extends Data.TaggedError("LogUnwritable")<{ readonly attempt: number; readonly error: StorageError }> {}

export type AttemptEnd = AttemptFailed | UsageLimitHit | LogUnwritable

/** Delays between attempts `first`… `maxRetries`: `initial`, doubling from attempt 1 on. */
export const retryPolicy = (initialMs: number, maxRetries: number, first = 1) =>
  Schedule.exponential(Duration.millis(initialMs * 2 ** (first - 1)), 2).pipe(Schedule.intersect(Schedule.recurs(Math.max(0, maxRetries - first))))

export interface JobView {
  readonly name: string
  readonly agent: string
  readonly attempt: number
  readonly phase: "running" | "waiting-retry"
}

/** The jobs of the scheduler as `Scheduler.jobs` shows them, by trigger name. */
export type JobViews = Ref.Ref<ReadonlyMap<string, JobView>>

const withView = (views: ReadonlyMap<string, JobView>, name: string, view: JobView | undefined): ReadonlyMap<string, JobView> => {
  const next = new Map(views)
  if (view === undefined) next.delete(name)
  else next.set(name, view)
  return next
}

/** Where the job is: one value, changed only with `Ref.update`. */
interface JobState {
  /** The attempt running, or the last one. */
  readonly attempt: number
  /** Start times of the attempts that counted. */
  readonly timestamps: ReadonlyArray<string>
  readonly costs: number
  /** Since when the next attempt has been waiting (the trigger's arrival, then each failure). */
  readonly waitingSinceMs: number
  /** Archived, dead-lettered or requeued: a stop must leave the trigger's file alone. */
  readonly settled: boolean
}

export const make = (events: JobEvents, dispatcher: Dispatcher, runAttempt: RunAttempt, views: JobViews) =>
  Effect.gen(function*() {
    const { settings } = yield* DaemonConfig
    const queue = yield* TriggerQueue
    const slots = yield* AgentSlots
    const state = yield* DaemonState
    const usage = yield* Usage
    const commandKey = settings.agentCommand.join(" ")

    const requeue = (claimed: ClaimedTrigger, why: string) =>
      queue.requeue(claimed).pipe(
        Effect.zipRight(state.finished(`${claimed.queued.name}.trigger`, false)),
        Effect.zipRight(events.requeued(claimed, why)),
        Effect.catchAll((error) => events.leftAsItIs(error, claimed.file))
      )

    const archiveDone = (claimed: ClaimedTrigger, attempt: number) =>
      queue.complete(claimed, { _tag: "Done" }).pipe(
        Effect.tap((archived) => events.archived(claimed, attempt, archived)),
        Effect.zipRight(state.finished(`${claimed.queued.name}.trigger`, true))
      )

    return (claimed: ClaimedTrigger, carried: Carried | undefined) => {
      const { agent, name, trigger } = claimed.queued
      const first = carried?.attempt ?? 1
      const setView = (attempt: number, phase: JobView["phase"]) =>
        Ref.update(views, (all) => withView(all, name, { name, agent, attempt, phase }))
      return Effect.gen(function*() {
        const job = yield* Ref.make<JobState>({
          attempt: first - 1,
          timestamps: carried?.timestamps ?? [],
          costs: 0,
          waitingSinceMs: Math.min(Number(claimed.queued.createdNs / 1_000_000n), yield* Clock.currentTimeMillis),
          settled: false
        })
        const exitProbe = yield* Ref.make<ExitProbe>(Effect.succeedNone)
        return yield* Effect.gen(function*() {

        /** A step that settles the trigger's file, tried until the storage takes it. */
        const settle = <A>(step: Effect.Effect<A, StorageError>, what: string) =>
          step.pipe(
            Effect.zipLeft(Ref.update(job, (s) => ({ ...s, settled: true }))),
            Effect.uninterruptible,
            Effect.tapError((error) => Effect.zipRight(events.storageFailed(error, what), Effect.sleep(Duration.millis(settings.monitorIntervalMs)))),
            Effect.eventually
          )

        const parent = jobParent(trigger.trace_id)
        const attributes = { agent, trigger: `${name}.trigger`, ticket: ticketOf(trigger) ?? "", trace_id: trigger.trace_id ?? "" }
        const once = Effect.flatMap(Ref.updateAndGet(job, (s) => ({ ...s, attempt: s.attempt + 1 })), ({ attempt, waitingSinceMs }) =>
          spanSince("starforge.attempt", waitingSinceMs, { parent, attributes: { ...attributes, attempt } })((span) =>
            Effect.gen(function*() {
              // The dispatcher reserved the slot for the first attempt; a retry waits for it.
              yield* attempt > first
                ? spanSince("queue wait", waitingSinceMs)(() => dispatcher.awaitSlot(claimed.queued, attempt))
                : endedSpan("queue wait", waitingSinceMs)
              yield* setView(attempt, "running")
              const result = yield* runAttempt(claimed, attempt, exitProbe).pipe(
                Effect.ensuring(Effect.zipRight(slots.markIdle(agent), dispatcher.wake)),
                Effect.mapError((error) => new LogUnwritable({ attempt, error }))
              )
              span.attribute("outcome", outcomeOf(result.outcome))
              span.attribute("exit_code", exitCodeOf(result.outcome) ?? "")
              span.attribute("signal", signalOf(result.outcome) ?? "")
              const progress = result.output.progress
              yield* usage.recordAttempt({ agent, costUsd: progress.cost_usd, tokensIn: progress.tokens_in, tokensOut: progress.tokens_out })
              if (result.output.limit === null) {
                yield* Ref.update(job, (s) => ({ ...s, costs: s.costs + (progress.cost_usd ?? 0), timestamps: [...s.timestamps, isoSeconds(result.startedMs)] }))
              }
              if (isSuccess(result.outcome)) {
                yield* usage.succeeded(commandKey)
                yield* events.succeeded(claimed, attempt, result)
                return yield* settle(archiveDone(claimed, attempt), `${agent} succeeded, so it is not run again: archiving ${name}.trigger`).pipe(
                  Effect.withSpan("archive", NO_STACK)
                )
              }
              if (result.output.limit !== null) return yield* new UsageLimitHit({ attempt, limit: result.output.limit })
              yield* events.failed(claimed, attempt, result)
              yield* setView(attempt, "waiting-retry")
              const now = yield* Clock.currentTimeMillis
              yield* Ref.update(job, (s) => ({ ...s, waitingSinceMs: now }))
              return yield* new AttemptFailed({ attempt, result })
            }).pipe(
              Effect.tapErrorTag("LogUnwritable", () => Effect.sync(() => span.attribute("outcome", "error"))),
              Effect.onInterrupt(() => Effect.sync(() => span.attribute("outcome", "interrupted")))
            )
          ))

        const retries = retryPolicy(settings.initialRetryDelayMs, settings.maxRetries, first).pipe(
          Schedule.whileInput((end: AttemptEnd) => end._tag === "AttemptFailed"),
          Schedule.onDecision(([delay], decision) =>
            ScheduleDecision.isContinue(decision)
              ? Effect.flatMap(Ref.get(job), (s) => events.retrying(claimed, s.attempt + 1, delay))
              : Effect.void)
        )
        // A success has archived its trigger inside its attempt (a stage of its span).
        const ended = yield* once.pipe(Effect.retry(retries), Effect.either)
        if (Either.isRight(ended)) return
        const end = ended.left
        const { costs, timestamps } = yield* Ref.get(job)
        const now = yield* Clock.currentTimeMillis
        switch (end._tag) {
          case "AttemptFailed": {
            const { attempt, result } = end
            const reason = `failed ${attempt} time${attempt === 1 ? "" : "s"}; last attempt ${describeOutcome(result.outcome)}`
            const totalCost = Math.round(costs * 1e6) / 1e6
            const deadLetter = queue.complete(claimed, {
              _tag: "DeadLetter",
              meta: {
                failure_reason: reason,
                exit_code: exitCodeOf(result.outcome),
                signal: signalOf(result.outcome),
                attempts: attempt,
                retry_timestamps: timestamps,
                dlq_entry_timestamp: isoSeconds(now),
                agent,
                trace_id: trigger.trace_id ?? null,
                last_log: result.logFile,
                failure_kind: failureKind(result.outcome),
                ...summaryOf(result.output, result.seconds),
                total_cost_usd: totalCost
              }
            }).pipe(
              Effect.tap((moved) => events.deadLettered(claimed, attempt, moved, reason, totalCost)),
              Effect.zipRight(state.finished(`${name}.trigger`, false))
            )
            return yield* settle(deadLetter, `moving ${name}.trigger to the dead-letter queue`).pipe(Effect.withSpan("archive", NO_STACK))
          }
          case "UsageLimitHit": {
            const pause = yield* usage.limitHit({
              command: commandKey,
              agent,
              trigger: `${name}.trigger`,
              reason: end.limit.message,
              resetsAtMs: end.limit.resetsAtMs
            })
            yield* events.limitHit(claimed, end.attempt, end.limit.message, pause)
            // Carried before the file is back in the queue, so the dispatcher never sees it without.
            yield* dispatcher.carry(name, { attempt: end.attempt, timestamps, notBefore: Date.parse(pause.until) })
            return yield* settle(requeue(claimed, "hit a usage limit (attempt not counted)"), `putting ${name}.trigger back in the queue`)
          }
          case "LogUnwritable": {
            yield* events.notStarted(claimed, end.attempt, end.error)
            yield* dispatcher.carry(name, { attempt: end.attempt, timestamps, notBefore: now + settings.monitorIntervalMs })
            return yield* settle(requeue(claimed, "not started"), `putting ${name}.trigger back in the queue`)
          }
        }
      }).pipe(
        Effect.onInterrupt(() => Effect.gen(function*() {
          const { attempt, settled } = yield* Ref.get(job)
          if (settled) return
          const exited = yield* Effect.flatten(Ref.get(exitProbe))
          // A stop that lands after the agent succeeded archives it, one try only: a shutdown
          // does not wait for the disk. Left claimed, the next start requeues it.
          yield* Option.isSome(exited) && isSuccess(exited.value)
            ? archiveDone(claimed, attempt).pipe(Effect.catchAll((error) => events.leftAsItIs(error, claimed.file)))
            : requeue(claimed, "interrupted by shutdown")
        }))
      )
      }).pipe(Effect.ensuring(Ref.update(views, (all) => withView(all, name, undefined))))
    }
  })

export type RunJob = Effect.Effect.Success<ReturnType<typeof make>>
