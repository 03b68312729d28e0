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
  }
}

export const exitCodeOf = (outcome: ExitStatus): number | null => (outcome._tag === "Exited" ? outcome.code : null)

export const signalOf = (outcome: ExitStatus): string | null =>
  outcome._tag === "Signaled" || outcome._tag === "TimedOut" ? outcome.signal : null

export const formatSeconds = (seconds: number): string =>
  Number.isInteger(seconds) ? `${seconds}s` : `${Number(seconds.toFixed(3))}s`
