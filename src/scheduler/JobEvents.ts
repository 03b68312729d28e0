/**
 * What a job tells the outside: its lines in the daemon log, its notifications and its history
 * entries. Each event of a job's life is one function here, so the wording of a log line, the
 * kind of its notification and its details are kept together.
 */
import * as path from "node:path"
import { Clock, Duration, Effect } from "effect"
import { DaemonConfig, settingsFor } from "../config/DaemonConfig.js"
import type { StorageError } from "../domain/errors.js"
import { describeOutcome, type ExitStatus, failureKind, formatSeconds } from "../domain/Outcome.js"
import { formatDuration } from "../domain/time.js"
import { ticketOf, type Trigger } from "../domain/Trigger.js"
import { Notifier, type NotifyKind } from "../notify/Notifier.js"
import { DaemonLog } from "../observability/DaemonLog.js"
import type { ClaimedTrigger } from "../queue/TriggerQueue.js"
import { entryOf, History, type HistoryEntry } from "../state/History.js"
import type { UsageLimit } from "../state/Usage.js"
import type { AgentResources } from "../resources/ResourceMonitor.js"
import type { OutputWatch } from "../stream/AgentOutput.js"
import { describeProgress, formatCost, type OutputState } from "../stream/StreamJson.js"

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

/** What an attempt ended with, as the job's events describe it. */
export interface AttemptResult {
  readonly outcome: ExitStatus
  readonly output: OutputState
  readonly logFile: string
  readonly startedMs: number
  readonly seconds: number
  readonly pid: number | null
  /** The last sample of the agent's processes, when one was taken. */
  readonly resources: AgentResources | undefined
  /** The session this run resumed; null for a fresh start. */
  readonly resumed: string | null
}

/** `: 3 turns, $0.0123, session abc`; empty for an agent that wrote no stream-json. */
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

