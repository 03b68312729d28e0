/**
 * One attempt (`AgentRun`) on the real spawners (`Spawner.direct`, and the spawn helper built in
 * dist/spawn-helper.cjs), with real `sh -c` scripts in temporary
 * directories, on both platform layers (`/proc` and `ps`).
 *
 * Every process a test starts (agents, their groups, the pids they report) is recorded and
 * SIGKILLed in `afterEach`, which then waits until they are gone, so a failing test leaves
 * nothing behind. Nothing sleeps and hopes: every wait is for an event, with a deadline.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, Option } from "effect"
import { DaemonConfig } from "../../src/config/DaemonConfig.js"
import { logParts, readLogFile } from "../../src/logs/LogFile.js"
import { ProcessTable } from "../../src/platform/ProcessTable.js"
import * as Linux from "../../src/platform/linux.js"
import * as Posix from "../../src/platform/posix.js"
import * as AgentRun from "../../src/process/AgentRun.js"
import * as SpawnHelper from "../../src/process/SpawnHelper.js"
import { Spawner } from "../../src/process/Spawner.js"
import { allPids, groupMembers, isAlive, statFields, useProcessCleanup, waitUntil, within } from "../support/processes.js"

const KILL_GRACE_MS = 1_000

// ---------------------------------------------------------------------------------------------
// Bookkeeping: temp dirs and every process started, cleaned up after each test.
// ---------------------------------------------------------------------------------------------

const { started: startedPids, tempDir: makeTempDir } = useProcessCleanup("starforge-run-")

const commOf = (pid: number): string | undefined => {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, "utf8").trim()
  } catch {
    return undefined
  }
}

/** Live processes whose environment holds `marker`. */
const processesWithEnv = (marker: string): Array<number> =>
  allPids().filter((pid) => {
    try {
      return isAlive(pid) && fs.readFileSync(`/proc/${pid}/environ`, "utf8").includes(marker)
    } catch {
      return false
    }
  })

// ---------------------------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------------------------

const HEADER = ["Agent: dev-a", "Trigger: t.trigger", "Started: 2025-10-25T05:00:00Z"]
const PATH = process.env["PATH"] ?? "/usr/bin:/bin"
const ISO = "\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}Z"

/** A run of `sh -c script` in `dir`, without limits unless given. */
const shSpec = (
  dir: string,
  script: string,
  overrides: Partial<Omit<AgentRun.AgentRunSpec, "request">> & {
    readonly log?: string
    readonly request?: Partial<AgentRun.AgentRunSpec["request"]>
  } = {}
): AgentRun.AgentRunSpec => {
  const { log, request, ...rest } = overrides
  return {
    request: { command: "sh", args: ["-c", script], cwd: dir, env: { PATH }, ...request },
    logFile: path.join(dir, log ?? "agent.log"),
    header: HEADER,
    maxLogBytes: 0,
    timeoutMs: 0,
    stallMs: 0,
    ...rest
  }
}

/** The whole attempt: start, end (or not started), scope closed. */
const runToEnd = (spec: AgentRun.AgentRunSpec) =>
  Effect.scoped(Effect.flatMap(AgentRun.start(spec), (run) => (run._tag === "NotStarted" ? Effect.succeed(run.status) : run.end)))

/** An attempt forked: `running` completes once it started; interrupting the fiber closes its scope. */
const forkRun = (spec: AgentRun.AgentRunSpec) =>
  Effect.gen(function*() {
    const running = yield* Deferred.make<AgentRun.Running>()
    const fiber = yield* Effect.scoped(Effect.gen(function*() {
      const run = yield* AgentRun.start(spec)
      if (run._tag === "NotStarted") return yield* Effect.die(new Error(`not started: ${JSON.stringify(run.status)}`))
      yield* Deferred.succeed(running, run)
      return yield* run.end
    })).pipe(Effect.fork)
    const run = yield* Deferred.await(running).pipe(
      Effect.raceFirst(Effect.flatMap(Fiber.join(fiber), () => Effect.die(new Error("the run ended before it started")))),
      within(5_000, "the start")
    )
    return { run, fiber }
  })

const readLog = (file: string) => fs.readFileSync(file, "utf8")

