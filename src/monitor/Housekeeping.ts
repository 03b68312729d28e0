/**
 * The daemon's periodic work while it runs:
 * - every `PROCESS_MONITOR_INTERVAL`: a full rescan of the queue (watchers miss events) and a
 *   check that the slot and state files still exist (written again from memory if deleted);
 * - every `ORCHESTRATOR_INTERVAL`: an `orchestrator` trigger, unless one is pending or running.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Clock, Context, Duration, Effect, Layer, Schedule } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { isoSeconds } from "../domain/time.js"
import { makeTraceId } from "../domain/Trigger.js"
import { DaemonLog } from "../observability/DaemonLog.js"
import { writeNewTrigger } from "../queue/triggerFiles.js"
import { TriggerQueue } from "../queue/TriggerQueue.js"
import { Scheduler } from "../scheduler/Scheduler.js"
import { AgentSlots } from "../slots/AgentSlots.js"
import { DaemonState } from "../state/DaemonState.js"

export const ORCHESTRATOR = "orchestrator"

export class Housekeeping extends Context.Tag("starforge/Housekeeping")<Housekeeping, {
  /** Creates an orchestrator trigger now unless one is pending or running; returns its path. */
  readonly orchestratorTick: Effect.Effect<string | undefined>
}>() {}

export const make = Effect.gen(function*() {
  const { paths, settings } = yield* DaemonConfig
  const slots = yield* AgentSlots
  const state = yield* DaemonState
  const queue = yield* TriggerQueue
  const scheduler = yield* Scheduler
  const log = yield* DaemonLog

  const check = Effect.gen(function*() {
    // The in-memory tables are the truth: a file deleted under the daemon is written again.
    for (const [file, persist] of [[paths.slotsFile, slots.persist], [paths.stateFile, state.persist]] as const) {
      if (fs.existsSync(file)) continue
      yield* log.event("MONITOR", `${path.relative(paths.root, file)} was missing; written again from the daemon's memory`)
      yield* persist
    }
    yield* queue.rescan
  })

  const orchestratorTick = Effect.gen(function*() {
    const pending = (yield* queue.pending).some((t) => t.agent === ORCHESTRATOR)
    const running = (yield* scheduler.jobs).some((j) => j.agent === ORCHESTRATOR)
    if (pending || running || (yield* slots.isBusy(ORCHESTRATOR))) return undefined
    const now = yield* Clock.currentTimeMillis
    const traceId = makeTraceId(now)
    const file = yield* Effect.try(() =>
      writeNewTrigger(paths, {
        to_agent: ORCHESTRATOR,
        from_agent: "starforge",
        action: "periodic_check",
        message: "Periodic check: review open work and create triggers for idle agents.",
        trace_id: traceId,
        timestamp: isoSeconds(now)
      }, now)
    ).pipe(Effect.catchAll((e) => log.event("ERROR", `cannot write the orchestrator trigger: ${String(e.error)}`).pipe(Effect.as(undefined))))
    if (file === undefined) return undefined
    yield* log.event("ORCHESTRATOR", `Created periodic check ${path.basename(file)}`, { traceId, agent: ORCHESTRATOR })
    yield* queue.rescan
    return file
  })

  yield* check.pipe(
    Effect.repeat(Schedule.spaced(Duration.millis(settings.monitorIntervalMs))),
    Effect.delay(Duration.millis(settings.monitorIntervalMs)),
    Effect.forkScoped
  )
  if (settings.orchestratorIntervalMs > 0) {
    yield* orchestratorTick.pipe(
      Effect.repeat(Schedule.spaced(Duration.millis(settings.orchestratorIntervalMs))),
      Effect.forkScoped
    )
  }
  return { orchestratorTick }
})

export const layer = Layer.scoped(Housekeeping, make)
