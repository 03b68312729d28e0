/**
 * One daemon per project. The lock is a unix socket: only one process can listen on an address
 * at a time, and the kernel stops the listening when its holder dies, however it dies. The
 * socket also answers every connection with the holder's announcement (one line of JSON), which
 * is how the CLI finds the project's daemon and tells it from a process that merely reused the
 * pid in `C/daemon.pid`.
 *
 * Where the address lives differs: Linux has abstract socket names (no file, nothing stale);
 * elsewhere a socket file stands in a directory of the project, and a file left by a dead holder
 * is taken over (see `posix.ts`).
 */
import * as net from "node:net"
import { Context, Data, Effect, Layer, type Scope } from "effect"
import { StorageError } from "../domain/errors.js"

/** Someone holds the lock; `answer` is what it announced (undefined: it did not answer). */
export class LockHeld extends Data.TaggedError("LockHeld")<{ readonly answer: string | undefined }> {}

export interface InstanceLockShape {
  /**
   * Holds the lock of the project at `root` for the life of the scope, answering every
   * connection with `answer`. Fails with `LockHeld` when another process holds it.
   */
  readonly hold: (root: string, answer: string) => Effect.Effect<void, LockHeld | StorageError, Scope.Scope>
  /** What the holder of the project's lock announces; undefined when nobody holds it. */
  readonly probe: (root: string, timeoutMs?: number) => Effect.Effect<string | undefined>
  /** The socket address of the project's lock (for diagnostics and tests). */
  readonly address: (root: string) => string
}

export class InstanceLock extends Context.Tag("starforge/InstanceLock")<InstanceLock, InstanceLockShape>() {
  /**
   * Test double: locks held within this process only, one per project root, no socket. For a
   * program that runs the daemon (or several) without touching the machine's sockets.
   */
  static readonly memory: Layer.Layer<InstanceLock> = Layer.sync(InstanceLock, () => {
    const held = new Map<string, string>()
    return {
      hold: (root, answer) =>
        Effect.acquireRelease(
          Effect.suspend(() => {
            if (held.has(root)) return Effect.fail(new LockHeld({ answer: held.get(root) }))
            held.set(root, answer)
            return Effect.void
          }),
          () => Effect.sync(() => held.delete(root))
        ),
      probe: (root) => Effect.sync(() => held.get(root)),
      address: (root) => `memory:${root}`
    }
  })
}

/** Listens on `address`, answering each connection with `answer`; false when the address is taken. */
export const listen = (address: string, answer: string): Effect.Effect<boolean, never, Scope.Scope> =>
  Effect.gen(function*() {
    const connections = new Set<net.Socket>()
    const server = net.createServer((socket) => {
      connections.add(socket)
      socket.on("close", () => connections.delete(socket))
      socket.on("error", () => socket.destroy())
      socket.end(answer + "\n")
    })
    const bound = yield* Effect.async<boolean>((resume) => {
      server.once("error", () => resume(Effect.succeed(false)))
      server.listen(address, () => resume(Effect.succeed(true)))
    })
    if (!bound) return false
    yield* Effect.addFinalizer(() =>
      Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
        // A client that keeps its end open must not hold the shutdown.
        for (const socket of connections) socket.destroy()
      })
    )
    return true
  })

/** What answers on `address` (its first line), or why nothing does. */
export type Answer =
  | { readonly _tag: "Answered"; readonly line: string }
  | { readonly _tag: "Silent" }
  /** Nothing listens there (ECONNREFUSED, ENOENT): a socket file left by a dead holder. */
  | { readonly _tag: "Nobody" }

export const ask = (address: string, timeoutMs = 2_000): Effect.Effect<Answer> =>
  Effect.async<Answer>((resume) => {
    const socket = net.connect(address)
    let data = ""
    let finished = false
    const done = (answer: Answer) => {
      if (finished) return
      finished = true
      clearTimeout(timer)
      socket.destroy()
      resume(Effect.succeed(answer))
    }
    const timer = setTimeout(() => done({ _tag: "Silent" }), timeoutMs)
    socket.setEncoding("utf8")
    socket.on("data", (chunk) => {
      data += chunk
      const nl = data.indexOf("\n")
      if (nl >= 0) done({ _tag: "Answered", line: data.slice(0, nl) })
    })
    socket.on("error", (error: NodeJS.ErrnoException) =>
      done(error.code === "ECONNREFUSED" || error.code === "ENOENT" ? { _tag: "Nobody" } : { _tag: "Silent" }))
    socket.on("close", () => done({ _tag: "Silent" }))
    return Effect.sync(() => {
      clearTimeout(timer)
      socket.destroy()
    })
  })

/** The line the holder at `address` announced; undefined when nobody answers. */
export const answerAt = (address: string, timeoutMs?: number): Effect.Effect<string | undefined> =>
  Effect.map(ask(address, timeoutMs), (answer) => (answer._tag === "Answered" ? answer.line : undefined))

export const lockError = (root: string, cause: unknown) => new StorageError({ operation: "locking", path: root, cause })
