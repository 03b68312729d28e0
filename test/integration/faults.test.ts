/**
 * Faults and lifecycle against the real CLI (reference §4.5–4.7, acceptance scenarios S36–S38):
 * agents killed from outside, stale and reused pids in the slot file, graceful shutdown by
 * signal and by `daemon stop`, agents that ignore SIGTERM or leave grandchildren, a daemon that
 * is SIGKILLed mid-run. (Simultaneous starts: test/reliability/faults-processes.test.ts.)
 */
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import {
  agentReady,
  archivedTriggers,
  busyAgents,
  deadLetters,
  exitWithin,
  grandchildPids,
  groupMembers,
  pidFile,
  queueFiles,
  readPidFile,
  readSlots,
  readState,
  runsOf,
  startForeground,
  statOf,
  writeSlots
} from "../support/daemonHelpers.js"
import {
  daemonLog,
  isAlive,
  projectProcesses,
  readJson,
  records,
  type TestProject,
  trigger,
  useProjects,
  waitFor
} from "../support/project.js"

const projects = useProjects()

const KILL_GRACE_MS = 1_000

/** Waits until the agents of `agents` run, with their pids in the slot file. */
const running = (p: TestProject, agents: ReadonlyArray<string>) =>
  waitFor(() => {
    const slots = readSlots(p)
    const busy = busyAgents(slots)
    if (!agents.every((a) => busy.includes(a) && slots![a]!.pid !== null)) return undefined
    const runs = runsOf(records(p)).filter((r) => r.end === undefined)
    if (!agents.every((a) => runs.some((r) => r.agent === a && String(r.pid) === slots![a]!.pid))) return undefined
    return runs
  }, { what: `${agents.join(", ")} to run` })

/** Nothing of these agents survives: neither the process nor anything in its process group. */
const expectGone = (pids: ReadonlyArray<number>) => {
  for (const pid of pids) {
    expect(isAlive(pid), `process ${pid} is still alive`).toBe(false)
    expect(groupMembers(pid), `process group ${pid} still has members`).toEqual([])
  }
}

/** The state after a graceful shutdown with `names` interrupted (contract §6). */
const expectCleanShutdown = (p: TestProject, agentPids: ReadonlyArray<number>, names: ReadonlyArray<string>) => {
  expectGone(agentPids)
  expect(projectProcesses(p.root)).toEqual([])
  const slots = readSlots(p)!
  for (const [agent, slot] of Object.entries(slots)) {
    expect(slot, agent).toMatchObject({ status: "idle", pid: null })
  }
  expect(readState(p)["current_trigger"]).toBe("none")
  // Interrupted triggers are back in the queue, not claimed, not archived, not dead-lettered.
  expect(queueFiles(p).sort()).toEqual(names.map((n) => `${n}.trigger`).sort())
  expect(archivedTriggers(p)).toEqual([])
  expect(deadLetters(p)).toEqual([])
  expect(fs.existsSync(pidFile(p))).toBe(false)
}

const findPid = (stdout: string): number => {
  const m = /\(PID: (\d+)\)/.exec(stdout)
  if (!m) throw new Error(`no PID in ${JSON.stringify(stdout)}`)
  return Number(m[1])
}

