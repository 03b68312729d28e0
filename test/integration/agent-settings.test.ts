/**
 * Per-agent settings through the real daemon (issue 24 part 1): `<VARIABLE>_<AGENT>` applies to
 * that agent only, not to another agent running alongside, whichever source sets it (`.env`,
 * `daemon.conf`, the environment, `--set`), and an agent's own value comes before the common one
 * even from a source of lower precedence. A bad per-agent value stops `daemon start` naming it.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { argvRecords, installArgvAgent } from "../support/argvAgent.js"
import { archivedTriggers, deadLetters, readPidFile, startForeground } from "../support/daemonHelpers.js"
import { daemonLog, readJson, records, type TestProject, trigger, useProjects, waitFor } from "../support/project.js"
import { historyLines } from "../support/resumableClaude.js"

const projects = useProjects()

const MB = 1024 * 1024

const writeDotEnv = (p: TestProject, lines: ReadonlyArray<string>) => fs.writeFileSync(path.join(p.root, ".env"), lines.join("\n") + "\n")

const writeDaemonConf = (p: TestProject, lines: ReadonlyArray<string>) => {
  fs.mkdirSync(path.join(p.claude, "config"), { recursive: true })
  fs.writeFileSync(path.join(p.claude, "config", "daemon.conf"), lines.join("\n") + "\n")
}

/** The outcome of each history line of `agent`, in order. */
const outcomes = (p: TestProject, agent: string) => historyLines(p).filter((l) => l["agent"] === agent).map((l) => l["outcome"])

/** Each agent's trigger finished: `done` archived, `dead` dead-lettered. */
const settled = (p: TestProject, done: number, dead: number) =>
  waitFor(() => archivedTriggers(p).length === done && deadLetters(p).length === dead, {
    timeoutMs: 30_000,
    what: `${done} archived and ${dead} dead-lettered`
  })

