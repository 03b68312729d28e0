/**
 * Folds one attempt's output into its progress, in memory, as the daemon logs it: nothing reads
 * the log back, so what is parsed does not depend on the log's rotation or on the log being
 * readable at all. The bytes are split into bounded lines and folded into an `OutputState`.
 */
import { Clock, Effect, Ref, type Scope } from "effect"
import { coalesced } from "../io/coalesced.js"
import { applyLine, emptyOutput, LineSplitter, MAX_LINE_BYTES, type OutputState, type Progress } from "./StreamJson.js"

/** Progress goes out at most this often per attempt (the first change at once). */
export const PUBLISH_SPACING_MS = 1_000

export interface OutputWatch {
  /** Takes the next bytes of the agent's output (the header the daemon wrote is not part of it). */
  readonly push: (bytes: Uint8Array) => Effect.Effect<void>
  /** What was received so far. */
  readonly state: Effect.Effect<OutputState>
  /** When the agent last wrote anything (epoch ms on the Effect clock; the watch's start before that). */
  readonly lastActivityMs: Effect.Effect<number>
  /** Takes the unterminated last line (once the output ended), publishes and returns the final state. */
  readonly finish: Effect.Effect<OutputState>
}

export interface WatchOptions {
  readonly maxLineBytes?: number
  /**
   * Receives the progress when it changed (plain text lines change nothing), coalesced: at once
   * for the first change, then at most every `publishSpacingMs`, never while the previous call
   * runs (a slow consumer gets fewer, newer values, never a backlog).
   */
  readonly onProgress?: (progress: Progress) => Effect.Effect<void>
  readonly publishSpacingMs?: number
}

interface Folded {
  readonly output: OutputState
  readonly lastActivityMs: number
  readonly published: Progress
}

/** A watch whose publishing ends with its scope. */
export const watchOutput = (options: WatchOptions = {}): Effect.Effect<OutputWatch, never, Scope.Scope> =>
  Effect.gen(function*() {
    const splitter = new LineSplitter(options.maxLineBytes ?? MAX_LINE_BYTES)
    const startMs = yield* Clock.currentTimeMillis
    const folded = yield* Ref.make<Folded>({ output: emptyOutput, lastActivityMs: startMs, published: emptyOutput.progress })
    const onProgress = options.onProgress
    // The fold makes a new progress object for every event that changes it.
    const publish = onProgress === undefined ? Effect.void : Effect.flatMap(
      Ref.modify(folded, (f) => [f.output.progress === f.published ? undefined : f.output.progress, { ...f, published: f.output.progress }]),
      (changed) => (changed === undefined ? Effect.void : onProgress(changed))
    )
    const publisher = onProgress === undefined ? undefined : yield* coalesced(publish, options.publishSpacingMs ?? PUBLISH_SPACING_MS)
    const fold = (lines: ReturnType<LineSplitter["push"]>, activity: boolean) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Ref.modify(folded, (f) => {
          let output = f.output
          for (const line of lines) output = applyLine(output, line, now)
          return [output.progress !== f.published, { ...f, output, lastActivityMs: activity ? now : f.lastActivityMs }]
        })).pipe(Effect.flatMap((changed) => (changed && publisher !== undefined ? publisher.signal : Effect.void)))
    return {
      push: (bytes) => (bytes.length === 0 ? Effect.void : Effect.suspend(() => fold(splitter.push(bytes), true))),
      state: Effect.map(Ref.get(folded), (f) => f.output),
      lastActivityMs: Effect.map(Ref.get(folded), (f) => f.lastActivityMs),
      finish: Effect.suspend(() => fold(splitter.end(), false)).pipe(
        Effect.zipRight(publish),
        Effect.zipRight(Effect.map(Ref.get(folded), (f) => f.output))
      )
    } satisfies OutputWatch
  })
