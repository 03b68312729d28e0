/**
 * The daemon log `C/logs/daemon.log` (contract §6): one line per event,
 * `[<UTC ISO-8601>] [<trace_id or empty>] <LEVEL>: <message>`.
 *
 * Every event is also an Effect log entry annotated with its level, agent and trace id, so an
 * embedding program sees the same events through its own logger.
 */
import * as fs from "node:fs"
import { Clock, Context, Effect, Layer, Ref } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { StorageError } from "../domain/errors.js"
import { withoutLineBreaks } from "../domain/text.js"
import { RotatingLogFile } from "../logs/LogFile.js"

export type EventLevel =
  | "START"
  | "MODE"
  | "CONFIG"
  | "RECOVERY"
  | "QUEUE"
  | "SPAWNED"
  | "FINISH"
  | "RETRY"
  | "TIMEOUT"
  | "DLQ"
  | "INVALID"
  | "ORCHESTRATOR"
  | "MONITOR"
  | "LOGS"
  | "WARN"
  | "ERROR"
  | "STOP"

export interface EventContext {
  readonly traceId?: string | null | undefined
  readonly agent?: string | undefined
  readonly trigger?: string | undefined
}

export interface DaemonLogShape {
  readonly event: (level: EventLevel, message: string, context?: EventContext) => Effect.Effect<void>
}

export const formatLine = (ms: number, level: EventLevel, message: string, traceId?: string | null) =>
  `[${new Date(ms).toISOString()}] [${withoutLineBreaks(traceId ?? "")}] ${level}: ${withoutLineBreaks(message)}\n`

const toEffectLog = (level: EventLevel, message: string, context: EventContext | undefined) => {
  const log = level === "ERROR" ? Effect.logError(message) : level === "WARN" ? Effect.logWarning(message) : Effect.logInfo(message)
  return log.pipe(
    Effect.annotateLogs({
      event: level,
      ...(context?.agent ? { agent: context.agent } : {}),
      ...(context?.trigger ? { trigger: context.trigger } : {}),
      ...(context?.traceId ? { trace_id: context.traceId } : {})
    })
  )
}

export class DaemonLog extends Context.Tag("starforge/DaemonLog")<DaemonLog, DaemonLogShape>() {
  /**
   * Appends to `C/logs/daemon.log`; with `echo`, every line also goes to stderr (foreground).
   * A line that cannot be written is reported on stderr once, never fatal.
   */
  static readonly layer = (options: { readonly echo: boolean }) =>
    Layer.scoped(
      DaemonLog,
      Effect.gen(function*() {
        const { paths, settings } = yield* DaemonConfig
        const file = yield* Effect.acquireRelease(
          Effect.try({
            try: () => {
              fs.mkdirSync(paths.logs, { recursive: true })
              return new RotatingLogFile(paths.daemonLog, settings.logMaxBytes)
            },
            catch: (cause) => new StorageError({ operation: "opening", path: paths.daemonLog, cause })
          }),
          (file) => Effect.sync(() => file.close())
        )
        let failing = false
        return {
          event: (level, message, context) =>
            Effect.gen(function*() {
              const line = formatLine(yield* Clock.currentTimeMillis, level, message, context?.traceId)
              try {
                file.write(line)
                failing = false
              } catch (e) {
                if (!failing) process.stderr.write(`starforge: cannot write ${paths.daemonLog}: ${(e as Error).message}\n`)
                failing = true
              }
              if (options.echo) process.stderr.write(line)
              yield* toEffectLog(level, message, context)
            })
        }
      })
    )

  /** Keeps the lines in memory, for tests. */
  static readonly memory = Effect.gen(function*() {
    const lines = yield* Ref.make<ReadonlyArray<string>>([])
    const layer = Layer.succeed(DaemonLog, {
      event: (level, message, context) =>
        Clock.currentTimeMillis.pipe(
          Effect.flatMap((ms) => Ref.update(lines, (all) => [...all, formatLine(ms, level, message, context?.traceId).trimEnd()]))
        )
    })
    return { layer, lines: Ref.get(lines) }
  })
}
