/** The coalescing runner under the TestClock: one run per burst, spaced runs, nothing after close. */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope, TestClock } from "effect"
import { coalesced } from "../../src/io/coalesced.js"

describe("coalesced", () => {
  it.effect("the first signal runs at once; a burst during the spacing shares one later run; a quiet runner runs nothing", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      let runs = 0
      const runner = yield* coalesced(Effect.sync(() => void runs++), 1_000).pipe(Scope.extend(scope))
      yield* TestClock.adjust("10 seconds")
      expect(runs).toBe(0)
      yield* runner.signal
      yield* Effect.yieldNow()
      expect(runs).toBe(1)
      for (let i = 0; i < 50; i++) yield* runner.signal
      yield* TestClock.adjust("999 millis")
      expect(runs).toBe(1)
      yield* TestClock.adjust("1 millis")
      expect(runs).toBe(2)
      // Quiet again: the runner ends, and the next signal (after the spacing) runs at once.
      yield* TestClock.adjust("5 seconds")
      expect(runs).toBe(2)
      yield* runner.signal
      yield* Effect.yieldNow()
      expect(runs).toBe(3)
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("closing the scope stops a waiting round, and signals after it run nothing", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      let runs = 0
      const runner = yield* coalesced(Effect.sync(() => void runs++), 1_000).pipe(Scope.extend(scope))
      yield* runner.signal
      yield* runner.signal
      yield* Effect.yieldNow()
      expect(runs).toBe(1)
      yield* Scope.close(scope, Exit.void)
      yield* runner.signal
      yield* TestClock.adjust("10 seconds")
      expect(runs).toBe(1)
    }))
})
