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

/** What a resumed session is told instead of the full prompt. */
export const DEFAULT_RESUME_PROMPT =
  "Your previous run on this task was interrupted. Continue the task from where you stopped. The trigger file is {trigger_file}."

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
  /** `AGENT_RESUME_COMMAND` split into words, `{session_id}` where the session goes; empty: `AGENT_COMMAND --resume {session_id}`. */
  readonly resumeCommand: ReadonlyArray<string>
  /** Whether a retry of an attempt that had a session resumes it (`RESUME_ON_RETRY`; `auto`: when the command is `claude`). */
  readonly resumeOnRetry: boolean
  /** The prompt a resumed session gets instead of the full one; `{trigger_file}` is replaced. */
  readonly resumePrompt: string
  /** An agent past this many turns in one attempt is stopped as `budget`; 0: no limit. */
  readonly agentMaxTurns: number
  /** All agents together stop starting once a UTC day's recorded cost reaches this; 0: no budget. */
  readonly dailyBudgetUsd: number
  /** `DAILY_BUDGET_USD_<AGENT>` budgets by `<AGENT>` (see `agentVariableSuffix`). */
  readonly agentBudgetsUsd: Readonly<Record<string, number>>
  /** `existing`: an agent runs in `<parent>/<project>-<agent>` when it exists; `auto`: it is made with `git worktree add` when missing. */
  readonly agentWorktrees: "existing" | "auto"
  /** When a worktree cannot be made: run in the project root (`root`) or fail the attempt (`fail`). */
  readonly worktreeFailure: "root" | "fail"
  /** Where the dashboard and HTTP API listen; null: no server. Port 0 picks a free port. */
  readonly dashboardAddress: { readonly host: string; readonly port: number } | null
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
  SCALE_INTERVAL: { default: "30", form: "a number of seconds of at least 0.001" },
  AGENT_RESUME_COMMAND: { default: "", form: "a command line containing {session_id}, such as 'claude --print --resume {session_id}', or empty for AGENT_COMMAND --resume {session_id}" },
  RESUME_ON_RETRY: { default: "auto", form: "true, false or auto (auto: true when AGENT_COMMAND runs claude)" },
  AGENT_RESUME_PROMPT: { default: DEFAULT_RESUME_PROMPT, form: "the text a resumed session is given ({trigger_file} is replaced by the trigger file's path)" },
  AGENT_MAX_TURNS: { default: "0", form: "a whole number of turns, 0 or more (0 sets no limit)" },
  DAILY_BUDGET_USD: { default: "0", form: "an amount of US dollars such as 25 or 7.50, 0 or more (0 sets no budget)" },
  AGENT_WORKTREES: { default: "existing", form: "existing or auto" },
  AGENT_WORKTREE_ON_FAILURE: { default: "root", form: "root (run in the project root) or fail (fail the attempt)" },
  DASHBOARD_ADDRESS: { default: "", form: "a host and port such as 127.0.0.1:7420 (port 0 picks a free one), or empty for no dashboard" }
} as const
export type VariableName = keyof typeof VARIABLES

/** The settings one agent may have of its own, as `<VARIABLE>_<AGENT>` (`AGENT_TIMEOUT_QA_ENGINEER=600`). */
export const PER_AGENT_VARIABLES = [
  "AGENT_COMMAND",
  "AGENT_TIMEOUT",
  "AGENT_STALL_TIMEOUT",
  "MAX_RETRIES",
  "INITIAL_RETRY_DELAY",
  "AGENT_MAX_MEMORY_MB",
  "AGENT_RESUME_COMMAND",
  "RESUME_ON_RETRY",
  "AGENT_RESUME_PROMPT",
  "AGENT_MAX_TURNS"
] as const satisfies ReadonlyArray<VariableName>

/** The prefix of the per-agent daily budgets, `DAILY_BUDGET_USD_<AGENT>`. */
export const AGENT_BUDGET_PREFIX = "DAILY_BUDGET_USD_"

/** Is `key` a variable starforge reads: one of `VARIABLES`, or an agent's own (`<VARIABLE>_<AGENT>`, a webhook or a budget)? */
export const isVariableKey = (key: string): boolean =>
  key in VARIABLES ||
  [...PER_AGENT_VARIABLES.map((name) => `${name}_`), AGENT_WEBHOOK_PREFIX, AGENT_BUDGET_PREFIX].some((prefix) =>
    key.length > prefix.length && key.startsWith(prefix))

