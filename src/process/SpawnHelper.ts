/**
 * Agents started by the spawn helper (`spawnHelperMain.ts`, bundled as dist/spawn-helper.cjs)
 * instead of by the daemon itself. Node's `spawn` forks, and a fork copies the page tables of
 * the forking process: it holds up the daemon's main thread the longer the bigger the daemon is,
 * and a bare Node process started once is small (bench B4 compares both). The handles are those of `Spawner.direct`: the helper
 * forwards each agent's pid, output (whole lines of one pipe at a time), the end of its pipes and
 * its exit as frames (`helperFrames.ts`); the daemon stops agents itself (the kill ladder on the
 * group, through the process table), and closing an agent's scope stops it.
 *
 * If the helper cannot start, agents are spawned directly (`makeDirect`). If it dies, a new one is
 * started (agents are spawned directly until it runs). The dead helper's agents lose the rest of
 * their output and nobody can report their exit: each is stopped (its group, with the kill ladder)
 * and ends as `UNKNOWN_EXIT`, a failed attempt, retried; no status is invented. A request it had not
 * answered is spawned again directly (once), after whatever it may have started for it is stopped:
 * found by the attempt's token in its environment (`STARFORGE_ATTEMPT_ID`), and forks that had not
 * yet left the helper's process group go with the group.
 */
import { type ChildProcess, spawn as nodeSpawn } from "node:child_process"
import * as fs from "node:fs"
import { Clock, Deferred, Duration, Effect, Either, ExecutionStrategy, Exit, FiberSet, Layer, Mailbox, Option, Ref, Scope, Stream } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { ConfigInvalid } from "../domain/errors.js"
import { ExitStatus } from "../domain/Outcome.js"
import { pollUntil } from "../io/pollUntil.js"
import { ATTEMPT_TOKEN_VARIABLE, ProcessTable } from "../platform/ProcessTable.js"
import { encode, Kind, makeDecoder, type Reply, type Request } from "./helperFrames.js"
import { stopGroup, stopOrphan, stopProcesses } from "./KillLadder.js"
import { makeDirect, type SpawnedProcess, SpawnError, Spawner, type SpawnerShape, spawnMessage, type SpawnRequest } from "./Spawner.js"

/**
 * The exit of an agent whose helper died before reporting it. Nobody reaped it but init, so its
 * status is lost; it reads "was killed by signal unknown (the spawn helper died)" in the logs and
 * the history, as the earlier helper reported it, and counts as a failed attempt (`signal`).
 */
export const UNKNOWN_EXIT = ExitStatus.Signaled({ signal: "unknown (the spawn helper died)" })

/**
 * The helper's Node options: the less memory it has, the faster each fork. No V8 worker threads
 * (and their stacks), a young generation of 2 × 1 MiB (it allocates little).
 */
const HELPER_NODE_OPTIONS = ["--single-threaded", "--max-semi-space-size=1"]

/** How long a helper whose stdin was closed may take to exit before it is killed (it takes milliseconds). */
const HELPER_EXIT_WAIT = Duration.seconds(2)
/** How long `endOutput` waits for the helper to pass on what it held back and close the pipes. */
const CLOSE_WAIT = Duration.seconds(2)
/** How often, and how long at most, an agent whose helper died is looked for in the process table. */
const ORPHAN_POLL = Duration.millis(250)
const ORPHAN_WAIT = Duration.hours(24)
/** How long after a first look the agent of a request its dying helper never answered is looked for again. */
const UNREPORTED_SETTLE = Duration.millis(100)
/** A helper that dies this soon after its start, `MAX_QUICK_DEATHS` times in a row, is not started again. */
const QUICK_DEATH = Duration.seconds(1)
const MAX_QUICK_DEATHS = 10

/** The helper's answer to a spawn. */
type Answer =
  | { readonly _tag: "Spawned"; readonly pid: number }
  | { readonly _tag: "Failed"; readonly code: string | undefined; readonly message: string }
  /** The helper died first: the agent is spawned directly. */
  | { readonly _tag: "HelperGone" }

/** A request sent to the helper, until its agent has exited and its output has ended. */
interface Agent {
  readonly request: SpawnRequest
  readonly answer: Deferred.Deferred<Answer>
  /** Completed by the spawn once it has read the agent's start time (for the orphan watch). */
  readonly startTime: Deferred.Deferred<string | null>
  readonly output: Mailbox.Mailbox<Uint8Array>
  readonly outputEnded: Deferred.Deferred<void>
  readonly exit: Deferred.Deferred<ExitStatus>
}

