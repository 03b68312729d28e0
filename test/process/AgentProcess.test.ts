/**
 * The real Node process layer with real `sh -c` scripts in a temporary directory.
 *
 * Every process a test starts (agents, their groups, processes started by the test itself) is
 * recorded and SIGKILLed in `afterEach`, which then waits until they are gone, so a failing test
 * leaves nothing behind.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, afterEach, describe, expect, it } from "@effect/vitest"
import { Clock, Deferred, Effect, Fiber, Option, Queue, TestClock } from "effect"
import { ExitStatus } from "../../src/domain/Outcome.js"
import { logParts, readLogFile } from "../../src/logs/LogFile.js"
import { AgentProcess, type AgentRunSpec, makeFake, makeNode, makeWatchdog, type RunEnd, type SpawnInfo } from "../../src/process/AgentProcess.js"
import * as procfs from "../../src/platform/linux.js"
import { spawnDirect, startSpawnHelper } from "../../src/process/SpawnHelper.js"

const KILL_GRACE_MS = 1_000

// ---------------------------------------------------------------------------------------------
// Bookkeeping: temp dirs and every process started, cleaned up after each test.
// ---------------------------------------------------------------------------------------------

const tempDirs: Array<string> = []
/** Process ids (each also a process group id) started during the current test. */
const startedPids = new Set<number>()

/** Fields after the command name of `/proc/<pid>/stat`; index 0 is field 3 (state). */
const statFields = (pid: number): Array<string> | undefined => {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return text.slice(text.lastIndexOf(")") + 2).trim().split(" ")
  } catch {
    return undefined
  }
}

/** Live means present and not a zombie (a zombie holds nothing and may linger unreaped). */
const isAlive = (pid: number): boolean => {
  const fields = statFields(pid)
  return fields !== undefined && fields[0] !== "Z" && fields[0] !== "X"
}

/** `/proc/<pid>/stat` field 22 (start time in clock ticks since boot). */
const startTimeField = (pid: number): string | undefined => statFields(pid)?.[19]

/** Live processes whose process group is `pgid`. */
const groupMembers = (pgid: number): Array<number> =>
  fs.readdirSync("/proc").filter((e) => /^\d+$/.test(e)).map(Number).filter((pid) => {
    const fields = statFields(pid)
    return fields !== undefined && fields[0] !== "Z" && fields[0] !== "X" && Number(fields[3]) === pgid
  })

const commOf = (pid: number): string | undefined => {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, "utf8").trim()
  } catch {
    return undefined
  }
}

/** Live processes whose environment holds `marker`. */
const processesWithEnv = (marker: string): Array<number> =>
  fs.readdirSync("/proc").filter((e) => /^\d+$/.test(e)).map(Number).filter((pid) => {
    try {
      return isAlive(pid) && fs.readFileSync(`/proc/${pid}/environ`, "utf8").includes(marker)
    } catch {
      return false
    }
  })

const killQuietly = (pid: number) => {
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, "SIGKILL")
    } catch {
      // Already gone.
    }
  }
}

const sleepMs = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

afterEach(async () => {
  const pids = Array.from(startedPids)
  startedPids.clear()
  for (const pid of pids) killQuietly(pid)
  const deadline = Date.now() + 5_000
  while (pids.some((pid) => isAlive(pid) || groupMembers(pid).length > 0) && Date.now() < deadline) await sleepMs(25)
  for (const dir of tempDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
  const left = pids.filter((pid) => isAlive(pid) || groupMembers(pid).length > 0)
  if (left.length > 0) throw new Error(`processes survived the test: ${left.join(", ")}`)
})

const makeTempDir = () => {
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "starforge-proc-")))
  tempDirs.push(dir)
  return dir
}

