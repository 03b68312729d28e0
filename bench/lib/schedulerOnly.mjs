// The daemon's own cost per job, without processes or files: the real Scheduler (the library
// build in dist/) on its test doubles (an in-memory queue, a fake process layer whose agents
// exit as soon as they start, memory slots/state/usage, no-op log and history); the agents' logs
// go to a temporary project. Prints one JSON
// line: { cpuMsPerJob } (user + system CPU of this process per job, start-up excluded).
//
//   node <the daemon's Node options> schedulerOnly.mjs <jobs> <agents>
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, ExecutionStrategy, Layer, Queue, Scope } from "effect"
import { DaemonConfig } from "../../dist/config/DaemonConfig.js"
import { DaemonLog } from "../../dist/observability/DaemonLog.js"
import { DaemonState } from "../../dist/state/DaemonState.js"
import { History } from "../../dist/state/History.js"
import * as Scheduler from "../../dist/scheduler/Scheduler.js"
import { Usage } from "../../dist/state/Usage.js"
import { ExitStatus } from "../../dist/domain/Outcome.js"
import { Notifier } from "../../dist/notify/Notifier.js"
import { makeFake, Spawner } from "../../dist/process/Spawner.js"
import { makeMemory } from "../../dist/queue/TriggerQueue.js"
import { AgentSlots } from "../../dist/slots/AgentSlots.js"

const [jobs, agents] = process.argv.slice(2, 4).map(Number)

const program = Effect.gen(function*() {
  const fake = yield* makeFake
  const project = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-scheduler-only-"))
  fs.mkdirSync(path.join(project, ".claude", "logs"), { recursive: true })
  const queue = yield* makeMemory
  const notifier = yield* Notifier.memory
  const services = Layer.mergeAll(
    fake.layer,
    queue.layer,
    notifier.layer,
    Layer.succeed(History, { record: () => Effect.void }),
    Layer.succeed(DaemonLog, { event: () => Effect.void }),
    AgentSlots.memory(),
    DaemonState.memory,
    Usage.memory(),
    DaemonConfig.layerSettings(project, { parallel: true, maxConcurrent: agents, agentCommand: ["agent"] })
  )
  for (let i = 0; i < jobs; i++) yield* queue.add(`${String(i).padStart(6, "0")}-agent-${i % agents}`, { to_agent: `agent-${i % agents}`, action: "work" })
  const before = process.cpuUsage()
  const scope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
  yield* Layer.buildWithScope(Layer.provideMerge(Scheduler.layer, services), scope)
  for (let i = 0; i < jobs; i++) {
    const run = yield* Queue.take(fake.started)
    yield* run.finish(ExitStatus.Exited({ code: 0 }))
  }
  while ((yield* queue.outcomes).length < jobs) yield* Effect.sleep("1 millis")
  const used = process.cpuUsage(before)
  console.log(JSON.stringify({ cpuMsPerJob: (used.user + used.system) / 1000 / jobs }))
  fs.rmSync(project, { recursive: true, force: true })
})

Effect.runPromise(Effect.scoped(program)).then(() => process.exit(0))
