/**
 * Issue 3, bad input: bad configuration (contract §2). A wrong value of any variable, from any
 * source, stops `daemon start` with one line naming the variable, the value and the expected
 * form, a non-zero exit, no stack trace and no daemon left. Garbage lines of `.env` and
 * `daemon.conf` are ignored with a warning; `$(…)` and backticks in them are text, never run.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { VARIABLES, type VariableName } from "../../src/config/DaemonConfig.js"
import { argvRecords, installArgvAgent, pwnedFiles } from "../support/argvAgent.js"
import { waitForOutcomes } from "../support/badInput.js"
import { daemonProcesses, pidFile, startForeground } from "../support/daemonHelpers.js"
import { daemonLog, projectProcesses, type TestProject, trigger, useProjects } from "../support/project.js"

const projects = useProjects()

type Source = "env" | ".env" | "daemon.conf" | "--set"
const SOURCES: ReadonlyArray<Source> = ["env", ".env", "daemon.conf", "--set"]

/** One wrong value per variable (the unit tests of `DaemonConfig` go through many more). */
const BAD_VALUES: Record<VariableName, string> = {
  PARALLEL_DAEMON: "maybe",
  MAX_CONCURRENT_AGENTS: "abc",
  PROCESS_MONITOR_INTERVAL: "0",
  AGENT_TIMEOUT: "-1",
  AGENT_KILL_GRACE: "NaN",
  MAX_RETRIES: "2.5",
  INITIAL_RETRY_DELAY: "5s",
  AGENT_COMMAND: `claude "unterminated`,
  ORCHESTRATOR_INTERVAL: "off",
  LOG_MAX_SIZE_MB: "-1",
  LOG_COMPRESS_AFTER_HOURS: "1d",
  LOG_RETENTION_DAYS: "forever",
  LOG_MAINTENANCE_INTERVAL: "0",
  PROCESSED_RETENTION_DAYS: "a month",
  STARFORGE_LOG_FORMAT: "xml",
  STARFORGE_LOG_LEVEL: "verbose",
  OTEL_EXPORTER_OTLP_ENDPOINT: "$(touch pwned-otel)",
  AGENT_STALL_TIMEOUT: "-5",
  PROGRESS_INTERVAL: "5m",
  USAGE_LIMIT_COOLDOWN: "0",
  DISCORD_WEBHOOK_URL: "$(touch pwned-discord)",
  NOTIFY_WEBHOOK_URL: "`touch pwned-notify`",
  RESOURCE_SAMPLE_INTERVAL: "5s",
  AGENT_MAX_MEMORY_MB: "-100",
  MIN_CONCURRENT_AGENTS: "0",
  SCALE_MAX_LOAD: "high",
  SCALE_MIN_FREE_MEMORY_MB: "1G",
  SCALE_INTERVAL: "0",
  AGENT_RESUME_COMMAND: "claude --resume",
  RESUME_ON_RETRY: "sometimes",
  AGENT_RESUME_PROMPT: "",
  AGENT_MAX_TURNS: "ten",
  DAILY_BUDGET_USD: "$5",
  AGENT_WORKTREES: "always",
  AGENT_WORKTREE_ON_FAILURE: "ignore",
  DASHBOARD_ADDRESS: "localhost"
}

/** `KEY=VALUE` as a line of `.env` / `daemon.conf` that reads back as exactly `value`. */
const line = (name: string, value: string) =>
  value.includes("'") ? `${name}="${value.replace(/[\\"]/g, "\\$&")}"` : `${name}='${value}'`

/** Sets `name=value` in `source` for the next start; returns the extra environment and arguments. */
const configure = (p: TestProject, source: Source, name: string, value: string): { env: Record<string, string>; args: Array<string> } => {
  // The project's environment must not hide a lower source.
  delete (p.env as Record<string, string>)[name]
  switch (source) {
    case "env":
      return { env: { [name]: value }, args: [] }
    case ".env":
      fs.writeFileSync(path.join(p.root, ".env"), `# settings\n${line(name, value)}\n`)
      return { env: {}, args: [] }
    case "daemon.conf":
      fs.mkdirSync(path.join(p.claude, "config"), { recursive: true })
      fs.writeFileSync(path.join(p.claude, "config", "daemon.conf"), `${line(name, value)}\n`)
      return { env: {}, args: [] }
    case "--set":
      return { env: {}, args: ["--set", `${name}=${value}`] }
  }
}

/** Runs `f` over `items`, at most `limit` at a time (the machine has 2 cores). */
const inBatches = async <A, B>(items: ReadonlyArray<A>, limit: number, f: (a: A) => Promise<B>): Promise<Array<B>> => {
  const results: Array<B> = []
  for (let i = 0; i < items.length; i += limit) results.push(...(await Promise.all(items.slice(i, i + limit).map(f))))
  return results
}

