/**
 * Faults, "nothing lost", around processes: the agent command not installed, a pid in the slot
 * file that now belongs to an unrelated process, and simultaneous starts of the daemon.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { archivedTriggers, daemonProcesses, deadLetters, pidFile, readPidFile, readSlots, startForeground, statOf, writeSlots } from "../support/daemonHelpers.js"
import { daemonLog, isAlive, readJson, readText, trigger, useProjects, waitFor } from "../support/project.js"

const projects = useProjects()

describe("the agent command is not installed", () => {
  it.each([
    ["an absolute path", (root: string) => path.join(root, "bin", "claude")],
    ["a name looked up on PATH", () => "claude-not-installed-here"]
  ])("%s: one clear error per attempt naming it and AGENT_COMMAND, then the dead-letter queue; the daemon stays up and runs the next trigger once it is installed", async (_what, commandOf) => {
    const p = projects.make({ MAX_RETRIES: "3", INITIAL_RETRY_DELAY: "0.1" })
    const command = commandOf(p.root)
    const bin = path.join(p.root, "bin")
    const fg = await startForeground(p, { AGENT_COMMAND: command, PATH: `${bin}:${p.env["PATH"]}` })
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a"))
    await waitFor(() => deadLetters(p).length === 1, { what: "the trigger in the dead-letter queue" })
    const log = daemonLog(p)
    const errors = log.split("\n").filter((l) => l.includes("] ERROR: ") && l.includes("junior-dev-a-work-1.trigger"))
    expect(errors).toHaveLength(3)
    errors.forEach((line, i) => {
      expect(line).toContain(`ERROR: junior-dev-a could not be started: command not found: ${command} (install it or set AGENT_COMMAND) on junior-dev-a-work-1.trigger (attempt ${i + 1}/3`)
    })
    expect(log).not.toMatch(/^\s+at /m)
    const meta = readJson(path.join(p.triggers, "dead-letter", "junior-dev-a-work-1.trigger.meta.json"))
    expect(meta).toMatchObject({ attempts: 3, exit_code: null, signal: null })
    expect(meta.failure_reason).toContain(`command not found: ${command} (install it or set AGENT_COMMAND)`)
    expect(readText(meta.last_log)).toContain(`Error: command not found: ${command}`)
    // Still up: install the command, and the next trigger runs.
    expect(fg.hasExited()).toBe(false)
    fs.mkdirSync(bin, { recursive: true })
    fs.copyFileSync(p.env["AGENT_COMMAND"]!, path.join(bin, path.basename(command)))
    fs.chmodSync(path.join(bin, path.basename(command)), 0o755)
    p.drop("junior-dev-a-work-2", trigger("junior-dev-a"))
    await waitFor(() => archivedTriggers(p).length === 1, { what: "the next trigger archived" })
    expect(deadLetters(p)).toHaveLength(1)
  })
})

describe("a pid in the slot file that now belongs to an unrelated process", () => {
  it("is never signalled, at start nor by slots cleanup nor at shutdown; its slot is released and its trigger runs again", async () => {
    const p = projects.make()
    // The unrelated process leads its own process group (a group signal would reach it) and
    // records every signal it can catch.
    const caught = path.join(p.root, "caught.txt")
    const victim = projects.track(spawn("sh", ["-c", `for s in HUP INT QUIT USR1 USR2 TERM CONT ALRM; do trap "echo $s >> ${caught}" $s; done; while :; do sleep 0.1; done`], {
      detached: true,
      stdio: "ignore"
    }))
    const stat = await waitFor(() => statOf(victim.pid!), { what: "the unrelated process to run" })
    expect(stat.pgid).toBe(victim.pid)
    // As a crashed daemon leaves it: the pid reused by a process that started at another time.
    const reusedPidSlots = {
      "junior-dev-a": {
        status: "busy",
        pid: String(victim.pid),
        ticket: "7",
        started_at: "2025-10-25T05:00:00Z",
        pid_start_time: String(Number(stat.startTime) - 4242)
      }
    }
    writeSlots(p, reusedPidSlots)
    fs.writeFileSync(path.join(p.triggers, "junior-dev-a-work-1.processing"), JSON.stringify(trigger("junior-dev-a")))
    // Not by `slots cleanup` (no daemon runs yet)…
    const cleanup = await p.cli(["slots", "cleanup"])
    expect(cleanup.stdout).toContain(`Cleaned up orphaned PID ${victim.pid} for junior-dev-a`)
    writeSlots(p, reusedPidSlots)
    // …nor by the daemon's recovery…
    const fg = await startForeground(p)
    expect(daemonLog(p)).toContain(
      `RECOVERY: Cleaned up orphaned PID ${victim.pid} for junior-dev-a (the pid now belongs to another process, which was left alone)`
    )
    await waitFor(() => archivedTriggers(p).length === 1, { what: "the interrupted trigger to run again" })
    // The slot file is written behind the change, within moments.
    await waitFor(() => readSlots(p)!["junior-dev-a"]?.status === "idle", { what: "the slot to be idle in the file" })
    expect(readSlots(p)!["junior-dev-a"]).toMatchObject({ status: "idle", pid: null })
    // …nor at shutdown.
    fg.child.kill("SIGTERM")
    await fg.exited
    expect(isAlive(victim.pid!)).toBe(true)
    expect(readText(caught) ?? "").toBe("")
  })
})

describe("simultaneous starts", () => {
  it("two `daemon start` at the same instant, ten times: exactly one daemon each time, both report its PID", async () => {
    const p = projects.make()
    const rounds: Array<number> = []
    for (let round = 0; round < 10; round++) {
      const [a, b] = await Promise.all([p.cli(["daemon", "start"]), p.cli(["daemon", "start"])])
      expect(a!.code, `round ${round}: ${a!.stdout}${a!.stderr}`).toBe(0)
      expect(b!.code, `round ${round}: ${b!.stdout}${b!.stderr}`).toBe(0)
      const pids = [a!, b!].map((r) => Number(/\(PID: (\d+)\)/.exec(r.stdout)?.[1]))
      expect(pids[0], `round ${round}`).toBe(pids[1])
      expect([a!.stdout, b!.stdout].filter((o) => /^Daemon started \(PID: \d+\)$/m.test(o)), `round ${round}`).toHaveLength(1)
      expect([a!.stdout, b!.stdout].filter((o) => /^Daemon already running \(PID: \d+\)$/m.test(o)), `round ${round}`).toHaveLength(1)
      // A loser that found the lock taken may still be exiting; it must not stay.
      const daemons = await waitFor(() => {
        const found = daemonProcesses(p)
        return found.length === 1 ? found : undefined
      }, { timeoutMs: 10_000, what: `exactly one daemon process (round ${round})` })
      expect(daemons[0]!.pid).toBe(pids[0])
      expect(readPidFile(p)).toBe(pids[0])
      rounds.push(pids[0]!)
      process.kill(pids[0]!, "SIGTERM")
      await waitFor(() => daemonProcesses(p).length === 0 && !fs.existsSync(pidFile(p)), { timeoutMs: 15_000, what: "the daemon to stop" })
    }
    expect(new Set(rounds).size).toBe(10)
    // One start line per round in the log: the loser never got as far as starting.
    expect(daemonLog(p).match(/START: Daemon started \(PID: \d+\)/g)).toHaveLength(10)
  }, 120_000)
})
