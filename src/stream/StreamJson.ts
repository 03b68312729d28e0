/**
 * What an agent writes with `claude --output-format stream-json --verbose`: one JSON object per
 * line (see the reference notes). Pure functions only: splitting bytes into bounded lines,
 * decoding one line into an event, folding events into the job's progress, and recognising a
 * provider's usage limit with its reset time.
 *
 * Anything else an agent writes (plain `--print` text, warnings, stack traces, fragments of a
 * line another write cut in two) is a `Text` event: it is never an error.
 */
import { isoSeconds } from "../domain/time.js"

/** Lines longer than this are skipped (counted, never buffered whole): one bad line costs at most this much memory. */
export const MAX_LINE_BYTES = 2 * 1024 * 1024

export type Line =
  | { readonly _tag: "Line"; readonly text: string }
  /** A line over the bound: its bytes were dropped. */
  | { readonly _tag: "Oversized"; readonly bytes: number }

/**
 * Splits a byte stream into lines. A line is decoded only once complete, so a multi-byte
 * character split across reads is intact; a line over `maxBytes` is dropped as it streams.
 */
export class LineSplitter {
  private parts: Array<Uint8Array> = []
  private size = 0
  /** Bytes of the current line already dropped for being over the bound. */
  private dropped = 0

  constructor(private readonly maxBytes: number = MAX_LINE_BYTES) {}

  push(chunk: Uint8Array): Array<Line> {
    const lines: Array<Line> = []
    let start = 0
    for (;;) {
      const nl = chunk.indexOf(10, start)
      if (nl === -1) break
      this.append(chunk.subarray(start, nl))
      lines.push(this.take())
      start = nl + 1
    }
    if (start < chunk.length) this.append(chunk.subarray(start))
    return lines
  }

  /** The unterminated last line, if any (at the end of the output). */
  end(): Array<Line> {
    return this.size > 0 || this.dropped > 0 ? [this.take()] : []
  }

  private append(bytes: Uint8Array) {
    if (bytes.length === 0) return
    if (this.dropped > 0 || this.size + bytes.length > this.maxBytes) {
      this.dropped += this.size + bytes.length
      this.parts = []
      this.size = 0
      return
    }
    // Copied: the reader may reuse its buffer.
    this.parts.push(Uint8Array.from(bytes))
    this.size += bytes.length
  }

  private take(): Line {
    if (this.dropped > 0) {
      const bytes = this.dropped
      this.dropped = 0
      return { _tag: "Oversized", bytes }
    }
    const text = Buffer.concat(this.parts, this.size).toString("utf8").replace(/\r$/, "")
    this.parts = []
    this.size = 0
    return { _tag: "Line", text }
  }
}

export interface Usage {
  readonly input: number
  readonly output: number
}

export type AgentEvent =
  | { readonly _tag: "Init"; readonly sessionId: string | null; readonly model: string | null }
  | {
    readonly _tag: "Assistant"
    readonly messageId: string | null
    readonly sessionId: string | null
    readonly model: string | null
    readonly tools: ReadonlyArray<string>
    readonly text: string
    readonly usage: Usage | null
    /** Set on messages the CLI makes up itself (`model: "<synthetic>"`, an `error` field). */
    readonly synthetic: boolean
  }
  | { readonly _tag: "ToolResult" }
  | {
    readonly _tag: "Result"
    readonly subtype: string | null
    readonly isError: boolean
    readonly durationMs: number | null
    readonly turns: number | null
    readonly costUsd: number | null
    readonly usage: Usage | null
    readonly sessionId: string | null
    readonly text: string
  }
  | { readonly _tag: "RateLimit"; readonly status: string | null; readonly resetsAtMs: number | null }
  /** Valid JSON of a type this parser does not follow (kept for the limit scan). */
  | { readonly _tag: "OtherJson"; readonly type: string | null; readonly raw: string }
  /** Not JSON at all: plain output, warnings, or a fragment. */
  | { readonly _tag: "Text"; readonly text: string }

type Json = Record<string, unknown>

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v)
const str = (v: unknown): string | null => (typeof v === "string" ? v : null)
const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null)

