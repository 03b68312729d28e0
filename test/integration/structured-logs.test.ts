/**
 * Structured daemon logs through the real daemon (issue 6 part 3): `STARFORGE_LOG_FORMAT=json`
 * writes the same events as JSON lines, `STARFORGE_LOG_LEVEL` filters them.
 */
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { archivedTriggers, deadLetters, exitWithin, readState, startForeground } from "../support/daemonHelpers.js"
import { daemonLog, type TestProject, trigger, useProjects, waitFor } from "../support/project.js"

const projects = useProjects()

/** The same work in each project: one success (with a trace id), one trigger that fails its only attempt. */
const runScenario = async (p: TestProject) => {
  const fg = await startForeground(p)
  p.drop("good", trigger("alpha", "exit=0", { trace_id: "TRACE-good" }))
  p.drop("bad", trigger("beta", "exit=3"))
  await waitFor(() => archivedTriggers(p).length === 1 && deadLetters(p).length === 1, { timeoutMs: 30_000, what: "both triggers to finish" })
  // Both jobs have ended (their last step saves the state), so the shutdown finds none running.
  await waitFor(() => readState(p)["current_trigger"] === "none", { what: "no trigger to be current" })
  fg.child.kill("SIGTERM")
  expect((await exitWithin(fg, 15_000)).code).toBe(0)
  return fg
}

/** Level and message with what differs between two runs (paths, pids, times) blanked out. */
const normalized = (p: TestProject, level: string, message: string) =>
  `${level}: ${message.split(p.root).join("P").replace(/\d+(\.\d+)?/g, "N")}`

const TEXT_LINE = /^\[(\S+)\] \[([^\]]*)\] ([A-Z]+): (.*)$/

describe("structured logs", () => {
  it("STARFORGE_LOG_FORMAT=json writes the same events as JSON lines with agent, trigger, trace_id, pid, attempt", async () => {
    const text = projects.make({ MAX_RETRIES: "1" })
    const json = projects.make({ MAX_RETRIES: "1", STARFORGE_LOG_FORMAT: "json" })
    const [, fg] = await Promise.all([runScenario(text), runScenario(json)])

    const jsonLines = daemonLog(json).trimEnd().split("\n")
    const events = jsonLines.map((l) => JSON.parse(l) as Record<string, unknown>)
    for (const e of events) {
      expect(Object.keys(e)).toEqual(["timestamp", "level", "severity", "message", "agent", "trigger", "trace_id", "pid", "attempt"])
      expect(new Date(e["timestamp"] as string).toISOString()).toBe(e["timestamp"])
    }
    const spawned = events.find((e) => e["level"] === "SPAWNED" && e["agent"] === "alpha")!
    expect(spawned).toMatchObject({ severity: "info", trigger: "good.trigger", trace_id: "TRACE-good", attempt: 1 })
    expect(spawned["pid"]).toEqual(expect.any(Number))
    expect(spawned["message"]).toContain(`(PID: ${spawned["pid"]})`)
    const failed = events.find((e) => e["level"] === "FINISH" && e["agent"] === "beta")!
    expect(failed).toMatchObject({ trigger: "bad.trigger", attempt: 1, trace_id: null })
    expect(failed["pid"]).toEqual(expect.any(Number))
    expect(events.find((e) => e["level"] === "DLQ")).toMatchObject({ severity: "warn", agent: "beta", attempt: 1 })
    expect(events.find((e) => e["level"] === "START")).toMatchObject({ agent: null, trigger: null, pid: null, attempt: null })
    // The foreground echo uses the same format.
    expect(fg.stderr()).toContain(jsonLines[0])

    // Both formats carry the same events.
    const fromText = daemonLog(text).trimEnd().split("\n").map((l) => {
      const m = TEXT_LINE.exec(l)
      expect(m, l).not.toBeNull()
      return normalized(text, m![3]!, m![4]!)
    })
    const fromJson = events.map((e) => normalized(json, e["level"] as string, e["message"] as string))
    expect(fromJson.slice().sort()).toEqual(fromText.slice().sort())

    // status shows JSON lines as text lines.
    const status = await json.cli(["daemon", "status"])
    expect(status.stdout).toMatch(/\n {2}\[\S+Z\] \[\] STOP: /)
  })

  it("STARFORGE_LOG_LEVEL=warn keeps only warnings and errors", async () => {
    const p = projects.make({ MAX_RETRIES: "1", STARFORGE_LOG_LEVEL: "warn" })
    await runScenario(p)
    const levels = daemonLog(p).trimEnd().split("\n").map((l) => TEXT_LINE.exec(l)![3])
    expect(levels).toContain("DLQ")
    for (const level of levels) expect(["WARN", "ERROR", "TIMEOUT", "DLQ", "INVALID"]).toContain(level)
    const bad = await projects.make({ STARFORGE_LOG_LEVEL: "loud" }).cli(["daemon", "start"])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toContain(`STARFORGE_LOG_LEVEL="loud" is not valid: expected debug, info, warn or error`)
    expect(path.isAbsolute(p.root)).toBe(true)
  })
})
