/**
 * Daemon lifecycle through the real CLI (contract §1, §2, §6; original-behaviour §7 S01–S09, S46).
 *
 * Every test runs against its own temporary project; `afterEach` kills whatever belongs to it.
 */
import { execFile, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { DAEMON_NODE_OPTIONS } from "../../src/daemon/nodeOptions.js"
import {
  archivedTriggers,
  daemonProcesses,
  grandchildPids,
  invalidEntries,
  pidFile,
  readPidFile,
  readSlots,
  startForeground
} from "../support/daemonHelpers.js"
import {
  BIN,
  daemonLog,
  deadPid,
  isAlive,
  projectProcesses,
  records,
  type TestProject,
  trigger,
  useProjects,
  waitFor
} from "../support/project.js"

const projects = useProjects()

const STARTED = /^Daemon started \(PID: (\d+)\)$/m

/** Starts the daemon with the CLI and returns its pid. */
const start = async (p: TestProject) => {
  const result = await p.cli(["daemon", "start"])
  expect(result.stderr).toBe("")
  expect(result.code).toBe(0)
  const match = STARTED.exec(result.stdout)
  expect(match, `start printed: ${result.stdout}`).not.toBeNull()
  return Number(match![1])
}

describe("daemon start (S01–S04)", () => {
  it("S01: starts in the background, writes the pid file, logs START and MODE, and releases the caller's stdout", async () => {
    const p = projects.make()
    // `out=$(starforge daemon start)` must return: the daemon may not keep the command substitution's pipe open.
    const shell = await new Promise<{ code: number | null; killed: boolean; stdout: string; stderr: string }>((resolve) => {
      execFile(
        "sh",
        ["-c", `out=$("${process.execPath}" "${BIN}" daemon start --project "${p.root}"); rc=$?; printf '%s\\n' "$out"; exit $rc`],
        { cwd: p.root, env: p.env, timeout: 40_000 },
        (error, stdout, stderr) =>
          resolve({ code: error ? (typeof error.code === "number" ? error.code : null) : 0, killed: error?.killed ?? false, stdout, stderr })
      )
    })
    expect(shell.killed).toBe(false)
    expect(shell.code).toBe(0)
    expect(shell.stderr).toBe("")
    const match = /^Daemon started \(PID: (\d+)\)\n$/.exec(shell.stdout)
    expect(match, `stdout: ${JSON.stringify(shell.stdout)}`).not.toBeNull()
    const pid = Number(match![1])
    expect(readPidFile(p)).toBe(pid)
    expect(isAlive(pid)).toBe(true)
    // Its own session, detached from the caller.
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    expect(Number(fields[3])).toBe(pid) // session id
    expect(Number(fields[4])).toBe(0) // no controlling terminal
    const log = daemonLog(p)
    expect(log).toMatch(new RegExp(`^\\[[^\\]]+Z\\] \\[\\] START: Daemon started \\(PID: ${pid}\\)`, "m"))
    expect(log).toMatch(/^\[[^\]]+Z\] \[\] MODE: /m)
    expect(daemonProcesses(p).map((d) => d.pid)).toEqual([pid])
    // With the daemon's Node options (heap sizing, no idle-time collections).
    expect(fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")).toEqual(expect.arrayContaining([...DAEMON_NODE_OPTIONS]))
  })

  it("S02: a second start reports the running daemon, exits 0 and starts nothing", async () => {
    const p = projects.make()
    const pid = await start(p)
    const again = await p.cli(["daemon", "start"])
    expect(again.code).toBe(0)
    expect(again.stdout.trim()).toBe(`Daemon already running (PID: ${pid})`)
    expect(daemonProcesses(p).map((d) => d.pid)).toEqual([pid])
    expect(readPidFile(p)).toBe(pid)
    expect(daemonLog(p).match(/START: Daemon started/g)).toHaveLength(1)
  })

  it("S03: a pid file naming a dead process does not stop start", async () => {
    const p = projects.make()
    const stale = await deadPid()
    fs.writeFileSync(pidFile(p), `${stale}\n`)
    const pid = await start(p)
    expect(pid).not.toBe(stale)
    expect(readPidFile(p)).toBe(pid)
    expect(isAlive(pid)).toBe(true)
  })

  it("S04: a pid file naming a live unrelated process does not stop start, and that process is never signalled", async () => {
    const p = projects.make()
    const unrelated = projects.track(spawn("sleep", ["300"], { cwd: p.root, stdio: "ignore" }))
    await waitFor(() => isAlive(unrelated.pid!), { what: "the unrelated process" })
    fs.writeFileSync(pidFile(p), `${unrelated.pid}\n`)

    // Not this project's daemon: status says "not running".
    const before = await p.cli(["daemon", "status"])
    expect(before.code).toBe(1)

    const pid = await start(p)
    expect(pid).not.toBe(unrelated.pid)
    expect(isAlive(pid)).toBe(true)
    expect(readPidFile(p)).toBe(pid)

    const stopped = await p.cli(["daemon", "stop"])
    expect(stopped.code).toBe(0)
    await waitFor(() => !isAlive(pid), { timeoutMs: 5_000, what: "the daemon to exit" })
    expect(isAlive(unrelated.pid!)).toBe(true)
    expect(unrelated.exitCode).toBeNull()
    expect(unrelated.signalCode).toBeNull()
  })
})

describe("daemon stop (S05, S06)", () => {
  it("S05: stops the daemon and every process it started; removes the pid file; logs STOP", async () => {
    const p = projects.make()
    const pid = await start(p)
    // A running agent with a background grandchild, so "nothing survives" means something.
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "sleep=60 grandchild"))
    await waitFor(() => grandchildPids(p).length > 0, { what: "the agent and its grandchild to start" })
    const agentPid = records(p).find((r) => r.kind === "start")!.pid
    const grandchild = grandchildPids(p)[0]!
    expect(isAlive(agentPid)).toBe(true)
    expect(isAlive(grandchild)).toBe(true)

    const stopped = await p.cli(["daemon", "stop"])
    expect(stopped.code).toBe(0)
    expect(stopped.stderr).toBe("")
    expect(isAlive(pid)).toBe(false)
    expect(isAlive(agentPid)).toBe(false)
    expect(isAlive(grandchild)).toBe(false)
    expect(projectProcesses(p.root)).toEqual([])
    expect(fs.existsSync(pidFile(p))).toBe(false)
    expect(daemonLog(p)).toMatch(/^\[[^\]]+Z\] \[[^\]]*\] STOP: /m)
    // The interrupted trigger is back in the queue, not lost.
    expect(fs.existsSync(path.join(p.triggers, "junior-dev-a-work-1.trigger"))).toBe(true)
    expect(fs.existsSync(path.join(p.triggers, "junior-dev-a-work-1.processing"))).toBe(false)
  })

  it("S06: stop when no daemon runs exits 0 with 'Daemon is not running'", async () => {
    const p = projects.make()
    const result = await p.cli(["daemon", "stop"])
    expect(result.code).toBe(0)
    expect(result.stdout.trim()).toBe("Daemon is not running")
    expect(result.stderr).toBe("")
  })
})