export interface DaemonConfigShape {
  readonly paths: ProjectPaths
  /** The settings of every agent without settings of its own. */
  readonly settings: DaemonSettings
  /** The settings of the agents that have some of their own, by `<AGENT>` (see `agentVariableSuffix`). */
  readonly agents: ReadonlyMap<string, DaemonSettings>
  /** Lines of `.env` / `daemon.conf` that were ignored, for the daemon log. */
  readonly warnings: ReadonlyArray<string>
}

/** The settings `agent` runs with: its own where it has some, the common ones otherwise. */
export const settingsFor = (config: Pick<DaemonConfigShape, "settings" | "agents">, agent: string): DaemonSettings =>
  config.agents.get(agentVariableSuffix(agent)) ?? config.settings

export class DaemonConfig extends Context.Tag("starforge/DaemonConfig")<DaemonConfig, DaemonConfigShape>() {
  /** Loads and validates the configuration of a project. */
  static readonly layer = (options: LoadOptions) => Layer.effect(DaemonConfig, load(options))
  /**
   * A configuration given in full, for tests and embedding; `agents` gives agents (by name)
   * settings of their own on top of `settings`.
   */
  static readonly layerSettings = (
    project: string,
    settings: Partial<DaemonSettings> = {},
    agents: Readonly<Record<string, Partial<DaemonSettings>>> = {}
  ) => {
    const common = { ...defaultSettings, ...settings }
    return Layer.succeed(DaemonConfig, {
      paths: projectPaths(project),
      settings: common,
      agents: new Map(Object.entries(agents).map(([agent, own]) => [agentVariableSuffix(agent), { ...common, ...own }])),
      warnings: []
    })
  }
}