const usageOf = (v: unknown): Usage | null => {
  if (!isObject(v)) return null
  const input = (num(v["input_tokens"]) ?? 0) + (num(v["cache_creation_input_tokens"]) ?? 0) +
    (num(v["cache_read_input_tokens"]) ?? 0)
  return { input, output: num(v["output_tokens"]) ?? 0 }
}

const decodeObject = (o: Json, raw: string): AgentEvent => {
  const type = str(o["type"])
  switch (type) {
    case "system":
      if (o["subtype"] === "init") return { _tag: "Init", sessionId: str(o["session_id"]), model: str(o["model"]) }
      break
    case "assistant": {
      const message = isObject(o["message"]) ? o["message"] : {}
      const content = Array.isArray(message["content"]) ? message["content"] : []
      const tools: Array<string> = []
      const texts: Array<string> = []
      for (const block of content) {
        if (!isObject(block)) continue
        if (block["type"] === "tool_use") tools.push(str(block["name"]) ?? "unknown")
        else if (block["type"] === "text" && typeof block["text"] === "string") texts.push(block["text"])
      }
      const model = str(message["model"])
      return {
        _tag: "Assistant",
        messageId: str(message["id"]),
        sessionId: str(o["session_id"]),
        model,
        tools,
        text: texts.join("\n"),
        usage: usageOf(message["usage"]),
        synthetic: model === "<synthetic>" || o["error"] !== undefined
      }
    }
    case "user":
      return { _tag: "ToolResult" }
    case "result":
      return {
        _tag: "Result",
        subtype: str(o["subtype"]),
        isError: o["is_error"] === true,
        durationMs: num(o["duration_ms"]),
        turns: num(o["num_turns"]),
        // Older versions call it `cost_usd`.
        costUsd: num(o["total_cost_usd"]) ?? num(o["cost_usd"]),
        usage: usageOf(o["usage"]),
        sessionId: str(o["session_id"]),
        text: str(o["result"]) ?? ""
      }
    case "rate_limit_event": {
      const info = isObject(o["rate_limit_info"]) ? o["rate_limit_info"] : o
      const resetsAt = num(info["resetsAt"])
      return { _tag: "RateLimit", status: str(info["status"]), resetsAtMs: resetsAt === null ? null : epochToMs(resetsAt) }
    }
  }
  return { _tag: "OtherJson", type, raw }
}

/** Epoch seconds or milliseconds to milliseconds. */
const epochToMs = (n: number): number => (n > 1e11 ? n : n * 1000)

/** The end of the JSON object starting at `start` (string-aware brace matching), or -1. */
const objectEnd = (text: string, start: number): number => {
  let depth = 0
  let inString = false
  for (let i = start; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 92) i++ // backslash: skip the escaped character
      else if (c === 34) inString = false
      continue
    }
    if (c === 34) inString = true
    else if (c === 123) depth++
    else if (c === 125 && --depth === 0) return i
  }
  return -1
}

const parseObject = (text: string): Json | undefined => {
  try {
    const v: unknown = JSON.parse(text)
    return isObject(v) ? v : undefined
  } catch {
    return undefined
  }
}

/**
 * Decodes one line. Invalid JSON is `Text`, except that a `rate_limit_event` written into the
 * middle of another line (a known CLI defect) is still found.
 */
