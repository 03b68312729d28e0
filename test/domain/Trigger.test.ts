import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import {
  buildPrompt,
  compareOrder,
  fileSafe,
  isValidAgentName,
  jsonDepth,
  makeTraceId,
  MAX_JSON_DEPTH,
  MAX_PROMPT_BYTES,
  MAX_TRIGGER_BYTES,
  type OrderKey,
  parseTrigger,
  priorityOf,
  promptProblem,
  type Trigger,
  type TriggerProblem,
  ticketOf
} from "../../src/domain/Trigger.js"

const encode = (text: string): Uint8Array => new TextEncoder().encode(text)
const parse = (text: string) => parseTrigger(encode(text))
const parseJson = (value: unknown) => parse(JSON.stringify(value))

const problemOf = (result: Either.Either<Trigger, TriggerProblem>): TriggerProblem => {
  if (Either.isRight(result)) {
    throw new Error(`expected an invalid trigger, got ${JSON.stringify(result.right)}`)
  }
  return result.left
}

const triggerOf = (result: Either.Either<Trigger, TriggerProblem>): Trigger => {
  if (Either.isLeft(result)) throw new Error(`expected a valid trigger, got: ${result.left.reason}`)
  return result.right
}

/** Every reason is a single, non-empty line. */
const expectOneLine = (reason: string) => {
  expect(reason.length).toBeGreaterThan(0)
  expect(reason).not.toMatch(/[\n\r\u2028\u2029]/)
}

const invalid = (result: Either.Either<Trigger, TriggerProblem>): TriggerProblem => {
  const problem = problemOf(result)
  expectOneLine(problem.reason)
  return problem
}