describe("agent killed from outside (S36)", () => {
  it("a SIGKILLed agent is a failed attempt: FINISH says SIGKILL, slot idle, dead-lettered with MAX_RETRIES=1", async () => {
    const p = projects.make({ MAX_RETRIES: "1" })
    const fg = await startForeground(p)
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "sleep=30", { context: { ticket: "9" } }))
    const [run] = await running(p, ["junior-dev-a"])
    process.kill(run!.pid, "SIGKILL")
    // The meta file is written right after the trigger is moved.
    await waitFor(() => deadLetters(p).length === 1 && fs.existsSync(path.join(p.triggers, "dead-letter", "junior-dev-a-work-1.trigger.meta.json")), {
      what: "the trigger and its meta in the dead-letter queue"
    })
    expect(daemonLog(p)).toMatch(/FINISH: junior-dev-a was killed by signal SIGKILL on junior-dev-a-work-1\.trigger/)
    const meta = readJson(path.join(p.triggers, "dead-letter", "junior-dev-a-work-1.trigger.meta.json"))
    expect(meta).toMatchObject({ signal: "SIGKILL", exit_code: null, attempts: 1, agent: "junior-dev-a" })
    expect(meta.retry_timestamps).toHaveLength(1)
    const slot = await waitFor(() => {
      const s = readSlots(p)?.["junior-dev-a"]
      return s?.status === "idle" ? s : undefined
    }, { what: "the slot to be idle" })
    expect(slot).toMatchObject({ status: "idle", pid: null })
    // The agent's background sleep went with it.
    expectGone([run!.pid])
    expect(fg.hasExited()).toBe(false)
  })

  it("with MAX_RETRIES=2 a SIGKILLed agent is retried, and dead-lettered when killed again", async () => {
    const p = projects.make({ MAX_RETRIES: "2" })
    await startForeground(p)
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "sleep=30"))
    const [first] = await running(p, ["junior-dev-a"])
    expect(first!.attempt).toBe(1)
    process.kill(first!.pid, "SIGKILL")
    const second = await waitFor(() => runsOf(records(p)).find((r) => r.attempt === 2), { what: "the second attempt" })
    expect(daemonLog(p)).toMatch(/RETRY: Attempt 2\/2 for junior-dev-a-work-1\.trigger/)
    await running(p, ["junior-dev-a"])
    expectGone([first!.pid])
    process.kill(second.pid, "SIGKILL")
    await waitFor(() => deadLetters(p).length === 1, { what: "the trigger in the dead-letter queue" })
    const meta = readJson(path.join(p.triggers, "dead-letter", "junior-dev-a-work-1.trigger.meta.json"))
    expect(meta).toMatchObject({ signal: "SIGKILL", attempts: 2 })
    expect(meta.retry_timestamps).toHaveLength(2)
    await waitFor(() => readSlots(p)?.["junior-dev-a"]?.status === "idle", { what: "the slot to be idle" })
    expectGone([second.pid])
  })
})

