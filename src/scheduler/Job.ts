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
 * - `Preempted` (a memory emergency stopped the youngest agent, see `Capacity`): not counted;
 *   the trigger goes back to its place in the queue with its attempts so far;
 * - interruption (the daemon stops): the agent is stopped and the trigger requeued, unless the
 *   agent had already succeeded, in which case it is archived.
 * Between attempts the agent's slot is free; a retry waits for the dispatcher like any trigger.
 * An archive, dead-letter move or requeue the storage refuses is tried again every
 * `PROCESS_MONITOR_INTERVAL` while the daemon runs, without running the agent again; at shutdown
 * it is tried once more and otherwise left claimed for the next start.
 */
import { Clock, Data, Deferred, Duration, Effect, Option, Ref, Schedule, ScheduleDecision } from "effect"
import { DaemonConfig, settingsFor } from "../config/DaemonConfig.js"
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
import { Sessions } from "../state/Sessions.js"
import { limitKey, Usage } from "../state/Usage.js"
import type { LimitSignal } from "../stream/StreamJson.js"
import type { ExitProbe, RunAttempt } from "./Attempt.js"
import { type Carried, type Dispatcher, withEntry } from "./Dispatcher.js"
import { type AttemptResult, type JobEvents, summaryOf } from "./JobEvents.js"

/** The attempt failed; it is retried while attempts are left. */
export class AttemptFailed extends Data.TaggedError("AttemptFailed")<{ readonly attempt: number; readonly result: AttemptResult }> {}
/** The agent hit a usage limit: the attempt does not count. */
export class UsageLimitHit extends Data.TaggedError("UsageLimitHit")<{ readonly attempt: number; readonly limit: LimitSignal }> {}
/** The agent's log could not be opened, so it was not started: the attempt does not count. */
export class LogUnwritable extends Data.TaggedError("LogUnwritable")<{ readonly attempt: number; readonly error: StorageError }> {}

/** A memory emergency stopped the agent: the attempt does not count. */
export class Preempted extends Data.TaggedError("Preempted")<{ readonly attempt: number; readonly reason: string }> {}

export type AttemptEnd = AttemptFailed | UsageLimitHit | LogUnwritable | Preempted

/** Delays between attempts `first`… `maxRetries`: `initial`, doubling from attempt 1 on. */
export const retryPolicy = (initialMs: number, maxRetries: number, first = 1) =>
  Schedule.exponential(Duration.millis(initialMs * 2 ** (first - 1)), 2).pipe(Schedule.intersect(Schedule.recurs(Math.max(0, maxRetries - first))))

export interface JobView {
  readonly name: string
  readonly agent: string
  readonly ticket: string | null
  readonly attempt: number
  readonly phase: "running" | "waiting-retry"
  /** While waiting for a retry: when its delay ends (epoch ms). */
  readonly retryAtMs?: number
}

/** The jobs of the scheduler as `Scheduler.jobs` shows them, by trigger name. */
export type JobViews = Ref.Ref<ReadonlyMap<string, JobView>>

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

/** One job's own values, built when it starts. */
interface JobContext {
  readonly claimed: ClaimedTrigger
  /** The number of its first attempt (more than 1 when earlier ones were carried over). */
  readonly first: number
  readonly job: Ref.Ref<JobState>
  /** How to learn the exit of the current attempt's agent. */
  readonly exitProbe: Ref.Ref<ExitProbe>
  /** Completed (with the reason) to stop the running attempt for a memory emergency. */
  readonly preempt: Deferred.Deferred<string>
}

/** A running attempt, as a memory emergency chooses the youngest. */
interface RunningAttempt {
  readonly agent: string
  readonly sinceMs: number
  readonly preempt: Deferred.Deferred<string>
}

