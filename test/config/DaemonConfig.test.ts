import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import {
  DaemonConfig,
  DEFAULT_AGENT_COMMAND,
  DEFAULT_RESUME_PROMPT,
  defaultSettings,
  load,
  type LoadOptions,
  VARIABLES,
  type VariableName
} from "../../src/config/DaemonConfig.js"
import { ConfigInvalid } from "../../src/domain/errors.js"

let project: string

beforeEach(() => {
  project = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-config-"))
})

afterEach(() => {
  fs.rmSync(project, { recursive: true, force: true })
})

const writeEnv = (text: string) => fs.writeFileSync(path.join(project, ".env"), text)
const writeConf = (text: string) => {
  fs.mkdirSync(path.join(project, ".claude", "config"), { recursive: true })
  fs.writeFileSync(path.join(project, ".claude", "config", "daemon.conf"), text)
}

const loadWith = (options: Partial<LoadOptions> = {}) =>
  Effect.runPromise(Effect.either(load({ project, env: {}, ...options })))

const loaded = async (options: Partial<LoadOptions> = {}) => {
  const result = await loadWith(options)
  if (Either.isLeft(result)) throw new Error(`expected a configuration, got: ${result.left.message}`)
  return result.right
}

const failure = async (options: Partial<LoadOptions> = {}): Promise<ConfigInvalid> => {
  const result = await loadWith(options)
  if (Either.isRight(result)) throw new Error(`expected ConfigInvalid, got ${JSON.stringify(result.right.settings)}`)
  expect(result.left).toBeInstanceOf(ConfigInvalid)
  expect(result.left._tag).toBe("ConfigInvalid")
  return result.left
}

