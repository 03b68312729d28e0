/** `starforge daemon start|stop|restart|status|logs` (contract §1). */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Args, Command, Options } from "@effect/cli"
import { Console, Deferred, Duration, Effect, Either, Fiber, Option, Schedule } from "effect"
import { load, VARIABLES } from "../config/DaemonConfig.js"
import * as Daemon from "../daemon/Daemon.js"
import { isOurDaemon, probe } from "../daemon/DaemonInstance.js"
import { displayLine } from "../observability/DaemonLog.js"
import { recentCounts } from "../state/History.js"
import { daemonExecArgv } from "../daemon/nodeOptions.js"
import { UsageError } from "../domain/errors.js"
import type { ProjectPaths } from "../domain/ProjectPaths.js"
import { readTable } from "../slots/AgentSlots.js"
import { formatDuration } from "../domain/time.js"
import { isValidAgentName } from "../domain/Trigger.js"
import type { Slot } from "../domain/Slot.js"
import { costLine, limitLines, progressCell, readUsageStatus } from "./progress.js"
import { logParts, readLogFile } from "../logs/LogFile.js"
import { ProcessTable } from "../platform/ProcessTable.js"
import { countBySuffix, countTriggers, ExitWith, jsonOption, printJson, projectOption, resolveProject, table, tailLines } from "./shared.js"

/** This program, to start the background daemon with (the bundle and the tsc build alike). */
const bin = () => fs.realpathSync(process.argv[1] ?? fileURLToPath(import.meta.url))

const setOption = Options.text("set").pipe(
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
const flagsOf = (flags: StartFlags): Effect.Effect<Record<string, string>, UsageError> =>
  Effect.gen(function*() {
    const result: Record<string, string> = {}
    for (const pair of flags.set) {
      const eq = pair.indexOf("=")
      const name = eq < 0 ? pair : pair.slice(0, eq)
      if (eq < 0) {
        return yield* new UsageError({ message: `--set ${JSON.stringify(pair)} has no value: write --set ${name || "NAME"}=VALUE` })
      }
      if (!(name in VARIABLES)) {
        return yield* new UsageError({
          message: `--set ${JSON.stringify(name)} is not a configuration variable: use one of ${Object.keys(VARIABLES).join(", ")}`
        })
      }
      result[name] = pair.slice(eq + 1)
    }
    if (flags.parallel) result["PARALLEL_DAEMON"] = "true"
    return result
  })

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
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        process.on("SIGINT", ignore)
        process.on("SIGTERM", ignore)
        process.on("SIGHUP", ignore)
      }),
      () =>
        Effect.sync(() => {
          process.off("SIGINT", ignore)
          process.off("SIGTERM", ignore)
          process.off("SIGHUP", ignore)
        })
    )
    yield* Daemon.run({
      project: paths.root,
      flags,
      echo: !background,
      onReady: (hello) =>
        background ? tellParent({ type: "ready", pid: hello.pid }) : Console.error(`Daemon started (PID: ${hello.pid})`)
    })
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
    const graceMs = (yield* load({ project: paths.root, flags })).settings.killGraceMs
    const running = yield* probe(paths)
    if (running) return yield* Console.log(`Daemon already running (PID: ${running.pid})`)
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

/** Waits up to `ms` for `pid` to be gone; true when it is. */
const waitUntilGone = (pid: number, ms: number) =>
  Effect.flatMap(ProcessTable, (table) =>
    table.isAlive(pid).pipe(
      Effect.repeat({ schedule: Schedule.spaced("50 millis"), until: (alive) => !alive }),
      Effect.timeoutTo({ duration: Duration.millis(ms), onSuccess: () => true, onTimeout: () => false })
    ))