describe("daemon status (S07, S08)", () => {
  it("S07: status of a running daemon shows PID, uptime, queue counts, slots and recent log lines; --json has the contract's keys", async () => {
    const p = projects.make({ MAX_CONCURRENT_AGENTS: "4" })
    const startedAt = Date.now()
    const pid = await start(p)
    // One success and one invalid trigger, so the counts are not all zero.
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "", { context: { ticket: 52 } }))
    p.drop("broken-1", { to_agent: null })
    await waitFor(
      () =>
        archivedTriggers(p).some((n) => n.endsWith("junior-dev-a-work-1.trigger")) &&
        invalidEntries(p).some((n) => n.endsWith("broken-1.trigger")) &&
        readSlots(p)?.["junior-dev-a"]?.status === "idle",
      { what: "both triggers to be archived" }
    )

    const [text, json] = await Promise.all([p.cli(["daemon", "status"]), p.cli(["daemon", "status", "--json"])])
    const elapsed = (Date.now() - startedAt) / 1000

    expect(text.code).toBe(0)
    expect(text.stdout).toContain(`PID: ${pid}`)
    const uptime = /\bup (?:(\d+)m )?(\d+)s\b/.exec(text.stdout)
    expect(uptime, text.stdout).not.toBeNull()
    expect(Number(uptime![1] ?? 0) * 60 + Number(uptime![2])).toBeLessThanOrEqual(Math.ceil(elapsed) + 1)
    expect(text.stdout).toMatch(/parallel/i)
    expect(text.stdout).toMatch(/\b0 pending\b/)
    expect(text.stdout).toMatch(/\b1 done\b/)
    expect(text.stdout).toMatch(/\b1 invalid\b/)
    expect(text.stdout).toMatch(/\b0 dead-letter\b/)
    expect(text.stdout).toMatch(/^junior-dev-a\s+idle\b/m)
    // The last log lines.
    const lastLine = daemonLog(p).trimEnd().split("\n").at(-1)!
    expect(text.stdout).toContain(lastLine)

    expect(json.code).toBe(0)
    const s = JSON.parse(json.stdout) as Record<string, any>
    // The contract's keys, plus the additions of later issues (history counts, usage and cost, why waiting).
    expect(Object.keys(s).sort()).toEqual([
      "budgets",
      "capacity",
      "cost_today",
      "last_hour",
      "max_concurrent",
      "mode",
      "pid",
      "queue",
      "running",
      "slots",
      "uptime_seconds",
      "usage_limits",
      "waiting",
      "waiting_total"
    ])
    expect(s["running"]).toBe(true)
    expect(s["pid"]).toBe(pid)
    expect(s["mode"]).toBe("parallel")
    expect(s["max_concurrent"]).toBe(4)
    expect(typeof s["uptime_seconds"]).toBe("number")
    expect(Number.isInteger(s["uptime_seconds"])).toBe(true)
    expect(s["uptime_seconds"]).toBeGreaterThanOrEqual(0)
    expect(s["uptime_seconds"]).toBeLessThanOrEqual(Math.ceil(elapsed) + 1)
    expect(Object.keys(s["queue"]).sort()).toEqual(["dead_letter", "done", "failed", "invalid", "pending", "running"])
    for (const v of Object.values(s["queue"])) expect(Number.isInteger(v)).toBe(true)
    expect(s["queue"]).toEqual({ pending: 0, running: 0, done: 1, failed: 0, invalid: 1, dead_letter: 0 })
    expect(s["slots"]).toEqual(readSlots(p))
    expect(s["slots"]["junior-dev-a"]).toMatchObject({ status: "idle", pid: null, ticket: null, started_at: null })
  })

  it("S08: status without a daemon exits 1 and says it is not running", async () => {
    const p = projects.make()
    const [text, json] = await Promise.all([p.cli(["daemon", "status"]), p.cli(["daemon", "status", "--json"])])
    expect(text.code).toBe(1)
    expect(text.stdout).toMatch(/not running/i)
    expect(json.code).toBe(1)
    const s = JSON.parse(json.stdout) as Record<string, unknown>
    expect(s["running"]).toBe(false)
    expect(s["pid"]).toBeNull()
  })
})

