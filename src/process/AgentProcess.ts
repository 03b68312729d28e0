/**
 * Runs one attempt of one agent as a scoped child process.
 *
 * - The log file is opened *before* the spawn and handed to the child as its stdout and stderr,
 *   so the output of a child that exits at once is never lost (no pipe to drain late).
 * - stdin is closed (`/dev/null`): a CLI that reads stdin sees EOF instead of hanging.
 * - The child leads its own process group (and session). Interruption sends SIGTERM to the
 *   group, SIGKILL after the kill grace; after any exit the group is swept, so background
 *   grandchildren never outlive their attempt.
 * - pid and start time are reported as soon as the child runs, so a later start can tell the
 *   agent from a process that reused its pid.
 */
import { spawn, type ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import { Context, Deferred, Effect, Layer, Option, Queue, Ref } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { StorageError } from "../domain/errors.js"
import { ExitStatus, formatSeconds } from "../domain/Outcome.js"
import { isoSeconds } from "../domain/time.js"
import * as procfs from "./procfs.js"

export interface SpawnInfo {
  readonly pid: number
  /** `/proc/<pid>/stat` start time; null where it could not be read. */
  readonly startTime: string | null
}

export interface AgentRunSpec {
  readonly agent: string
  readonly command: string
  readonly args: ReadonlyArray<string>
  readonly cwd: string
  readonly env: Readonly<Record<string, string>>
  readonly logFile: string
  /** Written at the top of the log (`Agent:`, `Trigger:`, `Started:` lines). */
  readonly header: ReadonlyArray<string>
  /** Called once the child runs, before waiting for it. */
  readonly onSpawn: (info: SpawnInfo) => Effect.Effect<void>
  /**
   * How long the child may run before its group is stopped (the result is then `TimedOut`).
   * Only the wait for the exit is timed: cleaning up after an exit never turns it into a timeout.
   */
  readonly timeoutMs?: number
  /**
   * Called synchronously the moment the child exits, before any clean-up: whoever interrupts
   * the run afterwards can still tell that the agent had finished, and how.
   */
  readonly onExit?: (status: ExitStatus) => void
}

/** What happened to a process found in the slot file at start-up. */
export type OrphanFate = "stopped" | "gone" | "different"

export interface AgentProcessShape {
  /**
   * Runs the attempt to its end. A command that cannot start is an `ExitStatus.SpawnFailed`, one
   * that outlives `timeoutMs` is stopped and `ExitStatus.TimedOut`; only a log file that cannot
   * be written fails the effect. Interrupting it stops the whole process group (SIGTERM, then
   * SIGKILL after the kill grace) before it completes.
   */
  readonly run: (spec: AgentRunSpec) => Effect.Effect<ExitStatus, StorageError>
  /** Stops a process left by an earlier daemon if, and only if, it is still that process. */
  readonly stopOrphan: (pid: number, startTime: string | null) => Effect.Effect<OrphanFate>
}

export class AgentProcess extends Context.Tag("starforge/AgentProcess")<AgentProcess, AgentProcessShape>() {
  /** Real child processes; the kill grace comes from `AGENT_KILL_GRACE`. */
  static readonly layer = Layer.effect(
    AgentProcess,
    Effect.map(DaemonConfig, (config) => makeNode(config.settings.killGraceMs))
  )
}

const POLL_MS = 25

const footerOf = (status: ExitStatus, now: number): string => {
  const date = isoSeconds(now)
  switch (status._tag) {
    case "Exited":
      return status.code === 0
        ? `\nCompleted: ${date}\nExit code: 0\n`
        : `\nFailed: ${date}\nExit code: ${status.code}\n`
    case "Signaled":
      return `\nFailed: ${date}\nSignal: ${status.signal}\n`
    case "SpawnFailed":
      return `\nFailed: ${date}\nError: ${status.message}\n`
    case "TimedOut":
      return `\nFailed: ${date}\nTimed out after ${formatSeconds(status.afterSeconds)}\nSignal: ${status.signal}\n`
  }
}

interface Started {
  readonly child: ChildProcess
  readonly pid: number
  readonly exited: Deferred.Deferred<ExitStatus>
}

const spawnMessage = (command: string, error: NodeJS.ErrnoException): string => {
  switch (error.code) {
    case "ENOENT":
      return `command not found: ${command} (install it or set AGENT_COMMAND)`
    case "EACCES":
      return `permission denied running ${command} (make it executable or fix AGENT_COMMAND)`
    default:
      return `${command}: ${error.message} (check AGENT_COMMAND)`
  }
}

const spawnChild = (spec: AgentRunSpec, fd: number) =>
  Effect.async<Started | { readonly failed: string }>((resume) => {
    let child: ChildProcess
    try {
      child = spawn(spec.command, [...spec.args], {
        cwd: spec.cwd,
        env: spec.env,
        detached: true,
        stdio: ["ignore", fd, fd]
      })
    } catch (e) {
      resume(Effect.succeed({ failed: spawnMessage(spec.command, e as NodeJS.ErrnoException) }))
      return
    }
    const exited = Deferred.unsafeMake<ExitStatus>(undefined as never)
    child.once("exit", (code, signal) => {
      const status = code !== null ? ExitStatus.Exited({ code }) : ExitStatus.Signaled({ signal: signal ?? "SIGKILL" })
      spec.onExit?.(status)
      Deferred.unsafeDone(exited, Effect.succeed(status))
    })
    child.once("spawn", () => resume(Effect.succeed({ child, pid: child.pid!, exited })))
    child.once("error", (error) => {
      if (child.pid === undefined) resume(Effect.succeed({ failed: spawnMessage(spec.command, error) }))
    })
  })

/** Waits (polling `/proc`) until `done()` holds or the deadline passes; true when it held. */
const waitUntil = (done: () => boolean, ms: number) =>
  Effect.gen(function*() {
    const deadline = Date.now() + ms
    while (!done()) {
      if (Date.now() >= deadline) return false
      yield* Effect.sleep(POLL_MS)
    }
    return true
  })

/**
 * TERM the group's survivors (unless `termSent`), KILL whatever is left after the grace.
 * Returns the last signal sent, if any.
 */
const sweepGroup = (pgid: number, graceMs: number, termSent = false) =>
  Effect.gen(function*() {
    if (procfs.groupMembers(pgid).length === 0) return undefined
    if (!termSent) procfs.signalGroup(pgid, "SIGTERM")
    const empty = yield* waitUntil(() => procfs.groupMembers(pgid).length === 0, graceMs)
    if (empty) return "SIGTERM" as const
    procfs.signalGroup(pgid, "SIGKILL")
    yield* waitUntil(() => procfs.groupMembers(pgid).length === 0, 2_000)
    return "SIGKILL" as const
  })

/**
 * The kill ladder for a child of ours: SIGTERM the group, SIGKILL after the grace. One deadline
 * covers the leader and its group. Returns the signal that ended it ("SIGTERM" or "SIGKILL").
 */
const stopChild = (started: Started, graceMs: number) =>
  Effect.gen(function*() {
    if (yield* Deferred.isDone(started.exited)) {
      // Exited on its own: sweep what it left behind, with a full grace.
      return yield* sweepGroup(started.pid, graceMs)
    }
    const deadline = Date.now() + graceMs
    procfs.signalGroup(started.pid, "SIGTERM")
    const inGrace = yield* Deferred.await(started.exited).pipe(
      // Finalizers are uninterruptible; the timeout must be able to interrupt the wait.
      Effect.interruptible,
      Effect.timeoutOption(graceMs)
    )
    if (Option.isNone(inGrace)) {
      procfs.signalGroup(started.pid, "SIGKILL")
      yield* Deferred.await(started.exited)
      yield* sweepGroup(started.pid, 0, true)
      return "SIGKILL" as const
    }
    const rest = yield* sweepGroup(started.pid, Math.max(0, deadline - Date.now()), true)
    return rest ?? "SIGTERM"
  })

const writeAll = (fd: number, text: string) => {
  fs.writeSync(fd, text)
}

export const makeNode = (killGraceMs: number): AgentProcessShape => ({
  run: (spec) =>
    Effect.scoped(
      Effect.gen(function*() {
        const fd = yield* Effect.acquireRelease(
          Effect.try({
            try: () => {
              const fd = fs.openSync(spec.logFile, "a", 0o644)
              writeAll(fd, spec.header.join("\n") + "\n\n")
              return fd
            },
            catch: (cause) => new StorageError({ operation: "writing the agent log", path: spec.logFile, cause })
          }),
          (fd) => Effect.sync(() => fs.closeSync(fd))
        )
        if (!fs.existsSync(spec.cwd)) {
          const status = ExitStatus.SpawnFailed({ message: `working directory ${spec.cwd} does not exist` })
          writeAll(fd, footerOf(status, Date.now()))
          return status
        }
        let final: ExitStatus | undefined
        const started = yield* Effect.acquireRelease(spawnChild(spec, fd), (started) =>
          "failed" in started
            ? Effect.void
            : stopChild(started, killGraceMs).pipe(
              Effect.zipRight(Deferred.await(started.exited)),
              Effect.flatMap((status) => Effect.sync(() => writeAll(fd, footerOf(final ?? status, Date.now())))),
              Effect.catchAllDefect(() => Effect.void)
            ))
        if ("failed" in started) {
          const status = ExitStatus.SpawnFailed({ message: started.failed })
          writeAll(fd, footerOf(status, Date.now()))
          return status
        }
        yield* spec.onSpawn({ pid: started.pid, startTime: procfs.startTimeOf(started.pid) ?? null })
        const exit = spec.timeoutMs === undefined
          ? Option.some(yield* Deferred.await(started.exited))
          : yield* Deferred.await(started.exited).pipe(Effect.timeoutOption(spec.timeoutMs))
        if (Option.isSome(exit)) return exit.value
        const signal = yield* stopChild(started, killGraceMs)
        final = ExitStatus.TimedOut({ afterSeconds: spec.timeoutMs! / 1000, signal: signal ?? "SIGTERM" })
        return final
      })
    ).pipe(Effect.withSpan("AgentProcess.run", { attributes: { agent: spec.agent } })),

  stopOrphan: (pid, startTime) =>
    Effect.gen(function*() {
      const identity = procfs.identify(pid, startTime)
      if (identity === "different") return "different" as const
      if (identity === "gone") {
        // The group cannot outlive its leader's pid being reused, so survivors are the agent's own.
        yield* sweepGroup(pid, killGraceMs)
        return "gone" as const
      }
      procfs.signalGroup(pid, "SIGTERM")
      const stopped = yield* waitUntil(() => !procfs.isAlive(pid), killGraceMs)
      if (!stopped) {
        procfs.signalGroup(pid, "SIGKILL")
        yield* waitUntil(() => !procfs.isAlive(pid), 2_000)
      }
      yield* sweepGroup(pid, killGraceMs)
      return "stopped" as const
    }).pipe(Effect.withSpan("AgentProcess.stopOrphan", { attributes: { pid } }))
})

// ---------------------------------------------------------------------------------------------
// Test double: runs finish when the test says so.
// ---------------------------------------------------------------------------------------------

/** One run of the fake, as the test sees it. */
export interface FakeRun {
  readonly spec: AgentRunSpec
  readonly pid: number
  /** Ends the run with this status. */
  readonly finish: (status: ExitStatus) => Effect.Effect<void>
  /** Completes when the run was interrupted (timeout, shutdown). */
  readonly interrupted: Deferred.Deferred<void>
}

export interface FakeAgentProcess {
  readonly layer: Layer.Layer<AgentProcess>
  /** Runs in the order they started. */
  readonly started: Queue.Dequeue<FakeRun>
  /** Every run so far. */
  readonly runs: Effect.Effect<ReadonlyArray<FakeRun>>
  /** Orphans the fake was asked to stop, with the answer it gave. */
  readonly orphans: Effect.Effect<ReadonlyArray<{ readonly pid: number; readonly fate: OrphanFate }>>
}

export const makeFake = (options: {
  /** What `stopOrphan` answers; defaults to "gone". */
  readonly orphanFate?: (pid: number, startTime: string | null) => OrphanFate
} = {}): Effect.Effect<FakeAgentProcess> =>
  Effect.gen(function*() {
    const started = yield* Queue.unbounded<FakeRun>()
    const runs = yield* Ref.make<ReadonlyArray<FakeRun>>([])
    const orphans = yield* Ref.make<ReadonlyArray<{ pid: number; fate: OrphanFate }>>([])
    let nextPid = 10_000
    const service: AgentProcessShape = {
      run: (spec) =>
        Effect.gen(function*() {
          const done = yield* Deferred.make<ExitStatus>()
          const interrupted = yield* Deferred.make<void>()
          const run: FakeRun = {
            spec,
            pid: nextPid++,
            finish: (status) =>
              Effect.sync(() => spec.onExit?.(status)).pipe(Effect.zipRight(Deferred.succeed(done, status)), Effect.asVoid),
            interrupted
          }
          yield* spec.onSpawn({ pid: run.pid, startTime: "1" })
          yield* Ref.update(runs, (all) => [...all, run])
          yield* Queue.offer(started, run)
          const exit = yield* Deferred.await(done).pipe(
            spec.timeoutMs === undefined ? Effect.asSome : Effect.timeoutOption(spec.timeoutMs),
            Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined))
          )
          if (Option.isSome(exit)) return exit.value
          // Timed out: the fake "stops" the run the way the real layer would.
          yield* Deferred.succeed(interrupted, undefined)
          return ExitStatus.TimedOut({ afterSeconds: spec.timeoutMs! / 1000, signal: "SIGTERM" })
        }),
      stopOrphan: (pid, startTime) =>
        Effect.gen(function*() {
          const fate = options.orphanFate?.(pid, startTime) ?? "gone"
          yield* Ref.update(orphans, (all) => [...all, { pid, fate }])
          return fate
        })
    }
    return {
      layer: Layer.succeed(AgentProcess, service),
      started,
      runs: Ref.get(runs),
      orphans: Ref.get(orphans)
    }
  })
