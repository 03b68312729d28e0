/**
 * The attempt history `C/daemon/history.jsonl`: one JSON line per finished attempt, appended by
 * the daemon (one write per line, so a reader never sees two lines mixed), read by
 * `starforge history` and by `status` for the last hour's counts.
 *
 * It rotates like the logs at `LOG_MAX_SIZE_MB` (`history.jsonl.1` the oldest part), always between
 * two lines; log maintenance gzips and deletes old parts. Reading goes through every part left.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Context, Effect, Layer, PubSub, Ref, Stream } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { StorageError } from "../domain/errors.js"
import type { ExitStatus } from "../domain/Outcome.js"
import { exitCodeOf, signalOf } from "../domain/Outcome.js"
import { logParts, readLogFile, RotatingLogFile } from "../logs/LogFile.js"

/** How an attempt ended: its exit status, or that the daemon stopped it (`interrupted`) or could not log it (`error`). */
export type HistoryOutcome =
  | "success"
  | "failed"
  | "timeout"
  | "stalled"
  | "memory"
  | "budget"
  | "agent-error"
  | "spawn-failed"
  | "interrupted"
  | "error"

export interface HistoryEntry {
  /** The trigger's file name, `X.trigger`. */
  readonly trigger: string
  readonly agent: string
  readonly attempt: number
  /** UTC ISO-8601 with milliseconds. */
  readonly start: string
  readonly end: string
  readonly outcome: HistoryOutcome
  readonly exit_code: number | null
  readonly signal: string | null
  /** The attempt's log file. */
  readonly log: string
  readonly ticket: string | null
  readonly trace_id: string | null
  /** The largest resident memory of the agent's processes in the attempt's samples; null when none was taken. */
  readonly peak_rss_bytes?: number | null
  /** CPU time of the agent's processes up to the attempt's last sample; null when none was taken. */
  readonly cpu_seconds?: number | null
  /** The agent's session (claude's `session_id`), when it reported one. */
  readonly session_id?: string | null
  /** The session this attempt resumed (`AGENT_RESUME_COMMAND`); null for a fresh start. */
  readonly resumed_session?: string | null
  /** What the agent reported it cost (claude's `total_cost_usd`); null when it reported none. */
  readonly cost_usd?: number | null
  /** The agent's turns and tokens as its stream-json reported them (0 for an agent that writes none). */
  readonly turns?: number
  readonly tokens_in?: number
  readonly tokens_out?: number
}

export const outcomeOf = (status: ExitStatus): HistoryOutcome => {
  switch (status._tag) {
    case "Exited":
      return status.code === 0 ? "success" : "failed"
    case "Signaled":
      return "failed"
    case "TimedOut":
      return "timeout"
    case "SpawnFailed":
      return "spawn-failed"
    case "Stalled":
      return "stalled"
    case "OverMemory":
      return "memory"
    case "OverBudget":
      return "budget"
    case "ReportedError":
      return "agent-error"
  }
}

/** The entry of an attempt that ended with `status` (undefined: interrupted before the agent exited). */
export const entryOf = (
  base: Omit<HistoryEntry, "outcome" | "exit_code" | "signal">,
  status: ExitStatus | undefined,
  outcome?: HistoryOutcome
): HistoryEntry => ({
  ...base,
  outcome: outcome ?? (status ? outcomeOf(status) : "interrupted"),
  exit_code: status ? exitCodeOf(status) : null,
  signal: status ? signalOf(status) : null
})

export interface HistoryShape {
  readonly record: (entry: HistoryEntry) => Effect.Effect<void>
  /**
   * Every entry recorded from the moment of subscription on (the dashboard's `attempt` events);
   * a subscriber more than `RECORDED_BUFFER` entries behind loses the oldest.
   */
  readonly recorded: Stream.Stream<HistoryEntry>
}

/** How many entries a slow subscriber of `recorded` may lag behind. */
export const RECORDED_BUFFER = 1024

export class History extends Context.Tag("starforge/History")<History, HistoryShape>() {
  /**
   * Appends to `C/daemon/history.jsonl`, rotated at `LOG_MAX_SIZE_MB`; a line that cannot be
   * written is reported once, as an Effect warning.
   */
  static readonly layer = Layer.scoped(
    History,
    Effect.gen(function*() {
      const { paths, settings } = yield* DaemonConfig
      const file = yield* Effect.acquireRelease(
        Effect.try({
          try: () => {
            fs.mkdirSync(path.dirname(paths.historyFile), { recursive: true })
            return new RotatingLogFile(paths.historyFile, settings.logMaxBytes)
          },
          catch: (cause) => new StorageError({ operation: "opening", path: paths.historyFile, cause })
        }),
        (file) => Effect.sync(() => file.close())
      )
      let failing = false
      // Publishing costs next to nothing while nobody subscribes.
      const hub = yield* PubSub.sliding<HistoryEntry>(RECORDED_BUFFER)
      const write = (entry: HistoryEntry) =>
        Effect.suspend(() => {
          try {
            file.write(JSON.stringify(entry) + "\n")
            failing = false
            return Effect.void
          } catch (e) {
            const first = !failing
            failing = true
            return first ? Effect.logWarning(`cannot write ${paths.historyFile}: ${(e as Error).message}`) : Effect.void
          }
        })
      return {
        record: (entry) => Effect.zipRight(write(entry), PubSub.publish(hub, entry)),
        recorded: Stream.fromPubSub(hub)
      }
    })
  )

