/**
 * Streaming agent output through the real CLI and daemon, driven by the fake stream-json agent
 * (`test/support/fakeClaude.ts`): live progress in the slot and in `status`/`slots show`,
 * PROGRESS lines, the job summary, `is_error`, garbage and huge lines, a stalled agent, and a
 * usage limit that pauses every agent and requeues the trigger without counting the attempt.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { archivedTriggers, deadLetters, readSlots, startForeground } from "../support/daemonHelpers.js"
import { useFakeClaude } from "../support/fakeClaude.js"
import { daemonLog, readJson, readText, trigger, useProjects, waitFor } from "../support/project.js"

const projects = useProjects()

const deadLetterMeta = (root: string, name: string) =>
  readJson(path.join(root, ".claude", "triggers", "dead-letter", `${name}.trigger.meta.json`))

describe("stream-json agents", () => {
  it("progress is live in the slot, status and slots show; PROGRESS lines; FINISH and status carry the summary and the day's cost", async () => {
    const p = projects.make({ PROGRESS_INTERVAL: "1" })
    useFakeClaude(p)
    await startForeground(p)
    p.drop("a-1", trigger("a", "scenario=steady sleep=8 every=0.3", { context: { ticket: "52" } }))
    const slot = await waitFor(() => {
      const s = readSlots(p)?.["a"]
      return s?.status === "busy" && (s["tool_uses"] as number) >= 2 ? s : undefined
    }, { what: "the slot to show tool uses" })
    expect(slot).toMatchObject({ session_id: "sess-a-1", model: "claude-test-1", last_tool: "Bash", cost_usd: null })
    expect(slot["turns"]).toBeGreaterThanOrEqual(2)
    expect(slot["tokens_in"]).toBeGreaterThan(0)
    const [show, showJson, status, statusJson] = await Promise.all([
      p.cli(["slots", "show", "a"]),
      p.cli(["slots", "show", "a", "--json"]),
      p.cli(["daemon", "status"]),
      p.cli(["daemon", "status", "--json"])
    ])
    expect(show.code).toBe(0)
    expect(show.stdout).toMatch(/PROGRESS/)
    expect(show.stdout, show.stdout).toMatch(/\d+ turns, \d+ tool uses \(last: Bash\)(?:, \$[\d.]+)?, last event \d+s ago/)
    expect(show.stdout).toContain("session_id: sess-a-1")
    expect(JSON.parse(showJson.stdout)).toMatchObject({ status: "busy", session_id: "sess-a-1", model: "claude-test-1" })
    expect(status.stdout).toMatch(/a\s+busy\s+\d+\s+52\s+.*\d+ turns, \d+ tool uses \(last: Bash\)/)
    expect(JSON.parse(statusJson.stdout).slots.a).toMatchObject({ status: "busy", last_tool: "Bash" })
    await waitFor(() => /PROGRESS: a running \d+s on a-1\.trigger \(attempt 1\/3\): \d+ turns, \d+ tool uses \(last: Bash\)/.test(daemonLog(p)), {
      what: "a PROGRESS line"
    })
    await waitFor(() => archivedTriggers(p).length === 1, { what: "the trigger to be archived" })
    expect(daemonLog(p)).toMatch(/FINISH: a completed a-1\.trigger successfully in [\d.]+s \(attempt 1\): \d+ turns, \$0\.0123, session sess-a-1/)
    const after = await p.cli(["daemon", "status", "--json"])
    expect(JSON.parse(after.stdout).cost_today).toMatchObject({ agents: { a: { cost_usd: 0.0123, attempts: 1 } }, total_usd: 0.0123 })
    expect((await p.cli(["daemon", "status"])).stdout).toMatch(/Cost today \(\d{4}-\d{2}-\d{2} UTC\): a \$0\.0123 \(1 attempt\); total \$0\.0123/)
  })

  it("is_error fails an exit-0 attempt; garbage and huge lines reach the log unchanged and never break the job; a silent agent is stopped as stalled", async () => {
    const p = projects.make({ MAX_RETRIES: "1", AGENT_STALL_TIMEOUT: "2", AGENT_TIMEOUT: "120" })
    useFakeClaude(p)
    await startForeground(p)
    p.drop("err-1", trigger("err", "scenario=is_error"))
    p.drop("junk-1", trigger("junk", "scenario=garbage"))
    p.drop("quiet-1", trigger("quiet", "scenario=stall sleep=60"))
    await waitFor(() => deadLetters(p).length === 2 && archivedTriggers(p).length === 1, {
      timeoutMs: 40_000,
      what: "two dead letters and one success"
    })
    expect(deadLetterMeta(p.root, "err-1")).toMatchObject({
      failure_kind: "agent_error",
      exit_code: 0,
      failure_reason: "failed 1 time; last attempt exited with code 0 but reported an error (error_during_execution: The tool failed badly)",
      session_id: "sess-err-1",
      turns: 3,
      cost_usd: 0.0123
    })
    const stalled = deadLetterMeta(p.root, "quiet-1")
    expect(stalled).toMatchObject({ failure_kind: "stalled", signal: "SIGTERM", exit_code: null })
    expect(stalled.failure_reason).toMatch(/stalled \(no output for [\d.]+s\)/)
    const log = daemonLog(p)
    expect(log).toMatch(/STALLED: quiet stalled \(no output for [\d.]+s\) on quiet-1\.trigger/)
    expect(log).not.toMatch(/TIMEOUT: quiet/)
    expect(log).toMatch(/FINISH: junk completed junk-1\.trigger successfully .*3 turns, \$0\.0123, session sess-junk-1/)
    // The raw bytes are in the agent log as written: the huge lines and the broken fragments too.
    const junkLog = readText(path.join(p.claude, "logs", fs.readdirSync(path.join(p.claude, "logs")).find((n) => n.startsWith("junk-"))!))!
    expect(junkLog).toContain("plain text from some wrapper\n")
    expect(junkLog).toContain(`{"type":"assistant","message":{"content":[{"type":"tool_use","name":"Bro\n`)
    expect(junkLog).toContain("y".repeat(3 * 1024 * 1024) + "\n")
    expect(junkLog).toContain("x".repeat(1024 * 1024))
    expect(junkLog).toContain("Warning: something on stderr\n")
  })

  it("a usage limit requeues the trigger without counting the attempt and pauses every agent until the reset time", async () => {
    const p = projects.make({ MAX_RETRIES: "1" })
    useFakeClaude(p)
    await startForeground(p)
    p.drop("a-1", trigger("a", "scenario=limit limit_in=10 limit_after=2"))
    await waitFor(() => /LIMIT: a hit a usage limit on a-1\.trigger/.test(daemonLog(p)), { what: "the LIMIT line" })
    // Back in the queue, and another agent's trigger waits behind the pause too.
    await waitFor(() => fs.existsSync(path.join(p.triggers, "a-1.trigger")), { what: "a-1 back in the queue" })
    p.drop("b-1", trigger("b", "scenario=success"))
    const status = await p.cli(["daemon", "status"])
    expect(status.stdout).toMatch(/Usage limit: waiting for usage limit until \d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z \(in \d+s; a: /)
    const json = JSON.parse((await p.cli(["daemon", "status", "--json"])).stdout)
    expect(json.usage_limits).toHaveLength(1)
    expect(json.usage_limits[0]).toMatchObject({ agent: "a", source: "reset", trigger: "a-1.trigger" })
    const until = Date.parse(json.usage_limits[0].until)
    await waitFor(() => archivedTriggers(p).length === 2, { timeoutMs: 30_000, what: "both triggers to succeed after the pause" })
    // Both ran after the reset time; a's second run is attempt 1 again (MAX_RETRIES=1 would dead-letter otherwise).
    const recs = (readText(p.records) ?? "").split("\n").filter((l) => l.startsWith("start "))
    expect(recs.map((l) => l.split(" ").slice(1, 3).join(" ")).sort()).toEqual(["a 1", "a 1", "b 1"])
    expect(deadLetters(p)).toEqual([])
    const log = daemonLog(p)
    const spawnedAfter = log.split("\n").filter((l) => l.includes("SPAWNED:")).slice(1).map((l) => Date.parse(l.slice(1, 25)))
    expect(spawnedAfter).toHaveLength(2)
    for (const t of spawnedAfter) expect(t).toBeGreaterThanOrEqual(until - 1_000)
  })
})
