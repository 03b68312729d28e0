/**
 * The file-system layer of `TriggerQueue`: watches `C/triggers` (inotify, see `DirectoryWatch.ts`)
 * and rescans it, keeps the pending set in memory, claims by rename and archives every outcome.
 * Watch events only say "look at this file again": a missed event costs latency, never a trigger,
 * because the monitor rescans the whole directory every `PROCESS_MONITOR_INTERVAL`.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { SystemError } from "@effect/platform/Error"
import { Effect, Either, FiberSet, Layer, Option, Queue, Schedule } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { StorageError } from "../domain/errors.js"
import { archiveStamp } from "../domain/time.js"
import { parseTrigger, priorityOf, promptProblem } from "../domain/Trigger.js"
import { DaemonLog } from "../observability/DaemonLog.js"
import { writeFileAtomic } from "../io/stateFile.js"
import { type ClaimedTrigger, PendingTriggers, type QueuedTrigger, TriggerQueue, type TriggerQueueShape } from "./TriggerQueue.js"
import { forEachEvent, watchDirectory } from "./DirectoryWatch.js"
import { freeName } from "../io/freeName.js"
import { fitName, MAX_TRIGGER_NAME_BYTES, moveNoClobber, type ReadResult, readTriggerFile } from "./triggerFiles.js"

const SUFFIX = ".trigger"
/** A file that is not complete JSON yet is read again if it changed this recently. */
const SETTLE_MS = 2_000

const storage = (operation: string, file: string) => (cause: unknown) => new StorageError({ operation, path: file, cause })

