/**
 * The spawn helper (dist/spawn-helper.cjs, built by `npm run build`: CI builds before it tests,
 * see .ci/run) and the daemon's side of it (`SpawnHelper.make`), with real `sh -c` agents.
 *
 * Every process a test starts is SIGKILLed (with its group) in `afterEach`, which then waits
 * until they are gone. Nothing sleeps and hopes: every wait is for an event, with a deadline.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { beforeAll, describe, expect, it } from "@effect/vitest"
import { Chunk, Deferred, Duration, Effect, Either, Exit, Fiber, Layer, Option, Scope, Stream } from "effect"
import { DaemonConfig } from "../../src/config/DaemonConfig.js"
import { ExitStatus } from "../../src/domain/Outcome.js"
import { ProcessTable } from "../../src/platform/ProcessTable.js"
import * as Linux from "../../src/platform/linux.js"
import * as SpawnHelper from "../../src/process/SpawnHelper.js"
import { makeDirect, type SpawnedProcess, Spawner, type SpawnRequest } from "../../src/process/Spawner.js"
import { groupMembers, isAlive, statFields, useProcessCleanup, waitUntil, within } from "../support/processes.js"

const HELPER = fileURLToPath(new URL("../../dist/spawn-helper.cjs", import.meta.url))
const PATH = process.env["PATH"] ?? "/usr/bin:/bin"

beforeAll(() => {
  if (!fs.existsSync(HELPER)) throw new Error(`${HELPER} is missing: run npm run build before the tests`)
})

// ---------------------------------------------------------------------------------------------
// Bookkeeping
// ---------------------------------------------------------------------------------------------

const { started, tempDir } = useProcessCleanup("starforge-helper-")
const groupAlive = (pgid: number) => groupMembers(pgid).length > 0
const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024

const kill = (target: number) => {
  try {
    process.kill(target, "SIGKILL")
  } catch {
    // Gone.
  }
}

/** Blocks this whole process (its event loop reads nothing) until `condition` holds; throws after the deadline. */
const blockUntil = (what: string, condition: () => boolean, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    const until = Date.now() + 20
    while (Date.now() < until) {
      // Busy: nothing else runs.
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Agents
// ---------------------------------------------------------------------------------------------

const config = (dir: string) => Layer.merge(DaemonConfig.layerSettings(dir, { killGraceMs: 1_000 }), Linux.layer)

/** A helper for the test's scope, with a spawner that records the pids it starts. */
const helper = Effect.gen(function*() {
  const made = yield* SpawnHelper.make(HELPER)
  const pid = Option.getOrThrow(yield* made.pid)
  return {
    pid,
    current: made.pid,
    spawn: (request: SpawnRequest) =>
      Effect.uninterruptible(Effect.tap(made.spawner.spawn(request), (spawned) => Effect.sync(() => started.add(spawned.pid))))
  }
})

const sh = (dir: string, script: string): SpawnRequest => ({ command: "sh", args: ["-c", script], cwd: dir, env: { PATH } })

/** All the output, then the exit. */
const outcome = (agent: SpawnedProcess) =>
  Effect.gen(function*() {
    const chunks = yield* Stream.runCollect(agent.output)
    const out = Buffer.concat(Chunk.toArray(chunks)).toString("utf8")
    return { out, exit: yield* agent.exit }
  }).pipe(within(15_000, "the agent's end"))

/** Reads the whole output in a fiber; `first` waits (with a deadline) until some of it has come. */
const collecting = (agent: SpawnedProcess) =>
  Effect.gen(function*() {
    const some = yield* Deferred.make<void>()
    const reader = yield* Effect.fork(Stream.runCollect(Stream.tap(agent.output, () => Deferred.succeed(some, undefined))))
    return { first: Deferred.await(some).pipe(within(5_000, "the first output")), reader }
  })

const live = (title: string, body: (dir: string) => Effect.Effect<void, unknown, Scope.Scope | DaemonConfig | ProcessTable>, timeout?: number) =>
  it.live(title, () => Effect.suspend(() => {
    const dir = tempDir()
    return Effect.scoped(body(dir)).pipe(Effect.provide(config(dir)))
  }), timeout)

describe("spawn helper", { timeout: 30_000 }, () => {
  live("starts agents (their parent is the helper) and forwards the output and exit of fast agents: 30 runs, nothing lost", (dir) =>
    Effect.gen(function*() {
      const { pid, spawn } = yield* helper
      const results = yield* Effect.forEach(
        Array.from({ length: 30 }, (_, i) => i),
        (i) => Effect.scoped(Effect.flatMap(spawn(sh(dir, `echo "out ${i} $PPID"; echo err ${i} >&2; exit ${i % 5}`)), outcome)),
        { concurrency: 10 }
      )
      results.forEach(({ out, exit }, i) => {
        expect(out.split("\n").sort()).toEqual(["", `err ${i}`, `out ${i} ${pid}`])
        expect(exit).toEqual(ExitStatus.Exited({ code: i % 5 }))
      })
    }))

  live("a line of stdout and one of stderr never mix, however the agent writes them", (dir) =>
    Effect.gen(function*() {
      const { spawn } = yield* helper
      const script = `i=0; while [ $i -lt 300 ]; do printf aaaa; printf bbbb >&2; printf 'aaaa\\n'; printf 'bbbb\\n' >&2; i=$((i+1)); done`
      const { out, exit } = yield* Effect.scoped(Effect.flatMap(spawn(sh(dir, script)), outcome))
      expect(exit).toEqual(ExitStatus.Exited({ code: 0 }))
      const lines = out.split("\n").slice(0, -1)
      expect(lines.filter((l) => l === "aaaaaaaa")).toHaveLength(300)
      expect(lines.filter((l) => l === "bbbbbbbb")).toHaveLength(300)
      expect(lines).toHaveLength(600)
    }))

  live("a spawn that fails has the same message as a direct one: missing command, not executable, missing directory", (dir) =>
    Effect.gen(function*() {
      const { spawn } = yield* helper
      const direct = makeDirect(yield* ProcessTable, Duration.seconds(1))
      const script = path.join(dir, "agent")
      fs.writeFileSync(script, "#!/bin/sh\n")
      const requests: Array<SpawnRequest> = [
        { command: "starforge-no-such-agent", args: [], cwd: dir, env: { PATH } },
        { command: "/nonexistent/agent", args: [], cwd: dir, env: { PATH } },
        { command: script, args: [], cwd: dir, env: { PATH } },
        { command: "sh", args: [], cwd: path.join(dir, "missing"), env: { PATH } }
      ]
      for (const request of requests) {
        const viaHelper = yield* Effect.scoped(Effect.flip(spawn(request)))
        const directly = yield* Effect.scoped(Effect.flip(direct.spawn(request)))
        expect(viaHelper.message).toBe(directly.message)
      }
      const first = yield* Effect.scoped(Effect.flip(spawn(requests[0]!)))
      expect(first.message).toBe("command not found: starforge-no-such-agent (install it or set AGENT_COMMAND)")
      const third = yield* Effect.scoped(Effect.flip(spawn(requests[2]!)))
      expect(third.message).toContain("permission denied")
    }))

  live("closing the agent's scope stops its whole group with the kill ladder (SIGKILL for one that ignores SIGTERM)", (dir) =>
    Effect.gen(function*() {
      const { spawn } = yield* helper
      const polite = yield* Effect.scoped(Effect.gen(function*() {
        const agent = yield* spawn(sh(dir, "sleep 30 & sleep 30 & echo up; wait"))
        yield* Stream.runHead(agent.output).pipe(within(5_000, "the first line"))
        return agent.pid
      }))
      expect(groupAlive(polite)).toBe(false)
      let stubborn = 0
      const signal = yield* Effect.scoped(Effect.gen(function*() {
        const agent = yield* spawn(sh(dir, "trap '' TERM; sleep 30 & echo up; wait; wait"))
        stubborn = agent.pid
        yield* Stream.runHead(agent.output).pipe(within(5_000, "the first line"))
        const stopped = yield* agent.stop
        expect(yield* agent.exit).toEqual(ExitStatus.Signaled({ signal: "SIGKILL" }))
        return stopped
      }))
      expect(signal).toBe("SIGKILL")
      expect(groupAlive(stubborn)).toBe(false)
    }))

  live("forwards a large output whole and in order", (dir) =>
    Effect.gen(function*() {
      const { spawn } = yield* helper
      const script = `i=0; while [ $i -lt 20000 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done`
      const { out, exit } = yield* Effect.scoped(Effect.flatMap(spawn(sh(dir, script)), outcome))
      expect(exit).toEqual(ExitStatus.Exited({ code: 0 }))
      const lines = out.split("\n").slice(0, -1)
      const expected = (name: string) => Array.from({ length: 20_000 }, (_, i) => `${name} ${i}`)
      expect(lines.filter((l) => l.startsWith("out "))).toEqual(expected("out"))
      expect(lines.filter((l) => l.startsWith("err "))).toEqual(expected("err"))
      expect(lines).toHaveLength(40_000)
    }))

  live("a daemon that reads nothing holds the agent back on its full pipe: the helper does not pile its output up", (dir) =>
    Effect.gen(function*() {
      const { pid, spawn } = yield* helper
      yield* Effect.scoped(Effect.flatMap(spawn(sh(dir, "true")), outcome))
      const before = rssMiB(pid)
      const agent = yield* spawn(sh(dir, "head -c 67108864 /dev/zero"))
      // This process reads nothing until the agent has been asleep (blocked writing) for 10 looks in a row.
      let asleep = 0
      blockUntil("the agent to block on its full pipe", () => {
        asleep = statFields(agent.pid)?.[0] === "S" ? asleep + 1 : 0
        return asleep >= 10
      })
      expect(rssMiB(pid) - before).toBeLessThan(32)
      const received = yield* Stream.runFold(agent.output, 0, (n, bytes) => n + bytes.length).pipe(within(20_000, "the output"))
      expect(received).toBe(64 * 1024 * 1024)
      expect(yield* agent.exit).toEqual(ExitStatus.Exited({ code: 0 }))
    }))

  live("endOutput closes pipes an escaped process holds open: its next write fails", (dir) =>
    Effect.gen(function*() {
      const { spawn } = yield* helper
      const agent = yield* spawn(sh(dir, `(trap '' PIPE; while echo tick; do sleep 0.05; done; echo closed > ${dir}/closed) & echo $! > ${dir}/child`))
      yield* agent.exit.pipe(within(5_000, "the agent's exit"))
      yield* waitUntil("the background writer's pid", () => fs.existsSync(path.join(dir, "child")) && fs.readFileSync(path.join(dir, "child"), "utf8").endsWith("\n"))
      const child = Number(fs.readFileSync(path.join(dir, "child"), "utf8"))
      const { first, reader } = yield* collecting(agent)
      yield* first
      yield* agent.endOutput.pipe(within(5_000, "endOutput"))
      const out = Buffer.concat(Chunk.toArray(yield* Fiber.join(reader).pipe(within(5_000, "the output's end")))).toString()
      expect(out.startsWith("tick\n")).toBe(true)
      yield* waitUntil("the background writer to see its pipe closed", () => fs.existsSync(path.join(dir, "closed")))
      yield* waitUntil("the background writer to end", () => !isAlive(child))
    }))

  live("helper killed: a running agent loses the rest of its output, is stopped and ends as unknown; a new helper starts the next spawn", (dir) =>
    Effect.gen(function*() {
      const { current, pid, spawn } = yield* helper
      const agent = yield* spawn(sh(dir, "echo started; trap '' PIPE; exec sleep 30"))
      const { first, reader } = yield* collecting(agent)
      yield* first
      kill(pid)
      const out = Buffer.concat(Chunk.toArray(yield* Fiber.join(reader).pipe(within(5_000, "the output's end")))).toString()
      expect(out).toBe("started\n")
      // Nobody can tell its exit any more: it is stopped, and its end is unknown (a failure).
      expect(yield* agent.exit.pipe(within(5_000, "the exit"))).toEqual(SpawnHelper.UNKNOWN_EXIT)
      expect(groupAlive(agent.pid)).toBe(false)
      yield* waitUntil("a new helper", Effect.map(current, (now) => Option.isSome(now) && now.value !== pid))
      const next = Option.getOrThrow(yield* current)
      expect(isAlive(next)).toBe(true)
      const again = yield* Effect.scoped(Effect.flatMap(spawn(sh(dir, "echo $PPID")), outcome))
      expect(again).toEqual({ out: `${next}\n`, exit: ExitStatus.Exited({ code: 0 }) })
    }))

  live("a helper that dies after starting an agent but before naming it: that copy is stopped, the agent is started directly, once at a time", (dir) =>
    Effect.gen(function*() {
      // A helper that starts the agent it is asked for, then dies without a word.
      const dying = path.join(dir, "dying-helper.cjs")
      fs.writeFileSync(dying, `
const { spawn } = require("node:child_process")
let buffered = Buffer.alloc(0)
process.stdin.on("data", (chunk) => {
  buffered = Buffer.concat([buffered, chunk])
  if (buffered.length < 9 || buffered.length < 9 + buffered.readUInt32LE(0)) return
  const request = JSON.parse(buffered.subarray(9, 9 + buffered.readUInt32LE(0)).toString("utf8"))
  const child = spawn(request.command, request.args, { cwd: request.cwd, env: request.env, detached: true, stdio: "ignore" })
  child.once("spawn", () => process.kill(process.pid, "SIGKILL"))
})
process.stdin.once("end", () => process.exit(0))
`)
      const made = yield* SpawnHelper.make(dying)
      const token = "attempt-token-1"
      const request: SpawnRequest = {
        command: "sh",
        args: ["-c", `trap 'echo end >> ${dir}/runs; exit 143' TERM; echo "$$" >> ${dir}/runs; sleep 30 & wait $!`],
        cwd: dir,
        env: { PATH, STARFORGE_PROJECT_ROOT: dir, STARFORGE_ATTEMPT_ID: token }
      }
      const agent = yield* made.spawner.spawn(request).pipe(within(10_000, "the spawn"))
      started.add(agent.pid)
      const runs = () => (fs.existsSync(path.join(dir, "runs")) ? fs.readFileSync(path.join(dir, "runs"), "utf8") : "").split("\n").filter((l) => l !== "")
      yield* waitUntil("the direct copy's start", () => runs().includes(String(agent.pid)))
      const lines = runs()
      // The first copy (if it got as far as its start line) had ended, by its SIGTERM trap, before the direct one started.
      const before = lines.slice(0, lines.indexOf(String(agent.pid)))
      if (before.length > 0) {
        expect(before).toEqual([before[0], "end"])
        expect(before[0]).not.toBe(String(agent.pid))
        started.add(Number(before[0]))
        expect(groupAlive(Number(before[0]))).toBe(false)
      }
      // Nothing but the direct copy's group carries the attempt's token.
      const carriers = Linux.attemptProcesses(dir).filter((p) => p.token === token).map((p) => p.pid)
      expect(carriers).toContain(agent.pid)
      expect(carriers.filter((pid) => statFields(pid)?.[2] !== String(agent.pid))).toEqual([])
      expect(statFields(agent.pid)?.[1]).toBe(String(process.pid))
      expect(Option.isNone(yield* agent.exited)).toBe(true)
    }))

  live("helper dies with a request unanswered: the agent is started directly instead, once", (dir) =>
    Effect.gen(function*() {
      const { pid, spawn } = yield* helper
      yield* Effect.scoped(Effect.flatMap(spawn(sh(dir, "true")), outcome))
      process.kill(pid, "SIGSTOP")
      const request = yield* Effect.fork(Effect.scoped(Effect.flatMap(spawn(sh(dir, `echo once >> ${dir}/runs; echo $PPID`)), outcome)))
      // Whether the request is still being sent, waits in the channel or was never sent, the answer is the same.
      yield* Effect.yieldNow()
      kill(pid)
      const { out, exit } = yield* Fiber.join(request).pipe(within(10_000, "the spawn"))
      expect(out).toBe(`${process.pid}\n`)
      expect(exit).toEqual(ExitStatus.Exited({ code: 0 }))
      expect(fs.readFileSync(path.join(dir, "runs"), "utf8")).toBe("once\n")
    }))

  live("the layer's release leaves no helper, even a stopped one; agents are left to their own scopes", (dir) =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const first = yield* Scope.extend(helper, scope)
      const agent = yield* Scope.extend(first.spawn(sh(dir, "exec sleep 30")), yield* Scope.make())
      yield* Scope.close(scope, Exit.void)
      expect(isAlive(first.pid)).toBe(false)
      expect(isAlive(agent.pid)).toBe(true)
      const stoppedScope = yield* Scope.make()
      const stopped = yield* Scope.extend(helper, stoppedScope)
      process.kill(stopped.pid, "SIGSTOP")
      yield* Scope.close(stoppedScope, Exit.void).pipe(within(10_000, "the release"))
      expect(isAlive(stopped.pid)).toBe(false)
    }))
})

describe("STARFORGE_SPAWNER", () => {
  const missing = path.join(os.tmpdir(), "starforge-no-such-helper.cjs")
  it("direct, helper, or unset (the helper if it is there); anything else is an error naming the values", () => {
    expect(SpawnHelper.choose("direct", HELPER)).toEqual(Either.right(Spawner.direct))
    expect(SpawnHelper.choose(undefined, missing)).toEqual(Either.right(Spawner.direct))
    expect(Either.isRight(SpawnHelper.choose(undefined, HELPER))).toBe(true)
    expect(SpawnHelper.choose(undefined, HELPER)).not.toEqual(Either.right(Spawner.direct))
    expect(Either.isRight(SpawnHelper.choose("helper", HELPER))).toBe(true)
    const forced = SpawnHelper.choose("helper", missing)
    expect(Either.isLeft(forced) && forced.left.message).toContain("does not exist")
    const bad = SpawnHelper.choose("fork", HELPER)
    expect(Either.isLeft(bad) && bad.left._tag).toBe("ConfigInvalid")
    expect(Either.isLeft(bad) && bad.left.message).toContain("use helper or direct")
  })
})
