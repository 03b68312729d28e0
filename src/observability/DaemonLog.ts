/**
 * The daemon log `C/logs/daemon.log` (contract §6): one line per event,
 * `[<UTC ISO-8601>] [<trace_id or empty>] <LEVEL>: <message>`.
 *
 * Every event is also an Effect log entry annotated with its level, agent and trace id, so an
 * embedding program sees the same events through its own logger.
 */
import * as fs from "node:fs"
import { Clock, Context, Effect, type Fiber, FiberRef, HashSet, Layer, LogLevel, PubSub, Ref, Stream } from "effect"
import { DaemonConfig, LOG_SEVERITIES, type LogSeverity } from "../config/DaemonConfig.js"
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
  | "STALLED"
  | "MEMORY"
  | "BUDGET"
  | "RESUME"
  | "WORKTREE"
  | "DASHBOARD"
  | "SCALE"
  | "PROGRESS"
  | "LIMIT"
  | "NOTIFY"
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
  /** The trigger's name without `.trigger`. */
  readonly trigger?: string | undefined
  /** The agent's process id, once it runs. */
  readonly pid?: number | null | undefined
  readonly attempt?: number | undefined
}

/** How much an event matters, for `STARFORGE_LOG_LEVEL`. */
export const severityOf = (level: EventLevel): LogSeverity => {
  switch (level) {
    case "ERROR":
      return "error"
    case "WARN":
    case "TIMEOUT":
    case "MEMORY":
    case "BUDGET":
    case "DLQ":
    case "INVALID":
      return "warn"
    default:
      return "info"
  }
}

/** True when an event of `level` passes the `threshold` severity. */
export const passes = (level: EventLevel, threshold: LogSeverity): boolean =>
  LOG_SEVERITIES.indexOf(severityOf(level)) >= LOG_SEVERITIES.indexOf(threshold)

/**
 * The same event as one JSON line (`STARFORGE_LOG_FORMAT=json`): every key always present,
 * null when the event has no such value.
 */
export const formatJsonLine = (ms: number, level: EventLevel, message: string, context?: EventContext) =>
  JSON.stringify({
    timestamp: new Date(ms).toISOString(),
    level,
    severity: severityOf(level),
    message,
    agent: context?.agent ?? null,
    trigger: context?.trigger ? `${context.trigger}.trigger` : null,
    trace_id: context?.traceId || null,
    pid: context?.pid ?? null,
    attempt: context?.attempt ?? null
  }) + "\n"

/** One daemon-log event as the dashboard's `/events` stream sends it (`event: log`). */
export interface LogEvent {
  /** UTC ISO-8601 with milliseconds. */
  readonly time: string
  readonly event: EventLevel
  readonly message: string
  readonly agent: string | null
}

export interface DaemonLogShape {
  readonly event: (level: EventLevel, message: string, context?: EventContext) => Effect.Effect<void>
  /**
   * Every event written from the moment of subscription on (those the log level lets through);
   * a subscriber that falls behind by more than `LOG_EVENTS_BUFFER` events loses the oldest.
   */
  readonly events: Stream.Stream<LogEvent>
}

/** How many events a slow subscriber of `events` may lag behind before it loses the oldest. */
export const LOG_EVENTS_BUFFER = 1024

/**
 * The hub behind `events`: publishing costs next to nothing while nobody subscribes (the
 * dashboard's event stream is the only subscriber, and only while a page is open).
 */
const eventHub = Effect.map(PubSub.sliding<LogEvent>(LOG_EVENTS_BUFFER), (hub) => ({
  publish: (ms: number, level: EventLevel, message: string, context: EventContext | undefined) =>
    PubSub.publish(hub, { time: new Date(ms).toISOString(), event: level, message, agent: context?.agent ?? null }),
  events: Stream.fromPubSub(hub)
}))

export const formatLine = (ms: number, level: EventLevel, message: string, traceId?: string | null) =>
  `[${new Date(ms).toISOString()}] [${withoutLineBreaks(traceId ?? "")}] ${level}: ${withoutLineBreaks(message)}\n`

