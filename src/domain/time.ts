/** Time formats of the contract. */

/** `2025-10-25T05:00:00Z`: UTC ISO-8601 to the second, as in the slot file and the logs. */
export const isoSeconds = (ms: number): string => new Date(ms).toISOString().slice(0, -5) + "Z"

/** `yyyymmdd-HHMMSS` in UTC, the prefix of archived triggers. */
export const archiveStamp = (ms: number): string => {
  const iso = new Date(ms).toISOString()
  return `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}-${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}`
}

/** `1h 02m 03s` style durations for humans. */
export const formatDuration = (seconds: number): string => {
  const s = Math.max(0, Math.floor(seconds))
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const r = s % 60
  if (h > 0) return `${h}h ${String(m).padStart(2, "0")}m ${String(r).padStart(2, "0")}s`
  if (m > 0) return `${m}m ${String(r).padStart(2, "0")}s`
  return `${r}s`
}
