/**
 * `starforge config show [--agent A] [--json] [--set K=V]` through the built CLI (issue 24 part 1):
 * each value with its source (flag, environment, `.env`, `daemon.conf`, default), an agent's own
 * `<VARIABLE>_<AGENT>` values with `--agent`, the JSON shape, hidden webhook secrets, a bad value
 * reported with exit 1, and its help.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { VARIABLES } from "../../src/config/DaemonConfig.js"
import { runCli } from "../support/project.js"

const made: Array<string> = []
afterEach(() => {
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
})

interface Row {
  readonly variable: string
  readonly key: string
  readonly value: string
  readonly source: string
}
interface Shown {
  readonly project: string
  readonly agent: string | null
  readonly valid: boolean
  readonly error: string | null
  readonly values: ReadonlyArray<Row>
}

/** A project with these `.env` and `daemon.conf` lines. */
const project = (dotEnv: ReadonlyArray<string> = [], conf: ReadonlyArray<string> = []) => {
  const root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "starforge-config-")))
  made.push(root)
  fs.mkdirSync(path.join(root, ".claude", "config"), { recursive: true })
  if (dotEnv.length > 0) fs.writeFileSync(path.join(root, ".env"), dotEnv.join("\n") + "\n")
  if (conf.length > 0) fs.writeFileSync(path.join(root, ".claude", "config", "daemon.conf"), conf.join("\n") + "\n")
  return root
}

