import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Either } from "effect"
import { forEachEvent, watchDirectory } from "../../src/queue/DirectoryWatch.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "starforge-watch-")))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/** A directory to watch inside the temporary one, so that it can be removed. */
const watchedSubdir = Effect.map(tempDir, (dir) => {
  const watched = path.join(dir, "triggers")
  fs.mkdirSync(watched)
  return watched
})

describe("DirectoryWatch", () => {
  it.live("is registered when it returns: a file renamed in right after is reported, by its absolute path", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const dir = yield* tempDir
        fs.writeFileSync(path.join(dir, "staged.tmp"), "{}")
        const events = yield* watchDirectory(dir)
        fs.renameSync(path.join(dir, "staged.tmp"), path.join(dir, "a.trigger"))
        fs.rmSync(path.join(dir, "a.trigger"))
        const seen: Array<string> = []
        const three = yield* Deferred.make<void>()
        yield* forEachEvent(events, (file) => Effect.suspend(() => seen.push(file) === 3 ? Deferred.succeed(three, undefined) : Effect.void))
          .pipe(Effect.forkScoped)
        yield* Deferred.await(three).pipe(Effect.timeout("5 seconds"))
        expect(seen).toEqual([
          path.join(dir, "staged.tmp"),
          path.join(dir, "a.trigger"),
          path.join(dir, "a.trigger")
        ])
      })
    ))

  it.live("fails with NotFound when the watched directory is removed, so the caller can watch again", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const watched = yield* watchedSubdir
        const events = yield* watchDirectory(watched)
        fs.rmSync(watched, { recursive: true })
        const outcome = yield* forEachEvent(events, () => Effect.void).pipe(Effect.either, Effect.timeout("5 seconds"))
        expect(Either.isLeft(outcome) && outcome.left.reason).toBe("NotFound")
      })
    ))

  it.live("reports only the names it is asked for, and always the directory's own removal", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const watched = yield* watchedSubdir
        const events = yield* watchDirectory(watched, (name) => name.endsWith(".trigger"))
        const seen: Array<string> = []
        const watching = yield* forEachEvent(events, (file) => Effect.sync(() => seen.push(file))).pipe(Effect.either, Effect.fork)
        fs.writeFileSync(path.join(watched, "a.tmp"), "{}")
        fs.renameSync(path.join(watched, "a.tmp"), path.join(watched, "a.processing"))
        fs.writeFileSync(path.join(watched, "b.trigger"), "{}")
        fs.rmSync(watched, { recursive: true })
        const outcome = yield* watching.await.pipe(Effect.timeout("5 seconds"))
        // Ends with NotFound (the removal), having reported b.trigger and nothing else.
        expect(outcome._tag === "Success" && Either.isLeft(outcome.value) && outcome.value.left.reason).toBe("NotFound")
        expect(new Set(seen)).toEqual(new Set([path.join(watched, "b.trigger")]))
      })
    ))

  it.live("fails with NotFound when the directory does not exist", () =>
    Effect.gen(function*() {
      const outcome = yield* Effect.scoped(Effect.either(watchDirectory(path.join(os.tmpdir(), "starforge-watch-none", "x"))))
      expect(Either.isLeft(outcome) && outcome.left.reason).toBe("NotFound")
    }))
})
