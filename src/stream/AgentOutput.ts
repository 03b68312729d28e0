/**
 * Follows one attempt's output as an Effect `Stream` while the agent keeps writing its log.
 *
 * The daemon drains the agent's stdout/stderr pipes into the log (see AgentProcess) and this
 * reads the log back by offset, so the bytes parsed are exactly the bytes logged. When the log
 * is rotated (renamed, then continued in a new file under the same name), the rest of the old
 * file is read first, then the new file from its start; a truncation starts over at 0. It splits
 * the bytes into bounded lines and folds them into the job's progress. The raw bytes are never touched.
 */
import * as fs from "node:fs"
import { Chunk, Clock, Deferred, Duration, Effect, Fiber, Option, Ref, type Scope, Stream } from "effect"
import { applyLine, emptyOutput, type Line, LineSplitter, MAX_LINE_BYTES, type OutputState } from "./StreamJson.js"

const READ_BYTES = 64 * 1024

/**
 * New bytes of a growing file from `from` on, read every `pollMs`. Ends after `done` holds and
 * everything up to that moment was read. A file that does not exist (yet) has no bytes.
 */
export const tailFile = (
  file: string,
  options: {
    readonly from: number
    /** The first wait between reads; it doubles while nothing comes, up to `maxPollMs`. */
    readonly pollMs: number
    readonly maxPollMs?: number
    readonly done: Deferred.Deferred<void>
    /** Runs each time the reader has caught up, before it waits. */
    readonly onIdle?: Effect.Effect<void>
  }
): Stream.Stream<Uint8Array> =>
  Stream.acquireRelease(
    Effect.sync(() => ({ fd: undefined as number | undefined, position: options.from, ended: false, waitMs: options.pollMs })),
    (h) => Effect.sync(() => h.fd !== undefined && fs.closeSync(h.fd))
  ).pipe(
    Stream.flatMap((h) =>
      Stream.repeatEffectChunkOption(
        Effect.gen(function*() {
          if (h.ended) return yield* Effect.fail(Option.none())
          // Asked before reading: a read that follows `done` sees every byte written before it.
          const finished = yield* Deferred.isDone(options.done)
          const bytes = readSome(file, h)
          if (bytes !== undefined) {
            h.waitMs = options.pollMs
            return Chunk.of(bytes)
          }
          if (options.onIdle) yield* options.onIdle
          if (finished) {
            h.ended = true
            return Chunk.empty<Uint8Array>()
          }
          // Woken early by `done`, so the end of an attempt is read at once.
          yield* Effect.raceFirst(Effect.sleep(Duration.millis(h.waitMs)), Deferred.await(options.done))
          h.waitMs = Math.min(h.waitMs * 2, options.maxPollMs ?? options.pollMs)
          return Chunk.empty<Uint8Array>()
        })
      )
    )
  )

const readSome = (file: string, h: { fd: number | undefined; position: number }): Uint8Array | undefined => {
  try {
    h.fd ??= fs.openSync(file, "r")
    const size = fs.fstatSync(h.fd).size
    if (size < h.position) h.position = 0 // truncated: start over
    if (size === h.position) {
      // All of this file is read. A rotation renames it and the daemon goes on in a new file
      // under the same name: continue there, from its start.
      const now = fs.statSync(file, { throwIfNoEntry: false })
      if (now === undefined || now.ino === fs.fstatSync(h.fd).ino) return undefined
      fs.closeSync(h.fd)
      h.fd = undefined
      h.position = 0
      return readSome(file, h)
    }
    const buffer = Buffer.allocUnsafe(Math.min(READ_BYTES, size - h.position))
    const n = fs.readSync(h.fd, buffer, 0, buffer.length, h.position)
    if (n <= 0) return undefined
    h.position += n
    return buffer.subarray(0, n)
  } catch {
    // Not there yet, or gone: no output to read now.
    return undefined
  }
}

/** Bytes to bounded lines (see `LineSplitter`), the unterminated last line included at the end. */
export const splitLines = (maxLineBytes: number = MAX_LINE_BYTES) => <E, R>(bytes: Stream.Stream<Uint8Array, E, R>): Stream.Stream<Line, E, R> =>
  Stream.suspend(() => {
    const splitter = new LineSplitter(maxLineBytes)
    return bytes.pipe(
      Stream.mapConcat((chunk) => splitter.push(chunk)),
      Stream.concat(Stream.suspend(() => Stream.fromIterable(splitter.end())))
    )
  })

export interface OutputWatch {
  /** What was read so far. */
  readonly state: Effect.Effect<OutputState>
  /** When the agent last wrote anything (epoch ms; the watch's start before that). */
  readonly lastActivityMs: Effect.Effect<number>
  /** Completes, with the silent time in ms, once the agent has written nothing for `silentMs`. */
  readonly stalled: (silentMs: number) => Effect.Effect<number>
  /** Reads what is left (call after the agent exited) and returns the final state. */
  readonly finish: Effect.Effect<OutputState>
}

export interface WatchOptions {
  /** Where the agent's own output starts (after the header the daemon wrote). */
  readonly from: number
  /** Reads follow each other by `pollMs`, slowing down to `maxPollMs` while the agent is quiet. */
  readonly pollMs: number
  readonly maxPollMs?: number
  readonly maxLineBytes?: number
  /** Called with the new state each time the reader caught up after new output (not per line). */
  readonly onChange?: (state: OutputState) => Effect.Effect<void>
}

/** Starts following `file`; the watch ends with the scope or with `finish`. */
export const watchOutput = (file: string, options: WatchOptions): Effect.Effect<OutputWatch, never, Scope.Scope> =>
  Effect.gen(function*() {
    const startedMs = yield* Clock.currentTimeMillis
    const state = yield* Ref.make(emptyOutput)
    const lastActivity = yield* Ref.make(startedMs)
    const done = yield* Deferred.make<void>()
    let version = 0
    let published = 0
    const publish = Effect.suspend(() => {
      if (published === version || options.onChange === undefined) return Effect.void
      published = version
      return Effect.flatMap(Ref.get(state), options.onChange)
    })
    const reader = tailFile(file, { from: options.from, pollMs: options.pollMs, maxPollMs: options.maxPollMs, done, onIdle: publish }).pipe(
      Stream.tap(() => Effect.flatMap(Clock.currentTimeMillis, (now) => Ref.set(lastActivity, now))),
      splitLines(options.maxLineBytes),
      Stream.runForEach((line) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Ref.update(state, (s) => {
            version++
            return applyLine(s, line, now)
          }))
      )
    )
    // Progress goes out once the reader has caught up, however many lines arrived.
    const fiber = yield* Effect.forkScoped(reader)
    return {
      state: Ref.get(state),
      lastActivityMs: Ref.get(lastActivity),
      stalled: (silentMs) =>
        Effect.gen(function*() {
          for (;;) {
            const now = yield* Clock.currentTimeMillis
            const silent = now - (yield* Ref.get(lastActivity))
            if (silent >= silentMs) return silent
            yield* Effect.sleep(Duration.millis(silentMs - silent))
          }
        }),
      finish: Effect.gen(function*() {
        yield* Deferred.succeed(done, undefined)
        yield* Fiber.join(fiber)
        yield* publish // the unterminated last line comes after the reader's last idle
        return yield* Ref.get(state)
      })
    } satisfies OutputWatch
  })
