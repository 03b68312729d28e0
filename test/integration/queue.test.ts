/**
 * The trigger queue as seen from outside (contract §3, §5, §6; original-behaviour §7 S14–S21).
 *
 * The daemon runs in the foreground as a child of the test (the same program `daemon start`
 * launches); agents are the recording shell script of the support module, or a probe script
 * written here that records its working directory, prompt and environment.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import {
  archivedTriggers,
  grandchildPids,
  invalidEntries,
  ISO_UTC,
  readState,
  startForeground
} from "../support/daemonHelpers.js"
import {
  daemonLog,
  isAlive,
  listDir,
  readJson,
  records,
  type TestProject,
  trigger,
  useProjects,
  waitFor
} from "../support/project.js"

const projects = useProjects()

/** `yyyymmdd-HHMMSS` in UTC. */
const stamp = (ms: number) => new Date(ms).toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15)

/** Everything in `dead-letter/`: the entries and their `.meta.json` files. */
const deadLetter = (p: TestProject) => listDir(path.join(p.triggers, "dead-letter"))
const archivedAs = (p: TestProject, name: string) => archivedTriggers(p).find((n) => n.endsWith(`-${name}.trigger`))
const startsOf = (p: TestProject, name: string) => records(p).filter((r) => r.kind === "start" && r.trigger === name)
const logLines = (p: TestProject) => daemonLog(p).split("\n").filter((l) => l !== "")

/**
 * A probe agent: writes its cwd, prompt, environment and whether the claimed trigger file exists
 * to `<root>/probe/<agent>-<attempt>-<pid>.txt`, then behaves like the recording agent.
 */
const installProbe = (p: TestProject) => {
  const script = path.join(p.root, "probe.sh")
  fs.mkdirSync(path.join(p.root, "probe"))
  fs.writeFileSync(
    script,
    `#!/bin/sh
for last; do :; done
out="${p.root}/probe/$STARFORGE_AGENT_ID-$STARFORGE_ATTEMPT-$$.txt"
{
  echo "cwd=$(pwd -P)"
  echo "argc=$#"
  if [ -f "$STARFORGE_TRIGGER_FILE" ]; then echo "trigger_file_exists=yes"; else echo "trigger_file_exists=no"; fi
  if read -r line; then echo "stdin=data"; else echo "stdin=empty"; fi
  env | grep '^STARFORGE_' | sort
  echo "--- prompt"
  printf '%s\\n' "$last"
} > "$out.tmp"
mv "$out.tmp" "$out"
exec "${p.root}/agent.sh" "$@"
`,
    { mode: 0o755 }
  )
  ;(p.env as Record<string, string>)["AGENT_COMMAND"] = `${script} --flag "two words"`
}

interface Probe {
  readonly fields: Record<string, string>
  readonly prompt: string
}

const probes = (p: TestProject, agent: string): Array<Probe> =>
  listDir(path.join(p.root, "probe"))
    .filter((n) => n.startsWith(`${agent}-`) && n.endsWith(".txt"))
    .map((n) => {
      const text = fs.readFileSync(path.join(p.root, "probe", n), "utf8")
      const [head, prompt] = text.split("--- prompt\n") as [string, string]
      const fields: Record<string, string> = {}
      for (const line of head.split("\n")) {
        const eq = line.indexOf("=")
        if (eq > 0) fields[line.slice(0, eq)] = line.slice(eq + 1)
      }
      return { fields, prompt }
    })

