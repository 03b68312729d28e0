/**
 * Embedded with Effect's default loggers, the daemon's memory stays flat however many events it
 * logs. The tracer logger (one of the defaults) adds each log line to the current span as an
 * event; a span that lives as long as the daemon (its own or the embedding program's) would keep
 * every line ever logged.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as v8 from "node:v8"
import * as vm from "node:vm"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, FiberRef, HashSet, Layer, Logger, Queue } from "effect"
import { Daemon, DaemonConfig, DaemonLog, Spawner, TriggerQueue } from "../../src/index.js"

v8.setFlagsFromString("--expose-gc")
const gc = vm.runInNewContext("gc") as () => void

const heapAfterGc = Effect.sync(() => {
  gc()
  gc()
  return process.memoryUsage().heapUsed
})

const dirs: Array<string> = []
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
})

interface Burst {
  readonly events: number
  readonly done: Deferred.Deferred<void>
}

describe("Daemon embedded with Effect's default loggers", () => {
  it.live("100,000 events inside the running daemon keep the heap flat", () =>
    Effect.gen(function*() {
      const project = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-memory-"))
      dirs.push(project)
      const agents = yield* Spawner.makeFake
      const memory = yield* TriggerQueue.makeMemory
      // A fiber of the daemon's own graph (started with its queue) logs the events it is asked for.
      const bursts = yield* Queue.unbounded<Burst>()
      const chatter = Layer.scopedDiscard(
        Effect.gen(function*() {
          const log = yield* DaemonLog
          yield* Queue.take(bursts).pipe(
            Effect.flatMap(({ done, events }) =>
              Effect.zipRight(Effect.repeatN(log.event("QUEUE", "x.trigger queued for some-agent"), events - 1), Deferred.succeed(done, undefined))
            ),
            Effect.forever,
            Effect.forkScoped
          )
        })
      )
      const burst = (events: number) =>
        Effect.gen(function*() {
          const done = yield* Deferred.make<void>()
          yield* Queue.offer(bursts, { events, done })
          yield* Deferred.await(done).pipe(Effect.timeout("60 seconds"))
        })

      const ready = yield* Deferred.make<void>()
      const tracerLoggerOn = yield* Deferred.make<boolean>()
      const daemon = yield* Daemon.run({ project, onReady: () => Deferred.succeed(ready, undefined) }, {
        config: DaemonConfig.layerSettings(project, { logLevel: "info" }),
        spawner: agents.layer,
        queue: Layer.merge(memory.layer, chatter)
      }).pipe(
        // The embedding program's own span around the daemon.
        Effect.withSpan("embedding program"),
        Effect.fork,
        Effect.zipLeft(
          FiberRef.get(FiberRef.currentLoggers).pipe(Effect.flatMap((loggers) => Deferred.succeed(tracerLoggerOn, HashSet.has(loggers, Logger.tracerLogger))))
        ),
        // The default logger would print every event; the tracer logger stays.
        Effect.provide(Logger.replace(Logger.defaultLogger, Logger.none))
      )
      yield* Deferred.await(ready).pipe(Effect.timeout("20 seconds"))
      expect(yield* Deferred.await(tracerLoggerOn)).toBe(true)

      yield* burst(10_000)
      const before = yield* heapAfterGc
      yield* burst(100_000)
      const after = yield* heapAfterGc
      // Kept events cost over 250 bytes each: 100,000 of them would be 25 MB.
      expect(after - before).toBeLessThan(5_000_000)
      yield* Fiber.interrupt(daemon)
    }), 120_000)
})
