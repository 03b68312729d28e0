/**
 * Runs one attempt of one agent as a scoped child process.
 *
 * - The child's stdout and stderr are pipes the daemon drains into the log from the moment it is
 *   spawned (so the output of a child that exits at once is never lost), whole lines at a time,
 *   so a line of stdout and one of stderr never mix. The daemon being the log's only writer is
 *   what lets it rotate the log at `LOG_MAX_SIZE_MB` without losing a byte (`RotatingLogFile`).
 *   The bytes it logs are handed to `onOutput` as they are written: whoever follows the agent's
 *   output (progress, stall detection) gets them from memory and never reads the log back.
 * - stdin is closed (`/dev/null`): a CLI that reads stdin sees EOF instead of hanging.
 * - The child leads its own process group (and session). Interruption sends SIGTERM to the
 *   group, SIGKILL after the kill grace; after any exit the group is swept, so background
 *   grandchildren never outlive their attempt.
 * - pid and start time are reported as soon as the child runs, so a later start can tell the
 *   agent from a process that reused its pid.
 * - The daemon's layer has the child started by a small helper process (`SpawnHelper`): a fork
 *   from the daemon itself copies the daemon's page tables and holds it up for every agent.
 */
import * as fs from "node:fs"
import type { Readable } from "node:stream"
import { Clock, Context, Deferred, Duration, Effect, Exit, Fiber, FiberId, Layer, Option, Queue, Ref, Runtime } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { StorageError } from "../domain/errors.js"
import { ExitStatus, formatSeconds } from "../domain/Outcome.js"
import { withoutLineBreaks } from "../domain/text.js"
import { isoSeconds } from "../domain/time.js"
import { endedSpan, NO_STACK } from "../observability/Tracing.js"
import { yieldToEventLoop } from "../io/eventLoop.js"
import { RotatingLogFile } from "../logs/LogFile.js"
import * as procfs from "../platform/linux.js"
import { type SpawnAgent, spawnDirect, startSpawnHelper } from "./SpawnHelper.js"

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
  /**
   * Runs once the agent and its whole process group are gone (after an exit, a timeout, a stall
   * or an interruption), before its remaining output is drained and the footer written. An agent
   * that exits leaving no process behind runs it the moment its exit is reported, and the run
   * then lets the event loop turn before its clean-up: whatever `onGone` starts (the agent's next
   * trigger) goes first.
   */
  readonly onGone?: Effect.Effect<void>
  /**
   * An agent silent for `afterMs` (no output since `lastActivityMs()`, epoch ms on the Effect
   * clock) is stopped like on a timeout and the result is `Stalled`.
   */
  readonly stall?: { readonly afterMs: number; readonly lastActivityMs: () => number }
  /**
   * Work repeated while the agent runs (the daemon's `PROGRESS` line): first `everyMs` after the
   * start, then `everyMs` after each run of it ended. It runs in a fiber of its own on the run's
   * runtime (its span, its clock), while the timeout and the stall are still watched.
   */
  readonly tick?: { readonly everyMs: number; readonly run: Effect.Effect<void> }
  /**
   * Receives the agent's output, synchronously, as it is logged: exactly the bytes the log gets
   * after the header and before the footer (whole lines of stdout and stderr as they were
   * interleaved; a partial line only at the end or when it outgrows the hold-back bound). They
   * keep coming when the log cannot be written any more.
   */
  readonly onOutput?: (bytes: Uint8Array) => void
}

/** What the log starts with; the agent's own output follows it. */
export const headerText = (header: ReadonlyArray<string>): string => header.map(withoutLineBreaks).join("\n") + "\n\n"

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
  /**
   * Agents of the project at `root` still running, found by their environment: after a crash,
   * those the slot file does not name (it was lost, or the daemon died before recording them).
   */
  readonly runningAgents: (root: string) => Effect.Effect<ReadonlyArray<procfs.AgentLeader>>
}

