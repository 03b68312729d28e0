/** Reading `history.jsonl` back: all of it, or from the end back to a time; `--since` parsing. */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { parseSince } from "../../src/cli/history.js"
import { type HistoryEntry, readHistory, recentCounts } from "../../src/state/History.js"

const dirs: Array<string> = []
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })))

const T0 = Date.parse("2026-01-01T00:00:00Z")
const entry = (i: number, outcome: HistoryEntry["outcome"] = "success"): HistoryEntry => ({
  trigger: `t-${i}.trigger`,
  agent: i % 2 === 0 ? "even" : "odd",
  attempt: 1,
  start: new Date(T0 + i * 60_000 - 5_000).toISOString(),
  end: new Date(T0 + i * 60_000).toISOString(),
  outcome,
  exit_code: outcome === "success" ? 0 : 1,
  signal: null,
  log: `/p/.claude/logs/x-${i}.log`,
  ticket: null,
  trace_id: null
})

const writeHistory = (entries: ReadonlyArray<HistoryEntry>, tail = "") => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-history-"))
  dirs.push(dir)
  const file = path.join(dir, "history.jsonl")
  fs.writeFileSync(file, entries.map((e) => JSON.stringify(e) + "\n").join("") + tail)
  return file
}

describe("readHistory", () => {
  // 3 000 entries of about 280 bytes: several 64 KiB chunks read back from the end.
  const entries = Array.from({ length: 3_000 }, (_, i) => entry(i, i % 3 === 0 ? "failed" : "success"))
  const file = writeHistory(entries, `{"trigger":"half-writ`)

  it("reads every entry in order and skips a half-written last line", () => {
    expect(readHistory(file)).toEqual(entries)
  })

  it("with sinceMs, returns exactly the entries that ended then or later", () => {
    expect(readHistory(file, { sinceMs: T0 + 2_900 * 60_000 })).toEqual(entries.slice(2_900))
    expect(readHistory(file, { sinceMs: T0 + 1_234 * 60_000 + 1 })).toEqual(entries.slice(1_235))
    expect(readHistory(file, { sinceMs: T0 + 10_000 * 60_000 })).toEqual([])
  })

  it("counts the last hour's successes and failures (interrupted attempts are neither)", () => {
    const recent = writeHistory([entry(0, "failed"), entry(100, "success"), entry(101, "timeout"), entry(102, "interrupted"), entry(103)])
    expect(recentCounts(recent, T0 + 103 * 60_000, 3_600_000)).toEqual({ done: 2, failed: 1 })
  })

  it("a missing file is an empty history", () => {
    expect(readHistory("/nonexistent/history.jsonl")).toEqual([])
  })
})

describe("parseSince", () => {
  it("accepts ISO-8601 dates and times; no offset means UTC", () => {
    expect(parseSince("2025-10-25")).toBe(Date.parse("2025-10-25T00:00:00Z"))
    expect(parseSince("2025-10-25T05:00:00Z")).toBe(Date.parse("2025-10-25T05:00:00Z"))
    expect(parseSince("2025-10-25T05:00")).toBe(Date.parse("2025-10-25T05:00:00Z"))
    expect(parseSince("2025-10-25T07:00:00+02:00")).toBe(Date.parse("2025-10-25T05:00:00Z"))
    expect(parseSince("2025-10-25T05:00:00.250Z")).toBe(Date.parse("2025-10-25T05:00:00.250Z"))
  })

  it("rejects anything else", () => {
    for (const bad of ["yesterday", "", "1700000000", "2025-13-01", "2025-10-25T25:00:00Z", "25/10/2025"]) {
      expect(parseSince(bad), bad).toBeUndefined()
    }
  })
})
