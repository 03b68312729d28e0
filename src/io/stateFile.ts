/**
 * The daemon's own JSON state files (`agent-slots.json`, `daemon-state.json`, `usage.json`, the
 * pid file, dead-letter meta): read without trusting them, written atomically, and kept in step
 * with a changing value without making the daemon wait for the disk.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect, Either, type Scope } from "effect"
import { StorageError } from "../domain/errors.js"
import { archiveStamp } from "../domain/time.js"
import { coalesced } from "./coalesced.js"
import { freeName } from "./freeName.js"

/** What reading one of the daemon's JSON state files found. */
export type ReadStateFile<A> =
  | { readonly _tag: "Missing" }
  | { readonly _tag: "Valid"; readonly value: A }
  /** Empty, truncated, not JSON, or JSON of the wrong shape: `problem` says which. */
  | { readonly _tag: "Corrupt"; readonly problem: string }

/** One line about a state file that could not be used. */
const problemOf = (text: string, error: unknown): string => {
  if (text.trim() === "") return "empty"
  try {
    JSON.parse(text)
  } catch {
    return "not valid JSON"
  }
  const detail = String((error as { message?: unknown })?.message ?? error).split("\n")[0]
  return `valid JSON of the wrong shape (${detail})`
}

/** Reads and decodes a state file without changing anything. */
export const readStateFile = <A>(
  file: string,
  decode: (text: string) => Either.Either<A, unknown>
): ReadStateFile<A> => {
  let text: string
  try {
    text = fs.readFileSync(file, "utf8")
  } catch {
    return { _tag: "Missing" }
  }
  const decoded = decode(text)
  return Either.isRight(decoded)
    ? { _tag: "Valid", value: decoded.right }
    : { _tag: "Corrupt", problem: problemOf(text, decoded.left) }
}

/**
 * Copies a corrupt state file aside as `<file>.corrupt-<yyyymmdd-HHMMSS>` before it is replaced;
 * returns the copy's path, or undefined when it could not be kept.
 */
export const keepCorruptCopy = (file: string, now: number): string | undefined => {
  const copy = freeName(path.dirname(file), `${path.basename(file)}.corrupt-${archiveStamp(now)}`)
  try {
    fs.copyFileSync(file, copy, fs.constants.COPYFILE_EXCL)
    return copy
  } catch {
    return undefined
  }
}

/**
 * Persists a changing value with group commit. `persist` returns once a write that read the value
 * after the call has finished, so a caller's change is saved when it returns. Writes run one at a
 * time, always of the latest value (a slow write never lands an old state last), and callers that
 * arrive while a write is in flight share the next one: under load the file is written as often
 * as the disk allows, not once per change.
 */
export const latestWriter = <A>(
  read: Effect.Effect<A>,
  save: (value: A) => Effect.Effect<void>
): Effect.Effect<Effect.Effect<void>> =>
  Effect.map(Effect.makeSemaphore(1), (writes) => {
    let requested = 0
    let written = 0
    return Effect.suspend(() => {
      const mine = ++requested
      return writes.withPermits(1)(
        Effect.suspend(() => {
          if (written >= mine) return Effect.void
          const covered = requested
          // Uninterruptible: an abandoned write could still rename an old state over a newer one.
          return read.pipe(
            Effect.flatMap(save),
            Effect.ensuring(Effect.sync(() => (written = Math.max(written, covered)))),
            Effect.uninterruptible
          )
        })
      )
    })
  })

/**
 * Temp file in the same directory, then rename: readers never see a half-written file. Done
 * asynchronously, since replacing a file by rename can wait for the disk (ext4 flushes the new
 * data first) and the daemon's event loop must not.
 */
export const writeFileAtomic = (file: string, content: string) =>
  Effect.tryPromise({
    try: async () => {
      const tmp = `${file}.${process.pid}.tmp`
      try {
        try {
          await fs.promises.writeFile(tmp, content, { mode: 0o644 })
        } catch (e) {
          // The directory is made only when it is missing: a mkdir before every write costs too much.
          if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e
          await fs.promises.mkdir(path.dirname(file), { recursive: true })
          await fs.promises.writeFile(tmp, content, { mode: 0o644 })
        }
        await fs.promises.rename(tmp, file)
      } catch (e) {
        // A full disk leaves a partial temporary file: never leave it behind.
        await fs.promises.rm(tmp, { force: true })
        throw e
      }
    },
    catch: (cause) => new StorageError({ operation: "writing", path: file, cause })
  })


/**
 * Saves a state file atomically; a failed write is reported once as an Effect warning (not at
 * every change, a full disk would flood it) and the next change tries again.
 */
export const reportingFailures = <A>(file: string, render: (value: A) => string) => {
  let failing = false
  return (value: A): Effect.Effect<void> =>
    writeFileAtomic(file, render(value)).pipe(
      Effect.matchEffect({
        onFailure: (error) =>
          Effect.suspend(() => {
            const first = !failing
            failing = true
            return first ? Effect.logWarning(`${error.message}; retried at the next change`) : Effect.void
          }),
        onSuccess: () => Effect.sync(() => void (failing = false))
      })
    )
}

export interface WriteBehind {
  /** Notes that the value changed; returns at once, the background writer saves it soon. */
  readonly changed: Effect.Effect<void>
  /** Returns once a write that has every change made before the call has finished. */
  readonly flush: Effect.Effect<void>
}

/**
 * Keeps a file in step with a changing value without making anyone wait for the disk. A change
 * is written at once when the writer is idle; changes that come while it writes, or within
 * `spacingMs` after a write, share the next write. So a burst of changes (many agents starting)
 * costs a handful of writes, and a job's start never waits for one. Closing the scope flushes.
 *
 * What a crash between a change and its write loses is harmless for the files kept this way: a
 * busy slot not yet written is found again by the agents' environment at the next start, and a
 * stale one names a process that is gone (see recovery).
 */
export const writeBehind = <A>(
  read: Effect.Effect<A>,
  save: (value: A) => Effect.Effect<void>,
  spacingMs: number
): Effect.Effect<WriteBehind, never, Scope.Scope> =>
  Effect.gen(function*() {
    const flush = yield* latestWriter(read, save)
    const writer = yield* coalesced(flush, spacingMs)
    // Registered after the writer's fiber, so it runs before that fiber is interrupted.
    yield* Effect.addFinalizer(() => flush)
    return { changed: writer.signal, flush }
  })
