/**
 * The file layer of the trigger queue against a real temporary project: real files, the real
 * `@parcel/watcher` backend and the real clock.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer, Option } from "effect"
import { DaemonConfig } from "../../src/config/DaemonConfig.js"
import { daemonDirectories, type ProjectPaths, projectPaths } from "../../src/domain/ProjectPaths.js"
import { DaemonLog } from "../../src/observability/DaemonLog.js"
import * as FileTriggerQueue from "../../src/queue/FileTriggerQueue.js"
import {
  type ClaimedTrigger,
  type DeadLetterMeta,
  type QueuedTrigger,
  TriggerQueue,
  type TriggerQueueShape
} from "../../src/queue/TriggerQueue.js"

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/** A temporary project (real path, every daemon directory created), removed with the scope. */
const tempProject = Effect.acquireRelease(
  Effect.sync(() => {
    const root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "starforge-ftq-")))
    const paths = projectPaths(root)
    for (const dir of daemonDirectories(paths)) fs.mkdirSync(dir, { recursive: true })
    return paths
  }),
  (paths) => Effect.sync(() => fs.rmSync(paths.root, { recursive: true, force: true }))
)

interface Env {
  readonly paths: ProjectPaths
  readonly queue: TriggerQueueShape
  readonly lines: Effect.Effect<ReadonlyArray<string>>
}

/**
 * Builds the real file layer on a fresh project. `before` runs after the directories exist and
 * before the layer is built (to lay files down for the initial scan).
 */
const withQueue = (before: (paths: ProjectPaths) => void = () => {}) =>
  Effect.gen(function*() {
    const paths = yield* tempProject
    before(paths)
    const log = yield* DaemonLog.memory
    const services = Layer.mergeAll(
      DaemonConfig.layerSettings(paths.root, {}),
      log.layer
    )
    const context = yield* Layer.build(FileTriggerQueue.layer.pipe(Layer.provide(services)))
    return { paths, queue: Context.get(context, TriggerQueue), lines: log.lines } satisfies Env
  })

