/**
 * Parallel scheduling against the real CLI (reference §4, acceptance scenarios S30–S35): agents
 * overlap, one job per agent, no head-of-line blocking, the global cap, sequential mode, and the
 * slot file's shape and validity.
 */
import * as fs from "node:fs"
import { describe, expect, it } from "vitest"
import {
  archivedTriggers,
  busyAgents,
  ISO_UTC,
  maxOverlap,
  queueFiles,
  readSlots,
  runsOf,
  slotsPath,
  startForeground,
  statOf
} from "../support/daemonHelpers.js"
import { daemonLog, records, type TestProject, trigger, useProjects, waitFor } from "../support/project.js"

const projects = useProjects()

const archivedCount = (p: TestProject, n: number, timeoutMs = 20_000) =>
  waitFor(() => archivedTriggers(p).length >= n && queueFiles(p).length === 0, {
    timeoutMs,
    what: `${n} archived triggers and an empty queue`
  })

/** The most busy slots seen at once until three triggers are archived and the queue is empty. */
const maxBusyUntilThreeArchived = async (p: TestProject) => {
  let maxBusy = 0
  await waitFor(() => {
    maxBusy = Math.max(maxBusy, busyAgents(readSlots(p)).length)
    return archivedTriggers(p).length === 3 && queueFiles(p).length === 0
  }, { what: "three archived triggers", intervalMs: 20 })
  return maxBusy
}