describe("parseTrigger", () => {
  describe("accepts valid triggers", () => {
    it("a minimal trigger", () => {
      expect(triggerOf(parseJson({ to_agent: "junior-dev-a" }))).toEqual({ to_agent: "junior-dev-a" })
    })

    it("a trigger with every field", () => {
      const full = {
        to_agent: "junior-dev-a",
        from_agent: "orchestrator",
        action: "implement",
        message: "do it",
        command: "/work 52",
        trace_id: "TRACE-1-abcdef",
        timestamp: "2025-10-25T05:00:00Z",
        ticket: "52",
        context: { ticket: "52", nested: { deep: [1, 2, 3] } },
        priority: "high"
      }
      expect(triggerOf(parseJson(full))).toEqual(full)
    })

    it("context keys named like Object.prototype's are kept as data, never made the prototype", () => {
      const text = `{"to_agent": "a", "context": {"__proto__": {"ticket": "forged"}, "constructor": {"prototype": {"x": 1}}}}`
      const t = triggerOf(parse(text))
      expect(Object.getPrototypeOf(t.context)).toBe(Object.prototype)
      expect(Object.keys(t.context!)).toEqual(["__proto__", "constructor"])
      expect(ticketOf(t)).toBeNull()
      expect(buildPrompt(t, "/x")).toContain(`Context: {"__proto__":{"ticket":"forged"},"constructor":{"prototype":{"x":1}}}`)
    })

    it("a numeric timestamp", () => {
      expect(triggerOf(parseJson({ to_agent: "a", timestamp: 1700000000 })).timestamp).toBe(1700000000)
    })

    it("a ticket given as a number", () => {
      const trigger = triggerOf(parseJson({ to_agent: "a", ticket: 52 }))
      expect(trigger.ticket).toBe(52)
      expect(ticketOf(trigger)).toBe("52")
    })

    it("every priority", () => {
      for (const priority of ["high", "normal", "low"] as const) {
        expect(triggerOf(parseJson({ to_agent: "a", priority })).priority).toBe(priority)
      }
    })

    it("an empty context object", () => {
      expect(triggerOf(parseJson({ to_agent: "a", context: {} })).context).toEqual({})
    })

    it("ignores unknown fields", () => {
      const result = parseJson({
        to_agent: "a",
        unknown: { nested: [1, "two"] },
        another_field: null,
        extra_number: 1.5
      })
      const trigger = triggerOf(result)
      expect(trigger.to_agent).toBe("a")
      expect(trigger).not.toHaveProperty("unknown")
    })

    it("surrounding whitespace and CRLF newlines", () => {
      expect(triggerOf(parse('\r\n  {\r\n  "to_agent": "a"\r\n}\r\n  ')).to_agent).toBe("a")
    })

    it("a leading UTF-8 byte order mark", () => {
      const bytes = new Uint8Array([0xef, 0xbb, 0xbf, ...encode('{"to_agent":"a"}')])
      expect(triggerOf(parseTrigger(bytes)).to_agent).toBe("a")
    })

    it("non-ASCII text in free-text fields", () => {
      expect(triggerOf(parseJson({ to_agent: "a", message: "héllo → 世界 🚀" })).message).toBe("héllo → 世界 🚀")
    })

    it("brackets inside strings do not count as nesting", () => {
      const message = "[{".repeat(500) + '\\"[[[' + "}]".repeat(500)
      expect(triggerOf(parseJson({ to_agent: "a", message })).message).toBe(message)
    })

    it("a file of exactly 1 MiB", () => {
      const json = '{"to_agent":"a"}'
      const text = json + " ".repeat(MAX_TRIGGER_BYTES - json.length)
      const bytes = encode(text)
      expect(bytes.byteLength).toBe(MAX_TRIGGER_BYTES)
      expect(triggerOf(parseTrigger(bytes)).to_agent).toBe("a")
    })
  })

  describe("incomplete files (may still be being written)", () => {
    it("an empty file", () => {
      const problem = invalid(parseTrigger(new Uint8Array(0)))
      expect(problem.incomplete).toBe(true)
      expect(problem.reason).toMatch(/empty/)
    })

    it("a whitespace-only file", () => {
      expect(invalid(parse("  \n\t \r\n")).incomplete).toBe(true)
    })

    it("not JSON", () => {
      const problem = invalid(parse("this is not json"))
      expect(problem.incomplete).toBe(true)
      expect(problem.reason).toMatch(/JSON/)
    })

    it("a truncated JSON object", () => {
      const problem = invalid(parse('{"to_agent": "a", "message": "half'))
      expect(problem.incomplete).toBe(true)
    })

    it("a JSON object followed by garbage on several lines", () => {
      expect(invalid(parse('{"to_agent":"a"}\n\n}\n]\ngarbage\n')).incomplete).toBe(true)
    })
  })

  describe("rejects the invalid classes of contract §3", () => {
    it.each([
      ["an array", "[1, 2, 3]"],
      ["an empty array", "[]"],
      ["a string", '"junior-dev-a"'],
      ["a number", "42"],
      ["a boolean", "true"],
      ["null", "null"]
    ])("JSON that is %s is not an object", (_label, text) => {
      const problem = invalid(parse(text))
      expect(problem.incomplete).toBe(false)
      expect(problem.reason).toMatch(/not a JSON object/)
    })

    it("10,000 levels of nesting are rejected as too deep, quickly", () => {
      const text = `{"to_agent":"a","x":` + "[".repeat(10_000) + "]".repeat(10_000) + "}"
      const started = performance.now()
      const problem = invalid(parse(text))
      const elapsed = performance.now() - started
      expect(problem.incomplete).toBe(false)
      expect(problem.reason).toMatch(/deep/)
      expect(problem.reason).toContain(String(MAX_JSON_DEPTH))
      expect(elapsed).toBeLessThan(1000)
    })

    it("10,000 unclosed levels of nesting are rejected as too deep", () => {
      const problem = invalid(parse("{\"a\":".repeat(10_000)))
      expect(problem.reason).toMatch(/deep/)
      expect(problem.incomplete).toBe(false)
    })

    it("101 levels are rejected, 100 accepted", () => {
      // The top-level object is level 1.
      const nested = (levels: number) => `{"to_agent":"a","x":` + "[".repeat(levels - 1) + "]".repeat(levels - 1) + "}"
      expect(jsonDepth(nested(100))).toBe(100)
      expect(jsonDepth(nested(101))).toBe(101)
      expect(triggerOf(parse(nested(100))).to_agent).toBe("a")
      const problem = invalid(parse(nested(101)))
      expect(problem.incomplete).toBe(false)
      expect(problem.reason).toContain("101")
      expect(problem.reason).toContain("100")
    })

    it("101 levels of objects inside context are rejected", () => {
      let inner: unknown = {}
      for (let i = 0; i < 99; i++) inner = { n: inner }
      // top (1) + context chain (100) = 101
      expect(invalid(parseJson({ to_agent: "a", context: inner })).reason).toMatch(/deep/)
    })

    it("invalid UTF-8", () => {
      const bytes = new Uint8Array([...encode('{"to_agent":"a","message":"'), 0xff, 0xfe, 0xc3, ...encode('"}')])
      const problem = invalid(parseTrigger(bytes))
      expect(problem.reason).toMatch(/UTF-8/)
      expect(problem.incomplete).toBe(false)
    })

    it("a truncated multi-byte UTF-8 sequence", () => {
      const bytes = new Uint8Array([...encode('{"to_agent":"a","message":"'), 0xe4, 0xb8])
      expect(invalid(parseTrigger(bytes)).reason).toMatch(/UTF-8/)
    })

    it("an overlong UTF-8 encoding of '/'", () => {
      const bytes = new Uint8Array([...encode('{"to_agent":"a'), 0xc0, 0xaf, ...encode('b"}')])
      expect(invalid(parseTrigger(bytes)).reason).toMatch(/UTF-8/)
    })

    it("a raw NUL byte inside a string", () => {
      const bytes = new Uint8Array([...encode('{"to_agent":"a'), 0x00, ...encode('"}')])
      invalid(parseTrigger(bytes))
    })

    it("a raw NUL byte after the object", () => {
      const bytes = new Uint8Array([...encode('{"to_agent":"a"}'), 0x00])
      invalid(parseTrigger(bytes))
    })

    it("an escaped NUL in to_agent names to_agent", () => {
      const problem = invalid(parse('{"to_agent":"a\\u0000b"}'))
      expect(problem.reason).toContain("to_agent")
      expect(problem.reason).not.toContain("\u0000")
    })

    it("a file over 1 MiB, whatever it holds", () => {
      const json = '{"to_agent":"a"}'
      const bytes = encode(json + " ".repeat(MAX_TRIGGER_BYTES - json.length + 1))
      expect(bytes.byteLength).toBe(MAX_TRIGGER_BYTES + 1)
      const problem = invalid(parseTrigger(bytes))
      expect(problem.incomplete).toBe(false)
      expect(problem.reason).toMatch(/1 MiB/)
      expect(problem.reason).toContain(String(MAX_TRIGGER_BYTES + 1))
    })

    it("a file over 1 MiB of invalid UTF-8 is rejected for its size", () => {
      const problem = invalid(parseTrigger(new Uint8Array(MAX_TRIGGER_BYTES + 10).fill(0xff)))
      expect(problem.reason).toMatch(/1 MiB/)
    })
  })

  describe("to_agent", () => {
    const expectToAgentProblem = (value: unknown) => {
      const problem = invalid(parseJson({ to_agent: value, action: "x" }))
      expect(problem.incomplete).toBe(false)
      expect(problem.reason).toContain("to_agent")
      return problem
    }

    it("missing", () => {
      const problem = invalid(parseJson({ action: "x", message: "no agent" }))
      expect(problem.reason).toContain("to_agent")
      expect(problem.reason).toMatch(/missing/)
      expect(problem.incomplete).toBe(false)
    })

    it("null", () => {
      expectToAgentProblem(null)
    })

    it("empty", () => {
      expect(expectToAgentProblem("").reason).toMatch(/empty/)
    })

    it.each([
      ["a number", 5],
      ["an array", ["a"]],
      ["an object", { name: "a" }],
      ["a boolean", true]
    ])("%s", (_label, value) => {
      expectToAgentProblem(value)
    })

    it("65 characters", () => {
      expectToAgentProblem("a".repeat(65))
    })

    it("64 characters is valid", () => {
      const name = "a".repeat(32) + "Z9._-".repeat(6) + "b".repeat(2)
      expect(name).toHaveLength(64)
      expect(triggerOf(parseJson({ to_agent: name })).to_agent).toBe(name)
    })

    it.each([
      ["a single letter", "a"],
      ["a single digit", "7"],
      ["letters, digits, dot, underscore, dash", "Junior_Dev-2.b"],
      ["a trailing dot", "agent."],
      ["a trailing dash", "agent-"],
      ["a leading underscore", "_agent"],
      ["single dots between parts", "a.b.c"]
    ])("valid: %s", (_label, name) => {
      expect(isValidAgentName(name)).toBe(true)
      expect(triggerOf(parseJson({ to_agent: name })).to_agent).toBe(name)
    })

    it.each([
      ["a slash", "a/b"],
      ["a path traversal", "../etc"],
      ["'..' in the middle", "a..b"],
      ["'..' at the end", "ab.."],
      ["just '..'", ".."],
      ["just '.'", "."],
      ["a space", "junior dev"],
      ["a newline", "junior\ndev"],
      ["a carriage return", "junior\rdev"],
      ["a tab", "junior\tdev"],
      ["command substitution", "$(touch pwned)"],
      ["a semicolon", "a;rm -rf /"],
      ["backticks", "`touch pwned`"],
      ["a leading dash", "-rf"],
      ["a leading dot", ".hidden"],
      ["a backslash", "a\\b"],
      ["a non-ASCII letter", "agént"],
      ["a U+2028 line separator", "a\u2028b"],
      ["a NUL", "a\u0000b"],
      ["a glob", "a*"],
      ["a colon", "a:b"]
    ])("invalid: %s", (_label, name) => {
      expect(isValidAgentName(name)).toBe(false)
      expectToAgentProblem(name)
    })

    it("a very long name gives a short reason", () => {
      const problem = expectToAgentProblem("x".repeat(10_000))
      expect(problem.reason.length).toBeLessThan(400)
    })
  })

  describe("fields of the wrong type", () => {
    it.each([
      ["an array", [1, 2]],
      ["an empty array", []],
      ["null", null],
      ["a string", "ticket 52"],
      ["a number", 52]
    ])("context that is %s", (_label, context) => {
      const problem = invalid(parseJson({ to_agent: "a", context }))
      expect(problem.incomplete).toBe(false)
      expect(problem.reason).toContain("context")
    })

    it.each([["urgent"], ["HIGH"], [""], [1], [null]])("priority %j", (priority) => {
      const problem = invalid(parseJson({ to_agent: "a", priority }))
      expect(problem.incomplete).toBe(false)
      expect(problem.reason).toContain("priority")
    })

    it.each(["from_agent", "action", "message", "command", "trace_id"])("%s that is not a string", (field) => {
      for (const value of [42, null, ["x"], { x: 1 }, true]) {
        const problem = invalid(parseJson({ to_agent: "a", [field]: value }))
        expect(problem.incomplete).toBe(false)
        expect(problem.reason).toContain(field)
      }
    })

    it.each([[true], [null], [["52"]], [{ id: 52 }]])("ticket %j", (ticket) => {
      const problem = invalid(parseJson({ to_agent: "a", ticket }))
      expect(problem.reason).toContain("ticket")
    })

    it.each([[true], [null], [{}]])("timestamp %j", (timestamp) => {
      const problem = invalid(parseJson({ to_agent: "a", timestamp }))
      expect(problem.reason).toContain("timestamp")
    })

    it("multi-line bad values do not make the reason multi-line", () => {
      invalid(parseJson({ to_agent: "a", priority: "line one\nline two\r\nline three" }))
      invalid(parseJson({ to_agent: "a\nb\nc" }))
    })
  })
})

