/**
 * Starts agents from a small helper process instead of from the daemon itself.
 *
 * Why: Node's `child_process.spawn` forks (libuv 1.46 on Linux), and a fork copies the page
 * tables of the parent's memory; the parent waits until the child has run `exec`. From the
 * daemon (80–130 MiB resident) one `spawn()` held its event loop for 9–20 ms; from a bare Node
 * process of 45 MiB it takes 2–3 ms (bench B3 and B4 measure both). The helper is such a bare
 * process, started once: it spawns each agent exactly as the daemon did (its own process group
 * and session, stdin closed, stdout and stderr pipes), reads both pipes and forwards what it
 * reads, the pipes' ends and the exit to the daemon as frames on its stdout, in the order it saw
 * them. The daemon logs the output and signals the process group itself, as before.
 *
 * Why the helper reads the pipes: handing the pipe ends to the daemon (over the IPC channel, as
 * an earlier version did) cost more than the reading. Node sends one handle per message and
 * waits for the daemon's acknowledgement of each, and the daemon made a socket of each. 2,000
 * agents that exit at once, 100 at a time: 1.8 ms of the machine's CPU per agent with the hand-
 * over, 1.5 ms with the helper reading (the daemon's part 0.21 against 0.02 ms).
 *
 * What that costs: only the helper holds the pipes' reading ends. If it dies, an agent still
 * running loses the rest of its output, and its next write fails (SIGPIPE). Its end is then
 * found through `/proc` (the status is unknown and reported as such) and the attempt counts as
 * failed; the trigger is retried as after any failure.
 *
 * The helper lives in a process group of its own and ignores SIGINT/SIGTERM/SIGHUP (a Ctrl-C in
 * the daemon's terminal must not take it before the daemon has stopped its agents); it exits
 * when the daemon closes the channel or dies. If it cannot be started or dies, agents are
 * spawned by the daemon directly (a request it had not answered too). One window is left: a
 * helper killed after starting an agent but before naming it; the agent is then started again
 * directly, and the first copy is only found (by its environment) at the daemon's next start.
 *
 * Where creating a process is slow, the helper starts an agent from a standby shell made in
 * advance instead of spawning it (see `helperMain`): the agent starts about 4 ms sooner.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { Readable } from "node:stream"

/** One agent started by the helper (or directly). */
export interface SpawnedAgent {
  readonly pid: number
  /** The output; destroying one before its end stops reading it (and closes the pipe). */
  readonly stdout: Readable
  readonly stderr: Readable
  /** Called once with the exit, as `ChildProcess`'s `exit` event gives it. */
  readonly onExit: (listener: (code: number | null, signal: string | null) => void) => void
}

export interface SpawnRequest {
  readonly command: string
  readonly args: ReadonlyArray<string>
  readonly cwd: string
  readonly env: Readonly<Record<string, string>>
}

/** An `ErrnoException`-like failure to start the command (ENOENT, EACCES, ...). */
export interface SpawnFailure {
  readonly failed: { readonly code?: string | undefined; readonly message: string }
}

/** How an agent's process is started: by the helper, or directly. */
export type SpawnAgent = (request: SpawnRequest) => Promise<SpawnedAgent | SpawnFailure>

/**
 * The helper's Node options. A fork copies the page tables of the parent's anonymous memory, so
 * the less of it the helper has, the faster each spawn: no V8 worker threads (and their stacks)
 * and a young generation of 2 × 1 MiB (it allocates little). A bare Node process spawned an agent
 * in 1.3–1.5 ms with them, 1.5–1.8 ms without (p50 of 300 spawns, 3 runs each).
 */
const HELPER_NODE_OPTIONS = ["--single-threaded", "--max-semi-space-size=1"]

/**
 * The frames on the helper's stdout: the agent's request id (u32 LE), the kind (u8), the
 * payload's length (u32 LE), the payload.
 */
