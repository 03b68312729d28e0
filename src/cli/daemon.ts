/** `starforge daemon start|stop|restart|status|logs` (contract §1): starting the daemon, and the command group. */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Command, Options } from "@effect/cli"
import { Console, Effect, Either } from "effect"
import { isVariableKey, load, PER_AGENT_VARIABLES, VARIABLES } from "../config/DaemonConfig.js"
import * as Dashboard from "../dashboard/Dashboard.js"
import * as Daemon from "../daemon/Daemon.js"
import { probe } from "../daemon/DaemonInstance.js"
import { daemonExecArgv } from "../daemon/nodeOptions.js"
import { UsageError } from "../domain/errors.js"
import type { ProjectPaths } from "../domain/ProjectPaths.js"
import * as SpawnHelper from "../process/SpawnHelper.js"
import { stop, stopDaemon, timeoutOption } from "./daemonStop.js"
import { logs } from "./logs.js"
import { projectOption, resolveProject } from "./shared.js"
import { status } from "./status.js"

/** This program, to start the background daemon with (the bundle and the tsc build alike). */
const bin = () => fs.realpathSync(process.argv[1] ?? fileURLToPath(import.meta.url))

/**
 * The spawn helper next to the running bundle (dist/spawn-helper.cjs; in the bundle
 * `import.meta.url` is dist/cli.cjs). The tsc build has none: its daemon spawns directly.
 */
const spawnHelperFile = () => fileURLToPath(new URL("spawn-helper.cjs", import.meta.url))

export const setOption = Options.text("set").pipe(
  Options.repeated,
  Options.withDescription(
    "Set a configuration variable for this daemon, e.g. --set MAX_CONCURRENT_AGENTS=4 (highest precedence; repeatable)."
  )
)
const parallelOption = Options.boolean("parallel").pipe(
  Options.withDescription("Run agents in parallel (PARALLEL_DAEMON=true).")
)
const foregroundOption = Options.boolean("foreground").pipe(
  Options.withAlias("f"),
  Options.withDescription("Run attached to the terminal until SIGINT/SIGTERM; logs also go to stderr.")
)

interface StartFlags {
  readonly project: string
  readonly foreground: boolean
  readonly parallel: boolean
  readonly set: ReadonlyArray<string>
}

/** The variables set by `--set NAME=VALUE` and `--parallel`; a typo in a name is an error, not silently ignored. */
export const flagsOf = (flags: Pick<StartFlags, "parallel" | "set">): Effect.Effect<Record<string, string>, UsageError> =>
  Effect.gen(function*() {
    const result: Record<string, string> = {}
    for (const pair of flags.set) {
      const eq = pair.indexOf("=")
      const name = eq < 0 ? pair : pair.slice(0, eq)
      if (eq < 0) {
        return yield* new UsageError({ message: `--set ${JSON.stringify(pair)} has no value: write --set ${name || "NAME"}=VALUE` })
      }
      if (!isVariableKey(name)) {
        return yield* new UsageError({
          message: `--set ${JSON.stringify(name)} is not a configuration variable: use one of ${Object.keys(VARIABLES).join(", ")}, ` +
            `or one of ${PER_AGENT_VARIABLES.join(", ")}, DISCORD_WEBHOOK or DAILY_BUDGET_USD followed by _<AGENT> for one agent (AGENT_TIMEOUT_QA_ENGINEER)`
        })
      }
      result[name] = pair.slice(eq + 1)
    }
    if (flags.parallel) result["PARALLEL_DAEMON"] = "true"
    return result
  })

/** The configuration warnings (ignored lines of .env or daemon.conf) for the terminal of `daemon start`. */
const printWarnings = (warnings: ReadonlyArray<string>) =>
  Effect.forEach(warnings, (warning) => Console.error(`starforge: warning: ${warning}`), { discard: true })

/** Messages the background daemon sends to the `start` that launched it. */
type StartMessage =
  | { readonly type: "ready"; readonly pid: number }
  | { readonly type: "already"; readonly pid: number }
  | { readonly type: "error"; readonly message: string }

const tellParent = (message: StartMessage) =>
  Effect.async<void>((resume) => {
    // The `start` that launched us may be gone (Ctrl-C, its own time limit): then nobody listens.
    if (!process.send || !process.connected) return resume(Effect.void)
    process.send(message, undefined, {}, () => {
      // The parent exits after this; the daemon must not depend on it any more.
      if (process.connected) process.disconnect()
      resume(Effect.void)
    })
  })

