/**
 * Agents started by the spawn helper (`spawnHelperMain.ts`, bundled as dist/spawn-helper.cjs)
 * instead of by the daemon itself. Node's `spawn` forks, and a fork copies the page tables of
 * the forking process: it holds up the daemon's main thread the longer the bigger the daemon is,
 * and a bare Node process started once is small (bench B4 compares both). The handles are those of `Spawner.direct`: the helper
 * forwards each agent's pid, output (whole lines of one pipe at a time), the end of its pipes and
 * its exit as frames (`helperFrames.ts`); the daemon stops agents itself (the kill ladder on the
 * group, through the process table), and closing an agent's scope stops it.
 *
 * If the helper cannot start or dies, agents are spawned directly (`makeDirect`), a request it had
 * not answered too (once). Agents it had started lose the rest of their output (their pipes' only
 * reader is gone: their next write gets SIGPIPE); their end is found in the process table and
 * reported as `UNKNOWN_EXIT`. One window is left: a helper that dies after spawning an agent but
 * before naming it; that agent is started again directly, and the first copy is only found (by its
 * environment) at the daemon's next start.
 */
import { type ChildProcess, spawn as nodeSpawn } from "node:child_process"
import * as fs from "node:fs"
import { Deferred, Duration, Effect, Either, FiberSet, Layer, Mailbox, Option, Ref, type Scope, Stream } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { ConfigInvalid } from "../domain/errors.js"
import { ExitStatus } from "../domain/Outcome.js"
import { pollUntil } from "../io/pollUntil.js"
import { ProcessTable } from "../platform/ProcessTable.js"
import { encode, Kind, makeDecoder, type Reply, type Request } from "./helperFrames.js"
import { stopGroup } from "./KillLadder.js"
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

/** The helper's answer to a spawn. */
type Answer =
  | { readonly _tag: "Spawned"; readonly pid: number }
  | { readonly _tag: "Failed"; readonly code: string | undefined; readonly message: string }
  /** The helper died first: the agent is spawned directly. */
  | { readonly _tag: "HelperGone" }

/** A request sent to the helper, until its agent has exited and its output has ended. */
interface Agent {
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

/**
 * A helper started from `file` for the current scope, with a spawner that uses it while it runs
 * and spawns directly otherwise. Closing the scope closes the helper's stdin, waits for its exit
 * (SIGKILL after `HELPER_EXIT_WAIT`); agents still running are not touched (their own scopes stop them).
 */
export const make = (file: string): Effect.Effect<Helper, never, Scope.Scope | DaemonConfig | ProcessTable> =>
  Effect.gen(function*() {
    const { settings } = yield* DaemonConfig
    const table = yield* ProcessTable
    const grace = Duration.millis(settings.killGraceMs)
    const direct = makeDirect(table, grace)
    const child = yield* startHelper(file)
    if (child === undefined) {
      yield* Effect.logWarning(`the spawn helper (${file}) cannot be started: agents are spawned by the daemon directly`)
      return { spawner: { ...direct, name: "direct (the spawn helper did not start)" }, pid: Effect.succeedNone }
    }
    const state = yield* Ref.make<State>({ _tag: "Running", agents: new Map(), nextId: 1 })
    const closing = yield* Ref.make(false)
    const orphans = yield* FiberSet.make()

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

    /** An agent whose helper died: its end is seen in the process table. */
    const watchOrphan = (agent: Agent, pid: number) =>
      Effect.gen(function*() {
        const startTime = yield* Deferred.await(agent.startTime)
        yield* pollUntil(Effect.map(table.identify(pid, startTime), (identity) => identity !== "same"), ORPHAN_WAIT, ORPHAN_POLL)
        yield* Deferred.succeed(agent.exit, UNKNOWN_EXIT)
      })

    /** The helper is gone: every request it had not answered goes direct, its agents are orphans. */
    const helperGone = Effect.gen(function*() {
      const last = yield* Ref.getAndSet(state, { _tag: "Gone" })
      if (last._tag === "Gone") return
      if (!(yield* Ref.get(closing))) {
        yield* Effect.logWarning(`the spawn helper (PID ${child.pid}) died: agents are spawned by the daemon directly from now on`)
      }
      for (const agent of last.agents.values()) {
        const answer = yield* Deferred.poll(agent.answer)
        if (Option.isNone(answer)) {
          yield* Deferred.succeed(agent.answer, { _tag: "HelperGone" })
          continue
        }
        yield* agent.output.end
        yield* Deferred.succeed(agent.outputEnded, undefined)
        const spawned = yield* answer.value
        if (spawned._tag === "Spawned" && !(yield* Deferred.isDone(agent.exit))) {
          yield* FiberSet.run(orphans, watchOrphan(agent, spawned.pid))
        }
      }
    })

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
      Effect.zipRight(helperGone),
      Effect.forkScoped
    )

    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        yield* Ref.set(closing, true)
        yield* Effect.sync(() => child.stdin!.end())
        // Only the waits are interruptible, raced by their deadlines (this may run in an interrupted fiber).
        const exited = yield* helperExit(child).pipe(Effect.interruptible, Effect.timeoutOption(HELPER_EXIT_WAIT))
        if (Option.isSome(exited)) return
        yield* Effect.sync(() => child.kill("SIGKILL"))
        yield* helperExit(child).pipe(Effect.interruptible, Effect.timeoutOption(HELPER_EXIT_WAIT))
      })
    )

    /** The spawn through the helper; none when it is gone (the caller spawns directly). */
    const viaHelper = (request: SpawnRequest) =>
      Effect.acquireRelease(
        Effect.gen(function*() {
          const agent: Agent = {
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
          const stop = yield* Effect.cached(stopGroup(pid, grace).pipe(Effect.provideService(ProcessTable, table)))
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

    const spawner: SpawnerShape = {
      name: "helper",
      spawn: (request) =>
        Effect.flatMap(viaHelper(request), Option.match({ onNone: () => direct.spawn(request), onSome: Effect.succeed }))
    }
    return {
      spawner,
      pid: Effect.map(Ref.get(state), (s) => (s._tag === "Running" && child.pid !== undefined ? Option.some(child.pid) : Option.none()))
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
