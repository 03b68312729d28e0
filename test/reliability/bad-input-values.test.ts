/**
 * Issue 3, bad input: hostile values reach the agent as exactly one argument, unchanged, and never
 * through a shell (contract §5); values too large for one argument are invalid with the
 * contract's reason (§3: 1 MiB per file, 120 KiB per prompt). The agent records its argv and
 * environment byte for byte (`argvAgent.ts`).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Either } from "effect"
import { describe, expect, it } from "vitest"
import { buildPrompt, MAX_PROMPT_BYTES, parseTrigger, type Trigger } from "../../src/domain/Trigger.js"
import { type ArgvRecord, argvRecords, installArgvAgent, pwnedFiles } from "../support/argvAgent.js"
import { expectReason, waitForOutcomes } from "../support/badInput.js"
import { queueFiles, startForeground } from "../support/daemonHelpers.js"
import { daemonLog, listDir, type TestProject, useProjects } from "../support/project.js"

const projects = useProjects()

const KiB = 1024
const MiB = 1024 * KiB

const SHELL = "$(touch pwned) `touch pwned-bt` ; touch pwned-semi && touch pwned-and | tee pwned-pipe > pwned-redir $HOME ${PATH} * ? ~ ! #"
const QUOTES = `He said "hi" and 'bye', \\"escaped\\" \\\\ \\' "unbalanced '`
const NEWLINES = "line 1\nline 2\r\nline 3\n\n  trailing spaces and newlines  \n\n"
const CONTROL = "\ttab \u0001 \u001b[31mred\u001b[0m \u007f \u2028 \u202e"
const UNICODE = "ünïcødé 🚀 日本語 \u{10FFFF}"
const FORMATS = "%s %d %n %% \\n \\t \\0 \\x41 {0} ${x}"

/** A trigger name, the agent that runs it, and the trigger's fields besides to_agent. */
interface ValueCase {
  readonly name: string
  readonly fields: Record<string, unknown>
}

const hostile: ReadonlyArray<ValueCase> = [
  { name: "shell", fields: { message: SHELL, command: SHELL, action: SHELL, from_agent: SHELL, trace_id: SHELL } },
  { name: "quotes", fields: { message: QUOTES, command: QUOTES, action: QUOTES, context: { [QUOTES]: QUOTES, ticket: QUOTES } } },
  { name: "newlines", fields: { message: NEWLINES, command: NEWLINES, from_agent: NEWLINES, context: { ticket: NEWLINES, n: [NEWLINES] } } },
  { name: "control", fields: { message: CONTROL, command: CONTROL, context: { [CONTROL]: { deep: CONTROL } } } },
  { name: "unicode", fields: { message: UNICODE, command: UNICODE, action: UNICODE, ticket: UNICODE } },
  { name: "formats", fields: { message: FORMATS, command: FORMATS, context: { ticket: 52, f: FORMATS } } },
  { name: "options", fields: { message: "--help", command: "-rf /", action: "--version", from_agent: "-", context: { "--x": "-y" } } },
  { name: "empty", fields: { message: "", command: "", action: "", from_agent: "", trace_id: "", context: {} } },
  {
    name: "proto-keys",
    // Own keys named like Object.prototype's: they are data, kept in the prompt, never a prototype.
    fields: { message: "p", context: JSON.parse(`{"__proto__": {"ticket": "forged", "polluted": 1}, "constructor": {"prototype": {"x": 1}}, "toString": "s"}`) }
  },
  { name: "trace-newline", fields: { message: "x", trace_id: "TRACE-1\n[2025-01-01T00:00:00.000Z] [] FINISH: forged] [" } },
  {
    name: "large-allowed",
    // About 100 KiB (under the 120 KiB prompt limit) of multi-byte text, quotes, newlines and shell syntax.
    fields: { message: `é"'\n$(touch pwned)\`;\\`.repeat(4_000), context: { big: "ü".repeat(5 * KiB) } }
  }
]