/** SIGTERM, wait for the graceful shutdown, SIGKILL after the timeout. */
const stopDaemon = (paths: ProjectPaths, timeoutSeconds: Option.Option<number>) =>
  Effect.gen(function*() {
    const table = yield* ProcessTable
    const hello = yield* probe(paths)
    if (!hello) {
      yield* removeStalePidFile(paths)
      return yield* Console.log("Daemon is not running")
    }
    if (!(yield* isOurDaemon(paths, hello))) {
      return yield* new UsageError({
        message: `The process answering for ${paths.root} (PID: ${hello.pid}) is not the daemon named in ` +
          `${paths.pidFile}; it was not signalled. Check it with 'ps -p ${hello.pid}'`
      })
    }
    // The daemon's own grace, not this command's configuration.
    const timeoutMs = Option.getOrElse(Option.map(timeoutSeconds, (s) => s * 1000), () => hello.settings.kill_grace_ms + 10_000)
    yield* Console.log(`Stopping daemon (PID: ${hello.pid})...`)
    yield* table.signalProcess(hello.pid, "SIGTERM")
    if (yield* waitUntilGone(hello.pid, timeoutMs)) return yield* Console.log("Daemon stopped")
    yield* table.signalProcess(hello.pid, "SIGKILL")
    yield* waitUntilGone(hello.pid, 5_000)
    // The daemon could not stop its agents; stop those that are provably still its agents.
    let stopped = 0
    for (const [agent, slot] of Object.entries(readTable(paths.slotsFile).table)) {
      if (slot.status !== "busy" || slot.pid === null) continue
      const pid = Number(slot.pid)
      if ((yield* table.identify(pid, slot.pid_start_time)) === "same") {
        yield* table.signalGroup(pid, "SIGKILL")
        stopped++
        yield* Console.log(`Killed agent ${agent} (PID ${pid})`)
      }
    }
    yield* removeStalePidFile(paths)
    yield* Console.log(
      `Daemon did not stop within ${timeoutMs / 1000}s and was killed${stopped > 0 ? `, with ${stopped} agent process group(s)` : ""}; ` +
        `its triggers go back to the queue at the next start`
    )
  })

/** Removes a pid file whose process is gone; a live pid that is not our daemon is left alone. */
const removeStalePidFile = (paths: ProjectPaths) =>
  Effect.gen(function*() {
    const recorded = yield* Effect.sync(() => {
      try {
        return fs.readFileSync(paths.pidFile, "utf8").trim()
      } catch {
        return undefined
      }
    })
    if (recorded === undefined) return
    const pid = Number(recorded)
    const alive = Number.isInteger(pid) && pid > 0 && (yield* Effect.flatMap(ProcessTable, (table) => table.isAlive(pid)))
    if (!alive) yield* Effect.sync(() => fs.rmSync(paths.pidFile, { force: true }))
  })

const timeoutOption = Options.integer("timeout").pipe(
  Options.optional,
  Options.withDescription("Seconds to wait for the graceful shutdown before SIGKILL (default: AGENT_KILL_GRACE + 10).")
)

const stop = Command.make("stop", { project: projectOption, timeout: timeoutOption }, ({ project, timeout }) =>
  Effect.flatMap(resolveProject(project), (paths) => stopDaemon(paths, timeout))).pipe(
    Command.withDescription("Stop the daemon: its agents are stopped and their triggers go back to the queue.")
  )

const restart = Command.make(
  "restart",
  { project: projectOption, parallel: parallelOption, set: setOption, timeout: timeoutOption },
  (flags) =>
    Effect.gen(function*() {
      const paths = yield* resolveProject(flags.project)
      // A configuration that cannot start a daemon must not stop the running one.
      yield* load({ project: paths.root, flags: yield* flagsOf({ ...flags, foreground: false }) })
      yield* stopDaemon(paths, flags.timeout)
      yield* startBackground(paths, { ...flags, foreground: false })
    })
).pipe(Command.withDescription("Stop the daemon, then start it again."))