/** The log starts with the header lines and a blank line. */
const expectHeader = (log: string) => {
  expect(log.startsWith(HEADER.join("\n") + "\n\n")).toBe(true)
}

type SpawnerLayer = typeof Spawner.direct

/** A spawner on a platform layer, recording every pid it starts for `afterEach`. */
const layerOn = (dir: string, platform: typeof Linux.layer, spawner: SpawnerLayer) => {
  const base = Layer.merge(DaemonConfig.layerSettings(dir, { killGraceMs: KILL_GRACE_MS }), platform)
  const recording = Layer.effect(
    Spawner,
    Effect.map(Spawner, (spawner) => ({
      spawn: (request: Parameters<typeof spawner.spawn>[0]) =>
        // Recorded in the same uninterruptible step as the spawn (its acquisition is one already).
        Effect.uninterruptible(Effect.tap(spawner.spawn(request), (spawned) => Effect.sync(() => startedPids.add(spawned.pid))))
    }))
  )
  return recording.pipe(Layer.provide(spawner), Layer.provideMerge(base))
}

/** Runs a test body with a temp dir and the layers of `platform`. */
const withDir = <A, E>(
  platform: typeof Linux.layer,
  spawner: SpawnerLayer,
  body: (dir: string) => Effect.Effect<A, E, Spawner | ProcessTable | DaemonConfig>
) =>
  Effect.suspend(() => {
    const dir = makeTempDir()
    return Effect.provide(body(dir), layerOn(dir, platform, spawner))
  })

const platforms = [["linux", Linux.layer], ["posix", Posix.layer]] as const

const HELPER = fileURLToPath(new URL("../../dist/spawn-helper.cjs", import.meta.url))
/** The same behaviours whoever starts the agents. */
const spawners: ReadonlyArray<readonly [string, SpawnerLayer]> = [["Spawner.direct", Spawner.direct], ["the spawn helper", SpawnHelper.layer(HELPER)]]
const combinations = platforms.flatMap(([name, platform]) => spawners.map(([spawnerName, spawner]) => [name, platform, spawnerName, spawner] as const))

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

