/**
 * The machinery behind the daemon's state files: group commit (`latestWriter`) and the
 * background writer that keeps a file in step without anyone waiting for the disk (`writeBehind`).
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Scope, TestClock } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { latestWriter, writeBehind, writeFileAtomic } from "../../src/io/stateFile.js"

describe("latestWriter (group commit)", () => {
  it.effect("callers during a slow write share the next one; each returns after a write that has its change", () =>
    Effect.gen(function*() {
      let value = 0
      const saved: Array<number> = []
      const gate = yield* Deferred.make<void>()
      // The first write waits on the gate, so every later caller arrives while it is in flight.
      const persist = yield* latestWriter(Effect.sync(() => value), (v) =>
        Effect.zipRight(saved.length === 0 ? Deferred.await(gate) : Effect.void, Effect.sync(() => void saved.push(v))))
      const change = (v: number) =>
        Effect.zipRight(
          Effect.sync(() => (value = v)),
          Effect.zipRight(persist, Effect.sync(() => saved[saved.length - 1]!))
        )
      const first = yield* Effect.fork(change(1))
      yield* Effect.yieldNow()
      const later = yield* Effect.forEach([2, 3, 4, 5, 6], (v) => Effect.fork(change(v)))
      // Until every later caller waits for the write in flight.
      const waiting = Effect.map(Effect.forEach(later, (f) => f.status), (all) => all.every((s) => s._tag === "Suspended"))
      while (!(yield* waiting)) yield* Effect.yieldNow()
      yield* Deferred.succeed(gate, undefined)
      expect(yield* Fiber.join(first)).toBe(1)
      // Each caller saw a save at least as new as its own change, and the five shared one write.
      expect(yield* Effect.forEach(later, Fiber.join)).toEqual([6, 6, 6, 6, 6])
      expect(saved).toEqual([1, 6])
      // A call with nothing in flight writes again.
      value = 7
      yield* persist
      expect(saved).toEqual([1, 6, 7])
    }))
})

describe("writeBehind", () => {
  it.effect("a change returns before its write; a burst shares writes spaced by the interval; flush and close save the last value", () =>
    Effect.gen(function*() {
      let value = 0
      const saved: Array<number> = []
      const disk = yield* Deferred.make<void>()
      const scope = yield* Scope.make()
      const file = yield* writeBehind(
        Effect.sync(() => value),
        (v) => Effect.zipRight(Deferred.await(disk), Effect.sync(() => void saved.push(v))),
        100
      ).pipe(Scope.extend(scope))
      // The disk is stuck: changes still return at once.
      for (let v = 1; v <= 5; v++) {
        value = v
        yield* file.changed
      }
      expect(saved).toEqual([])
      yield* Deferred.succeed(disk, undefined)
      // The writer took the first change at once and saved what the value was by then.
      while (saved.length === 0) yield* Effect.yieldNow()
      expect(saved).toEqual([5])
      // Changes within the spacing wait for it, then share one write.
      value = 6
      yield* file.changed
      value = 7
      yield* file.changed
      for (let i = 0; i < 10; i++) yield* Effect.yieldNow()
      expect(saved).toEqual([5])
      yield* TestClock.adjust("100 millis")
      while (saved.length === 1) yield* Effect.yieldNow()
      expect(saved).toEqual([5, 7])
      // flush does not wait for the spacing.
      value = 8
      yield* file.changed
      yield* file.flush
      expect(saved[saved.length - 1]).toBe(8)
      // Closing the scope saves the last value.
      value = 9
      yield* file.changed
      yield* Scope.close(scope, Exit.void)
      expect(saved[saved.length - 1]).toBe(9)
    }))
})

describe("writeFileAtomic", () => {
  it.live("replaces the file through a temporary one, and makes a missing directory first", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-atomic-"))
      try {
        const file = path.join(dir, "not", "yet", "state.json")
        yield* writeFileAtomic(file, "one\n")
        expect(fs.readFileSync(file, "utf8")).toBe("one\n")
        yield* writeFileAtomic(file, "two\n")
        expect(fs.readFileSync(file, "utf8")).toBe("two\n")
        expect(fs.readdirSync(path.dirname(file))).toEqual(["state.json"])
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.live("fails with a StorageError naming the file when its directory cannot be made, and leaves nothing behind", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-atomic-"))
      try {
        fs.writeFileSync(path.join(dir, "plain"), "")
        const file = path.join(dir, "plain", "state.json")
        const error = yield* Effect.flip(writeFileAtomic(file, "x"))
        expect(error._tag).toBe("StorageError")
        expect(error.message).toContain(file)
        expect(fs.readdirSync(dir)).toEqual(["plain"])
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    }))
})