export const make = (events: JobEvents, dispatcher: Dispatcher, runAttempt: RunAttempt, views: JobViews) =>
  Effect.gen(function*() {
    const config = yield* DaemonConfig
    const { settings } = config
    const queue = yield* TriggerQueue
    const slots = yield* AgentSlots
    const state = yield* DaemonState
    const usage = yield* Usage
    const sessions = yield* Sessions
    /** The usage-limit pause that covers the agent: the one of its command line. */
    const commandKey = (agent: string) => limitKey(settingsFor(config, agent).agentCommand)
    const storageRetries = Schedule.spaced(Duration.millis(settings.monitorIntervalMs))
    const running = yield* Ref.make<ReadonlyMap<string, RunningAttempt>>(new Map())

    const setView = ({ claimed }: JobContext, view: Omit<JobView, "name" | "agent" | "ticket"> | undefined) =>
      Ref.update(views, (all) =>
        withEntry(
          all,
          claimed.queued.name,
          view && { name: claimed.queued.name, agent: claimed.queued.agent, ticket: ticketOf(claimed.queued.trigger), ...view }
        ))

    /** Puts the trigger back in the queue; fails (the file left claimed) when the storage refuses. */
    const requeue = (claimed: ClaimedTrigger, why: string) =>
      queue.requeue(claimed).pipe(
        Effect.zipRight(state.finished(`${claimed.queued.name}.trigger`, false)),
        Effect.zipRight(events.requeued(claimed, why))
      )

    const archiveDone = (claimed: ClaimedTrigger, attempt: number) =>
      queue.complete(claimed, { _tag: "Done" }).pipe(
        Effect.tap((archived) => events.archived(claimed, attempt, archived)),
        Effect.zipRight(state.finished(`${claimed.queued.name}.trigger`, true)),
        Effect.zipRight(sessions.forget(`${claimed.queued.name}.trigger`))
      )

    /** The session the trigger's next attempt resumes: its last attempt's, when its agent resumes on retry. */
    const resumeOf = (claimed: ClaimedTrigger) =>
      Effect.map(sessions.get(`${claimed.queued.name}.trigger`), (record) =>
        settingsFor(config, claimed.queued.agent).resumeOnRetry && record?.agent === claimed.queued.agent ? record.session_id : undefined)

    /**
     * A step that settles the trigger's file (archive, dead-letter move or requeue), tried every
     * `PROCESS_MONITOR_INTERVAL` until the storage takes it, with an ERROR line for each refusal.
     */
    const settle = <A>({ job }: JobContext, step: Effect.Effect<A, StorageError>, what: string) =>
      step.pipe(
        Effect.zipLeft(Ref.update(job, (s) => ({ ...s, settled: true }))),
        Effect.uninterruptible,
        Effect.tapError((error) => events.storageFailed(error, what)),
        Effect.retry(storageRetries),
        // The schedule never ends: no failure is left.
        Effect.orDie
      )

    /** The next attempt: its slot, its run, and what its end means. */
    const attemptOnce = (ctx: JobContext) =>
      Effect.flatMap(Ref.updateAndGet(ctx.job, (s) => ({ ...s, attempt: s.attempt + 1 })), ({ attempt, waitingSinceMs }) => {
        const { agent, name, trigger } = ctx.claimed.queued
        const attributes = { agent, trigger: `${name}.trigger`, ticket: ticketOf(trigger) ?? "", trace_id: trigger.trace_id ?? "", attempt }
        return spanSince("starforge.attempt", waitingSinceMs, { parent: jobParent(trigger.trace_id), attributes })((span) =>
          Effect.gen(function*() {
            // The dispatcher reserved the slot for the first attempt; a retry waits for it.
            yield* attempt > ctx.first
              ? spanSince("queue wait", waitingSinceMs)(() => dispatcher.awaitSlot(ctx.claimed.queued, attempt))
              : endedSpan("queue wait", waitingSinceMs)
            yield* setView(ctx, { attempt, phase: "running" })
            const sinceMs = yield* Clock.currentTimeMillis
            yield* Ref.update(running, (all) => withEntry(all, name, { agent, sinceMs, preempt: ctx.preempt }))
            const resume = yield* resumeOf(ctx.claimed)
            if (resume !== undefined) span.attribute("resumed_session", resume)
            const result = yield* runAttempt(ctx.claimed, attempt, ctx.exitProbe, resume).pipe(
              // Counted before the slot is free: the next dispatch pass sees a budget this attempt spent.
              Effect.tap(({ output: { progress } }) =>
                usage.recordAttempt({ agent, costUsd: progress.cost_usd, tokensIn: progress.tokens_in, tokensOut: progress.tokens_out })),
              Effect.ensuring(Effect.zipRight(slots.markIdle(agent), dispatcher.wake)),
              Effect.mapError((error) => new LogUnwritable({ attempt, error })),
              Effect.raceFirst(Effect.flatMap(Deferred.await(ctx.preempt), (reason) => new Preempted({ attempt, reason }))),
              Effect.ensuring(Ref.update(running, (all) => withEntry(all, name, undefined)))
            )
            span.attribute("outcome", outcomeOf(result.outcome))
            span.attribute("exit_code", exitCodeOf(result.outcome) ?? "")
            span.attribute("signal", signalOf(result.outcome) ?? "")
            if (result.resources !== undefined) {
              span.attribute("peak_rss_bytes", result.resources.peakRssBytes)
              span.attribute("cpu_seconds", Math.round(result.resources.cpuSeconds * 100) / 100)
            }
            const progress = result.output.progress
            if (result.output.limit !== null && !isSuccess(result.outcome)) {
              return yield* new UsageLimitHit({ attempt, limit: result.output.limit })
            }
            yield* Ref.update(ctx.job, (s) => ({ ...s, costs: s.costs + (progress.cost_usd ?? 0), timestamps: [...s.timestamps, isoSeconds(result.startedMs)] }))
            if (isSuccess(result.outcome)) {
              yield* usage.succeeded(commandKey(agent))
              yield* events.succeeded(ctx.claimed, attempt, result)
              // Archived inside the attempt: a stage of its span.
              return yield* settle(ctx, archiveDone(ctx.claimed, attempt), `${agent} succeeded, so it is not run again: archiving ${name}.trigger`).pipe(
                Effect.withSpan("archive", NO_STACK)
              )
            }
            yield* events.failed(ctx.claimed, attempt, result)
            yield* setView(ctx, { attempt, phase: "waiting-retry" })
            const now = yield* Clock.currentTimeMillis
            yield* Ref.update(ctx.job, (s) => ({ ...s, waitingSinceMs: now }))
            return yield* new AttemptFailed({ attempt, result })
          }).pipe(
            Effect.tapErrorTag("LogUnwritable", () => Effect.sync(() => span.attribute("outcome", "error"))),
            Effect.tapErrorTag("Preempted", () => Effect.sync(() => span.attribute("outcome", "interrupted"))),
            Effect.onInterrupt(() => Effect.sync(() => span.attribute("outcome", "interrupted")))
          ))
      })

    /** The retry schedule from the job's first attempt on, saying each retry in the log. */
    const retries = (ctx: JobContext) => {
      const own = settingsFor(config, ctx.claimed.queued.agent)
      return retryPolicy(own.initialRetryDelayMs, own.maxRetries, ctx.first).pipe(
        // A stop at AGENT_MAX_TURNS is final: a retry would give the agent as many turns again.
        Schedule.whileInput((end: AttemptEnd) => end._tag === "AttemptFailed" && end.result.outcome._tag !== "OverBudget"),
        Schedule.onDecision(([delay], decision) =>
          ScheduleDecision.isContinue(decision)
            ? Effect.gen(function*() {
              const { attempt } = yield* Ref.get(ctx.job)
              const now = yield* Clock.currentTimeMillis
              yield* setView(ctx, { attempt: attempt + 1, phase: "waiting-retry", retryAtMs: now + Duration.toMillis(delay) })
              // A pass of the dispatcher reports the delay in `waiting.json`.
              yield* dispatcher.wake
              yield* events.retrying(ctx.claimed, attempt + 1, delay, yield* resumeOf(ctx.claimed))
            })
            : Effect.void)
      )
    }

    /** The last attempt failed: the trigger goes to the dead-letter queue with what it cost. */
    const deadLetter = (ctx: JobContext, { attempt, result }: AttemptFailed) =>
      Effect.gen(function*() {
        const { agent, name, trigger } = ctx.claimed.queued
        const { costs, timestamps } = yield* Ref.get(ctx.job)
        const reason = `failed ${attempt} time${attempt === 1 ? "" : "s"}; last attempt ${describeOutcome(result.outcome)}`
        const totalCost = Math.round(costs * 1e6) / 1e6
        const meta = {
          failure_reason: reason,
          exit_code: exitCodeOf(result.outcome),
          signal: signalOf(result.outcome),
          attempts: attempt,
          retry_timestamps: timestamps,
          dlq_entry_timestamp: isoSeconds(yield* Clock.currentTimeMillis),
          agent,
          trace_id: trigger.trace_id ?? null,
          last_log: result.logFile,
          failure_kind: failureKind(result.outcome),
          ...summaryOf(result.output, result.seconds),
          total_cost_usd: totalCost
        }
        const move = queue.complete(ctx.claimed, { _tag: "DeadLetter", meta }).pipe(
          Effect.tap((moved) => events.deadLettered(ctx.claimed, attempt, moved, reason, totalCost)),
          Effect.zipRight(state.finished(`${name}.trigger`, false)),
          Effect.zipRight(sessions.forget(`${name}.trigger`))
        )
        yield* settle(ctx, move, `moving ${name}.trigger to the dead-letter queue`).pipe(Effect.withSpan("archive", NO_STACK))
      })

    /**
     * An attempt that does not count: the trigger goes back to its place in the queue with its
     * attempts so far, and is not dispatched again before `notBefore`.
     */
    const putBack = (ctx: JobContext, attempt: number, notBefore: number, why: string) =>
      Effect.gen(function*() {
        const { timestamps } = yield* Ref.get(ctx.job)
        // Carried before the file is back in the queue, so the dispatcher never sees it without.
        yield* dispatcher.carry(ctx.claimed.queued.name, { attempt, timestamps, notBefore })
        yield* settle(ctx, requeue(ctx.claimed, why), `putting ${ctx.claimed.queued.name}.trigger back in the queue`)
      })

    /** The agent hit a usage limit: agents with its command pause, the trigger waits for the end of the pause. */
    const pauseForLimit = (ctx: JobContext, { attempt, limit }: UsageLimitHit) =>
      Effect.gen(function*() {
        const { agent, name } = ctx.claimed.queued
        const pause = yield* usage.limitHit({ command: commandKey(agent), agent, trigger: `${name}.trigger`, reason: limit.message, resetsAtMs: limit.resetsAtMs })
        yield* events.limitHit(ctx.claimed, attempt, limit.message, pause)
        yield* putBack(ctx, attempt, Date.parse(pause.until), "hit a usage limit (attempt not counted)")
      })

    /** A memory emergency stopped the agent: the trigger goes back to its place in the queue. */
    const preempted = (ctx: JobContext, { attempt, reason }: Preempted) =>
      Effect.gen(function*() {
        yield* events.preempted(ctx.claimed, attempt, reason)
        yield* putBack(ctx, attempt, yield* Clock.currentTimeMillis, "stopped to free memory (attempt not counted)")
      })

    /** The agent's log could not be opened: tried again after `PROCESS_MONITOR_INTERVAL`. */
    const holdBack = (ctx: JobContext, { attempt, error }: LogUnwritable) =>
      Effect.gen(function*() {
        yield* events.notStarted(ctx.claimed, attempt, error)
        yield* putBack(ctx, attempt, (yield* Clock.currentTimeMillis) + settings.monitorIntervalMs, "not started")
      })

    /**
     * The daemon stops: the trigger goes back to the queue, unless its file was settled already,
     * or its agent had succeeded (then it is archived, one try only: a shutdown does not wait for
     * the disk; left claimed, the next start requeues it).
     */
    const stopped = (ctx: JobContext) =>
      Effect.gen(function*() {
        const { attempt, settled } = yield* Ref.get(ctx.job)
        if (settled) return
        const exited = yield* Effect.flatten(Ref.get(ctx.exitProbe))
        const step = Option.isSome(exited) && isSuccess(exited.value)
          ? Effect.asVoid(archiveDone(ctx.claimed, attempt))
          : requeue(ctx.claimed, "interrupted by shutdown")
        yield* step.pipe(Effect.catchAll((error) => events.leftAsItIs(error, ctx.claimed.file)))
      })

    /** All attempts of one claimed trigger, then its archive, its dead-letter move or its return to the queue. */
    const run = (claimed: ClaimedTrigger, carried: Carried | undefined) =>
      Effect.gen(function*() {
        const ctx: JobContext = {
          claimed,
          first: carried?.attempt ?? 1,
          job: yield* Ref.make<JobState>({
            attempt: (carried?.attempt ?? 1) - 1,
            timestamps: carried?.timestamps ?? [],
            costs: 0,
            waitingSinceMs: Math.min(Number(claimed.queued.createdNs / 1_000_000n), yield* Clock.currentTimeMillis),
            settled: false
          }),
          exitProbe: yield* Ref.make<ExitProbe>(Effect.succeedNone),
          preempt: yield* Deferred.make<string>()
        }
        yield* attemptOnce(ctx).pipe(
          Effect.retry(retries(ctx)),
          Effect.catchTags({
            AttemptFailed: (end) => deadLetter(ctx, end),
            UsageLimitHit: (end) => pauseForLimit(ctx, end),
            LogUnwritable: (end) => holdBack(ctx, end),
            Preempted: (end) => preempted(ctx, end)
          }),
          Effect.onInterrupt(() => stopped(ctx)),
          Effect.ensuring(setView(ctx, undefined))
        )
      })

    return {
      run,
      /** Stops the attempt that started last, for `reason`; the agent it ran, or none when nothing runs. */
      preemptYoungest: (reason: string) =>
        Effect.gen(function*() {
          let youngest: RunningAttempt | undefined
          for (const attempt of (yield* Ref.get(running)).values()) {
            if (youngest === undefined || attempt.sinceMs > youngest.sinceMs) youngest = attempt
          }
          if (youngest === undefined) return Option.none<string>()
          yield* Deferred.succeed(youngest.preempt, reason)
          return Option.some(youngest.agent)
        })
    }
  })

export type Jobs = Effect.Effect.Success<ReturnType<typeof make>>
