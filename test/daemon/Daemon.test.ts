/**
 * The daemon embedded as a library: `Daemon.run` in this process, real agents, real files.
 */
import * as fs from "node:fs"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Logger } from "effect"
import { Daemon } from "../../src/index.js"
import { archivedTriggers, pidFile, readSlots, readState } from "../support/daemonHelpers.js"
import { listDir, type TestProject, trigger, useProjects, waitFor } from "../support/project.js"

const projects = useProjects()

const flags = (p: TestProject) => ({ ...p.env })
/** The daemon's events also reach Effect's logger; keep the test output quiet. */
const quiet = Logger.remove(Logger.defaultLogger)

describe("Daemon as a library", () => {
  it.live("runs triggers and shuts down cleanly when its fiber is interrupted", () =>
    Effect.gen(function*() {
      const p = projects.make()
      let ready = 0
      const fiber = yield* Daemon.run({
        project: p.root,
        env: {},
        flags: flags(p),
        onReady: (hello) => Effect.sync(() => void (ready = hello.pid))
      }).pipe(Effect.provide(quiet), Effect.fork)
      yield* Effect.promise(() => waitFor(() => ready !== 0, { what: "the daemon to be ready" }))
      expect(ready).toBe(process.pid)
      expect(fs.readFileSync(pidFile(p), "utf8").trim()).toBe(String(process.pid))
      p.drop("a-1", trigger("lib-agent", "sleep=0.1"))
      p.drop("b-1", trigger("other-agent", "sleep=30"))
      yield* Effect.promise(() =>
        waitFor(() => archivedTriggers(p).some((n) => n.endsWith("-a-1.trigger")), {
          what: "a-1 to be archived"
        })
      )
      yield* Effect.promise(() =>
        waitFor(() => readSlots(p)?.["other-agent"]?.pid, {
          what: "other-agent to be running"
        })
      )
      // Interruption is the graceful shutdown: b-1 goes back to the queue.
      const exit = yield* Fiber.interrupt(fiber)
      expect(Exit.isInterrupted(exit)).toBe(true)
      expect(fs.existsSync(pidFile(p))).toBe(false)
      expect(listDir(p.triggers)).toContain("b-1.trigger")
      const slots = readSlots(p)!
      expect(slots["other-agent"]).toEqual({ status: "idle", pid: null, ticket: null, started_at: null })
      expect(readState(p)).toMatchObject({
        total_triggers_processed: 1,
        current_trigger: "none"
      })
    }))

  it.live("a second daemon for the same project refuses to start", () =>
    Effect.gen(function*() {
      const p = projects.make()
      let ready = false
      const first = yield* Daemon.run({ project: p.root, env: {}, flags: flags(p), onReady: () => Effect.sync(() => void (ready = true)) }).pipe(
        Effect.provide(quiet),
        Effect.fork
      )
      yield* Effect.promise(() => waitFor(() => ready, { what: "the first daemon" }))
      const second = yield* Daemon.run({ project: p.root, env: {}, flags: flags(p) }).pipe(Effect.provide(quiet), Effect.flip)
      expect(second._tag).toBe("DaemonAlreadyRunning")
      yield* Fiber.interrupt(first)
    }))

  it.live("bad configuration fails before anything starts", () =>
    Effect.gen(function*() {
      const p = projects.make()
      const error = yield* Daemon.run({ project: p.root, env: {}, flags: { MAX_CONCURRENT_AGENTS: "abc" } }).pipe(Effect.flip)
      expect(error._tag).toBe("ConfigInvalid")
      expect(error.message).toContain('MAX_CONCURRENT_AGENTS="abc"')
      expect(fs.existsSync(pidFile(p))).toBe(false)
    }))
})