describe("a wrong value of each variable", () => {
  it("stops 'daemon start' (and --foreground) with one line naming the variable, the value and the expected form; exit 1; no daemon left", async () => {
    const cases = Object.entries(BAD_VALUES).map(([name, value], i) => ({
      name: name as VariableName,
      value,
      source: SOURCES[i % SOURCES.length]!,
      foreground: i % 4 === 1
    }))
    expect(Object.keys(BAD_VALUES).sort()).toEqual(Object.keys(VARIABLES).sort())

    const results = await inBatches(cases, 6, async (c) => {
      const p = projects.make()
      const { env, args } = configure(p, c.source, c.name, c.value)
      const result = await p.cli(["daemon", "start", ...(c.foreground ? ["--foreground"] : []), ...args], { env, timeoutMs: 30_000 })
      return { c, p, result }
    })
    for (const { c, p, result } of results) {
      const what = `${c.name}=${JSON.stringify(c.value)} from ${c.source}${c.foreground ? " (--foreground)" : ""}: ${result.stderr}`
      expect(result.code, what).toBe(1)
      expect(result.stdout, what).toBe("")
      expect(result.stderr, what).toMatch(/^starforge: [^\n]+\n$/)
      expect(result.stderr, what).toContain(`${c.name}=${JSON.stringify(c.value)} is not valid: expected ${VARIABLES[c.name].form}`)
      expect(daemonProcesses(p), what).toEqual([])
      expect(projectProcesses(p.root), what).toEqual([])
      expect(fs.existsSync(pidFile(p)), what).toBe(false)
      expect(pwnedFiles([p.root]), what).toEqual([])
    }
  })
})

describe("--set and restart", () => {
  it("--set with an unknown name (a typo), no value or no name is a one-line error, not silently ignored; no daemon starts", async () => {
    const p = projects.make()
    const cases = [
      { set: "MAX_CONCURENT_AGENTS=4", error: /^starforge: --set "MAX_CONCURENT_AGENTS" is not a configuration variable: use one of PARALLEL_DAEMON, MAX_CONCURRENT_AGENTS, / },
      { set: "MAX_RETRIES", error: /^starforge: --set "MAX_RETRIES" has no value: write --set MAX_RETRIES=VALUE\n$/ },
      { set: "=4", error: /^starforge: --set "" is not a configuration variable: / }
    ]
    const results = await Promise.all(cases.map((c) => p.cli(["daemon", "start", "--set", c.set])))
    results.forEach((result, i) => {
      const what = `--set ${cases[i]!.set}: ${result.stderr}`
      expect(result.code, what).toBe(1)
      expect(result.stderr, what).toMatch(/^starforge: [^\n]+\n$/)
      expect(result.stderr, what).toMatch(cases[i]!.error)
    })
    expect(daemonProcesses(p)).toEqual([])
    expect(fs.existsSync(pidFile(p))).toBe(false)
  })

  it("'daemon restart' with a wrong value fails with one line and leaves the running daemon running", async () => {
    const p = projects.make()
    expect((await p.cli(["daemon", "start"])).code).toBe(0)
    const pid = Number(fs.readFileSync(pidFile(p), "utf8").trim())
    fs.writeFileSync(path.join(p.root, ".env"), "MAX_RETRIES=abc\n")
    const restart = await p.cli(["daemon", "restart"])
    expect(restart.code).toBe(1)
    expect(restart.stderr).toMatch(/^starforge: MAX_RETRIES="abc" is not valid: [^\n]+\n$/)
    expect(restart.stdout).toBe("")
    expect(daemonProcesses(p).map((d) => d.pid)).toEqual([pid])
    fs.rmSync(path.join(p.root, ".env"))
    expect((await p.cli(["daemon", "stop"])).code).toBe(0)
  })
})