export const parseLine = (line: string): ReadonlyArray<AgentEvent> => {
  const trimmed = line.trim()
  if (trimmed.startsWith("{")) {
    const o = parseObject(trimmed)
    if (o) return [decodeObject(o, trimmed)]
  }
  const found: Array<AgentEvent> = []
  const marker = /\{\s*"type"\s*:\s*"rate_limit_event"/g
  for (let m = marker.exec(line); m !== null; m = marker.exec(line)) {
    const end = objectEnd(line, m.index)
    const o = end === -1 ? undefined : parseObject(line.slice(m.index, end + 1))
    if (o) found.push(decodeObject(o, line.slice(m.index, end + 1)))
  }
  return [...found, { _tag: "Text", text: line }]
}

// ---------------------------------------------------------------------------------------------
// Usage limits
// ---------------------------------------------------------------------------------------------

export interface LimitSignal {
  /** What the agent said, shortened for logs. */
  readonly message: string
  /** When the provider says the limit resets (epoch ms), if it said so. */
  readonly resetsAtMs: number | null
}

/** Wordings of a provider's usage or rate limit (old and new CLI versions, raw API errors). */
const LIMIT_PATTERNS: ReadonlyArray<RegExp> = [
  /usage limit reached/i,
  /you[\u2019']?ve hit your (?:\w+ )?limit/i,
  /out of extra usage/i,
  /(?:usage|rate|session|weekly) limit (?:exceeded|reached|hit)/i,
  /limit will reset/i,
  /rate_limit_error/,
  /\b429\b[^\n]{0,80}(?:rate.?limit|too many requests)/i
]

/** Texts longer than this are work output (code, answers), not a limit message. */
const MAX_LIMIT_TEXT = 600

export const mentionsLimit = (text: string): boolean =>
  text.length <= MAX_LIMIT_TEXT && LIMIT_PATTERNS.some((p) => p.test(text))

/**
 * A text that *is* a limit message (it starts with one): the only kind read from an answer the
 * agent did not mark as an error, since a short answer may well talk about rate limits.
 */
export const isLimitMessage = (text: string): boolean =>
  text.length <= MAX_LIMIT_TEXT &&
  /^\s*(?:claude ai usage limit reached|you[\u2019']?ve hit your (?:\w+ )?limit|(?:api error: )?429\b)/i.test(text)

const MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]

/** The UTC offset (ms) of `zone` at the instant `ms`; throws on an unknown zone. */
const zoneOffsetMs = (ms: number, zone: string | undefined): number => {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone: zone,
    hourCycle: "h23",
    year: "numeric",
    month: "numeric",
    day: "numeric",
    hour: "numeric",
    minute: "numeric",
    second: "numeric"
  }).formatToParts(new Date(ms))
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value ?? 0)
  const asUtc = Date.UTC(get("year"), get("month") - 1, get("day"), get("hour") % 24, get("minute"), get("second"))
  return asUtc - Math.floor(ms / 1000) * 1000
}

/** The instant a wall-clock time in `zone` names. */
const wallTimeMs = (y: number, mo: number, d: number, h: number, mi: number, zone: string | undefined): number => {
  const guess = Date.UTC(y, mo, d, h, mi)
  const first = guess - zoneOffsetMs(guess, zone)
  // Once more, in case the offset differs at the result (a DST change in between).
  return guess - zoneOffsetMs(first, zone)
}

/** The calendar date (in `zone`) of the instant `ms`. */
const dateIn = (ms: number, zone: string | undefined) => {
  const local = new Date(ms + zoneOffsetMs(ms, zone))
  return { y: local.getUTCFullYear(), mo: local.getUTCMonth(), d: local.getUTCDate() }
}

const RESETS = new RegExp(
  String.raw`reset(?:s| at)?\s+(?:at\s+)?(?:(?<mon>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+(?<day>\d{1,2})(?:,?\s+\d{4})?(?:,?\s+at)?\s+)?` +
    String.raw`(?<h>\d{1,2})(?::(?<mi>\d{2}))?\s*(?<ampm>am|pm)?(?:\s*\((?<zone>[A-Za-z][A-Za-z0-9_+\-/]*)\))?`,
  "i"
)

/**
 * When a limit message says the limit resets: `…|1762952400` (epoch seconds), `resets 2pm
 * (Asia/Shanghai)`, `resets Apr 23 at 4pm (America/Recife)`, `resets 14:30` (the daemon's zone).
 * A time without a date is its next occurrence after `nowMs`.
 */
export const parseResetTime = (text: string, nowMs: number): number | null => {
  const epoch = /limit reached\|(\d{9,13})/i.exec(text)
  if (epoch) return epochToMs(Number(epoch[1]))
  const m = RESETS.exec(text)
  if (!m?.groups) return null
  const g = m.groups
  let h = Number(g["h"])
  const mi = g["mi"] ? Number(g["mi"]) : 0
  const ampm = g["ampm"]?.toLowerCase()
  // A bare number with neither minutes nor am/pm is not a time ("resets 5 things").
  if (!ampm && !g["mi"]) return null
  if (ampm) {
    if (h < 1 || h > 12) return null
    h = (h % 12) + (ampm === "pm" ? 12 : 0)
  }
  if (h > 23 || mi > 59) return null
  const zone = g["zone"]
  try {
    if (zone) zoneOffsetMs(nowMs, zone)
  } catch {
    return null
  }
  const today = dateIn(nowMs, zone)
  if (g["mon"]) {
    const mo = MONTHS.indexOf(g["mon"].toLowerCase().slice(0, 3))
    const d = Number(g["day"])
    let at = wallTimeMs(today.y, mo, d, h, mi, zone)
    // "Jan 2" said in late December is next year's.
    if (at < nowMs - 24 * 3600_000) at = wallTimeMs(today.y + 1, mo, d, h, mi, zone)
    return at
  }
  let at = wallTimeMs(today.y, today.mo, today.d, h, mi, zone)
  if (at <= nowMs) at = wallTimeMs(today.y, today.mo, today.d + 1, h, mi, zone)
  return at
}