export class AgentProcess extends Context.Tag("starforge/AgentProcess")<AgentProcess, AgentProcessShape>() {
  /**
   * Real child processes, started by a spawn helper process that lives as long as the layer; the
   * kill grace comes from `AGENT_KILL_GRACE`.
   */
  static readonly layer = Layer.scoped(
    AgentProcess,
    Effect.gen(function*() {
      const config = yield* DaemonConfig
      const helper = yield* Effect.acquireRelease(
        // No more standbys than agents may run at once.
        Effect.sync(() => startSpawnHelper(procfs.isAlive, { standbys: config.settings.maxConcurrent })),
        (helper) => Effect.promise(() => helper.close())
      )
      return makeNode(config.settings.killGraceMs, config.settings.logMaxBytes, helper.spawn)
    })
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
    case "Stalled":
      return `\nFailed: ${date}\nStalled: no output for ${formatSeconds(status.afterSeconds)}\nSignal: ${status.signal}\n`
    case "ReportedError":
      return `\nFailed: ${date}\nExit code: ${status.code}\n`
  }
}

interface Started {
  readonly pid: number
  readonly exited: Deferred.Deferred<ExitStatus>
  /** Completed with the exit too, and by the watchdog (`awaitEnd`) on a timeout or stall. */
  readonly ended: Deferred.Deferred<RunEnd>
}

const spawnMessage = (command: string, error: { readonly code?: string | undefined; readonly message: string }): string => {
  switch (error.code) {
    case "ENOENT":
      return `command not found: ${command} (install it or set AGENT_COMMAND)`
    case "EACCES":
      return `permission denied running ${command} (make it executable or fix AGENT_COMMAND)`
    default:
      return `${command}: ${error.message} (check AGENT_COMMAND)`
  }
}

/** Longest partial line held back while waiting for its newline. */
const MAX_HELD_BYTES = 64 * 1024
/** How long output of an exited group may still take to arrive (only escaped processes hold it). */
const DRAIN_MS = 2_000

/**
 * Copies the child's stdout and stderr into the log (and to `onOutput`) as they arrive, whole
 * lines at a time. `drained` completes once both pipes are closed; `flush` writes what is held back.
 */
const drainInto = (
  child: { readonly stdout: Readable | null; readonly stderr: Readable | null },
  log: RotatingLogFile,
  onOutput?: (bytes: Uint8Array) => void
) => {
  let writeFailed = false
  const write = (data: Buffer) => {
    if (data.length === 0) return
    onOutput?.(data)
    if (writeFailed) return
    try {
      log.write(data)
    } catch (e) {
      // Keep draining, so the agent never blocks on a full pipe; say it once.
      writeFailed = true
      process.stderr.write(`starforge: cannot write ${log.file}: ${(e as Error).message}\n`)
    }
  }
  const held: Array<Buffer> = []
  let open = 0
  const drained = Deferred.unsafeMake<void>(undefined as never)
  for (const [index, stream] of [child.stdout, child.stderr].entries()) {
    if (!stream) continue
    open++
    held[index] = Buffer.alloc(0)
    stream.on("data", (chunk: Buffer) => {
      const data = Buffer.concat([held[index]!, chunk])
      const end = data.lastIndexOf(10) + 1
      if (end > 0) write(data.subarray(0, end))
      held[index] = end > 0 ? data.subarray(end) : data
      if (held[index]!.length > MAX_HELD_BYTES) {
        write(held[index]!)
        held[index] = Buffer.alloc(0)
      }
    })
    // The end of the data is what counts ('end'; 'close' if it broke first): a pipe end handed
    // over by the spawn helper is a two-way socket whose 'close' may wait on a shutdown of its
    // (unused) writing side.
    let ended = false
    const finish = () => {
      if (ended) return
      ended = true
      write(held[index]!)
      held[index] = Buffer.alloc(0)
      stream.destroy()
      if (--open === 0) Deferred.unsafeDone(drained, Effect.void)
    }
    stream.once("end", finish)
    stream.once("close", finish)
    // A pipe end handed over by the spawn helper may have ended (an agent with no output) before
    // it got here: its 'end' was emitted already.
    if (stream.readableEnded || stream.closed) finish()
  }
  if (open === 0) Deferred.unsafeDone(drained, Effect.void)
  return {
    drained,
    /** Writes what is held back and stops reading (pipes still held open by escaped processes). */
    flush: () => {
      for (const [index, stream] of [child.stdout, child.stderr].entries()) {
        if (held[index]) write(held[index]!)
        held[index] = Buffer.alloc(0)
        stream?.destroy()
      }
    }
  }
}

