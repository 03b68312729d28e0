/**
 * The maintenance pass beyond the logs (issue 25 part 4): rotated parts of `history.jsonl` are
 * gzipped and deleted like the logs, `.gz.partial` files left by a crash are removed, `daemon.out`
 * is copied and emptied at `LOG_MAX_SIZE_MB`, and `PROCESSED_RETENTION_DAYS` prunes `processed/`
 * and `processed/invalid/` but never the dead-letter queue.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as zlib from "node:zlib"
import { Effect, Layer } from "effect"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { DaemonConfig, defaultSettings } from "../../src/config/DaemonConfig.js"
import { daemonDirectories, type ProjectPaths, projectPaths } from "../../src/domain/ProjectPaths.js"
import { layer, maintenancePass } from "../../src/monitor/LogMaintenance.js"
import { DaemonLog } from "../../src/observability/DaemonLog.js"
import { waitFor } from "../support/project.js"

const DAY = 86_400_000
const NOW = Date.now()

let paths: ProjectPaths

beforeEach(() => {
  paths = projectPaths(fs.mkdtempSync(path.join(os.tmpdir(), "starforge-maintenance-")))
  for (const dir of daemonDirectories(paths)) fs.mkdirSync(dir, { recursive: true })
})

afterEach(() => {
  fs.rmSync(paths.root, { recursive: true, force: true })
})

/** Writes `file` last modified `ageMs` before `NOW`. */
const write = (file: string, content: string, ageMs: number) => {
  fs.writeFileSync(file, content)
  const at = new Date(NOW - ageMs)
  fs.utimesSync(file, at, at)
  return file
}

const list = (dir: string) => fs.readdirSync(dir).sort()

const settings = { ...defaultSettings, logMaintenanceIntervalMs: 60_000 }
const pass = (overrides: Partial<typeof settings> = {}) => Effect.runPromise(maintenancePass(paths, { ...settings, ...overrides }, NOW))

describe("PROCESSED_RETENTION_DAYS", () => {
  it("deletes archived triggers (and their reasons) older than the retention, never newer ones or the dead-letter queue", async () => {
    write(path.join(paths.processed, "20250101-000000-old.trigger"), "{}", 31 * DAY)
    write(path.join(paths.processed, "20250101-000000-old-2.trigger"), "{}", 40 * DAY)
    write(path.join(paths.processed, "20260101-000000-new.trigger"), "{}", 29 * DAY)
    write(path.join(paths.processed, "notes.txt"), "not a trigger", 400 * DAY)
    // An invalid trigger keeps its dropped file's age; its reason was written when it was archived.
    write(path.join(paths.invalid, "20250101-000000-bad.trigger"), "nope", 35 * DAY)
    write(path.join(paths.invalid, "20250101-000000-bad.trigger.reason.txt"), "not JSON\n", 1 * DAY)
    write(path.join(paths.invalid, "20250101-000000-young.trigger"), "nope", 2 * DAY)
    write(path.join(paths.invalid, "20250101-000000-young.trigger.reason.txt"), "not JSON\n", 2 * DAY)
    // A reason whose trigger is gone (removed by hand) goes once it is as old.
    write(path.join(paths.invalid, "20250101-000000-lost.trigger.reason.txt"), "not JSON\n", 32 * DAY)
    write(path.join(paths.deadLetter, "failed.trigger"), "{}", 90 * DAY)
    write(path.join(paths.deadLetter, "failed.trigger.meta.json"), "{}", 90 * DAY)

    const result = await pass({ processedRetentionMs: 30 * DAY })

    expect(result.archive).toEqual({ removed: 3, failed: [] })
    expect(list(paths.processed)).toEqual(["20260101-000000-new.trigger", "invalid", "notes.txt"])
    expect(list(paths.invalid)).toEqual(["20250101-000000-young.trigger", "20250101-000000-young.trigger.reason.txt"])
    expect(list(paths.deadLetter)).toEqual(["failed.trigger", "failed.trigger.meta.json"])
  })

  it("decimal days; 0 keeps every archived trigger", async () => {
    write(path.join(paths.processed, "a.trigger"), "{}", 13 * 3_600_000)
    write(path.join(paths.processed, "b.trigger"), "{}", 11 * 3_600_000)
    expect((await pass({ processedRetentionMs: 0 })).archive.removed).toBe(0)
    expect(list(paths.processed)).toEqual(["a.trigger", "b.trigger", "invalid"])
    expect((await pass({ processedRetentionMs: 0.5 * DAY })).archive.removed).toBe(1)
    expect(list(paths.processed)).toEqual(["b.trigger", "invalid"])
  })

  it("a missing processed/ directory is nothing to do", async () => {
    fs.rmSync(paths.processed, { recursive: true })
    expect((await pass({ processedRetentionMs: DAY })).archive).toEqual({ removed: 0, failed: [] })
  })
})