const shorten = (text: string, max = 200) => {
  const one = text.replace(/\s+/g, " ").trim()
  return one.length > max ? `${one.slice(0, max - 1)}…` : one
}

/**
 * Whether an event reports a usage or rate limit. Tool results and long assistant texts are
 * never read for this: an agent grepping code about rate limits is not rate limited.
 */
export const limitSignalOf = (event: AgentEvent, nowMs: number): LimitSignal | undefined => {
  const fromText = (text: string, strict = false): LimitSignal | undefined =>
    (strict ? isLimitMessage(text) : mentionsLimit(text))
      ? { message: shorten(text), resetsAtMs: parseResetTime(text, nowMs) }
      : undefined
  switch (event._tag) {
    case "RateLimit":
      return event.status === "rejected"
        ? { message: `rate limit rejected${event.resetsAtMs ? ` until ${new Date(event.resetsAtMs).toISOString()}` : ""}`, resetsAtMs: event.resetsAtMs }
        : undefined
    case "Result":
      return fromText(event.text, !event.isError)
    case "Assistant":
      return event.tools.length === 0 ? fromText(event.text, !event.synthetic) : undefined
    case "OtherJson":
      return event.type === "error" || event.type === "system" ? fromText(event.raw) : undefined
    case "Text":
      return fromText(event.text)
    default:
      return undefined
  }
}

// ---------------------------------------------------------------------------------------------
// Progress of one attempt
// ---------------------------------------------------------------------------------------------

/** The live progress of a job, as kept in its slot (contract §4 allows extra keys). */
export interface Progress {
  readonly last_event_at: string | null
  readonly turns: number
  readonly tool_uses: number
  readonly last_tool: string | null
  readonly cost_usd: number | null
  readonly tokens_in: number
  readonly tokens_out: number
  readonly session_id: string | null
  readonly model: string | null
}

export const emptyProgress: Progress = {
  last_event_at: null,
  turns: 0,
  tool_uses: 0,
  last_tool: null,
  cost_usd: null,
  tokens_in: 0,
  tokens_out: 0,
  session_id: null,
  model: null
}

/** The final `result` line, when the agent wrote one. */
export interface ResultInfo {
  readonly subtype: string | null
  readonly isError: boolean
  readonly durationMs: number | null
  readonly text: string
}

/** Everything read from one attempt's output so far. */
export interface OutputState {
  readonly progress: Progress
  readonly result: ResultInfo | null
  /** The last usage-limit signal seen. */
  readonly limit: LimitSignal | null
  readonly jsonLines: number
  readonly textLines: number
  readonly oversizedLines: number
  /** Usage per assistant message id: the CLI repeats a message's usage on each of its blocks. */
  readonly messageUsage: Readonly<Record<string, Usage>>
  /** Assistant events without a message id, each its own turn. */
  readonly anonymousTurns: number
  readonly anonymousUsage: Usage
}

export const emptyOutput: OutputState = {
  progress: emptyProgress,
  result: null,
  limit: null,
  jsonLines: 0,
  textLines: 0,
  oversizedLines: 0,
  messageUsage: {},
  anonymousTurns: 0,
  anonymousUsage: { input: 0, output: 0 }
}

const sumUsage = (state: OutputState): Usage => {
  let input = state.anonymousUsage.input
  let output = state.anonymousUsage.output
  for (const u of Object.values(state.messageUsage)) {
    input += u.input
    output += u.output
  }
  return { input, output }
}

