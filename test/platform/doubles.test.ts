/**
 * The platform's test doubles: a daemon whose agents are Effects runs on `ProcessTable.empty` and
 * `InstanceLock.memory`, touching neither the process table nor a socket, and the memory lock
 * still keeps a second daemon off the same project.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Layer, Schedule } from "effect"
import { Daemon, DaemonConfig, InstanceLock, ProcessTable, projectPaths, Spawner } from "../../src/index.js"

const dirs: Array<string> = []
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
})

describe("ProcessTable.empty and InstanceLock.memory", () => {
  it.live("run a daemon of Effect agents; a second daemon on the project is refused while the first runs", () =>
    Effect.gen(function*() {
      const project = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-doubles-"))
      dirs.push(project)
      const paths = projectPaths(project)
      const platform = Layer.merge(ProcessTable.empty, InstanceLock.memory)
      const services = {
        platform,
        spawner: Spawner.fromEffect((_, write) => Effect.as(write("done\n"), 0)),
        config: DaemonConfig.layerSettings(project, { orchestratorIntervalMs: 0 })
      }
      const ready = yield* Deferred.make<void>()
      // One memory lock for both daemons: the layer is built once and shared.
      const shared = yield* Layer.memoize(platform)
      const first = yield* Daemon.run({ project, onReady: () => Deferred.succeed(ready, undefined) }, { ...services, platform: shared }).pipe(Effect.fork)
      yield* Deferred.await(ready).pipe(Effect.timeout(Duration.seconds(20)))
      const second = yield* Daemon.run({ project }, { ...services, platform: shared }).pipe(Effect.exit)
      expect(Exit.isFailure(second) && JSON.stringify(second.cause)).toContain("DaemonAlreadyRunning")

      fs.writeFileSync(path.join(paths.triggers, "a-1.trigger"), JSON.stringify({ to_agent: "a", action: "x" }))
      yield* Effect.sync(() => fs.readdirSync(paths.processed).some((n) => n.endsWith("a-1.trigger"))).pipe(
        Effect.repeat({ schedule: Schedule.spaced(Duration.millis(20)), until: (done) => done }),
        Effect.timeout(Duration.seconds(20))
      )
      yield* Fiber.interrupt(first)
      // Released: a new daemon takes the project.
      const again = yield* Deferred.make<void>()
      const third = yield* Daemon.run({ project, onReady: () => Deferred.succeed(again, undefined) }, { ...services, platform: shared }).pipe(Effect.fork)
      yield* Deferred.await(again).pipe(Effect.timeout(Duration.seconds(20)))
      yield* Fiber.interrupt(third)
    }).pipe(Effect.scoped), 60_000)
})