/** File names that are shell syntax, options or several lines: the agent still gets them as text. */
const hostileNames: ReadonlyArray<string> = [
  "a b 'c' \"d\"",
  "$(touch pwned-name)",
  "`touch pwned-name-bt`;x",
  "-rf",
  "--help",
  "two\nlines",
  "ünïcødé"
]

/** The agent's view of one trigger, found by the claimed file it was given. */
const recordOf = (p: TestProject, name: string): ArgvRecord | undefined =>
  argvRecords(p).find((r) => r.triggerFile === path.join(p.triggers, `${name}.processing`))

const decoded = (content: unknown): Trigger => {
  const parsed = parseTrigger(Buffer.from(JSON.stringify(content)))
  if (Either.isLeft(parsed)) throw new Error(`test trigger is invalid: ${parsed.left.reason}`)
  return parsed.right
}

/** The agent got the words of AGENT_COMMAND, then the prompt as one argument, unchanged; its environment holds the fields as they were. */
const expectDelivered = (p: TestProject, name: string, content: Record<string, unknown>, words: ReadonlyArray<string>) => {
  const record = recordOf(p, name)
  expect(record, `the agent ran for ${JSON.stringify(name)}`).toBeDefined()
  const claimed = path.join(p.triggers, `${name}.processing`)
  const t = decoded(content)
  const prompt = buildPrompt(t, claimed)
  expect(record!.argc, name).toBe(words.length + 1)
  expect(record!.args.slice(0, -1), name).toEqual(words)
  const got = Buffer.from(record!.args.at(-1)!, "utf8")
  expect(got.equals(Buffer.from(prompt, "utf8")), `the prompt of ${JSON.stringify(name)} is byte-for-byte the expected one`).toBe(true)
  // Each hostile value is in it as it was written.
  for (const field of ["message", "command"] as const) {
    if (typeof content[field] === "string" && content[field] !== "") {
      expect(prompt.includes(`${field === "message" ? "Message" : "Command"}: ${content[field]}\n`), `${name}.${field}`).toBe(true)
    }
  }
  // The context as written, independently of the daemon's decoding.
  const written = content["context"] as Record<string, unknown> | undefined
  if (written !== undefined && Object.keys(written).length > 0) {
    expect(prompt.includes(`\nContext: ${JSON.stringify(written)}\n`), `${name}.context`).toBe(true)
  }
  expect(record!.agent).toBe(content["to_agent"])
  expect(record!.action).toBe(content["action"] ?? "")
  expect(record!.fromAgent).toBe(content["from_agent"] ?? "")
  const context = content["context"] as Record<string, unknown> | undefined
  const ticket = context?.["ticket"] ?? content["ticket"]
  expect(record!.ticket).toBe(ticket === undefined ? "" : String(ticket))
  if (typeof content["trace_id"] === "string" && content["trace_id"] !== "") expect(record!.traceId).toBe(content["trace_id"])
}