describe("orphaned slots at start (S37)", () => {
  it("a busy slot with a dead pid is released before scheduling", async () => {
    const p = projects.make()
    const dead = spawnSync("true").pid
    expect(isAlive(dead)).toBe(false)
    writeSlots(p, {
      "junior-dev-a": { status: "busy", pid: String(dead), ticket: "52", started_at: "2025-10-25T05:00:00Z" },
      "junior-dev-b": { status: "idle", pid: null, ticket: null, started_at: null }
    })
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "sleep=0.2"))
    await startForeground(p)
    const log = daemonLog(p)
    expect(log).toContain(`Cleaned up orphaned PID ${dead} for junior-dev-a`)
    expect(log).toMatch(new RegExp(`RECOVERY: Cleaned up orphaned PID ${dead} for junior-dev-a`))
    // The released agent takes work again.
    await waitFor(() => archivedTriggers(p).length === 1, { what: "junior-dev-a's trigger to be archived" })
    const after = daemonLog(p)
    expect(after.indexOf(`Cleaned up orphaned PID ${dead}`)).toBeLessThan(after.indexOf("SPAWNED: junior-dev-a"))
    const slots = await waitFor(() => {
      const s = readSlots(p)
      return s && busyAgents(s).length === 0 ? s : undefined
    }, { what: "idle slots" })
    expect(slots["junior-dev-a"]).toMatchObject({ status: "idle", pid: null, ticket: null, started_at: null })
  })

  it("a busy slot whose pid now belongs to an unrelated live process releases the slot without signalling it", async () => {
    const p = projects.make()
    // Two unrelated processes, each leading its own process group (so a group signal would reach them).
    const wrongStart = projects.track(spawn("sleep", ["60"], { cwd: p.root, detached: true, stdio: "ignore" }))
    const noStart = projects.track(spawn("sleep", ["60"], { cwd: p.root, detached: true, stdio: "ignore" }))
    await waitFor(() => statOf(wrongStart.pid!) && statOf(noStart.pid!), { what: "the sleeps to run" })
    const realStart = statOf(wrongStart.pid!)!.startTime
    writeSlots(p, {
      "junior-dev-a": {
        status: "busy",
        pid: String(wrongStart.pid),
        ticket: null,
        started_at: "2025-10-25T05:00:00Z",
        pid_start_time: String(Number(realStart) + 12_345)
      },
      // The original format: no start time recorded, so the pid cannot be verified.
      "junior-dev-b": { status: "busy", pid: String(noStart.pid), ticket: null, started_at: "2025-10-25T05:00:00Z" }
    })
    await startForeground(p)
    const log = daemonLog(p)
    expect(log).toContain(`Cleaned up orphaned PID ${wrongStart.pid} for junior-dev-a`)
    expect(log).toContain(`Cleaned up orphaned PID ${noStart.pid} for junior-dev-b`)
    // The slot file is written behind the release, within moments.
    const slots = await waitFor(() => {
      const s = readSlots(p)
      return s?.["junior-dev-a"]?.status === "idle" && s["junior-dev-b"]?.status === "idle" ? s : undefined
    }, { what: "both released slots in the slot file" })
    expect(slots["junior-dev-a"]).toMatchObject({ status: "idle", pid: null })
    expect(slots["junior-dev-b"]).toMatchObject({ status: "idle", pid: null })
    // Never signalled: still running, and the daemon keeps working.
    expect(isAlive(wrongStart.pid!)).toBe(true)
    expect(isAlive(noStart.pid!)).toBe(true)
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "sleep=0.2"))
    await waitFor(() => archivedTriggers(p).length === 1, { what: "junior-dev-a's trigger to be archived" })
    expect(isAlive(wrongStart.pid!)).toBe(true)
    expect(isAlive(noStart.pid!)).toBe(true)
  })
})

