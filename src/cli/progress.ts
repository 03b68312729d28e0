/** How `status` and `slots` show the slot table, live progress, usage-limit pauses and the day's cost. */
import * as path from "node:path"
import type { ProjectPaths } from "../domain/ProjectPaths.js"
import type { Slot } from "../domain/Slot.js"
import { formatDuration } from "../domain/time.js"
import { dayOf, readUsage, type UsageFile } from "../state/Usage.js"
import { formatCost } from "../stream/StreamJson.js"

export const usageFile = (paths: ProjectPaths) => path.join(paths.daemonDir, "usage.json")

/** `12 turns, 30 tool uses (last: Bash), $0.41, last event 3s ago`; "-" without stream-json progress. */
export const progressCell = (slot: Slot, nowMs: number): string => {
  if (slot.status !== "busy" || (slot.last_event_at ?? null) === null) return "-"
  const turns = slot.turns ?? 0
  const tools = slot.tool_uses ?? 0
  const parts = [`${turns} turn${turns === 1 ? "" : "s"}`, `${tools} tool use${tools === 1 ? "" : "s"}${slot.last_tool ? ` (last: ${slot.last_tool})` : ""}`]
  if (slot.cost_usd !== undefined && slot.cost_usd !== null) parts.push(formatCost(slot.cost_usd))
  parts.push(`last event ${formatDuration((nowMs - Date.parse(slot.last_event_at!)) / 1000)} ago`)
  return parts.join(", ")
}

/** The pauses in force: one entry per agent command line. */
export const activeLimits = (usage: UsageFile, nowMs: number) =>
  Object.entries(usage.limits)
    .filter(([, l]) => Date.parse(l.until) > nowMs)
    .map(([command, l]) => ({ command, ...l }))

/** Today's (UTC) cost per agent, and the total. */
export const costToday = (usage: UsageFile, nowMs: number) => {
  const day = dayOf(nowMs)
  const agents = usage.days[day] ?? {}
  const total = Object.values(agents).reduce((sum, a) => sum + a.cost_usd, 0)
  return { day, agents, total_usd: Math.round(total * 1e6) / 1e6 }
}

/** What `status --json` adds about usage. */
export const readUsageStatus = (paths: ProjectPaths, nowMs: number) => {
  const usage = readUsage(usageFile(paths))
  return { usage_limits: activeLimits(usage, nowMs), cost_today: costToday(usage, nowMs) }
}

type UsageStatus = ReturnType<typeof readUsageStatus>

/** `Usage limit: waiting for usage limit until <time> …`, one line per pause in force. */
export const limitLines = (status: UsageStatus, nowMs: number): ReadonlyArray<string> =>
  status.usage_limits.map((l) =>
    `Usage limit: waiting for usage limit until ${l.until} (in ${formatDuration((Date.parse(l.until) - nowMs) / 1000)}; ` +
    `${l.agent}: ${l.reason})`
  )

/** `Cost today (<day> UTC): a $0.12 (2 attempts), …; total $0.12`, or nothing before the first attempt. */
export const costLine = (status: UsageStatus): string | undefined => {
  const agents = Object.entries(status.cost_today.agents).sort(([a], [b]) => a.localeCompare(b))
  if (agents.length === 0) return undefined
  return `Cost today (${status.cost_today.day} UTC): ` +
    agents.map(([agent, d]) => `${agent} ${formatCost(d.cost_usd)} (${d.attempts} attempt${d.attempts === 1 ? "" : "s"})`).join(", ") +
    `; total ${formatCost(status.cost_today.total_usd)}`
}

const known = (n: number | null | undefined): n is number => typeof n === "number" && Number.isFinite(n)

/** `512 B`, `12 KB`, `212 MB`, `1.4 GB` (powers of 1024); "-" when unknown. */
export const formatBytes = (bytes: number | null | undefined): string => {
  if (!known(bytes)) return "-"
  const b = Math.max(0, bytes)
  if (b < 1024) return `${Math.round(b)} B`
  if (Math.round(b / 1024) < 1024) return `${Math.round(b / 1024)} KB`
  if (Math.round(b / 1024 ** 2) < 1024) return `${Math.round(b / 1024 ** 2)} MB`
  return `${(b / 1024 ** 3).toFixed(1)} GB`
}

/** `37%` of one core (above 100% on several cores); "-" when unknown. */
export const formatCpuPercent = (percent: number | null | undefined): string =>
  known(percent) ? `${Math.round(Math.max(0, percent))}%` : "-"

/** CPU time as `12.3s`; "-" when unknown. */
export const formatCpuSeconds = (seconds: number | null | undefined): string =>
  known(seconds) ? `${Math.max(0, seconds).toFixed(1)}s` : "-"

/** The CPU, MEM, PEAK and PROCS cells of a slot: the last sample of a busy agent's process tree, "-" otherwise. */
export const resourceCells = (slot: Slot): [string, string, string, string] => {
  if (slot.status !== "busy") return ["-", "-", "-", "-"]
  return [
    formatCpuPercent(slot.cpu_percent),
    formatBytes(slot.rss_bytes),
    formatBytes(slot.peak_rss_bytes),
    known(slot.processes) ? String(slot.processes) : "-"
  ]
}

/** One row of the slot table of `status` and `slots`, under `SLOT_HEADER`. */
export const slotRows = (slots: Record<string, Slot>, nowMs: number = Date.now()) =>
  Object.entries(slots).sort(([a], [b]) => a.localeCompare(b)).map(([agent, s]) => [
    agent,
    s.status,
    s.pid ?? "-",
    s.ticket ?? "-",
    s.status === "busy" && s.started_at ? formatDuration((nowMs - Date.parse(s.started_at)) / 1000) : "-",
    s.status === "busy" ? s.trigger ?? "-" : "-",
    ...resourceCells(s),
    progressCell(s, nowMs)
  ])

export const SLOT_HEADER = ["AGENT", "STATUS", "PID", "TICKET", "RUNNING FOR", "TRIGGER", "CPU", "MEM", "PEAK", "PROCS", "PROGRESS"]

/** `222298112 (212 MB)`: a byte count with its human form. */
const withBytes = (bytes: number | undefined) => (known(bytes) ? `${bytes} (${formatBytes(bytes)})` : undefined)

/** `slots show AGENT`: every progress field of a busy slot, one per line. */
export const slotDetails = (slot: Slot): ReadonlyArray<string> => {
  if (slot.status !== "busy") return []
  const fields: Array<[string, unknown]> = [
    ["trigger", slot.trigger],
    ["attempt", slot.attempt],
    ["log", slot.log],
    ["session_id", slot.session_id],
    ["model", slot.model],
    ["last_event_at", slot.last_event_at],
    ["turns", slot.turns],
    ["tool_uses", slot.tool_uses],
    ["last_tool", slot.last_tool],
    ["cost_usd", slot.cost_usd],
    ["tokens_in", slot.tokens_in],
    ["tokens_out", slot.tokens_out],
    ["cpu_percent", slot.cpu_percent],
    ["rss_bytes", withBytes(slot.rss_bytes)],
    ["processes", slot.processes],
    ["peak_rss_bytes", withBytes(slot.peak_rss_bytes)],
    ["cpu_seconds", slot.cpu_seconds],
    ["sampled_at", slot.sampled_at]
  ]
  return fields.filter(([, v]) => v !== undefined && v !== null).map(([k, v]) => `${k}: ${String(v)}`)
}