describe("jsonDepth", () => {
  it.each([
    ["a scalar", "42", 0],
    ["an empty object", "{}", 1],
    ["nested arrays", "[[[]]]", 3],
    ["siblings do not add up", '{"a":[1],"b":{"c":2}}', 2],
    ["brackets in strings", '{"a":"[[[{{{"}', 1],
    ["escaped quotes in strings", '{"a":"\\"[[[\\""}', 1],
    ["escaped backslash before a closing quote", '{"a":"\\\\","b":[[1]]}', 3]
  ])("%s", (_label, text, depth) => {
    expect(jsonDepth(text)).toBe(depth)
  })
})

describe("ticketOf", () => {
  const trigger = (fields: Partial<Trigger>): Trigger => ({ to_agent: "a", ...fields })

  it("context.ticket wins over the top-level ticket", () => {
    expect(ticketOf(trigger({ context: { ticket: "52" }, ticket: "99" }))).toBe("52")
  })

  it("a numeric context.ticket becomes a string", () => {
    expect(ticketOf(trigger({ context: { ticket: 52 } }))).toBe("52")
  })

  it("falls back to the top-level ticket", () => {
    expect(ticketOf(trigger({ ticket: "77" }))).toBe("77")
    expect(ticketOf(trigger({ context: { other: 1 }, ticket: "77" }))).toBe("77")
    expect(ticketOf(trigger({ context: { ticket: null }, ticket: 77 }))).toBe("77")
  })

  it("a numeric top-level ticket becomes a string", () => {
    expect(ticketOf(trigger({ ticket: 77 }))).toBe("77")
    expect(ticketOf(trigger({ ticket: 0 }))).toBe("0")
  })

  it("null without a ticket", () => {
    expect(ticketOf(trigger({}))).toBeNull()
    expect(ticketOf(trigger({ context: {} }))).toBeNull()
    expect(ticketOf(trigger({ ticket: "" }))).toBeNull()
  })

  it("ignores a context.ticket that is neither string nor number", () => {
    expect(ticketOf(trigger({ context: { ticket: { id: 1 } } }))).toBeNull()
    expect(ticketOf(trigger({ context: { ticket: true } }))).toBeNull()
  })

  it("works on parsed triggers", () => {
    const parsed = triggerOf(parse('{"to_agent":"a","context":{"ticket":52},"ticket":"x"}'))
    expect(ticketOf(parsed)).toBe("52")
  })
})