describe("a valid trigger (S14)", () => {
  it("S14: runs exactly once in P with the agent's name in the prompt, is archived, logged with its trace id and counted", async () => {
    const p = projects.make({ PARALLEL_DAEMON: "false" })
    installProbe(p)
    await startForeground(p)
    const traceId = "TRACE-1700000000-abc123"
    const before = Date.now()
    p.drop(
      "junior-dev-a-implement-1",
      trigger("junior-dev-a", "sleep=1", { action: "implement", trace_id: traceId, context: { ticket: 52 }, extra_field: [1] })
    )
    await waitFor(() => startsOf(p, "junior-dev-a-implement-1").length === 1, { what: "the agent to start" })
    // While it runs, the state names it (written behind the start, within moments).
    await waitFor(() => readState(p)["current_trigger"] === "junior-dev-a-implement-1.trigger", { what: "the state to name the running trigger" })
    expect(fs.existsSync(path.join(p.triggers, "junior-dev-a-implement-1.processing"))).toBe(true)

    const archived = await waitFor(() => archivedAs(p, "junior-dev-a-implement-1"), { what: "the trigger to be archived" })
    const after = Date.now()
    expect(archived).toMatch(/^\d{8}-\d{6}-junior-dev-a-implement-1\.trigger$/)
    const when = archived.slice(0, 15)
    expect(when >= stamp(before - 1000) && when <= stamp(after + 1000), `${when} within the test`).toBe(true)
    expect(listDir(p.triggers).filter((n) => n.startsWith("junior-dev-a-implement-1"))).toEqual([])

    const state = await waitFor(() => {
      const s = readState(p)
      return s["current_trigger"] === "none" && s["total_triggers_processed"] === 1 ? s : undefined
    }, { what: "the state file to count the trigger" })
    expect(typeof state["daemon_started"]).toBe("string")
    expect(state["last_trigger_processed"]).toMatch(ISO_UTC)

    // Exactly one attempt, in P, with the agent's name in the prompt.
    expect(startsOf(p, "junior-dev-a-implement-1")).toHaveLength(1)
    const [probe, ...more] = probes(p, "junior-dev-a")
    expect(more).toHaveLength(0)
    expect(probe!.fields["cwd"]).toBe(p.root)
    // AGENT_COMMAND's words, then the prompt as one argument.
    expect(probe!.fields["argc"]).toBe("3")
    expect(probe!.prompt).toContain("junior-dev-a")
    expect(probe!.prompt).toContain("implement")
    expect(probe!.prompt).toContain("52")
    expect(probe!.fields["stdin"]).toBe("empty")

    // The environment of §5.
    expect(probe!.fields["STARFORGE_AGENT_ID"]).toBe("junior-dev-a")
    expect(probe!.fields["STARFORGE_TRIGGER_FILE"]).toBe(path.join(p.triggers, "junior-dev-a-implement-1.processing"))
    expect(probe!.fields["trigger_file_exists"]).toBe("yes")
    expect(probe!.fields["STARFORGE_ATTEMPT"]).toBe("1")
    expect(probe!.fields["STARFORGE_PROJECT_ROOT"]).toBe(p.root)
    expect(probe!.fields["STARFORGE_ACTION"]).toBe("implement")
    expect(probe!.fields["STARFORGE_FROM_AGENT"]).toBe("test")
    expect(probe!.fields["STARFORGE_TICKET"]).toBe("52")
    expect(probe!.fields["STARFORGE_TRACE_ID"]).toBe(traceId)

    // Log lines of this trigger carry its trace id.
    const tagged = logLines(p).filter((l) => l.includes(`] [${traceId}] `))
    expect(tagged.some((l) => / SPAWNED: /.test(l))).toBe(true)
    expect(tagged.some((l) => / FINISH: .*junior-dev-a-implement-1\.trigger/.test(l))).toBe(true)
    for (const l of tagged) expect(l).toMatch(/^\[\d{4}-\d{2}-\d{2}T[\d:.]+Z\] \[TRACE-1700000000-abc123\] [A-Z]+: /)
  })

  it("uses the agent's worktree <parent>/<basename>-<agent> as cwd when it exists, else P", async () => {
    const p = projects.make()
    installProbe(p)
    const worktree = `${p.root}-junior-dev-b`
    fs.mkdirSync(worktree)
    projects.trackDir(worktree)
    await startForeground(p)
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a"))
    p.drop("junior-dev-b-work-1", trigger("junior-dev-b"))
    await waitFor(() => archivedTriggers(p).length === 2, { what: "both triggers to be archived" })
    expect(probes(p, "junior-dev-a").map((x) => x.fields["cwd"])).toEqual([p.root])
    expect(probes(p, "junior-dev-b").map((x) => x.fields["cwd"])).toEqual([worktree])
    expect(probes(p, "junior-dev-b")[0]!.fields["STARFORGE_PROJECT_ROOT"]).toBe(p.root)
  })
})