describe("graceful shutdown (S38)", () => {
  it.each(["SIGTERM", "SIGINT"] as const)("%s to a foreground daemon stops both agents and requeues their triggers", async (signal) => {
    const p = projects.make()
    const fg = await startForeground(p)
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "sleep=30"))
    p.drop("junior-dev-b-work-1", trigger("junior-dev-b", "sleep=30"))
    const runs = await running(p, ["junior-dev-a", "junior-dev-b"])
    expect(readState(p)["current_trigger"]).not.toBe("none")
    const sent = Date.now()
    fg.child.kill(signal)
    const exit = await exitWithin(fg, KILL_GRACE_MS + 5_000)
    // Ctrl-C ends the clean stop with 130, as a shell expects of an interrupted program.
    expect(exit).toEqual({ code: signal === "SIGINT" ? 130 : 0, signal: null })
    expect(Date.now() - sent).toBeLessThan(KILL_GRACE_MS + 5_000)
    expectCleanShutdown(p, runs.map((r) => r.pid), ["junior-dev-a-work-1", "junior-dev-b-work-1"])
    expect(daemonLog(p)).toContain("STOP: Daemon shutting down gracefully")
  })

  it("`starforge daemon stop` stops both agents and requeues their triggers", async () => {
    const p = projects.make()
    const started = await p.cli(["daemon", "start"])
    expect(started.code).toBe(0)
    const daemonPid = findPid(started.stdout)
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "sleep=30"))
    p.drop("junior-dev-b-work-1", trigger("junior-dev-b", "sleep=30"))
    const runs = await running(p, ["junior-dev-a", "junior-dev-b"])
    const stopped = await p.cli(["daemon", "stop"])
    expect(stopped.code).toBe(0)
    expect(stopped.stdout).toContain("Daemon stopped")
    expect(isAlive(daemonPid)).toBe(false)
    expectCleanShutdown(p, runs.map((r) => r.pid), ["junior-dev-a-work-1", "junior-dev-b-work-1"])
  })

  it("a trigger waiting for its retry at shutdown goes back to the queue too", async () => {
    const p = projects.make({ INITIAL_RETRY_DELAY: "30", MAX_RETRIES: "3" })
    const fg = await startForeground(p)
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "exit=1"))
    // Attempt 1 failed; the claimed trigger now waits 30 s for attempt 2, with the slot free.
    await waitFor(() =>
      /FINISH: junior-dev-a exited with code 1 on junior-dev-a-work-1\.trigger \(attempt 1\/3/.test(daemonLog(p)) &&
      readSlots(p)?.["junior-dev-a"]?.status === "idle", { what: "attempt 1 to fail" })
    expect(queueFiles(p)).toEqual(["junior-dev-a-work-1.processing"])
    fg.child.kill("SIGTERM")
    expect(await exitWithin(fg, KILL_GRACE_MS + 5_000)).toEqual({ code: 0, signal: null })
    expectCleanShutdown(p, runsOf(records(p)).map((r) => r.pid), ["junior-dev-a-work-1"])
  })

  it("an agent group that ignores SIGTERM is SIGKILLed within AGENT_KILL_GRACE + 2 s", async () => {
    const p = projects.make()
    const fg = await startForeground(p)
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "ignore-term sleep=30"))
    const [run] = await running(p, ["junior-dev-a"])
    await agentReady(p, "junior-dev-a")
    const sent = Date.now()
    fg.child.kill("SIGTERM")
    await waitFor(() => !isAlive(run!.pid) && groupMembers(run!.pid).length === 0, {
      timeoutMs: KILL_GRACE_MS + 2_000,
      intervalMs: 20,
      what: "the agent group to be killed"
    })
    const took = Date.now() - sent
    // It really ignored SIGTERM (so it was the SIGKILL after the grace) and was killed in time.
    expect(took).toBeGreaterThanOrEqual(KILL_GRACE_MS - 200)
    expect(took).toBeLessThanOrEqual(KILL_GRACE_MS + 2_000)
    const exit = await exitWithin(fg, 5_000)
    expect(exit).toEqual({ code: 0, signal: null })
    expectCleanShutdown(p, [run!.pid], ["junior-dev-a-work-1"])
  })
})

describe("grandchildren never outlive their agent", () => {
  it("after a stop", async () => {
    const p = projects.make()
    const fg = await startForeground(p)
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "grandchild sleep=30"))
    const [run] = await running(p, ["junior-dev-a"])
    const [grandchild] = await waitFor(() => (grandchildPids(p).length > 0 ? grandchildPids(p) : undefined), { what: "the grandchild" })
    expect(isAlive(grandchild!)).toBe(true)
    expect(statOf(grandchild!)?.pgid).toBe(run!.pid)
    fg.child.kill("SIGTERM")
    expect(await exitWithin(fg, KILL_GRACE_MS + 5_000)).toEqual({ code: 0, signal: null })
    expect(isAlive(grandchild!)).toBe(false)
    expectCleanShutdown(p, [run!.pid], ["junior-dev-a-work-1"])
  })

  it("after a timeout (AGENT_TIMEOUT=2)", async () => {
    const p = projects.make({ AGENT_TIMEOUT: "2", MAX_RETRIES: "1" })
    const fg = await startForeground(p)
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "grandchild sleep=30"))
    const [run] = await running(p, ["junior-dev-a"])
    const [grandchild] = await waitFor(() => (grandchildPids(p).length > 0 ? grandchildPids(p) : undefined), { what: "the grandchild" })
    await waitFor(() => deadLetters(p).length === 1, { what: "the timed-out trigger in the dead-letter queue", timeoutMs: 10_000 })
    expect(daemonLog(p)).toMatch(/TIMEOUT: junior-dev-a timed out after 2s on junior-dev-a-work-1\.trigger/)
    const meta = readJson(path.join(p.triggers, "dead-letter", "junior-dev-a-work-1.trigger.meta.json"))
    expect(meta.failure_reason).toContain("timed out")
    expect(isAlive(grandchild!)).toBe(false)
    expectGone([run!.pid])
    await waitFor(() => readSlots(p)?.["junior-dev-a"]?.status === "idle", { what: "the slot to be idle" })
    expect(fg.hasExited()).toBe(false)
  })

  it("after a normal exit 0 (the group is swept)", async () => {
    const p = projects.make()
    const fg = await startForeground(p)
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "grandchild"))
    await waitFor(() => archivedTriggers(p).length === 1, { what: "the trigger to be archived" })
    const [run] = runsOf(records(p))
    const [grandchild] = grandchildPids(p)
    expect(run!.end).toBeDefined()
    expect(grandchild).toBeDefined()
    // The sweep happens before the trigger is archived.
    expect(isAlive(grandchild!)).toBe(false)
    expectGone([run!.pid])
    expect(fg.hasExited()).toBe(false)
  })
})

