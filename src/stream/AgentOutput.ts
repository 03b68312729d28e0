/**
 * Folds one attempt's output into the job's progress, in memory, as the daemon receives it.
 *
 * The daemon drains the agent's stdout/stderr pipes itself and writes them to the log (see
 * AgentProcess); the same bytes, as they are logged, are pushed here (`AgentRunSpec.onOutput`).
 * Nothing reads the log back: no file polling, no timer per agent, and what is parsed does not
 * depend on the log's rotation or on the log being readable at all. A quiet agent costs nothing
 * until it writes again. The bytes are split into bounded lines and folded into an `OutputState`;
 * they are never changed.
 */
import { Effect } from "effect"
import { makeCoalesced } from "../io/coalesced.js"
import { applyLine, emptyOutput, LineSplitter, MAX_LINE_BYTES, type OutputState, type Progress } from "./StreamJson.js"

/** Progress goes out at most this often per attempt (the first change at once). */
export const PUBLISH_SPACING_MS = 1_000

export interface OutputWatch {
  /**
   * Takes the next bytes of the agent's output (synchronously, from the pipe's handler): the
   * header the daemon wrote is not part of it.
   */
  readonly push: (bytes: Uint8Array) => void
  /** What was received so far. */
  readonly state: Effect.Effect<OutputState>
  /** When the agent last wrote anything (epoch ms on the watch's clock; the watch's start before that). */
  readonly lastActivityMs: () => number
  /** Takes the unterminated last line (call after the output ended), publishes and returns the final state. */
  readonly finish: Effect.Effect<OutputState>
  /** Ends the publishing (one in progress is stopped); whoever starts the watch closes it. */
  readonly close: Effect.Effect<void>
}

export interface WatchOptions {
  readonly maxLineBytes?: number
  /**
   * Called with the progress when it changed (plain text lines change nothing: no call),
   * coalesced: at once for the first change, then at most every `publishSpacingMs`, and never
   * while the previous call runs (so a slow consumer gets fewer, newer values, never a backlog).
   */
  readonly onProgress?: (progress: Progress) => Effect.Effect<void>
  readonly publishSpacingMs?: number
}

/**
 * Starts a watch; its publishing ends with `close` (not with a scope: a scope and its finalizer
 * for each attempt were about 2.5% of the Effect steps of a job).
 */
export const watchOutput = (options: WatchOptions = {}): Effect.Effect<OutputWatch> =>
  Effect.gen(function*() {
    // `push` runs outside any fiber: it reads the clock the watch was made with (a TestClock in tests).
    const clock = yield* Effect.clock
    const splitter = new LineSplitter(options.maxLineBytes ?? MAX_LINE_BYTES)
    let state = emptyOutput
    let lastActivity = clock.unsafeCurrentTimeMillis()
    // The fold makes a new progress object for every event that changes it.
    let published = state.progress
    const publish = Effect.suspend(() => {
      if (published === state.progress || options.onProgress === undefined) return Effect.void
      published = state.progress
      return options.onProgress(published)
    })
    const publisher = options.onProgress === undefined
      ? undefined
      : yield* makeCoalesced(publish, options.publishSpacingMs ?? PUBLISH_SPACING_MS)
    const fold = (lines: ReturnType<LineSplitter["push"]>, now: number) => {
      for (const line of lines) state = applyLine(state, line, now)
      if (state.progress !== published) publisher?.signal()
    }
    return {
      push: (bytes) => {
        if (bytes.length === 0) return
        const now = clock.unsafeCurrentTimeMillis()
        lastActivity = now
        fold(splitter.push(bytes), now)
      },
      state: Effect.sync(() => state),
      lastActivityMs: () => lastActivity,
      finish: Effect.suspend(() => {
        fold(splitter.end(), clock.unsafeCurrentTimeMillis())
        return Effect.as(publish, state)
      }),
      close: publisher === undefined ? Effect.void : publisher.close
    } satisfies OutputWatch
  })