/** What `status` shows; read from the files, so it works whether or not a daemon runs. */
export const readStatus = (paths: ProjectPaths) =>
  Effect.gen(function*() {
    // The daemon answers while the files are read.
    const answer = yield* Effect.fork(probe(paths))
    const config = yield* Effect.either(load({ project: paths.root }))
    const settings = Either.isRight(config) ? config.right.settings : undefined
    const slots = readTable(paths.slotsFile).table
    const busy = Object.values(slots).filter((s) => s.status === "busy").length
    // One read of the queue's directory for both (10,000 pending triggers: about 12 ms a read).
    const [pending, processing] = countBySuffix(paths.triggers, [".trigger", ".processing"]) as [number, number]
    const hello = yield* Fiber.join(answer)
    const running = hello ? Math.min(busy, processing) : 0
    // Without a daemon, claimed triggers go back to the queue at the next start.
    const interrupted = hello ? 0 : processing
    // A running daemon says how it runs; otherwise the configuration tells how it would.
    const parallel = hello ? hello.settings.parallel : settings?.parallel
    return {
      running: hello !== undefined,
      pid: hello?.pid ?? null,
      mode: parallel ? "parallel" : "sequential",
      max_concurrent: hello ? hello.settings.max_concurrent : settings ? (settings.parallel ? settings.maxConcurrent : 1) : null,
      uptime_seconds: hello ? Math.max(0, Math.floor((Date.now() - Date.parse(hello.started)) / 1000)) : null,
      queue: {
        pending: pending + interrupted,
        running,
        done: countTriggers(paths.processed),
        failed: processing - running - interrupted,
        invalid: countTriggers(paths.invalid),
        dead_letter: countTriggers(paths.deadLetter)
      },
      slots,
      last_hour: recentCounts(paths.historyFile, Date.now()),
      ...readUsageStatus(paths, Date.now()),
      config_error: Either.isLeft(config) ? config.left.message : undefined
    }
  })

export const slotRows = (slots: Record<string, Slot>) =>
  Object.entries(slots).sort(([a], [b]) => a.localeCompare(b)).map(([agent, s]) => [
    agent,
    s.status,
    s.pid ?? "-",
    s.ticket ?? "-",
    s.status === "busy" && s.started_at ? formatDuration((Date.now() - Date.parse(s.started_at)) / 1000) : "-",
    s.status === "busy" ? s.trigger ?? "-" : "-",
    progressCell(s, Date.now())
  ])

export const SLOT_HEADER = ["AGENT", "STATUS", "PID", "TICKET", "RUNNING FOR", "TRIGGER", "PROGRESS"]

/** The text of `status`, also each screen of `status --watch` (with more recent events). */
export const statusText = (paths: ProjectPaths, s: Effect.Effect.Success<ReturnType<typeof readStatus>>, events = 5): string => {
  const lines: Array<string> = []
  lines.push(s.running ? `Daemon is running (PID: ${s.pid}), up ${formatDuration(s.uptime_seconds ?? 0)}` : "Daemon is not running")
  if (s.config_error) lines.push(`Configuration problem: ${s.config_error}`)
  else lines.push(`Mode: ${s.mode}${s.mode === "parallel" ? ` (max concurrent: ${s.max_concurrent})` : ""}`)
  const q = s.queue
  lines.push(
    `Queue: ${q.pending} pending, ${q.running} running, ${q.done} done, ${q.failed} failed (waiting to retry), ` +
      `${q.invalid} invalid, ${q.dead_letter} dead-letter`
  )
  lines.push(`Last hour: ${s.last_hour.done} done, ${s.last_hour.failed} failed`)
  lines.push(...limitLines(s, Date.now()))
  const rows = slotRows(s.slots)
  lines.push(rows.length === 0 ? "Agents: none seen yet" : "\n" + table(SLOT_HEADER, rows))
  const cost = costLine(s)
  if (cost !== undefined) lines.push("\n" + cost)
  const recent = tailLines(paths.daemonLog, events).map(displayLine)
  if (recent.length > 0) lines.push(`\n${s.running ? "Recent activity" : "Last activity"}:\n` + recent.map((l) => `  ${l}`).join("\n"))
  return lines.join("\n")
}

