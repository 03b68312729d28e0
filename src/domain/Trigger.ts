/**
 * The trigger: a JSON object in `C/triggers/<name>.trigger` (contract §3).
 *
 * Everything here is pure: decoding and validation with a one-line reason, the queue order,
 * the prompt handed to the agent, and the file names the CLI generates.
 */
import { Either, ParseResult, Schema } from "effect"

/** Files over this size are invalid without being read. */
export const MAX_TRIGGER_BYTES = 1024 * 1024
/** Linux caps one argv string at 128 KiB; the prompt is one argument. */
export const MAX_PROMPT_BYTES = 120 * 1024
/** Deeper JSON is rejected before it is parsed. */
export const MAX_JSON_DEPTH = 100

const AGENT_NAME = /^(?![.-])(?!.*\.\.)[A-Za-z0-9._-]{1,64}$/

export const isValidAgentName = (name: string): boolean => AGENT_NAME.test(name)

/** A message that replaces the inner schema's own (e.g. "Expected string, actual null"). */
const say = (render: (actual: unknown) => string) => ({
  message: (issue: { readonly actual: unknown }) => ({ message: render(issue.actual), override: true })
})

export const AgentName = Schema.String.pipe(
  Schema.filter((s) => isValidAgentName(s)),
  Schema.annotations(say((actual) => toAgentMessage(actual)))
)

export const Priority = Schema.Literal("high", "normal", "low")
export type Priority = typeof Priority.Type

const Text = (field: string) =>
  Schema.optional(Schema.String.annotations(say((actual) => `${field} must be a string (got ${typeOf(actual)})`)))

const TicketValue = Schema.Union(Schema.String, Schema.Number).annotations(
  say((actual) => `ticket must be a string or a number (got ${typeOf(actual)})`)
)

const isJsonObject = (value: unknown): value is { readonly [key: string]: unknown } =>
  value !== null && typeof value === "object" && !Array.isArray(value)

/**
 * The parsed object itself, not a copy: a copy built by assignment would turn a `"__proto__"` key
 * into the copy's prototype, dropping it from the prompt and making its fields look like the
 * context's own.
 */
const ContextObject = Schema.declare(isJsonObject).annotations(
  say((actual) => `context must be a JSON object (got ${typeOf(actual)})`)
)

/** The fields the daemon reads; unknown fields are kept in the file and ignored. */
export const Trigger = Schema.Struct({
  to_agent: Schema.propertySignature(AgentName).annotations({ missingMessage: () => "to_agent is missing: every trigger names the agent that runs it" }),
  from_agent: Text("from_agent"),
  action: Text("action"),
  message: Text("message"),
  command: Text("command"),
  trace_id: Text("trace_id"),
  timestamp: Schema.optional(
    Schema.Union(Schema.String, Schema.Number).annotations(
      say((actual) => `timestamp must be a string or a number (got ${typeOf(actual)})`)
    )
  ),
  ticket: Schema.optional(TicketValue),
  context: Schema.optional(ContextObject),
  priority: Schema.optional(
    Priority.annotations(say((actual) => `priority must be "high", "normal" or "low" (got ${short(actual)})`))
  )
})
export type Trigger = typeof Trigger.Type

function toAgentMessage(actual: unknown): string {
  if (actual === null) return "to_agent is null: every trigger names the agent that runs it"
  if (typeof actual !== "string") return `to_agent must be a string (got ${typeOf(actual)})`
  if (actual === "") return "to_agent is empty: every trigger names the agent that runs it"
  return (
    `to_agent ${short(actual)} is not a valid agent name: ` +
    `use 1-64 letters, digits, '.', '_' or '-', not starting with '.' or '-' and without '..'`
  )
}

/** A bad value as it appears in a reason: JSON, cut short. */
function short(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value)
  return text.length > 80 ? text.slice(0, 80) + "…" : text
}

function typeOf(value: unknown): string {
  if (value === null) return "null"
  if (Array.isArray(value)) return "an array"
  if (typeof value === "object") return "an object"
  return `a ${typeof value}`
}

/** Why a trigger can never run. `incomplete` marks JSON that may still be being written. */
export interface TriggerProblem {
  readonly reason: string
  readonly incomplete: boolean
}

const utf8 = new TextDecoder("utf-8", { fatal: true })
const decodeTrigger = Schema.decodeUnknownEither(Trigger, { errors: "first", onExcessProperty: "ignore" })

/**
 * Decodes the bytes of a trigger file. The reason is always one line; a `to_agent` problem names
 * `to_agent`.
 */
