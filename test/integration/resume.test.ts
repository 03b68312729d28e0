/**
 * Resume on retry through the real daemon and CLI (issue 24 part 3), with a fake `claude` that
 * issues sessions and checks the `--resume` it gets (test/support/resumableClaude.ts): a timed-out
 * attempt's retry resumes the session; an unknown session falls back to a fresh start in the same
 * attempt; a daemon SIGKILLed or stopped mid-attempt resumes after its restart; RESUME_ON_RETRY
 * (true, false, auto) decides; a custom AGENT_RESUME_COMMAND gets the session id; AGENT_MAX_TURNS
 * stops an agent as `budget`.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { archivedTriggers, deadLetters, queueFiles, startForeground } from "../support/daemonHelpers.js"
import { daemonLog, isAlive, readJson, readText, trigger, useProjects, waitFor } from "../support/project.js"
import {
  CLAUDE_FLAGS,
  claudeRuns,
  defaultResumePrompt,
  historyLines,
  sessionsFile,
  useResumableClaude,
  writeResumableClaude
} from "../support/resumableClaude.js"

const projects = useProjects()

/** A project whose agents time out after 2 s and get two attempts. */
const project = (settings: Record<string, string> = {}) =>
  projects.make({ AGENT_TIMEOUT: "2", MAX_RETRIES: "2", INITIAL_RETRY_DELAY: "0.2", ...settings })

/** The full prompt of a fresh run carries the trigger's message. */
const FULL_PROMPT = (message: string) => new RegExp(`^Message: ${message}$`, "m")

const runsOf = (p: Parameters<typeof claudeRuns>[0], stem: string) => claudeRuns(p).filter((r) => r.trigger === stem)

