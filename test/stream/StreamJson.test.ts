import { describe, expect, it } from "vitest"
import {
  applyLine,
  emptyOutput,
  type Line,
  LineSplitter,
  limitSignalOf,
  parseLine,
  parseResetTime,
  reportedError
} from "../../src/stream/StreamJson.js"

const enc = (s: string) => Buffer.from(s, "utf8")
const lineTexts = (lines: ReadonlyArray<Line>) => lines.map((l) => (l._tag === "Line" ? l.text : `<${l.bytes} dropped>`))

describe("LineSplitter", () => {
  it("joins lines split across reads, multi-byte characters included", () => {
    const s = new LineSplitter(100)
    const bytes = enc("héllo\nwör")
    expect(lineTexts(s.push(bytes.subarray(0, 2)))).toEqual([]) // cuts "é" in half
    expect(lineTexts(s.push(bytes.subarray(2)))).toEqual(["héllo"])
    expect(lineTexts(s.push(enc("ld\r\n\nend")))).toEqual(["wörld", ""])
    expect(lineTexts(s.end())).toEqual(["end"])
    expect(s.end()).toEqual([])
  })

  it("drops a line over the bound without buffering it, and goes on with the next", () => {
    const s = new LineSplitter(10)
    expect(lineTexts(s.push(enc("0123456")))).toEqual([])
    expect(lineTexts(s.push(enc("789abcdef")))).toEqual([])
    expect(lineTexts(s.push(enc("xyz\nok\n")))).toEqual(["<19 dropped>", "ok"])
    expect(lineTexts(s.push(enc("0123456789ABC")))).toEqual([])
    expect(lineTexts(s.end())).toEqual(["<13 dropped>"])
  })
})

const init = JSON.stringify({ type: "system", subtype: "init", session_id: "s1", model: "claude-x" })
const assistant = (id: string | undefined, content: Array<unknown>, usage?: object) =>
  JSON.stringify({ type: "assistant", session_id: "s1", message: { id, model: "claude-x", content, usage } })
const fold = (lines: ReadonlyArray<string>, now = Date.parse("2026-11-28T10:00:00Z")) =>
  lines.reduce((s, text) => applyLine(s, { _tag: "Line", text }, now), emptyOutput)

describe("parseLine and progress", () => {
  it("follows init, turns, tool uses, tokens and the final result", () => {
    const s = fold([
      init,
      assistant("m1", [{ type: "text", text: "hi" }], { input_tokens: 10, output_tokens: 2, cache_read_input_tokens: 5 }),
      // The CLI writes one event per content block, repeating the message's usage.
      assistant("m2", [{ type: "tool_use", name: "Bash", input: {} }], { input_tokens: 20, output_tokens: 3 }),
      assistant("m2", [{ type: "tool_use", name: "Read", input: {} }], { input_tokens: 20, output_tokens: 4 }),
      JSON.stringify({ type: "user", message: { content: [{ type: "tool_result", content: "usage limit reached" }] } })
    ])
    expect(s.progress).toEqual({
      last_event_at: "2026-11-28T10:00:00Z",
      turns: 2,
      tool_uses: 2,
      last_tool: "Read",
      cost_usd: null,
      tokens_in: 35,
      tokens_out: 6,
      session_id: "s1",
      model: "claude-x"
    })
    // A tool result mentioning a limit is work output, not a limit.
    expect(s.limit).toBeNull()
    const end = applyLine(s, {
      _tag: "Line",
      text: JSON.stringify({
        type: "result",
        subtype: "success",
        is_error: false,
        duration_ms: 5000,
        num_turns: 4,
        result: "done",
        session_id: "s1",
        total_cost_usd: 0.25,
        usage: { input_tokens: 100, output_tokens: 50 }
      })
    }, 0)
    expect(end.progress).toMatchObject({ turns: 4, cost_usd: 0.25, tokens_in: 100, tokens_out: 50 })
    expect(end.result).toEqual({ subtype: "success", isError: false, durationMs: 5000, text: "done" })
    expect(reportedError(end)).toBeUndefined()
  })

  it("takes the old cost_usd field too", () => {
    expect(fold([JSON.stringify({ type: "result", cost_usd: 1.5, is_error: false })]).progress.cost_usd).toBe(1.5)
  })

  it("passes non-JSON lines, broken JSON and unknown types through as text or other events", () => {
    const s = fold(["plain text", "{\"type\":\"assistant\",\"mess", "[1,2]", JSON.stringify({ type: "new_kind", x: 1 }), ""])
    expect(s.textLines).toBe(4)
    expect(s.jsonLines).toBe(1)
    expect(s.progress.turns).toBe(0)
  })

  it("finds a rate_limit_event written into the middle of another line", () => {
    const line = `{"type":"assistant","mess{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":1764000000,"note":"a } in a string"}}age":{}}`
    const events = parseLine(line)
    expect(events.map((e) => e._tag)).toEqual(["RateLimit", "Text"])
    expect(events[0]).toEqual({ _tag: "RateLimit", status: "rejected", resetsAtMs: 1764000000_000 })
  })

  it("an is_error result is a reported error; so is a result that is a limit message", () => {
    expect(reportedError(fold([JSON.stringify({ type: "result", subtype: "error_during_execution", is_error: true, result: "boom" })])))
      .toBe("error_during_execution: boom")
    expect(reportedError(fold([JSON.stringify({ type: "result", is_error: false, result: "Claude AI usage limit reached|1762952400" })])))
      .toMatch(/^usage limit/)
    expect(reportedError(fold([JSON.stringify({ type: "result", is_error: false, result: "Fixed the rate limit exceeded bug in api.ts" })])))
      .toBeUndefined()
  })
})

