/**
 * The file moves of the trigger queue: claiming `X.trigger` by renaming it to `X.processing`, and
 * moving a file on to `processed/`, `processed/invalid/`, the dead-letter queue or back into the queue.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect } from "effect"
import { StorageError } from "../domain/errors.js"
import type { ProjectPaths } from "../domain/ProjectPaths.js"
import { archiveStamp } from "../domain/time.js"
import { freeName } from "../io/freeName.js"
import { writeFileAtomic } from "../io/stateFile.js"
import type { ClaimedTrigger, DeadLetterMeta } from "./TriggerQueue.js"
import { fitName, moveNoClobber } from "./triggerFiles.js"

export const SUFFIX = ".trigger"
const CLAIMED = ".processing"

export const storage = (operation: string, file: string) => (cause: unknown) => new StorageError({ operation, path: file, cause })

/**
 * Renames `C/triggers/<name>.trigger` to `<name>.processing` and returns the new path; undefined
 * when the file is gone or a `.processing` of that name is still there. Throws on other errors.
 */
export const renameToClaimed = (paths: ProjectPaths, name: string): string | undefined => {
  const from = path.join(paths.triggers, name + SUFFIX)
  const to = path.join(paths.triggers, name + CLAIMED)
  if (fs.lstatSync(to, { throwIfNoEntry: false }) !== undefined) return undefined
  try {
    fs.renameSync(from, to)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined
    throw e
  }
  return to
}

/**
 * Moves `from` to `processed/invalid/<stamp>-<name>.trigger` with its reason beside it (written
 * first) and returns where it went; an over-long name is shortened so the archive and reason names
 * fit in a directory entry. Throws when either step fails (then no reason file is left behind).
 */
export const moveToInvalid = (paths: ProjectPaths, name: string, reason: string, from: string | Buffer): string => {
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
}

const move = (claimed: ClaimedTrigger, dir: string, name: string, operation: string) =>
  Effect.try({
    try: () => moveNoClobber(claimed.file, dir, name),
    catch: storage(operation, claimed.file)
  })

/** `X.processing` back to `X.trigger`, or to a free variant when a same-name trigger arrived meanwhile; returns the new path. */
export const moveBack = (paths: ProjectPaths, claimed: ClaimedTrigger) =>
  move(claimed, paths.triggers, claimed.queued.name + SUFFIX, "requeueing")

/** `X.processing` to `processed/<stamp>-X.trigger`; returns the new path. */
export const moveToProcessed = (paths: ProjectPaths, claimed: ClaimedTrigger) =>
  move(claimed, paths.processed, `${archiveStamp(Date.now())}-${claimed.queued.name}${SUFFIX}`, "archiving")

/**
 * `X.processing` to `dead-letter/X.trigger` (or a free variant) with its meta file; returns the new path.
 * The meta file first: a reader never sees an entry without it, and a full disk fails before
 * anything moved (the trigger stays claimed and the move is tried again). A meta file whose
 * trigger is not there was left by a daemon killed between the two steps: the name is free, and
 * that meta is replaced.
 */
export const moveToDeadLetter = (paths: ProjectPaths, claimed: ClaimedTrigger, meta: DeadLetterMeta) =>
  Effect.gen(function*() {
    const to = yield* Effect.try({
      try: () => {
        fs.mkdirSync(paths.deadLetter, { recursive: true })
        return freeName(paths.deadLetter, claimed.queued.name + SUFFIX)
      },
      catch: storage("moving to the dead-letter queue", claimed.file)
    })
    yield* writeFileAtomic(`${to}.meta.json`, JSON.stringify(meta, null, 2) + "\n")
    yield* Effect.try({
      try: () => fs.renameSync(claimed.file, to),
      catch: (cause) => {
        fs.rmSync(`${to}.meta.json`, { force: true })
        return storage("moving to the dead-letter queue", claimed.file)(cause)
      }
    })
    return to
  })

/** Start-up recovery: every `X.processing` not `ours` back to `X.trigger` (or a free variant); returns their stems. */
export const requeueLeftClaims = (paths: ProjectPaths, ours: (stem: string) => boolean) =>
  Effect.try({
    try: () => fs.readdirSync(paths.triggers).filter((n) => n.endsWith(CLAIMED) && !ours(n.slice(0, -CLAIMED.length))),
    catch: storage("listing", paths.triggers)
  }).pipe(
    Effect.flatMap((names) =>
      Effect.forEach(names, (n) =>
        Effect.try({
          try: () => moveNoClobber(path.join(paths.triggers, n), paths.triggers, n.slice(0, -CLAIMED.length) + SUFFIX),
          catch: storage("requeueing", path.join(paths.triggers, n))
        }).pipe(Effect.as(n.slice(0, -CLAIMED.length))))
    )
  )