describe("invalid triggers (S15, S16, S19)", () => {
  it("S15/S19: malformed JSON goes to processed/invalid/ with a one-line reason, never runs, and the daemon continues", async () => {
    const p = projects.make()
    const daemon = await startForeground(p)
    p.drop("junior-dev-a-work-1", "{ this is not json ]")
    const archived = await waitFor(() => invalidEntries(p).find((n) => n.endsWith("-junior-dev-a-work-1.trigger")), {
      what: "the malformed trigger to be declared invalid"
    })
    expect(archived).toMatch(/^\d{8}-\d{6}-junior-dev-a-work-1\.trigger$/)
    expect(fs.readFileSync(path.join(p.triggers, "processed", "invalid", archived), "utf8")).toBe("{ this is not json ]")
    const reason = fs.readFileSync(path.join(p.triggers, "processed", "invalid", `${archived}.reason.txt`), "utf8")
    expect(reason.trimEnd()).not.toContain("\n")
    expect(reason).toMatch(/JSON/)
    expect(logLines(p).some((l) => / INVALID: .*junior-dev-a-work-1\.trigger/.test(l))).toBe(true)
    // S19: no attempt at all, no retry, no dead-letter entry.
    expect(records(p)).toEqual([])
    expect(daemonLog(p)).not.toMatch(/SPAWNED|RETRY|DLQ/)
    expect(deadLetter(p)).toEqual([])

    // The daemon continues.
    p.drop("junior-dev-a-work-2", trigger("junior-dev-a"))
    await waitFor(() => archivedAs(p, "junior-dev-a-work-2"), { what: "a later valid trigger to run" })
    expect(records(p).filter((r) => r.kind === "start").map((r) => r.trigger)).toEqual(["junior-dev-a-work-2"])
    expect(daemon.child.exitCode).toBeNull()
  })

  it("S16: a missing or null to_agent is invalid and the reason names to_agent", async () => {
    const p = projects.make()
    await startForeground(p)
    p.drop("missing-1", { from_agent: "test", action: "work", message: "" })
    p.drop("null-1", { to_agent: null, from_agent: "test", action: "work" })
    p.drop("bad-name-1", { to_agent: "../etc", action: "work" })
    await waitFor(() => invalidEntries(p).filter((n) => n.endsWith(".trigger")).length === 3, { what: "three invalid triggers" })
    for (const name of ["missing-1", "null-1", "bad-name-1"]) {
      const archived = invalidEntries(p).find((n) => n.endsWith(`-${name}.trigger`))
      expect(archived, name).toBeDefined()
      const reason = fs.readFileSync(path.join(p.triggers, "processed", "invalid", `${archived}.reason.txt`), "utf8")
      expect(reason.trimEnd()).not.toContain("\n")
      expect(reason).toContain("to_agent")
      expect(logLines(p).some((l) => l.includes(` INVALID: ${name}.trigger`))).toBe(true)
    }
    expect(records(p)).toEqual([])
  })

  it("a half-written trigger completed within a second is not declared invalid", async () => {
    const p = projects.make()
    await startForeground(p)
    const file = path.join(p.triggers, "junior-dev-a-work-1.trigger")
    fs.writeFileSync(file, `{"to_agent": "junior-dev-a"`)
    // Give the watcher time to see the incomplete file (a short pause only shapes the scenario).
    await new Promise((r) => setTimeout(r, 400))
    // Seen, but neither run nor declared invalid while it may still be being written.
    expect(daemonLog(p)).not.toMatch(/INVALID|SPAWNED/)
    expect(fs.existsSync(file)).toBe(true)
    fs.appendFileSync(file, `, "from_agent": "test", "action": "work", "message": ""}`)
    await waitFor(() => archivedAs(p, "junior-dev-a-work-1"), { what: "the completed trigger to run" })
    expect(invalidEntries(p)).toEqual([])
    expect(daemonLog(p)).not.toMatch(/INVALID/)
    expect(startsOf(p, "junior-dev-a-work-1")).toHaveLength(1)
  })
})

