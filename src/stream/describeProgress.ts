/** How a job's progress and costs read in logs and on the command line. */
import type { Progress } from "./OutputState.js"

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
