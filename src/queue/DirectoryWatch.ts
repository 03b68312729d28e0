/**
 * Watches one directory with `node:fs.watch` (inotify on Linux) and reports each changed entry
 * the moment the kernel does: `@parcel/watcher` debounces its events and crawls the whole tree,
 * and `@effect/platform`'s node watcher registers late and misclassifies creations (effect-notes §5).
 *
 * - The watch is registered when `watchDirectory` returns: a change made after that is never
 *   missed, so a rescan that follows it sees everything (no gap at start-up).
 * - Events are the absolute paths of the entries that changed (created, renamed in or out,
 *   written, removed): a hint to look at that file again, never a verdict. Only names that
 *   `accept` takes are reported: the others cost nothing beyond the kernel's notice.
 * - When the watched directory itself is removed or renamed, inotify drops (or keeps following)
 *   the old directory: the watch fails with `NotFound`, even if a new directory already stands
 *   in its place, so the caller can watch the directory that is there now.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Error as PlatformError } from "@effect/platform"
import { Effect, Mailbox, Runtime, type Scope } from "effect"

const watchError = (dir: string, reason: PlatformError.SystemErrorReason, cause: unknown) =>
  new PlatformError.SystemError({ module: "FileSystem", reason, method: "watch", pathOrDescriptor: dir, cause })

export const watchDirectory = (
  dir: string,
  accept: (name: string) => boolean = () => true
): Effect.Effect<Mailbox.ReadonlyMailbox<string, PlatformError.SystemError>, PlatformError.SystemError, Scope.Scope> =>
  Effect.gen(function*() {
    const events = yield* Mailbox.make<string, PlatformError.SystemError>()
    // The watcher's callbacks run outside any fiber: each runs its mailbox operation to the end
    // at once (an unbounded mailbox never makes an offer wait).
    const run = Runtime.runSync(yield* Effect.runtime<never>())
    const lost = (reason: PlatformError.SystemErrorReason, cause: unknown) =>
      void run(events.fail(watchError(dir, reason, cause)))
    yield* Effect.acquireRelease(
      Effect.try({
        try: () => {
          const self = path.basename(dir)
          // Inode and birth time: ext4 hands a re-created directory the inode just freed.
          const identity = (): string | undefined => {
            const stat = fs.statSync(dir, { bigint: true, throwIfNoEntry: false })
            return stat === undefined ? undefined : `${stat.ino}:${stat.birthtimeNs}`
          }
          const watched = identity()
          const watcher = fs.watch(dir, (_event, name) => {
            if (!name) return
            // The directory's own removal (or rename) is reported under its name; by then a new
            // directory may already stand in its place, which this watch does not see.
            if (name === self && identity() !== watched) {
              return lost("NotFound", new Error(`${dir} was removed`))
            }
            if (accept(name)) run(events.offer(path.join(dir, name)))
          })
          watcher.on("error", (error) => lost("Unknown", error))
          watcher.on("close", () => void run(events.end))
          return watcher
        },
        catch: (cause) =>
          watchError(dir, (cause as NodeJS.ErrnoException).code === "ENOENT" ? "NotFound" : "Unknown", cause)
      }),
      (watcher) => Effect.sync(() => watcher.close())
    )
    return events
  })

/**
 * Runs `f` on each event of a watch, in order, until the watch ends (then succeeds) or fails.
 * A loop over the mailbox's batches, not `Stream.runForEach`, whose channel machinery costs many
 * effect steps per event.
 */
export const forEachEvent = <E, R>(
  events: Mailbox.ReadonlyMailbox<string, PlatformError.SystemError>,
  f: (file: string) => Effect.Effect<void, E, R>
): Effect.Effect<void, E | PlatformError.SystemError, R> => {
  const loop: Effect.Effect<void, E | PlatformError.SystemError, R> = Effect.flatMap(events.takeAll, ([batch, done]) => {
    const handled = Effect.forEach(batch, f, { discard: true })
    return done ? handled : Effect.zipRight(handled, loop)
  })
  return loop
}