describe(".gz.partial files", () => {
  it("removes those older than one maintenance interval, of logs and of history parts; keeps younger ones and unrelated files", async () => {
    write(path.join(paths.logs, "dev-1.log.gz.partial"), "half", 61_000)
    write(path.join(paths.logs, "daemon.log.3.gz.partial"), "half", 2 * DAY)
    write(path.join(paths.logs, "dev-2.log.gz.partial"), "being written", 1_000)
    write(path.join(paths.logs, "notes.txt.gz.partial"), "not ours", 2 * DAY)
    write(path.join(paths.daemonDir, "history.jsonl.2.gz.partial"), "half", 2 * DAY)
    const result = await pass()
    expect(result.logs.abandoned.slice().sort()).toEqual(["daemon.log.3.gz.partial", "dev-1.log.gz.partial"])
    expect(result.history.abandoned).toEqual(["history.jsonl.2.gz.partial"])
    expect(list(paths.logs)).toEqual(["dev-2.log.gz.partial", "notes.txt.gz.partial"])
    expect(list(paths.daemonDir)).toEqual([])
  })
})

describe("history.jsonl parts", () => {
  it("are gzipped and deleted like the logs; the live history.jsonl is never touched", async () => {
    write(path.join(paths.daemonDir, "history.jsonl.1"), "{\"a\":1}\n", 8 * DAY)
    write(path.join(paths.daemonDir, "history.jsonl.2"), "{\"a\":2}\n", 2 * DAY)
    write(path.join(paths.daemonDir, "history.jsonl.3"), "{\"a\":3}\n", 3_600_000)
    write(paths.historyFile, "{\"a\":4}\n", 30 * DAY)
    write(path.join(paths.daemonDir, "usage.json"), "{}", 30 * DAY)
    const result = await pass()
    expect(result.history).toMatchObject({ compressed: ["history.jsonl.2"], deleted: ["history.jsonl.1"], failed: [] })
    expect(list(paths.daemonDir)).toEqual(["history.jsonl", "history.jsonl.2.gz", "history.jsonl.3", "usage.json"])
    expect(zlib.gunzipSync(fs.readFileSync(path.join(paths.daemonDir, "history.jsonl.2.gz"))).toString()).toBe("{\"a\":2}\n")
  })
})

describe("daemon.out", () => {
  it("over LOG_MAX_SIZE_MB, is copied to its next part and emptied; the writer's next append starts the file anew", async () => {
    const file = paths.daemonOut
    const before = "crash report\n".repeat(100)
    fs.writeFileSync(path.join(paths.logs, "daemon.out.1.gz"), "an older part")
    // The daemon's stdout and stderr: opened in append mode by `daemon start`, held open while it runs.
    const writer = fs.openSync(file, "a")
    try {
      fs.writeSync(writer, before)
      const result = await pass({ logMaxBytes: 1000 })
      expect(result.daemonOut).toBe(path.join(paths.logs, "daemon.out.2"))
      expect(fs.readFileSync(path.join(paths.logs, "daemon.out.2"), "utf8")).toBe(before)
      expect(fs.statSync(file).size).toBe(0)
      fs.writeSync(writer, "after\n")
      expect(fs.readFileSync(file, "utf8")).toBe("after\n")
    } finally {
      fs.closeSync(writer)
    }
  })

  it("under the size, or with LOG_MAX_SIZE_MB=0, is left alone", async () => {
    const file = paths.daemonOut
    fs.writeFileSync(file, "x".repeat(999))
    expect((await pass({ logMaxBytes: 1000 })).daemonOut).toBeUndefined()
    fs.appendFileSync(file, "y")
    expect((await pass({ logMaxBytes: 0 })).daemonOut).toBeUndefined()
    expect(list(paths.logs)).toEqual(["daemon.out"])
    expect(fs.statSync(file).size).toBe(1000)
  })
})

describe("the periodic pass", () => {
  it("removes an archived trigger older than PROCESSED_RETENTION_DAYS in the next pass, with a LOGS line giving the count", async () => {
    const fresh = write(path.join(paths.processed, "20260101-000000-fresh.trigger"), "{}", DAY)
    const dlq = write(path.join(paths.deadLetter, "failed.trigger"), "{}", 90 * DAY)
    write(path.join(paths.processed, "20250101-000000-first.trigger"), "{}", 31 * DAY)
    const memory = Effect.runSync(DaemonLog.memory)
    const lines = () => Effect.runSync(memory.lines).filter((l) => / LOGS: Removed \d+ archived/.test(l))
    const config = DaemonConfig.layerSettings(paths.root, { logMaintenanceIntervalMs: 50, processedRetentionMs: 30 * DAY })
    await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      yield* Layer.build(layer.pipe(Layer.provide(Layer.merge(config, memory.layer))))
      yield* Effect.promise(() => waitFor(() => lines().length === 1, { what: "the first pass to remove the old trigger", timeoutMs: 10_000 }))
      const second = write(path.join(paths.processed, "20250101-000000-second.trigger"), "{}", 45 * DAY)
      yield* Effect.promise(() => waitFor(() => !fs.existsSync(second), { what: "a later pass to remove the next old trigger", timeoutMs: 10_000 }))
      yield* Effect.promise(() => waitFor(() => lines().length === 2, { what: "its LOGS line", timeoutMs: 10_000 }))
    })))
    expect(lines().map((l) => l.replace(/^.* LOGS: /, ""))).toEqual([
      "Removed 1 archived trigger(s) older than 30 days from .claude/triggers/processed",
      "Removed 1 archived trigger(s) older than 30 days from .claude/triggers/processed"
    ])
    expect(fs.existsSync(fresh)).toBe(true)
    expect(fs.existsSync(dlq)).toBe(true)
    expect(list(paths.processed)).toEqual(["20260101-000000-fresh.trigger", "invalid"])
  })
})