const watchOption = Options.boolean("watch").pipe(
  Options.withAlias("w"),
  Options.withDescription("Refresh every second until q or Ctrl-C (a live screen on a terminal, repeated plain output otherwise).")
)

const status = Command.make("status", { project: projectOption, json: jsonOption, watch: watchOption }, ({ json, project, watch }) =>
  Effect.gen(function*() {
    const paths = yield* resolveProject(project)
    if (watch) {
      if (json) return yield* new UsageError({ message: "--watch and --json cannot be combined: use one of them" })
      return yield* watchStatus(paths)
    }
    const s = yield* readStatus(paths)
    if (json) {
      const { config_error: _ignored, ...rest } = s
      yield* printJson(rest)
    } else {
      yield* Console.log(statusText(paths, s))
    }
    if (!s.running) return yield* new ExitWith({ code: 1 })
  })).pipe(Command.withDescription("Show the daemon, the queue counts and the agent slots (exit 1 when not running); --watch keeps it live."))

/**
 * `status --watch`: on a terminal, a full screen redrawn every second (alternate screen, hidden
 * cursor, keys read raw; a resized terminal is fitted at the next second) until `q` or Ctrl-C,
 * after which the terminal is as it was; otherwise
 * the plain status every second, each under a time line, until interrupted.
 */
const watchStatus = (paths: ProjectPaths) =>
  Effect.gen(function*() {
    const tty = process.stdout.isTTY === true
    const quit = yield* Deferred.make<void>()
    if (tty) {
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          const onKey = (key: Buffer) => {
            // q, Q, Ctrl-C (raw mode delivers it as a byte), Ctrl-D.
            if (key.some((b) => b === 0x71 || b === 0x51 || b === 0x03 || b === 0x04)) Deferred.unsafeDone(quit, Effect.void)
          }
          if (process.stdin.isTTY) {
            process.stdin.setRawMode(true)
            process.stdin.on("data", onKey)
            process.stdin.resume()
          }
          process.stdout.write("\x1b[?1049h\x1b[?25l")
          return onKey
        }),
        (onKey) =>
          Effect.sync(() => {
            if (process.stdin.isTTY) {
              process.stdin.off("data", onKey)
              process.stdin.setRawMode(false)
              process.stdin.pause()
            }
            process.stdout.write("\x1b[?25h\x1b[?1049l")
          })
      )
    }
    const frame = Effect.gen(function*() {
      const s = yield* readStatus(paths)
      const now = new Date().toISOString().replace(/\.\d{3}Z$/, "Z")
      if (tty) {
        const rows = process.stdout.rows ?? 40
        const body = `starforge: ${paths.root}   ${now}   (q to quit)\n\n` + statusText(paths, s, 10)
        // Whole screen at once, each line cleared to its end, cut to the terminal's height.
        const lines = body.split("\n").slice(0, rows - 1).map((l) => l.slice(0, process.stdout.columns ?? 200) + "\x1b[K")
        process.stdout.write("\x1b[H" + lines.join("\n") + "\n\x1b[J")
      } else {
        process.stdout.write(`--- ${now} ---\n${statusText(paths, s)}\n\n`)
      }
    })
    yield* frame.pipe(
      Effect.repeat(Schedule.spaced(Duration.seconds(1))),
      Effect.raceFirst(Deferred.await(quit))
    )
  }).pipe(Effect.scoped)

/**
 * The newest `C/logs/<agent>-<epoch>[-n].log` (also when maintenance has gzipped it to
 * `….log.gz`); the name without `.gz`, as `logParts` takes it.
 */