describe("priorityOf", () => {
  it("defaults to normal", () => {
    expect(priorityOf({ to_agent: "a" })).toBe("normal")
    expect(priorityOf({ to_agent: "a", priority: "low" })).toBe("low")
  })
})

describe("compareOrder", () => {
  const key = (name: string, priority: OrderKey["priority"], createdNs: bigint): OrderKey => ({
    name,
    priority,
    createdNs
  })

  it("higher priority first regardless of age and name", () => {
    const high = key("z", "high", 300n)
    const normal = key("a", "normal", 100n)
    const low = key("0", "low", 1n)
    expect(compareOrder(high, normal)).toBeLessThan(0)
    expect(compareOrder(normal, low)).toBeLessThan(0)
    expect(compareOrder(high, low)).toBeLessThan(0)
    expect(compareOrder(low, high)).toBeGreaterThan(0)
  })

  it("oldest first within a priority, regardless of name", () => {
    expect(compareOrder(key("b", "normal", 1n), key("a", "normal", 2n))).toBeLessThan(0)
    expect(compareOrder(key("a", "normal", 2n), key("b", "normal", 1n))).toBeGreaterThan(0)
  })

  it("compares nanosecond times beyond double precision", () => {
    const base = 1_700_000_000_000_000_000n
    expect(compareOrder(key("b", "low", base), key("a", "low", base + 1n))).toBeLessThan(0)
  })

  it("ties broken by name", () => {
    expect(compareOrder(key("a.trigger", "normal", 5n), key("b.trigger", "normal", 5n))).toBeLessThan(0)
    expect(compareOrder(key("b.trigger", "normal", 5n), key("a.trigger", "normal", 5n))).toBeGreaterThan(0)
    expect(compareOrder(key("a.trigger", "normal", 5n), key("a.trigger", "normal", 5n))).toBe(0)
  })

  it("sorts a mixed queue", () => {
    const keys = [
      key("n-late", "normal", 30n),
      key("l-early", "low", 1n),
      key("h-late", "high", 50n),
      key("n-early-b", "normal", 10n),
      key("n-early-a", "normal", 10n),
      key("h-early", "high", 5n)
    ]
    expect([...keys].sort(compareOrder).map((k) => k.name)).toEqual([
      "h-early",
      "h-late",
      "n-early-a",
      "n-early-b",
      "n-late",
      "l-early"
    ])
  })
})

