/**
 * The spawn helper: a small Node process, started once by the daemon (`SpawnHelper.ts`), that
 * starts the agents for it. Node's `spawn` forks, and a fork copies the page tables of the
 * forking process: ~3 ms of the daemon's main thread per agent (~150 MB resident), far less from
 * this bare process. Bundled on its own (dist/spawn-helper.cjs): node built-ins, the frame codec
 * and the line buffer, nothing else.
 *
 * Requests come as frames on stdin, replies go as frames on stdout (`helperFrames.ts`). Each
 * agent is spawned exactly as `Spawner.direct` does: detached (its own process group and
 * session), stdin `/dev/null`, stdout and stderr pipes read from the spawn on, each cut into
 * whole lines on its own. The daemon signals the agents' groups itself.
 *
 * Back-pressure: when a write on stdout is refused (the daemon does not keep up), no agent pipe
 * is read until 'drain': an agent that writes faster than the daemon reads waits on its full
 * pipe, as it would if the daemon read it, and its output never piles up here.
 *
 * It ignores SIGINT, SIGTERM and SIGHUP (a Ctrl-C in the daemon's terminal reaches the whole
 * foreground group: the daemon must stop its agents before the helper goes) and exits when its
 * stdin ends: the daemon closed it or died. Agents then lose the rest of their output.
 */
import { type ChildProcess, spawn } from "node:child_process"
import type { Readable } from "node:stream"
import { encode, type Frame, FrameError, Kind, makeDecoder, type Request } from "./helperFrames.js"
import { lineMerger } from "./lines.js"
import type { SpawnRequest } from "./Spawner.js"

process.title = "starforge-spawn-helper"
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => {})

/** Every agent pipe still read (paused together under back-pressure). */
const reading = new Set<Readable>()
/** Agents whose pipes have not both ended, by request id: what `Close` closes. */
const agents = new Map<number, ReadonlyArray<{ readonly pipe: Readable; readonly finish: () => void }>>()
let held = false

const send = (frame: Frame) => {
  if (process.stdout.write(encode(frame)) || held) return
  held = true
  for (const pipe of reading) pipe.pause()
  process.stdout.once("drain", () => {
    held = false
    for (const pipe of reading) pipe.resume()
  })
}

/** The agent runs as `child`: its pid, then its output, the end of its pipes and its exit. */
const attach = (id: number, child: ChildProcess) => {
  send({ kind: Kind.Spawned, id, pid: child.pid! })
  let open = 2
  const lines = lineMerger(2)
  const output = (bytes: Buffer) => {
    if (bytes.length > 0) send({ kind: Kind.Output, id, bytes })
  }
  const pipes = [child.stdout!, child.stderr!].map((pipe, index) => {
    let done = false
    // The end of the data ('end'; 'close' if the pipe broke or was closed first), once.
    const finish = () => {
      if (done) return
      done = true
      lines.end(index).forEach(output)
      reading.delete(pipe)
      pipe.destroy()
      if (--open > 0) return
      agents.delete(id)
      send({ kind: Kind.OutputEnd, id })
    }
    pipe.on("data", (chunk: Buffer) => {
      if (!done) lines.push(index, chunk).forEach(output)
    })
    pipe.once("end", finish)
    pipe.once("close", finish)
    pipe.once("error", finish)
    reading.add(pipe)
    if (held) pipe.pause()
    return { pipe, finish }
  })
  agents.set(id, pipes)
  child.once("exit", (code, signal) => send({ kind: Kind.Exit, id, code, signal }))
}

const failed = (id: number, error: NodeJS.ErrnoException) =>
  send({ kind: Kind.SpawnFailed, id, code: error.code, message: error.message })

const start = (id: number, request: SpawnRequest) => {
  let child: ChildProcess
  try {
    child = spawn(request.command, [...request.args], {
      cwd: request.cwd,
      env: request.env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"]
    })
  } catch (e) {
    return failed(id, e as NodeJS.ErrnoException)
  }
  const onError = (error: NodeJS.ErrnoException) => {
    child.off("spawn", onSpawn)
    child.stdout?.destroy()
    child.stderr?.destroy()
    failed(id, error)
  }
  // 'spawn' comes before any output is read and before the exit.
  const onSpawn = () => {
    child.off("error", onError)
    attach(id, child)
  }
  child.once("error", onError)
  child.once("spawn", onSpawn)
}

const handle = (request: Request) => {
  switch (request.kind) {
    case Kind.Spawn:
      return start(request.id, request.request)
    case Kind.Close:
      // The daemon stops reading (escaped processes hold the pipes open): what is held back
      // goes, the pipes are closed (their writers' next write fails), then `OutputEnd`.
      for (const { finish } of agents.get(request.id) ?? []) finish()
  }
}

const decode = makeDecoder()
process.stdin.on("data", (chunk: Buffer) => {
  let frames: Array<Frame>
  try {
    frames = decode(chunk)
  } catch (e) {
    process.stderr.write(`starforge spawn helper: ${e instanceof FrameError ? e.message : String(e)}\n`)
    process.exit(2)
  }
  for (const frame of frames) {
    if (frame.kind === Kind.Spawn || frame.kind === Kind.Close) handle(frame)
  }
})
// The daemon closed the channel or died: nothing will read what the agents write.
process.stdin.once("end", () => process.exit(0))
process.stdin.once("error", () => process.exit(0))
process.stdout.on("error", () => process.exit(0))

// The first spawn of a process is slow (its code is compiled, its caches are cold): paid now,
// with one that does nothing, not by the first agent.
try {
  spawn("/bin/sh", ["-c", ":"], { stdio: "ignore" }).once("error", () => {})
} catch {
  // Then the first agent pays for it.
}
