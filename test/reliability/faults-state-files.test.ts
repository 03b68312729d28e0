/**
 * Faults, "nothing lost": the daemon's own state files truncated, corrupt or deleted while it is
 * down, or deleted while it runs. The daemon starts anyway, keeps a copy of a corrupt file,
 * rebuilds what it needs (agents left running are found by their environment, the success total
 * from the archive) and logs what it did.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { agentReady, archivedTriggers, busyAgents, queueFiles, readSlots, readState, runsOf, slotsPath, startForeground } from "../support/daemonHelpers.js"
import { daemonLog, isAlive, listDir, readText, records, type TestProject, trigger, useProjects, waitFor } from "../support/project.js"

const projects = useProjects()

type Damage = "truncated" | "corrupt" | "deleted"

const statePath = (p: TestProject) => path.join(p.claude, "daemon-state.json")

/** Damages `file` as a crash, a full disk or a careless user would. Returns what it held. */
const damage = (file: string, how: Damage): string => {
  const before = fs.readFileSync(file, "utf8")
  if (how === "deleted") fs.rmSync(file)
  else fs.writeFileSync(file, how === "truncated" ? before.slice(0, Math.floor(before.length / 2)) : "\u0000garbage{{{")
  return before
}

/** The copies kept next to `file`. */
const copiesOf = (file: string) => listDir(path.dirname(file)).filter((n) => n.startsWith(`${path.basename(file)}.corrupt-`))

const logLines = (p: TestProject, level: string) => daemonLog(p).split("\n").filter((l) => l.includes(`] ${level}: `))

const done = (p: TestProject, n: number) =>
  waitFor(() => archivedTriggers(p).length === n && queueFiles(p).length === 0, { what: `${n} triggers archived` })

describe("state files damaged while the daemon is down", () => {
  // Each start damages both files, in a different way each: the six combinations in three starts.
  const cases: ReadonlyArray<readonly [slots: Damage, state: Damage]> = [
    ["truncated", "deleted"],
    ["corrupt", "truncated"],
    ["deleted", "corrupt"]
  ]
  it.each(cases)(
    "agent-slots.json %s and daemon-state.json %s after a crash with an agent running: starts, keeps copies, stops the orphan, reruns its trigger, logs it",
    async (slotsDamage, stateDamage) => {
      const p = projects.make()
      const first = await startForeground(p)
      p.drop("junior-dev-a-work-1", trigger("junior-dev-a"))
      await done(p, 1)
      // A second trigger is running when the daemon is killed: its agent is left behind.
      p.drop("junior-dev-b-work-2", trigger("junior-dev-b", "sleep=30"))
      const orphan = await waitFor(() => {
        const slot = readSlots(p)?.["junior-dev-b"]
        const run = runsOf(records(p)).find((r) => r.agent === "junior-dev-b")
        return slot?.pid_start_time && run && slot.pid === String(run.pid) ? run : undefined
      }, { what: "junior-dev-b running, recorded in the slot file" })
      await agentReady(p, "junior-dev-b")
      await waitFor(() => readState(p)["total_triggers_processed"] === 1, { what: "the state file to count one success" })
      first.child.kill("SIGKILL")
      await first.exited
      expect(isAlive(orphan.pid)).toBe(true)

      // Keep the rerun short: the content of a claimed trigger is what runs again.
      fs.writeFileSync(path.join(p.triggers, "junior-dev-b-work-2.processing"), JSON.stringify(trigger("junior-dev-b")))
      const slotsBefore = damage(slotsPath(p), slotsDamage)
      const stateBefore = damage(statePath(p), stateDamage)
      await startForeground(p)

      // Copies of the damaged files, byte for byte; none of a deleted one.
      for (const [file, how, before] of [[slotsPath(p), slotsDamage, slotsBefore], [statePath(p), stateDamage, stateBefore]] as const) {
        const copies = copiesOf(file)
        if (how === "deleted") {
          expect(copies, file).toEqual([])
        } else {
          expect(copies, file).toHaveLength(1)
          const damaged = how === "truncated" ? before.slice(0, Math.floor(before.length / 2)) : "\u0000garbage{{{"
          expect(fs.readFileSync(path.join(path.dirname(file), copies[0]!), "utf8")).toBe(damaged)
        }
      }
      // What was done, in the log, before the daemon took work.
      const recovery = logLines(p, "RECOVERY").join("\n")
      const said = (file: string, how: Damage) =>
        how === "deleted"
          ? new RegExp(`RECOVERY: ${file} was not found; `)
          : new RegExp(`RECOVERY: ${file} was not valid JSON; kept a copy as ${file.replace(".", "\\.")}\\.corrupt-\\d{8}-\\d{6}; `)
      expect(recovery).toMatch(said("agent-slots.json", slotsDamage))
      expect(recovery).toMatch(said("daemon-state.json", stateDamage))
      expect(recovery).toMatch(/RECOVERY: agent-slots\.json .*rebuilt with every agent idle|RECOVERY: agent-slots\.json was not found; every agent starts idle/)
      expect(recovery).toMatch(/total_triggers_processed rebuilt from processed\/ \(1\)/)
      // The orphan the slot file no longer names was found and stopped before any new work.
      expect(recovery).toContain(`Stopped orphaned agent junior-dev-b (PID ${orphan.pid}) left by an earlier daemon; the slot file did not record it`)
      expect(isAlive(orphan.pid)).toBe(false)
      expect(recovery).toContain("junior-dev-b-work-2.processing had no running agent; back in the queue")

      // The rebuilt files are valid, and the daemon works on: the interrupted trigger reruns.
      expect(readState(p)["total_triggers_processed"]).toBe(1)
      await done(p, 2)
      await waitFor(() => readState(p)["total_triggers_processed"] === 2, { what: "the rebuilt total to count on" })
      await waitFor(() => {
        const slots = readSlots(p)
        return slots !== undefined && busyAgents(slots).length === 0 && slots["junior-dev-b"] !== undefined
      }, { what: "a valid slot file with junior-dev-b idle" })
    }
  )
})