/** The agents of a running helper by request id; `Gone` once it died or was closed. */
type State =
  | { readonly _tag: "Running"; readonly agents: Map<number, Agent>; readonly nextId: number }
  | { readonly _tag: "Gone" }

export interface Helper {
  readonly spawner: SpawnerShape
  /** The helper's pid while it runs, for diagnostics and tests. */
  readonly pid: Effect.Effect<Option.Option<number>>
}

const exitStatusOf = (code: number | null, signal: string | null): ExitStatus =>
  code !== null ? ExitStatus.Exited({ code }) : ExitStatus.Signaled({ signal: signal ?? "unknown" })

const hasExited = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null

/** Waits for the helper's exit. */
const helperExit = (child: ChildProcess) =>
  Effect.async<void>((resume) => {
    if (hasExited(child)) return resume(Effect.void)
    const onExit = () => resume(Effect.void)
    child.once("exit", onExit)
    return Effect.sync(() => void child.off("exit", onExit))
  })

/** Starts the helper; `undefined` when Node cannot even be started. */
const startHelper = (file: string) =>
  Effect.async<ChildProcess | undefined>((resume) => {
    let child: ChildProcess
    try {
      child = nodeSpawn(process.execPath, [...HELPER_NODE_OPTIONS, file], { stdio: ["pipe", "pipe", "inherit"], detached: true })
    } catch {
      return resume(Effect.succeed(undefined))
    }
    // Written to after its death until that is seen: the failed writes are not news.
    child.stdin!.on("error", () => {})
    const onError = () => {
      child.off("spawn", onSpawn)
      resume(Effect.succeed(undefined))
    }
    const onSpawn = () => {
      child.off("error", onError)
      resume(Effect.succeed(child))
    }
    child.once("error", onError)
    child.once("spawn", onSpawn)
  })

/** The helper's stdout as it is read; ends when it closes. */
const chunksOf = (child: ChildProcess) =>
  Stream.async<Buffer>((emit) => {
    const stdout = child.stdout!
    stdout.on("data", (chunk: Buffer) => void emit.single(chunk))
    stdout.once("end", () => void emit.end())
    stdout.once("close", () => void emit.end())
    stdout.once("error", () => void emit.end())
  }, "unbounded")

/** One helper process, from its start to its death. */
interface Generation {
  readonly pid: number
  readonly startedMs: number
  /** Set when its scope is closed: its end is then no death. */
  readonly released: Ref.Ref<boolean>
  /** The spawn through this helper; none when it is gone (the caller spawns directly). */
  readonly viaHelper: (request: SpawnRequest) => Effect.Effect<Option.Option<SpawnedProcess>, SpawnError, Scope.Scope>
  /** Completes once the helper died and each of its agents and requests was seen to. */
  readonly gone: Deferred.Deferred<void>
}

/**
 * A helper started from `file` for the current scope, with a spawner that uses it while it runs
 * and spawns directly otherwise. A helper that dies is replaced by a new one (directly while
 * none runs; for good after `MAX_QUICK_DEATHS` deaths in a row each within `QUICK_DEATH` of its
 * start). Closing the scope closes the helper's stdin, waits for its exit (SIGKILL after
 * `HELPER_EXIT_WAIT`); agents still running are not touched (their own scopes stop them).
 */
