/**
 * One daemon per project: the project's `InstanceLock` (see `platform/InstanceLock.ts`) held for
 * the daemon's life, answering with the daemon's `Hello`, and `C/daemon.pid` kept up to date.
 * The CLI finds the daemon through the same lock (`probe`).
 */
import * as fs from "node:fs"
import { Context, Effect, Layer } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { DaemonAlreadyRunning, StorageError } from "../domain/errors.js"
import type { ProjectPaths } from "../domain/ProjectPaths.js"
import { writeFileAtomic } from "../io/stateFile.js"
import { InstanceLock } from "../platform/InstanceLock.js"
import { ProcessTable } from "../platform/ProcessTable.js"

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

/** The announcement of `paths`' daemon in `line`; undefined when it is not one. */
const helloOf = (paths: ProjectPaths, line: string | undefined): Hello | undefined => {
  if (line === undefined) return undefined
  try {
    const hello = JSON.parse(line) as Hello
    return hello.project === paths.root && Number.isInteger(hello.pid) ? hello : undefined
  } catch {
    return undefined
  }
}

/** Asks the project's daemon who it is; undefined when none runs. */
export const probe = (paths: ProjectPaths, timeoutMs = 2_000) =>
  Effect.flatMap(InstanceLock, (lock) => Effect.map(lock.probe(paths.root, timeoutMs), (line) => helloOf(paths, line)))

/** What `C/daemon.pid` says, trimmed; undefined when it cannot be read. */
export const recordedPid = (paths: ProjectPaths) =>
  Effect.sync(() => {
    try {
      return fs.readFileSync(paths.pidFile, "utf8").trim()
    } catch {
      return undefined
    }
  })

/**
 * Is `hello` really this project's daemon, one we may signal? The lock's address is public, so
 * the pid it announces must also be in `C/daemon.pid` (which only the project's owner can write)
 * and run as this user.
 */
export const isOurDaemon = (paths: ProjectPaths, hello: Hello) =>
  Effect.gen(function*() {
    const recorded = yield* recordedPid(paths)
    if (recorded !== String(hello.pid)) return false
    const owner = yield* Effect.flatMap(ProcessTable, (table) => table.ownerOf(hello.pid))
    return owner !== undefined && owner === process.getuid?.()
  })

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
      const lock = yield* InstanceLock
      yield* lock.hold(paths.root, JSON.stringify(hello)).pipe(
        Effect.catchTag("LockHeld", (held): Effect.Effect<never, DaemonAlreadyRunning | StorageError> => {
          const other = helloOf(paths, held.answer)
          return other
            ? Effect.fail(new DaemonAlreadyRunning({ pid: other.pid }))
            : Effect.fail(
              new StorageError({
                operation: "locking",
                path: paths.root,
                cause: new Error("the project's lock is held by a process that does not answer as its daemon; no daemon was started")
              })
            )
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
