/**
 * The progress of one attempt, folded from its output line by line: turns, tool uses, cost,
 * tokens, the final result and the last usage-limit signal.
 */
import { isoSeconds } from "../domain/time.js"
import { type AgentEvent, parseLine, type Usage } from "./AgentEvent.js"
import type { Line } from "./LineSplitter.js"
import { isLimitMessage, type LimitSignal, limitSignalOf, shorten } from "./UsageLimit.js"

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
  /** The agent said the session it was asked to resume does not exist. */
  readonly sessionUnknown: boolean
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
  anonymousUsage: { input: 0, output: 0 },
  sessionUnknown: false
}

/** How `claude --resume <id>` says it has no such session. */
const UNKNOWN_SESSION = /no conversation found|session\b.*\b(not found|does not exist|unknown)|unknown session/i

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
  if (event._tag === "Text") {
    return { ...state, limit, textLines: state.textLines + 1, sessionUnknown: state.sessionUnknown || UNKNOWN_SESSION.test(event.text) }
  }
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
        sessionUnknown: base.sessionUnknown || (event.isError && UNKNOWN_SESSION.test(event.text)),
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
