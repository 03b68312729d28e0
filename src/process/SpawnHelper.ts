/**
 * Starts agents from a small helper process instead of from the daemon itself.
 *
 * Why: Node's `child_process.spawn` forks (libuv 1.46 on Linux), and a fork copies the page
 * tables of the parent's memory; the parent waits until the child has run `exec`. From the
 * daemon (80–130 MiB resident) one `spawn()` held its event loop for 9–20 ms; from a bare Node
 * process of 45 MiB it takes 2–3 ms (bench B3 and B4 measure both). The helper is such a bare
 * process, started once: it spawns each agent exactly as the daemon did (its own process group
 * and session, stdin closed, stdout and stderr pipes), hands the two pipe ends to the daemon over
 * its IPC channel, and reports the exit. The daemon drains the pipes and signals the process
 * group itself, as before; the helper holds nothing else.
 *
 * Exits are reported on the helper's stdout, one line each, not on the IPC channel: Node queues
 * every message sent after a pipe end until the daemon has acknowledged that pipe end, so an
 * exit would wait for a round trip through the daemon's event loop per pipe end sent before it
 * (8 agents ending at once: 5–25 ms). An exit may so arrive before the agent's pipe ends do.
 *
 * The helper lives in a process group of its own and ignores SIGINT/SIGTERM/SIGHUP (a Ctrl-C in
 * the daemon's terminal must not take it before the daemon has stopped its agents); it exits
 * when the daemon closes the channel or dies. If it cannot be started or dies, agents are
 * spawned by the daemon directly (a request it had not answered too), and an agent whose helper
 * died is followed through `/proc` until it is gone (its exit status is then unknown and reported
 * as such). One window is left: a helper killed after starting an agent but before naming it; the
 * agent is then started again directly, and the first copy is only found (by its environment)
 * at the daemon's next start.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { Readable } from "node:stream"

/** One agent started by the helper (or directly). */
export interface SpawnedAgent {
  readonly pid: number
  /** The pipes; one handed over by the helper may have ended already (`readableEnded`) when it arrives. */
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
 * The helper's program, run with `node -e`. Self-contained: it is sent as source text, so it
 * refers to nothing outside itself.
 */
const helperMain = () => {
  // What `ps` shows instead of this program's source.
  process.title = "starforge-spawn-helper"
  const { spawn } = process.getBuiltinModule("node:child_process") as typeof import("node:child_process")
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => {})
  process.on("disconnect", () => process.exit(0))
  const send = (message: unknown, handle?: import("node:net").Socket) =>
    process.connected && process.send!(message, handle as never, { keepOpen: false } as never)
  // A pipe: written synchronously, so a line is never lost when the helper exits.
  const reportExit = (id: number, pid: number, code: number | null, signal: string | null) =>
    process.stdout.write(`${JSON.stringify({ id, pid, code, signal })}\n`)
  process.on("message", (request: { id: number; command: string; args: Array<string>; cwd: string; env: Record<string, string> }) => {
    const { id } = request
    let child: import("node:child_process").ChildProcess
    try {
      child = spawn(request.command, request.args, { cwd: request.cwd, env: request.env, detached: true, stdio: ["ignore", "pipe", "pipe"] })
    } catch (e) {
      send({ id, op: "failed", code: (e as NodeJS.ErrnoException).code, message: (e as Error).message })
      return
    }
    // Node's sockets for the pipes start reading at once; what they read here would be lost when
    // the pipe ends go to the daemon. Stopped now, before the event loop can deliver any byte:
    // the agent's output waits in the pipe for the daemon.
    for (const stream of [child.stdout, child.stderr]) {
      ;(stream as unknown as { _handle?: { readStop?: () => void; reading?: boolean } })?._handle?.readStop?.()
      stream?.pause()
    }
    child.once("error", (error: NodeJS.ErrnoException) => {
      if (child.pid === undefined) send({ id, op: "failed", code: error.code, message: error.message })
    })
    child.once("spawn", () => {
      // In order: the pid with stdout, then stderr, then (later) the exit.
      send({ id, op: "stdout", pid: child.pid }, child.stdout as never)
      send({ id, op: "stderr" }, child.stderr as never)
    })
    child.once("exit", (code, signal) => reportExit(id, child.pid!, code, signal))
  })
  // A Node process's first spawn() takes 7-8 ms (its code is compiled, its caches are cold), the
  // next ones 2-3 ms: one that does nothing, now, and the first agents do not wait for it.
  try {
    spawn("/bin/sh", ["-c", ":"], { stdio: "ignore" }).once("error", () => {})
  } catch {
    // Then the first agent pays for it.
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

interface Pending {
  readonly request: SpawnRequest
  readonly resolve: (result: SpawnedAgent | SpawnFailure) => void
  readonly exit: ReturnType<typeof exitLatch>
  pid?: number
  stdout?: Readable
  /** Both pipe ends arrived: the spawn was answered. */
  started: boolean
  /** The exit arrived (it may come before the pipe ends). */
  exited: boolean
}

/** A reported exit, one line of the helper's stdout. */
interface ExitLine {
  readonly id: number
  readonly pid: number
  readonly code: number | null
  readonly signal: string | null
}

/** A pipe with nothing left in it. */
const endedPipe = (): Readable => {
  const pipe = Readable.from([])
  pipe.resume()
  return pipe
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
}

/**
 * A helper process started now (in the background: the first spawn waits for it only as long as
 * it takes Node to start). `isAlive(pid)` tells whether an agent whose helper died still runs.
 */
export const startSpawnHelper = (isAlive: (pid: number) => boolean): SpawnHelper => {
  let helper: ChildProcess | undefined
  let nextId = 1
  const pending = new Map<number, Pending>()
  let closed = false

  /** The helper is gone: start what it had not started, and follow its agents through /proc. */
  const orphanAll = () => {
    for (const [id, p] of pending) {
      pending.delete(id)
      if (!p.started && p.exited) {
        // Started and ended, but the helper died before handing over both pipe ends: whatever
        // was not handed over went with it.
        p.resolve({ pid: p.pid!, stdout: p.stdout ?? endedPipe(), stderr: endedPipe(), onExit: p.exit.onExit })
        continue
      }
      if (!p.started) {
        // Not started (or not known to have started) by the helper: start it here instead (the
        // window this leaves is in the module comment).
        spawnDirect(p.request).then(p.resolve)
        continue
      }
      const pid = p.pid!
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
      child = spawn(process.execPath, [...HELPER_NODE_OPTIONS, "-e", `(${helperMain.toString()})()`], {
        detached: true,
        stdio: ["ignore", "pipe", "inherit", "ipc"],
        env: process.env
      })
    } catch {
      return undefined
    }
    child.on("message", (message: { id: number; op: string; pid?: number; code?: number | null; signal?: string | null; message?: string }, handle?: Readable) => {
      const p = pending.get(message.id)
      if (p === undefined) {
        handle?.destroy()
        return
      }
      switch (message.op) {
        case "failed":
          pending.delete(message.id)
          p.resolve({ failed: { code: message.code as string | undefined, message: message.message ?? "cannot start" } })
          break
        case "stdout":
          p.pid = message.pid!
          p.stdout = handle
          break
        case "stderr": {
          p.started = true
          if (p.exited) pending.delete(message.id)
          p.resolve({
            pid: p.pid!,
            stdout: p.stdout!,
            stderr: handle!,
            onExit: p.exit.onExit
          })
          break
        }
      }
    })
    let partial = ""
    child.stdout!.setEncoding("utf8")
    child.stdout!.on("data", (chunk: string) => {
      const lines = (partial + chunk).split("\n")
      partial = lines.pop()!
      for (const line of lines) {
        let exit: ExitLine
        try {
          exit = JSON.parse(line)
        } catch {
          continue
        }
        const p = pending.get(exit.id)
        if (p === undefined) continue
        p.exited = true
        p.pid ??= exit.pid
        if (p.started) pending.delete(exit.id)
        p.exit.report(exit.code, exit.signal)
      }
    })
    const gone = () => {
      if (helper === child) helper = undefined
      orphanAll()
    }
    // 'close': after the exit and the end of its stdout, so every exit it reported has been read.
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
        pending.set(id, { request, resolve, exit: exitLatch(), started: false, exited: false })
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
    pid: () => helper?.pid
  }
}
