/**
 * `PROCESSED_RETENTION_DAYS`: archived triggers (`processed/…` and `processed/invalid/…`) whose
 * file was last changed longer ago are deleted with their side files, so the archive does not
 * grow for ever. The dead-letter queue is never pruned: its triggers wait for a person.
 *
 * Directories are read as a stream and files removed through the thread pool, so an archive of
 * millions of files never holds up the daemon's main thread.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect } from "effect"

const TRIGGER = ".trigger"
/** The files written beside an archived `X.trigger` (the reason of an invalid one), removed with it. */
const SIDE_FILES = [".reason.txt", ".meta.json"] as const

export interface PruneResult {
  /** Archived triggers removed. */
  readonly removed: number
  readonly failed: ReadonlyArray<string>
}

const gone = (e: unknown) => (e as NodeJS.ErrnoException).code === "ENOENT"

/** Prunes one directory into `result`; throws when the directory cannot be read to its end. */
const pruneDir = async (dir: string, nowMs: number, retentionMs: number, result: { removed: number; failed: Array<string> }) => {
  for await (const entry of await fs.promises.opendir(dir)) {
    if (entry.isDirectory()) continue
    const name = entry.name
    const isTrigger = name.endsWith(TRIGGER)
    const side = isTrigger ? undefined : SIDE_FILES.find((s) => name.endsWith(TRIGGER + s))
    if (!isTrigger && side === undefined) continue
    const file = path.join(dir, name)
    try {
      const stat = await fs.promises.lstat(file)
      if (!stat.isFile() || !(nowMs - stat.mtimeMs > retentionMs)) continue
      if (isTrigger) {
        await fs.promises.rm(file)
        result.removed++
        for (const s of SIDE_FILES) await fs.promises.rm(file + s, { force: true })
      } else if (await fs.promises.lstat(file.slice(0, -side!.length)).then(() => false, gone)) {
        await fs.promises.rm(file)
      }
    } catch (e) {
      // Removed meanwhile (a side file of a trigger removed above) is what was wanted.
      if (!gone(e)) result.failed.push(path.relative(path.dirname(dir), file))
    }
  }
}

/**
 * Deletes from each of `dirs` (not from their subdirectories) every `X.trigger` last modified more
 * than `retentionMs` before `nowMs`, with its side files, and side files as old whose trigger is gone.
 * An archived trigger keeps the modification time of the file that was dropped in the queue.
 */
export const pruneArchive = (dirs: ReadonlyArray<string>, nowMs: number, retentionMs: number): Effect.Effect<PruneResult> =>
  Effect.promise(async () => {
    const result = { removed: 0, failed: [] as Array<string> }
    for (const dir of dirs) {
      try {
        await pruneDir(dir, nowMs, retentionMs, result)
      } catch (e) {
        // A directory that is not there has nothing to prune; one that fails midway is taken up again next pass.
        if (!gone(e)) result.failed.push(`${path.basename(dir)}/`)
      }
    }
    return result
  })
