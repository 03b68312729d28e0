/**
 * Starts agents. An agent is a scoped resource: `spawn` returns its handle inside a `Scope`, and
 * closing the scope runs the kill ladder on its process group (nothing happens if the group is
 * gone already). The child leads its own process group and session, its stdin is `/dev/null`
 * (a CLI that reads stdin sees EOF instead of hanging), its stdout and stderr are pipes read from
 * the spawn on (`pipes.ts`).
 */
import { spawn as nodeSpawn } from "node:child_process"
import { Context, Data, Deferred, Duration, Effect, Exit, Fiber, Layer, Mailbox, Option, Queue, Ref, type Scope, type Stream } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { ExitStatus } from "../domain/Outcome.js"
import { ProcessTable } from "../platform/ProcessTable.js"
import { type StopSignal, stopGroup } from "./KillLadder.js"
import { readPipes } from "./pipes.js"

export interface SpawnRequest {
  readonly command: string
  readonly args: ReadonlyArray<string>
  readonly cwd: string
  readonly env: Readonly<Record<string, string>>
}

/** The command could not be started; the message says what to do about it. */
export class SpawnError extends Data.TaggedError("SpawnError")<{ readonly message: string }> {}

/** How the process ended: `Exited` or `Signaled`. */
export type ProcessExit = ExitStatus

export interface SpawnedProcess {
  readonly pid: number
  /** Its start time in the process table (tells it from a later process with the same pid). */
  readonly startTime: string | null
  /** stdout and stderr merged, whole lines; ends once both pipes are closed, or at `endOutput`. */
  readonly output: Stream.Stream<Uint8Array>
  /** Ends `output` now, with what it held back: for pipes that processes outside the group hold open. */
  readonly endOutput: Effect.Effect<void>
  /** Waits for the exit. */
  readonly exit: Effect.Effect<ProcessExit>
  /** The exit if it happened. */
  readonly exited: Effect.Effect<Option.Option<ProcessExit>>
  /**
   * Runs the kill ladder on the group, once (later calls get the first one's answer): the
   * signal that ended it, undefined when nothing was left to signal. Closing the scope runs it.
   */
  readonly stop: Effect.Effect<StopSignal | undefined>
}

export interface SpawnerShape {
  /** How agents are started, for the daemon log's CONFIG line: "direct", "helper"... */
  readonly name?: string
  readonly spawn: (request: SpawnRequest) => Effect.Effect<SpawnedProcess, SpawnError, Scope.Scope>
}

export class Spawner extends Context.Tag("starforge/Spawner")<Spawner, SpawnerShape>() {
  /** Children of the daemon itself (`child_process.spawn`); the grace from `AGENT_KILL_GRACE`. */
  static readonly direct: Layer.Layer<Spawner, never, DaemonConfig | ProcessTable> = Layer.effect(
    Spawner,
    Effect.gen(function*() {
      const { settings } = yield* DaemonConfig
      const table = yield* ProcessTable
      return makeDirect(table, Duration.millis(settings.killGraceMs))
    })
  )
}

/** What a failed spawn tells the user. */
export const spawnMessage = (command: string, error: { readonly code?: string | undefined; readonly message: string }): string => {
  switch (error.code) {
    case "ENOENT":
      return `command not found: ${command} (install it or set AGENT_COMMAND)`
    case "EACCES":
      return `permission denied running ${command} (make it executable or fix AGENT_COMMAND)`
    default:
      return `${command}: ${error.message} (check AGENT_COMMAND)`
  }
}

const started = (request: SpawnRequest) =>
  Effect.async<ReturnType<typeof nodeSpawn>, SpawnError>((resume) => {
    let child: ReturnType<typeof nodeSpawn>
    try {
      child = nodeSpawn(request.command, [...request.args], {
        cwd: request.cwd,
        env: request.env,
        detached: true,
        stdio: ["ignore", "pipe", "pipe"]
      })
    } catch (e) {
      resume(Effect.fail(new SpawnError({ message: spawnMessage(request.command, e as Error) })))
      return
    }
    const onError = (error: NodeJS.ErrnoException) => {
      child.off("spawn", onSpawn)
      resume(Effect.fail(new SpawnError({ message: spawnMessage(request.command, error) })))
    }
    const onSpawn = () => {
      child.off("error", onError)
      resume(Effect.succeed(child))
    }
    child.once("error", onError)
    child.once("spawn", onSpawn)
  })

const exitOf = (child: ReturnType<typeof nodeSpawn>): Option.Option<ProcessExit> =>
  child.exitCode !== null
    ? Option.some(ExitStatus.Exited({ code: child.exitCode }))
    : child.signalCode !== null
    ? Option.some(ExitStatus.Signaled({ signal: child.signalCode }))
    : Option.none()

export const makeDirect = (table: ProcessTable["Type"], grace: Duration.Duration): SpawnerShape => ({
  name: "direct",
  spawn: (request) =>
    // Acquired whole or not at all: a child never runs without its release.
    Effect.acquireRelease(
      Effect.gen(function*() {
        const child = yield* started(request)
        const pid = child.pid!
        const pipes = readPipes([child.stdout, child.stderr])
        const stop = yield* Effect.cached(stopGroup(pid, grace).pipe(Effect.provideService(ProcessTable, table)))
        const exit = Effect.async<ProcessExit>((resume) => {
          const now = exitOf(child)
          if (Option.isSome(now)) return resume(Effect.succeed(now.value))
          const onExit = () => resume(Effect.succeed(Option.getOrThrow(exitOf(child))))
          child.once("exit", onExit)
          return Effect.sync(() => void child.off("exit", onExit))
        })
        return {
          pid,
          startTime: (yield* table.startTimeOf(pid)) ?? null,
          output: pipes.output,
          endOutput: pipes.end,
          exit,
          exited: Effect.sync(() => exitOf(child)),
          stop
        } satisfies SpawnedProcess
      }),
      (spawned) => spawned.stop
    )
})

