/**
 * Issue 3, bad input: JSON objects with a bad `to_agent` or a field of the wrong type (contract
 * §3). Each is invalid with a reason that names the field, no agent starts, nothing in a value is
 * ever executed, and a valid trigger dropped after them runs. One daemon per group of cases.
 */
import * as os from "node:os"
import { describe, expect, it } from "vitest"
import { argvRecords, installArgvAgent, pwnedFiles } from "../support/argvAgent.js"
import { expectReason, invalidArchive, waitForOutcomes } from "../support/badInput.js"
import { queueFiles, startForeground } from "../support/daemonHelpers.js"
import { listDir, type TestProject, useProjects } from "../support/project.js"

const projects = useProjects()

interface FieldCase {
  readonly name: string
  /** The trigger's fields (a `to_agent` is added unless the case sets or removes it). */
  readonly fields: Record<string, unknown>
  readonly reason: RegExp
}

const base = { from_agent: "test", action: "work", message: "hello" }

const NAME_RULE = /is not a valid agent name: use 1-64 letters, digits, '\.', '_' or '-', not starting with '\.' or '-' and without '\.\.'$/
const badName = (name: string, value: string): FieldCase => ({
  name,
  fields: { to_agent: value },
  // The reason quotes the value as JSON, so a newline in it stays on the one line.
  reason: new RegExp(`^to_agent ${escape(JSON.stringify(value))} ${NAME_RULE.source}`)
})
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

const toAgentCases: ReadonlyArray<FieldCase> = [
  { name: "missing", fields: {}, reason: /^to_agent is missing: every trigger names the agent that runs it$/ },
  { name: "null", fields: { to_agent: null }, reason: /^to_agent is null: every trigger names the agent that runs it$/ },
  { name: "empty", fields: { to_agent: "" }, reason: /^to_agent is empty: every trigger names the agent that runs it$/ },
  { name: "number", fields: { to_agent: 7 }, reason: /^to_agent must be a string \(got a number\)$/ },
  { name: "array", fields: { to_agent: ["a"] }, reason: /^to_agent must be a string \(got an array\)$/ },
  badName("65-chars", "a".repeat(65)),
  badName("slash", "junior/dev"),
  badName("absolute", "/etc/passwd"),
  badName("dot-dot", "../junior-dev-a"),
  badName("inner-dot-dot", "junior..dev"),
  badName("leading-dot", ".hidden"),
  badName("space", "junior dev"),
  badName("newline", "junior\ndev"),
  badName("tab", "junior\tdev"),
  badName("subshell", "$(touch pwned)"),
  badName("semicolon", "a;touch pwned"),
  badName("backticks", "`touch pwned`"),
  badName("pipe", "a|touch pwned"),
  badName("ampersand", "a&&touch pwned"),
  badName("dash", "-rf"),
  badName("double-dash", "--help"),
  badName("non-ascii", "jünior"),
  badName("nul", "a\u0000b")
]

const typeCases: ReadonlyArray<FieldCase> = [
  ...(["an array", "a string", "a number", "null", "a boolean"] as const).map((kind, i): FieldCase => ({
    name: `context-${i}`,
    fields: { context: [[1], "ticket 52", 52, null, true][i] },
    reason: new RegExp(`^context must be a JSON object \\(got ${kind}\\)$`)
  })),
  ...["urgent", "HIGH", "", 1, null].map((value, i): FieldCase => ({
    name: `priority-${i}`,
    fields: { priority: value },
    reason: new RegExp(`^priority must be "high", "normal" or "low" \\(got ${escape(JSON.stringify(value))}\\)$`)
  })),
  ...(["from_agent", "action", "message", "command", "trace_id"] as const).flatMap((field) =>
    ([[5, "a number"], [["x"], "an array"], [{ x: 1 }, "an object"], [true, "a boolean"], [null, "null"]] as const).map(
      ([value, kind], i): FieldCase => ({
        name: `${field}-${i}`,
        fields: { [field]: value },
        reason: new RegExp(`^${field} must be a string \\(got ${kind}\\)$`)
      })
    )
  ),
  { name: "ticket-object", fields: { ticket: { id: 5 } }, reason: /^ticket must be a string or a number \(got an object\)$/ },
  { name: "ticket-bool", fields: { ticket: false }, reason: /^ticket must be a string or a number \(got a boolean\)$/ },
  { name: "timestamp-array", fields: { timestamp: [2025] }, reason: /^timestamp must be a string or a number \(got an array\)$/ }
]

