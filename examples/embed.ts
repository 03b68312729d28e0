/**
 * The daemon inside your own Effect program. Your agents are Effects, not processes
 * (`Spawner.fromEffect`); your logger gets the daemon's events as Effect log entries, annotated
 * with `event`, `agent`, `trigger` and `trace_id`; the daemon stops when its fiber is
 * interrupted (the graceful shutdown: running agents are stopped and their triggers requeued).
 *
 * In your own program, import from "starforge" instead of "../src/index.js".
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Deferred, Duration, Effect, Fiber, HashMap, Logger, Option, Schedule } from "effect"
import { Daemon, DaemonConfig, projectPaths, Spawner } from "../src/index.js"

/** An agent that reviews its trigger: it writes a line, takes a moment, and succeeds. */
export const reviewer = Spawner.fromEffect((request, write) =>
  Effect.gen(function*() {
    yield* write(`${request.env.STARFORGE_AGENT_ID} reviewing ticket ${request.env.STARFORGE_TICKET}\n`)
    yield* Effect.sleep(Duration.millis(50))
    return 0
  })
)

/** Your logger: here, one line per daemon event into `lines`. */
export const collectInto = (lines: Array<string>) =>
  Logger.make(({ annotations, message }) => {
    const event = Option.getOrElse(HashMap.get(annotations, "event"), () => "-")
    lines.push(`${String(event)}: ${Array.isArray(message) ? message.join(" ") : String(message)}`)
  })

/**
 * Runs the daemon for `project`, queues one trigger per ticket, waits until all are archived in
 * `processed/`, then stops the daemon by interrupting its fiber.
 */
export const reviewTickets = (project: string, tickets: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const paths = projectPaths(project)
    const ready = yield* Deferred.make<void>()
    const daemon = yield* Daemon.run({ project, onReady: () => Deferred.succeed(ready, undefined) }, {
      spawner: reviewer,
      config: DaemonConfig.layerSettings(project, { parallel: true, maxConcurrent: 4, orchestratorIntervalMs: 0 })
    }).pipe(Effect.fork)
    yield* Deferred.await(ready)
    for (const [i, ticket] of tickets.entries()) {
      const trigger = { to_agent: `reviewer-${i % 2}`, action: "review", ticket }
      fs.writeFileSync(path.join(paths.triggers, `review-${ticket}.trigger`), JSON.stringify(trigger))
    }
    const archived = Effect.sync(() => fs.readdirSync(paths.processed).filter((name) => name.endsWith(".trigger") && name.includes("review-")).length)
    yield* archived.pipe(
      Effect.repeat({ schedule: Schedule.spaced(Duration.millis(20)), until: (n) => n === tickets.length }),
      Effect.timeout(Duration.seconds(30))
    )
    yield* Fiber.interrupt(daemon)
  })

// Run it: `npx tsx examples/embed.ts <project directory>`.
if (process.argv[1]?.endsWith("embed.ts") && process.argv[2] !== undefined) {
  const lines: Array<string> = []
  Effect.runPromise(
    reviewTickets(path.resolve(process.argv[2]), ["101", "102", "103"]).pipe(
      Effect.provide(Logger.replace(Logger.defaultLogger, collectInto(lines)))
    )
  ).then(() => console.log(lines.join("\n")))
}
