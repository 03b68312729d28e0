/**
 * Recognising a provider's usage or rate limit in an agent's output, and when it says the limit
 * resets (epoch times, wall-clock times in a named zone, dates).
 */
import { type AgentEvent, epochToMs } from "./AgentEvent.js"

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

/** `text` on one line, cut to `max` characters. */
export const shorten = (text: string, max = 200) => {
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
