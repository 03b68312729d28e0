/**
 * Keeps the project's files bounded: every `LOG_MAINTENANCE_INTERVAL`, one pass
 * - gzips log files nobody writes any more (rotated parts, finished agent logs, the rotated parts of
 *   `history.jsonl` and `daemon.out`) once their last write is older than `LOG_COMPRESS_AFTER_HOURS`,
 *   and deletes them once older than `LOG_RETENTION_DAYS`;
 * - removes the `.gz.partial` files a compression killed midway left behind;
 * - rotates `daemon.out` (the background daemon's own stdout and stderr) once it reaches `LOG_MAX_SIZE_MB`;
 * - deletes archived triggers in `processed/` and `processed/invalid/` older than `PROCESSED_RETENTION_DAYS`.
 * Size-based rotation of the files the daemon writes itself happens at write time (`RotatingLogFile`).
 *
 * The pass runs in its own fiber and compresses with zlib streams, so it never holds up the
 * scheduler; a file it cannot handle is reported and tried again next time.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { pipeline } from "node:stream/promises"
import * as zlib from "node:zlib"
import { Clock, Duration, Effect, Layer, Schedule } from "effect"
import { DaemonConfig, type DaemonSettings } from "../config/DaemonConfig.js"
import type { ProjectPaths } from "../domain/ProjectPaths.js"
import { DaemonLog } from "../observability/DaemonLog.js"
import { isOpenForWriting, nextPart, partNumber } from "../logs/LogFile.js"
import { pruneArchive } from "./ArchivePruning.js"

/** `x.log` or a rotated part `x.log.N`, and the parts `daemon.out.N`, each possibly gzipped. */
const LOG_NAME = /(?:\.log(?:\.\d+)?|^daemon\.out\.\d+)(?:\.gz)?$/

/** A compression writes `x.gz.partial` and renames it to `x.gz` once complete. */
const TEMPORARY = ".partial"
const PARTIAL = `.gz${TEMPORARY}`

/** gzips `file` to `file.gz` (through a temporary name), keeps its mtime, removes `file`. */
const gzipFile = async (file: string, mtime: Date) => {
  const temporary = `${file}${PARTIAL}`
  try {
    await pipeline(fs.createReadStream(file), zlib.createGzip(), fs.createWriteStream(temporary, { flags: "wx" }))
    // Retention counts from the last write to the log, not from its compression.
    fs.utimesSync(temporary, mtime, mtime)
    fs.renameSync(temporary, `${file}.gz`)
    fs.rmSync(file)
  } catch (e) {
    fs.rmSync(temporary, { force: true })
    throw e
  }
}

/** Reads `fd` from `position` to its end. */
const readToEnd = (fd: number, position: number): Buffer => {
  const chunks: Array<Buffer> = []
  for (;;) {
    const chunk = Buffer.alloc(64 * 1024)
    const n = fs.readSync(fd, chunk, 0, chunk.length, position)
    if (n === 0) return Buffer.concat(chunks)
    chunks.push(chunk.subarray(0, n))
    position += n
  }
}

/**
 * Copies `file` to its next part and empties it; returns the part. For a file another process
 * keeps open in append mode, whose next write then lands at the start of the emptied file.
 */
const copyThenTruncate = async (file: string): Promise<string> => {
  const part = `${file}.${nextPart(file)}`
  await fs.promises.copyFile(file, part, fs.constants.COPYFILE_EXCL)
  const fd = fs.openSync(file, "r+")
  try {
    // What was appended during the copy goes to the part too: only a write between this read and the truncation is lost.
    const rest = readToEnd(fd, fs.statSync(part).size)
    if (rest.length > 0) fs.appendFileSync(part, rest)
    fs.ftruncateSync(fd, 0)
  } finally {
    fs.closeSync(fd)
  }
  return part
}

export interface MaintenanceResult {
  readonly compressed: ReadonlyArray<string>
  readonly deleted: ReadonlyArray<string>
  /** `.gz.partial` files of a compression that never finished. */
  readonly abandoned: ReadonlyArray<string>
  readonly failed: ReadonlyArray<string>
}