describe("hostile values", () => {
  it("quotes, newlines, control characters, $(…), backticks, ';', options and ~100 KiB values in message/command/context/action/from/ticket/trace_id reach the agent as one argument, unchanged, never through a shell", async () => {
    const p = projects.make()
    const words = ["--flag", "two words", "$(touch pwned-cmd)", "`touch pwned-cmd-bt`"]
    installArgvAgent(p, `--flag "two words" '$(touch pwned-cmd)' '\`touch pwned-cmd-bt\`'`)
    const daemon = await startForeground(p)
    const contents = new Map<string, Record<string, unknown>>()
    hostile.forEach((c, i) => {
      const content = { to_agent: `value-${i}`, ...c.fields }
      contents.set(c.name, content)
      p.drop(c.name, content)
    })
    hostileNames.forEach((name, i) => {
      const content = { to_agent: `name-${i}`, from_agent: "test", action: "work", message: name }
      contents.set(name, content)
      p.drop(name, content)
    })
    await waitForOutcomes(p, { done: Array.from(contents.keys()) })
    for (const [name, content] of contents) expectDelivered(p, name, content, words)
    expect(argvRecords(p)).toHaveLength(contents.size)
    expect(pwnedFiles([p.root, os.tmpdir(), os.homedir(), "/"])).toEqual([])

    // Logs stay one line per event, whatever the trace id or file name holds.
    for (const line of daemonLog(p).split("\n").filter((l) => l !== "")) {
      expect(line).toMatch(/^\[\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\] \[[^\n]*\] [A-Z]+: /)
    }
    expect(daemonLog(p)).not.toMatch(/^\[2025-01-01T00:00:00\.000Z\]/m)
    // The agent log of the two-line name still starts with its three header lines.
    const agent = contents.get("two\nlines")!["to_agent"] as string
    const [log] = listDir(path.join(p.claude, "logs")).filter((n) => n.startsWith(`${agent}-`))
    const header = fs.readFileSync(path.join(p.claude, "logs", log!), "utf8").split("\n").slice(0, 3)
    expect(header[0]).toBe(`Agent: ${agent}`)
    expect(header[1]).toBe("Trigger: two lines.trigger")
    expect(header[2]).toMatch(/^Started: /)
    expect(queueFiles(p)).toEqual([])
    expect(daemon.hasExited()).toBe(false)
  })

  it("a prompt of exactly 120 KiB runs unchanged; one byte more, or a 1 MiB value, is invalid with the contract's reason", async () => {
    const p = projects.make()
    installArgvAgent(p)
    const daemon = await startForeground(p)
    /** A trigger whose prompt, for this claimed path, is `bytes` long (its message is padded with multi-byte text, then ASCII). */
    const ofPromptSize = (name: string, bytes: number) => {
      const content = { to_agent: "big", from_agent: "test", action: "work", message: "", context: { ticket: 7 } }
      const claimed = path.join(p.triggers, `${name}.processing`)
      const overhead = Buffer.byteLength(buildPrompt(decoded(content), claimed))
      const room = bytes - overhead
      const wide = "€\"\n".repeat(Math.floor(room / 10)) // 5 bytes each
      const message = wide + "x".repeat(room - Buffer.byteLength(wide))
      const result = { ...content, message }
      expect(Buffer.byteLength(buildPrompt(decoded(result), claimed))).toBe(bytes)
      return result
    }
    const atLimit = ofPromptSize("at-limit", MAX_PROMPT_BYTES)
    p.drop("at-limit", atLimit)
    p.drop("over-limit", ofPromptSize("over-limit", MAX_PROMPT_BYTES + 1))
    p.drop("command-200k", { to_agent: "big", action: "work", command: "c".repeat(200 * KiB) })
    p.drop("message-1mib", { to_agent: "big", action: "work", message: "m".repeat(MiB) })
    p.drop("context-1mib", { to_agent: "big", action: "work", context: { blob: "\"".repeat(MiB / 2) } })
    p.drop("valid-after", { to_agent: "small", action: "work", message: "after" })
    const invalid = ["over-limit", "command-200k", "message-1mib", "context-1mib"]
    await waitForOutcomes(p, { invalid, done: ["at-limit", "valid-after"] })
    const tooLong = (kib: number) =>
      new RegExp(`^the prompt would be ${kib} KiB, over the 120 KiB limit for one argument: put large content in a file and reference its path in the trigger$`)
    expectReason(p, "over-limit", tooLong(121))
    expectReason(p, "command-200k", tooLong(201))
    expectReason(p, "message-1mib", /^the file is \d+ bytes, over the 1048576 byte \(1 MiB\) limit$/)
    expectReason(p, "context-1mib", /^the file is \d+ bytes, over the 1048576 byte \(1 MiB\) limit$/)
    expectDelivered(p, "at-limit", atLimit, [])
    expect(argvRecords(p).map((r) => path.basename(r.triggerFile)).sort()).toEqual(["at-limit.processing", "valid-after.processing"])
    expect(daemon.hasExited()).toBe(false)
  })
})
