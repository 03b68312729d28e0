/**
 * `examples/embed.ts` as a user runs it: the daemon in their own Effect program, with their own
 * agent runner (an Effect) and their own logger, stopped by interrupting its fiber.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Effect, Logger } from "effect"
import { collectInto, reviewTickets } from "../../examples/embed.js"
import { projectPaths } from "../../src/domain/ProjectPaths.js"

const dirs: Array<string> = []
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
})

describe("examples/embed.ts", () => {
  it.live("runs the daemon with Effect agents and the program's logger, and stops it by interruption", () =>
    Effect.gen(function*() {
      const project = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-embed-"))
      dirs.push(project)
      const lines: Array<string> = []
      yield* reviewTickets(project, ["101", "102", "103"]).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, collectInto(lines))))
      const paths = projectPaths(project)
      expect(fs.readdirSync(paths.processed).filter((n) => n.includes("review-"))).toHaveLength(3)
      // The program's logger got the daemon's events, start to stop.
      expect(lines.some((l) => l.startsWith("START: "))).toBe(true)
      expect(lines.filter((l) => l.startsWith("SPAWNED: reviewer-"))).toHaveLength(3)
      expect(lines.filter((l) => /^FINISH: reviewer-\d completed review-\d+\.trigger successfully/.test(l))).toHaveLength(3)
      expect(lines.some((l) => l.startsWith("STOP: All agents stopped"))).toBe(true)
      // Each agent's output went into its log, between the header and the footer.
      const logs = fs.readdirSync(paths.logs).filter((n) => n.startsWith("reviewer-"))
      const texts = logs.map((n) => fs.readFileSync(path.join(paths.logs, n), "utf8"))
      expect(texts.filter((t) => /reviewing ticket 10\d\n[\s\S]*Completed: .*\nExit code: 0\n$/.test(t))).toHaveLength(3)
      // Stopped: the lock is free and the pid file gone.
      expect(fs.existsSync(path.join(project, ".claude", "daemon.pid"))).toBe(false)
    }), 60_000)
})