describe(".env and daemon.conf", () => {
  it("garbage lines are ignored with a warning naming the file and line; the good lines apply and the daemon runs triggers", async () => {
    const p = projects.make()
    delete (p.env as Record<string, string>)["MAX_CONCURRENT_AGENTS"]
    fs.writeFileSync(
      path.join(p.root, ".env"),
      Buffer.concat([
        Buffer.from(
          [
            "# settings", //                     1
            "this line is garbage", //           2
            "=no-key", //                        3
            "1BAD=x", //                         4
            "KEY WITH SPACES=1", //              5
            "export", //                         6
            `AGENT_TIMEOUT="5`, //               7
            "MAX_CONCURRENT_AGENTS=7", //        8
            ""
          ].join("\n")
        ),
        Buffer.from([0xff, 0xfe, 0x00, 0x41, 0x0a]), //   9: binary
        Buffer.from("   \n") //                           10: blank
      ])
    )
    fs.mkdirSync(path.join(p.claude, "config"), { recursive: true })
    fs.writeFileSync(path.join(p.claude, "config", "daemon.conf"), "MAX_RETRIES=2\n[section]\nORCHESTRATOR_INTERVAL='0\n")
    const result = await p.cli(["daemon", "start"])
    expect(result.code, result.stderr).toBe(0)
    expect(result.stdout).toMatch(/^Daemon started \(PID: \d+\)\n$/)
    const warnings = daemonLog(p).split("\n").filter((l) => / WARN: /.test(l)).map((l) => l.replace(/^.* WARN: /, ""))
    expect(warnings).toEqual([
      ".env line 2 ignored: expected KEY=VALUE",
      ".env line 3 ignored: expected KEY=VALUE",
      ".env line 4 ignored: expected KEY=VALUE",
      ".env line 5 ignored: expected KEY=VALUE",
      ".env line 6 ignored: expected KEY=VALUE",
      ".env line 7 ignored: unterminated quote in the value of AGENT_TIMEOUT",
      ".env line 9 ignored: expected KEY=VALUE",
      ".claude/config/daemon.conf line 2 ignored: expected KEY=VALUE",
      ".claude/config/daemon.conf line 3 ignored: unterminated quote in the value of ORCHESTRATOR_INTERVAL"
    ])
    expect(daemonLog(p)).toMatch(/MODE: Parallel execution enabled \(max concurrent: 7\)/)
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a"))
    await waitForOutcomes(p, { done: ["junior-dev-a-work-1"] })
    const stop = await p.cli(["daemon", "stop"])
    expect(stop.code, stop.stderr).toBe(0)
  })

  it("$(…) and backticks in .env and daemon.conf are literal text, never executed: AGENT_COMMAND's words reach the agent as written", async () => {
    const words = ["$(touch pwned-1)", "`touch", "pwned-2`", "$(touch pwned-3)", "$(touch", "pwned-4)", "a;touch pwned-5", "$HOME"]
    const commandLine = `"$(touch pwned-1)" \`touch pwned-2\` '$(touch pwned-3)' $(touch pwned-4) 'a;touch pwned-5' '$HOME'`
    const run = async (where: ".env" | "daemon.conf") => {
      const p = projects.make()
      const script = installArgvAgent(p)
      delete (p.env as Record<string, string>)["AGENT_COMMAND"]
      const text = [
        `AGENT_COMMAND=${script} ${commandLine}`,
        "UNRELATED=$(touch pwned-6)",
        "export OTHER=`touch pwned-7`",
        `QUOTED="$(touch pwned-8)"`,
        "$(touch pwned-9)",
        "`touch pwned-10`=x",
        ""
      ].join("\n")
      if (where === ".env") fs.writeFileSync(path.join(p.root, ".env"), text)
      else {
        fs.mkdirSync(path.join(p.claude, "config"), { recursive: true })
        fs.writeFileSync(path.join(p.claude, "config", "daemon.conf"), text)
      }
      const daemon = await startForeground(p)
      p.drop("junior-dev-a-work-1", trigger("junior-dev-a"))
      await waitForOutcomes(p, { done: ["junior-dev-a-work-1"] })
      const [record, ...more] = argvRecords(p)
      expect(more).toHaveLength(0)
      expect(record!.args.slice(0, -1), where).toEqual(words)
      expect(daemon.hasExited()).toBe(false)
      return p
    }
    const [a, b] = await Promise.all([run(".env"), run("daemon.conf")])
    expect(pwnedFiles([a.root, b.root, os.tmpdir(), os.homedir(), "/"])).toEqual([])
  })

  it("a wrong value written as $(…) or backticks in daemon.conf is reported as text and never run", async () => {
    const p = projects.make()
    delete (p.env as Record<string, string>)["MAX_RETRIES"]
    fs.mkdirSync(path.join(p.claude, "config"), { recursive: true })
    fs.writeFileSync(path.join(p.claude, "config", "daemon.conf"), "MAX_RETRIES=$(touch pwned-retries)\nAGENT_TIMEOUT=`touch pwned-timeout`\n")
    const result = await p.cli(["daemon", "start"])
    expect(result.code).toBe(1)
    expect(result.stderr).toMatch(/^starforge: [^\n]+\n$/)
    expect(result.stderr).toMatch(/MAX_RETRIES="\$\(touch pwned-retries\)" is not valid|AGENT_TIMEOUT="`touch pwned-timeout`" is not valid/)
    expect(pwnedFiles([p.root, os.tmpdir(), os.homedir(), "/"])).toEqual([])
    expect(daemonProcesses(p)).toEqual([])
  })

  it("a .env that is a FIFO or a directory never blocks the start: it is skipped with a warning", async () => {
    const fifo = projects.make()
    execFileSync("mkfifo", [path.join(fifo.root, ".env")])
    const dir = projects.make()
    fs.mkdirSync(path.join(dir.root, ".env"))
    const [a, b] = await Promise.all([fifo.cli(["daemon", "start"], { timeoutMs: 20_000 }), dir.cli(["daemon", "start"], { timeoutMs: 20_000 })])
    for (const [p, result, kind] of [[fifo, a, "a FIFO"], [dir, b, "a directory"]] as const) {
      expect(result.code, result.stderr).toBe(0)
      expect(daemonLog(p)).toContain(` WARN: .env is ${kind}, not a regular file; its settings were ignored\n`)
      expect((await p.cli(["daemon", "stop"])).code).toBe(0)
    }
  })
})