describe("daemon restart (S09)", () => {
  it("S09: restart stops the old daemon and starts a new one", async () => {
    const p = projects.make()
    const first = await start(p)
    const result = await p.cli(["daemon", "restart"])
    expect(result.code).toBe(0)
    const match = STARTED.exec(result.stdout)
    expect(match, result.stdout).not.toBeNull()
    const second = Number(match![1])
    expect(second).not.toBe(first)
    expect(isAlive(first)).toBe(false)
    expect(isAlive(second)).toBe(true)
    expect(readPidFile(p)).toBe(second)
    expect(daemonProcesses(p).map((d) => d.pid)).toEqual([second])
  })
})

describe("daemon start --foreground and modes (S46)", () => {
  it("--foreground runs attached until SIGTERM, echoes the log to stderr and exits 0", async () => {
    const p = projects.make({ PARALLEL_DAEMON: "false" })
    const fg = await startForeground(p)
    const child = fg.child
    expect(fg.stderr()).toContain(`Daemon started (PID: ${child.pid})`)
    expect(fg.stderr()).toMatch(/MODE: Sequential execution/)
    expect(readPidFile(p)).toBe(child.pid)
    expect(daemonLog(p)).toMatch(/^\[[^\]]+Z\] \[\] MODE: Sequential execution$/m)
    child.kill("SIGTERM")
    const { code, signal } = await fg.exited
    expect(signal).toBeNull()
    expect(code).toBe(0)
    expect(fs.existsSync(pidFile(p))).toBe(false)
    expect(daemonLog(p)).toMatch(/STOP: /)
    expect(projectProcesses(p.root)).toEqual([])
  })

  it("S46: PARALLEL_DAEMON and MAX_CONCURRENT_AGENTS from .env select parallel mode", async () => {
    const p = projects.make()
    delete (p.env as Record<string, string>)["PARALLEL_DAEMON"]
    fs.writeFileSync(path.join(p.root, ".env"), "# project settings\nexport PARALLEL_DAEMON=true\nMAX_CONCURRENT_AGENTS=\"7\"\n")
    await startForeground(p)
    expect(daemonLog(p)).toMatch(/^\[[^\]]+Z\] \[\] MODE: Parallel execution enabled \(max concurrent: 7\)$/m)
  })

  it("sequential mode is the default and logs 'MODE: Sequential execution'", async () => {
    const p = projects.make()
    delete (p.env as Record<string, string>)["PARALLEL_DAEMON"]
    await startForeground(p)
    expect(daemonLog(p)).toMatch(/^\[[^\]]+Z\] \[\] MODE: Sequential execution$/m)
    expect(daemonLog(p)).not.toMatch(/MODE: Parallel/)
  })
})