/** Polls a condition on the real clock; dies after the deadline. */
const waitUntil = (what: string, condition: () => boolean, timeoutMs = 5_000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    while (!condition()) {
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`))
      yield* Effect.sleep("20 millis")
    }
  })

const HEADER = ["Agent: dev-a", "Trigger: t.trigger", "Started: 2025-10-25T05:00:00Z"]

/** A run of `sh -c script` in `dir`; every spawned pid is recorded for clean-up. */
const shSpec = (
  dir: string,
  script: string,
  overrides: Partial<AgentRunSpec> & { readonly log?: string } = {}
): AgentRunSpec => {
  const { log, onSpawn, ...rest } = overrides
  return {
    agent: "dev-a",
    command: "sh",
    args: ["-c", script],
    cwd: dir,
    env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin" },
    logFile: path.join(dir, log ?? "agent.log"),
    header: HEADER,
    onSpawn: (info: SpawnInfo) =>
      Effect.sync(() => startedPids.add(info.pid)).pipe(Effect.zipRight(onSpawn ? onSpawn(info) : Effect.void)),
    ...rest
  }
}

const readLog = (file: string) => fs.readFileSync(file, "utf8")

/** The log starts with the header lines and a blank line. */
const expectHeader = (log: string) => {
  expect(log.startsWith(HEADER.join("\n") + "\n\n")).toBe(true)
}

const ISO = "\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}Z"

/** The daemon starts agents through a spawn helper process; the direct way is its fallback. Both are tested. */
const helper = startSpawnHelper(procfs.isAlive)
afterAll(() => helper.close())
const ways = [["spawned directly", spawnDirect], ["spawned by the helper process", helper.spawn]] as const

/** Starts a detached `sh -c script` of our own (its own group), recorded for clean-up. */
const startDetached = (script: string) =>
  Effect.gen(function*() {
    const child = spawn("sh", ["-c", script], { detached: true, stdio: "ignore" })
    const pid = child.pid
    if (pid === undefined) return yield* Effect.die(new Error("could not start sh"))
    startedPids.add(pid)
    child.unref()
    yield* waitUntil(`process ${pid} to run`, () => startTimeField(pid) !== undefined)
    return { child, pid, startTime: startTimeField(pid)! }
  })

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

for (const [how, spawnAgent] of ways) describe(`AgentProcess (Node), agents ${how}`, { timeout: 15_000 }, () => {
  const runner = makeNode(KILL_GRACE_MS, 0, spawnAgent)
  it.live("never loses the output of a fast-exiting child (30 runs)", () =>
    Effect.gen(function*() {
      const dir = makeTempDir()
      const statuses = yield* Effect.forEach(
        Array.from({ length: 30 }, (_, i) => i),
        (i) => runner.run(shSpec(dir, "echo out; echo err >&2; exit 3", { log: `run-${i}.log` })),
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

  it.live("header lines come first; output and a success footer follow", () =>
    Effect.gen(function*() {
      const dir = makeTempDir()
      const status = yield* runner.run(shSpec(dir, "echo hello; echo \"$MY_VAR\"; pwd", { env: { PATH: process.env["PATH"]!, MY_VAR: "from-env" } }))
      expect(status).toMatchObject({ _tag: "Exited", code: 0 })
      const log = readLog(path.join(dir, "agent.log"))
      expect(log.split("\n").slice(0, 4)).toEqual([...HEADER, ""])
      expect(log).toMatch(new RegExp(`^${HEADER.join("\\n")}\\n\\nhello\\nfrom-env\\n${dir}\\n\\nCompleted: ${ISO}\\nExit code: 0\\n$`))
    }))

  it.live("appends to an existing log file", () =>
    Effect.gen(function*() {
      const dir = makeTempDir()
      fs.writeFileSync(path.join(dir, "agent.log"), "earlier line\n")
      yield* runner.run(shSpec(dir, "echo later"))
      const log = readLog(path.join(dir, "agent.log"))
      expect(log.startsWith("earlier line\n" + HEADER.join("\n"))).toBe(true)
      expect(log).toContain("later\n")
    }))

  it.live("stdin is closed: cat exits at once", () =>
    Effect.gen(function*() {
      const dir = makeTempDir()
      const started = Date.now()
      const status = yield* runner.run(shSpec(dir, "cat; echo \"cat=$?\"")).pipe(
        Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("cat is still waiting on stdin") })
      )
      expect(status).toMatchObject({ _tag: "Exited", code: 0 })
      expect(Date.now() - started).toBeLessThan(5_000)
      expect(readLog(path.join(dir, "agent.log"))).toContain("cat=0\n")
    }))

  it.live("exit codes and signals", () =>
    Effect.gen(function*() {
      const dir = makeTempDir()
      const cases: Array<[string, ExitStatus["_tag"], string, RegExp]> = [
        ["exit 0", "Exited", "0", new RegExp(`\\nCompleted: ${ISO}\\nExit code: 0\\n$`)],
        ["exit 42", "Exited", "42", new RegExp(`\\nFailed: ${ISO}\\nExit code: 42\\n$`)],
        ["kill -KILL $$", "Signaled", "SIGKILL", new RegExp(`\\nFailed: ${ISO}\\nSignal: SIGKILL\\n$`)],
        ["kill -TERM $$", "Signaled", "SIGTERM", new RegExp(`\\nFailed: ${ISO}\\nSignal: SIGTERM\\n$`)],
        ["kill -SEGV $$", "Signaled", "SIGSEGV", new RegExp(`\\nFailed: ${ISO}\\nSignal: SIGSEGV\\n$`)]
      ]
      for (const [script, tag, value, footer] of cases) {
        const log = `${script.replace(/\W+/g, "_")}.log`
        const status = yield* runner.run(shSpec(dir, script, { log }))
        expect(status._tag).toBe(tag)
        if (status._tag === "Exited") expect(String(status.code)).toBe(value)
        if (status._tag === "Signaled") expect(status.signal).toBe(value)
        expect(readLog(path.join(dir, log))).toMatch(footer)
      }
    }))

  it.live("a missing command is SpawnFailed naming AGENT_COMMAND, with an Error footer", () =>
    Effect.gen(function*() {
      const dir = makeTempDir()
      let spawned = false
      const status = yield* runner.run({
        ...shSpec(dir, ""),
        command: path.join(dir, "no-such-agent"),
        args: ["--print"],
        onSpawn: () => Effect.sync(() => void (spawned = true))
      })
      expect(status._tag).toBe("SpawnFailed")
      if (status._tag !== "SpawnFailed") return
      expect(status.message).toContain("AGENT_COMMAND")
      expect(status.message).toContain("no-such-agent")
      expect(spawned).toBe(false)
      const log = readLog(path.join(dir, "agent.log"))
      expectHeader(log)
      expect(log).toMatch(new RegExp(`\\nFailed: ${ISO}\\nError: [^\\n]*AGENT_COMMAND[^\\n]*\\n$`))
    }))

  it.live("a command that is not executable is SpawnFailed", () =>
    Effect.gen(function*() {
      const dir = makeTempDir()
      const script = path.join(dir, "agent.sh")
      fs.writeFileSync(script, "#!/bin/sh\necho hi\n", { mode: 0o644 })
      const status = yield* runner.run({ ...shSpec(dir, ""), command: script, args: [] })
      expect(status._tag).toBe("SpawnFailed")
      if (status._tag === "SpawnFailed") expect(status.message).toContain("AGENT_COMMAND")
      expect(readLog(path.join(dir, "agent.log"))).toMatch(/\nError: [^\n]+\n$/)
    }))

  it.live("a missing working directory is SpawnFailed", () =>
    Effect.gen(function*() {
      const dir = makeTempDir()
      const missing = path.join(dir, "no-such-worktree")
      const status = yield* runner.run(shSpec(dir, "echo should-not-run", { cwd: missing }))
      expect(status._tag).toBe("SpawnFailed")
      if (status._tag === "SpawnFailed") expect(status.message).toContain(missing)
      const log = readLog(path.join(dir, "agent.log"))
      expect(log).not.toContain("should-not-run")
      expect(log).toMatch(new RegExp(`\\nFailed: ${ISO}\\nError: [^\\n]+\\n$`))
    }))

  it.live("a log file that cannot be written fails the run with a StorageError", () =>
    Effect.gen(function*() {
      const dir = makeTempDir()
      const error = yield* Effect.flip(runner.run(shSpec(dir, "echo x", { logFile: path.join(dir, "no", "such", "dir.log") })))
      expect(error._tag).toBe("StorageError")
    }))

  it.live("onSpawn receives the pid (a group leader) and the /proc start time (field 22)", () =>
    Effect.gen(function*() {
      const dir = makeTempDir()
      const go = path.join(dir, "go")
      let seen: { info: SpawnInfo; field22: string | undefined; pgid: string | undefined } | undefined
      const status = yield* runner.run(
        shSpec(dir, `while [ ! -e '${go}' ]; do sleep 0.02; done; exit 0`, {
          onSpawn: (info) =>
            Effect.sync(() => {
              // The child is still waiting for `go`: its /proc entry is there to compare with.
              seen = { info, field22: startTimeField(info.pid), pgid: statFields(info.pid)?.[2] }
              fs.writeFileSync(go, "")
            })
        })
      ).pipe(Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("the child never saw go") }))
      expect(status).toMatchObject({ _tag: "Exited", code: 0 })
      expect(seen).toBeDefined()
      expect(seen!.info.pid).toBeGreaterThan(0)
      expect(seen!.field22).toBeDefined()
      expect(seen!.info.startTime).toBe(seen!.field22)
      expect(seen!.pgid).toBe(String(seen!.info.pid))
    }))

  it.live("interrupting a run of a child that ignores SIGTERM stops its whole group within the grace + 2 s", () =>
    Effect.gen(function*() {
      const dir = makeTempDir()
      const spawned = yield* Deferred.make<SpawnInfo>()
      const log = path.join(dir, "agent.log")
      const fiber = yield* runner.run(
        shSpec(dir, "trap \"\" TERM; echo ready; sleep 30", {
          onSpawn: (info) => Deferred.succeed(spawned, info).pipe(Effect.asVoid)
        })
      ).pipe(Effect.fork)
      const { pid } = yield* Deferred.await(spawned)
      // Wait until the trap is installed (the line after it ran) and the sleep runs.
      yield* waitUntil("the script to be ready", () => fs.readFileSync(log, "utf8").includes("ready\n"))
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
      expect(readLog(log)).toMatch(new RegExp(`\\nFailed: ${ISO}\\nSignal: SIGKILL\\n$`))
    }))

  it.live("interrupting a run of a well-behaved child stops it at once with SIGTERM", () =>
    Effect.gen(function*() {
      const dir = makeTempDir()
      const spawned = yield* Deferred.make<SpawnInfo>()
      const fiber = yield* runner.run(
        shSpec(dir, "sleep 30", { onSpawn: (info) => Deferred.succeed(spawned, info).pipe(Effect.asVoid) })
      ).pipe(Effect.fork)
      const { pid } = yield* Deferred.await(spawned)
      const started = Date.now()
      yield* Fiber.interrupt(fiber)
      expect(Date.now() - started).toBeLessThan(KILL_GRACE_MS)
      expect(groupMembers(pid)).toEqual([])
      expect(readLog(path.join(dir, "agent.log"))).toMatch(/\nSignal: SIGTERM\n$/)
    }))

  it.live("a background grandchild left by a child that exits 0 is gone once the run completes", () =>
    Effect.gen(function*() {
      const dir = makeTempDir()
      const gcFile = path.join(dir, "grandchild.pid")
      let leader = 0
      const status = yield* runner.run(
        shSpec(dir, `sleep 300 & echo $! > '${gcFile}'; exit 0`, {
          onSpawn: (info) => Effect.sync(() => void (leader = info.pid))
        })
      )
      expect(status).toMatchObject({ _tag: "Exited", code: 0 })
      const grandchild = Number(fs.readFileSync(gcFile, "utf8").trim())
      startedPids.add(grandchild)
      expect(grandchild).toBeGreaterThan(0)
      expect(isAlive(grandchild)).toBe(false)
      expect(groupMembers(leader)).toEqual([])
    }))

  it.live("onGone runs once, when the whole group is gone and before the footer; the run still ends with every byte and the footer", () =>
    Effect.gen(function*() {
      const dir = makeTempDir()
      const gcFile = path.join(dir, "grandchild.pid")
      let leader = 0
      const seen: Array<{ readonly members: number; readonly log: string }> = []
      const status = yield* runner.run(
        shSpec(dir, `sleep 300 & echo $! > '${gcFile}'; echo last words; exit 3`, {
          onSpawn: (info) => Effect.sync(() => void (leader = info.pid)),
          onGone: Effect.sync(() => void seen.push({ members: groupMembers(leader).length, log: readLog(path.join(dir, "agent.log")) }))
        })
      )
      startedPids.add(Number(fs.readFileSync(gcFile, "utf8").trim()))
      expect(status).toMatchObject({ _tag: "Exited", code: 3 })
      expect(seen).toHaveLength(1)
      expect(seen[0]!.members).toBe(0)
      expect(seen[0]!.log).not.toMatch(/Exit code:/)
      expect(readLog(path.join(dir, "agent.log"))).toMatch(/last words\n\nFailed: .*\nExit code: 3\n$/)
    }))

  it.live("an agent that leaves no process: onGone runs once at its exit, and what it wakes runs before the run's clean-up", () =>
    Effect.gen(function*() {
      const dir = makeTempDir()
      const logFile = path.join(dir, "agent.log")
      let leader = 0
      let goneCalls = 0
      // Stands for the dispatcher: a fiber that onGone wakes, which starts a job (a new fiber) that
      // looks at the log when it runs.
      const woken = yield* Deferred.make<void>()
      const seenByWoken = yield* Deferred.make<{ readonly members: number; readonly log: string }>()
      const job = Effect.suspend(() => Deferred.succeed(seenByWoken, { members: groupMembers(leader).length, log: readLog(logFile) }))
      yield* Deferred.await(woken).pipe(Effect.zipRight(Effect.forkDaemon(job)), Effect.fork)
      // It exits once onSpawn has run (an agent that exits at once may be reported before it).
      const go = path.join(dir, "go")
      const status = yield* runner.run(
        shSpec(dir, `while [ ! -e '${go}' ]; do sleep 0.01; done; echo last words; exit 4`, {
          onSpawn: (info) => Effect.sync(() => {
            leader = info.pid
            fs.writeFileSync(go, "")
          }),
          onGone: Effect.sync(() => void goneCalls++).pipe(Effect.zipRight(Deferred.succeed(woken, undefined)))
        })
      )
      expect(status).toMatchObject({ _tag: "Exited", code: 4 })
      expect(goneCalls).toBe(1)
      const seen = yield* Deferred.await(seenByWoken)
      expect(seen.members).toBe(0)
      // Woken by onGone, it ran before the footer was written.
      expect(seen.log).not.toMatch(/Exit code:/)
      expect(readLog(logFile)).toMatch(/last words\n\nFailed: .*\nExit code: 4\n$/)
    }))

  it.live("a grandchild that ignores SIGTERM is SIGKILLed after the grace once the run completes", () =>
    Effect.gen(function*() {
      const dir = makeTempDir()
      const gcFile = path.join(dir, "grandchild.pid")
      let leader = 0
      const started = Date.now()
      const status = yield* runner.run(
        shSpec(dir, `trap "" TERM; sleep 300 & echo $! > '${gcFile}'; exit 5`, {
          onSpawn: (info) => Effect.sync(() => void (leader = info.pid))
        })
      )
      const elapsed = Date.now() - started
      expect(status).toMatchObject({ _tag: "Exited", code: 5 })
      const grandchild = Number(fs.readFileSync(gcFile, "utf8").trim())
      startedPids.add(grandchild)
      expect(isAlive(grandchild)).toBe(false)
      expect(groupMembers(leader)).toEqual([])
      expect(elapsed).toBeLessThan(KILL_GRACE_MS + 2_000)
      expect(readLog(path.join(dir, "agent.log"))).toMatch(new RegExp(`\\nFailed: ${ISO}\\nExit code: 5\\n$`))
    }))

  it.live("interrupting a run at once, before onSpawn, leaves no process behind", () =>
    Effect.gen(function*() {
      const dir = makeTempDir()
      const marker = `starforge-test-${process.pid}-${Date.now()}-${Math.random().toString(16).slice(2)}`
      const tagged = () => processesWithEnv(marker)
      for (let i = 0; i < 10; i++) {
        const fiber = yield* runner.run(
          shSpec(dir, "sleep 30; echo done", {
            log: `run-${i}.log`,
            env: { PATH: process.env["PATH"]!, STARFORGE_TEST_MARKER: marker }
          })
        ).pipe(Effect.fork)
        // Interrupt at different points of the start-up: before the fiber runs, while the log
        // opens, once the log has its header (the spawn is then on its way)…
        if (i >= 5) {
          const log = path.join(dir, `run-${i}.log`)
          const deadline = Date.now() + 5_000
          while (!(fs.existsSync(log) && fs.statSync(log).size > 0) && Date.now() < deadline) yield* Effect.yieldNow()
        }
        for (let k = 0; k < i % 5; k++) yield* Effect.yieldNow()
        yield* Fiber.interrupt(fiber).pipe(
          Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("the interrupt did not finish") })
        )
        tagged().forEach((pid) => startedPids.add(pid))
        expect(tagged()).toEqual([])
      }
      // Some runs got as far as spawning their child, and each of those was stopped; a run stopped
      // after its log was opened but before the spawn says so in its footer.
      const logs = fs.readdirSync(dir).filter((n) => n.endsWith(".log")).map((log) => readLog(path.join(dir, log)))
      expect(logs.some((log) => /\nSignal: SIG(TERM|KILL)\n$/.test(log))).toBe(true)
      for (const log of logs) expect(log).toMatch(/\n(Signal: SIG(TERM|KILL)|Error: not started: the run was stopped first)\n$/)
    }))

  it.live("rotates the log at the size limit while the agent writes: every byte kept in order, no fd leaked; onOutput gets exactly the logged output", () =>
    Effect.gen(function*() {
      const dir = makeTempDir()
      const maxBytes = 64 * 1024
      const rotating = makeNode(KILL_GRACE_MS, maxBytes, spawnAgent)
      const lines = 15_000
      const openFds = () => fs.readdirSync("/proc/self/fd").length
      const fdsBefore = openFds()
      // stdout and stderr interleaved, as fast as awk writes (about 0.95 MB).
      const script = `awk 'BEGIN { for (i = 0; i < ${lines}; i++) { printf "out %06d ${"o".repeat(40)}\\n", i; fflush(); ` +
        `printf "err %06d\\n", i > "/dev/stderr"; fflush("/dev/stderr") } }'`
      const received: Array<Buffer> = []
      const status = yield* rotating.run(shSpec(dir, script, { onOutput: (bytes) => received.push(Buffer.from(bytes)) }))
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
      expect(body.length).toBe(HEADER.length + 1 + 2 * lines + 3 + 1)
      expect(openFds()).toBe(fdsBefore)
      // What the parser is fed: the log's bytes between header and footer, whatever the rotation
      // did, in whole lines (stdout and stderr never cut into each other).
      const header = HEADER.join("\n") + "\n\n"
      expect(Buffer.concat(received).toString("utf8")).toBe(all.slice(header.length, all.lastIndexOf("\nCompleted: ")))
      for (const chunk of received) expect(chunk.at(-1)).toBe(10)
    }))

  it.live("onOutput keeps getting the output after the log cannot be written any more (its directory removed)", () =>
    Effect.gen(function*() {
      const dir = makeTempDir()
      const logs = path.join(dir, "logs")
      fs.mkdirSync(logs)
      const received: Array<string> = []
      const long = "x".repeat(2_000)
      // The long line takes the log over its limit: the rotation's rename fails, and so does every later write.
      const script = `echo first; while [ ! -e go ]; do sleep 0.02; done; echo ${long}; echo '{"type":"result","is_error":true}'`
      const run = yield* Effect.fork(
        makeNode(KILL_GRACE_MS, 1_000).run(shSpec(dir, script, { logFile: path.join(logs, "agent.log"), onOutput: (b) => received.push(Buffer.from(b).toString()) }))
      )
      yield* waitUntil("the first line", () => received.length > 0)
      fs.rmSync(logs, { recursive: true })
      fs.writeFileSync(path.join(dir, "go"), "")
      expect(yield* Fiber.join(run)).toMatchObject({ _tag: "Exited", code: 0 })
      expect(received.join("")).toBe(`first\n${long}\n{"type":"result","is_error":true}\n`)
    }))

  it.live("a last line without a newline is still written before the footer", () =>
    Effect.gen(function*() {
      const dir = makeTempDir()
      const received: Array<string> = []
      yield* runner.run(shSpec(dir, "printf 'no newline'; printf 'nor here' >&2", { onOutput: (bytes) => received.push(Buffer.from(bytes).toString()) }))
      expect(received.sort()).toEqual(["no newline", "nor here"])
      const log = readLog(path.join(dir, "agent.log"))
      expect(log).toContain("no newline")
      expect(log).toContain("nor here")
      expect(log).toMatch(new RegExp(`\\nCompleted: ${ISO}\\nExit code: 0\\n$`))
    }))

  it.live("stopOrphan on a live process with its recorded start time stops it", () =>
    Effect.gen(function*() {
      const { pid, startTime } = yield* startDetached("sleep 30 & wait")
      yield* waitUntil("the group to have its sleep", () => groupMembers(pid).length >= 2)
      const members = groupMembers(pid)
      members.forEach((p) => startedPids.add(p))
      const fate = yield* runner.stopOrphan(pid, startTime)
      expect(fate).toBe("stopped")
      expect(isAlive(pid)).toBe(false)
      for (const p of members) expect(isAlive(p)).toBe(false)
      expect(groupMembers(pid)).toEqual([])
    }))

  it.live("stopOrphan on a live process with a different start time leaves it alone", () =>
    Effect.gen(function*() {
      const { pid, startTime } = yield* startDetached("sleep 30")
      const fate = yield* runner.stopOrphan(pid, String(BigInt(startTime) + 1n))
      expect(fate).toBe("different")
      expect(isAlive(pid)).toBe(true)
      // Without a recorded start time a pid cannot be verified, so it is never signalled either.
      expect(yield* runner.stopOrphan(pid, null)).toBe("different")
      expect(isAlive(pid)).toBe(true)
      killQuietly(pid)
      yield* waitUntil(`process ${pid} to die`, () => !isAlive(pid))
    }))

  it.live("stopOrphan on a dead pid is gone", () =>
    Effect.gen(function*() {
      const { pid, startTime, child } = yield* startDetached("exec sleep 30")
      const exited = new Promise((resolve) => child.once("exit", resolve))
      killQuietly(pid)
      yield* Effect.promise(() => exited)
      yield* waitUntil(`process ${pid} to die`, () => !isAlive(pid))
      expect(yield* runner.stopOrphan(pid, startTime)).toBe("gone")
      // A pid above the kernel's maximum can never exist.
      expect(yield* runner.stopOrphan(2 ** 22 + 12345, "1")).toBe("gone")
    }))
})

