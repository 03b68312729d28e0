/**
 * The orchestrator tick through the real daemon: a periodic `orchestrator` trigger, created only
 * while none is pending or running.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { startForeground } from "../support/daemonHelpers.js"
import { daemonLog, listDir, useProjects, waitFor } from "../support/project.js"

const projects = useProjects()

describe("orchestrator tick", () => {
  it("creates an orchestrator trigger every ORCHESTRATOR_INTERVAL, never while one is pending or running", async () => {
    const p = projects.make({ ORCHESTRATOR_INTERVAL: "0.2" })
    // The orchestrator works for 1.5 s per check, far longer than the interval.
    const agent = path.join(p.root, "orchestrator.sh")
    fs.writeFileSync(
      agent,
      `#!/bin/sh\necho "start $(date +%s%N)" >> "${p.root}/orch.txt"\nsleep 1.5\necho "end $(date +%s%N)" >> "${p.root}/orch.txt"\n`,
      { mode: 0o755 }
    )
    const daemon = await startForeground(p, { AGENT_COMMAND: agent })
    try {
      const queued = () => listDir(p.triggers).filter((n) => n.startsWith("orchestrator-")).length
      let mostQueued = 0
      await waitFor(() => {
        mostQueued = Math.max(mostQueued, queued())
        const done = listDir(path.join(p.triggers, "processed")).filter((n) => n.includes("orchestrator-periodic_check-"))
        return done.length >= 2
      }, { timeoutMs: 20_000, intervalMs: 20, what: "two orchestrator checks to finish" })
      // One check at a time: while one ran (1.5 s), ticks every 0.2 s created nothing.
      expect(mostQueued).toBeLessThanOrEqual(1)
      const lines = fs.readFileSync(path.join(p.root, "orch.txt"), "utf8").trim().split("\n")
      const starts = lines.filter((l) => l.startsWith("start")).length
      expect(starts).toBeLessThanOrEqual(3)
      expect(daemonLog(p)).toMatch(/ORCHESTRATOR: Created periodic check orchestrator-periodic_check-\d+-[0-9a-f]+\.trigger/)
      const trigger = JSON.parse(
        fs.readFileSync(
          path.join(p.triggers, "processed", listDir(path.join(p.triggers, "processed")).find((n) => n.includes("orchestrator-"))!),
          "utf8"
        )
      )
      expect(trigger).toMatchObject({ to_agent: "orchestrator", from_agent: "starforge", action: "periodic_check" })
    } finally {
      daemon.child.kill("SIGTERM")
    }
  })

  it("ORCHESTRATOR_INTERVAL=0 creates no orchestrator trigger", async () => {
    const p = projects.make({ ORCHESTRATOR_INTERVAL: "0", PROCESS_MONITOR_INTERVAL: "0.2" })
    const daemon = await startForeground(p)
    try {
      // Several monitor rounds pass (they log nothing when all is well).
      const readyAt = Date.now()
      await waitFor(() => Date.now() - readyAt > 1_000, { what: "a second of monitor rounds" })
      expect(daemonLog(p)).not.toMatch(/ORCHESTRATOR/)
      expect(listDir(p.triggers).filter((n) => n.startsWith("orchestrator-"))).toEqual([])
    } finally {
      daemon.child.kill("SIGTERM")
    }
  })
})