/** `atExit` is called with the agent's exit, before the run's waits are woken. */
const spawnChild = (spawnAgent: SpawnAgent, spec: AgentRunSpec, log: RotatingLogFile, atExit: (pid: number) => void) =>
  Effect.async<(Started & { readonly drain: ReturnType<typeof drainInto> }) | { readonly failed: string }>((resume) => {
    spawnAgent({ command: spec.command, args: spec.args, cwd: spec.cwd, env: spec.env }).then((spawned) => {
      if ("failed" in spawned) {
        resume(Effect.succeed({ failed: spawnMessage(spec.command, spawned.failed) }))
        return
      }
      const drain = drainInto(spawned, log, spec.onOutput)
      const exited = Deferred.unsafeMake<ExitStatus>(undefined as never)
      const ended = Deferred.unsafeMake<RunEnd>(undefined as never)
      spawned.onExit((code, signal) => {
        const status = code !== null ? ExitStatus.Exited({ code }) : ExitStatus.Signaled({ signal: signal ?? "SIGKILL" })
        spec.onExit?.(status)
        atExit(spawned.pid)
        Deferred.unsafeDone(exited, Effect.succeed(status))
        Deferred.unsafeDone(ended, Effect.succeed<RunEnd>({ _tag: "Exit", status }))
      })
      resume(Effect.succeed({ pid: spawned.pid, exited, ended, drain }))
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

/** Writes the footer; a log that cannot be written any more is reported, never fatal here. */
const writeFooter = (log: RotatingLogFile, status: ExitStatus) => {
  try {
    log.write(footerOf(status, Date.now()))
  } catch (e) {
    process.stderr.write(`starforge: cannot write ${log.file}: ${(e as Error).message}\n`)
  }
}

export type RunEnd =
  | { readonly _tag: "Exit"; readonly status: ExitStatus }
  | { readonly _tag: "Timeout" }
  | { readonly _tag: "Stall"; readonly silentMs: number }

/** One attempt followed by the watchdog (`makeWatchdog`). */
interface Watched {
  readonly spec: AgentRunSpec
  readonly startMs: number
  readonly ended: Deferred.Deferred<RunEnd>
  /** The attempt's own runtime: its ticks run there (its span, its clock). */
  readonly runtime: Runtime.Runtime<never>
  nextTickMs: number
  /** The tick running now. */
  ticking: Fiber.RuntimeFiber<void> | undefined
}

/**
 * Follows the deadlines of every running attempt: its timeout, its stall (the stall deadline
 * moves while the agent writes; it is looked at again once per `stall.afterMs` at most) and its
 * next tick (`everyMs` after the start, then after each tick ended), which it starts on the
 * attempt's runtime. One fiber sleeps until the nearest deadline of all, and only while there is
 * one: a fiber per attempt, forked at its start and interrupted at its end, was about 5% of the
 * Effect steps of a job that ends at once (100 agents).
 */
export const makeWatchdog = () => {
  const watched = new Set<Watched>()
  /** The fiber that sleeps until `untilMs`, the nearest deadline when it last looked (unset until it is forked). */
  let sleeper: { untilMs: number; fiber: Fiber.RuntimeFiber<void> | undefined } | undefined

  const deadlineOf = (w: Watched): number => {
    const { stall, tick, timeoutMs } = w.spec
    return Math.min(
      timeoutMs === undefined ? Infinity : w.startMs + timeoutMs,
      stall === undefined ? Infinity : stall.lastActivityMs() + stall.afterMs,
      tick === undefined || w.ticking !== undefined ? Infinity : w.nextTickMs
    )
  }

  const stopTick = (w: Watched) => {
    w.ticking?.unsafeInterruptAsFork(FiberId.none)
    w.ticking = undefined
  }

  const end = (w: Watched, runEnd: RunEnd) => {
    watched.delete(w)
    stopTick(w)
    Deferred.unsafeDone(w.ended, Exit.succeed(runEnd))
  }

  const startTick = (w: Watched, tick: NonNullable<AgentRunSpec["tick"]>) => {
    let done = false
    const fiber = Runtime.runFork(w.runtime)(tick.run.pipe(
      Effect.zipRight(Clock.currentTimeMillis),
      Effect.flatMap((after) =>
        Effect.sync(() => {
          done = true
          w.ticking = undefined
          w.nextTickMs = after + tick.everyMs
          if (watched.has(w)) wakeFor(w)
        })
      )
    ))
    // A tick that ended at once (the fork runs it up to its first wait) has been accounted for.
    if (!done) w.ticking = fiber
  }

  /** Ends the attempts that are due, starts the ticks that are due; the nearest deadline left. */
  const check = (now: number): number => {
    let nearest = Infinity
    for (const w of watched) {
      const { stall, tick, timeoutMs } = w.spec
      if (timeoutMs !== undefined && now - w.startMs >= timeoutMs) {
        end(w, { _tag: "Timeout" })
        continue
      }
      const silentMs = stall === undefined ? 0 : now - stall.lastActivityMs()
      if (stall !== undefined && silentMs >= stall.afterMs) {
        end(w, { _tag: "Stall", silentMs })
        continue
      }
      if (tick !== undefined && w.ticking === undefined && now >= w.nextTickMs) startTick(w, tick)
      nearest = Math.min(nearest, deadlineOf(w))
    }
    return nearest
  }

  const rounds = (self: NonNullable<typeof sleeper>): Effect.Effect<void> =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const nearest = check(now)
      if (nearest === Infinity) {
        if (sleeper === self) sleeper = undefined
        return Effect.void
      }
      self.untilMs = nearest
      return Effect.zipRight(Effect.sleep(Duration.millis(Math.max(0, nearest - now))), Effect.suspend(() => rounds(self)))
    })

  const stopSleeper = () => {
    sleeper?.fiber?.unsafeInterruptAsFork(FiberId.none)
    sleeper = undefined
  }

  /** Makes the sleeper look at `w` in time: started if there is none, restarted if it would wake too late. */
  const wakeFor = (w: Watched) => {
    if (sleeper !== undefined && sleeper.untilMs <= deadlineOf(w)) return
    stopSleeper()
    // It looks at once (the fork runs it up to its sleep), then sleeps until the nearest deadline.
    const self: NonNullable<typeof sleeper> = { untilMs: -Infinity, fiber: undefined }
    sleeper = self
    const fiber = Runtime.runFork(w.runtime)(Effect.interruptible(rounds(self)))
    if (sleeper === self) self.fiber = fiber
  }

  return {
    /** How many runs it follows, and whether its fiber is waiting for a deadline (for tests). */
    following: () => ({ runs: watched.size, sleeping: sleeper !== undefined }),
    /**
     * Waits for the end of the run: `ended` completed by the exit, or here on a timeout or a
     * stall (none of the three deadlines set: nothing to follow).
     */
    awaitEnd: (ended: Deferred.Deferred<RunEnd>, spec: AgentRunSpec, runtime: Runtime.Runtime<never>): Effect.Effect<RunEnd> => {
      if (spec.timeoutMs === undefined && spec.stall === undefined && spec.tick === undefined) return Deferred.await(ended)
      // Followed from here on, and forgotten however the wait ends: an interruption cannot come
      // between the two (a run left in the set would keep a timer until its deadline).
      return Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(Clock.currentTimeMillis, (startMs) => {
          const w: Watched = { spec, startMs, ended, runtime, nextTickMs: spec.tick === undefined ? Infinity : startMs + spec.tick.everyMs, ticking: undefined }
          watched.add(w)
          wakeFor(w)
          return restore(Deferred.await(ended)).pipe(
            Effect.ensuring(Effect.sync(() => {
              watched.delete(w)
              stopTick(w)
              // Nothing left to follow: no timer either.
              if (watched.size === 0) stopSleeper()
            }))
          )
        })
      )
    }
  }
}

/** Real child processes; agent logs rotate at `maxLogBytes` (0: never). */
export const makeNode = (killGraceMs: number, maxLogBytes = 0, spawnAgent: SpawnAgent = spawnDirect): AgentProcessShape => {
  const watchdog = makeWatchdog()
  return {
    run: (spec) =>
      Effect.scoped(
        Effect.gen(function*() {
          // Whether the log has its footer (or will have it: the spawned child's release writes it).
          let footed = false
          const log = yield* Effect.acquireRelease(
            Effect.try({
              try: () => {
                const log = new RotatingLogFile(spec.logFile, maxLogBytes)
                try {
                  log.write(headerText(spec.header))
                } catch (e) {
                  // Disk full or directory not writable: leave neither an open descriptor nor an empty log.
                  log.close()
                  fs.rmSync(spec.logFile, { force: true })
                  throw e
                }
                return log
              },
              catch: (cause) => new StorageError({ operation: "writing the agent log", path: spec.logFile, cause })
            }),
            (log, exit) =>
              Effect.sync(() => {
                // Stopped between the log's open and the spawn: the log says so instead of ending at its header.
                if (!footed && Exit.isFailure(exit)) writeFooter(log, ExitStatus.SpawnFailed({ message: "not started: the run was stopped first" }))
                log.close()
              })
          )
          if (!fs.existsSync(spec.cwd)) {
            const status = ExitStatus.SpawnFailed({ message: `working directory ${spec.cwd} does not exist` })
            footed = true
            writeFooter(log, status)
            return status
          }
          let final: ExitStatus | undefined
          // `onGone` runs once: at the exit when nothing of the agent is left (and `onSpawn` has run:
          // an agent that exits at once may be reported before it), else after the sweep.
          let gone = false
          let spawnReported = false
          const runtime = yield* Effect.runtime<never>()
          const reportGone = Effect.suspend(() => {
            if (gone || spec.onGone === undefined) return Effect.void
            gone = true
            return spec.onGone
          })
          const atExit = (pid: number) => {
            if (spawnReported && spec.onGone !== undefined && procfs.groupMembers(pid).length === 0) Runtime.runFork(runtime)(reportGone)
          }
          const spawn = spawnChild(spawnAgent, spec, log, atExit).pipe(
            Effect.withSpan("spawn", NO_STACK),
            // In the acquisition, which cannot be interrupted: from here the log gets its footer.
            Effect.tap((started) =>
              Effect.sync(() => {
                footed = true
                if ("failed" in started) writeFooter(log, ExitStatus.SpawnFailed({ message: started.failed }))
              })
            )
          )
          const started = yield* Effect.acquireRelease(spawn, (started) =>
            "failed" in started
              ? Effect.void
              // Gone at its exit: a group without members cannot get new ones, nothing to sweep (the
              // stage's span is kept, empty).
              : Effect.suspend(() => gone ? endedSpan("kill") : stopChild(started, killGraceMs).pipe(Effect.withSpan("kill", NO_STACK))).pipe(
                Effect.zipRight(Deferred.await(started.exited)),
                Effect.tap(() => reportGone),
                // The group is gone: the pipes close now, unless an escaped process still holds them.
                Effect.tap(() =>
                  Effect.flatMap(Deferred.isDone(started.drain.drained), (drained) =>
                    drained ? Effect.void : Deferred.await(started.drain.drained).pipe(Effect.interruptible, Effect.timeoutOption(DRAIN_MS)))
                ),
                Effect.flatMap((status) =>
                  Effect.sync(() => {
                    started.drain.flush()
                    writeFooter(log, final ?? status)
                  })
                ),
                Effect.catchAllDefect(() => Effect.void)
              ))
          if ("failed" in started) return ExitStatus.SpawnFailed({ message: started.failed })
          yield* spec.onSpawn({ pid: started.pid, startTime: procfs.startTimeOf(started.pid) ?? null })
          spawnReported = true
          const ended = yield* watchdog.awaitEnd(started.ended, spec, runtime).pipe(
            Effect.withSpan("run", { attributes: { pid: started.pid }, ...NO_STACK })
          )
          if (ended._tag === "Exit") {
            if (gone) yield* yieldToEventLoop
            return ended.status
          }
          // A stop that races the exit reports the exit.
          const exitedMeanwhile = yield* Deferred.poll(started.exited)
          if (Option.isSome(exitedMeanwhile)) return yield* exitedMeanwhile.value
          const reason = ended._tag === "Timeout" ? "timeout" : "stalled"
          const signal = (yield* stopChild(started, killGraceMs).pipe(Effect.withSpan("kill", { attributes: { reason }, ...NO_STACK }))) ?? "SIGTERM"
          final = ended._tag === "Timeout"
            ? ExitStatus.TimedOut({ afterSeconds: spec.timeoutMs! / 1000, signal })
            : ExitStatus.Stalled({ afterSeconds: ended.silentMs / 1000, signal })
          return final
        })
      ),

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
      }).pipe(Effect.withSpan("AgentProcess.stopOrphan", { attributes: { pid } })),

    runningAgents: (root) => Effect.sync(() => procfs.agentLeaders(root))
  }
}

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
  /**
   * The agent writes `text`: it goes to `onOutput` like the real layer's drained output, and is
   * appended to the run's log when the log's directory exists (the fake writes the header there
   * too; elsewhere nothing is written).
   */
  readonly output: (text: string) => Effect.Effect<void>
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