describe("resume on retry", () => {
  it("a timed-out attempt's retry resumes its session (RESUME_ON_RETRY=auto with a command named claude), with the continuation prompt", async () => {
    const p = project()
    useResumableClaude(p, "claude") // RESUME_ON_RETRY left at auto: the command's first word is .../claude
    await startForeground(p)
    p.drop("t1", trigger("dev", "runs=hang,ok"))
    await waitFor(() => archivedTriggers(p).length === 1, { timeoutMs: 30_000, what: "the trigger to be archived" })

    const runs = runsOf(p, "t1")
    expect(runs.map((r) => [r.attempt, r.action, r.resume])).toEqual([[1, "hang", null], [2, "ok", "sess-t1-1"]])
    const [first, second] = runs
    expect(first!.args.slice(0, -1)).toEqual([...CLAUDE_FLAGS])
    expect(first!.prompt).toMatch(FULL_PROMPT("runs=hang,ok"))
    expect(first!.session).toBe("sess-t1-1")
    // The default resume command: AGENT_COMMAND --resume <id>, then the continuation prompt.
    expect(second!.args).toEqual([...CLAUDE_FLAGS, "--resume", "sess-t1-1", defaultResumePrompt(second!.triggerFile)])
    expect(second!.prompt).not.toMatch(/Message:/)
    expect(second!.session).toBe("sess-t1-1")
    expect(second!.ended).toBe(true)

    const history = historyLines(p).filter((l) => l["trigger"] === "t1.trigger")
    expect(history).toHaveLength(2)
    expect(history[0]).toMatchObject({ attempt: 1, outcome: "timeout", session_id: "sess-t1-1", resumed_session: null })
    expect(history[1]).toMatchObject({ attempt: 2, outcome: "success", session_id: "sess-t1-1", resumed_session: "sess-t1-1" })
    expect(readText(history[1]!["log"] as string)).toMatch(/^Resumed session: sess-t1-1$/m)
    expect(readText(history[0]!["log"] as string)).not.toMatch(/Resumed session/)
    expect(daemonLog(p)).toMatch(/RETRY: Attempt 2\/2 \(resuming session sess-t1-1\) for t1\.trigger in /)
    const shown = JSON.parse((await p.cli(["history", "--json"])).stdout) as Array<Record<string, unknown>>
    expect(shown.map((e) => e["resumed_session"])).toEqual([null, "sess-t1-1"])
    // A trigger that is done with is forgotten.
    await waitFor(() => {
      const s = sessionsFile(p)
      return s !== undefined && !("t1.trigger" in s)
    }, { what: "sessions.json to forget the archived trigger" })
  })

  it("an unknown session falls back to a fresh start in the same attempt: a RESUME line, the full prompt, archived (not dead-lettered)", async () => {
    // Two attempts only: had the unknown session used up attempt 2, the trigger would be dead-lettered.
    const p = project({ RESUME_ON_RETRY: "true" })
    useResumableClaude(p, "node")
    await startForeground(p)
    p.drop("t2", trigger("dev", "runs=hang,ok forget"))
    await waitFor(() => archivedTriggers(p).length === 1, { timeoutMs: 30_000, what: "the trigger to be archived" })
    expect(deadLetters(p)).toEqual([])

    const runs = runsOf(p, "t2")
    expect(runs.map((r) => [r.attempt, r.resume, r.unknown, r.action])).toEqual([
      [1, null, false, "hang"],
      [2, "sess-t2-1", true, null],
      [2, null, false, "ok"]
    ])
    expect(runs[2]!.args.slice(0, -1)).toEqual([...CLAUDE_FLAGS])
    expect(runs[2]!.prompt).toMatch(FULL_PROMPT("runs=hang,ok forget"))
    expect(daemonLog(p)).toMatch(/RESUME: dev does not know session sess-t2-1; attempt 2 of t2\.trigger starts fresh/)
    // Each run has its history line: the refused resume, then the fresh start, both attempt 2.
    expect(historyLines(p).filter((l) => l["trigger"] === "t2.trigger").map((l) => [l["attempt"], l["outcome"], l["session_id"], l["resumed_session"]])).toEqual([
      [1, "timeout", "sess-t2-1", null],
      [2, "failed", null, "sess-t2-1"],
      [2, "success", "sess-t2-2", null]
    ])
  })

  it("a retry after a failure or a stall, and the run after a usage-limit pause, resume the session", async () => {
    const p = project({ AGENT_TIMEOUT: "60", AGENT_STALL_TIMEOUT_STILL: "1" })
    useResumableClaude(p, "claude")
    await startForeground(p)
    p.drop("failing", trigger("bad", "runs=fail,ok"))
    p.drop("stalling", trigger("still", "runs=hang,ok"))
    await waitFor(() => archivedTriggers(p).length === 2, { timeoutMs: 30_000, what: "the failing and stalling triggers to be archived" })
    // Dropped afterwards: its usage limit would pause the others (same command line).
    p.drop("limited", trigger("lim", "runs=limit,ok"))
    await waitFor(() => archivedTriggers(p).length === 3, { timeoutMs: 30_000, what: "the limited trigger to be archived" })
    expect(runsOf(p, "failing").map((r) => [r.attempt, r.resume, r.action])).toEqual([[1, null, "fail"], [2, "sess-failing-1", "ok"]])
    expect(runsOf(p, "stalling").map((r) => [r.attempt, r.resume, r.action])).toEqual([[1, null, "hang"], [2, "sess-stalling-1", "ok"]])
    expect(historyLines(p).filter((l) => l["trigger"] === "stalling.trigger").map((l) => [l["outcome"], l["resumed_session"]])).toEqual([
      ["stalled", null],
      ["success", "sess-stalling-1"]
    ])
    // The usage limit does not count as an attempt: the same attempt runs again, resuming.
    expect(runsOf(p, "limited").map((r) => [r.attempt, r.resume, r.action])).toEqual([[1, null, "limit"], [1, "sess-limited-1", "ok"]])
    expect(daemonLog(p)).toMatch(/LIMIT: .*limited\.trigger/)
  })

  it("a daemon SIGKILLed mid-attempt resumes the session after its restart", async () => {
    const p = project({ AGENT_TIMEOUT: "60" })
    useResumableClaude(p, "claude")
    const start = await p.cli(["daemon", "start"])
    expect(start.code, start.stdout + start.stderr).toBe(0)
    const pid = Number(/Daemon started \(PID: (\d+)\)/.exec(start.stdout)?.[1])
    p.drop("t3", trigger("dev", "runs=hang,ok"))
    // The session is on disk before the daemon dies.
    await waitFor(() => sessionsFile(p)?.["t3.trigger"]?.session_id === "sess-t3-1", { what: "sessions.json to hold the session" })
    const orphan = runsOf(p, "t3")[0]!.pid
    process.kill(pid, "SIGKILL")
    await waitFor(() => !isAlive(pid), { what: "the daemon to die" })
    expect(isAlive(orphan)).toBe(true)

    const again = await p.cli(["daemon", "start"])
    expect(again.code, again.stdout + again.stderr).toBe(0)
    await waitFor(() => archivedTriggers(p).length === 1, { timeoutMs: 30_000, what: "the trigger to be archived" })
    const runs = runsOf(p, "t3")
    expect(runs).toHaveLength(2)
    expect(runs[1]!.args).toEqual([...CLAUDE_FLAGS, "--resume", "sess-t3-1", defaultResumePrompt(runs[1]!.triggerFile)])
    expect(runs[1]!.ended).toBe(true)
    expect(isAlive(orphan)).toBe(false)
    expect(historyLines(p).filter((l) => l["trigger"] === "t3.trigger").at(-1)).toMatchObject({
      outcome: "success",
      resumed_session: "sess-t3-1"
    })
    expect((await p.cli(["daemon", "stop"])).code).toBe(0)
  })

  it("a graceful daemon stop mid-attempt, then a start, resumes the session (the interrupted attempt not counted)", async () => {
    const p = project({ AGENT_TIMEOUT: "60" })
    useResumableClaude(p, "claude")
    expect((await p.cli(["daemon", "start"])).code).toBe(0)
    p.drop("t4", trigger("dev", "runs=hang,ok"))
    // The agent reported its session (the daemon wrote it down) before the stop.
    await waitFor(() => sessionsFile(p)?.["t4.trigger"]?.session_id === "sess-t4-1", { what: "sessions.json to hold the session" })
    const stop = await p.cli(["daemon", "stop"])
    expect(stop.code, stop.stdout + stop.stderr).toBe(0)
    expect(queueFiles(p)).toEqual(["t4.trigger"])
    expect(sessionsFile(p)?.["t4.trigger"]).toMatchObject({ agent: "dev", session_id: "sess-t4-1" })

    expect((await p.cli(["daemon", "start"])).code).toBe(0)
    await waitFor(() => archivedTriggers(p).length === 1, { timeoutMs: 30_000, what: "the trigger to be archived" })
    const runs = runsOf(p, "t4")
    expect(runs.map((r) => [r.attempt, r.resume, r.action])).toEqual([[1, null, "hang"], [1, "sess-t4-1", "ok"]])
    expect(runs[1]!.args).toEqual([...CLAUDE_FLAGS, "--resume", "sess-t4-1", defaultResumePrompt(runs[1]!.triggerFile)])
    expect(historyLines(p).filter((l) => l["trigger"] === "t4.trigger").map((l) => [l["outcome"], l["resumed_session"]])).toEqual([
      ["interrupted", null],
      ["success", "sess-t4-1"]
    ])
    expect((await p.cli(["daemon", "stop"])).code).toBe(0)
  })

  it("RESUME_ON_RETRY=false starts fresh after a timeout, even for a command named claude; auto is false for another command", async () => {
    const p = project({ MAX_CONCURRENT_AGENTS: "3" })
    const claude = useResumableClaude(p, "claude")
    const node = writeResumableClaude(p, "node")
    fs.writeFileSync(
      path.join(p.root, ".env"),
      [
        "RESUME_ON_RETRY_OFF=false", // claude, told not to resume
        `AGENT_COMMAND_OTHER=${node}`, // not claude: auto is false
        "" // `on`: claude, auto: resumes (the control)
      ].join("\n")
    )
    expect(claude).toMatch(/\/claude /)
    await startForeground(p)
    p.drop("off", trigger("off", "runs=hang,ok"))
    p.drop("other", trigger("other", "runs=hang,ok"))
    p.drop("on", trigger("on", "runs=hang,ok"))
    await waitFor(() => archivedTriggers(p).length === 3, { timeoutMs: 40_000, what: "the three triggers to be archived" })

    for (const stem of ["off", "other"]) {
      const runs = runsOf(p, stem)
      expect(runs.map((r) => [r.attempt, r.resume, r.action]), stem).toEqual([[1, null, "hang"], [2, null, "ok"]])
      expect(runs[1]!.args.slice(0, -1), stem).toEqual([...CLAUDE_FLAGS])
      expect(runs[1]!.prompt, stem).toMatch(FULL_PROMPT("runs=hang,ok"))
      expect(runs[1]!.session, stem).toBe(`sess-${stem}-2`)
      expect(historyLines(p).filter((l) => l["trigger"] === `${stem}.trigger`).map((l) => l["resumed_session"]), stem).toEqual([null, null])
    }
    expect(runsOf(p, "on").map((r) => r.resume)).toEqual([null, "sess-on-1"])
    expect(daemonLog(p)).toMatch(/RETRY: Attempt 2\/2 for off\.trigger in /)
  })

  it("a custom AGENT_RESUME_COMMAND gets the session id in place of {session_id}", async () => {
    const p = project({ RESUME_ON_RETRY: "true" })
    useResumableClaude(p, "node")
    const file = path.join(p.root, "fake-agent.cjs")
    fs.mkdirSync(path.join(p.claude, "config"), { recursive: true })
    fs.writeFileSync(
      path.join(p.claude, "config", "daemon.conf"),
      `AGENT_RESUME_COMMAND='${process.execPath} ${file} --continue-session {session_id} --print'\nAGENT_RESUME_PROMPT=Go on with {trigger_file}, please\n`
    )
    await startForeground(p)
    p.drop("t6", trigger("dev", "runs=hang,ok"))
    await waitFor(() => archivedTriggers(p).length === 1, { timeoutMs: 30_000, what: "the trigger to be archived" })
    const runs = runsOf(p, "t6")
    expect(runs.map((r) => [r.attempt, r.resume, r.action])).toEqual([[1, null, "hang"], [2, "sess-t6-1", "ok"]])
    expect(runs[1]!.args).toEqual(["--continue-session", "sess-t6-1", "--print", `Go on with ${runs[1]!.triggerFile}, please`])
    expect(historyLines(p).at(-1)).toMatchObject({ outcome: "success", resumed_session: "sess-t6-1" })
  })

  it("AGENT_MAX_TURNS=2 stops an agent taking its turns slowly: outcome budget, the log footer names the limit", async () => {
    const p = project({ AGENT_MAX_TURNS: "2", MAX_RETRIES: "1", AGENT_TIMEOUT: "60" })
    useResumableClaude(p, "node")
    await startForeground(p)
    p.drop("t7", trigger("dev", "runs=slow turns=5 every=2"))
    await waitFor(() => deadLetters(p).length === 1, { timeoutMs: 30_000, what: "the trigger in the dead-letter queue" })
    const runs = runsOf(p, "t7")
    expect(runs).toHaveLength(1)
    expect(runs[0]!.ended).toBe(false)
    const history = historyLines(p)
    expect(history.map((l) => l["outcome"])).toEqual(["budget"])
    const log = readText(history[0]!["log"] as string)!
    expect(log).toMatch(/^Turns: [34], over the limit of 2$/m)
    expect(log).not.toMatch(/Turn 5/)
    expect(daemonLog(p)).toMatch(/BUDGET: dev was stopped after \d+ turns \(AGENT_MAX_TURNS is 2\) on t7\.trigger/)
    const meta = readJson(path.join(p.triggers, "dead-letter", "t7.trigger.meta.json"))
    expect(meta).toMatchObject({ failure_kind: "budget", session_id: "sess-t7-1" })
  })
})