export const make = (file: string): Effect.Effect<Helper, never, Scope.Scope | DaemonConfig | ProcessTable> =>
  Effect.gen(function*() {
    const { settings } = yield* DaemonConfig
    const table = yield* ProcessTable
    const grace = Duration.millis(settings.killGraceMs)
    const direct = makeDirect(table, grace)
    const first = yield* startHelper(file)
    if (first === undefined) {
      yield* Effect.logWarning(`the spawn helper (${file}) cannot be started: agents are spawned by the daemon directly`)
      return { spawner: { ...direct, name: "direct (the spawn helper did not start)" }, pid: Effect.succeedNone }
    }
    const scope = yield* Effect.scope
    const closing = yield* Ref.make(false)
    /** What is done about the agents and requests of dead helpers: it outlives their generations. */
    const aftermath = yield* FiberSet.make()
    const withTable = <A>(effect: Effect.Effect<A, never, ProcessTable>) => Effect.provideService(effect, ProcessTable, table)

    /** An agent whose helper died as the daemon closed: its end is seen in the process table. */
    const watchOrphan = (agent: Agent, pid: number) =>
      Effect.gen(function*() {
        const startTime = yield* Deferred.await(agent.startTime)
        yield* pollUntil(Effect.map(table.identify(pid, startTime), (identity) => identity !== "same"), ORPHAN_WAIT, ORPHAN_POLL)
        yield* Deferred.succeed(agent.exit, UNKNOWN_EXIT)
      })

    /**
     * An agent whose helper died while the daemon runs: nobody can report its exit any more, so it
     * is stopped (its group, with the kill ladder) and its attempt ends as `UNKNOWN_EXIT`, a
     * failure, retried like any other.
     */
    const stopOrphaned = (agent: Agent, pid: number, helperPid: number) =>
      Effect.gen(function*() {
        const startTime = yield* Deferred.await(agent.startTime)
        const fate = yield* withTable(stopOrphan(pid, startTime, grace))
        yield* Effect.logWarning(
          fate === "stopped"
            ? `agent PID ${pid} was stopped: its spawn helper (PID ${helperPid}) died, so its exit status is unknown (the attempt failed)`
            : `agent PID ${pid} ended when its spawn helper (PID ${helperPid}) died: its exit status is unknown (the attempt failed)`
        )
        yield* Deferred.succeed(agent.exit, UNKNOWN_EXIT)
      })

    /** Stops whatever carries the request's attempt token: the agent of a spawn its helper died before reporting. */
    const stopUnreported = (request: SpawnRequest, helperPid: number) => {
      const token = request.env[ATTEMPT_TOKEN_VARIABLE]
      const root = request.env["STARFORGE_PROJECT_ROOT"]
      if (token === undefined || root === undefined) return Effect.void
      const look = Effect.gen(function*() {
        const left = (yield* table.attemptProcesses(root)).filter((p) => p.token === token)
        if (left.length === 0) return
        yield* withTable(stopProcesses(left, grace))
        yield* Effect.logWarning(
          `stopped PID ${left.map((p) => p.pid).join(", ")}, started by the spawn helper (PID ${helperPid}) as it died and never reported: the agent is started again`
        )
      })
      // Twice: a child forked just before the helper died carries the token only once it has exec'd.
      return Effect.zipRight(look, Effect.delay(look, UNREPORTED_SETTLE))
    }

    /** A helper that runs as `child`, in the current scope. */
    const generation = (child: ChildProcess) =>
      Effect.gen(function*() {
        const helperPid = child.pid!
        const startedMs = yield* Clock.currentTimeMillis
        const gone = yield* Deferred.make<void>()
        const state = yield* Ref.make<State>({ _tag: "Running", agents: new Map(), nextId: 1 })
        const released = yield* Ref.make(false)

        const send = (frame: Request) => Effect.sync(() => void child.stdin!.write(encode(frame)))
        const forget = (id: number) =>
          Ref.update(state, (s) => {
            if (s._tag === "Running") s.agents.delete(id)
            return s
          })

        const route = (frame: Reply) =>
          Effect.gen(function*() {
            const current = yield* Ref.get(state)
            const agent = current._tag === "Running" ? current.agents.get(frame.id) : undefined
            if (agent === undefined) return
            switch (frame.kind) {
              case Kind.Spawned:
                return yield* Deferred.succeed(agent.answer, { _tag: "Spawned", pid: frame.pid })
              case Kind.SpawnFailed:
                yield* forget(frame.id)
                return yield* Deferred.succeed(agent.answer, { _tag: "Failed", code: frame.code, message: frame.message })
              case Kind.Output:
                return yield* agent.output.offer(frame.bytes)
              case Kind.OutputEnd:
                yield* agent.output.end
                yield* Deferred.succeed(agent.outputEnded, undefined)
                if (yield* Deferred.isDone(agent.exit)) yield* forget(frame.id)
                return
              case Kind.Exit:
                yield* Deferred.succeed(agent.exit, exitStatusOf(frame.code, frame.signal))
                if (yield* Deferred.isDone(agent.outputEnded)) yield* forget(frame.id)
                return
            }
          })

        /**
         * The helper is gone. Its forks that had not yet left its process group go with it; a
         * request it had not answered is spawned again directly, once whatever it may have started
         * for it is stopped; its agents still running are stopped and end as `UNKNOWN_EXIT`.
         */
        const helperGone = Effect.gen(function*() {
          const last = yield* Ref.getAndSet(state, { _tag: "Gone" })
          if (last._tag === "Gone") return
          const closed = (yield* Ref.get(closing)) || (yield* Ref.get(released))
          if (!closed) {
            yield* Effect.logWarning(`the spawn helper (PID ${helperPid}) died: its agents are stopped and their attempts failed; a new helper is started`)
            if ((yield* table.groupMembers(helperPid)).length > 0) yield* table.signalGroup(helperPid, "SIGKILL")
          }
          for (const agent of last.agents.values()) {
            const answer = yield* Deferred.poll(agent.answer)
            if (Option.isNone(answer)) {
              yield* FiberSet.run(
                aftermath,
                Effect.ensuring(closed ? Effect.void : stopUnreported(agent.request, helperPid), Deferred.succeed(agent.answer, { _tag: "HelperGone" }))
              )
              continue
            }
            yield* agent.output.end
            yield* Deferred.succeed(agent.outputEnded, undefined)
            const spawned = yield* answer.value
            if (spawned._tag === "Spawned" && !(yield* Deferred.isDone(agent.exit))) {
              yield* FiberSet.run(aftermath, closed ? watchOrphan(agent, spawned.pid) : stopOrphaned(agent, spawned.pid, helperPid))
            }
          }
        }).pipe(Effect.ensuring(Deferred.succeed(gone, undefined)))

        const decode = makeDecoder()
        yield* chunksOf(child).pipe(
          Stream.runForEach((chunk) =>
            Effect.flatMap(
              Effect.try(() => decode(chunk)),
              (frames) => Effect.forEach(frames as Array<Reply>, route, { discard: true })
            )
          ),
          // A corrupt stream: the helper is of no more use.
          Effect.catchAll((error) =>
            Effect.zipRight(Effect.logError("the spawn helper's replies cannot be read", error.error), Effect.sync(() => child.kill("SIGKILL")))
          ),
          // Its stdout ends before it is reaped: its exit is waited for, so that its forks are in its group.
          Effect.zipRight(Effect.timeoutOption(helperExit(child), HELPER_EXIT_WAIT)),
          Effect.zipRight(helperGone),
          Effect.forkScoped
        )

        yield* Effect.addFinalizer(() =>
          Effect.gen(function*() {
            yield* Ref.set(released, true)
            yield* Effect.sync(() => child.stdin!.end())
            // Only the waits are interruptible, raced by their deadlines (this may run in an interrupted fiber).
            const exited = yield* helperExit(child).pipe(Effect.interruptible, Effect.timeoutOption(HELPER_EXIT_WAIT))
            if (Option.isSome(exited)) return
            yield* Effect.sync(() => child.kill("SIGKILL"))
            yield* helperExit(child).pipe(Effect.interruptible, Effect.timeoutOption(HELPER_EXIT_WAIT))
          })
        )

        const viaHelper = (request: SpawnRequest) =>
          Effect.acquireRelease(
            Effect.gen(function*() {
              const agent: Agent = {
                request,
                answer: yield* Deferred.make<Answer>(),
                startTime: yield* Deferred.make<string | null>(),
                output: yield* Mailbox.make<Uint8Array>(),
                outputEnded: yield* Deferred.make<void>(),
                exit: yield* Deferred.make<ExitStatus>()
              }
              const id = yield* Ref.modify(state, (s): [number | undefined, State] => {
                if (s._tag === "Gone") return [undefined, s]
                s.agents.set(s.nextId, agent)
                return [s.nextId, { ...s, nextId: s.nextId + 1 }]
              })
              if (id === undefined) return Option.none<SpawnedProcess>()
              yield* send({ kind: Kind.Spawn, id, request })
              const answer = yield* Deferred.await(agent.answer)
              if (answer._tag === "HelperGone") return Option.none<SpawnedProcess>()
              if (answer._tag === "Failed") {
                return yield* new SpawnError({ message: spawnMessage(request.command, answer) })
              }
              const pid = answer.pid
              const startTime = (yield* table.startTimeOf(pid)) ?? null
              yield* Deferred.succeed(agent.startTime, startTime)
              const stop = yield* Effect.cached(withTable(stopGroup(pid, grace)))
              const endOutput = yield* Effect.cached(Effect.gen(function*() {
                if (!(yield* Deferred.isDone(agent.outputEnded))) {
                  yield* send({ kind: Kind.Close, id })
                  yield* Deferred.await(agent.outputEnded).pipe(Effect.interruptible, Effect.timeoutOption(CLOSE_WAIT))
                }
                yield* agent.output.end
              }))
              return Option.some<SpawnedProcess>({
                pid,
                startTime,
                output: Mailbox.toStream(agent.output),
                endOutput,
                exit: Deferred.await(agent.exit),
                exited: Effect.flatMap(Deferred.poll(agent.exit), Option.match({ onNone: () => Effect.succeedNone, onSome: Effect.asSome })),
                stop
              })
            }),
            Option.match({ onNone: () => Effect.void, onSome: (spawned) => Effect.asVoid(spawned.stop) })
          )

        return { pid: helperPid, startedMs, released, viaHelper, gone } satisfies Generation
      })

    /** Runs `child` as a helper in a scope of its own. */
    const open = (child: ChildProcess) =>
      Effect.gen(function*() {
        const own = yield* Scope.fork(scope, ExecutionStrategy.sequential)
        const made = yield* Scope.extend(generation(child), own)
        return { generation: made, scope: own }
      })

    const current = yield* Ref.make<Option.Option<Generation>>(Option.none())
    const opened = yield* open(first)
    yield* Ref.set(current, Option.some(opened.generation))

    /** Waits for the helper's death, then starts the next one (unless the daemon is closing). */
    const supervise = (running: { readonly generation: Generation; readonly scope: Scope.CloseableScope }, quickDeaths: number): Effect.Effect<void> =>
      Effect.gen(function*() {
        yield* Deferred.await(running.generation.gone)
        const closed = (yield* Ref.get(closing)) || (yield* Ref.get(running.generation.released))
        yield* Ref.set(current, Option.none())
        yield* Scope.close(running.scope, Exit.void)
        if (closed) return
        const lived = (yield* Clock.currentTimeMillis) - running.generation.startedMs
        const quick = lived < Duration.toMillis(QUICK_DEATH) ? quickDeaths + 1 : 0
        if (quick >= MAX_QUICK_DEATHS) {
          return yield* Effect.logWarning(`the spawn helper died ${quick} times in a row soon after its start: agents are spawned by the daemon directly from now on`)
        }
        const child = yield* startHelper(file)
        if (child === undefined) {
          return yield* Effect.logWarning(`the spawn helper (${file}) cannot be started again: agents are spawned by the daemon directly from now on`)
        }
        const next = yield* open(child)
        yield* Ref.set(current, Option.some(next.generation))
        yield* Effect.logInfo(`a new spawn helper (PID ${next.generation.pid}) was started`)
        return yield* supervise(next, quick)
      })
    yield* Effect.forkScoped(supervise(opened, 0))
    // Runs first at the close: the helper's end is then no death, and no new helper is started.
    yield* Effect.addFinalizer(() => Ref.set(closing, true))

    const spawner: SpawnerShape = {
      name: "helper",
      spawn: (request) =>
        Effect.flatMap(Ref.get(current), (running) =>
          Option.isNone(running) ? direct.spawn(request) : Effect.flatMap(
            running.value.viaHelper(request),
            Option.match({ onNone: () => direct.spawn(request), onSome: Effect.succeed })
          ))
    }
    return {
      spawner,
      pid: Effect.map(Ref.get(current), Option.map((running) => running.pid))
    }
  })