const writeIfPossible = (file: string, text: string) => {
  try {
    fs.appendFileSync(file, text)
  } catch {
    // The tests of the fake usually give it no real log directory.
  }
}

export const makeFake = (options: {
  /** What `stopOrphan` answers; defaults to "gone". */
  readonly orphanFate?: (pid: number, startTime: string | null) => OrphanFate
  /** What `runningAgents` finds; defaults to none. */
  readonly runningAgents?: ReadonlyArray<procfs.AgentLeader>
} = {}): Effect.Effect<FakeAgentProcess> =>
  Effect.gen(function*() {
    const started = yield* Queue.unbounded<FakeRun>()
    const runs = yield* Ref.make<ReadonlyArray<FakeRun>>([])
    const orphans = yield* Ref.make<ReadonlyArray<{ pid: number; fate: OrphanFate }>>([])
    let nextPid = 10_000
    const watchdog = makeWatchdog()
    const service: AgentProcessShape = {
      run: (spec) =>
        Effect.gen(function*() {
          const ended = yield* Deferred.make<RunEnd>()
          const interrupted = yield* Deferred.make<void>()
          const run: FakeRun = {
            spec,
            pid: nextPid++,
            finish: (status) =>
              Effect.sync(() => spec.onExit?.(status)).pipe(Effect.zipRight(Deferred.succeed(ended, { _tag: "Exit", status })), Effect.asVoid),
            interrupted,
            output: (text) =>
              Effect.sync(() => {
                spec.onOutput?.(Buffer.from(text))
                writeIfPossible(spec.logFile, text)
              })
          }
          writeIfPossible(spec.logFile, headerText(spec.header))
          yield* spec.onSpawn({ pid: run.pid, startTime: "1" })
          yield* Ref.update(runs, (all) => [...all, run])
          yield* Queue.offer(started, run)
          const end = yield* Effect.flatMap(Effect.runtime<never>(), (runtime) => watchdog.awaitEnd(ended, spec, runtime)).pipe(
            Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined))
          )
          if (end._tag === "Exit") return end.status
          // Timed out or stalled: the fake "stops" the run the way the real layer would.
          yield* Deferred.succeed(interrupted, undefined)
          return end._tag === "Timeout"
            ? ExitStatus.TimedOut({ afterSeconds: spec.timeoutMs! / 1000, signal: "SIGTERM" })
            : ExitStatus.Stalled({ afterSeconds: end.silentMs / 1000, signal: "SIGTERM" })
        }),
      stopOrphan: (pid, startTime) =>
        Effect.gen(function*() {
          const fate = options.orphanFate?.(pid, startTime) ?? "gone"
          yield* Ref.update(orphans, (all) => [...all, { pid, fate }])
          return fate
        }),
      runningAgents: () => Effect.succeed(options.runningAgents ?? [])
    }
    return {
      layer: Layer.succeed(AgentProcess, service),
      started,
      runs: Ref.get(runs),
      orphans: Ref.get(orphans)
    }
  })
