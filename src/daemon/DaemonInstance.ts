/**
 * One daemon per project. The lock is a Linux abstract unix socket named after the project
 * root: binding it is atomic (two simultaneous starts cannot both win) and the kernel releases
 * it when the holder dies, however it dies, so there is no stale lock to guess about. The socket
 * also answers "who are you?", which is how the CLI tells this project's daemon from a process
 * that merely reused the pid in `C/daemon.pid`.
 */
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import { Context, Effect, Layer } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { DaemonAlreadyRunning } from "../domain/errors.js"
import type { ProjectPaths } from "../domain/ProjectPaths.js"
import { writeFileAtomic } from "../slots/AgentSlots.js"

export interface Hello {
  readonly pid: number
  readonly project: string
  readonly started: string
}

export const socketName = (paths: ProjectPaths): string =>
  "\0starforge-" + crypto.createHash("sha256").update(paths.root).digest("hex").slice(0, 40)

/** Asks the project's daemon who it is; undefined when none runs. */
export const probe = (paths: ProjectPaths, timeoutMs = 2_000): Promise<Hello | undefined> =>
  new Promise((resolve) => {
    const socket = net.connect(socketName(paths))
    let data = ""
    const done = (hello: Hello | undefined) => {
      clearTimeout(timer)
      socket.destroy()
      resolve(hello)
    }
    const timer = setTimeout(() => done(undefined), timeoutMs)
    socket.setEncoding("utf8")
    socket.on("data", (chunk) => {
      data += chunk
      const nl = data.indexOf("\n")
      if (nl < 0) return
      try {
        done(JSON.parse(data.slice(0, nl)) as Hello)
      } catch {
        done(undefined)
      }
    })
    socket.on("error", () => done(undefined))
    socket.on("close", () => done(undefined))
  })

export const probeEffect = (paths: ProjectPaths) => Effect.promise(() => probe(paths))

export class DaemonInstance extends Context.Tag("starforge/DaemonInstance")<DaemonInstance, Hello>() {
  /**
   * Holds the project's lock for the life of the scope and keeps `C/daemon.pid` up to date.
   * Fails with `DaemonAlreadyRunning` when another daemon holds it.
   */
  static readonly layer = Layer.scoped(
    DaemonInstance,
    Effect.gen(function*() {
      const { paths } = yield* DaemonConfig
      const hello: Hello = { pid: process.pid, project: paths.root, started: new Date().toISOString() }
      const server = net.createServer((socket) => {
        socket.on("error", () => socket.destroy())
        socket.end(JSON.stringify(hello) + "\n")
      })
      const bound = yield* Effect.async<boolean>((resume) => {
        server.once("error", () => resume(Effect.succeed(false)))
        server.listen(socketName(paths), () => resume(Effect.succeed(true)))
      })
      if (!bound) {
        const other = yield* probeEffect(paths)
        return yield* Effect.fail(new DaemonAlreadyRunning({ pid: other?.pid ?? 0 }))
      }
      yield* Effect.addFinalizer(() => Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
      }))
      fs.mkdirSync(paths.claude, { recursive: true })
      yield* writeFileAtomic(paths.pidFile, `${process.pid}\n`).pipe(Effect.orDie)
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          try {
            if (fs.readFileSync(paths.pidFile, "utf8").trim() === String(process.pid)) fs.rmSync(paths.pidFile)
          } catch {
            // Already gone.
          }
        })
      )
      return hello
    })
  )
}