describe("state files deleted while the daemon runs", () => {
  it("both files are written again from memory within a monitor interval, logged, and keep counting", async () => {
    const p = projects.make({ PROCESS_MONITOR_INTERVAL: "0.5" })
    await startForeground(p)
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "sleep=30"))
    await waitFor(() => readSlots(p)?.["junior-dev-a"]?.pid, { what: "junior-dev-a running" })
    fs.rmSync(slotsPath(p))
    fs.rmSync(statePath(p))
    await waitFor(() => readText(slotsPath(p)) !== undefined && readText(statePath(p)) !== undefined, {
      what: "both files to be written again"
    })
    // Written from memory: the running agent is still busy, the running trigger still current.
    expect(readSlots(p)!["junior-dev-a"]).toMatchObject({ status: "busy" })
    expect(readState(p)["current_trigger"]).toBe("junior-dev-a-work-1.trigger")
    const monitor = logLines(p, "MONITOR").join("\n")
    expect(monitor).toContain("MONITOR: .claude/daemon/agent-slots.json was missing; written again from the daemon's memory")
    expect(monitor).toContain("MONITOR: .claude/daemon-state.json was missing; written again from the daemon's memory")
    p.drop("junior-dev-b-work-2", trigger("junior-dev-b"))
    await waitFor(() => archivedTriggers(p).length === 1, { what: "junior-dev-b's trigger archived" })
    await waitFor(() => readState(p)["total_triggers_processed"] === 1, { what: "the total to count it" })
    expect(copiesOf(slotsPath(p))).toEqual([])
    expect(copiesOf(statePath(p))).toEqual([])
  })
})

describe("a state file that cannot be written", () => {
  it("is reported on the foreground daemon's stderr, and the work goes on", async () => {
    const p = projects.make()
    const fg = await startForeground(p)
    // A directory in the way of usage.json: the atomic rename over it fails.
    const usage = path.join(p.claude, "daemon", "usage.json")
    fs.rmSync(usage, { force: true })
    fs.mkdirSync(path.join(usage, "blocker"), { recursive: true })
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a"))
    await done(p, 1)
    const reported = await waitFor(() => fg.stderr().split("\n").find((l) => l.startsWith("starforge: ") && l.includes("usage.json")), {
      what: "the failed write of usage.json on stderr"
    })
    expect(reported).toMatch(/^starforge: writing .*usage\.json.*(EISDIR|ENOTEMPTY|EEXIST)/)
  })
})