  /** Keeps the entries in memory, for tests. */
  static readonly memory = Effect.gen(function*() {
    const entries = yield* Ref.make<ReadonlyArray<HistoryEntry>>([])
    const hub = yield* PubSub.sliding<HistoryEntry>(RECORDED_BUFFER)
    const layer = Layer.succeed(History, {
      record: (entry) => Effect.zipRight(Ref.update(entries, (all) => [...all, entry]), PubSub.publish(hub, entry)),
      recorded: Stream.fromPubSub(hub)
    })
    return { layer, entries: Ref.get(entries) }
  })
}

const isEntry = (value: unknown): value is HistoryEntry =>
  typeof value === "object" && value !== null && typeof (value as HistoryEntry).agent === "string" &&
  typeof (value as HistoryEntry).end === "string" && typeof (value as HistoryEntry).outcome === "string"

const parseLine = (line: string): HistoryEntry | undefined => {
  try {
    const value: unknown = JSON.parse(line)
    return isEntry(value) ? value : undefined
  } catch {
    return undefined
  }
}

const CHUNK = 64 * 1024
/** Entries are appended as attempts end, so end times only go back by the longest overlap of two appends. */
const ORDER_SLACK_MS = 60_000

/** Reads `size` bytes at `position` of one part of the history. */
type ReadAt = (position: number, length: number) => Buffer

/**
 * Adds the entries of one part to `found`, newest first, reading back from its end in chunks;
 * returns true once it saw an entry older than `since` (then no earlier part needs reading).
 */
const readBack = (size: number, readAt: ReadAt, since: number, found: Array<HistoryEntry>): boolean => {
  let position = size
  let rest = Buffer.alloc(0)
  let older = false
  while (position > 0 && !older) {
    const length = Math.min(CHUNK, position)
    position -= length
    const data = Buffer.concat([readAt(position, length), rest])
    // The first line may continue in the previous chunk: keep it for the next round.
    const firstNewline = position > 0 ? data.indexOf(10) : -1
    rest = firstNewline >= 0 ? data.subarray(0, firstNewline) : position > 0 ? data : Buffer.alloc(0)
    const complete = position > 0 ? (firstNewline >= 0 ? data.subarray(firstNewline + 1) : Buffer.alloc(0)) : data
    const lines = complete.toString("utf8").split("\n")
    for (let i = lines.length - 1; i >= 0; i--) {
      const entry = parseLine(lines[i]!)
      if (!entry) continue
      const end = Date.parse(entry.end)
      if (end >= since) found.push(entry)
      else if (end < since - ORDER_SLACK_MS) older = true
    }
  }
  return older
}

/** Reads one part (gunzipped when it ends in `.gz`); returns whether it reached entries older than `since`. */
const readPart = (file: string, since: number, found: Array<HistoryEntry>): boolean => {
  if (file.endsWith(".gz")) {
    let content: Buffer
    try {
      content = readLogFile(file)
    } catch {
      return false
    }
    return readBack(content.length, (position, length) => content.subarray(position, position + length), since, found)
  }
  let fd: number
  try {
    fd = fs.openSync(file, "r")
  } catch {
    return false
  }
  try {
    const readAt: ReadAt = (position, length) => {
      const buffer = Buffer.alloc(length)
      let done = 0
      while (done < length) {
        const n = fs.readSync(fd, buffer, done, length - done, position + done)
        if (n === 0) break
        done += n
      }
      return buffer.subarray(0, done)
    }
    return readBack(fs.fstatSync(fd).size, readAt, since, found)
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * The entries of `file` and of its rotated parts (gzipped or not), oldest first; lines that are
 * not entries (a half-written last line) are skipped. With `sinceMs`, only entries that ended
 * then or later, reading back from the newest part and stopping once the entries are older.
 */
export const readHistory = (file: string, options: { readonly sinceMs?: number } = {}): ReadonlyArray<HistoryEntry> => {
  const since = options.sinceMs ?? -Infinity
  const found: Array<HistoryEntry> = []
  const parts = logParts(file)
  for (let i = parts.length - 1; i >= 0; i--) {
    if (readPart(parts[i]!, since, found)) break
  }
  return found.reverse()
}

/** Successful and failed attempts that ended in the last `windowMs` before `nowMs`. */
export const recentCounts = (file: string, nowMs: number, windowMs = 3_600_000) => {
  let done = 0
  let failed = 0
  for (const entry of readHistory(file, { sinceMs: nowMs - windowMs })) {
    if (entry.outcome === "success") done++
    else if (entry.outcome !== "interrupted") failed++
  }
  return { done, failed }
}
