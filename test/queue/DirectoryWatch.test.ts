import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Either, Stream } from "effect"
import { watchDirectory } from "../../src/queue/DirectoryWatch.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "starforge-watch-")))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

describe("DirectoryWatch", () => {
  it.live("is registered when it returns: a file renamed in right after is reported, by its absolute path", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const dir = yield* tempDir
        fs.writeFileSync(path.join(dir, "staged.tmp"), "{}")
        const events = yield* watchDirectory(dir)
        fs.renameSync(path.join(dir, "staged.tmp"), path.join(dir, "a.trigger"))
        fs.rmSync(path.join(dir, "a.trigger"))
        const seen = yield* events.pipe(Stream.take(3), Stream.runCollect, Effect.timeout("5 seconds"))
        expect(Chunk.toReadonlyArray(seen)).toEqual([
          path.join(dir, "staged.tmp"),
          path.join(dir, "a.trigger"),
          path.join(dir, "a.trigger")
        ])
      })
    ))

  it.live("fails with NotFound when the watched directory is removed, so the caller can watch again", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const dir = yield* tempDir
        const watched = path.join(dir, "triggers")
        fs.mkdirSync(watched)
        const events = yield* watchDirectory(watched)
        fs.rmSync(watched, { recursive: true })
        const outcome = yield* events.pipe(Stream.runDrain, Effect.either, Effect.timeout("5 seconds"))
        expect(Either.isLeft(outcome) && outcome.left.reason).toBe("NotFound")
      })
    ))

  it.live("fails with NotFound when the directory does not exist", () =>
    Effect.gen(function*() {
      const outcome = yield* Effect.scoped(Effect.either(watchDirectory(path.join(os.tmpdir(), "starforge-watch-none", "x"))))
      expect(Either.isLeft(outcome) && outcome.left.reason).toBe("NotFound")
    }))
})
