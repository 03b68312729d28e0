/** The text of `daemon status`: the effective cap in the Mode line and the Machine line. */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { budgetLines, budgetsOf, machineLine, modeLine, statusText, waitingOf, waitingText } from "../../src/cli/status.js"
import { projectPaths } from "../../src/domain/ProjectPaths.js"
import type { CapacityView } from "../../src/resources/Capacity.js"

const GB = 1024 ** 3

const atHardCap: CapacityView = {
  effective_cap: 8,
  max_concurrent: 8,
  min_concurrent: 1,
  reason: null,
  changed_at: null,
  load_per_core: 0.42,
  available_memory_bytes: Math.round(12.3 * GB),
  checked_at: "2025-10-25T05:00:00Z"
}
const lowered: CapacityView = {
  ...atHardCap,
  effective_cap: 3,
  reason: "load 2.4 per core is over SCALE_MAX_LOAD 2",
  changed_at: "2025-10-25T04:59:30Z",
  load_per_core: 2.4
}

describe("modeLine", () => {
  it("shows the hard cap alone while the effective cap is at it, or without a capacity file", () => {
    expect(modeLine("parallel", 8, atHardCap)).toBe("Mode: parallel (max concurrent: 8)")
    expect(modeLine("parallel", 8, null)).toBe("Mode: parallel (max concurrent: 8)")
  })

  it("adds the effective cap and why while scaling holds it lower", () => {
    expect(modeLine("parallel", 8, lowered)).toBe(
      "Mode: parallel (max concurrent: 8; effective cap 3: load 2.4 per core is over SCALE_MAX_LOAD 2)"
    )
    expect(modeLine("parallel", 8, { ...lowered, reason: null })).toBe("Mode: parallel (max concurrent: 8; effective cap 3)")
  })

  it("sequential mode has no cap to show", () => {
    expect(modeLine("sequential", 1, { ...atHardCap, effective_cap: 1, max_concurrent: 1 })).toBe("Mode: sequential")
  })
})

describe("machineLine", () => {
  it("the load per core and the available memory of the daemon's last look", () => {
    expect(machineLine(atHardCap)).toBe("Machine: load 0.42 per core, 12.3 GB memory available")
    expect(machineLine({ ...atHardCap, available_memory_bytes: null })).toBe("Machine: load 0.42 per core")
    expect(machineLine({ ...atHardCap, load_per_core: null })).toBe("Machine: 12.3 GB memory available")
  })

  it("nothing without a look at the machine (scaling off) or without a capacity file", () => {
    expect(machineLine({ ...atHardCap, load_per_core: null, available_memory_bytes: null })).toBeUndefined()
    expect(machineLine(null)).toBeUndefined()
  })
})

describe("statusText", () => {
  let dir: string | undefined
  afterEach(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
    dir = undefined
  })

  const status = (running: boolean, capacity: CapacityView | null) => ({
    running,
    pid: running ? 4242 : null,
    mode: "parallel",
    max_concurrent: 8,
    uptime_seconds: running ? 65 : null,
    capacity,
    queue: { pending: 1, running: 3, done: 10, failed: 0, invalid: 0, dead_letter: 0 },
    slots: {},
    last_hour: { done: 4, failed: 1 },
    usage_limits: [],
    cost_today: { day: "2025-10-25", agents: {}, total_usd: 0 },
    waiting: [],
    waiting_total: 0,
    budgets: [],
    config_error: undefined
  })

  it("the Mode line carries the effective cap; the Machine line follows it while the daemon runs", () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-status-"))
    const paths = projectPaths(dir)
    expect(statusText(paths, status(true, lowered)).split("\n")).toEqual([
      "Daemon is running (PID: 4242), up 1m 05s",
      "Mode: parallel (max concurrent: 8; effective cap 3: load 2.4 per core is over SCALE_MAX_LOAD 2)",
      "Machine: load 2.4 per core, 12.3 GB memory available",
      "Queue: 1 pending, 3 running, 10 done, 0 failed (waiting to retry), 0 invalid, 0 dead-letter",
      "Last hour: 4 done, 1 failed",
      "Agents: none seen yet"
    ])
    // Scaling off: the daemon never looks at the machine, so no Machine line.
    expect(statusText(paths, status(true, { ...atHardCap, load_per_core: null, available_memory_bytes: null })).split("\n").slice(1, 3)).toEqual([
      "Mode: parallel (max concurrent: 8)",
      "Queue: 1 pending, 3 running, 10 done, 0 failed (waiting to retry), 0 invalid, 0 dead-letter"
    ])
    expect(statusText(paths, status(false, null)).split("\n").slice(0, 3)).toEqual([
      "Daemon is not running",
      "Mode: parallel (max concurrent: 8)",
      "Queue: 1 pending, 3 running, 10 done, 0 failed (waiting to retry), 0 invalid, 0 dead-letter"
    ])
  })
})