describe("buildPrompt", () => {
  const file = "/project/.claude/triggers/junior-dev-a-implement-1-abc.processing"

  it("contains every field the agent needs", () => {
    const prompt = buildPrompt(
      {
        to_agent: "junior-dev-a",
        from_agent: "orchestrator",
        action: "implement-feature",
        message: "Please implement the login page",
        command: "/implement 52",
        trace_id: "TRACE-1700000000-abcdef",
        context: { ticket: 52, branch: "feature/login" }
      },
      file
    )
    expect(prompt).toContain("junior-dev-a")
    expect(prompt).toContain("implement-feature")
    expect(prompt).toContain("orchestrator")
    expect(prompt).toContain("Please implement the login page")
    expect(prompt).toContain("52")
    expect(prompt).toMatch(/Ticket: 52/)
    expect(prompt).toContain("/implement 52")
    expect(prompt).toContain("feature/login")
    expect(prompt).toContain(JSON.stringify({ ticket: 52, branch: "feature/login" }))
    expect(prompt).toContain("TRACE-1700000000-abcdef")
    expect(prompt).toContain(file)
  })

  it("uses the top-level ticket when the context has none", () => {
    expect(buildPrompt({ to_agent: "a", ticket: 7 }, file)).toMatch(/Ticket: 7/)
  })

  it("works with only to_agent", () => {
    const prompt = buildPrompt({ to_agent: "solo" }, file)
    expect(prompt).toContain("solo")
    expect(prompt).toContain(file)
    expect(prompt).not.toMatch(/Ticket:/)
    expect(prompt).not.toMatch(/Context:/)
  })

  it("embeds a hostile message unchanged", () => {
    const message = `He said "hi" and 'bye'\nline two $(touch pwned) \`id\` ; rm -rf / \\ \\n \r\n\t\u0000 end`
    const prompt = buildPrompt({ to_agent: "a", action: "x", message }, file)
    expect(prompt).toContain(message)
  })

  it("embeds a hostile command unchanged", () => {
    const command = `bash -c "echo \\"$HOME\\"" && \`whoami\``
    expect(buildPrompt({ to_agent: "a", command }, file)).toContain(command)
  })
})