export interface LoadOptions {
  readonly project: string
  /** `KEY=VALUE` pairs from command-line flags. */
  readonly flags?: Readonly<Record<string, string>>
  /** Defaults to `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>>
}

const FIX_IT = "Fix it in the environment, .env or .claude/config/daemon.conf"

/** The name a variable was given under: `AGENT_TIMEOUT`, or `AGENT_TIMEOUT_QA_ENGINEER` for one agent's own. */
type KeyOf = (name: VariableName) => string
const plainKey: KeyOf = (name) => name

const invalid = (key: string, name: VariableName, value: string) =>
  ConfigError.InvalidData([key], `${key}=${JSON.stringify(value)} is not valid: expected ${VARIABLES[name].form}. ${FIX_IT}`)

/** `parse` turns the text into a value (undefined: not of the variable's form); `check` may still refuse it with a reason. */
const variable = <A>(keyOf: KeyOf, name: VariableName, parse: (text: string) => A | undefined, check?: (value: A) => string | undefined) =>
  Config.string(name).pipe(
    Config.withDefault(VARIABLES[name].default),
    Config.mapOrFail((raw) => {
      const key = keyOf(name)
      const parsed = parse(raw.trim())
      if (parsed === undefined) return Either.left(invalid(key, name, raw))
      const refused = check?.(parsed)
      return refused === undefined
        ? Either.right(parsed)
        : Either.left(ConfigError.InvalidData([key], `${key}=${raw.trim()} ${refused}. ${FIX_IT}`))
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
const timer = (keyOf: KeyOf, name: VariableName, min: "zero" | "positive", maxMs = MAX_TIMER_MS, why?: string) =>
  variable(keyOf, name, seconds(min), (ms) =>
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
const retriesFit = (keyOf: KeyOf) => (s: DaemonSettings): Either.Either<DaemonSettings, ConfigError.ConfigError> => {
  const doublings = Math.max(0, s.maxRetries - 2)
  if (s.initialRetryDelayMs === 0 || s.initialRetryDelayMs * 2 ** doublings <= MAX_TIMER_MS) return Either.right(s)
  const initial = secondsText(s.initialRetryDelayMs)
  const largestDelay = secondsText(Math.floor(MAX_TIMER_MS / 2 ** doublings))
  const largestRetries = 2 + Math.floor(Math.log2(MAX_TIMER_MS / s.initialRetryDelayMs))
  const delay = keyOf("INITIAL_RETRY_DELAY")
  const retries = keyOf("MAX_RETRIES")
  return Either.left(ConfigError.InvalidData(
    [delay],
    `${delay}=${initial} is too long for ${retries}=${s.maxRetries}: the wait before the last attempt is ` +
      `${initial} seconds doubled ${doublings} times, and ${TIMER_LIMIT}; with ${retries}=${s.maxRetries}, ` +
      `${delay} can be at most ${largestDelay} seconds, or with ${delay}=${initial}, ${retries} at most ${largestRetries}. ${FIX_IT}`
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

/** A command line with `{session_id}` in it; empty: none (`AGENT_COMMAND --resume {session_id}`). */
const resumeCommandLine = (text: string) =>
  text === "" ? [] : text.includes(SESSION_PLACEHOLDER) ? commandLine(text) : undefined
const notNegativeWhole = (text: string) => (/^\d+$/.test(text) ? Number(text) : undefined)
const dollars = (text: string) => (DECIMAL.test(text) ? Number(text) : undefined)
/** `host:port`, the host maybe in brackets (`[::1]:7420`); empty: none. */
const listenAddress = (text: string): { readonly host: string; readonly port: number } | null | undefined => {
  if (text === "") return null
  const match = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text)
  if (match === null) return undefined
  const port = Number(match[3])
  return port <= 65535 ? { host: match[1] ?? match[2]!, port } : undefined
}

/** Where the session id goes in `AGENT_RESUME_COMMAND`. */
export const SESSION_PLACEHOLDER = "{session_id}"

/** Does the command run `claude` (whatever its directory)? */
export const runsClaude = (command: ReadonlyArray<string>): boolean => /(^|\/)claude$/.test(command[0] ?? "")

/** The settings, read through a provider; `keyOf` names each variable in messages as the user wrote it. */
const settingsConfig = (keyOf: KeyOf): Config.Config<DaemonSettings> => Config.all({
  parallel: variable(keyOf, "PARALLEL_DAEMON", boolean),
  maxConcurrent: variable(keyOf, "MAX_CONCURRENT_AGENTS", wholeNumber),
  monitorIntervalMs: timer(keyOf, "PROCESS_MONITOR_INTERVAL", "positive"),
  agentTimeoutMs: timer(keyOf, "AGENT_TIMEOUT", "positive"),
  killGraceMs: timer(keyOf, "AGENT_KILL_GRACE", "zero", MAX_KILL_GRACE_MS, `'daemon start' waits ${START_WAIT_MS / 1000} seconds plus twice the grace for the daemon to be ready`),
  maxRetries: variable(keyOf, "MAX_RETRIES", wholeNumber),
  initialRetryDelayMs: timer(keyOf, "INITIAL_RETRY_DELAY", "zero"),
  agentCommand: variable(keyOf, "AGENT_COMMAND", commandLine),
  orchestratorIntervalMs: timer(keyOf, "ORCHESTRATOR_INTERVAL", "zero"),
  logMaxBytes: variable(keyOf, "LOG_MAX_SIZE_MB", amount(1024 * 1024)),
  // Ages compared with files' mtimes, never a timer's delay: any length is fine.
  logCompressAfterMs: variable(keyOf, "LOG_COMPRESS_AFTER_HOURS", amount(3_600_000)),
  logRetentionMs: variable(keyOf, "LOG_RETENTION_DAYS", amount(86_400_000)),
  logMaintenanceIntervalMs: timer(keyOf, "LOG_MAINTENANCE_INTERVAL", "positive"),
  // An age too, like the two above.
  processedRetentionMs: variable(keyOf, "PROCESSED_RETENTION_DAYS", amount(86_400_000)),
  logFormat: variable(keyOf, "STARFORGE_LOG_FORMAT", oneOf(["text", "json"] as const)),
  logLevel: variable(keyOf, "STARFORGE_LOG_LEVEL", oneOf(LOG_SEVERITIES)),
  otlpEndpoint: variable(keyOf, "OTEL_EXPORTER_OTLP_ENDPOINT", httpUrl),
  agentStallTimeoutMs: timer(keyOf, "AGENT_STALL_TIMEOUT", "zero"),
  progressIntervalMs: timer(keyOf, "PROGRESS_INTERVAL", "zero"),
  // Not bounded like the timers: the pause it starts is capped at 6 hours (`MAX_COOLDOWN_MS`).
  usageLimitCooldownMs: variable(keyOf, "USAGE_LIMIT_COOLDOWN", seconds("positive")),
  discordWebhookUrl: variable(keyOf, "DISCORD_WEBHOOK_URL", webhookUrl),
  notifyWebhookUrl: variable(keyOf, "NOTIFY_WEBHOOK_URL", webhookUrl),
  discordAgentWebhooks: Config.succeed({}),
  resourceSampleIntervalMs: timer(keyOf, "RESOURCE_SAMPLE_INTERVAL", "zero"),
  agentMaxMemoryBytes: variable(keyOf, "AGENT_MAX_MEMORY_MB", amount(1024 * 1024)),
  minConcurrent: variable(keyOf, "MIN_CONCURRENT_AGENTS", wholeNumber),
  scaleMaxLoad: variable(keyOf, "SCALE_MAX_LOAD", (text) => (DECIMAL.test(text) ? Number(text) : undefined)),
  scaleMinFreeMemoryBytes: variable(keyOf, "SCALE_MIN_FREE_MEMORY_MB", amount(1024 * 1024)),
  // Compared with elapsed time; the checks run at most 5 s apart, so no timer waits this long.
  scaleIntervalMs: variable(keyOf, "SCALE_INTERVAL", seconds("positive")),
  resumeCommand: variable(keyOf, "AGENT_RESUME_COMMAND", resumeCommandLine),
  // `auto` is settled below, once the command is known.
  resumeOnRetry: variable(keyOf, "RESUME_ON_RETRY", (text) => (text.toLowerCase() === "auto" ? "auto" as const : boolean(text))),
  resumePrompt: variable(keyOf, "AGENT_RESUME_PROMPT", (text) => (text === "" || text.includes("\0") ? undefined : text)),
  agentMaxTurns: variable(keyOf, "AGENT_MAX_TURNS", notNegativeWhole),
  dailyBudgetUsd: variable(keyOf, "DAILY_BUDGET_USD", dollars),
  agentBudgetsUsd: Config.succeed({}),
  agentWorktrees: variable(keyOf, "AGENT_WORKTREES", oneOf(["existing", "auto"] as const)),
  worktreeFailure: variable(keyOf, "AGENT_WORKTREE_ON_FAILURE", oneOf(["root", "fail"] as const)),
  dashboardAddress: variable(keyOf, "DASHBOARD_ADDRESS", listenAddress)
}).pipe(
  Config.map((s): DaemonSettings => ({
    ...s,
    resumeOnRetry: s.resumeOnRetry === "auto" ? runsClaude(s.agentCommand) : s.resumeOnRetry
  })),
  Config.mapOrFail(retriesFit(keyOf)),
  Config.validate({
    message: "MIN_CONCURRENT_AGENTS is above MAX_CONCURRENT_AGENTS: lower it, or raise MAX_CONCURRENT_AGENTS. " +
      "Fix it in the environment, .env or .claude/config/daemon.conf",
    validation: (s) => s.minConcurrent <= s.maxConcurrent
  }),
  Config.validate({
    message: `${keyOf("AGENT_MAX_MEMORY_MB")} needs the samples it is checked against, but RESOURCE_SAMPLE_INTERVAL is 0: ` +
      `set RESOURCE_SAMPLE_INTERVAL above 0, or ${keyOf("AGENT_MAX_MEMORY_MB")} to 0. Fix it in the environment, .env or .claude/config/daemon.conf`,
    validation: (s) => s.agentMaxMemoryBytes === 0 || s.resourceSampleIntervalMs > 0
  })
)

export const defaultSettings: DaemonSettings = Effect.runSync(
  Effect.withConfigProvider(settingsConfig(plainKey), ConfigProvider.fromMap(new Map()))
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

/** Where a value came from, highest precedence first. */
export const SOURCES = ["flag", "environment", ".env", "daemon.conf"] as const
export type Source = (typeof SOURCES)[number] | "default"

/** The raw `KEY=VALUE` text of every source, in precedence order, and what reading the files warned about. */
const readSources = (options: LoadOptions) => {
  const paths = projectPaths(options.project)
  const dotEnv = readKeyValueFile(paths.envFile, ".env")
  const conf = readKeyValueFile(paths.configFile, ".claude/config/daemon.conf")
  const defined = (record: Readonly<Record<string, string | undefined>>): ReadonlyMap<string, string> =>
    new Map(Object.entries(record).filter((e): e is [string, string] => e[1] !== undefined))
  const sources: ReadonlyArray<readonly [Source, ReadonlyMap<string, string>]> = [
    ["flag", defined(options.flags ?? {})],
    ["environment", defined(options.env ?? process.env)],
    [".env", dotEnv.values],
    ["daemon.conf", conf.values]
  ]
  return { paths, sources, warnings: [...dotEnv.warnings, ...conf.warnings] }
}

/** The first source (by precedence) that sets `key`. */
const lookup = (sources: ReturnType<typeof readSources>["sources"], key: string) => {
  for (const [source, values] of sources) {
    const value = values.get(key)
    if (value !== undefined) return { source, value }
  }
  return undefined
}

/**
 * Open-ended `<PREFIX><AGENT>` keys of every source: by `<AGENT>`, the value and its key from
 * the source of highest precedence.
 */
const suffixed = (sources: ReturnType<typeof readSources>["sources"], prefix: string) => {
  const found = new Map<string, { readonly key: string; readonly value: string; readonly source: Source }>()
  for (const [source, values] of [...sources].reverse()) {
    for (const [key, value] of values) {
      if (key.length > prefix.length && key.startsWith(prefix)) found.set(key.slice(prefix.length), { key, value, source })
    }
  }
  return found
}

/** Every `<VARIABLE>_<AGENT>` of a per-agent variable, by `<AGENT>` and then variable. */
const agentOverrides = (sources: ReturnType<typeof readSources>["sources"]) => {
  const byAgent = new Map<string, Map<VariableName, { readonly key: string; readonly value: string; readonly source: Source }>>()
  for (const name of PER_AGENT_VARIABLES) {
    for (const [agent, found] of suffixed(sources, `${name}_`)) {
      let own = byAgent.get(agent)
      if (own === undefined) byAgent.set(agent, own = new Map())
      own.set(name, found)
    }
  }
  return byAgent
}

const chain = (sources: ReturnType<typeof readSources>["sources"]) =>
  sources.map(([, values]) => ConfigProvider.fromMap(new Map(values))).reduce((high, low) => high.pipe(ConfigProvider.orElse(() => low)))

/** How `agentVariableSuffix` writes an agent: `junior-dev-a` → `JUNIOR_DEV_A`. */
const AGENT_SUFFIX = /^[A-Z0-9_]+$/

/** A `<VARIABLE>_<AGENT>` key whose agent part no agent could have (`AGENT_TIMEOUT_qa`): it would never apply. */
const misspeltAgentKey = (sources: ReturnType<typeof readSources>["sources"]) => {
  for (const prefix of [...PER_AGENT_VARIABLES.map((name) => `${name}_`), AGENT_WEBHOOK_PREFIX, AGENT_BUDGET_PREFIX]) {
    for (const [agent, { key }] of suffixed(sources, prefix)) {
      if (key !== "DISCORD_WEBHOOK_URL" && !AGENT_SUFFIX.test(agent)) return key
    }
  }
  return undefined
}

/** Builds the configuration; every bad value becomes one `ConfigInvalid` naming the variable. */
export const load = Effect.fn("DaemonConfig.load")(function*(options: LoadOptions) {
  const { paths, sources, warnings } = readSources(options)
  const misspelt = misspeltAgentKey(sources)
  if (misspelt !== undefined) {
    return yield* new ConfigInvalid({
      message: `${misspelt} would never apply: the agent part of a per-agent variable is the agent's id upper-cased, ` +
        `with - and . as _ (AGENT_TIMEOUT_QA_ENGINEER for qa-engineer). ${FIX_IT}`
    })
  }
  const provider = chain(sources)
  const failed = (error: ConfigError.ConfigError) => new ConfigInvalid({ message: firstMessage(error) })
  const settings = yield* Effect.withConfigProvider(settingsConfig(plainKey), provider).pipe(Effect.mapError(failed))
  // `DISCORD_WEBHOOK_<AGENT>` and `DAILY_BUDGET_USD_<AGENT>` names are open-ended: collected from every source.
  const discordAgentWebhooks: Record<string, string> = {}
  for (const [agent, { key, value }] of suffixed(sources, AGENT_WEBHOOK_PREFIX)) {
    if (key === "DISCORD_WEBHOOK_URL") continue
    const url = webhookUrl(value.trim())
    if (url === undefined) {
      return yield* new ConfigInvalid({
        message: `${key}=${JSON.stringify(value)} is not valid: expected an http:// or https:// URL (or empty for none). ${FIX_IT}`
      })
    }
    if (url !== null) discordAgentWebhooks[agent] = url
  }
  const agentBudgetsUsd: Record<string, number> = {}
  for (const [agent, { key, value }] of suffixed(sources, AGENT_BUDGET_PREFIX)) {
    const budget = dollars(value.trim())
    if (budget === undefined) {
      return yield* new ConfigInvalid({ message: `${key}=${JSON.stringify(value)} is not valid: expected ${VARIABLES.DAILY_BUDGET_USD.form}. ${FIX_IT}` })
    }
    if (budget > 0) agentBudgetsUsd[agent] = budget
  }
  const common: DaemonSettings = { ...settings, discordAgentWebhooks, agentBudgetsUsd }
  // An agent's own value of a variable comes before the common one, whatever their sources.
  const agents = new Map<string, DaemonSettings>()
  for (const [agent, own] of agentOverrides(sources)) {
    const ownValues = ConfigProvider.fromMap(new Map([...own].map(([name, found]) => [name, found.value])))
    const keyOf: KeyOf = (name) => own.get(name)?.key ?? name
    const agentSettings = yield* Effect.withConfigProvider(settingsConfig(keyOf), ownValues.pipe(ConfigProvider.orElse(() => provider))).pipe(
      Effect.mapError(failed)
    )
    agents.set(agent, { ...agentSettings, discordAgentWebhooks, agentBudgetsUsd })
  }
  return { paths, settings: common, agents, warnings } satisfies DaemonConfigShape
})

/** One variable's effective value and where it came from, for `config show`. */
export interface ExplainedValue {
  readonly variable: VariableName | string
  /** The key that set it (`AGENT_TIMEOUT_QA_ENGINEER` for an agent's own value). */
  readonly key: string
  readonly value: string
  readonly source: Source
}

/**
 * Every variable's raw value and source, for all agents or, with `agent`, as that agent gets
 * them; for all agents, every agent's own `<VARIABLE>_<AGENT>` values follow (variable
 * `AGENT_TIMEOUT_<AGENT>`…); then the open-ended per-agent webhooks and budgets. Secret-bearing URLs
 * are shortened.
 */
export const explain = (options: LoadOptions, agent?: string): ReadonlyArray<ExplainedValue> => {
  const { sources } = readSources(options)
  const own = agent === undefined ? undefined : agentOverrides(sources).get(agentVariableSuffix(agent))
  const rows: Array<ExplainedValue> = []
  for (const name of Object.keys(VARIABLES) as Array<VariableName>) {
    const mine = own?.get(name)
    const found = mine ?? lookup(sources, name)
    const value = found?.value.trim() ?? VARIABLES[name].default
    rows.push({ variable: name, key: mine?.key ?? name, value: hideSecret(name, value), source: found?.source ?? "default" })
  }
  // For all agents: every agent's own values too, or the table would hide them behind the common ones.
  if (agent === undefined) {
    for (const [, values] of [...agentOverrides(sources)].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      for (const name of PER_AGENT_VARIABLES) {
        const found = values.get(name)
        if (found !== undefined) rows.push({ variable: `${name}_<AGENT>`, key: found.key, value: found.value.trim(), source: found.source })
      }
    }
  }
  const suffix = agent === undefined ? undefined : agentVariableSuffix(agent)
  for (const prefix of [AGENT_WEBHOOK_PREFIX, AGENT_BUDGET_PREFIX]) {
    for (const [who, found] of suffixed(sources, prefix)) {
      if (found.key === "DISCORD_WEBHOOK_URL" || (suffix !== undefined && who !== suffix)) continue
      rows.push({ variable: `${prefix}<AGENT>`, key: found.key, value: hideSecret(found.key, found.value.trim()), source: found.source })
    }
  }
  return rows
}

/** Webhook URLs carry their secret in the path: only the scheme and host are shown. */
const hideSecret = (key: string, value: string): string => {
  if (!/WEBHOOK/.test(key) || value === "") return value
  try {
    const url = new URL(value)
    return `${url.protocol}//${url.host}/… (hidden)`
  } catch {
    return "(hidden)"
  }
}

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
