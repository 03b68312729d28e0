/**
 * The file-system layer of `TriggerQueue`: watches `C/triggers` (inotify, see `DirectoryWatch.ts`)
 * and rescans it, keeps the pending set in memory, claims by rename and archives every outcome
 * (the moves themselves are in `claimFiles.ts`, reading one file in `inspectTrigger.ts`).
 * Watch events only say "look at this file again": a missed event costs latency, never a trigger,
 * because the monitor rescans the whole directory every `PROCESS_MONITOR_INTERVAL`.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { SystemError } from "@effect/platform/Error"
import { Effect, Either, FiberSet, Layer, Option, Queue, Schedule } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { DaemonLog } from "../observability/DaemonLog.js"
import { type ClaimedTrigger, PendingTriggers, type QueuedTrigger, TriggerQueue, type TriggerQueueShape } from "./TriggerQueue.js"
import { forEachEvent, watchDirectory } from "./DirectoryWatch.js"
import {
  moveBack,
  moveToDeadLetter,
  moveToInvalid,
  moveToProcessed,
  renameToClaimed,
  requeueLeftClaims,
  storage,
  SUFFIX
} from "./claimFiles.js"
import { type Finding, inspect, SETTLE_MS } from "./inspectTrigger.js"

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
   * Archives an invalid `X.trigger` with its reason (`moveToInvalid`) and logs it. `from` is given
   * for a name that is not valid UTF-8 (only its bytes name the file).
   */
  const archiveInvalid = (name: string, reason: string, from: string | Buffer = path.join(paths.triggers, name + SUFFIX)) =>
    Effect.gen(function*() {
      const moved = yield* Effect.try({
        try: () => moveToInvalid(paths, name, reason, from),
        catch: storage("archiving the invalid trigger", String(from))
      })
      yield* log.event("INVALID", `${name}${SUFFIX}: ${reason} (moved to ${path.relative(paths.root, moved)})`)
    }).pipe(Effect.catchAll((error) => log.event("ERROR", error.message)))

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
      const finding = inspect(paths.triggers, name, false)
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
      const finding = inspect(paths.triggers, name, entry.isFile())
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
          pending.delete(t.name)
          const to = renameToClaimed(paths, t.name)
          if (to === undefined) return Option.none()
          claimed.add(t.name)
          return Option.some<ClaimedTrigger>({ queued: t, file: to })
        },
        catch: storage("claiming", path.join(paths.triggers, t.name + SUFFIX))
      }),
    requeue: (c) =>
      Effect.gen(function*() {
        const to = yield* moveBack(paths, c)
        yield* release(c.queued.name)
        // A same-name trigger that arrived meanwhile kept its name; this one took a free variant.
        const stem = path.basename(to).slice(0, -SUFFIX.length)
        if (stem !== c.queued.name) yield* scan(stem)
      }),
    complete: (c, completion) =>
      Effect.gen(function*() {
        const to = completion._tag === "Done"
          ? yield* moveToProcessed(paths, c)
          : yield* moveToDeadLetter(paths, c, completion.meta)
        yield* release(c.queued.name)
        return to
      }),
    recoverClaimed: requeueLeftClaims(paths, (stem) => claimed.has(stem)),
    rescan
  }
  return service
})

export const layer = Layer.scoped(TriggerQueue, make)