export const newestAgentLog = (logs: string, agent: string): string | undefined => {
  // The epoch has at least 10 digits, so agent `dev` never matches `dev-2-<epoch>.log`.
  const pattern = new RegExp(`^${agent.replace(/[.]/g, "\\.")}-(\\d{10,})(?:-(\\d+))?\\.log(?:\\.gz)?$`)
  let best: { file: string; key: [number, number] } | undefined
  let names: Array<string>
  try {
    names = fs.readdirSync(logs)
  } catch {
    return undefined
  }
  for (const name of names) {
    const m = pattern.exec(name)
    if (!m) continue
    const key: [number, number] = [Number(m[1]), Number(m[2] ?? 1)]
    if (!best || key[0] > best.key[0] || (key[0] === best.key[0] && key[1] > best.key[1])) {
      best = { file: path.join(logs, name.replace(/\.gz$/, "")), key }
    }
  }
  return best?.file
}

/**
 * Prints what is appended to `file` from `from` on. Holds the file open, so a rotation (a
 * rename) is followed: the rest of the old file is read first, then the new one from its start.
 */
const follow = (file: string, from: number) =>
  Effect.async<never>(() => {
    let fd: number | undefined
    let position = from
    const open = () => {
      try {
        fd = fs.openSync(file, "r")
      } catch {
        fd = undefined
      }
    }
    const readRest = () => {
      if (fd === undefined) return
      const buffer = Buffer.alloc(64 * 1024)
      for (;;) {
        const n = fs.readSync(fd, buffer, 0, buffer.length, position)
        if (n === 0) return
        position += n
        process.stdout.write(Buffer.from(buffer.subarray(0, n)))
      }
    }
    open()
    const timer = setInterval(() => {
      try {
        if (fd === undefined) {
          open()
          position = 0
        }
        if (fd === undefined) return
        if (fs.fstatSync(fd).size < position) position = 0
        readRest()
        const now = fs.statSync(file, { throwIfNoEntry: false })
        if (now !== undefined && now.ino !== fs.fstatSync(fd).ino) {
          // Rotated: what was written before the rename is in the old file, read above.
          readRest()
          fs.closeSync(fd)
          open()
          position = 0
          readRest()
        }
      } catch {
        // The file may be replaced; keep trying.
      }
    }, 200)
    return Effect.sync(() => {
      clearInterval(timer)
      if (fd !== undefined) fs.closeSync(fd)
    })
  })

const logs = Command.make(
  "logs",
  {
    project: projectOption,
    agent: Args.text({ name: "AGENT" }).pipe(Args.optional, Args.withDescription("Show the newest log of this agent.")),
    follow: Options.boolean("follow").pipe(Options.withAlias("F"), Options.withDescription("Keep printing what is appended."))
  },
  ({ agent, follow: keepFollowing, project }) =>
    Effect.gen(function*() {
      const paths = yield* resolveProject(project)
      let file = paths.daemonLog
      if (Option.isSome(agent)) {
        if (!isValidAgentName(agent.value)) {
          return yield* new UsageError({ message: `${JSON.stringify(agent.value)} is not a valid agent name` })
        }
        const found = newestAgentLog(paths.logs, agent.value)
        if (!found) return yield* new UsageError({ message: `No log of ${agent.value} in ${paths.logs} yet` })
        file = found
      }
      // Rotated parts first, oldest first, gzipped ones unpacked.
      const parts = logParts(file)
      if (parts.length === 0) {
        return yield* new UsageError({ message: `No daemon log at ${file} yet: start the daemon with 'starforge daemon start'` })
      }
      let printedOfCurrent = 0
      for (const part of parts) {
        const content = yield* Effect.try({
          try: () => readLogFile(part),
          catch: (e) => new UsageError({ message: `Cannot read ${part}: ${(e as Error).message}` })
        })
        process.stdout.write(content)
        if (part === file) printedOfCurrent = content.length
      }
      if (keepFollowing) yield* follow(file, printedOfCurrent)
    })
).pipe(Command.withDescription("Print the daemon log, or the newest log of AGENT (rotated and gzipped parts included, oldest first); --follow keeps tailing."))

export const daemonCommand = Command.make("daemon").pipe(
  Command.withDescription("Start, stop and inspect the daemon."),
  Command.withSubcommands([start, stop, restart, status, logs])
)