export const parseTrigger = (bytes: Uint8Array): Either.Either<Trigger, TriggerProblem> => {
  if (bytes.byteLength > MAX_TRIGGER_BYTES) {
    return invalid(`the file is ${bytes.byteLength} bytes, over the ${MAX_TRIGGER_BYTES} byte (1 MiB) limit`)
  }
  let text: string
  try {
    text = utf8.decode(bytes)
  } catch {
    // Cut inside a multi-byte character: a writer may still be adding the rest.
    const truncated = (() => {
      try {
        new TextDecoder("utf-8", { fatal: true }).decode(bytes, { stream: true })
        return true
      } catch {
        return false
      }
    })()
    return Either.left({ reason: "the file is not valid UTF-8 text", incomplete: truncated })
  }
  if (text.trim() === "") return Either.left({ reason: "the file is empty", incomplete: true })
  if (text.includes("\0")) return invalid("the file contains a NUL byte")
  const depth = jsonDepth(text)
  if (depth > MAX_JSON_DEPTH) {
    return invalid(`the JSON is nested ${depth} levels deep, over the limit of ${MAX_JSON_DEPTH}`)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (e) {
    return Either.left({ reason: `not valid JSON: ${oneLine((e as Error).message)}`, incomplete: true })
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    return invalid(`the file holds ${typeOf(json)}, not a JSON object`)
  }
  return decodeTrigger(json).pipe(
    Either.mapLeft((error): TriggerProblem => ({ reason: firstIssue(error), incomplete: false })),
    // An escaped NUL ("\u0000") parses, but no argument or environment variable can carry it.
    Either.flatMap((trigger) => (hasNul(json) ? invalid("a text field contains a NUL character (\\u0000)") : Either.right(trigger)))
  )
}

const hasNul = (value: unknown): boolean =>
  typeof value === "string"
    ? value.includes("\0")
    : value !== null && typeof value === "object" &&
      Object.entries(value).some(([k, v]) => k.includes("\0") || hasNul(v))

const invalid = (reason: string) => Either.left<TriggerProblem>({ reason, incomplete: false })

const oneLine = (s: string) => s.replace(/\s+/g, " ").trim()

function firstIssue(error: ParseResult.ParseError): string {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  const first = issues[0]
  if (!first) return "the trigger does not match the expected fields"
  const field = first.path.map(String).join(".")
  const message = oneLine(first.message).slice(0, 300)
  return field === "" || message.startsWith(field.split(".")[0]!) ? message : `${field}: ${message}`
}

/** The deepest nesting of arrays and objects, counted without parsing (strings are skipped). */
export function jsonDepth(text: string): number {
  let depth = 0
  let max = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 92 /* \ */) i++
      else if (c === 34 /* " */) inString = false
    } else if (c === 34) inString = true
    else if (c === 123 || c === 91) {
      depth++
      if (depth > max) max = depth
    } else if (c === 125 || c === 93) depth--
  }
  return max
}

/** `context.ticket`, else the top-level `ticket`; numbers become strings. */
export const ticketOf = (trigger: Trigger): string | null =>
  ticketText(trigger.context?.["ticket"]) ?? ticketText(trigger.ticket)

const ticketText = (value: unknown): string | null =>
  typeof value === "string" && value !== "" ? value : typeof value === "number" && Number.isFinite(value) ? String(value) : null

export const priorityOf = (trigger: Trigger): Priority => trigger.priority ?? "normal"

const PRIORITY_RANK: Record<Priority, number> = { high: 0, normal: 1, low: 2 }

/** What the queue needs to order a trigger. */
export interface OrderKey {
  readonly priority: Priority
  /** Creation time of the file in nanoseconds (modification time where the file system has none). */
  readonly createdNs: bigint
  readonly name: string
}

/** Higher priority first; within a priority, oldest first; ties broken by name. */
export const compareOrder = (a: OrderKey, b: OrderKey): number => {
  const byPriority = PRIORITY_RANK[a.priority] - PRIORITY_RANK[b.priority]
  if (byPriority !== 0) return byPriority
  if (a.createdNs !== b.createdNs) return a.createdNs < b.createdNs ? -1 : 1
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0
}

/**
 * The prompt passed to the agent as its last argument. Each field on its own line, so that an
 * agent (or a human reading its log) sees exactly what the producer wrote.
 */
export const buildPrompt = (trigger: Trigger, triggerFile: string): string => {
  const lines = [
    `You are the ${trigger.to_agent} agent.`,
    `Task from ${trigger.from_agent ?? "unknown"}: ${trigger.action ?? "unknown"}`
  ]
  if (trigger.message !== undefined) lines.push(`Message: ${trigger.message}`)
  const ticket = ticketOf(trigger)
  if (ticket !== null) lines.push(`Ticket: ${ticket}`)
  if (trigger.command !== undefined) lines.push(`Command: ${trigger.command}`)
  if (trigger.context !== undefined && Object.keys(trigger.context).length > 0) {
    lines.push(`Context: ${JSON.stringify(trigger.context)}`)
  }
  if (trigger.trace_id !== undefined) lines.push(`Trace ID: ${trigger.trace_id}`)
  lines.push(`Trigger file: ${triggerFile}`)
  return lines.join("\n")
}

/** Checks the one-argument limit with the longest path the trigger file can have. */
export const promptProblem = (trigger: Trigger, triggerFile: string): string | undefined => {
  const bytes = Buffer.byteLength(buildPrompt(trigger, triggerFile), "utf8")
  return bytes > MAX_PROMPT_BYTES
    ? `the prompt would be ${Math.ceil(bytes / 1024)} KiB, over the ${MAX_PROMPT_BYTES / 1024} KiB limit for one argument: ` +
        `put large content in a file and reference its path in the trigger`
    : undefined
}

/** A file-name-safe rendering of free text (for `<agent>-<action>-<ms>-<random>.trigger`). */
export const fileSafe = (text: string): string => text.replace(/[^A-Za-z0-9._-]+/g, "_").slice(0, 64) || "task"

/** `TRACE-<epoch seconds>-<6 hex>`, the original's trace id format. */
export const makeTraceId = (nowMs: number, random: () => number = Math.random): string =>
  `TRACE-${Math.floor(nowMs / 1000)}-${Math.floor(random() * 0xffffff).toString(16).padStart(6, "0")}`