describe("waitingOf and the Waiting section of status --why", () => {
  let dir: string | undefined
  afterEach(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
    dir = undefined
  })

  it("without a daemon, each queued or claimed trigger waits because no daemon runs, in queue order", () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-status-"))
    const paths = projectPaths(dir)
    fs.mkdirSync(paths.triggers, { recursive: true })
    const write = (file: string, trigger: object, mtimeS: number) => {
      fs.writeFileSync(path.join(paths.triggers, file), JSON.stringify(trigger))
      fs.utimesSync(path.join(paths.triggers, file), mtimeS, mtimeS)
    }
    write("b.trigger", { to_agent: "qa", action: "test", ticket: "7" }, 1_700_000_200)
    write("a.processing", { to_agent: "dev", action: "build" }, 1_700_000_100)
    write("urgent.trigger", { to_agent: "dev", action: "fix", priority: "high" }, 1_700_000_300)
    const s = waitingOf(paths, false)
    expect(s.waiting_total).toBe(3)
    expect(s.waiting.map((w) => [w.trigger, w.agent, w.ticket, w.why["reason"]])).toEqual([
      ["urgent.trigger", "dev", null, "no_daemon"],
      ["a.trigger", "dev", null, "no_daemon"],
      ["b.trigger", "qa", "7", "no_daemon"]
    ])
    const text = waitingText({ running: false, ...s }).split("\n")
    expect(text[0]).toBe("Waiting (3):")
    expect(text[3]).toMatch(/^urgent\.trigger +dev +- +1 +no daemon runs \(start one with 'starforge daemon start'\)$/)
  })

  it("with a daemon, what its dispatcher wrote in waiting.json", () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-status-"))
    const paths = projectPaths(dir)
    fs.mkdirSync(paths.daemonDir, { recursive: true })
    const why = { reason: "agent_busy", text: "dev is busy with a.trigger since 2025-10-25T05:00:00Z", agent: "dev", trigger: "a.trigger", since: "2025-10-25T05:00:00Z" }
    fs.writeFileSync(
      path.join(paths.daemonDir, "waiting.json"),
      JSON.stringify({ updated_at: "2025-10-25T05:00:01.000Z", total: 1, waiting: [{ trigger: "b.trigger", agent: "dev", ticket: null, attempt: 1, why }] })
    )
    expect(waitingOf(paths, true)).toEqual({ waiting: [{ trigger: "b.trigger", agent: "dev", ticket: null, attempt: 1, why }], waiting_total: 1 })
    expect(waitingText({ running: true, waiting: [], waiting_total: 0 })).toBe("Waiting: nothing")
  })
})

describe("budgetsOf and the Daily budget lines", () => {
  it("each configured budget against today's cost; a spent one says until when nothing new starts", () => {
    const now = Date.parse("2025-10-25T05:00:00Z")
    const cost = { agents: { "qa-engineer": { cost_usd: 3.5 }, "junior-dev-a": { cost_usd: 1 } }, total_usd: 4.5 }
    const budgets = budgetsOf({ dailyBudgetUsd: 10, agentBudgetsUsd: { QA_ENGINEER: 3, REVIEWER: 2 } }, cost, now)
    expect(budgets).toEqual([
      { agent: null, budget_usd: 10, spent_usd: 4.5, spent: false, until: "2025-10-26T00:00:00Z" },
      { agent: "qa-engineer", budget_usd: 3, spent_usd: 3.5, spent: true, until: "2025-10-26T00:00:00Z" },
      { agent: "REVIEWER", budget_usd: 2, spent_usd: 0, spent: false, until: "2025-10-26T00:00:00Z" }
    ])
    expect(budgetLines(budgets)).toEqual([
      "Daily budget of all agents: $4.50 of $10.00 spent today",
      "Daily budget of qa-engineer: $3.50 of $3.00 spent today; spent, no new attempt starts until 2025-10-26T00:00:00Z",
      "Daily budget of REVIEWER: $0.0000 of $2.00 spent today"
    ])
    expect(budgetsOf({ dailyBudgetUsd: 0, agentBudgetsUsd: {} }, cost, now)).toEqual([])
  })
})
