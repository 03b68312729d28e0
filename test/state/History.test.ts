/** Reading `history.jsonl` back: all of it, or from the end back to a time; `--since` parsing. */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as zlib from "node:zlib"
import { Effect } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { parseSince } from "../../src/cli/history.js"
import { DaemonConfig } from "../../src/config/DaemonConfig.js"
import { projectPaths } from "../../src/domain/ProjectPaths.js"
import { History, type HistoryEntry, readHistory, recentCounts } from "../../src/state/History.js"

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

describe("rotation", () => {
  const project = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-history-"))
    dirs.push(dir)
    return projectPaths(dir)
  }
  const record = (root: string, logMaxBytes: number, entries: ReadonlyArray<HistoryEntry>) =>
    Effect.runPromise(
      Effect.flatMap(History, (history) => Effect.forEach(entries, (e) => history.record(e))).pipe(
        Effect.provide(History.layer),
        Effect.provide(DaemonConfig.layerSettings(root, { logMaxBytes }))
      )
    )
  const parts = (file: string) => fs.readdirSync(path.dirname(file)).filter((n) => n.startsWith("history.jsonl")).sort()

  it("history.jsonl rotates at LOG_MAX_SIZE_MB between two lines, into parts numbered upwards", async () => {
    const paths = project()
    const lineBytes = JSON.stringify(entry(0)).length + 1
    // Each part ends with the write that reaches the size: three lines a part.
    await record(paths.root, 2 * lineBytes + 1, Array.from({ length: 10 }, (_, i) => entry(i)))
    expect(parts(paths.historyFile)).toEqual(["history.jsonl", "history.jsonl.1", "history.jsonl.2", "history.jsonl.3"])
    for (const n of [1, 2, 3]) {
      const lines = fs.readFileSync(`${paths.historyFile}.${n}`, "utf8").split("\n")
      expect(lines.slice(0, -1).map((l) => JSON.parse(l).trigger)).toEqual([0, 1, 2].map((i) => `t-${(n - 1) * 3 + i}.trigger`))
      expect(lines.at(-1)).toBe("")
    }
    expect(fs.readFileSync(paths.historyFile, "utf8")).toBe(JSON.stringify(entry(9)) + "\n")
  })

  it("LOG_MAX_SIZE_MB=0 never rotates it", async () => {
    const paths = project()
    await record(paths.root, 0, Array.from({ length: 10 }, (_, i) => entry(i)))
    expect(parts(paths.historyFile)).toEqual(["history.jsonl"])
  })

  it("readHistory reads every part, gzipped or not, oldest first; with sinceMs it stops at the parts it needs", async () => {
    const paths = project()
    const all = Array.from({ length: 40 }, (_, i) => entry(i, i % 4 === 0 ? "failed" : "success"))
    await record(paths.root, 5 * (JSON.stringify(entry(0)).length + 1), all)
    // Maintenance gzipped the oldest part.
    const first = `${paths.historyFile}.1`
    const inFirst = fs.readFileSync(first, "utf8").split("\n").length - 1
    expect(fs.existsSync(`${paths.historyFile}.4`)).toBe(true)
    fs.writeFileSync(`${first}.gz`, zlib.gzipSync(fs.readFileSync(first)))
    fs.rmSync(first)
    expect(readHistory(paths.historyFile)).toEqual(all)
    expect(readHistory(paths.historyFile, { sinceMs: T0 + 33 * 60_000 })).toEqual(all.slice(33))
    // An unreadable old part is not read at all when the newer ones hold the entries asked for.
    fs.writeFileSync(`${first}.gz`, "not gzip")
    expect(readHistory(paths.historyFile, { sinceMs: T0 + 33 * 60_000 })).toEqual(all.slice(33))
    expect(readHistory(paths.historyFile)).toEqual(all.slice(inFirst))
    expect(recentCounts(paths.historyFile, T0 + 39 * 60_000, 10 * 60_000)).toEqual({ done: 9, failed: 2 })
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