/**
 * Agents that are Effects, not processes (for an embedding program): `run` gets the request and a
 * `write` for its output; the exit code it returns ends the attempt, a defect is logged and ends it
 * with code 70, and a stop interrupts it. Such an agent has no process of its own: it reports the
 * embedding program's pid with no start time, which no later daemon ever signals.
 */
export const fromEffect = (
  run: (request: SpawnRequest, write: (text: string) => Effect.Effect<void>) => Effect.Effect<number>
): Layer.Layer<Spawner> =>
  Layer.succeed(Spawner, {
    name: "effect",
    spawn: (request) =>
      Effect.acquireRelease(
        Effect.gen(function*() {
          const output = yield* Mailbox.make<Uint8Array>()
          const write = (text: string) => output.offer(Buffer.from(text)).pipe(Effect.asVoid)
          const fiber = yield* run(request, write).pipe(
            Effect.map((code): ProcessExit => ExitStatus.Exited({ code })),
            Effect.catchAllDefect((defect) => Effect.as(Effect.logError("the agent failed", defect), ExitStatus.Exited({ code: 70 }))),
            Effect.ensuring(output.end),
            Effect.forkScoped
          )
          const exitOf = (exit: Exit.Exit<ProcessExit>): ProcessExit =>
            Exit.isSuccess(exit) ? exit.value : ExitStatus.Signaled({ signal: "SIGTERM" })
          return {
            pid: process.pid,
            startTime: null,
            output: Mailbox.toStream(output),
            endOutput: Effect.asVoid(output.end),
            exit: Effect.map(Fiber.await(fiber), exitOf),
            exited: Effect.map(Fiber.poll(fiber), Option.map(exitOf)),
            stop: Effect.flatMap(Fiber.poll(fiber), (done) =>
              Option.isSome(done) ? Effect.succeed(undefined) : Effect.as(Fiber.interrupt(fiber), "SIGTERM" as const))
          } satisfies SpawnedProcess
        }),
        (spawned) => spawned.stop
      )
  })

// ---------------------------------------------------------------------------------------------
// Test double: processes that write and end when the test says so.
// ---------------------------------------------------------------------------------------------

/** One process of the fake, as the test sees it. */
export interface FakeProcess {
  readonly request: SpawnRequest
  readonly pid: number
  /** The agent it was started for (`STARFORGE_AGENT_ID` in its environment). */
  readonly agent: string
  /** The process writes `text` (its output ends with its exit). */
  readonly output: (text: string) => Effect.Effect<void>
  /** The process exits with this status. */
  readonly finish: (status: ProcessExit) => Effect.Effect<void>
  /** Completes when the daemon stopped it (timeout, stall, shutdown). */
  readonly interrupted: Deferred.Deferred<void>
}

export interface FakeSpawner {
  readonly layer: Layer.Layer<Spawner>
  /** Processes in the order they started. */
  readonly started: Queue.Dequeue<FakeProcess>
  /** Every process so far. */
  readonly runs: Effect.Effect<ReadonlyArray<FakeProcess>>
}

export const makeFake: Effect.Effect<FakeSpawner> = Effect.gen(function*() {
  const started = yield* Queue.unbounded<FakeProcess>()
  const runs = yield* Ref.make<ReadonlyArray<FakeProcess>>([])
  const pids = yield* Ref.make(10_000)
  const spawn = (request: SpawnRequest) =>
    Effect.acquireRelease(
      Effect.gen(function*() {
        const pid = yield* Ref.getAndUpdate(pids, (n) => n + 1)
        const output = yield* Mailbox.make<Uint8Array>()
        const exit = yield* Deferred.make<ProcessExit>()
        const interrupted = yield* Deferred.make<void>()
        const finish = (status: ProcessExit) => Effect.zipRight(output.end, Deferred.succeed(exit, status)).pipe(Effect.asVoid)
        const stop = yield* Effect.cached(
          Effect.flatMap(Deferred.isDone(exit), (done) =>
            done
              ? Effect.succeed(undefined)
              : Deferred.succeed(interrupted, undefined).pipe(
                Effect.zipRight(finish(ExitStatus.Signaled({ signal: "SIGTERM" }))),
                Effect.as("SIGTERM" as const)
              ))
        )
        const run: FakeProcess = {
          request,
          pid,
          agent: request.env.STARFORGE_AGENT_ID ?? "",
          output: (text) => output.offer(Buffer.from(text)).pipe(Effect.asVoid),
          finish,
          interrupted
        }
        yield* Ref.update(runs, (all) => [...all, run])
        yield* Queue.offer(started, run)
        return {
          pid,
          startTime: "1",
          output: Mailbox.toStream(output),
          endOutput: Effect.asVoid(output.end),
          exit: Deferred.await(exit),
          exited: Deferred.poll(exit).pipe(Effect.flatMap(Option.match({ onNone: () => Effect.succeedNone, onSome: Effect.asSome }))),
          stop
        } satisfies SpawnedProcess
      }),
      (spawned) => spawned.stop
    )
  return { layer: Layer.succeed(Spawner, { spawn }), started, runs: Ref.get(runs) }
})
