/**
 * The attempt history through the real CLI (issue 6 part 5): `C/daemon/history.jsonl` gets one
 * line per finished attempt, `starforge history` reads and filters it, `status` counts the last hour.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { archivedTriggers, deadLetters, exitWithin, readSlots, startForeground } from "../support/daemonHelpers.js"
import { readText, trigger, useProjects, waitFor } from "../support/project.js"

const projects = useProjects()

const NO_STACK = /\n\s+at |\.ts:\d+|\.js:\d+/

describe("history", () => {
  it("records every finished attempt; history filters by agent and time; status counts the last hour", async () => {
    const p = projects.make({ MAX_RETRIES: "2" })
    const historyFile = path.join(p.claude, "daemon", "history.jsonl")
    const fg = await startForeground(p)
    const before = new Date().toISOString()
    p.drop("ok", trigger("alpha", "exit=0", { trace_id: "T-ok", context: { ticket: 7 } }))
    p.drop("flaky", trigger("beta", "fail-first"))
    p.drop("bad", trigger("gamma", "exit=3"))
    await waitFor(() => archivedTriggers(p).length === 2 && deadLetters(p).length === 1, { timeoutMs: 30_000, what: "the three triggers to finish" })
    // One more, stopped by the shutdown: an interrupted attempt.
    p.drop("long", trigger("delta", "sleep=30"))
    await waitFor(() => readSlots(p)?.["delta"]?.pid, { what: "delta to run" })
    fg.child.kill("SIGTERM")
    expect((await exitWithin(fg, 15_000)).code).toBe(0)

    const lines = readText(historyFile)!.trimEnd().split("\n").map((l) => JSON.parse(l))
    expect(lines).toHaveLength(6)
    const byKey = Object.fromEntries(lines.map((e) => [`${e.trigger}#${e.attempt}`, e]))
    expect(byKey["ok.trigger#1"]).toMatchObject({ agent: "alpha", outcome: "success", exit_code: 0, signal: null, ticket: "7", trace_id: "T-ok" })
    expect(byKey["flaky.trigger#1"]).toMatchObject({ agent: "beta", outcome: "failed", exit_code: 7 })
    expect(byKey["flaky.trigger#2"]).toMatchObject({ agent: "beta", outcome: "success", exit_code: 0 })
    expect(byKey["bad.trigger#1"]).toMatchObject({ outcome: "failed", exit_code: 3 })
    expect(byKey["bad.trigger#2"]).toMatchObject({ outcome: "failed", exit_code: 3 })
    expect(byKey["long.trigger#1"]).toMatchObject({ agent: "delta", outcome: "interrupted", exit_code: null })
    for (const e of lines) {
      expect(Date.parse(e.start)).toBeLessThanOrEqual(Date.parse(e.end))
      expect(e.start >= before).toBe(true)
      expect(e.log).toMatch(new RegExp(`^${p.claude}/logs/${e.agent}-\\d+(-\\d+)?\\.log$`))
      expect(readText(e.log)).toContain(`Agent: ${e.agent}`)
    }

    const all = await p.cli(["history", "--json"])
    expect(all.code).toBe(0)
    expect(JSON.parse(all.stdout)).toEqual(lines)
    const beta = JSON.parse((await p.cli(["history", "--agent", "beta", "--json"])).stdout)
    expect(beta.map((e: { attempt: number }) => e.attempt)).toEqual([1, 2])
    expect(JSON.parse((await p.cli(["history", "--since", "2999-01-01", "--json"])).stdout)).toEqual([])
    expect(JSON.parse((await p.cli(["history", "--since", before, "--json"])).stdout)).toHaveLength(6)
    expect(JSON.parse((await p.cli(["history", "--since", before.slice(0, 10), "--agent", "gamma", "--json"])).stdout)).toHaveLength(2)

    const text = await p.cli(["history", "--agent", "alpha"])
    expect(text.stdout.split("\n")[0]).toMatch(/^ENDED\s+AGENT\s+TRIGGER\s+ATTEMPT\s+OUTCOME\s+EXIT\s+TOOK\s+COST\s+PEAK MEM\s+CPU\s+RESUMED\s+LOG$/)
    expect(text.stdout).toMatch(/alpha\s+ok\.trigger\s+1\s+success\s+0\s+\d+s\s+-\s+(?:\d+ (?:B|KB|MB|GB)|-)\s+(?:\d+\.\ds|-)\s+-\s+\.claude\/logs\/alpha-\d+\.log/)

    for (const bad of ["yesterday", "2025-13-45", "1700000000"]) {
      const result = await p.cli(["history", "--since", bad])
      expect(result.code).toBe(1)
      expect(result.stderr.trim().split("\n")).toHaveLength(1)
      expect(result.stderr).toContain(`--since "${bad}" is not an ISO-8601 time`)
      expect(result.stderr).not.toMatch(NO_STACK)
    }
    const help = await p.cli(["history", "--help"])
    expect(help.code).toBe(0)
    expect(help.stdout).toContain("--since")
    expect(help.stdout).toContain("--agent")

    // Two successes and three failures ended in the last hour; the interrupted attempt is neither.
    const status = await p.cli(["daemon", "status", "--json"])
    expect(JSON.parse(status.stdout).last_hour).toEqual({ done: 2, failed: 3 })
    expect((await p.cli(["daemon", "status"])).stdout).toContain("Last hour: 2 done, 3 failed")
  })

  it("the table shows COST, PEAK MEM, CPU and the RESUMED session, '-' when unknown or in lines written before them; --json passes every field through", async () => {
    const p = projects.make()
    const historyFile = path.join(p.claude, "daemon", "history.jsonl")
    const base = {
      agent: "alpha",
      start: "2025-10-25T05:00:00.000Z",
      end: "2025-10-25T05:01:05.000Z",
      exit_code: 0,
      signal: null,
      ticket: null,
      trace_id: null
    }
    const entries = [
      { ...base, trigger: "sampled.trigger", attempt: 1, outcome: "success", log: `${p.claude}/logs/alpha-1.log`, peak_rss_bytes: 212 * 1024 * 1024, cpu_seconds: 12.34, cost_usd: 0.1234, resumed_session: "sess-9" },
      {
        ...base,
        trigger: "big.trigger",
        attempt: 2,
        outcome: "memory",
        exit_code: null,
        signal: "SIGTERM",
        log: `${p.claude}/logs/alpha-2.log`,
        peak_rss_bytes: Math.round(1.4 * 1024 ** 3),
        cpu_seconds: 80
      },
      { ...base, trigger: "unsampled.trigger", attempt: 1, outcome: "success", log: `${p.claude}/logs/alpha-3.log`, peak_rss_bytes: null, cpu_seconds: null },
      // Written before the daemon sampled: neither field.
      { ...base, trigger: "old.trigger", attempt: 1, outcome: "failed", exit_code: 1, log: `${p.claude}/logs/alpha-4.log` }
    ]
    fs.mkdirSync(path.dirname(historyFile), { recursive: true })
    fs.writeFileSync(historyFile, entries.map((e) => JSON.stringify(e) + "\n").join(""))

    const [text, json] = await Promise.all([p.cli(["history"]), p.cli(["history", "--json"])])
    expect(text.code).toBe(0)
    expect(text.stdout.trimEnd().split("\n")).toEqual([
      "ENDED                 AGENT  TRIGGER            ATTEMPT  OUTCOME  EXIT     TOOK    COST     PEAK MEM  CPU    RESUMED  LOG",
      "2025-10-25T05:01:05Z  alpha  sampled.trigger    1        success  0        1m 05s  $0.1234  212 MB    12.3s  sess-9   .claude/logs/alpha-1.log",
      "2025-10-25T05:01:05Z  alpha  big.trigger        2        memory   SIGTERM  1m 05s  -        1.4 GB    80.0s  -        .claude/logs/alpha-2.log",
      "2025-10-25T05:01:05Z  alpha  unsampled.trigger  1        success  0        1m 05s  -        -         -      -        .claude/logs/alpha-3.log",
      "2025-10-25T05:01:05Z  alpha  old.trigger        1        failed   1        1m 05s  -        -         -      -        .claude/logs/alpha-4.log"
    ])
    expect(json.code).toBe(0)
    expect(JSON.parse(json.stdout)).toEqual(entries)
  })
})