export const make = Effect.gen(function*() {
  const config = yield* DaemonConfig
  const { paths, settings } = config
  const log = yield* DaemonLog
  const notifier = yield* Notifier
  const history = yield* History
  const retryIn = formatSeconds(settings.monitorIntervalMs / 1000)
  /** The number of attempts the agent gets (`MAX_RETRIES`, or its own). */
  const maxOf = (claimed: ClaimedTrigger) => settingsFor(config, claimed.queued.agent).maxRetries

  const contextOf = (claimed: ClaimedTrigger, attempt?: number) => ({
    traceId: claimed.queued.trigger.trace_id ?? null,
    agent: claimed.queued.agent,
    trigger: claimed.queued.name,
    ...(attempt === undefined ? {} : { attempt })
  })
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
  const what = (claimed: ClaimedTrigger, attempt: number, result: AttemptResult) =>
    `${claimed.queued.agent} ${describeOutcome(result.outcome)} on ${claimed.queued.name}.trigger ` +
    `(attempt ${attempt}/${maxOf(claimed)}, ${formatSeconds(Math.round(result.seconds * 10) / 10)})${summaryText(result.output)}`

  return {
    spawned: (claimed: ClaimedTrigger, attempt: number, pid: number) => {
      const { name, agent, trigger } = claimed.queued
      const max = maxOf(claimed)
      return log.event("SPAWNED", `${agent} started (PID: ${pid}) for ${name}.trigger, attempt ${attempt}/${max}`, { ...contextOf(claimed, attempt), pid }).pipe(
        Effect.zipRight(notify(claimed, "start", attempt, `${agent} started ${name}.trigger${ticketText(trigger)} (attempt ${attempt}/${max})`, { pid }))
      )
    },

    progress: (claimed: ClaimedTrigger, attempt: number, startedMs: number, watch: OutputWatch) =>
      Effect.gen(function*() {
        const { name, agent } = claimed.queued
        const max = maxOf(claimed)
        const output = yield* watch.state
        const now = yield* Clock.currentTimeMillis
        const quiet = Math.round((now - (yield* watch.lastActivityMs)) / 1000)
        const text = `${agent} running ${formatDuration((now - startedMs) / 1000)} on ${name}.trigger (attempt ${attempt}/${max}): ` +
          `${describeProgress(output.progress)}; last output ${quiet}s ago`
        yield* log.event("PROGRESS", text, contextOf(claimed))
        yield* notify(claimed, "progress", attempt, text, { running_seconds: Math.round((now - startedMs) / 1000), ...output.progress })
      }),

    /** The attempt's history line; `status` is undefined for an attempt stopped before its agent exited. */
    recorded: (
      claimed: ClaimedTrigger,
      attempt: number,
      startedMs: number,
      logFile: string,
      resources: AgentResources | undefined,
      status: ExitStatus | undefined,
      outcome: "error" | "interrupted" | undefined,
      agentReport: Pick<HistoryEntry, "session_id" | "resumed_session" | "cost_usd" | "turns" | "tokens_in" | "tokens_out">
    ) =>
      Effect.flatMap(Clock.currentTimeMillis, (endMs) =>
        history.record(entryOf({
          trigger: `${claimed.queued.name}.trigger`,
          agent: claimed.queued.agent,
          attempt,
          start: new Date(startedMs).toISOString(),
          end: new Date(endMs).toISOString(),
          log: logFile,
          ticket: ticketOf(claimed.queued.trigger) ?? null,
          trace_id: claimed.queued.trigger.trace_id ?? null,
          peak_rss_bytes: resources?.peakRssBytes ?? null,
          cpu_seconds: resources === undefined ? null : Math.round(resources.cpuSeconds * 100) / 100,
          ...agentReport
        }, status, outcome))),

    /** A resumed session the agent did not know: the same attempt starts fresh. */
    sessionUnknown: (claimed: ClaimedTrigger, attempt: number, session: string) =>
      log.event(
        "RESUME",
        `${claimed.queued.agent} does not know session ${session}; attempt ${attempt} of ${claimed.queued.name}.trigger starts fresh`,
        contextOf(claimed, attempt)
      ),

    succeeded: (claimed: ClaimedTrigger, attempt: number, result: AttemptResult) => {
      const { name, agent, trigger } = claimed.queued
      const took = formatSeconds(Math.round(result.seconds * 10) / 10)
      return notify(
        claimed,
        "complete",
        attempt,
        `${agent} completed ${name}.trigger${ticketText(trigger)} in ${formatDuration(result.seconds)} (attempt ${attempt})${summaryText(result.output)}`,
        { ...summaryOf(result.output, result.seconds) }
      ).pipe(Effect.zipRight(log.event(
        "FINISH",
        `${agent} completed ${name}.trigger successfully in ${took} (attempt ${attempt})${summaryText(result.output)}`,
        { ...contextOf(claimed, attempt), pid: result.pid }
      )))
    },

    failed: (claimed: ClaimedTrigger, attempt: number, result: AttemptResult) => {
      const tag = result.outcome._tag
      const level = tag === "TimedOut"
        ? "TIMEOUT"
        : tag === "Stalled"
        ? "STALLED"
        : tag === "OverMemory"
        ? "MEMORY"
        : tag === "OverBudget"
        ? "BUDGET"
        : tag === "SpawnFailed"
        ? "ERROR"
        : "FINISH"
      const kind = tag === "TimedOut" ? "timeout" : tag === "Stalled" ? "stalled" : "failed"
      const text = what(claimed, attempt, result)
      return log.event(level, text, { ...contextOf(claimed, attempt), pid: result.pid }).pipe(
        Effect.zipRight(notify(claimed, kind, attempt, text, { failure_kind: failureKind(result.outcome), ...summaryOf(result.output, result.seconds) }))
      )
    },

    retrying: (claimed: ClaimedTrigger, next: number, delay: Duration.Duration, session: string | undefined) =>
      log.event("RETRY", `Attempt ${next}/${maxOf(claimed)}${session === undefined ? "" : ` (resuming session ${session})`} for ${claimed.queued.name}.trigger in ${formatSeconds(Duration.toMillis(delay) / 1000)}`, contextOf(claimed, next)),

    archived: (claimed: ClaimedTrigger, attempt: number, archived: string) =>
      log.event("QUEUE", `${claimed.queued.name}.trigger archived as ${path.relative(paths.root, archived)}`, contextOf(claimed, attempt)),

    deadLettered: (claimed: ClaimedTrigger, attempt: number, moved: string, reason: string, totalCost: number) =>
      log.event("DLQ", `${claimed.queued.name}.trigger moved to ${path.relative(paths.root, moved)}: ${reason}`, contextOf(claimed, attempt)).pipe(
        Effect.zipRight(notify(
          claimed,
          "dead_letter",
          attempt,
          `${claimed.queued.name}.trigger${ticketText(claimed.queued.trigger)} moved to the dead-letter queue: ${reason}`,
          { failure_reason: reason, total_cost_usd: totalCost }
        ))
      ),

    limitHit: (claimed: ClaimedTrigger, attempt: number, reason: string, pause: UsageLimit) => {
      const { name, agent } = claimed.queued
      return log.event(
        "LIMIT",
        `${agent} hit a usage limit on ${name}.trigger (attempt ${attempt}, not counted): ${reason}; ` +
          `agents running this AGENT_COMMAND wait until ${pause.until} ` +
          `(${pause.source === "reset" ? "the reset time the agent named" : `cooldown, limit ${pause.consecutive} in a row`})`,
        contextOf(claimed)
      ).pipe(Effect.zipRight(notify(
        claimed,
        "usage_limit",
        attempt,
        `${agent} hit a usage limit on ${name}.trigger; agents running this AGENT_COMMAND wait until ${pause.until}: ${reason}`,
        { until: pause.until, source: pause.source }
      )))
    },

    /** A daily budget is spent (`agent` null: the budget of all agents); said once per day and budget. */
    budgetReached: (agent: string | null, spentUsd: number, budgetUsd: number, until: string) => {
      const whose = agent === null ? "The daily budget of all agents (DAILY_BUDGET_USD)" : `The daily budget of ${agent}`
      const text = `${whose} is spent: ${formatCost(spentUsd)} of ${formatCost(budgetUsd)}; no new attempt starts ` +
        `for ${agent ?? "any agent"} until ${until} (running ones finish)`
      return log.event("BUDGET", text, agent === null ? {} : { agent }).pipe(
        Effect.zipRight(notifier.notify({
          kind: "budget",
          agent: agent ?? "*",
          trigger: null,
          ticket: null,
          attempt: null,
          message: text,
          details: { spent_usd: spentUsd, budget_usd: budgetUsd, until }
        }))
      )
    },

    notStarted: (claimed: ClaimedTrigger, attempt: number, error: StorageError) =>
      log.event(
        "ERROR",
        `${error.message}; ${claimed.queued.agent} was not started for ${claimed.queued.name}.trigger (attempt ${attempt}/${maxOf(claimed)} not counted); ` +
          `it stays queued and is tried again in ${retryIn}`,
        contextOf(claimed, attempt)
      ),

    /** A memory emergency stopped the agent; its trigger goes back to the queue. */
    preempted: (claimed: ClaimedTrigger, attempt: number, reason: string) =>
      log.event(
        "SCALE",
        `${claimed.queued.agent} stopped on ${claimed.queued.name}.trigger (attempt ${attempt}, not counted) to free memory: ${reason}`,
        contextOf(claimed, attempt)
      ),

    requeued: (claimed: ClaimedTrigger, why: string) =>
      log.event("QUEUE", `${claimed.queued.name}.trigger ${why}; back in the queue`, {
        traceId: claimed.queued.trigger.trace_id ?? null,
        agent: claimed.queued.agent
      }),

    /** A storage step that failed and is tried again after `PROCESS_MONITOR_INTERVAL`. */
    storageFailed: (error: StorageError, what: string) => log.event("ERROR", `${error.message}; ${what} is tried again in ${retryIn}`),

    /** A claim that failed: the trigger stays where it is. */
    leftQueued: (error: StorageError) => log.event("ERROR", `${error.message}; it stays queued`),

    /** A storage step that failed at shutdown and is left as it is: the next start requeues the file. */
    leftAsItIs: (error: StorageError, file: string) => log.event("ERROR", `${error.message}; ${file} is left as it is`)
  }
})

export type JobEvents = Effect.Effect.Success<typeof make>
