/**
 * Decoding one line of `stream-json` output into the events the daemon follows. Anything that is
 * not a JSON object (plain text, warnings, a fragment of a cut line) is a `Text` event, never an error.
 */

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
export const epochToMs = (n: number): number => (n > 1e11 ? n : n * 1000)

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