for (const [name, platform, spawnerName, spawner] of combinations) describe(`AgentRun on ${spawnerName} (${name} process table)`, { timeout: 20_000 }, () => {
  const live = (title: string, body: (dir: string) => Effect.Effect<void, unknown, Spawner | ProcessTable | DaemonConfig>) =>
    it.live(title, () => withDir(platform, spawner, body))

  live("never loses the output of a fast-exiting child (30 runs)", (dir) =>
    Effect.gen(function*() {
      const statuses = yield* Effect.forEach(
        Array.from({ length: 30 }, (_, i) => i),
        (i) => runToEnd(shSpec(dir, "echo out; echo err >&2; exit 3", { log: `run-${i}.log` })),
        { concurrency: 5 }
      )
      for (const status of statuses) expect(status).toMatchObject({ _tag: "Exited", code: 3 })
      for (let i = 0; i < 30; i++) {
        const log = readLog(path.join(dir, `run-${i}.log`))
        expectHeader(log)
        const body = log.slice(HEADER.join("\n").length)
        expect(body.split("\n")).toContain("out")
        expect(body.split("\n")).toContain("err")
        expect(log).toMatch(new RegExp(`\\nFailed: ${ISO}\\nExit code: 3\\n$`))
        // The output comes before the footer.
        expect(log.indexOf("out\n")).toBeLessThan(log.indexOf("Failed:"))
        expect(log.indexOf("err\n")).toBeLessThan(log.indexOf("Failed:"))
      }
    }))

  live("header lines come first; output and a success footer follow", (dir) =>
    Effect.gen(function*() {
      const status = yield* runToEnd(shSpec(dir, "echo hello; echo \"$MY_VAR\"; pwd", { request: { env: { PATH, MY_VAR: "from-env" } } }))
      expect(status).toMatchObject({ _tag: "Exited", code: 0 })
      const log = readLog(path.join(dir, "agent.log"))
      expect(log.split("\n").slice(0, 4)).toEqual([...HEADER, ""])
      expect(log).toMatch(new RegExp(`^${HEADER.join("\\n")}\\n\\nhello\\nfrom-env\\n${dir}\\n\\nCompleted: ${ISO}\\nExit code: 0\\n$`))
    }))

  live("appends to an existing log file", (dir) =>
    Effect.gen(function*() {
      fs.writeFileSync(path.join(dir, "agent.log"), "earlier line\n")
      yield* runToEnd(shSpec(dir, "echo later"))
      const log = readLog(path.join(dir, "agent.log"))
      expect(log.startsWith("earlier line\n" + HEADER.join("\n") + "\n\n")).toBe(true)
      expect(log).toMatch(new RegExp(`\\n\\nlater\\n\\nCompleted: ${ISO}\\nExit code: 0\\n$`))
    }))

  live("stdin is closed: cat exits at once", (dir) =>
    Effect.gen(function*() {
      const status = yield* runToEnd(shSpec(dir, "cat; echo \"cat=$?\"")).pipe(within(5_000, "cat (still waiting on stdin?)"))
      expect(status).toMatchObject({ _tag: "Exited", code: 0 })
      expect(readLog(path.join(dir, "agent.log"))).toContain("cat=0\n")
    }))

  live("exit codes and signals", (dir) =>
    Effect.gen(function*() {
      const cases: Array<[string, string, string, RegExp]> = [
        ["exit 0", "Exited", "0", new RegExp(`\\nCompleted: ${ISO}\\nExit code: 0\\n$`)],
        ["exit 42", "Exited", "42", new RegExp(`\\nFailed: ${ISO}\\nExit code: 42\\n$`)],
        ["kill -KILL $$", "Signaled", "SIGKILL", new RegExp(`\\nFailed: ${ISO}\\nSignal: SIGKILL\\n$`)],
        ["kill -TERM $$", "Signaled", "SIGTERM", new RegExp(`\\nFailed: ${ISO}\\nSignal: SIGTERM\\n$`)],
        ["kill -SEGV $$", "Signaled", "SIGSEGV", new RegExp(`\\nFailed: ${ISO}\\nSignal: SIGSEGV\\n$`)]
      ]
      for (const [script, tag, value, footer] of cases) {
        const log = `${script.replace(/\W+/g, "_")}.log`
        const status = yield* runToEnd(shSpec(dir, script, { log }))
        expect(status._tag).toBe(tag)
        if (status._tag === "Exited") expect(String(status.code)).toBe(value)
        if (status._tag === "Signaled") expect(status.signal).toBe(value)
        expect(readLog(path.join(dir, log))).toMatch(footer)
      }
    }))

  live("a missing command is NotStarted (SpawnFailed naming AGENT_COMMAND), with an Error footer", (dir) =>
    Effect.gen(function*() {
      const outcome = yield* Effect.scoped(AgentRun.start(shSpec(dir, "", { request: { command: path.join(dir, "no-such-agent"), args: ["--print"] } })))
      expect(outcome._tag).toBe("NotStarted")
      if (outcome._tag !== "NotStarted") return
      expect(outcome.status._tag).toBe("SpawnFailed")
      if (outcome.status._tag !== "SpawnFailed") return
      expect(outcome.status.message).toContain("AGENT_COMMAND")
      expect(outcome.status.message).toContain("no-such-agent")
      // Nothing was started.
      expect(startedPids.size).toBe(0)
      const log = readLog(path.join(dir, "agent.log"))
      expectHeader(log)
      expect(log).toMatch(new RegExp(`^${HEADER.join("\\n")}\\n\\n\\nFailed: ${ISO}\\nError: [^\\n]*AGENT_COMMAND[^\\n]*\\n$`))
    }))

  live("a command that is not executable is NotStarted (SpawnFailed)", (dir) =>
    Effect.gen(function*() {
      const script = path.join(dir, "agent.sh")
      fs.writeFileSync(script, "#!/bin/sh\necho hi\n", { mode: 0o644 })
      const status = yield* runToEnd(shSpec(dir, "", { request: { command: script, args: [] } }))
      expect(status._tag).toBe("SpawnFailed")
      if (status._tag === "SpawnFailed") expect(status.message).toContain("AGENT_COMMAND")
      expect(startedPids.size).toBe(0)
      expect(readLog(path.join(dir, "agent.log"))).toMatch(/\nError: [^\n]+\n$/)
    }))

  live("a missing working directory is NotStarted (SpawnFailed naming it)", (dir) =>
    Effect.gen(function*() {
      const missing = path.join(dir, "no-such-worktree")
      const status = yield* runToEnd(shSpec(dir, "echo should-not-run", { request: { cwd: missing } }))
      expect(status._tag).toBe("SpawnFailed")
      if (status._tag === "SpawnFailed") expect(status.message).toContain(missing)
      expect(startedPids.size).toBe(0)
      const log = readLog(path.join(dir, "agent.log"))
      expect(log).not.toContain("should-not-run")
      expect(log).toMatch(new RegExp(`\\nFailed: ${ISO}\\nError: [^\\n]+\\n$`))
    }))

  live("a log file that cannot be written fails the start with a StorageError, and nothing is started", (dir) =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(runToEnd(shSpec(dir, "echo x", { logFile: path.join(dir, "no", "such", "dir.log") })))
      expect(error._tag).toBe("StorageError")
      expect(startedPids.size).toBe(0)
    }))

  live("the pid is a process group leader and its start time is the process table's", (dir) =>
    Effect.gen(function*() {
      const go = path.join(dir, "go")
      const { run, fiber } = yield* forkRun(shSpec(dir, `while [ ! -e '${go}' ]; do sleep 0.02; done; exit 0`))
      // The child is still waiting for `go`: it is there to compare with.
      const table = yield* ProcessTable
      expect(run.pid).toBeGreaterThan(0)
      expect(run.startTime).not.toBeNull()
      expect(run.startTime).toBe(yield* table.startTimeOf(run.pid))
      expect(yield* table.identify(run.pid, run.startTime)).toBe("same")
      const leader = (yield* table.groupMembers(run.pid)).find((e) => e.pid === run.pid)
      expect(leader).toMatchObject({ pid: run.pid, pgid: run.pid, sessionLeader: true })
      expect(statFields(run.pid)?.[2]).toBe(String(run.pid))
      expect(Option.isNone(yield* run.exited)).toBe(true)
      fs.writeFileSync(go, "")
      expect(yield* Fiber.join(fiber).pipe(within(10_000, "the run"))).toMatchObject({ _tag: "Exited", code: 0 })
      expect(Option.getOrUndefined(yield* run.exited)).toMatchObject({ _tag: "Exited", code: 0 })
    }))

  live("interrupting a run of a child that ignores SIGTERM stops its whole group within the grace + 2 s, with SIGKILL", (dir) =>
    Effect.gen(function*() {
      const log = path.join(dir, "agent.log")
      const { run, fiber } = yield* forkRun(shSpec(dir, "trap \"\" TERM; echo ready; sleep 30"))
      const pid = run.pid
      // Wait until the trap is installed (the line after it ran) and the sleep runs.
      yield* waitUntil("the script to be ready", () => readLog(log).includes("ready\n"))
      yield* waitUntil("the sleep to run", () => groupMembers(pid).some((p) => commOf(p) === "sleep"))
      const members = groupMembers(pid)
      members.forEach((p) => startedPids.add(p))
      const started = Date.now()
      yield* Fiber.interrupt(fiber)
      const elapsed = Date.now() - started
      expect(elapsed).toBeLessThan(KILL_GRACE_MS + 2_000)
      // SIGTERM was ignored, so it took the SIGKILL after the grace.
      expect(elapsed).toBeGreaterThanOrEqual(KILL_GRACE_MS - 50)
      expect(groupMembers(pid)).toEqual([])
      for (const p of members) expect(isAlive(p)).toBe(false)
      expect(readLog(log)).toMatch(new RegExp(`\\nready\\n\\nFailed: ${ISO}\\nSignal: SIGKILL\\n$`))
    }))

  live("interrupting a run of a well-behaved child stops it at once with SIGTERM", (dir) =>
    Effect.gen(function*() {
      const { run, fiber } = yield* forkRun(shSpec(dir, "sleep 30"))
      yield* waitUntil("the sleep to run", () => groupMembers(run.pid).some((p) => commOf(p) === "sleep"))
      const started = Date.now()
      yield* Fiber.interrupt(fiber)
      expect(Date.now() - started).toBeLessThan(KILL_GRACE_MS)
      expect(groupMembers(run.pid)).toEqual([])
      expect(readLog(path.join(dir, "agent.log"))).toMatch(new RegExp(`\\nFailed: ${ISO}\\nSignal: SIGTERM\\n$`))
    }))

  live("a background grandchild left by a child that exits 0 is gone once `end` returns", (dir) =>
    Effect.gen(function*() {
      const gcFile = path.join(dir, "grandchild.pid")
      const { run, fiber } = yield* forkRun(shSpec(dir, `sleep 300 & echo $! > '${gcFile}'; echo last words; exit 0`))
      const status = yield* Fiber.join(fiber).pipe(within(10_000, "the run"))
      expect(status).toMatchObject({ _tag: "Exited", code: 0 })
      const grandchild = Number(readLog(gcFile).trim())
      startedPids.add(grandchild)
      expect(grandchild).toBeGreaterThan(0)
      expect(isAlive(grandchild)).toBe(false)
      expect(groupMembers(run.pid)).toEqual([])
      // The grandchild held the output pipe open: the output still ends, and before the footer.
      expect(readLog(path.join(dir, "agent.log"))).toMatch(new RegExp(`\\nlast words\\n\\nCompleted: ${ISO}\\nExit code: 0\\n$`))
    }))

  live("a grandchild that ignores SIGTERM is SIGKILLed after the grace once the child exits", (dir) =>
    Effect.gen(function*() {
      const gcFile = path.join(dir, "grandchild.pid")
      const started = Date.now()
      const { run, fiber } = yield* forkRun(shSpec(dir, `trap "" TERM; sleep 300 & echo $! > '${gcFile}'; exit 5`))
      const status = yield* Fiber.join(fiber).pipe(within(10_000, "the run"))
      const elapsed = Date.now() - started
      expect(status).toMatchObject({ _tag: "Exited", code: 5 })
      const grandchild = Number(readLog(gcFile).trim())
      startedPids.add(grandchild)
      expect(isAlive(grandchild)).toBe(false)
      expect(groupMembers(run.pid)).toEqual([])
      expect(elapsed).toBeGreaterThanOrEqual(KILL_GRACE_MS - 50)
      expect(elapsed).toBeLessThan(KILL_GRACE_MS + 2_000)
      expect(readLog(path.join(dir, "agent.log"))).toMatch(new RegExp(`\\nFailed: ${ISO}\\nExit code: 5\\n$`))
    }))

  live("interrupting a run at once, at any point of its start, leaves no process behind", (dir) =>
    Effect.gen(function*() {
      const marker = `starforge-test-${process.pid}-${Date.now()}-${Math.random().toString(16).slice(2)}`
      const tagged = () => processesWithEnv(marker)
      for (let i = 0; i < 10; i++) {
        const fiber = yield* runToEnd(
          shSpec(dir, "sleep 30; echo done", { log: `run-${i}.log`, request: { env: { PATH, STARFORGE_TEST_MARKER: marker } } })
        ).pipe(Effect.fork)
        // Interrupt at different points of the start-up: before the fiber runs, while the log
        // opens, once the log has its header (the spawn is then on its way)…
        if (i >= 5) {
          const log = path.join(dir, `run-${i}.log`)
          const deadline = Date.now() + 5_000
          while (!(fs.existsSync(log) && fs.statSync(log).size > 0) && Date.now() < deadline) yield* Effect.yieldNow()
        }
        for (let k = 0; k < i % 5; k++) yield* Effect.yieldNow()
        yield* Fiber.interrupt(fiber).pipe(within(5_000, "the interrupt"))
        tagged().forEach((pid) => startedPids.add(pid))
        expect(tagged()).toEqual([])
      }
      // Some runs got as far as spawning their child, and each of those was stopped; a run stopped
      // after its log was opened but before the spawn says so in its footer.
      const logs = fs.readdirSync(dir).filter((n) => n.endsWith(".log")).map((log) => readLog(path.join(dir, log)))
      expect(logs.some((log) => /\nSignal: SIG(TERM|KILL)\n$/.test(log))).toBe(true)
      for (const log of logs) expect(log).toMatch(/\n(Signal: SIG(TERM|KILL)|Error: not started: the run was stopped first)\n$/)
    }))

  live("rotates the log at the size limit while the agent writes: every byte kept in order, no fd leaked; the watch saw exactly the logged output", (dir) =>
    Effect.gen(function*() {
      const maxBytes = 64 * 1024
      const lines = 15_000
      const openFds = () => fs.readdirSync("/proc/self/fd").length
      const fdsBefore = openFds()
      // stdout and stderr interleaved, as fast as awk writes (about 0.95 MB), then a result line.
      const script = `awk 'BEGIN { for (i = 0; i < ${lines}; i++) { printf "out %06d ${"o".repeat(40)}\\n", i; fflush(); ` +
        `printf "err %06d\\n", i > "/dev/stderr"; fflush("/dev/stderr") } }'; ` +
        `echo '{"type":"result","subtype":"success","is_error":false,"num_turns":7,"result":"done"}'`
      const { state, status } = yield* Effect.scoped(Effect.gen(function*() {
        const run = yield* AgentRun.start(shSpec(dir, script, { maxLogBytes: maxBytes }))
        if (run._tag === "NotStarted") return yield* Effect.die(new Error("not started"))
        const status = yield* run.end
        return { status, state: yield* run.watch.state }
      }))
      expect(status).toMatchObject({ _tag: "Exited", code: 0 })
      const parts = logParts(path.join(dir, "agent.log"))
      // Parts are numbered upwards, the live name is last; each part stopped at the limit.
      expect(parts.length).toBeGreaterThan(10)
      expect(parts.slice(0, 3).map((p) => path.basename(p))).toEqual(["agent.log.1", "agent.log.2", "agent.log.3"])
      expect(parts.at(-1)).toBe(path.join(dir, "agent.log"))
      for (const part of parts.slice(0, -1)) {
        const size = fs.statSync(part).size
        expect(size).toBeGreaterThanOrEqual(maxBytes)
        expect(size).toBeLessThan(maxBytes + 64 * 1024)
      }
      const all = parts.map((p) => readLogFile(p).toString("utf8")).join("")
      expectHeader(all)
      expect(all).toMatch(new RegExp(`\\nCompleted: ${ISO}\\nExit code: 0\\n$`))
      const body = all.split("\n")
      const outs = body.filter((l) => l.startsWith("out "))
      const errs = body.filter((l) => l.startsWith("err "))
      // Every line whole, none lost, none repeated, each stream in its order.
      expect(outs).toEqual(Array.from({ length: lines }, (_, i) => `out ${String(i).padStart(6, "0")} ${"o".repeat(40)}`))
      expect(errs).toEqual(Array.from({ length: lines }, (_, i) => `err ${String(i).padStart(6, "0")}`))
      expect(body.filter((l) => l.startsWith("{\"type\":\"result\""))).toHaveLength(1)
      expect(body.length).toBe(HEADER.length + 1 + 2 * lines + 1 + 3 + 1)
      expect(openFds()).toBe(fdsBefore)
      // The watch was fed the log's bytes between header and footer, whatever the rotation did.
      expect(state.textLines).toBe(2 * lines)
      expect(state.jsonLines).toBe(1)
      expect(state.oversizedLines).toBe(0)
      expect(state.result).toMatchObject({ subtype: "success", isError: false, text: "done" })
      expect(state.progress.turns).toBe(7)
    }))

  live("the watch keeps getting the output after the log cannot be written any more (its directory removed)", (dir) =>
    Effect.gen(function*() {
      const logs = path.join(dir, "logs")
      fs.mkdirSync(logs)
      const go = path.join(dir, "go")
      const long = "x".repeat(2_000)
      // The long line takes the log over its limit: the rotation's rename fails, and so does every later write.
      const script = `echo first; while [ ! -e '${go}' ]; do sleep 0.02; done; echo ${long}; echo second; ` +
        `echo '{"type":"result","subtype":"error_during_execution","is_error":true,"result":"broke"}'`
      const { run, fiber } = yield* forkRun(shSpec(dir, script, { logFile: path.join(logs, "agent.log"), maxLogBytes: 1_000 }))
      yield* waitUntil("the first line", Effect.map(run.watch.state, (s) => s.textLines === 1))
      fs.rmSync(logs, { recursive: true })
      fs.writeFileSync(go, "")
      expect(yield* Fiber.join(fiber).pipe(within(10_000, "the run"))).toMatchObject({ _tag: "Exited", code: 0 })
      const state = yield* run.watch.state
      expect(state.textLines).toBe(3)
      expect(state.jsonLines).toBe(1)
      expect(state.result).toMatchObject({ isError: true, text: "broke" })
    }))

  live("a last line without a newline is still written before the footer", (dir) =>
    Effect.gen(function*() {
      const status = yield* runToEnd(shSpec(dir, "printf 'no newline'; printf 'nor here' >&2"))
      expect(status).toMatchObject({ _tag: "Exited", code: 0 })
      const log = readLog(path.join(dir, "agent.log"))
      expectHeader(log)
      const body = log.slice(HEADER.join("\n").length + 2, log.lastIndexOf("\nCompleted: "))
      // Both partial lines, whole, in either order.
      expect([`no newlinenor here`, `nor hereno newline`]).toContain(body)
      expect(log).toMatch(new RegExp(`\\nCompleted: ${ISO}\\nExit code: 0\\n$`))
    }))

  live("a run that outlives its timeout is stopped: TimedOut, with a 'Timed out after' footer", (dir) =>
    Effect.gen(function*() {
      const { run, fiber } = yield* forkRun(shSpec(dir, "echo started; sleep 30", { timeoutMs: 400 }))
      const status = yield* Fiber.join(fiber).pipe(within(5_000, "the timeout"))
      expect(status).toEqual(expect.objectContaining({ _tag: "TimedOut", afterSeconds: 0.4, signal: "SIGTERM" }))
      expect(groupMembers(run.pid)).toEqual([])
      expect(readLog(path.join(dir, "agent.log"))).toMatch(
        new RegExp(`\\nstarted\\n\\nFailed: ${ISO}\\nTimed out after 0\\.4s\\nSignal: SIGTERM\\n$`)
      )
    }))

  live("a timeout on a child that ignores SIGTERM ends with SIGKILL after the grace", (dir) =>
    Effect.gen(function*() {
      const { run, fiber } = yield* forkRun(shSpec(dir, "trap \"\" TERM; sleep 30", { timeoutMs: 300 }))
      const status = yield* Fiber.join(fiber).pipe(within(KILL_GRACE_MS + 5_000, "the timeout"))
      expect(status).toEqual(expect.objectContaining({ _tag: "TimedOut", afterSeconds: 0.3, signal: "SIGKILL" }))
      expect(groupMembers(run.pid)).toEqual([])
      expect(readLog(path.join(dir, "agent.log"))).toMatch(new RegExp(`\\nTimed out after 0\\.3s\\nSignal: SIGKILL\\n$`))
    }))

  live("a run silent for the stall time is stopped: Stalled, with a 'Stalled' footer", (dir) =>
    Effect.gen(function*() {
      const { run, fiber } = yield* forkRun(shSpec(dir, "echo hi; sleep 30", { stallMs: 400, timeoutMs: 10_000 }))
      const status = yield* Fiber.join(fiber).pipe(within(5_000, "the stall"))
      expect(status._tag).toBe("Stalled")
      if (status._tag !== "Stalled") return
      expect(status.signal).toBe("SIGTERM")
      expect(status.afterSeconds).toBeGreaterThanOrEqual(0.4)
      expect(status.afterSeconds).toBeLessThan(3)
      expect(groupMembers(run.pid)).toEqual([])
      expect(readLog(path.join(dir, "agent.log"))).toMatch(new RegExp(`\\nhi\\n\\nFailed: ${ISO}\\nStalled: no output for [\\d.]+s\\nSignal: SIGTERM\\n$`))
    }))

  live("output keeps the stall watch away; the exit is reported", (dir) =>
    Effect.gen(function*() {
      const status = yield* runToEnd(
        shSpec(dir, "i=0; while [ $i -lt 15 ]; do echo tick $i; sleep 0.05; i=$((i+1)); done; exit 0", { stallMs: 1_500 })
      ).pipe(within(10_000, "the run"))
      expect(status).toMatchObject({ _tag: "Exited", code: 0 })
      expect(readLog(path.join(dir, "agent.log"))).toMatch(new RegExp(`\\ntick 14\\n\\nCompleted: ${ISO}\\nExit code: 0\\n$`))
    }))
})