const Frame = {
  /** Payload: the pid (u32 LE). */
  spawned: 1,
  /** Payload: JSON `{ code, message }`. */
  failed: 2,
  /** Payload: bytes the agent wrote on stdout (3) or stderr (4). */
  stdout: 3,
  stderr: 4,
  /** No payload: that pipe has ended (5: stdout, 6: stderr); it comes once per pipe. */
  stdoutEnd: 5,
  stderrEnd: 6,
  /** Payload: JSON `{ code, signal }`. */
  exit: 7,
  /** Request id 0; payload: JSON `StandbyState`, each time it changes. */
  standbys: 8
} as const
const FRAME_HEADER_BYTES = 9

/** Output the helper may have waiting for the daemon before it stops reading the agents' pipes. */
const HELPER_HOLD_BYTES = 4 * 1024 * 1024

/**
 * How many standbys the helper keeps at most (the daemon asks for no more than its cap). Each is
 * an idle `/bin/sh` of about 1 MiB; 8 serve a cap of 8 whose agents all end together. (Not the
 * first agents of a daemon that starts with a backlog: they come before the helper has booted.)
 */
export const STANDBYS_MAX = 8

/**
 * After the last request, how long the helper waits before it starts a standby: starting one
 * holds its event loop as long as a spawn does, and a burst of requests is served first.
 */
const STANDBY_REFILL_QUIET_MS = 25

/**
 * Variables a request may not carry for a standby to start it (it is spawned directly): dash
 * refuses `OPTIND` that is not a number, and a shell that fails an `export` exits.
 */
const STANDBY_REFUSED_NAMES = ["OPTIND"]

/**
 * The helper's program, run with `node -e`. Self-contained: it is sent as source text, so it
 * refers to nothing outside itself (the frame kinds, the hold-back bound and the standbys'
 * settings are its arguments).
 *
 * Standbys: Node's `spawn()` forks this Node process, which costs 5–7 ms on a machine where
 * creating a process is slow (a virtual machine that traps page-table writes), against 1 ms for a
 * shell's fork. So the helper keeps a few `/bin/sh -s` processes started in advance, each already
 * in a session of its own with its stdout and stderr pipes, reading its script from a pipe. An
 * agent is started by writing one line to one of them: `cd` to the agent's directory, its exact
 * environment, `exec` of its command with stdin from `/dev/null`. The agent is then that same
 * process (same pid, group, session and pipes), as if spawned. A standby is used only where the
 * result is the same as a spawn: after a self-test at start has shown that the shell adds nothing
 * to the environment (dash does not; bash adds `SHLVL`), and when the request's directory exists,
 * its command is found as `execvp` would find it, and its variables' names are ones a shell can
 * export. Anything else is spawned directly, and so fails with its errno as before. A standby is
 * started again in a quiet moment after each use.
 */