describe("the watchdog of the runs (test double, TestClock)", () => {
  const fakeSpec = (agent: string, extra: Partial<AgentRunSpec>): AgentRunSpec => ({
    agent,
    command: "agent",
    args: [],
    cwd: "/",
    env: {},
    logFile: "/nonexistent/agent.log",
    header: [],
    onSpawn: () => Effect.void,
    ...extra
  })

  it.scoped("follows every run at once: a run started later with a nearer deadline ends first, the others keep theirs and their ticks", () =>
    Effect.gen(function*() {
      const fake = yield* makeFake()
      const runner = yield* Effect.provide(AgentProcess, fake.layer)
      const ticks: Array<number> = []
      const first = yield* Effect.fork(runner.run(fakeSpec("a", {
        timeoutMs: 10_000,
        tick: { everyMs: 3_000, run: Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => void ticks.push(now))) }
      })))
      yield* Queue.take(fake.started)
      // Nearer than anything the watchdog sleeps until (a's first tick at 3 s).
      const second = yield* Effect.fork(runner.run(fakeSpec("b", { timeoutMs: 1_000 })))
      yield* Queue.take(fake.started)
      yield* TestClock.adjust("1 second")
      expect((yield* Fiber.join(second))._tag).toBe("TimedOut")
      expect(Option.isNone(yield* Fiber.poll(first))).toBe(true)
      yield* TestClock.adjust("9 seconds")
      expect((yield* Fiber.join(first))._tag).toBe("TimedOut")
      expect(ticks).toEqual([3_000, 6_000, 9_000])
    }))

  it.scoped("a run that ends stops its ticks, and the last one to end, or to be interrupted, leaves no fiber waiting", () =>
    Effect.gen(function*() {
      const watchdog = makeWatchdog()
      const runtime = yield* Effect.runtime<never>()
      let ticks = 0
      const ended = yield* Deferred.make<RunEnd>()
      const first = yield* Effect.fork(watchdog.awaitEnd(ended, fakeSpec("a", { timeoutMs: 60_000, tick: { everyMs: 1_000, run: Effect.sync(() => void ticks++) } }), runtime))
      const other = yield* Deferred.make<RunEnd>()
      const second = yield* Effect.fork(watchdog.awaitEnd(other, fakeSpec("b", { timeoutMs: 60_000 }), runtime))
      yield* TestClock.adjust("2 seconds")
      expect(watchdog.following()).toEqual({ runs: 2, sleeping: true })
      yield* Deferred.succeed(ended, { _tag: "Exit", status: ExitStatus.Exited({ code: 0 }) })
      expect((yield* Fiber.join(first))._tag).toBe("Exit")
      expect(ticks).toBe(2)
      yield* TestClock.adjust("10 seconds")
      expect(ticks).toBe(2)
      expect(watchdog.following()).toEqual({ runs: 1, sleeping: true })
      // Interrupted while it waits (a shutdown): nothing is followed, and nothing waits.
      yield* Fiber.interrupt(second)
      expect(watchdog.following()).toEqual({ runs: 0, sleeping: false })
    }))
})
