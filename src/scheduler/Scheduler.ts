/**
 * The scheduler: one dispatcher fiber decides what runs next, one fiber per claimed trigger runs
 * its attempts.
 *
 * - Dispatch is first-runnable in queue order: a trigger whose agent is busy stays queued and
 *   never blocks the triggers of other agents. One slot per agent; at most `MAX_CONCURRENT_AGENTS`
 *   busy slots (1 in sequential mode). The global cap is counted by this single dispatcher from the
 *   slot table, which is what makes "which trigger runs next" one decision in one place.
 * - A job's attempts are bounded by `AGENT_TIMEOUT`; failures are retried after the delays of an
 *   exponential `Schedule` starting at `INITIAL_RETRY_DELAY`, up to `MAX_RETRIES` attempts in
 *   total, then the trigger goes to the dead-letter queue. Between attempts the agent's slot is
 *   free; the retry waits for the dispatcher like any queued trigger, in its original place.
 * - Closing the scheduler's scope interrupts every job: its process group is stopped and its
 *   trigger is put back in the queue (the attempt is not counted).
 * - Storage faults (disk full, a directory not writable) never lose a trigger nor count against
 *   it: an agent whose log cannot be opened is not started, its trigger goes back to the queue
 *   with its attempts so far and is tried again after `PROCESS_MONITOR_INTERVAL`; an archive or
 *   dead-letter move that fails is tried again at that interval, without running the agent again.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Cause, Chunk, Clock, Context, Deferred, Duration, Effect, Either, Fiber, FiberSet, Layer, Option, Queue, Schedule, Tracer } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import type { StorageError } from "../domain/errors.js"
import {
  describeOutcome,
  ExitStatus,
  exitCodeOf,
  failureKind,
  formatSeconds,
  isSuccess,
  signalOf
} from "../domain/Outcome.js"
import { worktreeOf } from "../domain/ProjectPaths.js"
import { formatDuration, isoSeconds } from "../domain/time.js"
import { buildPrompt, compareOrder, ticketOf, type Trigger } from "../domain/Trigger.js"
import { AgentProcess } from "../process/AgentProcess.js"
import { watchOutput } from "../stream/AgentOutput.js"
import { describeProgress, formatCost, type LimitSignal, type OutputState, reportedError } from "../stream/StreamJson.js"
import { yieldToEventLoop } from "../io/eventLoop.js"
import { freeName } from "../io/freeName.js"
import { type ClaimedTrigger, type QueuedTrigger, TriggerQueue } from "../queue/TriggerQueue.js"
import { AgentSlots } from "../slots/AgentSlots.js"
import { DaemonLog } from "../observability/DaemonLog.js"
import { DaemonState } from "../state/DaemonState.js"
import { entryOf, History, outcomeOf } from "../state/History.js"
import { endedSpan, jobParent, NO_STACK, spanSince } from "../observability/Tracing.js"
import { Usage } from "../state/Usage.js"
import { Notifier, type NotifyKind } from "../notify/Notifier.js"

export type JobPhase = "running" | "waiting-retry"

export interface JobView {
  readonly name: string
  readonly agent: string
  readonly attempt: number
  readonly phase: JobPhase
}

export interface SchedulerShape {
  /** Asks the dispatcher to look at the queue again. */
  readonly wake: Effect.Effect<void>
  /** The claimed triggers, running or waiting for a retry. */
  readonly jobs: Effect.Effect<ReadonlyArray<JobView>>
}

export class Scheduler extends Context.Tag("starforge/Scheduler")<Scheduler, SchedulerShape>() {}

/** The agent's log for one attempt: `C/logs/<agent>-<epoch seconds>.log`, never reused. */
export const agentLogFile = (logs: string, agent: string, nowMs: number): string =>
  freeName(logs, `${agent}-${Math.floor(nowMs / 1000)}.log`)

/** Delays between attempts: `initial`, then doubling; `maxRetries` attempts in total. */
export const retryPolicy = (initialMs: number, maxRetries: number) =>
  Schedule.exponential(Duration.millis(initialMs), 2).pipe(Schedule.intersect(Schedule.recurs(maxRetries - 1)))

