/**
 * The command line outside `daemon start/stop/status` (contract §1, §3, §4): `trigger create`,
 * `slots`, `dlq`, `--help`, `--version` and usage errors.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { archivedTriggers, exitWithin, readSlots, startForeground, writeSlots } from "../support/daemonHelpers.js"
import {
  deadPid,
  isAlive,
  listDir,
  readJson,
  records,
  runCli,
  type TestProject,
  trigger,
  useProjects,
  waitFor
} from "../support/project.js"

const projects = useProjects()

const plain = (text: string) => text.replace(/\x1b\[[0-9;]*m/g, "")
const NO_STACK = /\n\s+at |\.ts:\d+|\.js:\d+/

describe("trigger create", () => {
  it("writes a valid trigger named <agent>-<action>-<ms>-<hex>.trigger in --project's queue and prints its path", async () => {
    const p = projects.make()
    const before = Date.now()
    const args = [
      "trigger", "create", "--to", "junior-dev-a", "--action", "implement", "--from", "orchestrator",
      "--message", "Build the thing", "--ticket", "52", "--context", `{"pr": 161}`, "--priority", "high",
      "--project", p.root
    ]
    // Run from another directory: --project decides where the trigger goes. Two at once never collide.
    const [first, second] = await Promise.all([runCli(args, { env: p.env }), runCli(args, { env: p.env })])
    const after = Date.now()
    for (const result of [first!, second!]) {
      expect(result.stderr).toBe("")
      expect(result.code).toBe(0)
      const lines = result.stdout.trimEnd().split("\n")
      expect(lines).toHaveLength(1)
      const file = lines[0]!
      expect(path.dirname(file)).toBe(p.triggers)
      const match = /^junior-dev-a-implement-(\d+)-([0-9a-f]+)\.trigger$/.exec(path.basename(file))
      expect(match, file).not.toBeNull()
      const ms = Number(match![1])
      expect(ms).toBeGreaterThanOrEqual(before)
      expect(ms).toBeLessThanOrEqual(after)
      const content = readJson(file)
      expect(content).toMatchObject({
        to_agent: "junior-dev-a",
        from_agent: "orchestrator",
        action: "implement",
        message: "Build the thing",
        context: { pr: 161, ticket: "52" },
        priority: "high"
      })
      expect(typeof content["trace_id"]).toBe("string")
      expect(typeof content["timestamp"]).toBe("string")
    }
    expect(first!.stdout).not.toBe(second!.stdout)
    expect(listDir(p.triggers).filter((n) => n.endsWith(".trigger"))).toHaveLength(2)
    // Nothing left behind in staging.
    expect(listDir(path.join(p.triggers, "staging"))).toEqual([])
  })

  it("rejects an invalid --to with exit 1 and a message naming to_agent, writing nothing", async () => {
    const p = projects.make()
    const result = await p.cli(["trigger", "create", "--to", "../evil", "--action", "work"])
    expect(result.code).toBe(1)
    expect(result.stdout).toBe("")
    expect(result.stderr).toContain("to_agent")
    expect(result.stderr.trimEnd().split("\n")).toHaveLength(1)
    expect(result.stderr).not.toMatch(NO_STACK)
    expect(listDir(p.triggers).filter((n) => n.endsWith(".trigger"))).toEqual([])
  })

  it("rejects --context that is not a JSON object with exit 1, writing nothing", async () => {
    const p = projects.make()
    const [broken, array] = await Promise.all([
      p.cli(["trigger", "create", "--to", "junior-dev-a", "--action", "work", "--context", "{nope"]),
      p.cli(["trigger", "create", "--to", "junior-dev-a", "--action", "work", "--context", "[1, 2]"])
    ])
    for (const result of [broken!, array!]) {
      expect(result.code).toBe(1)
      expect(result.stdout).toBe("")
      expect(result.stderr).toContain("--context")
      expect(result.stderr.trimEnd().split("\n")).toHaveLength(1)
      expect(result.stderr).not.toMatch(NO_STACK)
    }
    expect(listDir(p.triggers).filter((n) => n.endsWith(".trigger"))).toEqual([])
  })
})

describe("slots", () => {
  it("list --json is the slot file; show exits 0 for a busy agent and 1 for an idle or unknown one", async () => {
    const p = projects.make()
    await startForeground(p)
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "sleep=30", { context: { ticket: 52 } }))
    p.drop("junior-dev-b-work-1", trigger("junior-dev-b"))
    await waitFor(() => {
      const slots = readSlots(p) ?? {}
      // The slot records the pid at spawn; the agent writes its own start record a moment later.
      return slots["junior-dev-a"]?.pid && slots["junior-dev-b"]?.status === "idle" &&
        records(p).some((r) => r.kind === "start" && r.agent === "junior-dev-a") &&
        archivedTriggers(p).some((n) => n.endsWith("junior-dev-b-work-1.trigger"))
    }, { what: "a busy and an idle slot" })
    const agentPid = records(p).find((r) => r.kind === "start" && r.agent === "junior-dev-a")!.pid

    const [list, text, busy, idle, unknown] = await Promise.all([
      p.cli(["slots", "list", "--json"]),
      p.cli(["slots", "list"]),
      p.cli(["slots", "show", "junior-dev-a"]),
      p.cli(["slots", "show", "junior-dev-b"]),
      p.cli(["slots", "show", "nobody"])
    ])
    expect(list.code).toBe(0)
    const slots = JSON.parse(list.stdout)
    expect(slots).toEqual(readSlots(p))
    expect(slots["junior-dev-a"]).toMatchObject({ status: "busy", pid: String(agentPid), ticket: "52" })
    expect(slots["junior-dev-a"]["started_at"]).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/)
    expect(slots["junior-dev-b"]).toMatchObject({ status: "idle", pid: null, ticket: null, started_at: null })

    expect(text.code).toBe(0)
    expect(text.stdout).toMatch(new RegExp(`^junior-dev-a\\s+busy\\s+${agentPid}\\s+52\\b`, "m"))
    expect(text.stdout).toMatch(/^junior-dev-b\s+idle\b/m)

    expect(busy.code).toBe(0)
    expect(busy.stdout).toContain(String(agentPid))
    expect(idle.code).toBe(1)
    expect(unknown.code).toBe(1)
  })

  it("list, show and --json carry the resource sample of a busy slot: CPU, MEM, PEAK, PROCS (fixture slot file)", async () => {
    const p = projects.make()
    const MB = 1024 * 1024
    const sampled = {
      status: "busy",
      pid: "4242",
      ticket: "52",
      started_at: "2025-10-25T05:00:00Z",
      trigger: "junior-dev-a-work-1.trigger",
      attempt: 1,
      cpu_percent: 37.4,
      rss_bytes: 212 * MB,
      processes: 5,
      peak_rss_bytes: Math.round(1.4 * 1024 * MB),
      cpu_seconds: 12.34,
      sampled_at: "2025-10-25T05:09:58Z"
    }
    writeSlots(p, {
      "junior-dev-a": sampled,
      // Busy, not sampled yet (or RESOURCE_SAMPLE_INTERVAL=0): every resource cell is "-".
      "junior-dev-b": { status: "busy", pid: "4243", ticket: null, started_at: "2025-10-25T05:00:00Z", trigger: "b.trigger" },
      "qa-engineer": { status: "idle", pid: null, ticket: null, started_at: null }
    })
    const [list, json, show, showJson] = await Promise.all([
      p.cli(["slots", "list"]),
      p.cli(["slots", "list", "--json"]),
      p.cli(["slots", "show", "junior-dev-a"]),
      p.cli(["slots", "show", "junior-dev-a", "--json"])
    ])
    expect(list.code).toBe(0)
    const lines = list.stdout.trimEnd().split("\n")
    expect(lines[0]).toMatch(/^AGENT\s+STATUS\s+PID\s+TICKET\s+RUNNING FOR\s+TRIGGER\s+CPU\s+MEM\s+PEAK\s+PROCS\s+PROGRESS$/)
    expect(lines[1]).toMatch(/^junior-dev-a\s+busy\s+4242\s+52\s+\d+h \d\dm \d\ds\s+junior-dev-a-work-1\.trigger\s+37%\s+212 MB\s+1\.4 GB\s+5\s+-$/)
    expect(lines[2]).toMatch(/^junior-dev-b\s+busy\s+4243\s+-\s+\d+h \d\dm \d\ds\s+b\.trigger\s+-\s+-\s+-\s+-\s+-$/)
    expect(lines[3]).toMatch(/^qa-engineer\s+idle(\s+-){9}$/)
    // The columns line up: each cell starts where its header does.
    const at = (header: string) => lines[0]!.indexOf(header)
    expect(lines[1]!.indexOf("37%")).toBe(at("CPU"))
    expect(lines[1]!.indexOf("212 MB")).toBe(at("MEM"))
    expect(lines[1]!.indexOf("1.4 GB")).toBe(at("PEAK"))

    expect(JSON.parse(json.stdout)["junior-dev-a"]).toEqual(sampled)
    expect(show.code).toBe(0)
    expect(show.stdout).toMatch(/^junior-dev-a\s+busy\s+4242\s+52\s+.*\s+37%\s+212 MB\s+1\.4 GB\s+5\s+-$/m)
    for (const line of [
      "cpu_percent: 37.4",
      `rss_bytes: ${212 * MB} (212 MB)`,
      "processes: 5",
      `peak_rss_bytes: ${sampled.peak_rss_bytes} (1.4 GB)`,
      "cpu_seconds: 12.34",
      "sampled_at: 2025-10-25T05:09:58Z"
    ]) expect(show.stdout.split("\n")).toContain(line)
    expect(JSON.parse(showJson.stdout)).toEqual(sampled)
  })

  it("the daemon's samples of a running agent reach slots list, its --json and status", async () => {
    const p = projects.make({ RESOURCE_SAMPLE_INTERVAL: "0.2" })
    await startForeground(p)
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "sleep=30", { context: { ticket: 52 } }))
    const slot = await waitFor(() => {
      const s = readSlots(p)?.["junior-dev-a"]
      return s?.status === "busy" && typeof s["rss_bytes"] === "number" && typeof s["cpu_percent"] === "number" ? s : undefined
    }, { what: "a sampled busy slot" })
    expect(slot["processes"]).toBeGreaterThanOrEqual(1)
    expect(slot["peak_rss_bytes"]).toBeGreaterThanOrEqual(slot["rss_bytes"] as number)
    const [json, text, status] = await Promise.all([p.cli(["slots", "list", "--json"]), p.cli(["slots", "list"]), p.cli(["daemon", "status"])])
    expect(Object.keys(JSON.parse(json.stdout)["junior-dev-a"])).toEqual(
      expect.arrayContaining(["cpu_percent", "rss_bytes", "processes", "peak_rss_bytes", "cpu_seconds", "sampled_at"])
    )
    const row = /^junior-dev-a\s+busy\s+\d+\s+52\s+\d+s\s+junior-dev-a-work-1\.trigger\s+\d+%\s+\d+ (?:B|KB|MB|GB)\s+\d+ (?:B|KB|MB|GB)\s+\d+\s+-$/m
    expect(text.stdout).toMatch(row)
    expect(status.stdout).toMatch(row)
  })

  it("cleanup releases slots whose process is gone and never signals a process that reused the pid", async () => {
    const p = projects.make()
    const dead = await deadPid()
    const unrelated = projects.track(spawn("sleep", ["300"], { cwd: p.root, stdio: "ignore" }))
    await waitFor(() => isAlive(unrelated.pid!), { what: "the unrelated process" })
    writeSlots(p, {
      "junior-dev-a": { status: "busy", pid: String(dead), ticket: "52", started_at: "2025-10-25T05:00:00Z" },
      "junior-dev-b": { status: "idle", pid: null, ticket: null, started_at: null },
      // A live pid with another start time: the pid was reused by some other process.
      "qa-engineer": { status: "busy", pid: String(unrelated.pid), ticket: null, started_at: "2025-10-25T05:00:00Z", pid_start_time: "1" }
    })
    const result = await p.cli(["slots", "cleanup"])
    expect(result.code).toBe(0)
    expect(result.stdout).toContain(`Cleaned up orphaned PID ${dead} for junior-dev-a`)
    expect(result.stdout).toContain(`Cleaned up orphaned PID ${unrelated.pid} for qa-engineer`)
    const slots = readSlots(p)!
    for (const agent of ["junior-dev-a", "junior-dev-b", "qa-engineer"]) {
      expect(slots[agent]).toMatchObject({ status: "idle", pid: null, ticket: null, started_at: null })
    }
    expect(isAlive(unrelated.pid!)).toBe(true)
    expect(unrelated.signalCode).toBeNull()
  })
})

describe("daemon status: the effective cap and the machine", () => {
  it("--json has the daemon's capacity.json; the Mode line names a lowered cap and why; the Machine line; nothing of it without a daemon", async () => {
    const p = projects.make({ MAX_CONCURRENT_AGENTS: "8" })
    const capacityFile = path.join(p.claude, "daemon", "capacity.json")
    const stopped = await p.cli(["daemon", "status", "--json"])
    expect(stopped.code).toBe(1)
    expect(JSON.parse(stopped.stdout)["capacity"]).toBeNull()

    // Without SCALE_* the daemon writes the file once, at start, at the hard cap, and never looks at the machine.
    await startForeground(p)
    const written = await waitFor(() => (fs.existsSync(capacityFile) ? readJson(capacityFile) : undefined), { what: "capacity.json" })
    expect(written).toMatchObject({ effective_cap: 8, max_concurrent: 8, reason: null, load_per_core: null, available_memory_bytes: null })
    const [atCap, atCapJson] = await Promise.all([p.cli(["daemon", "status"]), p.cli(["daemon", "status", "--json"])])
    expect(atCap.code).toBe(0)
    expect(atCap.stdout.split("\n")).toContain("Mode: parallel (max concurrent: 8)")
    expect(atCap.stdout).not.toContain("Machine:")
    expect(JSON.parse(atCapJson.stdout)["capacity"]).toEqual(written)

    // What a scaling daemon writes while the load holds the cap down (the daemon does not write it again).
    const lowered = {
      effective_cap: 3,
      max_concurrent: 8,
      min_concurrent: 1,
      reason: "load 2.4 per core is over SCALE_MAX_LOAD 2",
      changed_at: "2025-10-25T05:00:00Z",
      load_per_core: 2.4,
      available_memory_bytes: Math.round(12.3 * 1024 ** 3),
      checked_at: "2025-10-25T05:00:05Z"
    }
    fs.writeFileSync(capacityFile, JSON.stringify(lowered, null, 2) + "\n")
    const [text, json] = await Promise.all([p.cli(["daemon", "status"]), p.cli(["daemon", "status", "--json"])])
    const lines = text.stdout.split("\n")
    expect(lines[0]).toMatch(/^Daemon is running \(PID: \d+\), up /)
    expect(lines[1]).toBe("Mode: parallel (max concurrent: 8; effective cap 3: load 2.4 per core is over SCALE_MAX_LOAD 2)")
    expect(lines[2]).toBe("Machine: load 2.4 per core, 12.3 GB memory available")
    expect(lines[3]).toMatch(/^Queue: /)
    const s = JSON.parse(json.stdout)
    expect(s["capacity"]).toEqual(lowered)
    expect(s["max_concurrent"]).toBe(8)
  })

  it("a capacity.json left by a stopped daemon is not shown", async () => {
    const p = projects.make({ MAX_CONCURRENT_AGENTS: "4" })
    fs.mkdirSync(path.join(p.claude, "daemon"), { recursive: true })
    fs.writeFileSync(path.join(p.claude, "daemon", "capacity.json"), JSON.stringify({
      effective_cap: 1,
      max_concurrent: 4,
      min_concurrent: 1,
      reason: "load 9 per core is over SCALE_MAX_LOAD 2",
      changed_at: null,
      load_per_core: 9,
      available_memory_bytes: 1024 ** 3,
      checked_at: null
    }))
    const [text, json] = await Promise.all([p.cli(["daemon", "status"]), p.cli(["daemon", "status", "--json"])])
    expect(text.code).toBe(1)
    expect(text.stdout.split("\n").slice(0, 2)).toEqual(["Daemon is not running", "Mode: parallel (max concurrent: 4)"])
    expect(text.stdout).not.toContain("Machine:")
    expect(JSON.parse(json.stdout)["capacity"]).toBeNull()
  })
})

describe("dlq", () => {
  const writeEntry = (p: TestProject, name: string, meta: Record<string, unknown>, content: unknown = trigger("junior-dev-a")) => {
    const dir = path.join(p.triggers, "dead-letter")
    fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(path.join(dir, `${name}.trigger`), JSON.stringify(content))
    fs.writeFileSync(path.join(dir, `${name}.trigger.meta.json`), JSON.stringify(meta, null, 2))
  }
  const meta = (enteredMs: number) => ({
    failure_reason: "failed 3 times; last attempt exited with code 1",
    exit_code: 1,
    signal: null,
    attempts: 3,
    retry_timestamps: ["2025-10-25T05:00:00Z", "2025-10-25T05:00:05Z", "2025-10-25T05:00:15Z"],
    dlq_entry_timestamp: new Date(enteredMs).toISOString().replace(/\.\d{3}Z$/, "Z"),
    agent: "junior-dev-a",
    trace_id: "TRACE-1761368400-aaaaaa",
    last_log: "/nonexistent/junior-dev-a-1761368415.log"
  })

  it("list and show an entry; an unknown NAME or a NAME with '/' exits 1", async () => {
    const p = projects.make()
    writeEntry(p, "junior-dev-a-work-1", meta(Date.now()))
    const [json, text, byStem, byName, unknown, slash, retryUnknown] = await Promise.all([
      p.cli(["dlq", "list", "--json"]),
      p.cli(["dlq", "list"]),
      p.cli(["dlq", "show", "junior-dev-a-work-1"]),
      p.cli(["dlq", "show", "junior-dev-a-work-1.trigger"]),
      p.cli(["dlq", "show", "nope.trigger"]),
      p.cli(["dlq", "show", "../dead-letter/junior-dev-a-work-1.trigger"]),
      p.cli(["dlq", "retry", "nope"])
    ])
    expect(json.code).toBe(0)
    const entries = JSON.parse(json.stdout)
    expect(entries).toHaveLength(1)
    expect(entries[0]).toMatchObject({ name: "junior-dev-a-work-1.trigger", agent: "junior-dev-a", attempts: 3, exit_code: 1 })

    expect(text.code).toBe(0)
    expect(text.stdout).toContain("junior-dev-a-work-1.trigger")
    expect(text.stdout).toContain("TRACE-1761368400-aaaaaa")
    expect(text.stdout).toContain("failed 3 times")

    for (const shown of [byStem, byName]) {
      expect(shown.code).toBe(0)
      expect(shown.stdout).toContain(`"to_agent":"junior-dev-a"`)
      expect(shown.stdout).toContain("failed 3 times; last attempt exited with code 1")
    }
    for (const bad of [unknown, slash, retryUnknown]) {
      expect(bad.code).toBe(1)
      expect(bad.stderr.trimEnd().split("\n")).toHaveLength(1)
      expect(bad.stderr).not.toMatch(NO_STACK)
    }
    expect(unknown.stderr).toContain("nope.trigger")
    // Nothing moved.
    expect(listDir(path.join(p.triggers, "dead-letter"))).toEqual(["junior-dev-a-work-1.trigger", "junior-dev-a-work-1.trigger.meta.json"])
  })

  it("retry moves a real dead-letter entry back to the queue and the daemon runs it again with fresh attempts", async () => {
    const p = projects.make({ MAX_RETRIES: "2", INITIAL_RETRY_DELAY: "0.1" })
    await startForeground(p)
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "exit=3"))
    const metaFile = path.join(p.triggers, "dead-letter", "junior-dev-a-work-1.trigger.meta.json")
    await waitFor(() => fs.existsSync(metaFile), { what: "the dead-letter entry" })
    expect(readJson(metaFile)["attempts"]).toBe(2)

    const listed = await p.cli(["dlq", "list", "--json"])
    expect(JSON.parse(listed.stdout).map((e: { name: string }) => e.name)).toEqual(["junior-dev-a-work-1.trigger"])

    const retried = await p.cli(["dlq", "retry", "junior-dev-a-work-1.trigger"])
    expect(retried.code).toBe(0)
    expect(retried.stdout).toContain(path.join(p.triggers, "junior-dev-a-work-1.trigger"))
    // It runs again from attempt 1 and, failing again, comes back with a fresh count of 2.
    await waitFor(() => records(p).filter((r) => r.kind === "start").length === 4 && fs.existsSync(metaFile), {
      what: "the retried trigger to run and fail again"
    })
    expect(records(p).filter((r) => r.kind === "start").map((r) => r.attempt)).toEqual([1, 2, 1, 2])
    expect(readJson(metaFile)["attempts"]).toBe(2)
    // The first failure record is kept with the time of the manual retry.
    const kept = listDir(path.join(p.triggers, "dead-letter", "retried"))
    expect(kept).toHaveLength(1)
    expect(readJson(path.join(p.triggers, "dead-letter", "retried", kept[0]!))["manual_retry_timestamp"]).toBeDefined()
  })

  it("retry of a fixed entry runs it to success; the DLQ is then empty", async () => {
    const p = projects.make()
    await startForeground(p)
    writeEntry(p, "junior-dev-a-work-1", meta(Date.now()), trigger("junior-dev-a", ""))
    const retried = await p.cli(["dlq", "retry", "junior-dev-a-work-1"])
    expect(retried.code).toBe(0)
    await waitFor(
      () => archivedTriggers(p).some((n) => n.endsWith("-junior-dev-a-work-1.trigger")),
      { what: "the retried trigger to be archived" }
    )
    expect(records(p).filter((r) => r.kind === "start").map((r) => [r.trigger, r.attempt])).toEqual([["junior-dev-a-work-1", 1]])
    const listed = await p.cli(["dlq", "list", "--json"])
    expect(listed.code).toBe(0)
    expect(JSON.parse(listed.stdout)).toEqual([])
  })

  it("purge --older-than DAYS removes only old entries; purge removes the rest", async () => {
    const p = projects.make()
    writeEntry(p, "old-1", meta(Date.now() - 10 * 86_400_000))
    writeEntry(p, "new-1", meta(Date.now()))
    const dir = path.join(p.triggers, "dead-letter")
    const older = await p.cli(["dlq", "purge", "--older-than", "5"])
    expect(older.code).toBe(0)
    expect(older.stdout).toMatch(/Purged 1 dead-letter entry\b/)
    expect(listDir(dir)).toEqual(["new-1.trigger", "new-1.trigger.meta.json"])
    const all = await p.cli(["dlq", "purge"])
    expect(all.code).toBe(0)
    expect(all.stdout).toMatch(/Purged 1 dead-letter entry\b/)
    expect(listDir(dir)).toEqual([])
  })
})

describe("help, version and usage errors", () => {
  const commands: ReadonlyArray<ReadonlyArray<string>> = [
    [],
    ["daemon"],
    ["daemon", "start"],
    ["daemon", "stop"],
    ["daemon", "restart"],
    ["daemon", "status"],
    ["daemon", "logs"],
    ["trigger"],
    ["trigger", "create"],
    ["slots"],
    ["slots", "list"],
    ["slots", "show"],
    ["slots", "cleanup"],
    ["dlq"],
    ["dlq", "list"],
    ["dlq", "show"],
    ["dlq", "retry"],
    ["dlq", "purge"]
  ]
  const leaves = new Set(commands.filter((c) => c.length === 2).map((c) => c.join(" ")))

  describe.concurrent("--help", () => {
    for (const command of commands) {
      it(`starforge ${[...command, "--help"].join(" ")} exits 0 with its usage`, async () => {
        const result = await runCli([...command, "--help"])
        expect(result.code).toBe(0)
        expect(result.stderr).toBe("")
        const out = plain(result.stdout)
        expect(out).toContain("USAGE")
        expect(out).toContain(`$ ${command.at(-1) ?? "starforge"}`)
        if (leaves.has(command.join(" "))) expect(out).toContain("--project")
      })
    }
  })

  // Contract §1: "Every command supports --help". @effect/cli only recognises --help right after
  // the command words; after an option it answers "Received unknown argument: '--help'" (exit 2).
  // Known failure; see the integration report.
  it("--help after other options still shows the help", async () => {
    const [status, create] = await Promise.all([
      runCli(["daemon", "status", "--json", "--help"]),
      runCli(["trigger", "create", "--to", "junior-dev-a", "--help"])
    ])
    for (const result of [status, create]) {
      expect(result.code, plain(result.stdout + result.stderr)).toBe(0)
      expect(plain(result.stdout)).toContain("USAGE")
    }
  })

  it("--version prints 0.1.0", async () => {
    const result = await runCli(["--version"])
    expect(result.code).toBe(0)
    expect(result.stdout.trim()).toBe("0.1.0")
  })

  // runCli's stdout and stderr are pipes, not terminals: no colour (issue 25 part 6).
  it("help and usage errors have no ANSI escapes when not written to a terminal", async () => {
    const results = await Promise.all([
      runCli(["--help"]),
      runCli(["daemon", "start", "--help"]),
      runCli(["daemon", "status", "--bogus"]),
      runCli(["frobnicate"]),
      runCli(["daemon", "status", "--help"], { env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", NO_COLOR: "1" } })
    ])
    for (const result of results) {
      expect(result.stdout + result.stderr).not.toContain("\x1b")
    }
    expect(results[0]!.stdout).toContain("USAGE")
    const bogus = results[2]!
    expect(bogus.code).toBe(2)
    expect(bogus.stderr).toContain("--bogus")
  })

  it("an unknown subcommand exits non-zero without a stack trace", async () => {
    const [top, nested] = await Promise.all([runCli(["frobnicate"]), runCli(["daemon", "frobnicate"])])
    for (const result of [top, nested]) {
      expect(result.code).not.toBe(0)
      expect(result.stdout + result.stderr).not.toMatch(NO_STACK)
      expect(plain(result.stderr)).toMatch(/subcommand|frobnicate/i)
    }
  })
})

describe("daemon start on the terminal", () => {
  const BAD_ENV = "MAX_RETRIES=2\nthis line is not a setting\nFOO='unterminated\n"

  it("--foreground prints the ignored lines of .env on stderr before the daemon starts", async () => {
    const p = projects.make()
    fs.writeFileSync(path.join(p.root, ".env"), BAD_ENV)
    const fg = await startForeground(p)
    const lines = fg.stderr().split("\n")
    const first = lines.indexOf("starforge: warning: .env line 2 ignored: expected KEY=VALUE")
    expect(first, fg.stderr()).toBeGreaterThanOrEqual(0)
    expect(lines[first + 1]).toBe("starforge: warning: .env line 3 ignored: unterminated quote in the value of FOO")
    // Before the daemon's own start-up lines.
    expect(first).toBeLessThan(lines.findIndex((l) => l.includes("START: Daemon started")))
    fg.child.kill("SIGTERM")
    expect(await exitWithin(fg, 10_000)).toEqual({ code: 0, signal: null })
  })

  it("in the background prints them on the terminal of `daemon start`, once", async () => {
    const p = projects.make()
    fs.writeFileSync(path.join(p.root, ".env"), BAD_ENV)
    const started = await p.cli(["daemon", "start"])
    expect(started.code, started.stderr).toBe(0)
    expect(started.stdout).toMatch(/^Daemon started \(PID: \d+\)$/m)
    expect(started.stderr.split("\n").filter((l) => l !== "")).toEqual([
      "starforge: warning: .env line 2 ignored: expected KEY=VALUE",
      "starforge: warning: .env line 3 ignored: unterminated quote in the value of FOO"
    ])
    const stopped = await p.cli(["daemon", "stop"])
    expect(stopped.code).toBe(0)
  })

  it("Ctrl-C (SIGINT) of a foreground daemon exits 130 after the clean stop; SIGTERM exits 0", async () => {
    const p = projects.make()
    for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 0]] as const) {
      const fg = await startForeground(p)
      fg.child.kill(signal)
      expect(await exitWithin(fg, 10_000)).toEqual({ code, signal: null })
      expect(fg.stderr()).toContain("STOP: All agents stopped; state saved")
    }
  })
})