describe("usage limits", () => {
  const now = Date.parse("2026-11-28T10:00:00Z")
  const signal = (line: string) => parseLine(line).map((e) => limitSignalOf(e, now)).find((s) => s !== undefined)

  it("recognises the wordings seen in the wild, with their reset times", () => {
    expect(signal(JSON.stringify({ type: "rate_limit_event", rate_limit_info: { status: "rejected", resetsAt: 1764330000 } })))
      .toMatchObject({ resetsAtMs: 1764330000_000 })
    expect(signal(JSON.stringify({ type: "rate_limit_event", rate_limit_info: { status: "allowed_warning", resetsAt: 1 } }))).toBeUndefined()
    expect(signal("Claude AI usage limit reached|1764331200")).toMatchObject({ resetsAtMs: 1764331200_000 })
    expect(signal(JSON.stringify({ type: "result", is_error: true, result: "You've hit your limit · resets 2pm (Asia/Shanghai)" })))
      .toMatchObject({ resetsAtMs: Date.parse("2026-11-29T06:00:00Z") })
    expect(signal(`API Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed your account's rate limit"}}`))
      .toMatchObject({ resetsAtMs: null })
    expect(signal(assistant("m", [{ type: "text", text: "You’ve hit your weekly limit · resets Dec 1 at 4pm (America/Recife)" }])))
      .toMatchObject({ resetsAtMs: Date.parse("2026-12-01T19:00:00Z") })
  })

  it("ignores limits mentioned in work output", () => {
    expect(signal(assistant("m", [{ type: "text", text: "I changed the handler so usage limit reached errors retry." }]))).toBeUndefined()
    expect(signal(assistant("m", [{ type: "tool_use", name: "Bash", input: { command: "grep 'usage limit reached'" } }]))).toBeUndefined()
    expect(signal(`x ${"long ".repeat(200)} usage limit reached`)).toBeUndefined()
  })

  it("parses reset times as the next occurrence, in the given zone", () => {
    expect(parseResetTime("resets 9am (UTC)", now)).toBe(Date.parse("2026-11-29T09:00:00Z"))
    expect(parseResetTime("resets 11:30am (UTC)", now)).toBe(Date.parse("2026-11-28T11:30:00Z"))
    expect(parseResetTime("resets Jan 2 at 1am (UTC)", Date.parse("2026-12-30T00:00:00Z"))).toBe(Date.parse("2027-01-02T01:00:00Z"))
    expect(parseResetTime("resets 4pm (Not/AZone)", now)).toBeNull()
    expect(parseResetTime("resets 5 things", now)).toBeNull()
    expect(parseResetTime("no time here", now)).toBeNull()
  })
})