export interface MaintainOptions {
  readonly compressAfterMs: number
  readonly retentionMs: number
  /** Which files of `dir` are maintained; by default logs (`x.log`, `x.log.N`, `daemon.out.N`, gzipped or not). */
  readonly matches?: (name: string) => boolean
  /** A `.gz.partial` of a maintained file unchanged for this long is removed; by default never. */
  readonly abandonedAfterMs?: number
}

/** One pass over `dir` at `nowMs`; see the module comment. */
export const maintain = (dir: string, nowMs: number, options: MaintainOptions): Effect.Effect<MaintenanceResult> =>
  Effect.promise(async () => {
    const matches = options.matches ?? ((name: string) => LOG_NAME.test(name))
    const compressed: Array<string> = []
    const deleted: Array<string> = []
    const abandoned: Array<string> = []
    const failed: Array<string> = []
    let names: ReadonlyArray<string>
    try {
      names = fs.readdirSync(dir)
    } catch {
      return { compressed, deleted, abandoned, failed }
    }
    for (const name of names) {
      const partial = name.endsWith(PARTIAL)
      if (!matches(partial ? name.slice(0, -TEMPORARY.length) : name)) continue
      const file = path.join(dir, name)
      if (isOpenForWriting(file)) continue
      try {
        const stat = fs.lstatSync(file, { throwIfNoEntry: false })
        if (!stat?.isFile()) continue
        const age = nowMs - stat.mtimeMs
        if (partial) {
          // A compression in progress writes its partial file all the time; an old one was left by a crash.
          if (options.abandonedAfterMs !== undefined && age > options.abandonedAfterMs) {
            fs.rmSync(file)
            abandoned.push(name)
          }
        } else if (options.retentionMs > 0 && age > options.retentionMs) {
          fs.rmSync(file)
          deleted.push(name)
        } else if (options.compressAfterMs > 0 && age > options.compressAfterMs && !name.endsWith(".gz")) {
          await gzipFile(file, stat.mtime)
          compressed.push(name)
        }
      } catch {
        failed.push(name)
      }
    }
    return { compressed, deleted, abandoned, failed }
  })

/**
 * Moves the content of `daemon.out` to its next part once it has reached `maxBytes` (0: never);
 * returns the part's path. The running daemon holds the file open in append mode (`daemon start`
 * opened it), so it is copied and then emptied rather than renamed: a write between the copy and
 * the truncation can be lost.
 */
export const rotateDaemonOut = (paths: ProjectPaths, maxBytes: number): Effect.Effect<string | undefined, Error> =>
  Effect.tryPromise({
    try: async () => {
      const file = paths.daemonOut
      const stat = fs.lstatSync(file, { throwIfNoEntry: false })
      if (maxBytes <= 0 || !stat?.isFile() || stat.size < maxBytes) return undefined
      return await copyThenTruncate(file)
    },
    catch: (e) => (e instanceof Error ? e : new Error(String(e)))
  })

export interface PassResult {
  readonly logs: MaintenanceResult
  readonly history: MaintenanceResult
  /** The part `daemon.out` was copied to, when it was rotated. */
  readonly daemonOut: string | undefined
  readonly daemonOutError: string | undefined
  readonly archive: { readonly removed: number; readonly failed: ReadonlyArray<string> }
}

type PassSettings = Pick<
  DaemonSettings,
  "logMaxBytes" | "logCompressAfterMs" | "logRetentionMs" | "logMaintenanceIntervalMs" | "processedRetentionMs"
>

