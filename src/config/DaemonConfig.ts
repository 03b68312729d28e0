/**
 * The validated configuration (contract §2), built once. Sources, highest precedence first:
 * command-line flags, the process environment, `P/.env`, `C/config/daemon.conf`, defaults.
 * Both files are parsed as literal `KEY=VALUE` text, never executed.
 */
import { Config, ConfigError, ConfigProvider, Context, Effect, Either, Layer } from "effect"
import { ConfigInvalid } from "../domain/errors.js"
import { type ProjectPaths, projectPaths } from "../domain/ProjectPaths.js"
import { readRegularFile } from "../io/regularFile.js"
import { type EnvFile, parseEnvFile } from "./envFile.js"
import { splitShellWords } from "./shellWords.js"

export const DEFAULT_AGENT_COMMAND =
  "claude --print --permission-mode bypassPermissions --output-format stream-json --verbose"

export interface DaemonSettings {
  readonly parallel: boolean
  readonly maxConcurrent: number
  readonly monitorIntervalMs: number
  readonly agentTimeoutMs: number
  readonly killGraceMs: number
  readonly maxRetries: number
  readonly initialRetryDelayMs: number
  /** `AGENT_COMMAND` split into words (never run through a shell). */
  readonly agentCommand: ReadonlyArray<string>
  readonly orchestratorIntervalMs: number
  /** Size at which a log file is rotated; 0 never rotates. */
  readonly logMaxBytes: number
  /** Age (since the last write) after which a rotated or finished log is gzipped; 0 never. */
  readonly logCompressAfterMs: number
  /** Age after which a log file is deleted; 0 keeps logs forever. */
  readonly logRetentionMs: number
  /** Time between two maintenance passes (compress and delete old logs, rotate `daemon.out`, prune `processed/`). */
  readonly logMaintenanceIntervalMs: number
  /** Age (since the file's last change) after which an archived trigger in `processed/` is deleted; 0 keeps them all. */
  readonly processedRetentionMs: number
  readonly logFormat: "text" | "json"
  /** The lowest severity written to the daemon log. */
  readonly logLevel: LogSeverity
  /** `OTEL_EXPORTER_OTLP_ENDPOINT`: where spans go over OTLP/HTTP; empty exports nothing. */
  readonly otlpEndpoint: string
  /** Silence (no output at all) after which a running agent is stopped as stalled; 0 disables. */
  readonly agentStallTimeoutMs: number
  /** Period of the `PROGRESS` log line (and notification) per running agent; 0 disables. */
  readonly progressIntervalMs: number
  /** First pause after a usage limit that names no reset time; doubles with each such limit in a row. */
  readonly usageLimitCooldownMs: number
  /** Discord webhook for every agent without its own (`DISCORD_WEBHOOK_<AGENT>`); null: none. */
  readonly discordWebhookUrl: string | null
  /** Generic webhook: every notification as a plain JSON POST; null: none. */
  readonly notifyWebhookUrl: string | null
  /** `DISCORD_WEBHOOK_<AGENT>` URLs by `<AGENT>` (see `agentVariableSuffix`). */
  readonly discordAgentWebhooks: Readonly<Record<string, string>>
  /** Time between two samples of every running agent's CPU and memory; 0 disables sampling. */
  readonly resourceSampleIntervalMs: number
  /** An agent whose tree stays above this many bytes for two samples is stopped; 0: no limit. */
  readonly agentMaxMemoryBytes: number
  /** The effective cap never drops below this (dynamic scaling). */
  readonly minConcurrent: number
  /** Load average per core above which no new agent starts; 0: not watched. */
  readonly scaleMaxLoad: number
  /** Available memory under which no new agent starts (and under half of it the youngest stops); 0: not watched. */
  readonly scaleMinFreeMemoryBytes: number
  /** At most one change of the effective cap per this long; a rise needs this long under the thresholds. */
  readonly scaleIntervalMs: number
}

export const LOG_SEVERITIES = ["debug", "info", "warn", "error"] as const
export type LogSeverity = (typeof LOG_SEVERITIES)[number]

/** `junior-dev-a` → `JUNIOR_DEV_A`: the agent's part of `DISCORD_WEBHOOK_<AGENT>`. */
export const agentVariableSuffix = (agent: string): string => agent.toUpperCase().replace(/[-.]/g, "_")

/** The prefix of the per-agent Discord webhooks. */
export const AGENT_WEBHOOK_PREFIX = "DISCORD_WEBHOOK_"