/** Polls a condition on the real clock until it holds; fails the test after the deadline. */
const waitUntil = <A>(
  what: string,
  condition: Effect.Effect<A | undefined | false>,
  timeoutMs = 5_000
): Effect.Effect<A> =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const value = yield* condition
      if (value !== undefined && value !== false) return value
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`))
      yield* Effect.sleep("25 millis")
    }
  })

const trigger = (agent: string, extra: Record<string, unknown> = {}) => ({ to_agent: agent, action: "work", ...extra })

/** Writes `<name>.trigger` the way producers should: a staging file renamed into place. */
const drop = (paths: ProjectPaths, name: string, content: unknown): string => {
  const staged = path.join(paths.staging, `${name}.${process.hrtime.bigint()}.tmp`)
  fs.writeFileSync(staged, typeof content === "string" ? content : JSON.stringify(content))
  const target = path.join(paths.triggers, `${name}.trigger`)
  fs.renameSync(staged, target)
  return target
}

/** The creation time the queue orders by: birth time, else modification time. */
const createdNs = (file: string): bigint => {
  const stat = fs.statSync(file, { bigint: true })
  return stat.birthtimeNs > 0n ? stat.birthtimeNs : stat.mtimeNs
}

/**
 * Drops a trigger whose creation time is strictly later than `after` (timestamps are coarse, so
 * two files written back to back can share one): the staging file is written again until the
 * clock has moved on, then renamed into place (a rename keeps the inode and its birth time).
 */
const dropAfter = (paths: ProjectPaths, name: string, content: unknown, after: bigint) =>
  Effect.gen(function*() {
    const staged = path.join(paths.staging, `${name}.tmp`)
    yield* waitUntil(`a creation time after ${after}`, Effect.sync(() => {
      fs.rmSync(staged, { force: true })
      fs.writeFileSync(staged, JSON.stringify(content))
      return createdNs(staged) > after
    }))
    const target = path.join(paths.triggers, `${name}.trigger`)
    fs.renameSync(staged, target)
    return target
  })

/**
 * The subscription starts in the background after the layer is built: drops probe triggers
 * until the watcher reports one (no rescan is called), then removes them again.
 */
const watcherReady = (paths: ProjectPaths, queue: TriggerQueueShape) =>
  Effect.gen(function*() {
    let probes = 0
    yield* waitUntil("the watcher to report a probe trigger", Effect.gen(function*() {
      if (probes < 40) drop(paths, `probe-${probes++}`, trigger("probe"))
      const names = yield* pendingNames(queue)
      return names.some((n) => n.startsWith("probe-"))
    }), 10_000)
    for (let i = 0; i < probes; i++) fs.rmSync(path.join(paths.triggers, `probe-${i}.trigger`), { force: true })
    yield* queue.rescan
    expect(yield* pendingNames(queue)).not.toContainEqual(expect.stringMatching(/^probe-/))
  })

const pendingNames = (queue: TriggerQueueShape) => Effect.map(queue.pending, (all) => all.map((t) => t.name))

const entryOf = (queue: TriggerQueueShape, name: string) =>
  Effect.map(queue.pending, (all) => all.find((t) => t.name === name))

const mustFind = (queue: TriggerQueueShape, name: string) =>
  Effect.flatMap(entryOf(queue, name), (entry) =>
    entry === undefined ? Effect.die(new Error(`${name} is not pending`)) : Effect.succeed(entry))

const mustClaim = (queue: TriggerQueueShape, entry: QueuedTrigger) =>
  Effect.flatMap(queue.claim(entry), (claimed) =>
    Option.isSome(claimed) ? Effect.succeed(claimed.value) : Effect.die(new Error(`claim of ${entry.name} returned None`)))

const ls = (dir: string): Array<string> => {
  try {
    return fs.readdirSync(dir).sort()
  } catch {
    return []
  }
}

const exists = (file: string) => fs.lstatSync(file, { throwIfNoEntry: false }) !== undefined

/** `processed/invalid/<yyyymmdd-HHMMSS>-<name>.trigger`, once it is there. */
const invalidEntry = (paths: ProjectPaths, name: string): string | undefined => {
  const pattern = new RegExp(`^\\d{8}-\\d{6}-${name.replace(/[.]/g, "\\.")}\\.trigger$`)
  const found = ls(paths.invalid).find((n) => pattern.test(n))
  return found === undefined ? undefined : path.join(paths.invalid, found)
}

const reasonOf = (archived: string): string => fs.readFileSync(`${archived}.reason.txt`, "utf8")

/** The reason file holds exactly one non-empty line. */
const expectOneLine = (reason: string) => {
  expect(reason.endsWith("\n")).toBe(true)
  const body = reason.slice(0, -1)
  expect(body.length).toBeGreaterThan(0)
  expect(body).not.toMatch(/[\r\n]/)
}

const meta: DeadLetterMeta = {
  failure_reason: "exited with code 3",
  exit_code: 3,
  signal: null,
  attempts: 3,
  retry_timestamps: ["2025-10-25T05:00:00Z", "2025-10-25T05:00:05Z", "2025-10-25T05:00:15Z"],
  dlq_entry_timestamp: "2025-10-25T05:00:16Z",
  agent: "dev-a",
  trace_id: "TRACE-1-abcdef",
  last_log: "/tmp/dev-a-1.log"
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

describe("FileTriggerQueue", { timeout: 15_000 }, () => {
  it.scopedLive("the initial rescan picks up the files already in the queue", () =>
    Effect.gen(function*() {
      const { queue } = yield* withQueue((paths) => {
        drop(paths, "one", trigger("dev-a"))
        drop(paths, "two", trigger("dev-b", { priority: "high", context: { ticket: 52 } }))
      })
      yield* queue.rescan
      const pending = yield* queue.pending
      expect(pending.map((t) => t.name).sort()).toEqual(["one", "two"])
      const two = pending.find((t) => t.name === "two")!
      expect(two.agent).toBe("dev-b")
      expect(two.priority).toBe("high")
      expect(two.trigger.context).toEqual({ ticket: 52 })
      expect(pending.find((t) => t.name === "one")!.priority).toBe("normal")
    }))

  it.scopedLive("the start-up rescan logs one QUEUE line for the whole queue; a trigger found later gets its own", () =>
    Effect.gen(function*() {
      const { paths, queue, lines } = yield* withQueue((p) => {
        for (const name of ["one", "two", "three"]) drop(p, name, trigger("dev-a", { trace_id: `TRACE-${name}` }))
        fs.writeFileSync(path.join(p.triggers, "broken.trigger"), "[")
        fs.utimesSync(path.join(p.triggers, "broken.trigger"), new Date(Date.now() - 60_000), new Date(Date.now() - 60_000))
      })
      yield* queue.rescan
      const queueLines = (all: ReadonlyArray<string>) => all.filter((l) => l.includes(" QUEUE: "))
      expect(queueLines(yield* lines).map((l) => l.replace(/^\[[^\]]*\] /, ""))).toEqual(["[] QUEUE: 3 triggers pending at start-up"])
      // The invalid file is still reported on its own.
      expect((yield* lines).filter((l) => l.includes("INVALID: broken.trigger"))).toHaveLength(1)
      drop(paths, "four", trigger("dev-b", { trace_id: "TRACE-four" }))
      yield* queue.rescan
      // Found by this rescan or by the watcher: either way one line, with its trace id.
      expect(queueLines(yield* lines).slice(1).map((l) => l.replace(/^\[[^\]]*\] /, ""))).toEqual([
        "[TRACE-four] QUEUE: four.trigger queued for dev-b"
      ])
      expect((yield* pendingNames(queue)).sort()).toEqual(["four", "one", "three", "two"])
    }))

  it.scopedLive("a file renamed into place is noticed by the watcher, without a rescan", () =>
    Effect.gen(function*() {
      const { paths, queue } = yield* withQueue()
      yield* watcherReady(paths, queue)
      drop(paths, "watched", trigger("dev-a", { message: "hello" }))
      const entry = yield* waitUntil("the watcher to queue watched.trigger", entryOf(queue, "watched"))
      expect(entry.agent).toBe("dev-a")
      expect(entry.trigger.message).toBe("hello")
      // `changed` was signalled.
      yield* queue.changed.pipe(Effect.timeoutFail({ duration: "1 second", onTimeout: () => new Error("no change") }))
    }))

  it.scopedLive("orders by priority, then creation time, then name", () =>
    Effect.gen(function*() {
      const { paths, queue } = yield* withQueue()
      const low = drop(paths, "a-low", trigger("x", { priority: "low" }))
      const older = yield* dropAfter(paths, "z-older", trigger("x"), createdNs(low))
      const newer = yield* dropAfter(paths, "b-newer", trigger("x", { priority: "normal" }), createdNs(older))
      // Two names for one inode share their creation time: the name decides.
      fs.linkSync(newer, path.join(paths.triggers, "a-same.trigger"))
      const high = yield* dropAfter(paths, "y-high", trigger("x", { priority: "high" }), createdNs(newer))
      yield* dropAfter(paths, "c-high-later", trigger("x", { priority: "high" }), createdNs(high))
      yield* queue.rescan
      expect(yield* pendingNames(queue)).toEqual(["y-high", "c-high-later", "z-older", "a-same", "b-newer", "a-low"])
    }))

  it.scopedLive("claim renames to .processing; a second claim of the same entry returns None", () =>
    Effect.gen(function*() {
      const { paths, queue } = yield* withQueue((p) => drop(p, "job", trigger("dev-a")))
      yield* queue.rescan
      const entry = yield* mustFind(queue, "job")
      const claimed = yield* mustClaim(queue, entry)
      expect(claimed.file).toBe(path.join(paths.triggers, "job.processing"))
      expect(claimed.queued).toEqual(entry)
      expect(exists(path.join(paths.triggers, "job.processing"))).toBe(true)
      expect(exists(path.join(paths.triggers, "job.trigger"))).toBe(false)
      expect(yield* pendingNames(queue)).toEqual([])
      expect(Option.isNone(yield* queue.claim(entry))).toBe(true)
      // The claimed file is untouched by the failed second claim.
      expect(JSON.parse(fs.readFileSync(claimed.file, "utf8"))).toEqual(trigger("dev-a"))
      yield* queue.rescan
      expect(yield* pendingNames(queue)).toEqual([])
    }))

  it.scopedLive("claim of a file that vanished returns None", () =>
    Effect.gen(function*() {
      const { paths, queue } = yield* withQueue((p) => drop(p, "gone", trigger("dev-a")))
      yield* queue.rescan
      const entry = yield* mustFind(queue, "gone")
      fs.rmSync(path.join(paths.triggers, "gone.trigger"))
      expect(Option.isNone(yield* queue.claim(entry))).toBe(true)
      expect(exists(path.join(paths.triggers, "gone.processing"))).toBe(false)
      expect(yield* pendingNames(queue)).toEqual([])
    }))

  it.scopedLive("requeue puts a claimed trigger back in the queue", () =>
    Effect.gen(function*() {
      const { paths, queue } = yield* withQueue((p) => drop(p, "again", trigger("dev-a")))
      yield* queue.rescan
      const claimed = yield* mustClaim(queue, yield* mustFind(queue, "again"))
      yield* queue.requeue(claimed)
      expect(exists(path.join(paths.triggers, "again.trigger"))).toBe(true)
      expect(exists(path.join(paths.triggers, "again.processing"))).toBe(false)
      expect(yield* pendingNames(queue)).toEqual(["again"])
      // And it can be claimed again.
      const second = yield* mustClaim(queue, yield* mustFind(queue, "again"))
      expect(second.file).toBe(path.join(paths.triggers, "again.processing"))
    }))

  it.scopedLive("complete Done moves the file to processed/<yyyymmdd-HHMMSS>-X.trigger", () =>
    Effect.gen(function*() {
      const { paths, queue } = yield* withQueue((p) => drop(p, "ok", trigger("dev-a", { message: "m" })))
      yield* queue.rescan
      const claimed = yield* mustClaim(queue, yield* mustFind(queue, "ok"))
      const before = Date.now()
      const to = yield* queue.complete(claimed, { _tag: "Done" })
      const after = Date.now()
      expect(path.dirname(to)).toBe(paths.processed)
      const match = /^(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})-ok\.trigger$/.exec(path.basename(to))
      expect(match).not.toBeNull()
      const [, y, mo, d, h, mi, s] = match!.map(Number)
      const stampMs = Date.UTC(y!, mo! - 1, d!, h!, mi!, s!)
      expect(stampMs).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000)
      expect(stampMs).toBeLessThanOrEqual(after)
      expect(JSON.parse(fs.readFileSync(to, "utf8"))).toEqual(trigger("dev-a", { message: "m" }))
      expect(exists(claimed.file)).toBe(false)
      expect(ls(paths.triggers).filter((n) => n.startsWith("ok"))).toEqual([])
      expect(yield* pendingNames(queue)).toEqual([])

      // The same name again (possibly within the same second): the first archive is kept.
      drop(paths, "ok", trigger("dev-a", { message: "again" }))
      yield* queue.rescan
      const to2 = yield* queue.complete(yield* mustClaim(queue, yield* mustFind(queue, "ok")), { _tag: "Done" })
      expect(to2).not.toBe(to)
      expect(path.dirname(to2)).toBe(paths.processed)
      expect(path.basename(to2)).toMatch(/^\d{8}-\d{6}-ok(-2)?\.trigger$/)
      expect(JSON.parse(fs.readFileSync(to, "utf8")).message).toBe("m")
      expect(JSON.parse(fs.readFileSync(to2, "utf8")).message).toBe("again")
    }))

  it.scopedLive("complete DeadLetter moves the file to dead-letter/X.trigger with X.trigger.meta.json", () =>
    Effect.gen(function*() {
      const { paths, queue } = yield* withQueue((p) => drop(p, "bad", trigger("dev-a")))
      yield* queue.rescan
      const claimed = yield* mustClaim(queue, yield* mustFind(queue, "bad"))
      const to = yield* queue.complete(claimed, { _tag: "DeadLetter", meta })
      expect(to).toBe(path.join(paths.deadLetter, "bad.trigger"))
      expect(JSON.parse(fs.readFileSync(to, "utf8"))).toEqual(trigger("dev-a"))
      expect(JSON.parse(fs.readFileSync(`${to}.meta.json`, "utf8"))).toEqual(meta)
      expect(exists(claimed.file)).toBe(false)
      expect(ls(paths.deadLetter)).toEqual(["bad.trigger", "bad.trigger.meta.json"])
    }))

  it.scopedLive("an existing name in dead-letter is never overwritten (the newcomer gets -2)", () =>
    Effect.gen(function*() {
      const { paths, queue } = yield* withQueue((p) => {
        fs.writeFileSync(path.join(p.deadLetter, "dup.trigger"), "old entry\n")
        fs.writeFileSync(path.join(p.deadLetter, "dup.trigger.meta.json"), "{\"old\":true}\n")
        drop(p, "dup", trigger("dev-a"))
      })
      yield* queue.rescan
      const claimed = yield* mustClaim(queue, yield* mustFind(queue, "dup"))
      const to = yield* queue.complete(claimed, { _tag: "DeadLetter", meta })
      expect(to).toBe(path.join(paths.deadLetter, "dup-2.trigger"))
      expect(fs.readFileSync(path.join(paths.deadLetter, "dup.trigger"), "utf8")).toBe("old entry\n")
      expect(fs.readFileSync(path.join(paths.deadLetter, "dup.trigger.meta.json"), "utf8")).toBe("{\"old\":true}\n")
      expect(JSON.parse(fs.readFileSync(to, "utf8"))).toEqual(trigger("dev-a"))
      expect(JSON.parse(fs.readFileSync(`${to}.meta.json`, "utf8"))).toEqual(meta)
    }))

  it.scopedLive("invalid files go to processed/invalid/ with a one-line reason", () =>
    Effect.gen(function*() {
      const passwd = fs.readFileSync("/etc/passwd")
      const passwdStat = fs.statSync("/etc/passwd")
      const { paths, queue, lines } = yield* withQueue((p) => {
        const notJson = path.join(p.triggers, "notjson.trigger")
        fs.writeFileSync(notJson, "this is { not json")
        const past = new Date(Date.now() - 60_000)
        fs.utimesSync(notJson, past, past)
        drop(p, "array", [trigger("dev-a")])
        drop(p, "badagent", trigger("../etc"))
        fs.symlinkSync("/etc/passwd", path.join(p.triggers, "link.trigger"))
        fs.mkdirSync(path.join(p.triggers, "x.trigger"))
        execFileSync("mkfifo", [path.join(p.triggers, "y.trigger")])
        fs.writeFileSync(
          path.join(p.triggers, "big.trigger"),
          JSON.stringify({ to_agent: "dev-a", message: "x".repeat(2 * 1024 * 1024) })
        )
        drop(p, "fine", trigger("dev-a"))
      })
      yield* queue.rescan
      const names = ["notjson", "array", "badagent", "link", "x", "y", "big"]
      // The watcher may file them concurrently with the rescan; wait until all are archived.
      const archived = yield* waitUntil("every invalid file to be archived", Effect.sync(() => {
        const found = names.map((n) => invalidEntry(paths, n))
        return found.every((f) => f !== undefined) ? (found as Array<string>) : undefined
      }))
      const byName = Object.fromEntries(names.map((n, i) => [n, archived[i]!]))
      for (const file of archived) expectOneLine(reasonOf(file))

      expect(reasonOf(byName["notjson"]!)).toMatch(/not valid JSON/)
      expect(reasonOf(byName["array"]!)).toMatch(/array/)
      expect(reasonOf(byName["badagent"]!)).toMatch(/to_agent/)

      expect(reasonOf(byName["link"]!)).toMatch(/symbolic link/)
      const link = fs.lstatSync(byName["link"]!)
      expect(link.isSymbolicLink()).toBe(true)
      expect(fs.readlinkSync(byName["link"]!)).toBe("/etc/passwd")
      expect(fs.readFileSync("/etc/passwd")).toEqual(passwd)
      expect(fs.statSync("/etc/passwd").mtimeMs).toBe(passwdStat.mtimeMs)
      expect(fs.statSync("/etc/passwd").ino).toBe(passwdStat.ino)

      expect(reasonOf(byName["x"]!)).toMatch(/directory/)
      expect(fs.lstatSync(byName["x"]!).isDirectory()).toBe(true)
      expect(reasonOf(byName["y"]!)).toMatch(/FIFO/)
      expect(fs.lstatSync(byName["y"]!).isFIFO()).toBe(true)
      expect(reasonOf(byName["big"]!)).toMatch(/1 MiB/)
      expect(fs.statSync(byName["big"]!).size).toBeGreaterThan(2 * 1024 * 1024)

      // Only the valid trigger is queued, and nothing invalid is left in the queue directory.
      expect(yield* pendingNames(queue)).toEqual(["fine"])
      expect(ls(paths.triggers).filter((n) => n.endsWith(".trigger"))).toEqual(["fine.trigger"])
      const invalidLines = (yield* lines).filter((l) => l.includes("INVALID:"))
      expect(invalidLines).toHaveLength(names.length)
    }))

  it.scopedLive("a half-written file modified just now is not invalid and is picked up once complete", () =>
    Effect.gen(function*() {
      const { paths, queue } = yield* withQueue()
      const file = path.join(paths.triggers, "half.trigger")
      const full = JSON.stringify(trigger("dev-a", { message: "complete" }))
      fs.writeFileSync(file, full.slice(0, 12))
      yield* queue.rescan
      expect(yield* pendingNames(queue)).toEqual([])
      expect(exists(file)).toBe(true)
      expect(ls(paths.invalid)).toEqual([])
      // The producer finishes writing (within the 2 s grace).
      fs.writeFileSync(file, full)
      const entry = yield* waitUntil("half.trigger to be queued", entryOf(queue, "half"), 6_000)
      expect(entry.trigger.message).toBe("complete")
      expect(ls(paths.invalid)).toEqual([])
      expect(exists(file)).toBe(true)
    }))

  it.scopedLive("a half-written file that stays incomplete for over 2 s is declared invalid", () =>
    Effect.gen(function*() {
      const { paths, queue } = yield* withQueue()
      const file = path.join(paths.triggers, "stuck.trigger")
      fs.writeFileSync(file, "{\"to_agent\": \"dev-a\",")
      yield* queue.rescan
      expect(ls(paths.invalid)).toEqual([])
      expect(exists(file)).toBe(true)
      // Read again once it has been still for 2 s (no rescan needed).
      const archived = yield* waitUntil("stuck.trigger to be archived", Effect.sync(() => invalidEntry(paths, "stuck")), 6_000)
      expectOneLine(reasonOf(archived))
      expect(reasonOf(archived)).toMatch(/not valid JSON/)
      expect(exists(file)).toBe(false)
      expect(yield* pendingNames(queue)).toEqual([])
    }))

  it.scopedLive("recoverClaimed moves X.processing back to X.trigger (but not this daemon's own claims)", () =>
    Effect.gen(function*() {
      const { paths, queue } = yield* withQueue((p) => {
        fs.writeFileSync(path.join(p.triggers, "left.processing"), JSON.stringify(trigger("dev-a")))
        drop(p, "mine", trigger("dev-b"))
      })
      yield* queue.rescan
      const mine = yield* mustClaim(queue, yield* mustFind(queue, "mine"))
      const recovered = yield* queue.recoverClaimed
      expect(recovered).toEqual(["left"])
      expect(exists(path.join(paths.triggers, "left.trigger"))).toBe(true)
      expect(exists(path.join(paths.triggers, "left.processing"))).toBe(false)
      expect(exists(mine.file)).toBe(true)
      yield* queue.rescan
      expect(yield* pendingNames(queue)).toEqual(["left"])
    }))

  it.scopedLive("a trigger dropped with the same name while X is claimed waits until X completes", () =>
    Effect.gen(function*() {
      const { paths, queue } = yield* withQueue((p) => drop(p, "same", trigger("dev-a", { message: "first" })))
      yield* queue.rescan
      yield* watcherReady(paths, queue)
      const claimed: ClaimedTrigger = yield* mustClaim(queue, yield* mustFind(queue, "same"))
      drop(paths, "same", trigger("dev-b", { message: "second" }))
      // A marker dropped after it: once the watcher reports it, it has seen the same-name drop too.
      drop(paths, "marker", trigger("dev-c"))
      yield* waitUntil("the watcher to queue the marker", entryOf(queue, "marker"))
      expect(yield* pendingNames(queue)).toEqual(["marker"])
      // A full rescan does not read it either.
      yield* queue.rescan
      expect(yield* pendingNames(queue)).toEqual(["marker"])
      expect(exists(path.join(paths.triggers, "same.trigger"))).toBe(true)
      expect(ls(paths.invalid)).toEqual([])

      const to = yield* queue.complete(claimed, { _tag: "Done" })
      expect(JSON.parse(fs.readFileSync(to, "utf8")).message).toBe("first")
      const second = yield* mustFind(queue, "same")
      expect(second.agent).toBe("dev-b")
      expect(second.trigger.message).toBe("second")
      expect((yield* pendingNames(queue)).sort()).toEqual(["marker", "same"])
      const next = yield* mustClaim(queue, second)
      expect(JSON.parse(fs.readFileSync(next.file, "utf8")).message).toBe("second")
    }))
})