describe("failures, retries and the dead-letter queue (S17, S18, S20)", () => {
  it("S17: an agent that always fails is tried MAX_RETRIES times with doubling delays, then dead-lettered with full metadata", async () => {
    const p = projects.make({ MAX_RETRIES: "3", INITIAL_RETRY_DELAY: "0.5" })
    await startForeground(p)
    const traceId = "TRACE-1700000001-def456"
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "exit=1", { trace_id: traceId }))
    const dir = path.join(p.triggers, "dead-letter")
    // The meta file is written before the move, the DLQ line after it: wait for the line.
    await waitFor(() => logLines(p).some((l) => / DLQ: .*junior-dev-a-work-1\.trigger/.test(l)), {
      what: "the dead-letter entry"
    })
    expect(deadLetter(p)).toEqual(["junior-dev-a-work-1.trigger", "junior-dev-a-work-1.trigger.meta.json"])

    const starts = startsOf(p, "junior-dev-a-work-1")
    const ends = records(p).filter((r) => r.kind === "end")
    expect(starts.map((r) => r.attempt)).toEqual([1, 2, 3])
    expect(ends.map((r) => r.attempt)).toEqual([1, 2, 3])
    expect(Number(starts[1]!.ns - ends[0]!.ns) / 1e9).toBeGreaterThanOrEqual(0.5)
    expect(Number(starts[2]!.ns - ends[1]!.ns) / 1e9).toBeGreaterThanOrEqual(1.0)

    const retries = logLines(p).filter((l) => / RETRY: /.test(l))
    expect(retries).toHaveLength(2)
    for (const l of retries) expect(l).toContain(`[${traceId}]`)
    expect(logLines(p).some((l) => / DLQ: .*junior-dev-a-work-1\.trigger/.test(l))).toBe(true)

    const meta = readJson(path.join(dir, "junior-dev-a-work-1.trigger.meta.json"))
    expect(typeof meta["failure_reason"]).toBe("string")
    expect(meta["failure_reason"]).not.toBe("")
    expect(meta["exit_code"]).toBe(1)
    expect(meta["signal"]).toBeNull()
    expect(meta["attempts"]).toBe(3)
    expect(meta["retry_timestamps"]).toHaveLength(3)
    for (const t of meta["retry_timestamps"]) expect(t).toMatch(ISO_UTC)
    expect(meta["dlq_entry_timestamp"]).toMatch(ISO_UTC)
    expect(meta["agent"]).toBe("junior-dev-a")
    expect(meta["trace_id"]).toBe(traceId)
    expect(typeof meta["last_log"]).toBe("string")
    expect(fs.statSync(meta["last_log"]).isFile()).toBe(true)
    const lastLog = fs.readFileSync(meta["last_log"], "utf8")
    expect(lastLog).toMatch(/^Agent: junior-dev-a$/m)
    expect(lastLog).toMatch(/Failed: .*\nExit code: 1\n?$/)
    // The trigger itself is kept as it was.
    expect(readJson(path.join(dir, "junior-dev-a-work-1.trigger"))["trace_id"]).toBe(traceId)
    expect(archivedTriggers(p)).toEqual([])

    // The daemon continues.
    p.drop("junior-dev-b-work-1", trigger("junior-dev-b"))
    await waitFor(() => archivedAs(p, "junior-dev-b-work-1"), { what: "a later trigger to run" })
  })

  it("S18: an agent that fails once then succeeds takes 2 attempts and is archived as a success; `daemon logs` shows both logs", async () => {
    const p = projects.make({ MAX_RETRIES: "3", INITIAL_RETRY_DELAY: "0.2" })
    await startForeground(p)
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "fail-first"))
    await waitFor(() => archivedAs(p, "junior-dev-a-work-1"), { what: "the trigger to be archived" })
    expect(startsOf(p, "junior-dev-a-work-1").map((r) => r.attempt)).toEqual([1, 2])
    expect(logLines(p).filter((l) => / RETRY: /.test(l))).toHaveLength(1)
    expect(deadLetter(p)).toEqual([])

    const [daemonLogs, agentLogs] = await Promise.all([p.cli(["daemon", "logs"]), p.cli(["daemon", "logs", "junior-dev-a"])])
    expect(daemonLogs.code).toBe(0)
    const log = daemonLog(p)
    // The daemon log as it was when the command read it (the daemon may have appended since).
    expect(log.startsWith(daemonLogs.stdout)).toBe(true)
    expect(daemonLogs.stdout).toMatch(/ START: /)
    expect(daemonLogs.stdout).toMatch(/ FINISH: .*successfully/)

    // The newest log of the agent is the second, successful attempt.
    expect(agentLogs.code).toBe(0)
    const out = agentLogs.stdout
    expect(out).toMatch(/^Agent: junior-dev-a\nTrigger: junior-dev-a-work-1\.trigger\nStarted: \S+\n/)
    expect(out).toMatch(/Completed: .+\nExit code: 0\n?$/)
    expect(out).toContain("agent junior-dev-a running: fail-first")
    const logs = listDir(path.join(p.claude, "logs")).filter((n) => n.startsWith("junior-dev-a-"))
    expect(logs).toHaveLength(2)
    const failed = logs.map((n) => fs.readFileSync(path.join(p.claude, "logs", n), "utf8")).filter((t) => /Failed: /.test(t))
    expect(failed).toHaveLength(1)
    expect(failed[0]).toMatch(/Exit code: 7\n?$/)
  })

  it("S20: AGENT_TIMEOUT kills the agent's whole process group at about the timeout and records 'timed out'", async () => {
    const p = projects.make({ AGENT_TIMEOUT: "2", MAX_RETRIES: "1", AGENT_KILL_GRACE: "1" })
    const daemon = await startForeground(p)
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a", "sleep=10 grandchild"))
    const meta = path.join(p.triggers, "dead-letter", "junior-dev-a-work-1.trigger.meta.json")
    await waitFor(() => grandchildPids(p).length > 0, { what: "the agent to start" })
    const start = startsOf(p, "junior-dev-a-work-1")[0]!
    const grandchild = grandchildPids(p)[0]!
    await waitFor(() => fs.existsSync(meta), { intervalMs: 20, timeoutMs: 15_000, what: "the dead-letter entry" })
    // From the spawn to the end of the kill, by the daemon's own clock: the timeout (its clock
    // starts just before the spawn), then the agent dies on SIGTERM at once (grace 1 s at most).
    const at = (level: string) => Date.parse(/^\[([^\]]+)\]/.exec(logLines(p).find((l) => l.includes(`] ${level}: `))!)![1]!)
    const elapsed = (at("TIMEOUT") - at("SPAWNED")) / 1000
    expect(elapsed).toBeGreaterThanOrEqual(1.5)
    expect(elapsed).toBeLessThan(4)
    // The agent itself saw its start less than the timeout before the kill.
    expect(at("TIMEOUT") - Number(start.ns / 1_000_000n)).toBeLessThan(4000)
    expect(records(p).filter((r) => r.kind === "end")).toEqual([])
    expect(isAlive(start.pid)).toBe(false)
    expect(isAlive(grandchild)).toBe(false)
    const m = readJson(meta)
    expect(m["failure_reason"]).toMatch(/timed out/)
    expect(m["attempts"]).toBe(1)
    expect(logLines(p).some((l) => / TIMEOUT: .*timed out after 2s/.test(l))).toBe(true)
    expect(daemon.child.exitCode).toBeNull()
  })
})