/** The waits before attempts 2…`maxRetries`, as the retry policy spaces them. */
export const retryDelays = (initialMs: number, maxRetries: number): ReadonlyArray<Duration.Duration> =>
  Chunk.toReadonlyArray(
    Effect.runSync(Schedule.run(Schedule.delays(retryPolicy(initialMs, maxRetries)), 0, Array.from({ length: maxRetries - 1 })))
  ).slice(0, maxRetries - 1)

/** The process's exit, corrected by what the agent itself reported in its output. */
export const reportedOutcome = (status: ExitStatus, output: OutputState): ExitStatus => {
  const reported = reportedError(output)
  return reported !== undefined && isSuccess(status) ? ExitStatus.ReportedError({ code: 0, message: reported }) : status
}

/** The job summary of one attempt, for the `FINISH` line, the DLQ meta and notifications. */
export interface AttemptSummary {
  readonly duration_seconds: number
  readonly turns: number
  readonly cost_usd: number | null
  readonly session_id: string | null
  readonly tokens_in: number
  readonly tokens_out: number
  readonly model: string | null
}

export const summaryOf = (output: OutputState, seconds: number): AttemptSummary => ({
  duration_seconds: Math.round(seconds * 10) / 10,
  turns: output.progress.turns,
  cost_usd: output.progress.cost_usd,
  session_id: output.progress.session_id,
  tokens_in: output.progress.tokens_in,
  tokens_out: output.progress.tokens_out,
  model: output.progress.model
})

/** `: 3 turns, $0.0123, session abc` — empty for an agent that wrote no stream-json. */
const summaryText = (output: OutputState): string => {
  if (output.jsonLines === 0) return ""
  const p = output.progress
  const parts = [`${p.turns} turn${p.turns === 1 ? "" : "s"}`]
  if (p.cost_usd !== null) parts.push(formatCost(p.cost_usd))
  if (p.session_id) parts.push(`session ${p.session_id}`)
  return `: ${parts.join(", ")}`
}

/** ` (ticket 52)` or nothing. */
const ticketText = (trigger: Trigger): string => {
  const ticket = ticketOf(trigger)
  return ticket ? ` (ticket ${ticket})` : ""
}

interface RetryWaiter {
  readonly queued: QueuedTrigger
  readonly attempt: number
  readonly granted: Deferred.Deferred<void>
}

/**
 * Runs a job with nothing in its context but the current span. The scheduler took every service
 * it needs when it was built, and Effect copies the context at each span and each finalizer of
 * a job (the daemon's holds 20 services): with all of it, that was about 14% of what a job
 * allocated.
 */
const withJobContext = <A, E>(job: Effect.Effect<A, E>): Effect.Effect<A, E> =>
  Effect.mapInputContext(job, (context: Context.Context<never>) =>
    Option.match(Context.getOption(context as Context.Context<Tracer.ParentSpan>, Tracer.ParentSpan), {
      onNone: () => Context.empty(),
      onSome: (span) => Context.make(Tracer.ParentSpan, span)
    }) as Context.Context<never>)

