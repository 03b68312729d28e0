/**
 * Faults, "nothing lost": the disk full or a directory not writable, against the real daemon.
 * The error is clear (daemon log or stderr), the trigger stays queued (not lost, not marked
 * failed, no attempt counted), an agent that succeeded is not run again, and work resumes when
 * the storage does.
 *
 * "Not writable" is made with chmod where that binds (not as root: root ignores permission bits),
 * and with a read-only bind mount as root (a rename into it then fails with EXDEV or EROFS). The disk full is a small tmpfs, so it needs root.
 * The library-level test (faults-storage-scheduler.test.ts) proves the same without either.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { archivedTriggers, deadLetters, invalidEntries, queueFiles, startForeground } from "../support/daemonHelpers.js"
import { daemonLog, records, trigger, useProjects, waitFor } from "../support/project.js"
import { canMakeUnwritable, canMount, run, unwritable } from "../support/storageFaults.js"

const projects = useProjects()


const lines = (text: string, pattern: RegExp) => text.split("\n").filter((l) => pattern.test(l))

describe("a directory not writable", () => {
  it.skipIf(!canMakeUnwritable)("logs/: the agent is not started, a clear error, the trigger stays queued with no attempt counted, and runs once logs/ is writable again", async () => {
    const p = projects.make({ PROCESS_MONITOR_INTERVAL: "0.5", MAX_RETRIES: "1" })
    const fg = await startForeground(p)
    const logs = path.join(p.claude, "logs")
    const restore = unwritable(logs)!
    try {
      p.drop("junior-dev-a-work-1", trigger("junior-dev-a"))
      // Tried again every PROCESS_MONITOR_INTERVAL, far more often than MAX_RETRIES=1 allows.
      await waitFor(() => lines(fg.stderr(), /ERROR: .*junior-dev-a was not started for junior-dev-a-work-1\.trigger/).length >= 3, {
        what: "three refused starts"
      })
      const error = lines(fg.stderr(), /ERROR: .*was not started/)[0]!
      expect(error).toMatch(
        new RegExp(`ERROR: writing the agent log ${logs}/junior-dev-a-\\d+\\.log failed: (EACCES: permission denied|EROFS: read-only file system)`)
      )
      expect(error).toContain("(attempt 1/1 not counted); it stays queued and is tried again in 0.5s")
      expect(records(p)).toEqual([])
      expect(deadLetters(p)).toEqual([])
      expect(invalidEntries(p)).toEqual([])
      expect(queueFiles(p).map((n) => n.replace(/\.processing$/, ".trigger"))).toEqual(["junior-dev-a-work-1.trigger"])
    } finally {
      restore()
    }
    await waitFor(() => archivedTriggers(p).length === 1, { what: "the trigger archived once logs/ is writable" })
    expect(records(p).filter((r) => r.kind === "start").map((r) => r.attempt)).toEqual([1])
    expect(deadLetters(p)).toEqual([])
  })

  it.skipIf(!canMakeUnwritable)("processed/: after a success the archive is tried again, the agent never runs again, and the trigger is archived once writable", async () => {
    const p = projects.make({ PROCESS_MONITOR_INTERVAL: "0.5" })
    const fg = await startForeground(p)
    const processed = path.join(p.triggers, "processed")
    const restore = unwritable(processed)!
    try {
      p.drop("junior-dev-a-work-1", trigger("junior-dev-a"))
      await waitFor(() => lines(fg.stderr(), /ERROR: archiving .*junior-dev-a succeeded, so it is not run again/).length >= 3, {
        what: "three failed archives"
      })
      expect(lines(fg.stderr(), /ERROR: archiving/)[0]).toMatch(
        /ERROR: archiving .*junior-dev-a-work-1\.processing failed: (EACCES: permission denied|EROFS: read-only file system|EXDEV: cross-device link not permitted).*; junior-dev-a succeeded, so it is not run again: archiving junior-dev-a-work-1\.trigger is tried again in 0\.5s/
      )
      expect(queueFiles(p)).toEqual(["junior-dev-a-work-1.processing"])
    } finally {
      restore()
    }
    await waitFor(() => archivedTriggers(p).length === 1 && queueFiles(p).length === 0, { what: "the trigger archived" })
    expect(records(p).filter((r) => r.kind === "start")).toHaveLength(1)
    expect(daemonLog(p)).toMatch(/QUEUE: junior-dev-a-work-1\.trigger archived as/)
  })
})

describe("the disk full", () => {
  it.skipIf(!canMount)("a full tmpfs under .claude: a clear ENOSPC error on stderr, the trigger stays queued, work resumes when space returns", async () => {
    const p = projects.make({ PROCESS_MONITOR_INTERVAL: "0.5", MAX_RETRIES: "1" })
    const logs = path.join(p.claude, "logs")
    fs.mkdirSync(logs, { recursive: true })
    expect(run("mount", ["-t", "tmpfs", "-o", "size=512k", "tmpfs", logs])).toBe(true)
    try {
      const fg = await startForeground(p)
      // Fill it up.
      const filler = path.join(logs, "filler")
      const chunk = Buffer.alloc(64 * 1024, 1)
      const fd = fs.openSync(filler, "w")
      try {
        for (;;) fs.writeSync(fd, chunk)
      } catch (e) {
        expect((e as NodeJS.ErrnoException).code).toBe("ENOSPC")
      } finally {
        fs.closeSync(fd)
      }
      p.drop("junior-dev-a-work-1", trigger("junior-dev-a"))
      await waitFor(() => lines(fg.stderr(), /ERROR: .*junior-dev-a was not started/).length >= 3, { what: "three refused starts" })
      const stderr = fg.stderr()
      expect(lines(stderr, /ERROR: .*was not started/)[0]).toMatch(
        /ERROR: writing the agent log .*junior-dev-a-\d+\.log failed: ENOSPC: no space left on device.*\(attempt 1\/1 not counted\); it stays queued/
      )
      // The daemon log may not be writable either (once its last page is full): said at most
      // once on stderr, not at every line.
      expect(lines(stderr, /cannot write .*daemon\.log.*ENOSPC/).length).toBeLessThanOrEqual(1)
      expect(records(p)).toEqual([])
      expect(deadLetters(p)).toEqual([])
      expect(queueFiles(p).map((n) => n.replace(/\.processing$/, ".trigger"))).toEqual(["junior-dev-a-work-1.trigger"])
      // No empty agent logs left behind by the refused starts.
      expect(fs.readdirSync(logs).filter((n) => n.startsWith("junior-dev-a-"))).toEqual([])
      fs.rmSync(filler)
      await waitFor(() => archivedTriggers(p).length === 1, { what: "the trigger archived once space returns" })
      expect(records(p).filter((r) => r.kind === "start").map((r) => r.attempt)).toEqual([1])
      fg.child.kill("SIGTERM")
      await fg.exited
    } finally {
      run("umount", ["-l", logs])
    }
  })
})
