import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { listDir, makeProject, records, type TestProject, trigger, waitFor } from "../support/project.js"

let project: TestProject | undefined
afterEach(async () => {
  await project?.cleanup()
  project = undefined
})

describe("smoke", () => {
  it("runs three agents side by side and archives their triggers", async () => {
    project = makeProject()
    const p = project
    const started = await p.cli(["daemon", "start"])
    expect(started.stdout).toMatch(/^Daemon started \(PID: \d+\)/)
    for (const a of ["junior-dev-a", "junior-dev-b", "qa-engineer"]) p.drop(`${a}-work-1`, trigger(a, "sleep=1"))
    await waitFor(() => listDir(path.join(p.triggers, "processed")).filter((n) => n.endsWith(".trigger")).length === 3, {
      what: "three archived triggers"
    })
    const starts = records(p).filter((r) => r.kind === "start")
    const ends = records(p).filter((r) => r.kind === "end")
    expect(starts).toHaveLength(3)
    // All three overlapped: every start came before the first end.
    const firstEnd = ends.reduce((m, r) => (r.ns < m ? r.ns : m), ends[0]!.ns)
    expect(starts.every((s) => s.ns < firstEnd)).toBe(true)
    const stopped = await p.cli(["daemon", "stop"])
    expect(stopped.code).toBe(0)
  })
})