describe("promptProblem", () => {
  const file = "/project/.claude/triggers/a.processing"

  it("accepts a normal prompt", () => {
    expect(promptProblem({ to_agent: "a", message: "hello" }, file)).toBeUndefined()
  })

  it("accepts a message just under the limit", () => {
    const overhead = Buffer.byteLength(buildPrompt({ to_agent: "a", message: "" }, file))
    const message = "m".repeat(MAX_PROMPT_BYTES - overhead)
    expect(Buffer.byteLength(buildPrompt({ to_agent: "a", message }, file))).toBe(MAX_PROMPT_BYTES)
    expect(promptProblem({ to_agent: "a", message }, file)).toBeUndefined()
    expect(promptProblem({ to_agent: "a", message: message + "m" }, file)).toBeDefined()
  })

  it("rejects a prompt over 120 KiB and says to use a file", () => {
    const problem = promptProblem({ to_agent: "a", message: "x".repeat(121 * 1024) }, file)
    expect(problem).toBeDefined()
    expectOneLine(problem!)
    expect(problem).toMatch(/120 KiB/)
    expect(problem).toMatch(/file/)
  })

  it("counts bytes, not characters", () => {
    // 70,000 two-byte characters: 70,000 characters but 140,000 bytes.
    expect(promptProblem({ to_agent: "a", message: "é".repeat(70_000) }, file)).toBeDefined()
    expect(promptProblem({ to_agent: "a", message: "é".repeat(50_000) }, file)).toBeUndefined()
  })

  it("counts the context too", () => {
    expect(promptProblem({ to_agent: "a", context: { blob: "y".repeat(130 * 1024) } }, file)).toBeDefined()
  })
})