describe("DaemonConfig.load", () => {
  describe("defaults (contract §2)", () => {
    it("match the contract", async () => {
      const config = await loaded()
      expect(config.settings).toEqual({
        parallel: false,
        maxConcurrent: 999,
        monitorIntervalMs: 10_000,
        agentTimeoutMs: 1_800_000,
        killGraceMs: 10_000,
        maxRetries: 3,
        initialRetryDelayMs: 5_000,
        agentCommand: [
          "claude",
          "--print",
          "--permission-mode",
          "bypassPermissions",
          "--output-format",
          "stream-json",
          "--verbose"
        ],
        orchestratorIntervalMs: 60_000,
        logMaxBytes: 100 * 1024 * 1024,
        logCompressAfterMs: 24 * 3_600_000,
        logRetentionMs: 7 * 86_400_000,
        logMaintenanceIntervalMs: 600_000,
        processedRetentionMs: 30 * 86_400_000,
        logFormat: "text",
        logLevel: "info",
        otlpEndpoint: "",
        agentStallTimeoutMs: 600_000,
        progressIntervalMs: 300_000,
        usageLimitCooldownMs: 300_000,
        discordWebhookUrl: null,
        notifyWebhookUrl: null,
        discordAgentWebhooks: {},
        resourceSampleIntervalMs: 5_000,
        agentMaxMemoryBytes: 0,
        minConcurrent: 1,
        scaleMaxLoad: 0,
        scaleMinFreeMemoryBytes: 0,
        scaleIntervalMs: 30_000,
        resumeCommand: [],
        resumeOnRetry: true,
        resumePrompt: DEFAULT_RESUME_PROMPT,
        agentMaxTurns: 0,
        dailyBudgetUsd: 0,
        agentBudgetsUsd: {},
        agentWorktrees: "existing",
        worktreeFailure: "root",
        dashboardAddress: null
      })
      expect(config.agents.size).toBe(0)
      expect(config.warnings).toEqual([])
    })

    it("defaultSettings equals the loaded defaults", async () => {
      expect((await loaded()).settings).toEqual(defaultSettings)
    })

    it("the default command line is the contract's", () => {
      expect(DEFAULT_AGENT_COMMAND).toBe(
        "claude --print --permission-mode bypassPermissions --output-format stream-json --verbose"
      )
      expect(VARIABLES.AGENT_COMMAND.default).toBe(DEFAULT_AGENT_COMMAND)
    })

    it("resolves the project paths", async () => {
      const config = await loaded()
      expect(config.paths.root).toBe(path.resolve(project))
      expect(config.paths.envFile).toBe(path.join(path.resolve(project), ".env"))
      expect(config.paths.configFile).toBe(path.join(path.resolve(project), ".claude", "config", "daemon.conf"))
    })

    it("ignores unrelated environment variables", async () => {
      const config = await loaded({ env: { PATH: "/usr/bin", HOME: "/root", UNRELATED: "x", PARALLEL: "true" } })
      expect(config.settings).toEqual(defaultSettings)
    })

    it("an undefined environment value counts as unset", async () => {
      const config = await loaded({ env: { MAX_CONCURRENT_AGENTS: undefined } })
      expect(config.settings.maxConcurrent).toBe(999)
    })
  })

  describe("precedence: flags > env > .env > daemon.conf > defaults", () => {
    it("daemon.conf overrides the defaults", async () => {
      writeConf("MAX_CONCURRENT_AGENTS=4\n")
      expect((await loaded()).settings.maxConcurrent).toBe(4)
    })

    it(".env overrides daemon.conf", async () => {
      writeConf("MAX_CONCURRENT_AGENTS=4\nMAX_RETRIES=7\n")
      writeEnv("MAX_CONCURRENT_AGENTS=3\n")
      const settings = (await loaded()).settings
      expect(settings.maxConcurrent).toBe(3)
      expect(settings.maxRetries).toBe(7)
    })

    it("the environment overrides .env", async () => {
      writeConf("MAX_CONCURRENT_AGENTS=4\n")
      writeEnv("MAX_CONCURRENT_AGENTS=3\nMAX_RETRIES=6\n")
      const settings = (await loaded({ env: { MAX_CONCURRENT_AGENTS: "2" } })).settings
      expect(settings.maxConcurrent).toBe(2)
      expect(settings.maxRetries).toBe(6)
    })

    it("flags override the environment", async () => {
      writeConf("MAX_CONCURRENT_AGENTS=4\n")
      writeEnv("MAX_CONCURRENT_AGENTS=3\n")
      const settings = (
        await loaded({ env: { MAX_CONCURRENT_AGENTS: "2", MAX_RETRIES: "5" }, flags: { MAX_CONCURRENT_AGENTS: "1" } })
      ).settings
      expect(settings.maxConcurrent).toBe(1)
      expect(settings.maxRetries).toBe(5)
    })

    it("each source supplies the variables the higher ones leave unset", async () => {
      writeConf("AGENT_TIMEOUT=100\nAGENT_KILL_GRACE=1\nMAX_RETRIES=9\nINITIAL_RETRY_DELAY=8\n")
      writeEnv("AGENT_KILL_GRACE=2\nMAX_RETRIES=8\nINITIAL_RETRY_DELAY=7\n")
      const settings = (
        await loaded({ env: { MAX_RETRIES: "4", INITIAL_RETRY_DELAY: "6" }, flags: { INITIAL_RETRY_DELAY: "3" } })
      ).settings
      expect(settings.agentTimeoutMs).toBe(100_000)
      expect(settings.killGraceMs).toBe(2_000)
      expect(settings.maxRetries).toBe(4)
      expect(settings.initialRetryDelayMs).toBe(3_000)
      expect(settings.monitorIntervalMs).toBe(10_000)
    })

    it("a bad value in a lower source is not consulted when a higher source sets the variable", async () => {
      writeConf("MAX_CONCURRENT_AGENTS=abc\n")
      writeEnv("MAX_CONCURRENT_AGENTS=xyz\n")
      expect((await loaded({ env: { MAX_CONCURRENT_AGENTS: "5" } })).settings.maxConcurrent).toBe(5)
    })

    it("reads every variable from .env", async () => {
      writeEnv(
        [
          "# starforge settings",
          "export PARALLEL_DAEMON=true",
          "MAX_CONCURRENT_AGENTS=8",
          "PROCESS_MONITOR_INTERVAL=2",
          "AGENT_TIMEOUT='600'",
          'AGENT_KILL_GRACE="3"',
          "MAX_RETRIES=2 # fewer",
          "INITIAL_RETRY_DELAY=1",
          `AGENT_COMMAND='node "/opt/my agent.js" --fast'`,
          "ORCHESTRATOR_INTERVAL=0",
          "LOG_MAX_SIZE_MB=0.5",
          "LOG_COMPRESS_AFTER_HOURS=1.5",
          "LOG_RETENTION_DAYS=0",
          "LOG_MAINTENANCE_INTERVAL=30",
          "PROCESSED_RETENTION_DAYS=0.5",
          "STARFORGE_LOG_FORMAT=JSON",
          "STARFORGE_LOG_LEVEL=warn",
          "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318",
          "AGENT_STALL_TIMEOUT=0",
          "PROGRESS_INTERVAL=60",
          "USAGE_LIMIT_COOLDOWN=30",
          "DISCORD_WEBHOOK_URL=https://discord.example/api/webhooks/1/a",
          "NOTIFY_WEBHOOK_URL=http://127.0.0.1:9/hook",
          "RESOURCE_SAMPLE_INTERVAL=2.5",
          "AGENT_MAX_MEMORY_MB=512",
          "MIN_CONCURRENT_AGENTS=2",
          "SCALE_MAX_LOAD=1.5",
          "SCALE_MIN_FREE_MEMORY_MB=1024",
          "SCALE_INTERVAL=60",
          "AGENT_RESUME_COMMAND='node /opt/resume.js --session {session_id}'",
          "RESUME_ON_RETRY=false",
          "AGENT_RESUME_PROMPT='Go on with {trigger_file}'",
          "AGENT_MAX_TURNS=40",
          "DAILY_BUDGET_USD=12.5",
          "AGENT_WORKTREES=auto",
          "AGENT_WORKTREE_ON_FAILURE=fail",
          "DASHBOARD_ADDRESS=127.0.0.1:7420",
          "DISCORD_WEBHOOK_JUNIOR_DEV_A=https://discord.example/api/webhooks/2/b",
          "DAILY_BUDGET_USD_QA_ENGINEER=3"
        ].join("\n")
      )
      expect((await loaded()).settings).toEqual({
        parallel: true,
        maxConcurrent: 8,
        monitorIntervalMs: 2_000,
        agentTimeoutMs: 600_000,
        killGraceMs: 3_000,
        maxRetries: 2,
        initialRetryDelayMs: 1_000,
        agentCommand: ["node", "/opt/my agent.js", "--fast"],
        orchestratorIntervalMs: 0,
        logMaxBytes: 512 * 1024,
        logCompressAfterMs: 5_400_000,
        logRetentionMs: 0,
        logMaintenanceIntervalMs: 30_000,
        processedRetentionMs: 43_200_000,
        logFormat: "json",
        logLevel: "warn",
        otlpEndpoint: "http://127.0.0.1:4318",
        agentStallTimeoutMs: 0,
        progressIntervalMs: 60_000,
        usageLimitCooldownMs: 30_000,
        discordWebhookUrl: "https://discord.example/api/webhooks/1/a",
        notifyWebhookUrl: "http://127.0.0.1:9/hook",
        discordAgentWebhooks: { JUNIOR_DEV_A: "https://discord.example/api/webhooks/2/b" },
        resourceSampleIntervalMs: 2_500,
        agentMaxMemoryBytes: 512 * 1024 * 1024,
        minConcurrent: 2,
        scaleMaxLoad: 1.5,
        scaleMinFreeMemoryBytes: 1024 * 1024 * 1024,
        scaleIntervalMs: 60_000,
        resumeCommand: ["node", "/opt/resume.js", "--session", "{session_id}"],
        resumeOnRetry: false,
        resumePrompt: "Go on with {trigger_file}",
        agentMaxTurns: 40,
        dailyBudgetUsd: 12.5,
        agentBudgetsUsd: { QA_ENGINEER: 3 },
        agentWorktrees: "auto",
        worktreeFailure: "fail",
        dashboardAddress: { host: "127.0.0.1", port: 7420 }
      })
    })
  })

  describe("values", () => {
    it.each([
      ["true", true],
      ["TRUE", true],
      ["1", true],
      ["yes", true],
      ["on", true],
      ["false", false],
      ["False", false],
      ["0", false],
      ["no", false],
      ["off", false]
    ])("PARALLEL_DAEMON=%s", async (value, expected) => {
      expect((await loaded({ env: { PARALLEL_DAEMON: value } })).settings.parallel).toBe(expected)
    })

    it("accepts decimal seconds", async () => {
      const settings = (
        await loaded({
          env: {
            PROCESS_MONITOR_INTERVAL: "0.5",
            AGENT_TIMEOUT: "1.25",
            AGENT_KILL_GRACE: "0.1",
            INITIAL_RETRY_DELAY: "0.05",
            ORCHESTRATOR_INTERVAL: "2.5"
          }
        })
      ).settings
      expect(settings.monitorIntervalMs).toBe(500)
      expect(settings.agentTimeoutMs).toBe(1_250)
      expect(settings.killGraceMs).toBe(100)
      expect(settings.initialRetryDelayMs).toBe(50)
      expect(settings.orchestratorIntervalMs).toBe(2_500)
    })

    it("accepts 0 where the contract allows it", async () => {
      const settings = (
        await loaded({ env: { AGENT_KILL_GRACE: "0", INITIAL_RETRY_DELAY: "0", ORCHESTRATOR_INTERVAL: "0" } })
      ).settings
      expect(settings.killGraceMs).toBe(0)
      expect(settings.initialRetryDelayMs).toBe(0)
      expect(settings.orchestratorIntervalMs).toBe(0)
    })

    it("trims surrounding whitespace", async () => {
      const settings = (await loaded({ env: { MAX_CONCURRENT_AGENTS: " 4 ", AGENT_TIMEOUT: "\t60\n" } })).settings
      expect(settings.maxConcurrent).toBe(4)
      expect(settings.agentTimeoutMs).toBe(60_000)
    })

    it("MAX_CONCURRENT_AGENTS=1 and MAX_RETRIES=1 are the minimum", async () => {
      const settings = (await loaded({ env: { MAX_CONCURRENT_AGENTS: "1", MAX_RETRIES: "1" } })).settings
      expect(settings.maxConcurrent).toBe(1)
      expect(settings.maxRetries).toBe(1)
    })

    it("AGENT_COMMAND is split into words with quotes honoured", async () => {
      const settings = (
        await loaded({ env: { AGENT_COMMAND: `claude --print --append-system-prompt "be brief, please" 'a b'` } })
      ).settings
      expect(settings.agentCommand).toEqual(["claude", "--print", "--append-system-prompt", "be brief, please", "a b"])
    })

    it("AGENT_COMMAND keeps commas inside words", async () => {
      const settings = (await loaded({ env: { AGENT_COMMAND: "claude --allowed-tools Read,Write,Edit" } })).settings
      expect(settings.agentCommand).toEqual(["claude", "--allowed-tools", "Read,Write,Edit"])
    })

    // Bug: the "greater than 0" check is made on the seconds before rounding to milliseconds,
    // so a tiny positive value is accepted and becomes a 0 ms interval/timeout.
    it("a positive value below 0.5 ms never becomes 0 ms", async () => {
      for (const name of ["PROCESS_MONITOR_INTERVAL", "AGENT_TIMEOUT"] as const) {
        const result = await loadWith({ env: { [name]: "0.0001" } })
        if (Either.isRight(result)) {
          expect(result.right.settings.monitorIntervalMs).toBeGreaterThan(0)
          expect(result.right.settings.agentTimeoutMs).toBeGreaterThan(0)
        }
      }
    })

    it("a single-word AGENT_COMMAND", async () => {
      expect((await loaded({ env: { AGENT_COMMAND: "/bin/true" } })).settings.agentCommand).toEqual(["/bin/true"])
    })
  })

  describe("bad values fail with ConfigInvalid naming the variable, the value and the form", () => {
    const cases: ReadonlyArray<readonly [VariableName, string]> = [
      ["MAX_CONCURRENT_AGENTS", "abc"],
      ["MAX_CONCURRENT_AGENTS", "0"],
      ["MAX_CONCURRENT_AGENTS", "-3"],
      ["MAX_CONCURRENT_AGENTS", "2.5"],
      ["AGENT_TIMEOUT", "-1"],
      ["AGENT_TIMEOUT", "0"],
      ["AGENT_TIMEOUT", "0.0"],
      ["AGENT_TIMEOUT", "ten"],
      ["AGENT_TIMEOUT", "10s"],
      ["AGENT_TIMEOUT", "1e3"],
      ["PROCESS_MONITOR_INTERVAL", "0"],
      ["AGENT_KILL_GRACE", "-1"],
      ["INITIAL_RETRY_DELAY", "soon"],
      ["ORCHESTRATOR_INTERVAL", "-60"],
      ["MAX_RETRIES", "0"],
      ["MAX_RETRIES", "three"],
      ["PARALLEL_DAEMON", "maybe"],
      ["PARALLEL_DAEMON", "2"],
      ["AGENT_COMMAND", `claude "--print`],
      ["AGENT_COMMAND", `claude '--print`],
      ["AGENT_COMMAND", ""],
      ["AGENT_COMMAND", "   "],
      ["LOG_MAX_SIZE_MB", "-1"],
      ["LOG_MAX_SIZE_MB", "1GB"],
      ["LOG_COMPRESS_AFTER_HOURS", "a day"],
      ["LOG_RETENTION_DAYS", "-7"],
      ["LOG_MAINTENANCE_INTERVAL", "0"],
      ["PROCESSED_RETENTION_DAYS", "a month"],
      ["PROCESSED_RETENTION_DAYS", "-1"],
      ["STARFORGE_LOG_FORMAT", "xml"],
      ["STARFORGE_LOG_LEVEL", "verbose"],
      ["OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318"],
      ["OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://collector"],
      ["AGENT_STALL_TIMEOUT", "-1"],
      ["AGENT_STALL_TIMEOUT", "ten minutes"],
      ["PROGRESS_INTERVAL", "5m"],
      ["USAGE_LIMIT_COOLDOWN", "0"],
      ["DISCORD_WEBHOOK_URL", "discord.com/api/webhooks/1"],
      ["DISCORD_WEBHOOK_URL", "ftp://example.com/hook"],
      ["NOTIFY_WEBHOOK_URL", "not a url"],
      ["RESOURCE_SAMPLE_INTERVAL", "-5"],
      ["RESOURCE_SAMPLE_INTERVAL", "5s"],
      ["AGENT_MAX_MEMORY_MB", "2GB"],
      ["AGENT_MAX_MEMORY_MB", "-1"],
      ["MIN_CONCURRENT_AGENTS", "0"],
      ["MIN_CONCURRENT_AGENTS", "1.5"],
      ["SCALE_MAX_LOAD", "high"],
      ["SCALE_MAX_LOAD", "-1"],
      ["SCALE_MIN_FREE_MEMORY_MB", "1G"],
      ["SCALE_INTERVAL", "0"]
    ]

    it.each(cases)("%s=%j from the environment", async (name, value) => {
      const error = await failure({ env: { [name]: value } })
      expect(error.message).toContain(name)
      expect(error.message).toContain(JSON.stringify(value))
      expect(error.message).toContain(VARIABLES[name].form)
      expect(error.message).not.toContain("\n")
    })

    it("MIN_CONCURRENT_AGENTS above MAX_CONCURRENT_AGENTS", async () => {
      const error = await failure({ env: { MAX_CONCURRENT_AGENTS: "2", MIN_CONCURRENT_AGENTS: "3" } })
      expect(error.message).toContain("MIN_CONCURRENT_AGENTS is above MAX_CONCURRENT_AGENTS")
    })

    it("AGENT_MAX_MEMORY_MB without samples to check it against", async () => {
      const error = await failure({ env: { AGENT_MAX_MEMORY_MB: "100", RESOURCE_SAMPLE_INTERVAL: "0" } })
      expect(error.message).toContain("AGENT_MAX_MEMORY_MB")
      expect(error.message).toContain("RESOURCE_SAMPLE_INTERVAL is 0")
    })

    it("a bad value from flags", async () => {
      const error = await failure({ flags: { MAX_RETRIES: "0" } })
      expect(error.message).toContain("MAX_RETRIES")
      expect(error.message).toContain('"0"')
    })

    it("a bad value from .env", async () => {
      writeEnv("MAX_CONCURRENT_AGENTS=abc\n")
      const error = await failure()
      expect(error.message).toContain("MAX_CONCURRENT_AGENTS")
      expect(error.message).toContain("abc")
    })

    it("an AGENT_COMMAND with a NUL byte from .env (no argument can carry one)", async () => {
      writeEnv("AGENT_COMMAND=/bin/true a\0b\n")
      const error = await failure()
      expect(error.message).toContain(`AGENT_COMMAND="/bin/true a\\u0000b" is not valid`)
    })

    it("a bad value from daemon.conf", async () => {
      writeConf("AGENT_TIMEOUT=-1\n")
      const error = await failure()
      expect(error.message).toContain("AGENT_TIMEOUT")
      expect(error.message).toContain("-1")
    })

    it("an unterminated quote in AGENT_COMMAND from .env", async () => {
      writeEnv(`AGENT_COMMAND='claude "--print'\n`)
      const error = await failure()
      expect(error.message).toContain("AGENT_COMMAND")
      expect(error.message).toContain(`claude \\"--print`)
    })

    it("a bad DISCORD_WEBHOOK_<AGENT> names the variable; a higher source's empty value removes a lower one", async () => {
      const error = await failure({ env: { DISCORD_WEBHOOK_JUNIOR_DEV_A: "nope" } })
      expect(error.message).toContain("DISCORD_WEBHOOK_JUNIOR_DEV_A")
      expect(error.message).toContain('"nope"')
      writeConf("DISCORD_WEBHOOK_QA=https://example.com/qa\nDISCORD_WEBHOOK_DEV=https://example.com/dev\n")
      const settings = (await loaded({ env: { DISCORD_WEBHOOK_QA: "" }, flags: { DISCORD_WEBHOOK_DEV: "https://example.com/dev2" } })).settings
      expect(settings.discordAgentWebhooks).toEqual({ DEV: "https://example.com/dev2" })
    })

    it("a per-agent key whose agent part no agent could have (not upper case) is refused, naming it: it would never apply", async () => {
      for (const env of [{ AGENT_TIMEOUT_qa: "5" }, { DAILY_BUDGET_USD_qa: "5" }, { DISCORD_WEBHOOK_Dev: "https://example.com/dev" }]) {
        const error = await failure({ env })
        expect(error.message).toContain(`${Object.keys(env)[0]} would never apply: the agent part of a per-agent variable is the agent's id upper-cased`)
      }
      const config = await loaded({ env: { AGENT_TIMEOUT_QA_ENGINEER: "5", DAILY_BUDGET_USD_QA_ENGINEER: "2" } })
      expect(config.agents.get("QA_ENGINEER")?.agentTimeoutMs).toBe(5_000)
      expect(config.settings.agentBudgetsUsd).toEqual({ QA_ENGINEER: 2 })
    })

    it("several bad values report one of them", async () => {
      const error = await failure({ env: { MAX_RETRIES: "0", AGENT_TIMEOUT: "-1" } })
      expect(error.message).toMatch(/MAX_RETRIES|AGENT_TIMEOUT/)
    })
  })

  describe("a time no timer can hold (over 2^31-1 ms, 24.8 days) is rejected, naming the variable and its largest value", () => {
    const TIMERS = [
      "PROCESS_MONITOR_INTERVAL",
      "AGENT_TIMEOUT",
      "INITIAL_RETRY_DELAY",
      "ORCHESTRATOR_INTERVAL",
      "LOG_MAINTENANCE_INTERVAL",
      "AGENT_STALL_TIMEOUT",
      "PROGRESS_INTERVAL",
      "RESOURCE_SAMPLE_INTERVAL"
    ] as const

    it.each(TIMERS)("%s=9999999", async (name) => {
      const error = await failure({ env: { [name]: "9999999" } })
      expect(error.message).toBe(
        `${name}=9999999 is too long: timers hold at most 2147483.647 seconds (24.8 days). ` +
          "Fix it in the environment, .env or .claude/config/daemon.conf"
      )
    })

    it.each(TIMERS)("%s=2147483.647 (the largest) is accepted, one millisecond more is not", async (name) => {
      // One retry at most, so the retry delay is never doubled.
      const settings = (await loaded({ env: { [name]: "2147483.647", MAX_RETRIES: "2" } })).settings
      expect(Object.values(settings)).toContain(2_147_483_647)
      const error = await failure({ env: { [name]: "2147483.648", MAX_RETRIES: "2" } })
      expect(error.message).toContain(`${name}=2147483.648 is too long: timers hold at most 2147483.647 seconds (24.8 days)`)
    })

    it("a value of hundreds of digits is too long, not infinite", async () => {
      const huge = "9".repeat(400)
      const error = await failure({ env: { AGENT_TIMEOUT: huge } })
      expect(error.message).toContain(`AGENT_TIMEOUT=${huge} is too long`)
    })

    it("AGENT_KILL_GRACE: at most 1073711.823 seconds, since 'daemon start' waits 60 s plus twice the grace in one timer", async () => {
      expect((await loaded({ env: { AGENT_KILL_GRACE: "1073711.823" } })).settings.killGraceMs).toBe(1_073_711_823)
      const error = await failure({ env: { AGENT_KILL_GRACE: "1073711.824" } })
      expect(error.message).toBe(
        "AGENT_KILL_GRACE=1073711.824 is too long: it can be at most 1073711.823 seconds (12.4 days), since 'daemon start' " +
          "waits 60 seconds plus twice the grace for the daemon to be ready, and timers hold at most 2147483.647 seconds (24.8 days). " +
          "Fix it in the environment, .env or .claude/config/daemon.conf"
      )
    })

    it("from .env and daemon.conf too", async () => {
      writeEnv("AGENT_TIMEOUT=3000000\n")
      expect((await failure()).message).toMatch(/^AGENT_TIMEOUT=3000000 is too long: /)
      fs.rmSync(path.join(project, ".env"))
      writeConf("PROGRESS_INTERVAL=3000000\n")
      expect((await failure()).message).toMatch(/^PROGRESS_INTERVAL=3000000 is too long: /)
    })

    it("INITIAL_RETRY_DELAY doubled up to the last retry must fit: the message gives the largest delay and the largest MAX_RETRIES", async () => {
      // 5 s doubled 18 times (MAX_RETRIES=20) is 15.2 days; 19 times is 30.3 days.
      expect((await loaded({ env: { MAX_RETRIES: "20" } })).settings.maxRetries).toBe(20)
      const error = await failure({ env: { MAX_RETRIES: "21" } })
      expect(error.message).toBe(
        "INITIAL_RETRY_DELAY=5 is too long for MAX_RETRIES=21: the wait before the last attempt is 5 seconds doubled 19 times, " +
          "and timers hold at most 2147483.647 seconds (24.8 days); with MAX_RETRIES=21, INITIAL_RETRY_DELAY can be at most " +
          "4.095 seconds, or with INITIAL_RETRY_DELAY=5, MAX_RETRIES at most 20. Fix it in the environment, .env or .claude/config/daemon.conf"
      )
      expect((await loaded({ env: { MAX_RETRIES: "21", INITIAL_RETRY_DELAY: "4.095" } })).settings.maxRetries).toBe(21)
      // Without a delay any number of attempts is fine.
      expect((await loaded({ env: { MAX_RETRIES: "100000", INITIAL_RETRY_DELAY: "0" } })).settings.maxRetries).toBe(100_000)
      expect((await failure({ env: { MAX_RETRIES: "100000" } })).message).toContain("INITIAL_RETRY_DELAY can be at most 0 seconds")
    })

    it("ages compared with files' times, and values no timer waits for in full, may be longer", async () => {
      const settings = (
        await loaded({
          env: {
            LOG_RETENTION_DAYS: "36500",
            LOG_COMPRESS_AFTER_HOURS: "100000",
            PROCESSED_RETENTION_DAYS: "3650",
            USAGE_LIMIT_COOLDOWN: "9999999",
            SCALE_INTERVAL: "9999999"
          }
        })
      ).settings
      expect(settings.logRetentionMs).toBe(36_500 * 86_400_000)
      expect(settings.logCompressAfterMs).toBe(100_000 * 3_600_000)
      expect(settings.processedRetentionMs).toBe(3_650 * 86_400_000)
      expect(settings.usageLimitCooldownMs).toBe(9_999_999_000)
      expect(settings.scaleIntervalMs).toBe(9_999_999_000)
    })
  })

  describe(".env and daemon.conf are parsed, never executed", () => {
    it("AGENT_COMMAND=$(touch pwned) creates no file and keeps the literal text", async () => {
      const pwned = path.join(project, "pwned")
      writeEnv(`AGENT_COMMAND=$(touch ${pwned})\nB=\`touch ${pwned}\`\n`)
      writeConf(`ORCHESTRATOR_INTERVAL=$(touch ${pwned})\n`)
      const cwdPwned = path.resolve("pwned")
      const existedInCwd = fs.existsSync(cwdPwned)
      const config = await loaded({ env: { ORCHESTRATOR_INTERVAL: "1" } })
      expect(config.settings.agentCommand).toEqual(["$(touch", `${pwned})`])
      expect(fs.existsSync(pwned)).toBe(false)
      expect(fs.readdirSync(project).sort()).toEqual([".claude", ".env"])
      if (!existedInCwd) expect(fs.existsSync(cwdPwned)).toBe(false)
    })

    it("the relative form $(touch pwned) is kept literally", async () => {
      writeEnv("AGENT_COMMAND=$(touch pwned)\n")
      const config = await loaded()
      expect(config.settings.agentCommand).toEqual(["$(touch", "pwned)"])
      expect(fs.existsSync(path.join(project, "pwned"))).toBe(false)
    })

    it("a bad value made of command substitution is reported literally", async () => {
      const pwned = path.join(project, "pwned")
      writeEnv(`MAX_RETRIES=$(touch ${pwned})\n`)
      const error = await failure()
      expect(error.message).toContain("MAX_RETRIES")
      expect(error.message).toContain("$(touch")
      expect(fs.existsSync(pwned)).toBe(false)
    })
  })

  describe("warnings", () => {
    it("garbage lines of .env and daemon.conf are reported with their line numbers", async () => {
      writeEnv("MAX_RETRIES=2\nnot a setting\n")
      writeConf("# conf\nAGENT_TIMEOUT='unterminated\n")
      const config = await loaded()
      expect(config.settings.maxRetries).toBe(2)
      expect(config.settings.agentTimeoutMs).toBe(1_800_000)
      expect(config.warnings).toHaveLength(2)
      expect(config.warnings[0]).toMatch(/^\.env line 2 ignored/)
      expect(config.warnings[1]).toMatch(/daemon\.conf line 2 ignored/)
    })

    it("a .env that is a directory is a warning, not a failure", async () => {
      fs.mkdirSync(path.join(project, ".env"))
      const config = await loaded()
      expect(config.settings).toEqual(defaultSettings)
      expect(config.warnings).toEqual([".env is a directory, not a regular file; its settings were ignored"])
    })

    it("a .env that is a FIFO is skipped at once: reading it would block until a writer came", async () => {
      execFileSync("mkfifo", [path.join(project, ".env")])
      const config = await loaded()
      expect(config.settings).toEqual(defaultSettings)
      expect(config.warnings).toEqual([".env is a FIFO, not a regular file; its settings were ignored"])
    })

    it("a .env over 1 MiB is not read", async () => {
      writeEnv("MAX_RETRIES=2\n" + "#".repeat(1024 * 1024))
      const config = await loaded()
      expect(config.settings.maxRetries).toBe(3)
      expect(config.warnings).toEqual([".env is 1048590 bytes, over the 1048576 byte limit; its settings were ignored"])
    })

    it("a symlinked .env is followed (a common way to share settings)", async () => {
      const shared = path.join(project, "shared.env")
      fs.writeFileSync(shared, "MAX_RETRIES=2\n")
      fs.symlinkSync(shared, path.join(project, ".env"))
      const config = await loaded()
      expect(config.settings.maxRetries).toBe(2)
      expect(config.warnings).toEqual([])
    })

    it("missing files give no warnings", async () => {
      expect((await loaded()).warnings).toEqual([])
    })
  })

  describe("layers", () => {
    it.effect("DaemonConfig.layer provides the loaded configuration", () =>
      Effect.gen(function*() {
        const config = yield* DaemonConfig
        expect(config.settings.maxConcurrent).toBe(6)
      }).pipe(Effect.provide(DaemonConfig.layer({ project, env: { MAX_CONCURRENT_AGENTS: "6" } }))))

    it.effect("DaemonConfig.layerSettings fills in defaults", () =>
      Effect.gen(function*() {
        const config = yield* DaemonConfig
        expect(config.settings).toEqual({ ...defaultSettings, parallel: true })
        expect(config.paths.root).toBe(path.resolve(project))
      }).pipe(Effect.provide(DaemonConfig.layerSettings(project, { parallel: true }))))
  })
})
