import { describe, expect, it } from "vitest"
import { jobParent, validTraceId } from "../../src/daemon/Tracing.js"

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
