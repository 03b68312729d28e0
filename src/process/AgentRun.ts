/**
 * One attempt of one agent, from its log's header to its footer. The agent is started through the
 * `Spawner`; its output goes into its log (which rotates at `LOG_MAX_SIZE_MB`: the daemon is its
 * only writer) and into an output watch; its exit is awaited against the timeout and the stall
 * watch. Closing the scope of `start` stops whatever is left of the agent's process group, writes
 * the footer and closes the log, however the attempt ended.
 */
import * as fs from "node:fs"
import { Clock, Data, Duration, Effect, Either, Fiber, Option, Ref, type Scope, Stream } from "effect"
import { StorageError } from "../domain/errors.js"
import { ExitStatus, formatMegabytes, formatSeconds } from "../domain/Outcome.js"
import { withoutLineBreaks } from "../domain/text.js"
import { isoSeconds } from "../domain/time.js"
import { RotatingLogFile } from "../logs/LogFile.js"
import { NO_STACK } from "../observability/Tracing.js"
import { type OutputWatch, watchOutput } from "../stream/AgentOutput.js"
import type { Progress } from "../stream/StreamJson.js"
import type { StopSignal } from "./KillLadder.js"
import { type SpawnedProcess, Spawner, type SpawnRequest } from "./Spawner.js"

export interface AgentRunSpec {
  readonly request: SpawnRequest
  readonly logFile: string
  /** Written at the top of the log (`Agent:`, `Trigger:`, `Started:` lines). */
  readonly header: ReadonlyArray<string>
  /** The log rotates past this size (0: never). */
  readonly maxLogBytes: number
  /** The agent is stopped after this long (`TimedOut`); 0 for no limit. */
  readonly timeoutMs: number
  /** The agent is stopped when silent this long (`Stalled`); 0 for no limit. */
  readonly stallMs: number
  /** Receives the agent's progress as its stream-json output changes it (coalesced). */
  readonly onProgress?: (progress: Progress) => Effect.Effect<void>
  /**
   * Succeeds once the agent started as `pid` must be stopped for the memory its processes use
   * (`OverMemory`); without it, memory is not watched.
   */
  readonly overMemory?: (pid: number) => Effect.Effect<MemoryOverrun>
  /** Succeeds once the agent has gone past its turn limit (`OverBudget`); without it, turns are not limited. */
  readonly overTurns?: Effect.Effect<TurnsOverrun>
}

/** The turns an agent took, against the limit it went past. */
export interface TurnsOverrun {
  readonly turns: number
  readonly limit: number
}

/** What an agent used, against the limit it went over. */
export interface MemoryOverrun {
  readonly rssBytes: number
  readonly limitBytes: number
}

/** A started agent: its identity, its output so far, and the end of the attempt. */
export interface Running {
  readonly _tag: "Running"
  readonly pid: number
  readonly startTime: string | null
  readonly watch: OutputWatch
  /** The exit, if the agent has exited (known before `end` returns). */
  readonly exited: Effect.Effect<Option.Option<ExitStatus>>
  /** Waits for the exit (or stops the agent on a timeout or stall), then writes the footer. */
  readonly end: Effect.Effect<ExitStatus>
}

/** The agent could not be started; the log says why in its footer. */
export interface NotStarted {
  readonly _tag: "NotStarted"
  readonly status: ExitStatus
}

/** What the log starts with; the agent's own output follows it. */
export const headerText = (header: ReadonlyArray<string>): string => header.map(withoutLineBreaks).join("\n") + "\n\n"

export const footerText = (status: ExitStatus, now: number): string => {
  const date = isoSeconds(now)
  switch (status._tag) {
    case "Exited":
      return status.code === 0 ? `\nCompleted: ${date}\nExit code: 0\n` : `\nFailed: ${date}\nExit code: ${status.code}\n`
    case "Signaled":
      return `\nFailed: ${date}\nSignal: ${status.signal}\n`
    case "SpawnFailed":
      return `\nFailed: ${date}\nError: ${status.message}\n`
    case "TimedOut":
      return `\nFailed: ${date}\nTimed out after ${formatSeconds(status.afterSeconds)}\nSignal: ${status.signal}\n`
    case "Stalled":
      return `\nFailed: ${date}\nStalled: no output for ${formatSeconds(status.afterSeconds)}\nSignal: ${status.signal}\n`
    case "OverMemory":
      return `\nFailed: ${date}\nMemory: ${formatMegabytes(status.rssBytes)}, over the limit of ${formatMegabytes(status.limitBytes)}\nSignal: ${status.signal}\n`
    case "OverBudget":
      return `\nFailed: ${date}\nTurns: ${status.turns}, over the limit of ${status.limit}\nSignal: ${status.signal}\n`
    case "ReportedError":
      return `\nFailed: ${date}\nExit code: ${status.code}\n`
  }
}

