import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, TestClock } from "effect"
import { KEEP_DAYS, make, MAX_COOLDOWN_MS, pauseUntil } from "../../src/state/Usage.js"

describe("pauseUntil", () => {
  it("takes a reset time ahead, else a doubling cooldown capped at 6 hours", () => {
    const now = 1_000_000
    expect(pauseUntil(now, now + 60_000, 1, 300_000)).toEqual({ untilMs: now + 60_000, source: "reset" })
    expect(pauseUntil(now, now - 1, 1, 300_000)).toEqual({ untilMs: now + 300_000, source: "cooldown" })
    expect(pauseUntil(now, now + 30 * 86_400_000, 1, 300_000).source).toBe("cooldown")
    expect(pauseUntil(now, null, 3, 300_000).untilMs).toBe(now + 1_200_000)
    expect(pauseUntil(now, null, 20, 300_000).untilMs).toBe(now + MAX_COOLDOWN_MS)
  })
})

describe("Usage", () => {
  it.scoped("a pause lasts until its time; a success during another agent's pause ends nothing", () =>
    Effect.gen(function*() {
      const usage = yield* make({ limits: {}, days: {} }, 60_000, () => Effect.void)
      yield* usage.limitHit({ command: "claude", agent: "a", trigger: "x.trigger", reason: "limit", resetsAtMs: null })
      expect(yield* usage.pausedUntil("claude")).toBe(60_000)
      expect(yield* usage.pausedUntil("other")).toBeUndefined()
      yield* usage.succeeded("claude")
      expect(yield* usage.pausedUntil("claude")).toBe(60_000)
      yield* TestClock.adjust("60 seconds")
      expect(yield* usage.pausedUntil("claude")).toBeUndefined()
      yield* usage.succeeded("claude")
      // The series ended: the next limit starts from the first cooldown again.
      const next = yield* usage.limitHit({ command: "claude", agent: "b", trigger: null, reason: "limit", resetsAtMs: null })
      expect(next).toMatchObject({ consecutive: 1, until: "1970-01-01T00:02:00Z", agent: "b" })
    }))

  it.scoped("adds each attempt's cost to its agent's day", () =>
    Effect.gen(function*() {
      const usage = yield* make({ limits: {}, days: {} }, 60_000, () => Effect.void)
      yield* usage.recordAttempt({ agent: "a", costUsd: 0.1, tokensIn: 10, tokensOut: 1 })
      yield* usage.recordAttempt({ agent: "a", costUsd: 0.2, tokensIn: 5, tokensOut: 2 })
      yield* usage.recordAttempt({ agent: "b", costUsd: null, tokensIn: 0, tokensOut: 0 })
      yield* TestClock.adjust("1 day")
      yield* usage.recordAttempt({ agent: "a", costUsd: 1, tokensIn: 0, tokensOut: 0 })
      expect((yield* usage.snapshot).days).toEqual({
        "1970-01-01": { a: { cost_usd: 0.3, attempts: 2, tokens_in: 15, tokens_out: 3 }, b: { cost_usd: 0, attempts: 1, tokens_in: 0, tokens_out: 0 } },
        "1970-01-02": { a: { cost_usd: 1, attempts: 1, tokens_in: 0, tokens_out: 0 } }
      })
    }))
  it.scoped("keeps the last KEEP_DAYS days; a snapshot stays as it was when later attempts are recorded", () =>
    Effect.gen(function*() {
      const usage = yield* make({ limits: {}, days: {} }, 60_000, () => Effect.void)
      yield* usage.recordAttempt({ agent: "a", costUsd: 0.5, tokensIn: 1, tokensOut: 1 })
      const taken = yield* usage.snapshot
      for (let day = 1; day <= KEEP_DAYS; day++) {
        yield* TestClock.adjust("1 day")
        yield* usage.recordAttempt({ agent: "a", costUsd: 0.5, tokensIn: 1, tokensOut: 1 })
        yield* usage.recordAttempt({ agent: "b", costUsd: 0.5, tokensIn: 1, tokensOut: 1 })
      }
      expect(taken.days).toEqual({ "1970-01-01": { a: { cost_usd: 0.5, attempts: 1, tokens_in: 1, tokens_out: 1 } } })
      const days = Object.keys((yield* usage.snapshot).days)
      expect(days).toHaveLength(KEEP_DAYS)
      expect(days[0]).toBe("1970-01-02")
      expect(days).toEqual([...days].sort())
    }))

  it.scoped("an attempt's cost never waits for the disk; a limit is saved before it is returned", () =>
    Effect.gen(function*() {
      const saved: Array<number> = []
      const disk = yield* Deferred.make<void>()
      // A disk that takes its time: every write waits for the test.
      const usage = yield* make({ limits: {}, days: {} }, 60_000, (u) =>
        Effect.zipRight(Deferred.await(disk), Effect.sync(() => void saved.push(Object.keys(u.days).length + Object.keys(u.limits).length))))
      yield* usage.recordAttempt({ agent: "a", costUsd: 0.1, tokensIn: 1, tokensOut: 1 })
      yield* usage.recordAttempt({ agent: "a", costUsd: 0.1, tokensIn: 1, tokensOut: 1 })
      expect(saved).toEqual([])
      const limit = yield* Effect.fork(usage.limitHit({ command: "claude", agent: "a", trigger: null, reason: "limit", resetsAtMs: null }))
      yield* Effect.yieldNow()
      expect(limit.unsafePoll()).toBeNull()
      yield* Deferred.succeed(disk, undefined)
      yield* Fiber.join(limit)
      // The last write has the day and the limit.
      expect(saved[saved.length - 1]).toBe(2)
    }))
})