describe("bad configuration", () => {
  const cases: Array<{ what: string; variable: string; value: string; setup: (p: TestProject) => Record<string, string> }> = [
    {
      what: "MAX_CONCURRENT_AGENTS=abc in .env",
      variable: "MAX_CONCURRENT_AGENTS",
      value: "abc",
      setup: (p) => {
        fs.writeFileSync(path.join(p.root, ".env"), "MAX_CONCURRENT_AGENTS=abc\n")
        return {}
      }
    },
    {
      what: "AGENT_TIMEOUT=-1 in the environment",
      variable: "AGENT_TIMEOUT",
      value: "-1",
      setup: () => ({ AGENT_TIMEOUT: "-1" })
    }
  ]
  for (const c of cases) {
    it(`${c.what} stops 'daemon start' with one line naming the variable and the value`, async () => {
      const p = projects.make()
      const env = c.setup(p)
      const result = await p.cli(["daemon", "start"], { env })
      expect(result.code).not.toBe(0)
      expect(result.stdout).not.toMatch(/Daemon started/)
      const lines = result.stderr.trimEnd().split("\n")
      expect(lines, result.stderr).toHaveLength(1)
      expect(lines[0]).toContain(c.variable)
      expect(lines[0]).toContain(c.value)
      expect(result.stderr).not.toMatch(/\n\s+at |Error:|\.ts:\d+|\.js:\d+/)
      expect(daemonProcesses(p)).toEqual([])
      expect(projectProcesses(p.root)).toEqual([])
      expect(fs.existsSync(pidFile(p))).toBe(false)
    })
  }
})