describe("parallel execution", () => {
  it("S30: runs three agents at the same time, each in its own busy slot, all idle afterwards", async () => {
    const p = projects.make()
    await startForeground(p)
    const agents = ["junior-dev-a", "junior-dev-b", "qa-engineer"]
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "sleep=3", { context: { ticket: "52" } }))
    p.drop("junior-dev-b-work-1", trigger("junior-dev-b", "sleep=3", { ticket: 7 }))
    p.drop("qa-engineer-work-1", trigger("qa-engineer", "sleep=3"))

    // During the run: three busy slots, each with the agent's own pid.
    const during = await waitFor(() => {
      const slots = readSlots(p)
      const busy = busyAgents(slots)
      return busy.length === 3 && busy.every((a) => slots![a]!.pid !== null) ? slots : undefined
    }, { what: "three busy slots with pids" })
    expect(busyAgents(during)).toEqual([...agents].sort())
    const starts = await waitFor(() => {
      const s = records(p).filter((r) => r.kind === "start")
      return s.length === 3 ? s : undefined
    }, { what: "three agent starts" })
    for (const agent of agents) {
      const slot = during[agent]!
      const run = starts.find((r) => r.agent === agent)!
      expect(slot.status).toBe("busy")
      expect(typeof slot.pid).toBe("string")
      expect(slot.pid).toBe(String(run.pid))
      // The agent leads its own process group.
      expect(statOf(run.pid)?.pgid).toBe(run.pid)
      expect(slot.started_at).toMatch(ISO_UTC)
      expect(Math.abs(Date.parse(slot.started_at!) - Date.now())).toBeLessThan(30_000)
    }
    expect(during["junior-dev-a"]!.ticket).toBe("52")
    expect(during["junior-dev-b"]!.ticket).toBe("7")
    expect(during["qa-engineer"]!.ticket).toBeNull()

    await archivedCount(p, 3)
    const runs = runsOf(records(p))
    expect(runs).toHaveLength(3)
    expect(maxOverlap(runs)).toBe(3)
    const after = await waitFor(() => {
      const slots = readSlots(p)
      return busyAgents(slots).length === 0 ? slots : undefined
    }, { what: "all slots idle" })
    for (const agent of agents) {
      expect(after![agent]).toMatchObject({ status: "idle", pid: null, ticket: null, started_at: null })
    }
  })

  it("S31: two triggers for the same agent run one after the other, in queue order", async () => {
    const p = projects.make()
    // Both queued before the daemon starts: the backlog path, ordered by creation time.
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "sleep=1.5"))
    p.drop("junior-dev-a-work-2", trigger("junior-dev-a", "sleep=1.5"))
    await startForeground(p)
    await archivedCount(p, 2)
    const runs = runsOf(records(p))
    expect(runs.map((r) => r.trigger)).toEqual(["junior-dev-a-work-1", "junior-dev-a-work-2"])
    expect(runs[0]!.end).toBeDefined()
    expect(runs[1]!.start > runs[0]!.end!).toBe(true)
    expect(maxOverlap(runs)).toBe(1)
  })

  it("S31 (live): a second trigger dropped while the agent runs waits for the first to end", async () => {
    const p = projects.make()
    await startForeground(p)
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "sleep=2"))
    await waitFor(() => records(p).some((r) => r.kind === "start"), { what: "the first run to start" })
    p.drop("junior-dev-a-work-2", trigger("junior-dev-a", "sleep=0.2"))
    await archivedCount(p, 2)
    const runs = runsOf(records(p))
    expect(runs.map((r) => r.trigger)).toEqual(["junior-dev-a-work-1", "junior-dev-a-work-2"])
    expect(runs[1]!.start > runs[0]!.end!).toBe(true)
  })

  it("S32: a busy agent's queued trigger does not block another agent's trigger behind it", async () => {
    const p = projects.make()
    await startForeground(p)
    p.drop("junior-dev-a-work-0", trigger("junior-dev-a", "sleep=3"))
    await waitFor(() => busyAgents(readSlots(p)).includes("junior-dev-a") && records(p).length > 0, {
      what: "junior-dev-a to be busy"
    })
    // Queue order: a(n1) first, then b(n2).
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "sleep=0.2"))
    p.drop("junior-dev-b-work-2", trigger("junior-dev-b", "sleep=0.2"))
    await archivedCount(p, 3)
    const runs = runsOf(records(p))
    const a0 = runs.find((r) => r.trigger === "junior-dev-a-work-0")!
    const a1 = runs.find((r) => r.trigger === "junior-dev-a-work-1")!
    const b2 = runs.find((r) => r.trigger === "junior-dev-b-work-2")!
    // b ran while a(n0) was still running, before the waiting a(n1).
    expect(b2.start < a0.end!).toBe(true)
    expect(b2.start < a1.start).toBe(true)
    expect(a1.start > a0.end!).toBe(true)
  })

  it("while an agent's trigger waits for a retry, its slot runs the agent's next trigger", async () => {
    const p = projects.make({ INITIAL_RETRY_DELAY: "3", MAX_RETRIES: "2" })
    await startForeground(p)
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "fail-first"))
    // Attempt 1 failed; attempt 2 waits 3 s, and meanwhile the slot is free.
    await waitFor(() =>
      /FINISH: junior-dev-a exited with code 7 on junior-dev-a-work-1\.trigger \(attempt 1\/2/.test(daemonLog(p)) &&
      readSlots(p)?.["junior-dev-a"]?.status === "idle", { what: "attempt 1 to fail" })
    p.drop("junior-dev-a-work-2", trigger("junior-dev-a", "sleep=0.2"))
    await archivedCount(p, 2)
    const runs = runsOf(records(p))
    expect(runs.map((r) => `${r.trigger}#${r.attempt}`)).toEqual([
      "junior-dev-a-work-1#1",
      "junior-dev-a-work-2#1",
      "junior-dev-a-work-1#2"
    ])
    expect(maxOverlap(runs)).toBe(1)
  })

  it("S33: MAX_CONCURRENT_AGENTS=2 never runs more than two agents; the third starts after one ends", async () => {
    const p = projects.make({ MAX_CONCURRENT_AGENTS: "2" })
    const fg = await startForeground(p)
    expect(daemonLog(p)).toContain("MODE: Parallel execution enabled (max concurrent: 2)")
    for (const a of ["junior-dev-a", "junior-dev-b", "qa-engineer"]) p.drop(`${a}-work-1`, trigger(a, "sleep=2"))
    const maxBusy = await maxBusyUntilThreeArchived(p)
    expect(maxBusy).toBeLessThanOrEqual(2)
    const runs = runsOf(records(p))
    expect(runs).toHaveLength(3)
    expect(maxOverlap(runs)).toBe(2)
    const [first, second, third] = runs
    const firstEnd = [first!.end!, second!.end!].reduce((m, e) => (e < m ? e : m))
    expect(third!.start > firstEnd).toBe(true)
    expect(fg.hasExited()).toBe(false)
  })

  it("sequential mode (PARALLEL_DAEMON=false) runs one agent at a time", async () => {
    const p = projects.make({ PARALLEL_DAEMON: "false" })
    await startForeground(p)
    expect(daemonLog(p)).toContain("MODE: Sequential execution")
    for (const a of ["junior-dev-a", "junior-dev-b", "qa-engineer"]) p.drop(`${a}-work-1`, trigger(a, "sleep=1"))
    const maxBusy = await maxBusyUntilThreeArchived(p)
    expect(maxBusy).toBe(1)
    const runs = runsOf(records(p))
    expect(runs).toHaveLength(3)
    expect(maxOverlap(runs)).toBe(1)
    // Sequential mode keeps the slot file too.
    const slots = readSlots(p)!
    expect(Object.keys(slots).sort()).toEqual(["junior-dev-a", "junior-dev-b", "qa-engineer"])
  })

  it("S34: a running agent's slot has the original shape; after completion it is idle with pid null", async () => {
    const p = projects.make()
    await startForeground(p)
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "sleep=2", { context: { ticket: 52 } }))
    const busy = await waitFor(() => {
      const s = readSlots(p)?.["junior-dev-a"]
      return s?.status === "busy" && s.pid !== null ? s : undefined
    }, { what: "a busy slot with a pid" })
    const run = await waitFor(() => records(p).find((r) => r.kind === "start"), { what: "the agent to start" })
    expect(busy.status).toBe("busy")
    expect(busy.pid).toMatch(/^\d+$/)
    expect(busy.pid).toBe(String(run.pid))
    expect(statOf(run.pid)?.pgid).toBe(run.pid)
    expect(busy.ticket).toBe("52")
    expect(busy.started_at).toMatch(ISO_UTC)
    await archivedCount(p, 1)
    const idle = await waitFor(() => {
      const s = readSlots(p)?.["junior-dev-a"]
      return s?.status === "idle" ? s : undefined
    }, { what: "the slot to be idle" })
    expect(idle).toMatchObject({ status: "idle", pid: null, ticket: null, started_at: null })
  })

  it("S35: twenty agents at once leave a slot file that always parses and holds all twenty", async () => {
    const p = projects.make()
    await startForeground(p)
    const agents = Array.from({ length: 20 }, (_, i) => `agent-${String(i).padStart(2, "0")}`)
    for (const a of agents) p.drop(`${a}-work-1`, trigger(a, "sleep=4"))
    let reads = 0
    let maxBusy = 0
    const bad: Array<string> = []
    await waitFor(() => {
      let text = ""
      try {
        text = fs.readFileSync(slotsPath(p), "utf8")
      } catch (e) {
        bad.push(`unreadable: ${(e as Error).message}`)
        return false
      }
      try {
        const slots = JSON.parse(text) as Record<string, { status: string; pid: string | null }>
        reads++
        const busy = Object.values(slots).filter((s) => s.status === "busy" && s.pid !== null).length
        maxBusy = Math.max(maxBusy, busy)
      } catch {
        bad.push(text)
      }
      return archivedTriggers(p).length === 20 && queueFiles(p).length === 0
    }, { what: "twenty archived triggers", intervalMs: 5, timeoutMs: 30_000 })
    expect(bad).toEqual([])
    expect(reads).toBeGreaterThan(50)
    expect(maxBusy).toBe(20)
    expect(maxOverlap(runsOf(records(p)))).toBe(20)
    const final = await waitFor(() => {
      const slots = readSlots(p)
      return slots && busyAgents(slots).length === 0 ? slots : undefined
    }, { what: "all twenty slots idle" })
    expect(Object.keys(final).sort()).toEqual(agents)
    for (const a of agents) expect(final[a]).toMatchObject({ status: "idle", pid: null })
  })
})