/** Folds one line of output into the state; `nowMs` stamps `last_event_at`. */
export const applyLine = (state: OutputState, line: Line, nowMs: number): OutputState => {
  if (line._tag === "Oversized") return { ...state, oversizedLines: state.oversizedLines + 1 }
  let next = state
  for (const event of parseLine(line.text)) next = applyEvent(next, event, nowMs)
  return next
}

export const applyEvent = (state: OutputState, event: AgentEvent, nowMs: number): OutputState => {
  const limit = limitSignalOf(event, nowMs) ?? state.limit
  if (event._tag === "Text") return { ...state, limit, textLines: state.textLines + 1 }
  const stamped = { ...state.progress, last_event_at: isoSeconds(nowMs) }
  const base = { ...state, limit, jsonLines: state.jsonLines + 1 }
  switch (event._tag) {
    case "Init":
      return {
        ...base,
        progress: { ...stamped, session_id: event.sessionId ?? stamped.session_id, model: event.model ?? stamped.model }
      }
    case "Assistant": {
      let next: OutputState = base
      if (event.messageId !== null) {
        if (event.usage) next = { ...next, messageUsage: { ...next.messageUsage, [event.messageId]: event.usage } }
        else if (!(event.messageId in next.messageUsage)) {
          next = { ...next, messageUsage: { ...next.messageUsage, [event.messageId]: { input: 0, output: 0 } } }
        }
      } else {
        next = {
          ...next,
          anonymousTurns: next.anonymousTurns + 1,
          anonymousUsage: event.usage
            ? { input: next.anonymousUsage.input + event.usage.input, output: next.anonymousUsage.output + event.usage.output }
            : next.anonymousUsage
        }
      }
      const tokens = sumUsage(next)
      return {
        ...next,
        progress: {
          ...stamped,
          turns: Object.keys(next.messageUsage).length + next.anonymousTurns,
          tool_uses: stamped.tool_uses + event.tools.length,
          last_tool: event.tools.at(-1) ?? stamped.last_tool,
          tokens_in: tokens.input,
          tokens_out: tokens.output,
          session_id: event.sessionId ?? stamped.session_id,
          model: event.synthetic ? stamped.model : event.model ?? stamped.model
        }
      }
    }
    case "Result":
      return {
        ...base,
        result: { subtype: event.subtype, isError: event.isError, durationMs: event.durationMs, text: event.text },
        progress: {
          ...stamped,
          turns: event.turns ?? stamped.turns,
          cost_usd: event.costUsd ?? stamped.cost_usd,
          tokens_in: event.usage?.input ?? stamped.tokens_in,
          tokens_out: event.usage?.output ?? stamped.tokens_out,
          session_id: event.sessionId ?? stamped.session_id
        }
      }
    default:
      return { ...base, progress: stamped }
  }
}

/**
 * Whether the agent itself said its run failed: a `result` with `is_error: true`, or a result
 * that is a usage-limit message.
 */
export const reportedError = (state: OutputState): string | undefined => {
  const r = state.result
  if (r === null) return undefined
  if (r.isError) return `${r.subtype ?? "error"}${r.text ? `: ${shorten(r.text)}` : ""}`
  if (isLimitMessage(r.text)) return `usage limit: ${shorten(r.text)}`
  return undefined
}

/** `$0.0123` (4 decimals below a dollar, 2 above). */
export const formatCost = (usd: number): string => `$${usd < 1 ? usd.toFixed(4) : usd.toFixed(2)}`

const formatTokens = (n: number): string => (n >= 1000 ? `${(n / 1000).toFixed(1)}k` : String(n))

/** `3 turns, 5 tool uses (last: Bash), $0.0123, 1.2k in / 300 out tokens` — the parts that are known. */
export const describeProgress = (p: Progress): string => {
  const parts = [`${p.turns} turn${p.turns === 1 ? "" : "s"}`, `${p.tool_uses} tool use${p.tool_uses === 1 ? "" : "s"}${p.last_tool ? ` (last: ${p.last_tool})` : ""}`]
  if (p.cost_usd !== null) parts.push(formatCost(p.cost_usd))
  if (p.tokens_in > 0 || p.tokens_out > 0) parts.push(`${formatTokens(p.tokens_in)} in / ${formatTokens(p.tokens_out)} out tokens`)
  if (p.session_id) parts.push(`session ${p.session_id}`)
  return parts.join(", ")
}
