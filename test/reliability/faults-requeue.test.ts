/**
 * Faults, "no trigger waits for a restart", against the real daemon: the trigger directory is
 * read-only when a trigger has to go back to the queue (its agent hit a usage limit). The requeue
 * is tried again every PROCESS_MONITOR_INTERVAL with an ERROR line, the trigger stays claimed
 * meanwhile, and once the directory is writable again it is requeued and runs, by the same daemon.
 *
 * "Read-only" is made with chmod where that binds (not as root: root ignores permission bits), and
 * with a read-only bind mount as root; as root without the right to mount, the test is skipped
 * (the library-level test in faults-storage-scheduler.test.ts proves the same without either).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { archivedTriggers, deadLetters, queueFiles, startForeground } from "../support/daemonHelpers.js"
import { useFakeClaude } from "../support/fakeClaude.js"
import { daemonLog, readText, trigger, useProjects, waitFor } from "../support/project.js"
import { canMount, isRoot, unwritable } from "../support/storageFaults.js"

const projects = useProjects()


/**
 * Holds the agent until the test creates `go` in the project, then runs the command it was given:
 * the test makes the directory read-only while the trigger is claimed and before the agent ends.
 */
const GATE = `#!/bin/sh
while [ ! -e "$STARFORGE_PROJECT_ROOT/go" ]; do sleep 0.05; done
exec "$@"
`

const lines = (text: string, pattern: RegExp) => text.split("\n").filter((l) => pattern.test(l))

describe("the trigger directory read-only when a trigger goes back to the queue", () => {
  it.skipIf(isRoot && !canMount)("the requeue is tried again until it works, and the trigger runs again without a restart", async () => {
    const p = projects.make({ PROCESS_MONITOR_INTERVAL: "0.5", MAX_RETRIES: "1", USAGE_LIMIT_COOLDOWN: "1" })
    const gate = path.join(p.root, "gate.sh")
    fs.writeFileSync(gate, GATE, { mode: 0o755 })
    p.env["AGENT_COMMAND"] = `${gate} ${useFakeClaude(p)}`
    const fg = await startForeground(p)
    // The first run hits a usage limit (reset in 1 s), the second succeeds.
    p.drop("a-1", trigger("a", "scenario=limit limit_in=1 limit_after=2"))
    const claimed = path.join(p.triggers, "a-1.processing")
    await waitFor(() => fs.existsSync(claimed) && /SPAWNED: a started/.test(daemonLog(p)), { what: "a-1 claimed and its agent started" })
    const restore = unwritable(p.triggers)!
    try {
      fs.writeFileSync(path.join(p.root, "go"), "")
      await waitFor(() => lines(fg.stderr(), /ERROR: requeueing .*a-1\.processing failed/).length >= 3, { what: "three failed requeues" })
      const error = lines(fg.stderr(), /ERROR: requeueing/)[0]!
      expect(error).toMatch(
        new RegExp(
          `ERROR: requeueing ${claimed} failed: (EACCES: permission denied|EROFS: read-only file system).*; ` +
            "putting a-1\\.trigger back in the queue is tried again in 0\\.5s$"
        )
      )
      // Still claimed, not lost, not dead-lettered, not run again.
      expect(queueFiles(p)).toEqual(["a-1.processing"])
      expect(deadLetters(p)).toEqual([])
      expect(lines(readText(p.records) ?? "", /^start /)).toHaveLength(1)
    } finally {
      restore()
    }
    await waitFor(() => archivedTriggers(p).length === 1 && queueFiles(p).length === 0, { what: "a-1 requeued, run again and archived" })
    expect(fg.hasExited()).toBe(false)
    const log = daemonLog(p)
    expect(lines(log, /QUEUE: a-1\.trigger hit a usage limit \(attempt not counted\); back in the queue/)).toHaveLength(1)
    expect(log).not.toMatch(/is left as it is/)
    expect(lines(log, /START: Daemon started/)).toHaveLength(1)
    // Both runs were attempt 1: the limited one did not count.
    expect(lines(readText(p.records) ?? "", /^start /).map((l) => l.split(" ").slice(1, 3).join(" "))).toEqual(["a 1", "a 1"])
    expect(deadLetters(p)).toEqual([])
  })
})