/** One whole maintenance pass of the project at `nowMs`; see the module comment. */
export const maintenancePass = (paths: ProjectPaths, settings: PassSettings, nowMs: number): Effect.Effect<PassResult> =>
  Effect.gen(function*() {
    const rotated = yield* Effect.either(rotateDaemonOut(paths, settings.logMaxBytes))
    const options = {
      compressAfterMs: settings.logCompressAfterMs,
      retentionMs: settings.logRetentionMs,
      // A partial file older than one pass belongs to no pass that still runs.
      abandonedAfterMs: settings.logMaintenanceIntervalMs
    }
    const logs = yield* maintain(paths.logs, nowMs, options)
    const historyName = path.basename(paths.historyFile)
    const history = yield* maintain(path.dirname(paths.historyFile), nowMs, {
      ...options,
      matches: (name) => partNumber(historyName, name) !== undefined
    })
    const archive = settings.processedRetentionMs > 0
      ? yield* pruneArchive([paths.processed, paths.invalid], nowMs, settings.processedRetentionMs)
      : { removed: 0, failed: [] }
    return {
      logs,
      history,
      daemonOut: rotated._tag === "Right" ? rotated.right : undefined,
      daemonOutError: rotated._tag === "Left" ? rotated.left.message : undefined,
      archive
    }
  })

/** At most this many file names in one warning. */
const NAMES_SHOWN = 5
const someNames = (names: ReadonlyArray<string>) =>
  names.slice(0, NAMES_SHOWN).join(", ") + (names.length > NAMES_SHOWN ? ` and ${names.length - NAMES_SHOWN} more` : "")

/** `ms` as a number of days for a log line: `30 days`, `0.5 days`, `1 day`. */
const daysText = (ms: number) => {
  const days = Math.round((ms / 86_400_000) * 1000) / 1000
  return `${days} day${days === 1 ? "" : "s"}`
}

/** The periodic pass of a running daemon. */
export const layer = Layer.scopedDiscard(
  Effect.gen(function*() {
    const { paths, settings } = yield* DaemonConfig
    const log = yield* DaemonLog
    const relative = (file: string) => path.relative(paths.root, file)
    const pass = Effect.gen(function*() {
      const result = yield* maintenancePass(paths, settings, yield* Clock.currentTimeMillis)
      for (const [dir, r] of [[paths.logs, result.logs], [path.dirname(paths.historyFile), result.history]] as const) {
        if (r.compressed.length > 0 || r.deleted.length > 0) {
          yield* log.event("LOGS", `Compressed ${r.compressed.length} and deleted ${r.deleted.length} old log file(s) in ${relative(dir)}`)
        }
        if (r.abandoned.length > 0) {
          yield* log.event("LOGS", `Removed ${someNames(r.abandoned)} in ${relative(dir)}, left by a compression that never finished`)
        }
        if (r.failed.length > 0) yield* log.event("WARN", `Could not compress or delete ${someNames(r.failed)}; will try again`)
      }
      if (result.daemonOut !== undefined) {
        yield* log.event("LOGS", `${relative(paths.daemonOut)} reached LOG_MAX_SIZE_MB: copied to ${path.basename(result.daemonOut)} and emptied`)
      }
      if (result.daemonOutError !== undefined) {
        yield* log.event("WARN", `Could not rotate ${relative(paths.daemonOut)}: ${result.daemonOutError}; will try again`)
      }
      if (result.archive.removed > 0) {
        yield* log.event(
          "LOGS",
          `Removed ${result.archive.removed} archived trigger(s) older than ${daysText(settings.processedRetentionMs)} from ${relative(paths.processed)}`
        )
      }
      if (result.archive.failed.length > 0) {
        yield* log.event("WARN", `Could not remove the archived ${someNames(result.archive.failed)}; will try again`)
      }
    }).pipe(
      // A pass that breaks is reported; the next one runs all the same.
      Effect.catchAllDefect((defect) =>
        log.event("WARN", `Maintenance pass failed: ${defect instanceof Error ? defect.message : String(defect)}; will try again`)),
      Effect.withSpan("LogMaintenance.pass")
    )
    yield* pass.pipe(
      Effect.repeat(Schedule.spaced(Duration.millis(settings.logMaintenanceIntervalMs))),
      Effect.forkScoped
    )
  })
)