/** How long output may still arrive once the group is gone (only an escaped process holds it). */
const DRAIN = Duration.seconds(2)

class TimedOut extends Data.TaggedError("TimedOut")<{}> {}
class Stalled extends Data.TaggedError("Stalled")<{ readonly silentMs: number }> {}
class OverLimit extends Data.TaggedError("OverLimit")<{ readonly overrun: MemoryOverrun }> {}
class OverTurns extends Data.TaggedError("OverTurns")<{ readonly overrun: TurnsOverrun }> {}

/** The agent's log, open for the attempt; a write that fails is reported once, never fatal. */
const openLog = (spec: AgentRunSpec) =>
  Effect.gen(function*() {
    const file = yield* Effect.acquireRelease(
      Effect.try({
        try: () => {
          const log = new RotatingLogFile(spec.logFile, spec.maxLogBytes)
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
      (log) => Effect.sync(() => log.close())
    )
    const failed = yield* Ref.make(false)
    const footed = yield* Ref.make(false)
    const write = (data: string | Uint8Array) =>
      Effect.try(() => file.write(data)).pipe(
        Effect.catchAll((error) =>
          Effect.flatMap(Ref.getAndSet(failed, true), (before) =>
            before ? Effect.void : Effect.logWarning(`cannot write ${spec.logFile}: ${(error.error as Error).message}`)))
      )
    const footer = (status: ExitStatus) =>
      Effect.flatMap(Ref.getAndSet(footed, true), (before) =>
        before ? Effect.void : Effect.flatMap(Clock.currentTimeMillis, (now) => write(footerText(status, now))))
    // Stopped between the log's open and the spawn: the log says so instead of ending at its header.
    yield* Effect.addFinalizer((exit) =>
      exit._tag === "Failure" ? footer(ExitStatus.SpawnFailed({ message: "not started: the run was stopped first" })) : Effect.void
    )
    return { write, footer }
  })

/** The log says the agent was not started, and why (a `SpawnFailed` footer). */
const notStartedIn = (log: Effect.Effect.Success<ReturnType<typeof openLog>>, message: string) => {
  const status = ExitStatus.SpawnFailed({ message })
  return Effect.as(log.footer(status), { _tag: "NotStarted", status } as const)
}

/**
 * Ends an attempt before its agent is started, for a reason found before the spawn: its log has
 * the header and a `SpawnFailed` footer, as for a command that cannot start.
 */
export const notStarted = (spec: AgentRunSpec, message: string): Effect.Effect<NotStarted, StorageError> =>
  Effect.scoped(Effect.flatMap(openLog(spec), (log) => notStartedIn(log, message)))

/** Fails with `Stalled` once the agent has written nothing for `afterMs`. */
const stallWatch = (watch: OutputWatch, afterMs: number): Effect.Effect<never, Stalled> =>
  Effect.flatMap(Effect.zip(Clock.currentTimeMillis, watch.lastActivityMs), ([now, last]) =>
    now - last >= afterMs
      ? Effect.fail(new Stalled({ silentMs: now - last }))
      : Effect.zipRight(Effect.sleep(Duration.millis(afterMs - (now - last))), Effect.suspend(() => stallWatch(watch, afterMs))))

/**
 * Starts the attempt: writes the header and starts the agent. A command that cannot start (or a
 * missing working directory) is `NotStarted` with a `SpawnFailed` footer; only a log that cannot
 * be written fails.
 */
export const start = (spec: AgentRunSpec): Effect.Effect<Running | NotStarted, StorageError, Spawner | Scope.Scope> =>
  Effect.gen(function*() {
    const log = yield* openLog(spec)
    const notStarted = (message: string) => notStartedIn(log, message)
    if (!fs.existsSync(spec.request.cwd)) return yield* notStarted(`working directory ${spec.request.cwd} does not exist`)
    const spawner = yield* Spawner
    const watch = yield* watchOutput(spec.onProgress === undefined ? {} : { onProgress: spec.onProgress })
    // The spawn and the finalizer that ends the attempt in one uninterruptible step: a run stopped
    // while its agent starts still logs the agent's output and how it ended, not "not started".
    const started = yield* Effect.uninterruptible(Effect.gen(function*() {
      const spawned = yield* spawner.spawn(spec.request).pipe(Effect.withSpan("spawn", NO_STACK), Effect.either)
      if (Either.isLeft(spawned)) return Either.left(spawned.left.message)
      const agent = spawned.right
      const pump = yield* agent.output.pipe(
        Stream.runForEach((bytes) => Effect.zipRight(log.write(bytes), watch.push(bytes))),
        // Forked in an uninterruptible step, whose flags it inherits: the scope must be able to end it.
        Effect.interruptible,
        Effect.forkScoped
      )
      // Set when the daemon stopped the agent (timeout, stall): the footer says why.
      const cutShort = yield* Ref.make<Option.Option<ExitStatus>>(Option.none())
      const finish = yield* Effect.cached(Effect.gen(function*() {
        yield* agent.stop.pipe(Effect.withSpan("kill", NO_STACK))
        const exit = yield* agent.exit
        // The group is gone: its pipes close now, unless an escaped process still holds them.
        yield* Fiber.await(pump).pipe(Effect.interruptible, Effect.timeoutOption(DRAIN))
        yield* agent.endOutput
        yield* Fiber.await(pump)
        yield* log.footer(Option.getOrElse(yield* Ref.get(cutShort), () => exit))
      }))
      yield* Effect.addFinalizer(() => finish)
      return Either.right({ agent, cutShort, finish })
    }))
    if (Either.isLeft(started)) return yield* notStarted(started.left)
    const { agent, cutShort, finish } = started.right
    return {
      _tag: "Running",
      pid: agent.pid,
      startTime: agent.startTime,
      watch,
      exited: agent.exited,
      end: awaitEnd(spec, agent, watch, (status) => Ref.set(cutShort, Option.some(status))).pipe(Effect.zipLeft(finish))
    } satisfies Running
  })

/** The exit, raced against the stall watch and bounded by the timeout; a cut-short agent is stopped. */
const awaitEnd = (
  spec: AgentRunSpec,
  agent: SpawnedProcess,
  watch: OutputWatch,
  record: (status: ExitStatus) => Effect.Effect<void>
): Effect.Effect<ExitStatus> => {
  const stop = (reason: string, statusOf: (signal: StopSignal) => ExitStatus) =>
    Effect.gen(function*() {
      // A stop that races the exit reports the exit.
      const exited = yield* agent.exited
      if (Option.isSome(exited)) return exited.value
      const signal = (yield* agent.stop.pipe(Effect.withSpan("kill", { attributes: { reason }, ...NO_STACK }))) ?? "SIGTERM"
      const status = statusOf(signal)
      yield* record(status)
      return status
    })
  const stalled = spec.stallMs > 0 ? Effect.raceFirst(agent.exit, stallWatch(watch, spec.stallMs)) : agent.exit
  const memoryWatched = spec.overMemory === undefined
    ? stalled
    : Effect.raceFirst(stalled, Effect.flatMap(spec.overMemory(agent.pid), (overrun) => new OverLimit({ overrun })))
  const watched = spec.overTurns === undefined
    ? memoryWatched
    : Effect.raceFirst(memoryWatched, Effect.flatMap(spec.overTurns, (overrun) => new OverTurns({ overrun })))
  const timed = spec.timeoutMs > 0
    ? Effect.timeoutFail(watched, { duration: Duration.millis(spec.timeoutMs), onTimeout: () => new TimedOut() })
    : watched
  return timed.pipe(
    Effect.withSpan("run", { attributes: { pid: agent.pid }, ...NO_STACK }),
    Effect.catchTags({
      TimedOut: () => stop("timeout", (signal) => ExitStatus.TimedOut({ afterSeconds: spec.timeoutMs / 1000, signal })),
      Stalled: (stalled) => stop("stalled", (signal) => ExitStatus.Stalled({ afterSeconds: stalled.silentMs / 1000, signal })),
      OverLimit: ({ overrun }) => stop("memory", (signal) => ExitStatus.OverMemory({ ...overrun, signal })),
      OverTurns: ({ overrun }) => stop("budget", (signal) => ExitStatus.OverBudget({ ...overrun, signal }))
    })
  )
}