export const make = Effect.gen(function*() {
  const { paths, settings } = yield* DaemonConfig
  const queue = yield* TriggerQueue
  const slots = yield* AgentSlots
  const agentProcess = yield* AgentProcess
  const log = yield* DaemonLog
  const state = yield* DaemonState
  const history = yield* History
  const usage = yield* Usage
  const notifier = yield* Notifier
  /** The notification of an event of a claimed trigger. */
  const notify = (claimed: ClaimedTrigger, kind: NotifyKind, attempt: number | null, message: string, details: Record<string, unknown> = {}) =>
    notifier.notify({
      kind,
      agent: claimed.queued.agent,
      trigger: `${claimed.queued.name}.trigger`,
      ticket: ticketOf(claimed.queued.trigger) ?? null,
      attempt,
      message,
      details: { trace_id: claimed.queued.trigger.trace_id ?? null, ...details }
    })

  const cap = settings.parallel ? settings.maxConcurrent : 1
  const delays = retryDelays(settings.initialRetryDelayMs, settings.maxRetries)
  const [command, ...commandArgs] = settings.agentCommand
  // Usage limits pause every agent that runs the same command line; today all agents share one.
  const commandKey = settings.agentCommand.join(" ")
  const wakeups = yield* Queue.sliding<void>(1)
  const wake = Queue.offer(wakeups, undefined).pipe(Effect.asVoid)
  const jobs = yield* FiberSet.make<void, never>()
  const waiters = new Map<string, RetryWaiter>()
  const views = new Map<string, JobView>()
  let stopping = false

  // The daemon's environment, which every agent inherits, copied once: each read of
  // `process.env` fetches every variable anew (about 0.2 ms a job).
  const daemonEnv = { ...process.env } as Record<string, string>

  const setView = (view: JobView) => Effect.sync(() => views.set(view.name, view))

  /** Runs one attempt with its timeout; the slot was reserved by the dispatcher. */
  const runAttempt = (claimed: ClaimedTrigger, attempt: number, onExit: (status: ExitStatus) => void, onGone: Effect.Effect<void>) =>
    Effect.gen(function*() {
      const { name, agent, trigger } = claimed.queued
      const traceId = trigger.trace_id ?? null
      const startedMs = yield* Clock.currentTimeMillis
      const logFile = agentLogFile(paths.logs, agent, startedMs)
      const worktree = worktreeOf(paths, agent)
      const cwd = fs.statSync(worktree, { throwIfNoEntry: false })?.isDirectory() ? worktree : paths.root
      yield* setView({ name, agent, attempt, phase: "running" })
      // Known as soon as the agent exits, so an attempt interrupted after its exit is recorded as it ended.
      let exitStatus: ExitStatus | undefined
      let spawnedPid: number | null = null
      const recordAttempt = (status: ExitStatus | undefined, outcome?: "error" | "interrupted") =>
        Effect.flatMap(Clock.currentTimeMillis, (endMs) =>
          history.record(entryOf({
            trigger: `${name}.trigger`,
            agent,
            attempt,
            start: new Date(startedMs).toISOString(),
            end: new Date(endMs).toISOString(),
            log: logFile,
            ticket: ticketOf(trigger) ?? null,
            trace_id: traceId
          }, status, outcome)))
      const header = [
        `Agent: ${agent}`,
        `Trigger: ${name}.trigger`,
        `Started: ${isoSeconds(startedMs)}`,
        `Attempt: ${attempt}/${settings.maxRetries}`
      ]
      // Fed by the process layer with the output it logs (`onOutput` below): no log is read back.
      const watch = yield* watchOutput({ onProgress: (progress) => slots.setProgress(agent, progress) })
      // Read to its end, then closed, however the attempt ends.
      return yield* Effect.gen(function*() {
        const progress = Effect.gen(function*() {
          const output = yield* watch.state
          const now = yield* Clock.currentTimeMillis
          const quiet = Math.round((now - watch.lastActivityMs()) / 1000)
          const text = `${agent} running ${formatDuration((now - startedMs) / 1000)} on ${name}.trigger (attempt ${attempt}/${settings.maxRetries}): ` +
            `${describeProgress(output.progress)}; last output ${quiet}s ago`
          yield* log.event("PROGRESS", text, { traceId, agent, trigger: name })
          yield* notify(claimed, "progress", attempt, text, { running_seconds: Math.round((now - startedMs) / 1000), ...output.progress })
        })
        const status = yield* agentProcess.run({
          agent,
          command: command!,
          args: [...commandArgs, buildPrompt(trigger, claimed.file)],
          cwd,
          env: {
            ...daemonEnv,
            STARFORGE_AGENT_ID: agent,
            STARFORGE_TRIGGER_FILE: claimed.file,
            STARFORGE_ACTION: trigger.action ?? "",
            STARFORGE_FROM_AGENT: trigger.from_agent ?? "",
            STARFORGE_TICKET: ticketOf(trigger) ?? "",
            STARFORGE_TRACE_ID: traceId ?? "",
            STARFORGE_ATTEMPT: String(attempt),
            STARFORGE_PROJECT_ROOT: paths.root
          },
          logFile,
          timeoutMs: settings.agentTimeoutMs,
          onGone,
          onExit: (status) => {
            exitStatus = status
            onExit(status)
          },
          header,
          onOutput: watch.push,
          ...(settings.agentStallTimeoutMs > 0 ? { stall: { afterMs: settings.agentStallTimeoutMs, lastActivityMs: watch.lastActivityMs } } : {}),
          ...(settings.progressIntervalMs > 0 ? { tick: { everyMs: settings.progressIntervalMs, run: progress } } : {}),
          onSpawn: ({ pid, startTime }) =>
            Effect.sync(() => void (spawnedPid = pid)).pipe(
              Effect.zipRight(slots.setProcess(agent, { pid, startTime, log: logFile })),
              Effect.zipRight(
                log.event("SPAWNED", `${agent} started (PID: ${pid}) for ${name}.trigger, attempt ${attempt}/${settings.maxRetries}`, {
                  traceId,
                  agent,
                  trigger: name,
                  pid,
                  attempt
                })
              ),
              Effect.zipRight(notify(
                claimed,
                "start",
                attempt,
                `${agent} started ${name}.trigger${ticketText(trigger)} (attempt ${attempt}/${settings.maxRetries})`,
                { pid }
              ))
            )
        }).pipe(
          Effect.onExit((exit) =>
            exit._tag === "Success"
              ? Effect.void // recorded below, with what the agent reported
              : Cause.isInterruptedOnly(exit.cause)
              // Stopped by the daemon (its signal is kept), unless the agent had already succeeded.
              ? recordAttempt(exitStatus, exitStatus !== undefined && isSuccess(exitStatus) ? undefined : "interrupted")
              : recordAttempt(exitStatus, "error")
          )
        )
        // Read to the end and recorded as one step: the attempt's history line is never lost.
        const { output, outcome } = yield* Effect.uninterruptible(Effect.gen(function*() {
          const output = yield* watch.finish
          const outcome = reportedOutcome(status, output)
          yield* recordAttempt(outcome)
          return { output, outcome }
        }))
        const seconds = ((yield* Clock.currentTimeMillis) - startedMs) / 1000
        return { outcome, output, logFile, startedMs, seconds, pid: spawnedPid }
      }).pipe(Effect.ensuring(watch.close))
    })

  /** Waits until the dispatcher hands the agent's slot to this retry. */
  const awaitSlot = (queued: QueuedTrigger, attempt: number) =>
    Effect.gen(function*() {
      const granted = yield* Deferred.make<void>()
      waiters.set(queued.name, { queued, attempt, granted })
      yield* wake
      yield* Deferred.await(granted).pipe(Effect.ensuring(Effect.sync(() => waiters.delete(queued.name))))
    })

  /**
   * Tries a storage operation until it succeeds, every `PROCESS_MONITOR_INTERVAL`, logging each
   * failure: a full disk or an unwritable directory delays the archive, it never reruns the agent.
   */
  const untilStored = <A>(operation: Effect.Effect<A, StorageError>, onFailure: (error: StorageError) => string): Effect.Effect<A> =>
    Effect.catchAll(operation, (error) =>
      log.event("ERROR", onFailure(error)).pipe(
        Effect.zipRight(Effect.sleep(Duration.millis(settings.monitorIntervalMs))),
        Effect.zipRight(Effect.suspend(() => untilStored(operation, onFailure)))
      ))

  const retryIn = formatSeconds(settings.monitorIntervalMs / 1000)

  /** Moves a trigger whose agent succeeded to `processed/`, with its bookkeeping. */
  const archiveDone = (claimed: ClaimedTrigger, attempt: number) =>
    Effect.gen(function*() {
      const { name, agent, trigger } = claimed.queued
      const archived = yield* queue.complete(claimed, { _tag: "Done" })
      yield* log.event("QUEUE", `${name}.trigger archived as ${path.relative(paths.root, archived)}`, {
        traceId: trigger.trace_id ?? null,
        agent,
        trigger: name,
        attempt
      })
      yield* state.finished(`${name}.trigger`, true)
    })

  /** Attempts and the time of each, carried over a requeue that was no fault of the agent. */
  interface Carried {
    readonly attempt: number
    readonly timestamps: ReadonlyArray<string>
    /** Not dispatched again before this time (ms). */
    readonly notBefore: number
  }
  const carried = new Map<string, Carried>()
  const scope = yield* Effect.scope

  /**
   * The agent could not be started because its log cannot be written (disk full, logs directory
   * not writable): that is not an attempt. The trigger goes back to the queue with its attempts
   * so far and is tried again after `PROCESS_MONITOR_INTERVAL`; it is never dead-lettered for it.
   */
  const holdBack = (claimed: ClaimedTrigger, attempt: number, timestamps: ReadonlyArray<string>, error: StorageError) =>
    Effect.gen(function*() {
      const { name, agent, trigger } = claimed.queued
      const now = yield* Clock.currentTimeMillis
      carried.set(name, { attempt, timestamps, notBefore: now + settings.monitorIntervalMs })
      yield* log.event(
        "ERROR",
        `${error.message}; ${agent} was not started for ${name}.trigger (attempt ${attempt}/${settings.maxRetries} not counted); ` +
          `it stays queued and is tried again in ${retryIn}`,
        { traceId: trigger.trace_id ?? null, agent, trigger: name, attempt }
      )
      yield* requeue(claimed, "not started")
      yield* Effect.sleep(Duration.millis(settings.monitorIntervalMs)).pipe(Effect.zipRight(wake), Effect.forkIn(scope))
    })

  /** All attempts of one claimed trigger, then its archive. */
  const runJob = (claimed: ClaimedTrigger) => {
    // The current attempt's exit, recorded the moment the agent exits: a shutdown that lands
    // after a successful exit archives the trigger instead of running it again.
    let exited: { readonly status: ExitStatus; readonly attempt: number } | undefined
    // Set in the same uninterruptible step as the archive: a shutdown that lands after it (the
    // fiber has not ended yet) must neither archive nor requeue a file that is already gone.
    let completed = false
    /**
     * The archive (or dead-letter move) and its bookkeeping as one uninterruptible step, tried
     * again until the storage takes it: the agent is done and never runs again for it. Only the
     * wait between tries can be interrupted.
     */
    const complete = <A>(archive: Effect.Effect<A, StorageError>, onFailure: (error: StorageError) => string) =>
      untilStored(archive.pipe(Effect.zipLeft(Effect.sync(() => void (completed = true))), Effect.uninterruptible), onFailure)
    return Effect.gen(function*() {
      const { name, agent, trigger } = claimed.queued
      const traceId = trigger.trace_id ?? null
      const context = { traceId, agent, trigger: name }
      const resumed = carried.get(name)
      carried.delete(name)
      const timestamps: Array<string> = [...(resumed?.timestamps ?? [])]
      let costs = 0
      const first = resumed?.attempt ?? 1
      const parent = jobParent(traceId)
      const attributes = { agent, trigger: `${name}.trigger`, ticket: ticketOf(trigger) ?? "", trace_id: traceId ?? "" }
      // When the next attempt started waiting: the trigger's arrival, then each retry's delay.
      let waitingSinceMs = Math.min(Number(claimed.queued.createdNs / 1_000_000n), Date.now())
      for (let attempt = first;; attempt++) {
        const next = yield* spanSince("starforge.attempt", waitingSinceMs, { parent, attributes: { ...attributes, attempt } })((span) =>
          Effect.gen(function*() {
            // The dispatcher reserved the slot for the job's first attempt; later ones wait for
            // their retry delay, then for the slot.
            yield* attempt > first
              ? spanSince("queue wait", waitingSinceMs)(() => Effect.sleep(delays[attempt - 2]!).pipe(Effect.zipRight(awaitSlot(claimed.queued, attempt))))
              : endedSpan("queue wait", waitingSinceMs)
            exited = undefined
            // The slot is free once the agent's processes are gone, before its last output is
            // drained and the attempt recorded: the agent's next trigger starts meanwhile.
            let released = false
            const release = Effect.suspend(() => {
              if (released) return Effect.void
              released = true
              return slots.markIdle(agent).pipe(Effect.zipRight(wake))
            })
            const attempted = yield* runAttempt(claimed, attempt, (status) => void (exited = { status, attempt }), release).pipe(
              Effect.ensuring(release),
              Effect.either
            )
            if (Either.isLeft(attempted)) {
              span.attribute("outcome", "error")
              yield* holdBack(claimed, attempt, timestamps, attempted.left)
              return "done" as const
            }
            // The attempt is recorded; its bookkeeping (usage, notifications, log lines, the
            // archive) comes after whatever is due, in two steps: another agent's exit waiting to
            // be read, and the next trigger it starts, never wait for all of it.
            yield* yieldToEventLoop
            const result = attempted.right
            span.attribute("outcome", outcomeOf(result.outcome))
            span.attribute("exit_code", exitCodeOf(result.outcome) ?? "")
            span.attribute("signal", signalOf(result.outcome) ?? "")
            timestamps.push(isoSeconds(result.startedMs))
            const took = formatSeconds(Math.round(result.seconds * 10) / 10)
            costs += result.output.progress.cost_usd ?? 0
            yield* usage.recordAttempt({
              agent,
              costUsd: result.output.progress.cost_usd,
              tokensIn: result.output.progress.tokens_in,
              tokensOut: result.output.progress.tokens_out
            })
            if (isSuccess(result.outcome)) {
              yield* usage.succeeded(commandKey)
              yield* notify(
                claimed,
                "complete",
                attempt,
                `${agent} completed ${name}.trigger${ticketText(trigger)} in ${formatDuration(result.seconds)} (attempt ${attempt})${summaryText(result.output)}`,
                { ...summaryOf(result.output, result.seconds) }
              )
              yield* log.event("FINISH", `${agent} completed ${name}.trigger successfully in ${took} (attempt ${attempt})${summaryText(result.output)}`, {
                ...context,
                attempt,
                pid: result.pid
              })
              yield* yieldToEventLoop
              yield* complete(
                archiveDone(claimed, attempt),
                (error) => `${error.message}; ${agent} succeeded, so it is not run again: archiving ${name}.trigger is tried again in ${retryIn}`
              ).pipe(Effect.withSpan("archive", NO_STACK))
              return "done" as const
            }
            if (result.output.limit !== null) {
              // Not counted: the attempt's time goes too.
              timestamps.pop()
              const until = yield* complete(
                pauseForLimit(claimed, attempt, timestamps, result.output.limit),
                (error) => `${error.message}; putting ${name}.trigger back in the queue is tried again in ${retryIn}`
              )
              // Look at the queue again when the pause ends.
              const waitMs = Math.max(0, Date.parse(until) - (yield* Clock.currentTimeMillis))
              yield* Effect.sleep(Duration.millis(waitMs)).pipe(Effect.zipRight(wake), Effect.forkIn(scope))
              return "done" as const
            }
            const what = `${agent} ${describeOutcome(result.outcome)} on ${name}.trigger (attempt ${attempt}/${settings.maxRetries}, ${took})` +
              summaryText(result.output)
            const level = result.outcome._tag === "TimedOut"
              ? "TIMEOUT"
              : result.outcome._tag === "Stalled"
              ? "STALLED"
              : result.outcome._tag === "SpawnFailed"
              ? "ERROR"
              : "FINISH"
            yield* log.event(level, what, { ...context, attempt, pid: result.pid })
            yield* notify(
              claimed,
              result.outcome._tag === "TimedOut" ? "timeout" : result.outcome._tag === "Stalled" ? "stalled" : "failed",
              attempt,
              what,
              { failure_kind: failureKind(result.outcome), ...summaryOf(result.output, result.seconds) }
            )
            yield* setView({ name, agent, attempt, phase: "waiting-retry" })
            const delay = delays[attempt - 1]
            if (delay !== undefined) {
              yield* log.event("RETRY", `Attempt ${attempt + 1}/${settings.maxRetries} for ${name}.trigger in ${formatSeconds(Duration.toMillis(delay) / 1000)}`, { ...context, attempt: attempt + 1 })
              return "retry" as const
            }
            const reason = `failed ${attempt} time${attempt === 1 ? "" : "s"}; last attempt ${describeOutcome(result.outcome)}`
            const dlqEntryTimestamp = isoSeconds(yield* Clock.currentTimeMillis)
            yield* complete(
              Effect.gen(function*() {
                const moved = yield* queue.complete(claimed, {
                  _tag: "DeadLetter",
                  meta: {
                    failure_reason: reason,
                    exit_code: exitCodeOf(result.outcome),
                    signal: signalOf(result.outcome),
                    attempts: attempt,
                    retry_timestamps: timestamps,
                    dlq_entry_timestamp: dlqEntryTimestamp,
                    agent,
                    trace_id: traceId,
                    last_log: result.logFile,
                    failure_kind: failureKind(result.outcome),
                    ...summaryOf(result.output, result.seconds),
                    total_cost_usd: Math.round(costs * 1e6) / 1e6
                  }
                })
                yield* log.event("DLQ", `${name}.trigger moved to ${path.relative(paths.root, moved)}: ${reason}`, { ...context, attempt })
                yield* notify(claimed, "dead_letter", attempt, `${name}.trigger${ticketText(trigger)} moved to the dead-letter queue: ${reason}`, {
                  failure_reason: reason,
                  total_cost_usd: Math.round(costs * 1e6) / 1e6
                })
                yield* state.finished(`${name}.trigger`, false)
              }),
              (error) => `${error.message}; moving ${name}.trigger to the dead-letter queue is tried again in ${retryIn}`
            ).pipe(Effect.withSpan("archive", NO_STACK))
            return "done" as const
          }).pipe(Effect.onInterrupt(() => Effect.sync(() => span.attribute("outcome", "interrupted"))))
        )
        if (next === "done") return
        waitingSinceMs = Date.now()
      }
    }).pipe(
      Effect.onInterrupt(() =>
        completed
          ? Effect.void
          : exited !== undefined && isSuccess(exited.status)
          ? // One try only: a shutdown does not wait for the disk. Left claimed, the next start
            // requeues it (at-least-once).
            archiveDone(claimed, exited.attempt).pipe(
              Effect.catchAll((error) => log.event("ERROR", `${error.message}; ${claimed.file} is left as it is`))
            )
          : requeue(claimed, "interrupted by shutdown")
      ),
      Effect.ensuring(Effect.sync(() => views.delete(claimed.queued.name)))
    )
  }

  /**
   * The agent hit its provider's usage limit: the attempt does not count, the trigger goes back
   * to the queue in its place (with its earlier attempts), and no agent with the same command
   * starts until the pause ends.
   */
  const pauseForLimit = (claimed: ClaimedTrigger, attempt: number, timestamps: ReadonlyArray<string>, limit: LimitSignal) =>
    Effect.gen(function*() {
      const { name, agent, trigger } = claimed.queued
      const pause = yield* usage.limitHit({
        command: commandKey,
        agent,
        trigger: `${name}.trigger`,
        reason: limit.message,
        resetsAtMs: limit.resetsAtMs
      })
      yield* log.event(
        "LIMIT",
        `${agent} hit a usage limit on ${name}.trigger (attempt ${attempt}, not counted): ${limit.message}; ` +
          `agents running this AGENT_COMMAND wait until ${pause.until} ` +
          `(${pause.source === "reset" ? "the reset time the agent named" : `cooldown, limit ${pause.consecutive} in a row`})`,
        { traceId: trigger.trace_id ?? null, agent, trigger: name }
      )
      yield* notify(
        claimed,
        "usage_limit",
        attempt,
        `${agent} hit a usage limit on ${name}.trigger; agents running this AGENT_COMMAND wait until ${pause.until}: ${limit.message}`,
        { until: pause.until, source: pause.source }
      )
      carried.set(name, { attempt, timestamps, notBefore: Date.parse(pause.until) })
      yield* requeue(claimed, "hit a usage limit (attempt not counted)")
      return pause.until
    })

  const requeue = (claimed: ClaimedTrigger, why: string) =>
    queue.requeue(claimed).pipe(
      Effect.zipRight(state.finished(`${claimed.queued.name}.trigger`, false)),
      Effect.zipRight(log.event("QUEUE", `${claimed.queued.name}.trigger ${why}; back in the queue`, {
        traceId: claimed.queued.trigger.trace_id,
        agent: claimed.queued.agent
      })),
      Effect.catchAll((error) => log.event("ERROR", `${error.message}; ${claimed.file} is left as it is`))
    )

  /** Queue order over pending files and waiting retries. */
  const candidates = Effect.map(queue.pending, (pending) => {
    if (waiters.size === 0) return pending
    const retries = Array.from(waiters.values(), (w) => w.queued).sort(compareOrder)
    const merged: Array<QueuedTrigger> = []
    let i = 0
    let j = 0
    while (i < pending.length || j < retries.length) {
      if (j >= retries.length || (i < pending.length && compareOrder(pending[i]!, retries[j]!) <= 0)) merged.push(pending[i++]!)
      else merged.push(retries[j++]!)
    }
    return merged
  })

  const dispatch = Effect.gen(function*() {
    if (stopping) return
    // Paused by a usage limit: nothing with this command starts (a timer wakes us at the end).
    if ((yield* usage.pausedUntil(commandKey)) !== undefined) return
    const busy = new Set(yield* slots.listBusy)
    let free = cap - busy.size
    if (free <= 0) return
    const now = yield* Clock.currentTimeMillis
    for (const next of yield* candidates) {
      if (free <= 0 || stopping) break
      if (busy.has(next.agent)) continue
      const waiter = waiters.get(next.name)
      const held = carried.get(next.name)
      if (waiter === undefined && held !== undefined && held.notBefore > now) continue
      const attempt = waiter?.attempt ?? held?.attempt ?? 1
      let claimed: ClaimedTrigger | undefined
      if (waiter === undefined) {
        const claim = yield* queue.claim(next).pipe(
          Effect.catchAll((error) => log.event("ERROR", `${error.message}; it stays queued`).pipe(Effect.as(Option.none())))
        )
        if (Option.isNone(claim)) continue
        claimed = claim.value
      }
      yield* slots.markBusy(next.agent, {
        ticket: ticketOf(next.trigger),
        trigger: `${next.name}.trigger`,
        attempt,
        traceId: next.trigger.trace_id ?? null,
        startedAt: isoSeconds(yield* Clock.currentTimeMillis)
      })
      busy.add(next.agent)
      free--
      if (waiter !== undefined) {
        waiters.delete(next.name)
        yield* Deferred.succeed(waiter.granted, undefined)
      } else {
        yield* state.started(`${next.name}.trigger`)
        yield* FiberSet.run(jobs, withJobContext(runJob(claimed!)))
      }
    }
  }).pipe(Effect.withSpan("Scheduler.dispatch", NO_STACK))

  // The queue's changes wake the dispatcher too.
  yield* queue.changed.pipe(Effect.zipRight(wake), Effect.forever, Effect.forkScoped)
  yield* Queue.take(wakeups).pipe(Effect.zipRight(dispatch), Effect.forever, Effect.forkScoped)
  // Registered last, so it runs first at shutdown: no new work while the jobs are being stopped.
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      stopping = true
      const running = yield* FiberSet.size(jobs)
      if (running > 0) yield* log.event("STOP", `Stopping ${running} running job${running === 1 ? "" : "s"}`)
      // All at once: each job may wait up to AGENT_KILL_GRACE for its process group.
      yield* Fiber.interruptAll(Array.from(jobs))
      // Whatever a race left reserved (a retry granted as it was interrupted), nothing runs now.
      for (const agent of yield* slots.listBusy) yield* slots.markIdle(agent)
    })
  )
  yield* wake

  return {
    wake,
    jobs: Effect.sync(() => Array.from(views.values()))
  } satisfies SchedulerShape
})

export const layer = Layer.scoped(Scheduler, make)