describe("per-agent settings", () => {
  it("AGENT_COMMAND_<AGENT> (.env): that agent runs its own command, the other the common one", async () => {
    const p = projects.make()
    const common = p.env["AGENT_COMMAND"]!
    const own = installArgvAgent(p, "--model cheap")
    p.env["AGENT_COMMAND"] = common
    writeDotEnv(p, [`AGENT_COMMAND_QA_ENGINEER=${own} --model cheap`])
    await startForeground(p)
    p.drop("dev-1", trigger("junior-dev", "sleep=1"))
    p.drop("qa-1", trigger("qa-engineer", "sleep=1"))
    await settled(p, 2, 0)
    expect(records(p).filter((r) => r.kind === "start").map((r) => r.agent)).toEqual(["junior-dev"])
    const qa = argvRecords(p)
    expect(qa.map((r) => r.agent)).toEqual(["qa-engineer"])
    expect(qa[0]!.args.slice(0, 2)).toEqual(["--model", "cheap"])
    expect(qa[0]!.args).toHaveLength(3)
  })

  it("AGENT_TIMEOUT_<AGENT> (daemon.conf, under a common AGENT_TIMEOUT from the environment): one agent times out, the other with the same sleep does not", async () => {
    const p = projects.make({ AGENT_TIMEOUT: "30", MAX_RETRIES: "1" })
    writeDaemonConf(p, ["AGENT_TIMEOUT_QA=1"])
    await startForeground(p)
    p.drop("dev-1", trigger("dev", "sleep=3"))
    p.drop("qa-1", trigger("qa", "sleep=3"))
    await settled(p, 1, 1)
    expect(deadLetters(p)).toEqual(["qa-1.trigger"])
    expect(outcomes(p, "qa")).toEqual(["timeout"])
    expect(outcomes(p, "dev")).toEqual(["success"])
    expect(daemonLog(p)).toMatch(/TIMEOUT: qa timed out after 1s on qa-1\.trigger/)
    expect(daemonLog(p)).not.toMatch(/TIMEOUT: dev/)
  })

  it("AGENT_STALL_TIMEOUT_<AGENT> (environment): one silent agent is stopped as stalled, the other is not", async () => {
    const p = projects.make({ AGENT_STALL_TIMEOUT_QA: "1", MAX_RETRIES: "1" })
    await startForeground(p)
    // The recording agent writes one line, then sleeps without a word.
    p.drop("dev-1", trigger("dev", "sleep=3"))
    p.drop("qa-1", trigger("qa", "sleep=3"))
    await settled(p, 1, 1)
    expect(outcomes(p, "qa")).toEqual(["stalled"])
    expect(outcomes(p, "dev")).toEqual(["success"])
    expect(readJson(path.join(p.triggers, "dead-letter", "qa-1.trigger.meta.json"))["failure_kind"]).toBe("stalled")
    expect(daemonLog(p)).not.toMatch(/STALLED: dev/)
  })

  it("MAX_RETRIES_<AGENT> (--set): the number of attempts before the dead-letter queue differs", async () => {
    const p = projects.make({ MAX_RETRIES: "1", INITIAL_RETRY_DELAY: "0.1" })
    const start = await p.cli(["daemon", "start", "--set", "MAX_RETRIES_QA=3"])
    expect(start.code, start.stdout + start.stderr).toBe(0)
    p.drop("dev-1", trigger("dev", "exit=3"))
    p.drop("qa-1", trigger("qa", "exit=3"))
    await settled(p, 0, 2)
    const starts = (agent: string) => records(p).filter((r) => r.kind === "start" && r.agent === agent).map((r) => r.attempt)
    expect(starts("dev")).toEqual([1])
    expect(starts("qa")).toEqual([1, 2, 3])
    expect(outcomes(p, "qa")).toEqual(["failed", "failed", "failed"])
    const log = daemonLog(p)
    expect(log).toMatch(/SPAWNED: qa started \(PID: \d+\) for qa-1\.trigger, attempt 3\/3/)
    expect(log).toMatch(/SPAWNED: dev started \(PID: \d+\) for dev-1\.trigger, attempt 1\/1/)
    expect(log).not.toMatch(/RETRY: .*dev-1\.trigger/)
    const meta = (name: string) => readJson(path.join(p.triggers, "dead-letter", `${name}.trigger.meta.json`))
    expect(meta("qa-1")).toMatchObject({ attempts: 3, failure_reason: "failed 3 times; last attempt exited with code 3" })
    expect(meta("dev-1")).toMatchObject({ attempts: 1, failure_reason: "failed 1 time; last attempt exited with code 3" })
    expect((await p.cli(["daemon", "stop"])).code).toBe(0)
  })

  it("INITIAL_RETRY_DELAY_<AGENT> (.env, under a common value from the environment): the RETRY line's delay differs", async () => {
    const p = projects.make({ INITIAL_RETRY_DELAY: "0.2" })
    writeDotEnv(p, ["INITIAL_RETRY_DELAY_QA=1.5"])
    await startForeground(p)
    p.drop("dev-1", trigger("dev", "fail-first"))
    p.drop("qa-1", trigger("qa", "fail-first"))
    await settled(p, 2, 0)
    const log = daemonLog(p)
    expect(log).toMatch(/RETRY: Attempt 2\/3 for qa-1\.trigger in 1\.5s/)
    expect(log).toMatch(/RETRY: Attempt 2\/3 for dev-1\.trigger in 0\.2s/)
    // And the delay was kept: qa's second attempt started at least that long after its first ended.
    const recs = records(p).filter((r) => r.agent === "qa")
    const firstEnd = recs.find((r) => r.kind === "end" && r.attempt === 1)!.ns
    const secondStart = recs.find((r) => r.kind === "start" && r.attempt === 2)!.ns
    expect(Number(secondStart - firstEnd) / 1e9).toBeGreaterThanOrEqual(1.4)
  })

  it("AGENT_MAX_MEMORY_MB_<AGENT> (daemon.conf): the agent holding ~200 MB over its own limit is stopped, the other holding as much is not", async () => {
    const p = projects.make({ RESOURCE_SAMPLE_INTERVAL: "0.5", MAX_RETRIES: "1" })
    const agent = path.join(p.root, "alloc-agent.sh")
    fs.writeFileSync(
      agent,
      `#!/bin/sh
node -e "const b = Buffer.alloc(200 * 1024 * 1024, 1); require('fs').writeFileSync(process.env.STARFORGE_PROJECT_ROOT + '/allocated-' + process.env.STARFORGE_AGENT_ID, String(b.length)); setTimeout(() => {}, 4000)"
echo done
`,
      { mode: 0o755 }
    )
    p.env["AGENT_COMMAND"] = agent
    writeDaemonConf(p, ["AGENT_MAX_MEMORY_MB_HOG=100"])
    await startForeground(p)
    p.drop("hog-1", trigger("hog"))
    p.drop("calm-1", trigger("calm"))
    await settled(p, 1, 1)
    expect(deadLetters(p)).toEqual(["hog-1.trigger"])
    expect(outcomes(p, "hog")).toEqual(["memory"])
    expect(outcomes(p, "calm")).toEqual(["success"])
    // calm used as much as hog, and was sampled while it did.
    const calm = historyLines(p).find((l) => l["agent"] === "calm")!
    expect(calm["peak_rss_bytes"] as number).toBeGreaterThan(150 * MB)
    expect(daemonLog(p)).toMatch(/MEMORY: hog was stopped for using \d+ MB of memory \(AGENT_MAX_MEMORY_MB is 100 MB\)/)
    expect(daemonLog(p)).not.toMatch(/MEMORY: calm/)
  })

  it("a bad per-agent value stops daemon start with one line naming it, exit 1", async () => {
    const p = projects.make()
    writeDotEnv(p, ["AGENT_TIMEOUT_QA=abc"])
    const start = await p.cli(["daemon", "start"])
    expect(start.code).toBe(1)
    const lines = start.stderr.trimEnd().split("\n")
    expect(lines, start.stderr).toHaveLength(1)
    expect(lines[0]).toMatch(/AGENT_TIMEOUT_QA="abc" is not valid: expected a number of seconds/)
    expect(start.stdout).not.toMatch(/Daemon started/)
    expect(readPidFile(p)).toBeUndefined()
    // The same from a flag, naming the key as written.
    fs.rmSync(path.join(p.root, ".env"))
    const flag = await p.cli(["daemon", "start", "--set", "MAX_RETRIES_JUNIOR_DEV=0"])
    expect(flag.code).toBe(1)
    expect(flag.stderr.trimEnd().split("\n")).toHaveLength(1)
    expect(flag.stderr).toMatch(/MAX_RETRIES_JUNIOR_DEV/)
  })
})