describe("fileSafe", () => {
  it.each([
    ["implement", "implement"],
    ["fix bug #12", "fix_bug_12"],
    ["a/b\\c", "a_b_c"],
    ["$(touch pwned)", "_touch_pwned_"],
    ["`id`;rm", "_id_rm"],
    ["line\nbreak", "line_break"],
    ["héllo", "h_llo"],
    ["keep.dots_and-dashes", "keep.dots_and-dashes"],
    ["", "task"]
  ])("%j -> %j", (input, output) => {
    expect(fileSafe(input)).toBe(output)
  })

  it("never yields a path separator and at most 64 characters", () => {
    const result = fileSafe("../".repeat(100) + "x".repeat(100))
    expect(result).not.toContain("/")
    expect(result.length).toBeLessThanOrEqual(64)
    expect(fileSafe("y".repeat(200))).toBe("y".repeat(64))
  })
})

describe("makeTraceId", () => {
  it("has the format TRACE-<epoch seconds>-<6 hex>", () => {
    for (let i = 0; i < 200; i++) {
      expect(makeTraceId(Date.now())).toMatch(/^TRACE-\d+-[0-9a-f]{6}$/)
    }
  })

  it("uses epoch seconds and the random source", () => {
    expect(makeTraceId(1_700_000_000_999, () => 0)).toBe("TRACE-1700000000-000000")
    expect(makeTraceId(1_700_000_000_000, () => 0.5)).toBe("TRACE-1700000000-7fffff")
    expect(makeTraceId(1_700_000_000_000, () => 0.9999999999)).toMatch(/^TRACE-1700000000-[0-9a-f]{6}$/)
    expect(makeTraceId(1_700_000_000_000, () => 0.0000001)).toBe("TRACE-1700000000-000001")
  })
})

describe("parseTrigger: review regressions", () => {
  const parse = (bytes: Uint8Array) => parseTrigger(bytes)
  it("a file cut inside a multi-byte character may still be being written", () => {
    const whole = Buffer.from('{"to_agent":"a","message":"日本"}')
    const cut = parse(whole.subarray(0, 29))
    expect(Either.isLeft(cut) && cut.left.incomplete).toBe(true)
    expect(Either.isRight(parse(whole))).toBe(true)
  })
  it("a byte that is never UTF-8 is invalid at once", () => {
    const bad = parse(Buffer.from([0x7b, 0xff, 0x7d]))
    expect(Either.isLeft(bad) && !bad.left.incomplete && bad.left.reason).toBe("the file is not valid UTF-8 text")
  })
  it("an escaped NUL in any text field is invalid; the literal text \\u0000 is not", () => {
    for (const text of [String.raw`{"to_agent":"a","message":"x\u0000y"}`, String.raw`{"to_agent":"a","context":{"k":["\u0000"]}}`]) {
      const result = parse(Buffer.from(text))
      expect(Either.isLeft(result) && result.left.reason).toContain("NUL")
    }
    expect(Either.isRight(parse(Buffer.from(String.raw`{"to_agent":"a","message":"literal \\u0000 text"}`)))).toBe(true)
  })
})