/** The variables, their defaults and the form each takes; the single source for docs and errors. */
export const VARIABLES = {
  PARALLEL_DAEMON: { default: "false", form: "true or false" },
  MAX_CONCURRENT_AGENTS: { default: "999", form: "a whole number of at least 1" },
  PROCESS_MONITOR_INTERVAL: { default: "10", form: "a number of seconds of at least 0.001" },
  AGENT_TIMEOUT: { default: "1800", form: "a number of seconds of at least 0.001" },
  AGENT_KILL_GRACE: { default: "10", form: "a number of seconds, 0 or more" },
  MAX_RETRIES: { default: "3", form: "a whole number of attempts of at least 1" },
  INITIAL_RETRY_DELAY: { default: "5", form: "a number of seconds, 0 or more" },
  AGENT_COMMAND: { default: DEFAULT_AGENT_COMMAND, form: "a command line such as 'claude --print'" },
  ORCHESTRATOR_INTERVAL: { default: "60", form: "a number of seconds, 0 or more (0 disables it)" },
  LOG_MAX_SIZE_MB: { default: "100", form: "a number of megabytes, 0 or more (0 never rotates)" },
  LOG_COMPRESS_AFTER_HOURS: { default: "24", form: "a number of hours, 0 or more (0 never compresses)" },
  LOG_RETENTION_DAYS: { default: "7", form: "a number of days, 0 or more (0 keeps logs forever)" },
  LOG_MAINTENANCE_INTERVAL: { default: "600", form: "a number of seconds of at least 0.001" },
  PROCESSED_RETENTION_DAYS: { default: "30", form: "a number of days, 0 or more (0 keeps every archived trigger)" },
  STARFORGE_LOG_FORMAT: { default: "text", form: "text or json" },
  STARFORGE_LOG_LEVEL: { default: "info", form: "debug, info, warn or error" },
  OTEL_EXPORTER_OTLP_ENDPOINT: { default: "", form: "an http:// or https:// URL such as http://localhost:4318, or empty" },
  AGENT_STALL_TIMEOUT: { default: "600", form: "a number of seconds, 0 or more (0 disables it)" },
  PROGRESS_INTERVAL: { default: "300", form: "a number of seconds, 0 or more (0 disables it)" },
  USAGE_LIMIT_COOLDOWN: { default: "300", form: "a number of seconds of at least 0.001" },
  DISCORD_WEBHOOK_URL: { default: "", form: "an http:// or https:// URL (or empty for none)" },
  NOTIFY_WEBHOOK_URL: { default: "", form: "an http:// or https:// URL (or empty for none)" },
  RESOURCE_SAMPLE_INTERVAL: { default: "5", form: "a number of seconds, 0 or more (0 disables sampling)" },
  AGENT_MAX_MEMORY_MB: { default: "0", form: "a number of megabytes, 0 or more (0 sets no limit)" },
  MIN_CONCURRENT_AGENTS: { default: "1", form: "a whole number of at least 1, at most MAX_CONCURRENT_AGENTS" },
  SCALE_MAX_LOAD: { default: "0", form: "a load average per core such as 1.5, 0 or more (0 does not watch the load)" },
  SCALE_MIN_FREE_MEMORY_MB: { default: "0", form: "a number of megabytes, 0 or more (0 does not watch memory)" },
  SCALE_INTERVAL: { default: "30", form: "a number of seconds of at least 0.001" }
} as const
export type VariableName = keyof typeof VARIABLES

export interface DaemonConfigShape {
  readonly paths: ProjectPaths
  readonly settings: DaemonSettings
  /** Lines of `.env` / `daemon.conf` that were ignored, for the daemon log. */
  readonly warnings: ReadonlyArray<string>
}

export class DaemonConfig extends Context.Tag("starforge/DaemonConfig")<DaemonConfig, DaemonConfigShape>() {
  /** Loads and validates the configuration of a project. */
  static readonly layer = (options: LoadOptions) => Layer.effect(DaemonConfig, load(options))
  /** A configuration given in full, for tests and embedding. */
  static readonly layerSettings = (project: string, settings: Partial<DaemonSettings> = {}) =>
    Layer.succeed(DaemonConfig, {
      paths: projectPaths(project),
      settings: { ...defaultSettings, ...settings },
      warnings: []
    })
}