/** `starforge config show <args> --project root` with nothing in the environment but PATH and `env`. */
const show = (root: string, args: ReadonlyArray<string> = [], env: Record<string, string> = {}) =>
  runCli(["config", "show", ...args, "--project", root], { env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", ...env } })

const showJson = async (root: string, args: ReadonlyArray<string> = [], env: Record<string, string> = {}) => {
  const result = await show(root, ["--json", ...args], env)
  return { ...result, json: JSON.parse(result.stdout) as Shown }
}

const row = (shown: Shown, variable: string) => shown.values.find((r) => r.variable === variable)

/** The text table's row of `key`: its cells. */
const textRow = (stdout: string, key: string) =>
  stdout.split("\n").find((l) => l.startsWith(`${key} `))?.trim().split(/\s{2,}/)

describe("config show", () => {
  it("reports each value's source: flag (--set), environment, .env, daemon.conf, default, by precedence", async () => {
    const root = project(
      ["PARALLEL_DAEMON=true", "MAX_RETRIES=2", "export PROGRESS_INTERVAL='30'"],
      ["MAX_CONCURRENT_AGENTS=4", "AGENT_TIMEOUT=1", "PARALLEL_DAEMON=false", "LOG_RETENTION_DAYS=3"]
    )
    const env = { AGENT_TIMEOUT: "900", STARFORGE_LOG_LEVEL: "debug" }
    const { code, json, stderr } = await showJson(root, ["--set", "MAX_RETRIES=7"], env)
    expect(code, stderr).toBe(0)
    expect(row(json, "MAX_RETRIES")).toEqual({ variable: "MAX_RETRIES", key: "MAX_RETRIES", value: "7", source: "flag" })
    expect(row(json, "AGENT_TIMEOUT")).toMatchObject({ value: "900", source: "environment" })
    expect(row(json, "STARFORGE_LOG_LEVEL")).toMatchObject({ value: "debug", source: "environment" })
    expect(row(json, "PARALLEL_DAEMON")).toMatchObject({ value: "true", source: ".env" })
    expect(row(json, "PROGRESS_INTERVAL")).toMatchObject({ value: "30", source: ".env" })
    expect(row(json, "MAX_CONCURRENT_AGENTS")).toMatchObject({ value: "4", source: "daemon.conf" })
    expect(row(json, "LOG_RETENTION_DAYS")).toMatchObject({ value: "3", source: "daemon.conf" })
    expect(row(json, "INITIAL_RETRY_DELAY")).toMatchObject({ value: "5", source: "default" })

    const text = await show(root, ["--set", "MAX_RETRIES=7"], env)
    expect(text.code).toBe(0)
    expect(text.stdout).toContain(`Settings in ${root}:`)
    expect(text.stdout).toMatch(/^VARIABLE\s+VALUE\s+SOURCE$/m)
    expect(textRow(text.stdout, "MAX_RETRIES")).toEqual(["MAX_RETRIES", "7", "flag"])
    expect(textRow(text.stdout, "AGENT_TIMEOUT")).toEqual(["AGENT_TIMEOUT", "900", "environment"])
    expect(textRow(text.stdout, "PARALLEL_DAEMON")).toEqual(["PARALLEL_DAEMON", "true", ".env"])
    expect(textRow(text.stdout, "MAX_CONCURRENT_AGENTS")).toEqual(["MAX_CONCURRENT_AGENTS", "4", "daemon.conf"])
    expect(textRow(text.stdout, "INITIAL_RETRY_DELAY")).toEqual(["INITIAL_RETRY_DELAY", "5", "default"])
    expect(textRow(text.stdout, "OTEL_EXPORTER_OTLP_ENDPOINT")).toEqual(["OTEL_EXPORTER_OTLP_ENDPOINT", "(empty)", "default"])
  })

  it("--agent shows the agent's own <VARIABLE>_<AGENT> key and source before the common one, other agents the common value; without --agent every agent's own values follow the common ones", async () => {
    const root = project(["DAILY_BUDGET_USD_QA_ENGINEER=2.50", "DAILY_BUDGET_USD_DEV=9"], ["AGENT_TIMEOUT_QA_ENGINEER=600", "MAX_RETRIES=5"])
    const env = { AGENT_TIMEOUT: "900", RESUME_ON_RETRY_QA_ENGINEER: "false" }
    const flags = ["--set", "AGENT_COMMAND_QA_ENGINEER=claude --print --model haiku"]

    const qa = await showJson(root, ["--agent", "qa-engineer", ...flags], env)
    expect(qa.code, qa.stderr).toBe(0)
    expect(qa.json.agent).toBe("qa-engineer")
    // Its own value wins although daemon.conf is below the environment.
    expect(row(qa.json, "AGENT_TIMEOUT")).toEqual({ variable: "AGENT_TIMEOUT", key: "AGENT_TIMEOUT_QA_ENGINEER", value: "600", source: "daemon.conf" })
    expect(row(qa.json, "AGENT_COMMAND")).toEqual({
      variable: "AGENT_COMMAND",
      key: "AGENT_COMMAND_QA_ENGINEER",
      value: "claude --print --model haiku",
      source: "flag"
    })
    expect(row(qa.json, "RESUME_ON_RETRY")).toMatchObject({ key: "RESUME_ON_RETRY_QA_ENGINEER", value: "false", source: "environment" })
    // What it has no value of its own for is the common value.
    expect(row(qa.json, "MAX_RETRIES")).toMatchObject({ key: "MAX_RETRIES", value: "5", source: "daemon.conf" })
    // Its budget, and not another agent's.
    const budgets = qa.json.values.filter((r) => r.variable === "DAILY_BUDGET_USD_<AGENT>")
    expect(budgets).toEqual([{ variable: "DAILY_BUDGET_USD_<AGENT>", key: "DAILY_BUDGET_USD_QA_ENGINEER", value: "2.50", source: ".env" }])

    const text = await show(root, ["--agent", "qa-engineer", ...flags], env)
    expect(text.code).toBe(0)
    expect(text.stdout).toContain(`Settings of qa-engineer in ${root}:`)
    expect(textRow(text.stdout, "AGENT_TIMEOUT_QA_ENGINEER")).toEqual(["AGENT_TIMEOUT_QA_ENGINEER", "600", "daemon.conf"])
    expect(textRow(text.stdout, "AGENT_TIMEOUT")).toBeUndefined()

    // Another agent, and no agent: the common values.
    for (const args of [["--agent", "dev"], []]) {
      const other = await showJson(root, [...args, ...flags], env)
      expect(other.code).toBe(0)
      expect(row(other.json, "AGENT_TIMEOUT"), args.join(" ")).toMatchObject({ key: "AGENT_TIMEOUT", value: "900", source: "environment" })
      expect(row(other.json, "AGENT_COMMAND"), args.join(" ")).toMatchObject({ key: "AGENT_COMMAND", source: "default" })
    }
    const dev = await showJson(root, ["--agent", "dev"], env)
    expect(dev.json.values.filter((r) => r.variable === "DAILY_BUDGET_USD_<AGENT>").map((r) => r.key)).toEqual(["DAILY_BUDGET_USD_DEV"])
    expect(dev.json.values.filter((r) => r.key.includes("QA_ENGINEER"))).toEqual([])
    // For all agents: the common values, then each agent's own, so none is hidden.
    const all = await showJson(root, flags, env)
    expect(all.json.agent).toBeNull()
    expect(all.json.values.filter((r) => r.key.endsWith("_QA_ENGINEER") && !r.key.startsWith("DAILY_BUDGET_USD"))).toEqual([
      { variable: "AGENT_COMMAND_<AGENT>", key: "AGENT_COMMAND_QA_ENGINEER", value: "claude --print --model haiku", source: "flag" },
      { variable: "AGENT_TIMEOUT_<AGENT>", key: "AGENT_TIMEOUT_QA_ENGINEER", value: "600", source: "daemon.conf" },
      { variable: "RESUME_ON_RETRY_<AGENT>", key: "RESUME_ON_RETRY_QA_ENGINEER", value: "false", source: "environment" }
    ])
    const allText = await show(root, flags, env)
    expect(textRow(allText.stdout, "AGENT_TIMEOUT")).toEqual(["AGENT_TIMEOUT", "900", "environment"])
    expect(textRow(allText.stdout, "AGENT_TIMEOUT_QA_ENGINEER")).toEqual(["AGENT_TIMEOUT_QA_ENGINEER", "600", "daemon.conf"])
    expect(all.json.values.filter((r) => r.variable === "DAILY_BUDGET_USD_<AGENT>").map((r) => r.key).sort()).toEqual([
      "DAILY_BUDGET_USD_DEV",
      "DAILY_BUDGET_USD_QA_ENGINEER"
    ])
  })

  it("--json has the shape {project, agent, valid, error, values: [{variable, key, value, source}]} with every variable once", async () => {
    const root = project()
    const { code, json, stdout } = await showJson(root)
    expect(code).toBe(0)
    expect(Object.keys(json).sort()).toEqual(["agent", "error", "project", "valid", "values"])
    expect(json).toMatchObject({ project: root, agent: null, valid: true, error: null })
    for (const r of json.values) {
      expect(Object.keys(r).sort(), JSON.stringify(r)).toEqual(["key", "source", "value", "variable"])
      expect(["flag", "environment", ".env", "daemon.conf", "default"]).toContain(r.source)
      expect(typeof r.value).toBe("string")
    }
    expect(json.values.map((r) => r.variable)).toEqual(Object.keys(VARIABLES))
    expect(json.values.every((r) => r.source === "default" && r.value === VARIABLES[r.variable as keyof typeof VARIABLES].default)).toBe(true)
    // Nothing but the JSON on stdout.
    expect(stdout.trim().startsWith("{")).toBe(true)
  })

  it("hides the secrets of webhook URLs (common, per agent, generic) in text and JSON", async () => {
    const root = project(["DISCORD_WEBHOOK_QA=https://discord.com/api/webhooks/456/QA-SECRET-TOKEN"])
    const env = {
      DISCORD_WEBHOOK_URL: "https://discord.com/api/webhooks/123/COMMON-SECRET-TOKEN",
      NOTIFY_WEBHOOK_URL: "https://hooks.example.com/notify/GENERIC-SECRET?token=abc"
    }
    const { code, json, stdout } = await showJson(root, [], env)
    expect(code).toBe(0)
    expect(stdout).not.toMatch(/SECRET|token=abc|webhooks\/\d/)
    expect(row(json, "DISCORD_WEBHOOK_URL")).toMatchObject({ value: "https://discord.com/… (hidden)", source: "environment" })
    expect(row(json, "NOTIFY_WEBHOOK_URL")).toMatchObject({ value: "https://hooks.example.com/… (hidden)", source: "environment" })
    expect(json.values.find((r) => r.key === "DISCORD_WEBHOOK_QA")).toEqual({
      variable: "DISCORD_WEBHOOK_<AGENT>",
      key: "DISCORD_WEBHOOK_QA",
      value: "https://discord.com/… (hidden)",
      source: ".env"
    })
    const text = await show(root, ["--agent", "qa"], env)
    expect(text.code).toBe(0)
    expect(text.stdout).not.toMatch(/SECRET|token=abc/)
    expect(text.stdout).toMatch(/^DISCORD_WEBHOOK_QA\s+https:\/\/discord\.com\/… \(hidden\)\s+\.env$/m)
  })

  it("a bad value: exit 1 with the message naming it, after the values; a bad --agent name: exit 1", async () => {
    const root = project(["AGENT_TIMEOUT_QA=abc"])
    const text = await show(root)
    expect(text.code).toBe(1)
    expect(text.stderr).toMatch(/^starforge: AGENT_TIMEOUT_QA="abc" is not valid: expected a number of seconds/m)
    expect(text.stderr).not.toMatch(/\n\s+at /)
    expect(text.stdout).toMatch(/^AGENT_TIMEOUT\s+1800\s+default$/m)

    const json = await showJson(root, ["--agent", "qa"])
    expect(json.code).toBe(1)
    expect(json.json.valid).toBe(false)
    expect(json.json.error).toMatch(/AGENT_TIMEOUT_QA="abc" is not valid/)
    expect(row(json.json, "AGENT_TIMEOUT")).toEqual({ variable: "AGENT_TIMEOUT", key: "AGENT_TIMEOUT_QA", value: "abc", source: ".env" })

    const common = await show(project(), ["--set", "MAX_RETRIES=many"])
    expect(common.code).toBe(1)
    expect(common.stderr).toMatch(/MAX_RETRIES="many" is not valid/)

    for (const bad of ["AGENT_RESUME_COMMAND=claude --print", "DAILY_BUDGET_USD_QA=lots", "RESUME_ON_RETRY_QA=sometimes", "AGENT_MAX_TURNS_QA=-1"]) {
      const key = bad.slice(0, bad.indexOf("="))
      const refused = await show(project(), ["--set", bad])
      expect(refused.code, bad).toBe(1)
      expect(refused.stderr, bad).toMatch(new RegExp(`^starforge: ${key}=.* is not valid`, "m"))
    }

    const badAgent = await show(project(), ["--agent", "../etc"])
    expect(badAgent.code).toBe(1)
    expect(badAgent.stderr.trimEnd().split("\n")).toHaveLength(1)
    expect(badAgent.stderr).toMatch(/not a valid agent name/)
  })

  it("--help describes the command and its options", async () => {
    const help = await runCli(["config", "show", "--help"])
    expect(help.code, help.stderr).toBe(0)
    expect(help.stdout).toMatch(/Show the effective settings and where each value came from/)
    for (const option of ["--agent", "--json", "--set", "--project"]) expect(help.stdout).toContain(option)
    const group = await runCli(["config", "--help"])
    expect(group.code).toBe(0)
    expect(group.stdout).toMatch(/show/)
  })
})