/** Triggers that look odd but are valid: they must run. */
const validCases: ReadonlyArray<{ name: string; fields: Record<string, unknown> }> = [
  { name: "name-64-chars", fields: { to_agent: "a".repeat(64) } },
  { name: "name-dots-dashes", fields: { to_agent: "Agent_1.b-c" } },
  { name: "unknown-fields", fields: { to_agent: "junior-dev-a", extra: { deep: [1, 2] }, "to agent": 5 } },
  { name: "context-ticket-wrong-type", fields: { to_agent: "junior-dev-b", context: { ticket: { id: 5 } } } }
]

/** Drops every case, then the valid triggers; waits for all outcomes; checks reasons and that no agent ran an invalid one. */
const runCases = async (p: TestProject, cases: ReadonlyArray<FieldCase>, defaultAgent: string) => {
  const daemon = await startForeground(p)
  for (const c of cases) p.drop(c.name, { to_agent: defaultAgent, ...base, ...c.fields })
  // The missing case has no to_agent at all.
  for (const c of validCases) p.drop(c.name, { ...base, ...c.fields })
  await waitForOutcomes(p, { invalid: cases.map((c) => c.name), done: validCases.map((c) => c.name) })
  for (const c of cases) expectReason(p, c.name, c.reason)
  const ran = argvRecords(p).map((r) => r.triggerFile.replace(/^.*\//, "").replace(/\.processing$/, "")).sort()
  expect(ran).toEqual(validCases.map((c) => c.name).sort())
  expect(queueFiles(p)).toEqual([])
  expect(daemon.hasExited()).toBe(false)
}

describe("to_agent", () => {
  it("missing, null, empty, 65 characters, '/', '..', spaces, a newline, $(…), ';', backticks or a leading '-': invalid with a reason naming to_agent, never executed", async () => {
    const p = projects.make()
    installArgvAgent(p)
    const missing = toAgentCases.find((c) => c.name === "missing")!
    await runCases(p, toAgentCases.map((c) => (c === missing ? { ...c, fields: { to_agent: undefined } } : c)), "unused")
    for (const c of toAgentCases) expect(invalidArchive(p, c.name), c.name).toBeDefined()
    expect(pwnedFiles([p.root, os.tmpdir(), os.homedir(), "/"])).toEqual([])
    // No agent log was opened for a bad name: only the valid agents have logs.
    const logs = listDir(`${p.claude}/logs`).filter((n) => n !== "daemon.log").map((n) => n.replace(/-\d+\.log$/, ""))
    expect(new Set(logs)).toEqual(new Set(validCases.map((c) => c.fields["to_agent"])))
  })
})

describe("fields of the wrong type", () => {
  it("context not an object, an unknown priority, a text field that is not a string: invalid with a reason naming the field", async () => {
    const p = projects.make()
    installArgvAgent(p)
    await runCases(p, typeCases, "junior-dev-a")
  })
})

describe("starforge trigger create", () => {
  it("refuses a bad --to, a --context that is not an object and an unknown --priority with one line, writing nothing", async () => {
    const p = projects.make()
    const cases: ReadonlyArray<{ args: ReadonlyArray<string>; error: RegExp }> = [
      { args: ["--to", ""], error: /to_agent is empty/ },
      { args: ["--to", "a".repeat(65)], error: /to_agent "a{65}" is not a valid agent name/ },
      { args: ["--to", "../etc"], error: /to_agent "\.\.\/etc" is not a valid agent name/ },
      { args: ["--to", "a b"], error: /to_agent "a b" is not a valid agent name/ },
      { args: ["--to", "$(touch pwned)"], error: /to_agent "\$\(touch pwned\)" is not a valid agent name/ },
      { args: ["--to", "`touch pwned`;x"], error: /to_agent "`touch pwned`;x" is not a valid agent name/ },
      { args: ["--to=-rf"], error: /to_agent "-rf" is not a valid agent name/ },
      { args: ["--to", "junior-dev-a", "--context", "[1]"], error: /--context must be a JSON object/ },
      { args: ["--to", "junior-dev-a", "--context", "{"], error: /--context is not valid JSON/ },
      { args: ["--to", "junior-dev-a", "--priority", "urgent"], error: /^starforge: Invalid trigger: priority must be "high", "normal" or "low" \(got "urgent"\)\n$/ }
    ]
    const results = await Promise.all(cases.map((c) => p.cli(["trigger", "create", "--action", "work", ...c.args])))
    results.forEach((result, i) => {
      const c = cases[i]!
      const what = `${JSON.stringify(c.args)} → ${result.stderr}`
      expect(result.code, what).not.toBe(0)
      expect(result.stderr, what).toMatch(c.error)
      // One line, no stack trace.
      expect(result.stderr, what).toMatch(/^starforge: [^\n]+\n$/)
      expect(result.stdout, what).toBe("")
    })
    expect(queueFiles(p)).toEqual([])
    expect(pwnedFiles([p.root, os.tmpdir()])).toEqual([])
  })
})