export const make = Effect.gen(function*() {
  const { paths } = yield* DaemonConfig
  const log = yield* DaemonLog
  const background = yield* FiberSet.make()

  const pending = new PendingTriggers()
  /** Stems renamed to `.processing` by this daemon and not yet archived or requeued. */
  const claimed = new Set<string>()
  /** Stems waiting to be read again because they were incomplete. */
  const settling = new Set<string>()
  const changes = yield* Queue.sliding<void>(1)
  const notify = Queue.offer(changes, undefined)

  /**
   * Moves `X.trigger` to `processed/invalid/<stamp>-X.trigger` with its reason beside it (written
   * first). `from`
   * is given for a name that is not valid UTF-8 (only its bytes name the file); an over-long
   * name is shortened so the archive and reason names fit in a directory entry.
   */
  const archiveInvalid = (name: string, reason: string, from: string | Buffer = path.join(paths.triggers, name + SUFFIX)) =>
    Effect.gen(function*() {
      const moved = yield* Effect.try({
        try: () => {
          fs.mkdirSync(paths.invalid, { recursive: true })
          const to = freeName(paths.invalid, `${archiveStamp(Date.now())}-${fitName(name)}${SUFFIX}`, [".reason.txt"])
          // The reason first: a reader never sees an archived file without it.
          fs.writeFileSync(`${to}.reason.txt`, reason + "\n", { mode: 0o644 })
          try {
            fs.renameSync(from, to)
          } catch (e) {
            fs.rmSync(`${to}.reason.txt`, { force: true })
            throw e
          }
          return to
        },
        catch: storage("archiving the invalid trigger", String(from))
      })
      yield* log.event("INVALID", `${name}${SUFFIX}: ${reason} (moved to ${path.relative(paths.root, moved)})`)
    }).pipe(Effect.catchAll((error) => log.event("ERROR", error.message)))

  /**
   * What one top-level `X.trigger` holds. Reading and validating is plain synchronous code: the
   * start-up scan does it for every file in the queue (10,000 and more), and an effect per file
   * was most of its time.
   */
  type Finding =
    | { readonly _tag: "Gone" }
    | { readonly _tag: "Queued"; readonly entry: QueuedTrigger }
    | { readonly _tag: "Invalid"; readonly reason: string }
    | { readonly _tag: "Incomplete"; readonly modifiedMs: number }
    | { readonly _tag: "Unreadable"; readonly error: unknown }

  /**
   * `C/triggers/<file>` for a name of that directory (no separator in it): plain concatenation,
   * as `path.join` normalises every path it builds (twice per file in a scan).
   */
  const inTriggers = (file: string) => paths.triggers + path.sep + file

  /** `listedAsRegular`: see `readRegularFile`. */
  const inspect = (name: string, listedAsRegular: boolean): Finding => {
    const file = inTriggers(name + SUFFIX)
    let read: ReadResult
    try {
      const nameBytes = Buffer.byteLength(name)
      if (nameBytes > MAX_TRIGGER_NAME_BYTES) {
        // `X.processing` and the archive names would not fit in a directory entry.
        if (fs.lstatSync(file, { throwIfNoEntry: false }) === undefined) return { _tag: "Gone" }
        return { _tag: "Invalid", reason: `the file name is ${nameBytes} bytes long before .trigger, over the ${MAX_TRIGGER_NAME_BYTES} byte limit` }
      }
      read = readTriggerFile(file, listedAsRegular)
    } catch (error) {
      return { _tag: "Unreadable", error }
    }
    switch (read._tag) {
      case "Gone":
        return read
      case "NotRegular":
        return { _tag: "Invalid", reason: `not a regular file: it is ${read.kind}` }
      case "TooLarge":
        return { _tag: "Invalid", reason: `the file is ${read.size} bytes, over the 1048576 byte (1 MiB) limit` }
    }
    const parsed = parseTrigger(read.bytes)
    if (Either.isLeft(parsed)) {
      return parsed.left.incomplete && Date.now() - read.modifiedMs < SETTLE_MS
        ? { _tag: "Incomplete", modifiedMs: read.modifiedMs }
        : { _tag: "Invalid", reason: parsed.left.reason }
    }
    const trigger = parsed.right
    const tooLong = promptProblem(trigger, inTriggers(name + ".processing"))
    if (tooLong !== undefined) return { _tag: "Invalid", reason: tooLong }
    return {
      _tag: "Queued",
      entry: { name, agent: trigger.to_agent, trigger, priority: priorityOf(trigger), createdNs: read.createdNs }
    }
  }

  /**
   * Files what `inspect` found in the pending set at once; returns what is left to do (archive an
   * invalid file, read an incomplete one again later, report an error), or undefined.
   */
  const record = (name: string, finding: Finding): Effect.Effect<void> | undefined => {
    switch (finding._tag) {
      case "Queued":
        pending.set(finding.entry)
        return undefined
      case "Unreadable":
        return log.event("ERROR", `cannot read ${path.join(paths.triggers, name + SUFFIX)}: ${String(finding.error)}; it stays queued`)
      case "Gone":
        pending.delete(name)
        return undefined
      case "Invalid":
        pending.delete(name)
        return archiveInvalid(name, finding.reason)
      case "Incomplete":
        pending.delete(name)
        return readAgainLater(name, finding.modifiedMs)
    }
  }

  const logQueued = (entry: QueuedTrigger) =>
    log.event("QUEUE", `${entry.name}${SUFFIX} queued for ${entry.agent}`, { traceId: entry.trigger.trace_id, agent: entry.agent })

  const scanning = yield* Effect.makeSemaphore(1)

  /** Reads one top-level `X.trigger` and files it: pending, invalid, or read again later. */
  const scan = (name: string): Effect.Effect<void> =>
    scanning.withPermits(1)(Effect.suspend(() => {
      if (claimed.has(name)) return Effect.void
      const known = pending.has(name)
      const finding = inspect(name, false)
      const followUp = record(name, finding)
      if (finding._tag !== "Queued") return followUp ?? Effect.void
      return known ? notify : Effect.zipRight(logQueued(finding.entry), notify)
    }))

  const readAgainLater = (name: string, modifiedMs: number) =>
    settling.has(name) ? Effect.void : Effect.gen(function*() {
      settling.add(name)
      yield* FiberSet.run(
        background,
        Effect.sleep(Math.max(50, modifiedMs + SETTLE_MS + 50 - Date.now())).pipe(
          Effect.zipRight(Effect.sync(() => settling.delete(name))),
          Effect.zipRight(scan(name))
        )
      )
    })

  /** The first rescan (at start-up) logs one line for the whole queue, not one per trigger. */
  let startUpScan = true

  /**
   * Lists the directory and reads every `X.trigger` not yet known, in one synchronous pass (no
   * effect per file); then archives, re-reads and logs what it found.
   */
  const rescan = scanning.withPermits(1)(Effect.suspend(() => {
    let entries: Array<fs.Dirent<Buffer>>
    try {
      // As bytes: a name that is not valid UTF-8 could not be opened through its decoded string.
      entries = fs.readdirSync(paths.triggers, { encoding: "buffer", withFileTypes: true })
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") {
        fs.mkdirSync(paths.triggers, { recursive: true })
        return log.event("WARN", `${paths.triggers} was missing and has been created again`)
      }
      return log.event("ERROR", `cannot list ${paths.triggers}: ${(e as Error).message}`)
    }
    const followUps: Array<Effect.Effect<void>> = []
    const queued: Array<QueuedTrigger> = []
    const present = new Set<string>()
    for (const entry of entries) {
      const base = entry.name.toString("utf8")
      if (!base.endsWith(SUFFIX) || base === SUFFIX) continue
      const name = base.slice(0, -SUFFIX.length)
      if (!Buffer.from(base, "utf8").equals(entry.name)) {
        followUps.push(
          archiveInvalid(name, "the file name is not valid UTF-8", Buffer.concat([Buffer.from(paths.triggers + path.sep), entry.name]))
        )
        continue
      }
      present.add(name)
      if (pending.has(name) || settling.has(name) || claimed.has(name)) continue
      const finding = inspect(name, entry.isFile())
      const followUp = record(name, finding)
      if (followUp !== undefined) followUps.push(followUp)
      if (finding._tag === "Queued") queued.push(finding.entry)
    }
    for (const name of pending.names()) if (!present.has(name)) pending.delete(name)
    const announce = startUpScan
      ? log.event("QUEUE", `${queued.length} ${queued.length === 1 ? "trigger" : "triggers"} pending at start-up`)
      : Effect.forEach(queued, logQueued, { discard: true })
    startUpScan = false
    return Effect.all([...followUps, announce, notify], { discard: true })
  })).pipe(Effect.withSpan("TriggerQueue.rescan"))

  // Watch events name files; only top-level `*.trigger` files matter.
  const isTriggerName = (base: string) => base.endsWith(SUFFIX) && base !== SUFFIX
  const onEvent = (file: string) => {
    if (path.dirname(file) !== paths.triggers) return Effect.void
    const name = path.basename(file).slice(0, -SUFFIX.length)
    // A claimed name needs no look (the daemon's own rename to `.processing`, or a same-name drop):
    // the scan would skip it, and the claim's release scans the name again.
    return claimed.has(name) ? Effect.void : scan(name)
  }
  const watchFailed = (error: SystemError) => log.event("WARN", `watching ${paths.triggers} failed (${error.message}); retrying`)
  // Registered before the first rescan (in recovery), so no trigger dropped after start-up waits for a rescan.
  const firstWatch = yield* Effect.either(watchDirectory(paths.triggers, isTriggerName))
  /**
   * Watches the directory again after its watch ended (it was removed, or removed and created
   * again): created again if it is still missing, watched, then rescanned, so the triggers
   * written into the new directory before its watch existed run at once, not at the next rescan.
   */
  const watchAgain = Effect.scoped(
    Effect.gen(function*() {
      if (!fs.existsSync(paths.triggers)) {
        yield* Effect.try({
          try: () => fs.mkdirSync(paths.triggers, { recursive: true }),
          catch: (cause) => new SystemError({ module: "FileSystem", reason: "Unknown", method: "mkdir", pathOrDescriptor: paths.triggers, cause })
        })
        yield* log.event("WARN", `${paths.triggers} was removed; created again`)
      }
      const events = yield* watchDirectory(paths.triggers, isTriggerName)
      yield* rescan
      yield* forEachEvent(events, onEvent)
    })
  )
  yield* Either.match(firstWatch, { onLeft: Effect.fail, onRight: (events) => forEachEvent(events, onEvent) }).pipe(
    Effect.catchAll(watchFailed),
    // Watched again whenever the watch ends (e.g. the directory was removed).
    Effect.zipRight(
      watchAgain.pipe(
        Effect.tapError(watchFailed),
        Effect.retry(Schedule.spaced("1 second")),
        Effect.forever
      )
    ),
    Effect.forkScoped
  )

  const move = (claimedTrigger: ClaimedTrigger, dir: string, name: string, operation: string, companions: ReadonlyArray<string> = []) =>
    Effect.try({
      try: () => moveNoClobber(claimedTrigger.file, dir, name, companions),
      catch: storage(operation, claimedTrigger.file)
    })

  const release = (name: string) =>
    Effect.gen(function*() {
      claimed.delete(name)
      // A trigger with the same name may have been dropped while this one ran.
      yield* scan(name)
    })

  const service: TriggerQueueShape = {
    pending: Effect.sync(() => pending.inOrder()),
    changed: Queue.take(changes),
    claim: (t) =>
      Effect.try({
        try: () => {
          const from = path.join(paths.triggers, t.name + SUFFIX)
          const to = path.join(paths.triggers, t.name + ".processing")
          pending.delete(t.name)
          if (fs.lstatSync(to, { throwIfNoEntry: false }) !== undefined) return Option.none()
          try {
            fs.renameSync(from, to)
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code === "ENOENT") return Option.none()
            throw e
          }
          claimed.add(t.name)
          return Option.some<ClaimedTrigger>({ queued: t, file: to })
        },
        catch: storage("claiming", path.join(paths.triggers, t.name + SUFFIX))
      }),
    requeue: (c) =>
      Effect.gen(function*() {
        const to = yield* move(c, paths.triggers, c.queued.name + SUFFIX, "requeueing")
        yield* release(c.queued.name)
        // A same-name trigger that arrived meanwhile kept its name; this one took a free variant.
        const stem = path.basename(to).slice(0, -SUFFIX.length)
        if (stem !== c.queued.name) yield* scan(stem)
      }),
    complete: (c, completion) =>
      Effect.gen(function*() {
        const fileName = c.queued.name + SUFFIX
        if (completion._tag === "Done") {
          const to = yield* move(c, paths.processed, `${archiveStamp(Date.now())}-${fileName}`, "archiving")
          yield* release(c.queued.name)
          return to
        }
        // The meta file first: a reader never sees an entry without it, and a full disk fails
        // before anything moved (the trigger stays claimed and the move is tried again). A meta
        // file whose trigger is not there was left by a daemon killed between the two steps: the
        // name is free, and that meta is replaced.
        const to = yield* Effect.try({
          try: () => {
            fs.mkdirSync(paths.deadLetter, { recursive: true })
            return freeName(paths.deadLetter, fileName)
          },
          catch: storage("moving to the dead-letter queue", c.file)
        })
        yield* writeFileAtomic(`${to}.meta.json`, JSON.stringify(completion.meta, null, 2) + "\n")
        yield* Effect.try({
          try: () => fs.renameSync(c.file, to),
          catch: (cause) => {
            fs.rmSync(`${to}.meta.json`, { force: true })
            return storage("moving to the dead-letter queue", c.file)(cause)
          }
        })
        yield* release(c.queued.name)
        return to
      }),
    recoverClaimed: Effect.try({
      try: () =>
        fs.readdirSync(paths.triggers).filter((n) => n.endsWith(".processing") && !claimed.has(n.slice(0, -11))),
      catch: storage("listing", paths.triggers)
    }).pipe(
      Effect.flatMap((names) =>
        Effect.forEach(names, (n) =>
          Effect.try({
            try: () => moveNoClobber(path.join(paths.triggers, n), paths.triggers, n.slice(0, -11) + SUFFIX),
            catch: storage("requeueing", path.join(paths.triggers, n))
          }).pipe(Effect.as(n.slice(0, -11))))
      )
    ),
    rescan
  }
  return service
})

export const layer = Layer.scoped(TriggerQueue, make)
