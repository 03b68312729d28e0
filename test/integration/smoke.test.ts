import { describe, expect, it } from "vitest"
import { archivedTriggers } from "../support/daemonHelpers.js"
import { daemonLog, records, trigger, useProjects, waitFor } from "../support/project.js"

const projects = useProjects()

describe("smoke", () => {
  it("runs three agents side by side and archives their triggers", async () => {
    const p = projects.make()
    const started = await p.cli(["daemon", "start"])
    expect(started.stdout).toMatch(/^Daemon started \(PID: \d+\)/)
    for (const a of ["junior-dev-a", "junior-dev-b", "qa-engineer"]) p.drop(`${a}-work-1`, trigger(a, "sleep=1"))
    await waitFor(() => archivedTriggers(p).length === 3, { what: "three archived triggers" })
    const starts = records(p).filter((r) => r.kind === "start")
    const ends = records(p).filter((r) => r.kind === "end")
    expect(starts).toHaveLength(3)
    // All three overlapped: every start came before the first end.
    const firstEnd = ends.reduce((m, r) => (r.ns < m ? r.ns : m), ends[0]!.ns)
    expect(starts.every((s) => s.ns < firstEnd)).toBe(true)
    // The bundle's daemon starts its agents through the spawn helper (dist/spawn-helper.cjs).
    expect(daemonLog(p)).toMatch(/CONFIG: .*, spawner helper\n/)
    const stopped = await p.cli(["daemon", "stop"])
    expect(stopped.code).toBe(0)
  })
})