export interface LoadOptions {
  readonly project: string
  /** `KEY=VALUE` pairs from command-line flags. */
  readonly flags?: Readonly<Record<string, string>>
  /** Defaults to `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>>
}

const FIX_IT = "Fix it in the environment, .env or .claude/config/daemon.conf"

const invalid = (name: VariableName, value: string) =>
  ConfigError.InvalidData([name], `${name}=${JSON.stringify(value)} is not valid: expected ${VARIABLES[name].form}. ${FIX_IT}`)

/** `parse` turns the text into a value (undefined: not of the variable's form); `check` may still refuse it with a reason. */
const variable = <A>(name: VariableName, parse: (text: string) => A | undefined, check?: (value: A) => string | undefined) =>
  Config.string(name).pipe(
    Config.withDefault(VARIABLES[name].default),
    Config.mapOrFail((raw) => {
      const parsed = parse(raw.trim())
      if (parsed === undefined) return Either.left(invalid(name, raw))
      const refused = check?.(parsed)
      return refused === undefined
        ? Either.right(parsed)
        : Either.left(ConfigError.InvalidData([name], `${name}=${raw.trim()} ${refused}. ${FIX_IT}`))
    })
  )

/** The longest delay a timer holds (Node's `setTimeout`, and Effect's sleeps through it); a longer one never fires. */
export const MAX_TIMER_MS = 2 ** 31 - 1

/** `ms` as seconds, with at most 3 decimals. */
const secondsText = (ms: number) => String(Math.floor(ms) / 1000)
/** `ms` as days, rounded down to one decimal: a bound never reads larger than it is. */
const daysText = (ms: number) => String(Math.floor(ms / 8_640_000) / 10)
const TIMER_LIMIT = `timers hold at most ${secondsText(MAX_TIMER_MS)} seconds (${daysText(MAX_TIMER_MS)} days)`

/**
 * A number of seconds used as a timer's delay, at most `maxMs`: a longer one would never fire. `why`
 * explains a bound below `MAX_TIMER_MS` (the value also feeds a longer timer).
 */
const timer = (name: VariableName, min: "zero" | "positive", maxMs = MAX_TIMER_MS, why?: string) =>
  variable(name, seconds(min), (ms) =>
    ms <= maxMs
      ? undefined
      : why === undefined
      ? `is too long: ${TIMER_LIMIT}`
      : `is too long: it can be at most ${secondsText(maxMs)} seconds (${daysText(maxMs)} days), since ${why}, and ${TIMER_LIMIT}`)

/** `daemon start` waits this long plus twice the kill grace for a new daemon to report ready. */
const START_WAIT_MS = 60_000
const MAX_KILL_GRACE_MS = Math.floor((MAX_TIMER_MS - START_WAIT_MS) / 2)

/**
 * The wait before the last attempt, `INITIAL_RETRY_DELAY` doubled once per retry before it, must
 * fit in a timer too, or the trigger would wait for ever; the message gives the largest value of each.
 */
const retriesFit = (s: DaemonSettings): Either.Either<DaemonSettings, ConfigError.ConfigError> => {
  const doublings = Math.max(0, s.maxRetries - 2)
  if (s.initialRetryDelayMs === 0 || s.initialRetryDelayMs * 2 ** doublings <= MAX_TIMER_MS) return Either.right(s)
  const initial = secondsText(s.initialRetryDelayMs)
  const largestDelay = secondsText(Math.floor(MAX_TIMER_MS / 2 ** doublings))
  const largestRetries = 2 + Math.floor(Math.log2(MAX_TIMER_MS / s.initialRetryDelayMs))
  return Either.left(ConfigError.InvalidData(
    ["INITIAL_RETRY_DELAY"],
    `INITIAL_RETRY_DELAY=${initial} is too long for MAX_RETRIES=${s.maxRetries}: the wait before the last attempt is ` +
      `${initial} seconds doubled ${doublings} times, and ${TIMER_LIMIT}; with MAX_RETRIES=${s.maxRetries}, ` +
      `INITIAL_RETRY_DELAY can be at most ${largestDelay} seconds, or with INITIAL_RETRY_DELAY=${initial}, MAX_RETRIES at most ${largestRetries}. ${FIX_IT}`
  ))
}

const DECIMAL = /^\d+(\.\d+)?$/
const seconds = (min: "zero" | "positive") => (text: string) => {
  if (!DECIMAL.test(text)) return undefined
  const ms = Math.round(Number(text) * 1000)
  return min === "positive" && ms <= 0 ? undefined : ms
}
const wholeNumber = (text: string) => (/^\d+$/.test(text) && Number(text) >= 1 ? Number(text) : undefined)
const boolean = (text: string) => {
  const t = text.toLowerCase()
  return ["true", "1", "yes", "on"].includes(t) ? true : ["false", "0", "no", "off", ""].includes(t) ? false : undefined
}
/** A decimal amount of `unit` milliseconds, 0 or more. */
const amount = (unitMs: number) => (text: string) => (DECIMAL.test(text) ? Math.round(Number(text) * unitMs) : undefined)
const oneOf = <const T extends string>(values: ReadonlyArray<T>) => (text: string): T | undefined =>
  values.find((v) => v === text.toLowerCase())
const httpUrl = (text: string) => {
  if (text === "") return ""
  try {
    const url = new URL(text)
    return url.protocol === "http:" || url.protocol === "https:" ? text : undefined
  } catch {
    return undefined
  }
}
/** An http(s) URL; empty is "none" (null). */
const webhookUrl = (text: string): string | null | undefined => {
  const url = httpUrl(text)
  return url === "" ? null : url
}
const commandLine = (text: string) => {
  const words = splitShellWords(text)
  // No argument can carry a NUL byte: such a command could never start (a `.env` can hold one).
  return Either.isRight(words) && words.right.length > 0 && !text.includes("\0") ? words.right : undefined
}

const settingsConfig: Config.Config<DaemonSettings> = Config.all({
  parallel: variable("PARALLEL_DAEMON", boolean),
  maxConcurrent: variable("MAX_CONCURRENT_AGENTS", wholeNumber),
  monitorIntervalMs: timer("PROCESS_MONITOR_INTERVAL", "positive"),
  agentTimeoutMs: timer("AGENT_TIMEOUT", "positive"),
  killGraceMs: timer("AGENT_KILL_GRACE", "zero", MAX_KILL_GRACE_MS, `'daemon start' waits ${START_WAIT_MS / 1000} seconds plus twice the grace for the daemon to be ready`),
  maxRetries: variable("MAX_RETRIES", wholeNumber),
  initialRetryDelayMs: timer("INITIAL_RETRY_DELAY", "zero"),
  agentCommand: variable("AGENT_COMMAND", commandLine),
  orchestratorIntervalMs: timer("ORCHESTRATOR_INTERVAL", "zero"),
  logMaxBytes: variable("LOG_MAX_SIZE_MB", amount(1024 * 1024)),
  // Ages compared with files' mtimes, never a timer's delay: any length is fine.
  logCompressAfterMs: variable("LOG_COMPRESS_AFTER_HOURS", amount(3_600_000)),
  logRetentionMs: variable("LOG_RETENTION_DAYS", amount(86_400_000)),
  logMaintenanceIntervalMs: timer("LOG_MAINTENANCE_INTERVAL", "positive"),
  // An age too, like the two above.
  processedRetentionMs: variable("PROCESSED_RETENTION_DAYS", amount(86_400_000)),
  logFormat: variable("STARFORGE_LOG_FORMAT", oneOf(["text", "json"] as const)),
  logLevel: variable("STARFORGE_LOG_LEVEL", oneOf(LOG_SEVERITIES)),
  otlpEndpoint: variable("OTEL_EXPORTER_OTLP_ENDPOINT", httpUrl),
  agentStallTimeoutMs: timer("AGENT_STALL_TIMEOUT", "zero"),
  progressIntervalMs: timer("PROGRESS_INTERVAL", "zero"),
  // Not bounded like the timers: the pause it starts is capped at 6 hours (`MAX_COOLDOWN_MS`).
  usageLimitCooldownMs: variable("USAGE_LIMIT_COOLDOWN", seconds("positive")),
  discordWebhookUrl: variable("DISCORD_WEBHOOK_URL", webhookUrl),
  notifyWebhookUrl: variable("NOTIFY_WEBHOOK_URL", webhookUrl),
  discordAgentWebhooks: Config.succeed({}),
  resourceSampleIntervalMs: timer("RESOURCE_SAMPLE_INTERVAL", "zero"),
  agentMaxMemoryBytes: variable("AGENT_MAX_MEMORY_MB", amount(1024 * 1024)),
  minConcurrent: variable("MIN_CONCURRENT_AGENTS", wholeNumber),
  scaleMaxLoad: variable("SCALE_MAX_LOAD", (text) => (DECIMAL.test(text) ? Number(text) : undefined)),
  scaleMinFreeMemoryBytes: variable("SCALE_MIN_FREE_MEMORY_MB", amount(1024 * 1024)),
  // Compared with elapsed time; the checks run at most 5 s apart, so no timer waits this long.
  scaleIntervalMs: variable("SCALE_INTERVAL", seconds("positive"))
}).pipe(
  Config.mapOrFail(retriesFit),
  Config.validate({
    message: "MIN_CONCURRENT_AGENTS is above MAX_CONCURRENT_AGENTS: lower it, or raise MAX_CONCURRENT_AGENTS. " +
      "Fix it in the environment, .env or .claude/config/daemon.conf",
    validation: (s) => s.minConcurrent <= s.maxConcurrent
  }),
  Config.validate({
    message: "AGENT_MAX_MEMORY_MB needs the samples it is checked against, but RESOURCE_SAMPLE_INTERVAL is 0: " +
      "set RESOURCE_SAMPLE_INTERVAL above 0, or AGENT_MAX_MEMORY_MB to 0. Fix it in the environment, .env or .claude/config/daemon.conf",
    validation: (s) => s.agentMaxMemoryBytes === 0 || s.resourceSampleIntervalMs > 0
  })
)

export const defaultSettings: DaemonSettings = Effect.runSync(
  Effect.withConfigProvider(settingsConfig, ConfigProvider.fromMap(new Map()))
)

/** Far beyond any real settings file; a larger one is not read. */
const MAX_SETTINGS_FILE_BYTES = 1024 * 1024

/** A settings file's values; one that cannot be read (or would block, like a FIFO) is skipped with a warning. */
const readKeyValueFile = (file: string, label: string): EnvFile => {
  const skipped = (why: string): EnvFile => ({ values: new Map(), warnings: [`${label} ${why}; its settings were ignored`] })
  try {
    const read = readRegularFile(file, { maxBytes: MAX_SETTINGS_FILE_BYTES, followSymlinks: true })
    switch (read._tag) {
      case "Gone":
        return { values: new Map(), warnings: [] }
      case "NotRegular":
        return skipped(`is ${read.kind}, not a regular file`)
      case "TooLarge":
        return skipped(`is ${read.size} bytes, over the ${MAX_SETTINGS_FILE_BYTES} byte limit`)
      case "Read":
        return parseEnvFile(Buffer.from(read.bytes).toString("utf8"), label)
    }
  } catch (e) {
    return skipped(`could not be read (${(e as NodeJS.ErrnoException).code ?? String(e)})`)
  }
}

/** Builds the configuration; every bad value becomes one `ConfigInvalid` naming the variable. */
export const load = Effect.fn("DaemonConfig.load")(function*(options: LoadOptions) {
  const paths = projectPaths(options.project)
  const dotEnv = readKeyValueFile(paths.envFile, ".env")
  const conf = readKeyValueFile(paths.configFile, ".claude/config/daemon.conf")
  const env = options.env ?? process.env
  const fromRecord = (record: Readonly<Record<string, string | undefined>>) =>
    ConfigProvider.fromMap(
      new Map(Object.entries(record).filter((e): e is [string, string] => e[1] !== undefined))
    )
  const provider = fromRecord(options.flags ?? {}).pipe(
    ConfigProvider.orElse(() => fromRecord(env)),
    ConfigProvider.orElse(() => ConfigProvider.fromMap(new Map(dotEnv.values))),
    ConfigProvider.orElse(() => ConfigProvider.fromMap(new Map(conf.values)))
  )
  const settings = yield* Effect.withConfigProvider(settingsConfig, provider).pipe(
    Effect.mapError((error) => new ConfigInvalid({ message: firstMessage(error) }))
  )
  // `DISCORD_WEBHOOK_<AGENT>` names are open-ended: collected from every source, highest precedence last.
  const discordAgentWebhooks: Record<string, string> = {}
  for (const source of [conf.values, dotEnv.values, new Map(Object.entries(env)), new Map(Object.entries(options.flags ?? {}))]) {
    for (const [key, raw] of source) {
      if (!key.startsWith(AGENT_WEBHOOK_PREFIX) || key === "DISCORD_WEBHOOK_URL" || raw === undefined) continue
      const url = webhookUrl(raw.trim())
      if (url === undefined) {
        return yield* new ConfigInvalid({
          message: `${key}=${JSON.stringify(raw)} is not valid: expected an http:// or https:// URL (or empty for none). ` +
            `Fix it in the environment, .env or .claude/config/daemon.conf`
        })
      }
      const suffix = key.slice(AGENT_WEBHOOK_PREFIX.length)
      if (url === null) delete discordAgentWebhooks[suffix]
      else discordAgentWebhooks[suffix] = url
    }
  }
  return {
    paths,
    settings: { ...settings, discordAgentWebhooks },
    warnings: [...dotEnv.warnings, ...conf.warnings]
  } satisfies DaemonConfigShape
})

function firstMessage(error: ConfigError.ConfigError): string {
  switch (error._op) {
    case "And":
    case "Or":
      return firstMessage(error.left)
    case "InvalidData":
      return error.message
    default:
      return String(error)
  }
}