const helperMain = (
  kinds: typeof Frame,
  holdBytes: number,
  standby: { readonly max: number; readonly shell: string; readonly quietMs: number; readonly refused: ReadonlyArray<string> }
) => {
  // What `ps` shows instead of this program's source.
  process.title = "starforge-spawn-helper"
  const { spawn } = process.getBuiltinModule("node:child_process") as typeof import("node:child_process")
  const fs = process.getBuiltinModule("node:fs") as typeof import("node:fs")
  const path = process.getBuiltinModule("node:path") as typeof import("node:path")
  type Child = import("node:child_process").ChildProcess
  type Request = { command: string; args: Array<string>; cwd: string; env: Record<string, string> }
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => {})
  const none = Buffer.alloc(0)
  /** The agents' pipes being read. */
  const pipes = new Set<import("node:stream").Readable>()
  let held = false
  // stdout (a socket) is written asynchronously: while the daemon does not keep up (more than
  // `holdBytes` wait to be written), no pipe is read, so an agent that writes faster than the
  // daemon logs waits on its full pipe, as it would if the daemon read it, instead of piling its
  // output up in the helper. Only then: a pipe held back mid-line lets the agent's other pipe
  // overtake it, which splits a line longer than the daemon's hold-back bound in the log.
  const frame = (id: number, kind: number, payload: Uint8Array) => {
    const header = Buffer.allocUnsafe(9)
    header.writeUInt32LE(id, 0)
    header[4] = kind
    header.writeUInt32LE(payload.length, 5)
    process.stdout.write(payload.length === 0 ? header : Buffer.concat([header, payload]))
    if (held || process.stdout.writableLength <= holdBytes) return
    held = true
    for (const pipe of pipes) pipe.pause()
    process.stdout.once("drain", () => {
      held = false
      for (const pipe of pipes) pipe.resume()
    })
  }
  const json = (id: number, kind: number, value: unknown) => frame(id, kind, Buffer.from(JSON.stringify(value)))
  /** Agents whose pipes may still be read, by request id. */
  const reading = new Map<number, Child>()

  /** The agent runs as `child`: its pid, then its output, its pipes' ends and its exit, as frames. */
  const attach = (id: number, child: Child) => {
    const pid = Buffer.allocUnsafe(4)
    pid.writeUInt32LE(child.pid!, 0)
    frame(id, kinds.spawned, pid)
    reading.set(id, child)
    let open = 2
    for (const [stream, data, end] of [[child.stdout!, kinds.stdout, kinds.stdoutEnd], [child.stderr!, kinds.stderr, kinds.stderrEnd]] as const) {
      stream.on("data", (chunk: Buffer) => frame(id, data, chunk))
      pipes.add(stream)
      if (held) stream.pause()
      let ended = false
      const finish = () => {
        if (ended) return
        ended = true
        pipes.delete(stream)
        frame(id, end, none)
        if (--open === 0) reading.delete(id)
      }
      stream.once("end", finish)
      stream.once("close", finish)
    }
    child.once("exit", (code, signal) => json(id, kinds.exit, { code, signal }))
  }

  const spawnDirectly = (id: number, request: Request) => {
    let child: Child
    try {
      child = spawn(request.command, request.args, { cwd: request.cwd, env: request.env, detached: true, stdio: ["ignore", "pipe", "pipe"] })
    } catch (e) {
      json(id, kinds.failed, { code: (e as NodeJS.ErrnoException).code, message: (e as Error).message })
      return
    }
    child.once("error", (error: NodeJS.ErrnoException) => {
      if (child.pid !== undefined) return
      child.stdout?.destroy()
      child.stderr?.destroy()
      json(id, kinds.failed, { code: error.code, message: error.message })
    })
    // 'spawn' comes before any byte can be read (the pipes buffer until a listener is added) and
    // before the exit.
    child.once("spawn", () => attach(id, child))
  }

  // ------------------------------------------------------------------------------------------
  // Standbys
  // ------------------------------------------------------------------------------------------

  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`
  const exportable = /^[A-Za-z_][A-Za-z0-9_]*$/
  const isFile = (file: string, mode: number) => {
    try {
      if (!fs.statSync(file).isFile()) return false
      fs.accessSync(file, mode)
      return true
    } catch {
      return false
    }
  }
  const isDirectory = (dir: string) => {
    try {
      return fs.statSync(dir).isDirectory()
    } catch {
      return false
    }
  }
  /** Found and executable as `execvp` in `cwd` with the request's `PATH` would find it. */
  const found = (request: Request) => {
    const { command, cwd, env } = request
    if (command.includes("/")) return isFile(path.resolve(cwd, command), fs.constants.X_OK)
    if (env["PATH"] === undefined || command === "") return false
    return env["PATH"].split(":").some((dir) => isFile(path.resolve(cwd, dir === "" ? "." : dir, command), fs.constants.X_OK))
  }
  /**
   * The line that makes a standby the agent, or undefined where a standby would not give the
   * same result as a spawn. `cd` first (it sets `PWD`), then the shell's own `PWD` and `OLDPWD`
   * go and the request's variables come, all single-quoted (a quoted newline stays in its value).
   */
  const execLine = (request: Request): string | undefined => {
    const { command, args, cwd, env } = request
    const names = Object.keys(env)
    if (!names.every((name) => exportable.test(name) && !standby.refused.includes(name))) return undefined
    if ([command, cwd, ...args, ...Object.values(env)].some((s) => typeof s !== "string" || s.includes("\0"))) return undefined
    if (!path.isAbsolute(cwd) || !isDirectory(cwd) || !found(request)) return undefined
    const exports = names.length === 0 ? "" : `export ${names.map((name) => `${name}=${quote(env[name]!)}`).join(" ")}\n`
    return `cd -P -- ${quote(cwd)} || exit 126\nunset PWD OLDPWD\n${exports}exec ${[command, ...args].map(quote).join(" ")} </dev/null\n`
  }

  /** Standbys waiting for a request, oldest first. */
  const ready: Array<Child> = []
  /** The self-test's outcome (null: not known yet). Until it has passed, every agent is spawned directly. */
  let works: boolean | null = null
  const report = () => json(0, kinds.standbys, { ready: ready.length, works })
  const startStandby = (): Child | undefined => {
    let child: Child
    try {
      child = spawn(standby.shell, ["-s"], { argv0: "starforge-agent-standby", cwd: "/", env: {}, detached: true, stdio: ["pipe", "pipe", "pipe"] })
    } catch {
      return undefined
    }
    // A standby that dies unused (killed by someone) leaves the pool; one that cannot start too.
    const leave = () => {
      const at = ready.indexOf(child)
      if (at < 0) return
      ready.splice(at, 1)
      report()
    }
    child.once("error", leave)
    child.once("exit", leave)
    // Written to once; a standby that died meanwhile must not take the helper with it.
    child.stdin!.on("error", () => {})
    return child
  }
  let refill: ReturnType<typeof setTimeout> | undefined
  const refillSoon = () => {
    if (refill !== undefined) clearTimeout(refill)
    refill = setTimeout(() => {
      refill = undefined
      if (works !== true || ready.length >= standby.max || !process.connected) return
      const child = startStandby()
      if (child === undefined) return
      ready.push(child)
      report()
      // One at a time: what the daemon sends meanwhile is read between two.
      refillSoon()
    }, standby.quietMs)
  }
  /**
   * Is this standby still waiting for its line? One killed or stopped by someone else may not
   * have been reaped yet (its exit not seen): it must not be given an agent. Without `/proc`
   * there is no telling, and it is taken as waiting.
   */
  const waiting = (child: Child) => {
    let stat: string
    try {
      stat = fs.readFileSync(`/proc/${child.pid}/stat`, "utf8")
    } catch {
      return !fs.existsSync("/proc/self/stat")
    }
    return "SRD".includes(stat.charAt(stat.lastIndexOf(")") + 2))
  }
  /** Starts the request's agent from a standby; false if there is none or it would not be the same. */
  const fromStandby = (id: number, request: Request): boolean => {
    if (works !== true || ready.length === 0) return false
    const line = execLine(request)
    if (line === undefined) return false
    for (let child = ready.shift(); child !== undefined; child = ready.shift()) {
      if (!waiting(child)) {
        child.kill("SIGKILL")
        continue
      }
      report()
      child.stdin!.end(line)
      attach(id, child)
      return true
    }
    report()
    return false
  }
  // The self-test: a standby runs `env` with one variable whose value holds a quote. It must
  // print that variable and nothing else (a shell that adds its own, bash's SHLVL, fails it). It
  // is also this process's first spawn, which is slow (its code is compiled, its caches are
  // cold): it is paid now, and the first agents do not wait for it.
  const selfTest = () => {
    const env = ["/usr/bin/env", "/bin/env"].find((file) => isFile(file, fs.constants.X_OK))
    const child = env === undefined ? undefined : startStandby()
    if (child === undefined) return
    const probe = { STARFORGE_STANDBY_PROBE: "it's \"quoted\" $HOME" }
    const line = execLine({ command: env!, args: [], cwd: "/", env: probe })
    let out = ""
    child.stdout!.on("data", (d: Buffer) => (out += d.toString("utf8")))
    child.stderr!.resume()
    child.once("exit", (code) => {
      works = code === 0 && out === `STARFORGE_STANDBY_PROBE=${probe.STARFORGE_STANDBY_PROBE}\n`
      report()
      refillSoon()
    })
    child.stdin!.end(line)
  }

  process.on("disconnect", () => {
    // Standbys go with the helper, before it exits: a stopped daemon leaves none behind.
    const idle = ready.splice(0)
    if (idle.length === 0) process.exit(0)
    let left = idle.length
    setTimeout(() => process.exit(0), 1_000).unref()
    for (const child of idle) {
      child.once("exit", () => --left === 0 && process.exit(0))
      child.kill("SIGKILL")
    }
  })
  process.on("message", (request: { op?: "close"; id: number } & Request) => {
    const { id } = request
    if (request.op === "close") {
      // The daemon stops reading (pipes held open by escaped processes): close them.
      const child = reading.get(id)
      child?.stdout?.destroy()
      child?.stderr?.destroy()
      return
    }
    if (!fromStandby(id, request)) spawnDirectly(id, request)
    refillSoon()
  })
  if (standby.max > 0) selfTest()
  else {
    // The first spawn() is slow (see the self-test): one that does nothing, now.
    try {
      spawn("/bin/sh", ["-c", ":"], { stdio: "ignore" }).once("error", () => {})
    } catch {
      // Then the first agent pays for it.
    }
  }
}

/**
 * An agent's exit, kept until someone listens: it may come before `onExit` is called (an agent
 * that exits at once) or after.
 */
const exitLatch = () => {
  let exited: { readonly code: number | null; readonly signal: string | null } | undefined
  let listener: ((code: number | null, signal: string | null) => void) | undefined
  return {
    report: (code: number | null, signal: string | null) => {
      exited = { code, signal }
      listener?.(code, signal)
    },
    onExit: (l: (code: number | null, signal: string | null) => void) => {
      if (exited) l(exited.code, exited.signal)
      else listener = l
    }
  }
}

/** A request sent to the helper, until its agent has exited and both its pipes have ended. */
interface Pending {
  readonly request: SpawnRequest
  readonly resolve: (result: SpawnedAgent | SpawnFailure) => void
  readonly exit: ReturnType<typeof exitLatch>
  /** From the `spawned` frame on: the agent runs, and its output comes here. */
  started?: { readonly pid: number; readonly pipes: readonly [Readable, Readable]; readonly ended: [boolean, boolean] }
  exited: boolean
  /** The daemon asked the helper to stop reading this agent's pipes. */
  closeSent: boolean
}

/** How long a closed helper may take to exit before it is killed (it exits within milliseconds). */
const HELPER_EXIT_MS = 2_000

/** How often an agent whose helper died is looked for in `/proc`. */
const ORPHAN_POLL_MS = 100

/** Spawns directly from this process: the fallback, and the behaviour before the helper. */
export const spawnDirect: SpawnAgent = (request) =>
  new Promise((resolve) => {
    let child: ChildProcess
    try {
      child = spawn(request.command, [...request.args], { cwd: request.cwd, env: request.env, detached: true, stdio: ["ignore", "pipe", "pipe"] })
    } catch (e) {
      resolve({ failed: { code: (e as NodeJS.ErrnoException).code, message: (e as Error).message } })
      return
    }
    const exit = exitLatch()
    child.once("exit", exit.report)
    child.once("error", (error: NodeJS.ErrnoException) => {
      if (child.pid === undefined) {
        child.stdout?.destroy()
        child.stderr?.destroy()
        resolve({ failed: { code: error.code, message: error.message } })
      }
    })
    child.once("spawn", () =>
      resolve({
        pid: child.pid!,
        stdout: child.stdout!,
        stderr: child.stderr!,
        onExit: exit.onExit
      }))
  })

/** How many standbys are ready, and whether the self-test passed (null: not known yet). */
export interface StandbyState {
  readonly ready: number
  readonly works: boolean | null
}
const NO_STANDBYS: StandbyState = { ready: 0, works: null }

export interface SpawnHelper {
  readonly spawn: SpawnAgent
  /**
   * Closes the channel; the helper exits (it is killed if it has not within `HELPER_EXIT_MS`).
   * Resolves once it is gone, so a daemon that stops leaves no helper behind. Agents still
   * running are not touched.
   */
  readonly close: () => Promise<void>
  /** The helper's pid while it runs (for diagnostics and tests). */
  readonly pid: () => number | undefined
  /** The helper's standbys as it last reported them (for diagnostics and tests). */
  readonly standbys: () => StandbyState
}

/**
 * A helper process started now (in the background: the first spawn waits for it only as long as
 * it takes Node to start). `isAlive(pid)` tells whether an agent whose helper died still runs.
 */
export const startSpawnHelper = (
  isAlive: (pid: number) => boolean,
  options: {
    /** How many standbys the helper keeps (see `helperMain`); 0: none, every agent is spawned. */
    readonly standbys?: number
    /** The POSIX shell the standbys run (a test gives one that fails the self-test). */
    readonly shell?: string
  } = {}
): SpawnHelper => {
  const standby = {
    max: Math.max(0, Math.min(options.standbys ?? STANDBYS_MAX, STANDBYS_MAX)),
    shell: options.shell ?? "/bin/sh",
    quietMs: STANDBY_REFILL_QUIET_MS,
    refused: STANDBY_REFUSED_NAMES
  }
  let helper: ChildProcess | undefined
  let standbys: StandbyState = NO_STANDBYS
  let nextId = 1
  const pending = new Map<number, Pending>()
  let closed = false

  const settle = (id: number, p: Pending) => {
    if (p.exited && p.started !== undefined && p.started.ended[0] && p.started.ended[1]) pending.delete(id)
  }

  /** Ends one of the agent's pipes as the daemon sees it (it may have been destroyed already). */
  const endPipe = (p: Pending, index: 0 | 1) => {
    const started = p.started!
    if (started.ended[index]) return
    started.ended[index] = true
    const pipe = started.pipes[index]
    if (!pipe.destroyed) pipe.push(null)
  }

  /** A pipe of the agent as the daemon reads it: what the helper forwards, pushed as it comes. */
  const pipeOf = (id: number, p: Pending, index: 0 | 1, channel: ChildProcess): Readable =>
    new Readable({
      read() {},
      destroy(error, callback) {
        // Abandoned before its end (escaped processes hold the pipe): the helper closes it.
        if (!p.started!.ended[index] && !p.closeSent && channel.connected) {
          p.closeSent = true
          channel.send({ op: "close", id })
        }
        callback(error)
      }
    })

  const onFrame = (channel: ChildProcess, id: number, kind: number, payload: Buffer) => {
    if (kind === Frame.standbys) {
      standbys = JSON.parse(payload.toString("utf8")) as StandbyState
      return
    }
    const p = pending.get(id)
    if (p === undefined) return
    switch (kind) {
      case Frame.spawned: {
        const started = { pid: payload.readUInt32LE(0), pipes: [pipeOf(id, p, 0, channel), pipeOf(id, p, 1, channel)] as const, ended: [false, false] as [boolean, boolean] }
        p.started = started
        p.resolve({ pid: started.pid, stdout: started.pipes[0], stderr: started.pipes[1], onExit: p.exit.onExit })
        break
      }
      case Frame.failed:
        pending.delete(id)
        p.resolve({ failed: JSON.parse(payload.toString("utf8")) })
        break
      case Frame.stdout:
      case Frame.stderr: {
        const pipe = p.started?.pipes[kind === Frame.stdout ? 0 : 1]
        if (pipe !== undefined && !pipe.destroyed) pipe.push(payload)
        break
      }
      case Frame.stdoutEnd:
      case Frame.stderrEnd:
        if (p.started === undefined) break
        endPipe(p, kind === Frame.stdoutEnd ? 0 : 1)
        settle(id, p)
        break
      case Frame.exit: {
        const { code, signal } = JSON.parse(payload.toString("utf8")) as { code: number | null; signal: string | null }
        p.exited = true
        p.exit.report(code, signal)
        settle(id, p)
        break
      }
    }
  }

  /** The helper is gone: start what it had not started, and follow its agents through /proc. */
  const orphanAll = () => {
    for (const [id, p] of pending) {
      pending.delete(id)
      if (p.started === undefined) {
        // Not started (or not known to have started) by the helper: start it here instead (the
        // window this leaves is in the module comment).
        spawnDirect(p.request).then(p.resolve)
        continue
      }
      // What the helper had not forwarded went with it.
      endPipe(p, 0)
      endPipe(p, 1)
      if (p.exited) continue
      const pid = p.started.pid
      const poll = setInterval(() => {
        if (isAlive(pid)) return
        clearInterval(poll)
        p.exit.report(null, "unknown (the spawn helper process died)")
      }, ORPHAN_POLL_MS)
    }
  }

  const start = (): ChildProcess | undefined => {
    if (closed) return undefined
    let child: ChildProcess
    try {
      child = spawn(process.execPath, [...HELPER_NODE_OPTIONS, "-e", `(${helperMain.toString()})(${JSON.stringify(Frame)}, ${HELPER_HOLD_BYTES}, ${JSON.stringify(standby)})`], {
        detached: true,
        stdio: ["ignore", "pipe", "inherit", "ipc"],
        env: process.env
      })
    } catch {
      return undefined
    }
    // Frames may be split across reads: what is left of one waits for the next read.
    let partial: Buffer | undefined
    child.stdout!.on("data", (chunk: Buffer) => {
      const data = partial === undefined ? chunk : Buffer.concat([partial, chunk])
      let at = 0
      while (data.length - at >= FRAME_HEADER_BYTES) {
        const length = data.readUInt32LE(at + 5)
        if (data.length - at - FRAME_HEADER_BYTES < length) break
        onFrame(child, data.readUInt32LE(at), data[at + 4]!, data.subarray(at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + length))
        at += FRAME_HEADER_BYTES + length
      }
      partial = at === data.length ? undefined : data.subarray(at)
    })
    const gone = () => {
      if (helper === child) {
        helper = undefined
        standbys = NO_STANDBYS
      }
      orphanAll()
    }
    // 'close': after the exit and the end of its stdout, so every frame it wrote has been read.
    child.once("close", gone)
    child.once("error", gone)
    return child
  }

  helper = start()
  return {
    spawn: (request) => {
      helper ??= start()
      const current = helper
      if (current === undefined || !current.connected) return spawnDirect(request)
      return new Promise((resolve) => {
        const id = nextId++
        pending.set(id, { request, resolve, exit: exitLatch(), exited: false, closeSent: false })
        current.send({ id, command: request.command, args: request.args, cwd: request.cwd, env: request.env }, (error: Error | null) => {
          if (error === null) return
          // The channel broke before the request went out: start it directly instead.
          if (pending.delete(id)) spawnDirect(request).then(resolve)
        })
      })
    },
    close: () => {
      closed = true
      const current = helper
      helper = undefined
      if (current === undefined || current.exitCode !== null || current.signalCode !== null) return Promise.resolve()
      return new Promise<void>((resolve) => {
        const kill = setTimeout(() => current.kill("SIGKILL"), HELPER_EXIT_MS)
        current.once("exit", () => {
          clearTimeout(kill)
          resolve()
        })
        if (current.connected) current.disconnect()
        else current.kill("SIGKILL")
      })
    },
    pid: () => helper?.pid,
    standbys: () => standbys
  }
}