/** Runs the daemon in this process until SIGINT/SIGTERM. */
const runForeground = (paths: ProjectPaths, flags: Record<string, string>) => {
  const background = process.env["STARFORGE_BACKGROUND"] === "1"
  return Effect.gen(function*() {
    // Runtime's own signal handlers go after the first signal; these keep a second Ctrl-C from
    // killing the daemon halfway through its shutdown (which would orphan the agents).
    const ignore = () => {}
    // A closed terminal must not crash the daemon through its log echo.
    process.stderr.on("error", ignore)
    // The signal that started the shutdown: after a Ctrl-C (SIGINT) the clean stop ends with exit
    // code 130, as a shell expects of an interrupted program; after SIGTERM, 0.
    let stoppedBy: "SIGINT" | "SIGTERM" | undefined
    const onSigint = () => void (stoppedBy ??= "SIGINT")
    const onSigterm = () => void (stoppedBy ??= "SIGTERM")
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        process.on("SIGINT", onSigint)
        process.on("SIGTERM", onSigterm)
        process.on("SIGHUP", ignore)
      }),
      () =>
        Effect.sync(() => {
          process.off("SIGINT", onSigint)
          process.off("SIGTERM", onSigterm)
          process.off("SIGHUP", ignore)
          // Released after the daemon's own layers: every agent is stopped and the state saved.
          if (stoppedBy === "SIGINT") process.exitCode = 130
        })
    )
    if (!background) {
      // Lines of .env / daemon.conf that were ignored, on the terminal before the daemon starts (the
      // log has them too). A configuration that cannot start the daemon is reported by Daemon.run.
      const config = yield* Effect.either(load({ project: paths.root, flags }))
      if (Either.isRight(config)) yield* printWarnings(config.right.warnings)
    }
    // STARFORGE_SPAWNER: `direct`, `helper`, or unset (the helper if it is there).
    const spawner = yield* SpawnHelper.choose(process.env["STARFORGE_SPAWNER"], spawnHelperFile())
    yield* Daemon.run({
      project: paths.root,
      flags,
      echo: !background,
      onReady: (hello) =>
        background ? tellParent({ type: "ready", pid: hello.pid }) : Console.error(`Daemon started (PID: ${hello.pid})`)
    }, { spawner, frontEnd: Dashboard.layer })
  }).pipe(
    Effect.scoped,
    Effect.catchTag("DaemonAlreadyRunning", (e) =>
      background ? tellParent({ type: "already", pid: e.pid }) : Console.log(e.message)),
    Effect.tapError((e) => (background ? tellParent({ type: "error", message: e.message }) : Effect.void))
  )
}

/** Launches the daemon in its own session and waits until it takes triggers. */
const startBackground = (paths: ProjectPaths, startFlags: StartFlags) =>
  Effect.gen(function*() {
    const flags = yield* flagsOf(startFlags)
    const config = yield* load({ project: paths.root, flags })
    const graceMs = config.settings.killGraceMs
    const running = yield* probe(paths)
    if (running) return yield* Console.log(`Daemon already running (PID: ${running.pid})`)
    yield* printWarnings(config.warnings)
    // Crashes the daemon cannot log itself end up here rather than nowhere.
    const out = yield* Effect.try({
      try: () => {
        fs.mkdirSync(paths.logs, { recursive: true })
        return fs.openSync(path.join(paths.logs, "daemon.out"), "a")
      },
      catch: (e) => new UsageError({ message: `Cannot write to ${paths.logs}: ${(e as Error).message}` })
    })
    const args = [...daemonExecArgv(process.execArgv), bin(), "daemon", "start", "--foreground", "--project", paths.root]
    for (const [k, v] of Object.entries(flags)) args.push("--set", `${k}=${v}`)
    const message = yield* Effect.async<StartMessage>((resume) => {
      const child = spawn(process.execPath, args, {
        cwd: paths.root,
        detached: true,
        stdio: ["ignore", out, out, "ipc"],
        env: { ...process.env, STARFORGE_BACKGROUND: "1" }
      })
      fs.closeSync(out)
      // Start-up may first stop agents left by a crashed daemon, each within its kill grace.
      const readyWithinMs = 60_000 + 2 * graceMs
      const timer = setTimeout(
        () =>
          finish({
            type: "error",
            message: `the daemon (PID: ${child.pid}) did not report ready within ${readyWithinMs / 1000} seconds; ` +
              `it may still be starting: check 'starforge daemon status'`
          }),
        readyWithinMs
      )
      const finish = (m: StartMessage) => {
        clearTimeout(timer)
        child.removeAllListeners()
        if (child.connected) child.disconnect()
        child.unref()
        resume(Effect.succeed(m))
      }
      child.on("message", (m) => finish(m as StartMessage))
      child.on("exit", (code) => finish({ type: "error", message: `the daemon exited during start-up (exit code ${code})` }))
      child.on("error", (e) => finish({ type: "error", message: e.message }))
    })
    switch (message.type) {
      case "ready":
        return yield* Console.log(`Daemon started (PID: ${message.pid})`)
      case "already":
        return yield* Console.log(`Daemon already running (PID: ${message.pid})`)
      case "error":
        return yield* new UsageError({
          message: `Daemon failed to start: ${message.message}. See ${paths.daemonLog}`
        })
    }
  })

const start = Command.make(
  "start",
  { project: projectOption, foreground: foregroundOption, parallel: parallelOption, set: setOption },
  (flags) =>
    Effect.gen(function*() {
      const paths = yield* resolveProject(flags.project)
      if (flags.foreground) return yield* runForeground(paths, yield* flagsOf(flags))
      return yield* startBackground(paths, flags)
    })
).pipe(Command.withDescription("Start the daemon in the background (or --foreground) for the project."))

const restart = Command.make(
  "restart",
  { project: projectOption, parallel: parallelOption, set: setOption, timeout: timeoutOption },
  (flags) =>
    Effect.gen(function*() {
      const paths = yield* resolveProject(flags.project)
      // A configuration that cannot start a daemon must not stop the running one.
      yield* load({ project: paths.root, flags: yield* flagsOf(flags) })
      yield* stopDaemon(paths, flags.timeout)
      yield* startBackground(paths, { ...flags, foreground: false })
    })
).pipe(Command.withDescription("Stop the daemon, then start it again."))

export const daemonCommand = Command.make("daemon").pipe(
  Command.withDescription("Start, stop and inspect the daemon."),
  Command.withSubcommands([start, stop, restart, status, logs])
)
