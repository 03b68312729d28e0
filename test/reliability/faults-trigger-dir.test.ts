/**
 * Faults, "nothing lost": the trigger directory deleted (and re-created) under a running daemon,
 * and triggers dropped while no daemon runs.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { archivedTriggers, startForeground } from "../support/daemonHelpers.js"
import { daemonLog, records, trigger, useProjects, waitFor } from "../support/project.js"

const projects = useProjects()

/** Long enough that a periodic rescan cannot be what finds the triggers: only the watch can. */
const NO_RESCAN = { PROCESS_MONITOR_INTERVAL: "600" }

const archivedNames = (p: Parameters<typeof archivedTriggers>[0]) => archivedTriggers(p).map((n) => n.replace(/^\d{8}-\d{6}-/, "")).sort()

describe("the trigger directory removed while the daemon runs", () => {
  it("deleted and re-created: triggers written into the new directory run at once (the watch recovers)", async () => {
    const p = projects.make(NO_RESCAN)
    await startForeground(p)
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a"))
    await waitFor(() => archivedTriggers(p).length === 1, { what: "the first trigger archived" })
    fs.rmSync(p.triggers, { recursive: true })
    fs.mkdirSync(path.join(p.triggers, "staging"), { recursive: true })
    // One written at once (before the daemon can watch the new directory), one once it does.
    p.drop("junior-dev-b-work-2", trigger("junior-dev-b"))
    await waitFor(() => daemonLog(p).includes(`watching ${p.triggers} failed`), { what: "the daemon to notice" })
    p.drop("junior-dev-c-work-3", trigger("junior-dev-c"))
    const sent = Date.now()
    await waitFor(() => archivedTriggers(p).length === 2, { timeoutMs: 15_000, what: "both new triggers archived" })
    expect(Date.now() - sent).toBeLessThan(15_000)
    expect(archivedNames(p)).toEqual(["junior-dev-b-work-2.trigger", "junior-dev-c-work-3.trigger"])
    // The watch itself works again: a third trigger runs with no rescan to help.
    p.drop("junior-dev-a-work-4", trigger("junior-dev-a"))
    await waitFor(() => archivedTriggers(p).length === 3, { timeoutMs: 10_000, what: "a trigger dropped after the recovery archived" })
  })

  it("deleted and not re-created: the daemon creates it again, logs it, and takes triggers there", async () => {
    const p = projects.make(NO_RESCAN)
    const fg = await startForeground(p)
    fs.rmSync(p.triggers, { recursive: true })
    await waitFor(() => daemonLog(p).includes(`WARN: ${p.triggers} was removed; created again`) && fs.existsSync(p.triggers), {
      what: "the directory created again"
    })
    fs.mkdirSync(path.join(p.triggers, "staging"), { recursive: true })
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a"))
    await waitFor(() => archivedTriggers(p).length === 1, { timeoutMs: 10_000, what: "the trigger archived" })
    expect(fg.hasExited()).toBe(false)
  })
})

describe("triggers dropped while the daemon is down", () => {
  it("all run at start, in queue order: priority, then creation time (not name order)", async () => {
    const p = projects.make({ MAX_CONCURRENT_AGENTS: "1" })
    // Created in this order; names deliberately sort differently.
    const drops: ReadonlyArray<readonly [name: string, priority: string]> = [
      ["qa-engineer-z-1", "normal"],
      ["junior-dev-a-y-2", "low"],
      ["junior-dev-b-x-3", "normal"],
      ["qa-engineer-w-4", "high"],
      ["junior-dev-a-v-5", "normal"],
      ["junior-dev-b-u-6", "low"],
      ["qa-engineer-t-7", "normal"],
      ["junior-dev-a-s-8", "high"],
      ["junior-dev-b-r-9", "normal"],
      ["qa-engineer-q-10", "low"],
      ["junior-dev-a-p-11", "normal"],
      ["junior-dev-b-o-12", "high"]
    ]
    // File times tick coarsely (a few ms): each trigger is created again until it is strictly
    // newer than the one before, so creation order is unambiguous (ties would go by name).
    let previous = -1n
    for (const [name, priority] of drops) {
      const created = await waitFor(() => {
        const file = p.drop(name, trigger(name.replace(/-[a-z]-\d+$/, ""), "", { priority }))
        const birth = fs.statSync(file, { bigint: true }).birthtimeNs
        if (birth > previous) return birth
        fs.rmSync(file)
        return undefined
      }, { intervalMs: 1, what: `${name} to be created after the one before` })
      previous = created
    }
    const rank = { high: 0, normal: 1, low: 2 } as Record<string, number>
    const expected = drops.map(([name, priority], created) => ({ name, rank: rank[priority]!, created }))
      .sort((a, b) => a.rank - b.rank || a.created - b.created)
      .map((t) => t.name)
    await startForeground(p)
    await waitFor(() => archivedTriggers(p).length === drops.length, { what: "all twelve archived" })
    // One at a time (cap 1): the start order is the queue order.
    expect(records(p).filter((r) => r.kind === "start").map((r) => r.trigger)).toEqual(expected)
  })
})
