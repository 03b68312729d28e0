import { Effect, Option, Tracer } from "effect"
import { describe, expect, it } from "vitest"
import { endedSpan, jobParent, validTraceId } from "../../src/observability/Tracing.js"

describe("jobParent", () => {
  it("takes a valid trace_id as the trace; otherwise a fresh random trace id, and always a fresh span id", () => {
    const given = "4BF92F3577B34DA6A3CE929D0E0E4736"
    expect(jobParent(given).traceId).toBe(given.toLowerCase())
    const ids = Array.from({ length: 200 }, () => jobParent("not-a-trace-id"))
    for (const { traceId, spanId } of ids) {
      expect(traceId).toMatch(/^[0-9a-f]{32}$/)
      expect(validTraceId(traceId)).toBe(traceId)
      expect(spanId).toMatch(/^[0-9a-f]{16}$/)
    }
    expect(new Set(ids.map((p) => p.traceId)).size).toBe(200)
    expect(new Set(ids.map((p) => p.spanId)).size).toBe(200)
    // Every byte value turns up: the digits are not biased to a few.
    const bytes = new Set(ids.flatMap((p) => p.traceId.match(/../g)!))
    expect(bytes.size).toBeGreaterThan(240)
  })
})

describe("endedSpan", () => {
  it("records a span of the current span, from the time given (or now) to now, already ended", () => {
    const native = Effect.runSync(Effect.tracer)
    const spans: Array<Tracer.Span> = []
    const capturing = Tracer.make({
      span: (...args) => {
        const span = native.span(...args)
        spans.push(span)
        return span
      },
      context: (f) => f()
    })
    Effect.runSync(Effect.zipRight(endedSpan("queue wait", 1_000), endedSpan("kill")).pipe(Effect.withSpan("starforge.attempt"), Effect.withTracer(capturing)))
    const [attempt, wait, kill] = [spans.find((s) => s.name === "starforge.attempt")!, spans.find((s) => s.name === "queue wait")!, spans.find((s) => s.name === "kill")!]
    for (const span of [wait, kill]) {
      expect(Option.getOrUndefined(span.parent)).toBe(attempt)
      expect(span.status._tag).toBe("Ended")
    }
    expect(wait.status.startTime).toBe(1_000_000_000n)
    expect(kill.status.startTime).toBeGreaterThan(1_000_000_000_000_000n)
  })
})
