/**
 * Keeps `C/logs` bounded: every `LOG_MAINTENANCE_INTERVAL`, log files nobody writes any more
 * (rotated parts, finished agent logs) are gzipped once their last write is older than
 * `LOG_COMPRESS_AFTER_HOURS`, and deleted once older than `LOG_RETENTION_DAYS`. Size-based
 * rotation happens at write time (`RotatingLogFile`), so it needs no schedule.
 *
 * The pass runs in its own fiber and compresses with zlib streams, so it never holds up the
 * scheduler; a file it cannot handle is reported and tried again next time.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { pipeline } from "node:stream/promises"
import * as zlib from "node:zlib"
import { Clock, Duration, Effect, Layer, Schedule } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { DaemonLog } from "../observability/DaemonLog.js"
import { isOpenForWriting } from "../logs/LogFile.js"

/** `x.log` or a rotated part `x.log.N`, each possibly gzipped. */
const LOG_NAME = /\.log(?:\.\d+)?(?:\.gz)?$/

export interface MaintenanceResult {
  readonly compressed: ReadonlyArray<string>
  readonly deleted: ReadonlyArray<string>
  readonly failed: ReadonlyArray<string>
}

/** gzips `file` to `file.gz` (through a temporary name), keeps its mtime, removes `file`. */
const gzipFile = async (file: string, mtime: Date) => {
  const temporary = `${file}.gz.partial`
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

/** One pass over `dir` at `nowMs`; see the module comment. */
export const maintain = (
  dir: string,
  nowMs: number,
  options: { readonly compressAfterMs: number; readonly retentionMs: number }
): Effect.Effect<MaintenanceResult> =>
  Effect.promise(async () => {
    const compressed: Array<string> = []
    const deleted: Array<string> = []
    const failed: Array<string> = []
    let names: ReadonlyArray<string>
    try {
      names = fs.readdirSync(dir)
    } catch {
      return { compressed, deleted, failed }
    }
    for (const name of names) {
      if (!LOG_NAME.test(name)) continue
      const file = path.join(dir, name)
      if (isOpenForWriting(file)) continue
      const stat = fs.lstatSync(file, { throwIfNoEntry: false })
      if (!stat?.isFile()) continue
      const age = nowMs - stat.mtimeMs
      try {
        if (options.retentionMs > 0 && age > options.retentionMs) {
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
    return { compressed, deleted, failed }
  })

/** The periodic pass of a running daemon. */
export const layer = Layer.scopedDiscard(
  Effect.gen(function*() {
    const { paths, settings } = yield* DaemonConfig
    const log = yield* DaemonLog
    if (settings.logCompressAfterMs === 0 && settings.logRetentionMs === 0) return
    const pass = Effect.gen(function*() {
      const result = yield* maintain(paths.logs, yield* Clock.currentTimeMillis, {
        compressAfterMs: settings.logCompressAfterMs,
        retentionMs: settings.logRetentionMs
      })
      if (result.compressed.length > 0 || result.deleted.length > 0) {
        yield* log.event(
          "LOGS",
          `Compressed ${result.compressed.length} and deleted ${result.deleted.length} old log file(s) in ${path.relative(paths.root, paths.logs)}`
        )
      }
      if (result.failed.length > 0) yield* log.event("WARN", `Could not compress or delete ${result.failed.join(", ")}; will try again`)
    }).pipe(Effect.withSpan("LogMaintenance.pass"))
    yield* pass.pipe(
      Effect.repeat(Schedule.spaced(Duration.millis(settings.logMaintenanceIntervalMs))),
      Effect.forkScoped
    )
  })
)
