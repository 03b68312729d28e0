/**
 * How one attempt of one agent ended, and how the daemon describes it in logs and the DLQ.
 */
import { Data } from "effect"

/**
 * What the process layer reports: an exit code, a signal, a spawn that never happened, or a
 * timeout (with the signal that finally stopped the group).
 */
export type ExitStatus = Data.TaggedEnum<{
  Exited: { readonly code: number }
  Signaled: { readonly signal: string }
  SpawnFailed: { readonly message: string }
  TimedOut: { readonly afterSeconds: number; readonly signal: string }
  /** Wrote nothing for `afterSeconds` while running, so it was stopped (`AGENT_STALL_TIMEOUT`). */
  Stalled: { readonly afterSeconds: number; readonly signal: string }
  /** Its process tree stayed above `AGENT_MAX_MEMORY_MB` for two samples in a row, so it was stopped. */
  OverMemory: { readonly rssBytes: number; readonly limitBytes: number; readonly signal: string }
  /** Went past `AGENT_MAX_TURNS` turns in the attempt, so it was stopped. */
  OverBudget: { readonly turns: number; readonly limit: number; readonly signal: string }
  /** Exited with `code` but its own final `result` said the run failed (`is_error: true`). */
  ReportedError: { readonly code: number; readonly message: string }
}>
export const ExitStatus = Data.taggedEnum<ExitStatus>()

export const isSuccess = (outcome: ExitStatus): boolean => outcome._tag === "Exited" && outcome.code === 0

export const describeOutcome = (outcome: ExitStatus): string => {
  switch (outcome._tag) {
    case "Exited":
      return outcome.code === 0 ? "exited with code 0" : `exited with code ${outcome.code}`
    case "Signaled":
      return `was killed by signal ${outcome.signal}`
    case "SpawnFailed":
      return `could not be started: ${outcome.message}`
    case "TimedOut":
      return `timed out after ${formatSeconds(outcome.afterSeconds)}`
    case "Stalled":
      return `stalled (no output for ${formatSeconds(outcome.afterSeconds)})`
    case "OverMemory":
      return `was stopped for using ${formatMegabytes(outcome.rssBytes)} of memory (AGENT_MAX_MEMORY_MB is ${formatMegabytes(outcome.limitBytes)})`
    case "OverBudget":
      return `was stopped after ${outcome.turns} turns (AGENT_MAX_TURNS is ${outcome.limit})`
    case "ReportedError":
      return `exited with code ${outcome.code} but reported an error (${outcome.message})`
  }
}

/** One word for the kind of failure, for the DLQ meta and notifications. */
export const failureKind = (outcome: ExitStatus): "exit" | "signal" | "spawn" | "timeout" | "stalled" | "memory" | "budget" | "agent_error" => {
  switch (outcome._tag) {
    case "Exited":
      return "exit"
    case "Signaled":
      return "signal"
    case "SpawnFailed":
      return "spawn"
    case "TimedOut":
      return "timeout"
    case "Stalled":
      return "stalled"
    case "OverMemory":
      return "memory"
    case "OverBudget":
      return "budget"
    case "ReportedError":
      return "agent_error"
  }
}

export const exitCodeOf = (outcome: ExitStatus): number | null =>
  outcome._tag === "Exited" || outcome._tag === "ReportedError" ? outcome.code : null

export const signalOf = (outcome: ExitStatus): string | null =>
  outcome._tag === "Signaled" || outcome._tag === "TimedOut" || outcome._tag === "Stalled" || outcome._tag === "OverMemory" ||
      outcome._tag === "OverBudget"
    ? outcome.signal
    : null

/** `212 MB` (MiB, as `AGENT_MAX_MEMORY_MB` counts them). */
export const formatMegabytes = (bytes: number): string => `${Math.round(bytes / (1024 * 1024))} MB`

export const formatSeconds = (seconds: number): string =>
  Number.isInteger(seconds) ? `${seconds}s` : `${Number(seconds.toFixed(3))}s`