/** The spawner of a daemon whose agents are started by the helper in `file`. */
export const layer = (file: string): Layer.Layer<Spawner, never, DaemonConfig | ProcessTable> =>
  Layer.scoped(Spawner, Effect.map(make(file), (helper) => helper.spawner))

/** Values of `STARFORGE_SPAWNER`. */
export const SPAWNER_SETTINGS = ["helper", "direct"] as const

/**
 * The daemon's spawner for `STARFORGE_SPAWNER` (`setting`): `direct`, `helper` (the helper in
 * `file`, which must exist), or unset: the helper when `file` exists, else direct.
 */
export const choose = (
  setting: string | undefined,
  file: string
): Either.Either<Layer.Layer<Spawner, never, DaemonConfig | ProcessTable>, ConfigInvalid> => {
  const value = setting?.trim() ?? ""
  if (value === "direct") return Either.right(Spawner.direct)
  if (value === "helper") {
    return fs.existsSync(file)
      ? Either.right(layer(file))
      : Either.left(new ConfigInvalid({ message: `STARFORGE_SPAWNER=helper but the spawn helper ${file} does not exist (run npm run build, or unset it)` }))
  }
  if (value === "") return Either.right(fs.existsSync(file) ? layer(file) : Spawner.direct)
  return Either.left(
    new ConfigInvalid({ message: `STARFORGE_SPAWNER=${JSON.stringify(setting)} is not valid: use ${SPAWNER_SETTINGS.join(" or ")} (or leave it unset)` })
  )
}