describe("crash recovery", () => {
  it("a daemon SIGKILLed with three agents running: the restart stops the orphans and loses no trigger", async () => {
    const p = projects.make()
    const first = await p.cli(["daemon", "start"])
    expect(first.code).toBe(0)
    const agents = ["junior-dev-a", "junior-dev-b", "qa-engineer"]
    // qa-engineer ignores SIGTERM: recovery has to escalate to SIGKILL.
    for (const a of agents) p.drop(`${a}-work-1`, trigger(a, a === "qa-engineer" ? "ignore-term sleep=30" : "sleep=30"))
    const runs = await running(p, agents)
    await agentReady(p, "qa-engineer")
    await waitFor(() => agents.every((a) => readSlots(p)?.[a]?.["pid_start_time"]), { what: "the agents' start times in the slot file" })
    const daemonPid = readPidFile(p)!
    expect(daemonPid).toBe(findPid(first.stdout))
    process.kill(daemonPid, "SIGKILL")
    await waitFor(() => !isAlive(daemonPid), { what: "the daemon to die" })
    // The agents outlived the daemon; their triggers are still claimed.
    for (const r of runs) expect(isAlive(r.pid)).toBe(true)
    expect(queueFiles(p).sort()).toEqual(agents.map((a) => `${a}-work-1.processing`))
    // Keep the re-runs short: the content of a claimed trigger is what runs again.
    for (const a of agents) {
      fs.writeFileSync(path.join(p.triggers, `${a}-work-1.processing`), JSON.stringify(trigger(a, "sleep=0.3")))
    }

    const second = await p.cli(["daemon", "start"])
    expect(second.code).toBe(0)
    expect(second.stdout).toMatch(/^Daemon started \(PID: \d+\)$/m)
    expect(findPid(second.stdout)).not.toBe(daemonPid)
    // Recovery runs before the daemon reports ready: the orphans are already stopped.
    expectGone(runs.map((r) => r.pid))
    const log = daemonLog(p)
    for (const r of runs) expect(log).toMatch(new RegExp(`RECOVERY: .*\\b${r.agent}\\b.*\\b${r.pid}\\b|RECOVERY: .*\\b${r.pid}\\b.*\\b${r.agent}\\b`))
    for (const a of agents) expect(log).toMatch(new RegExp(`RECOVERY: ${a}-work-1\\.processing .*back in the queue`))

    await waitFor(() => archivedTriggers(p).length === 3 && queueFiles(p).length === 0, {
      what: "every trigger archived"
    })
    expect(archivedTriggers(p).map((n) => n.replace(/^\d{8}-\d{6}-/, "")).sort()).toEqual(agents.map((a) => `${a}-work-1.trigger`))
    expect(deadLetters(p)).toEqual([])
    // Each trigger ran twice: the interrupted run and the completed re-run (at-least-once).
    const all = runsOf(records(p))
    for (const a of agents) {
      const mine = all.filter((r) => r.agent === a)
      expect(mine).toHaveLength(2)
      expect(mine[1]!.end).toBeDefined()
    }
    await waitFor(() => busyAgents(readSlots(p)).length === 0, { what: "idle slots" })
  })
})