describe("queue order (S21)", () => {
  it("S21: triggers dropped while the daemon was stopped run by priority, then creation time (sequential)", async () => {
    const p = projects.make({ PARALLEL_DAEMON: "false" })
    // Creation order differs from name order; the high-priority trigger is the newest.
    const names = ["junior-dev-a-work-30", "junior-dev-b-work-10", "qa-engineer-work-20"]
    for (const name of names) {
      p.drop(name, trigger(name.replace(/-work-\d+$/, "")))
      await new Promise((r) => setTimeout(r, 30))
    }
    p.drop("junior-dev-c-work-40", trigger("junior-dev-c", "", { priority: "high" }))
    p.drop("junior-dev-d-work-01", trigger("junior-dev-d", "", { priority: "low" }))
    await startForeground(p)
    await waitFor(() => archivedTriggers(p).length === 5, { what: "all five triggers to be archived" })
    const starts = records(p).filter((r) => r.kind === "start")
    expect(starts.map((r) => r.trigger)).toEqual([
      "junior-dev-c-work-40",
      "junior-dev-a-work-30",
      "junior-dev-b-work-10",
      "qa-engineer-work-20",
      "junior-dev-d-work-01"
    ])
    // Sequential: each starts after the previous one ended.
    const ends = records(p).filter((r) => r.kind === "end")
    for (let i = 1; i < starts.length; i++) expect(starts[i]!.ns).toBeGreaterThan(ends[i - 1]!.ns)
  })
})