const logLevelOf = (level: EventLevel): LogLevel.LogLevel =>
  level === "ERROR" ? LogLevel.Error : level === "WARN" ? LogLevel.Warning : LogLevel.Info

/**
 * Whether an Effect logger would take the event: there is one, and the event's level is not
 * below the minimum (the `starforge` command logs warnings and errors only). Checked first, so no
 * annotations are built for an event nobody takes.
 */
const wantedByLoggers = (fiber: Fiber.RuntimeFiber<unknown, unknown>, level: EventLevel): boolean =>
  HashSet.size(fiber.getFiberRef(FiberRef.currentLoggers)) > 0 &&
  !LogLevel.lessThan(logLevelOf(level), fiber.getFiberRef(FiberRef.currentMinimumLogLevel))

/** The event for Effect's loggers too (an embedding program's own), as structured annotations. */
const logWithAnnotations = (level: EventLevel, message: string, context: EventContext | undefined) =>
  Effect.logWithLevel(logLevelOf(level), message).pipe(
    Effect.annotateLogs({
      event: level,
      ...(context?.agent ? { agent: context.agent } : {}),
      ...(context?.trigger ? { trigger: context.trigger } : {}),
      ...(context?.traceId ? { trace_id: context.traceId } : {}),
      ...(context?.pid ? { pid: context.pid } : {}),
      ...(context?.attempt ? { attempt: context.attempt } : {})
    })
  )

/** A daemon-log line for people: JSON lines (`STARFORGE_LOG_FORMAT=json`) shown as text lines. */
export const displayLine = (line: string): string => {
  if (!line.startsWith("{")) return line
  try {
    const event = JSON.parse(line) as { timestamp: string; level: EventLevel; message: string; trace_id: string | null }
    return formatLine(Date.parse(event.timestamp), event.level, event.message, event.trace_id).trimEnd()
  } catch {
    return line
  }
}

export class DaemonLog extends Context.Tag("starforge/DaemonLog")<DaemonLog, DaemonLogShape>() {
  /**
   * Appends to `C/logs/daemon.log` in `STARFORGE_LOG_FORMAT` (text lines or JSON lines), the
   * events of `STARFORGE_LOG_LEVEL` and above; with `echo`, every line also goes to stderr
   * (foreground). A line that cannot be written is reported once as an Effect warning (the
   * `starforge` command prints it on stderr), never fatal.
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
        const hub = yield* eventHub
        let failing = false
        return {
          events: hub.events,
          // One step of the fiber, not a generator of several: every job logs several events.
          event: (level, message, context) =>
            passes(level, settings.logLevel)
              ? Effect.withFiberRuntime((fiber) => {
                const ms = Context.get(fiber.currentDefaultServices, Clock.Clock).unsafeCurrentTimeMillis()
                const line = settings.logFormat === "json"
                  ? formatJsonLine(ms, level, message, context)
                  : formatLine(ms, level, message, context?.traceId)
                let report: Effect.Effect<void> = Effect.void
                try {
                  file.write(line)
                  failing = false
                } catch (e) {
                  if (!failing) report = Effect.logWarning(`cannot write ${paths.daemonLog}: ${(e as Error).message}`)
                  failing = true
                }
                if (options.echo) process.stderr.write(line)
                const published = Effect.zipRight(hub.publish(ms, level, message, context), report)
                // Also to the program's Effect loggers, unless none would take it.
                return wantedByLoggers(fiber, level) ? Effect.zipRight(published, logWithAnnotations(level, message, context)) : published
              })
              : Effect.void
        }
      })
    )

  /** Keeps the lines in memory, for tests. */
  static readonly memory = Effect.gen(function*() {
    const lines = yield* Ref.make<ReadonlyArray<string>>([])
    const hub = yield* eventHub
    const layer = Layer.succeed(DaemonLog, {
      events: hub.events,
      event: (level, message, context) =>
        Clock.currentTimeMillis.pipe(
          Effect.tap((ms) => hub.publish(ms, level, message, context)),
          Effect.flatMap((ms) => Ref.update(lines, (all) => [...all, formatLine(ms, level, message, context?.traceId).trimEnd()]))
        )
    })
    return { layer, lines: Ref.get(lines) }
  })
}
