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
import { DaemonAlreadyRunning, StorageError } from "../domain/errors.js"
import type { ProjectPaths } from "../domain/ProjectPaths.js"
import { writeFileAtomic } from "../io/stateFile.js"

export interface Hello {
  readonly pid: number
  readonly project: string
  readonly started: string
  /** The settings the daemon runs with (the CLI's own may differ). */
  readonly settings: {
    readonly parallel: boolean
    readonly max_concurrent: number
    readonly kill_grace_ms: number
  }
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
        const hello = JSON.parse(data.slice(0, nl)) as Hello
        done(hello.project === paths.root && Number.isInteger(hello.pid) ? hello : undefined)
      } catch {
        done(undefined)
      }
    })
    socket.on("error", () => done(undefined))
    socket.on("close", () => done(undefined))
  })

export const probeEffect = (paths: ProjectPaths) => Effect.promise(() => probe(paths))

/**
 * Is `hello` really this project's daemon, one we may signal? The socket's name is public, so
 * the pid it announces must also be in `C/daemon.pid` (which only the project's owner can write)
 * and run as this user.
 */
export const isOurDaemon = (paths: ProjectPaths, hello: Hello): boolean => {
  try {
    if (fs.readFileSync(paths.pidFile, "utf8").trim() !== String(hello.pid)) return false
    const status = fs.readFileSync(`/proc/${hello.pid}/status`, "utf8")
    const uid = /^Uid:\s+(\d+)/m.exec(status)?.[1]
    return uid !== undefined && Number(uid) === process.getuid?.()
  } catch {
    return false
  }
}

export class DaemonInstance extends Context.Tag("starforge/DaemonInstance")<DaemonInstance, Hello>() {
  /**
   * Holds the project's lock for the life of the scope and keeps `C/daemon.pid` up to date.
   * Fails with `DaemonAlreadyRunning` when another daemon holds it.
   */
  static readonly layer = Layer.scoped(
    DaemonInstance,
    Effect.gen(function*() {
      const { paths, settings } = yield* DaemonConfig
      const hello: Hello = {
        pid: process.pid,
        project: paths.root,
        started: new Date().toISOString(),
        settings: {
          parallel: settings.parallel,
          max_concurrent: settings.parallel ? settings.maxConcurrent : 1,
          kill_grace_ms: settings.killGraceMs
        }
      }
      const connections = new Set<net.Socket>()
      const server = net.createServer((socket) => {
        connections.add(socket)
        socket.on("close", () => connections.delete(socket))
        socket.on("error", () => socket.destroy())
        socket.end(JSON.stringify(hello) + "\n")
      })
      const bound = yield* Effect.async<boolean>((resume) => {
        server.once("error", () => resume(Effect.succeed(false)))
        server.listen(socketName(paths), () => resume(Effect.succeed(true)))
      })
      if (!bound) {
        const other = yield* probeEffect(paths)
        if (other) return yield* Effect.fail(new DaemonAlreadyRunning({ pid: other.pid }))
        return yield* Effect.fail(
          new StorageError({
            operation: "locking",
            path: paths.root,
            cause: new Error("the project's lock is held by a process that does not answer as its daemon; no daemon was started")
          })
        )
      }
      yield* Effect.addFinalizer(() =>
        Effect.async<void>((resume) => {
          server.close(() => resume(Effect.void))
          // A client that keeps its end open must not hold the shutdown.
          for (const socket of connections) socket.destroy()
        })
      )
      yield* Effect.try({
        try: () => fs.mkdirSync(paths.claude, { recursive: true }),
        catch: (cause) => new StorageError({ operation: "creating", path: paths.claude, cause })
      })
      yield* writeFileAtomic(paths.pidFile, `${process.pid}\n`)
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
