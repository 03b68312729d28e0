/**
 * An agent's exit status is final the moment it exits: cleaning up its process group afterwards
 * (which can take a kill grace) never turns a success into a timeout, and a shutdown arriving
 * during that clean-up archives the trigger instead of running it again.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { archivedTriggers, deadLetters, exitWithin, queueFiles, readState, startForeground } from "../support/daemonHelpers.js"
import { daemonLog, useProjects, waitFor } from "../support/project.js"

const projects = useProjects()

/** Exits 0 after writing `exited`, leaving a helper in its group that ignores SIGTERM. */
const leavesStubbornHelper = (root: string) => {
  const agent = path.join(root, "stubborn.sh")
  fs.writeFileSync(
    agent,
    `#!/bin/sh\n(trap '' TERM; sleep 60) &\nsleep 0.3\necho exited >> "${root}/exits.txt"\nexit 0\n`,
    { mode: 0o755 }
  )
  return agent
}

describe("exit races", () => {
  it("a success followed by a slow group sweep is not a timeout", async () => {
    const p = projects.make({ AGENT_TIMEOUT: "1", AGENT_KILL_GRACE: "2", MAX_RETRIES: "2" })
    const daemon = await startForeground(p, { AGENT_COMMAND: leavesStubbornHelper(p.root) })
    p.drop("t1", { to_agent: "a" })
    await waitFor(() => archivedTriggers(p).length + deadLetters(p).length > 0, { what: "t1 to be archived" })
    expect(archivedTriggers(p)).toHaveLength(1)
    expect(deadLetters(p)).toEqual([])
    expect(daemonLog(p)).not.toMatch(/TIMEOUT/)
    expect(fs.readFileSync(path.join(p.root, "exits.txt"), "utf8").trim().split("\n")).toHaveLength(1)
    daemon.child.kill("SIGTERM")
    await exitWithin(daemon, 10_000)
  })

  it("a stop that lands while a succeeded agent's group is swept archives the trigger", async () => {
    const p = projects.make({ AGENT_KILL_GRACE: "3" })
    const daemon = await startForeground(p, { AGENT_COMMAND: leavesStubbornHelper(p.root) })
    p.drop("t1", { to_agent: "a" })
    await waitFor(() => fs.existsSync(path.join(p.root, "exits.txt")), { what: "the agent to exit" })
    // The sweep of the stubborn helper now takes up to 3 s; stop in the middle of it.
    daemon.child.kill("SIGTERM")
    await exitWithin(daemon, 15_000)
    expect(archivedTriggers(p)).toHaveLength(1)
    expect(queueFiles(p)).toEqual([])
    expect(readState(p)).toMatchObject({ total_triggers_processed: 1, current_trigger: "none" })
  })
})
