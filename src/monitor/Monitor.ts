/**
 * Start-up recovery, periodic checks and the orchestrator tick.
 *
 * - `recover` runs before the scheduler takes work: every busy slot left by an earlier daemon is
 *   checked by pid *and* start time; a process that is still that agent is stopped, a pid that is
 *   gone or now belongs to another process is released without being signalled. Agents the slot
 *   file does not name (lost or corrupt file, crash before the pid was recorded) are found by
 *   their environment and stopped too. Every `X.processing` goes back to the queue
 *   (at-least-once: nothing is lost, a trigger may run again). A slot or state file found missing
 *   or corrupt was rebuilt by its layer (a copy of a corrupt one kept); recovery logs what was done.
 * - Every `PROCESS_MONITOR_INTERVAL`: a full rescan of the queue (watchers miss events) and a
 *   check that the slot and state files still exist (written again from memory if deleted).
 * - Every `ORCHESTRATOR_INTERVAL`: an `orchestrator` trigger, unless one is pending or running.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Clock, Context, Duration, Effect, Layer, Schedule } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { isoSeconds } from "../domain/time.js"
import { makeTraceId } from "../domain/Trigger.js"
import { DaemonLog } from "../daemon/DaemonLog.js"
import { DaemonState } from "../daemon/DaemonState.js"
import { Scheduler } from "../daemon/Scheduler.js"
import { AgentProcess } from "../process/AgentProcess.js"
import { writeNewTrigger } from "../queue/triggerFiles.js"
import { TriggerQueue } from "../queue/TriggerQueue.js"
import { AgentSlots } from "../slots/AgentSlots.js"

export const ORCHESTRATOR = "orchestrator"

/** Recovery after a crash; see the module comment. */
export const recover = Effect.gen(function*() {
  const { paths } = yield* DaemonConfig
  const slots = yield* AgentSlots
  const state = yield* DaemonState
  const agentProcess = yield* AgentProcess
  const queue = yield* TriggerQueue
  const log = yield* DaemonLog
  for (const note of [slots.startNote, state.startNote]) if (note !== undefined) yield* log.event("RECOVERY", note)
  yield* log.event("RECOVERY", "Checking for orphaned agent processes")
  yield* slots.cleanupOrphans((agent, slot) =>
    Effect.gen(function*() {
      const pid = slot.pid === null ? NaN : Number(slot.pid)
      if (!Number.isInteger(pid) || pid <= 1) {
        yield* log.event("RECOVERY", `Released the slot of ${agent} (no process was recorded)`, { agent })
        return true
      }
      const fate = yield* agentProcess.stopOrphan(pid, slot.pid_start_time ?? null)
      yield* log.event(
        "RECOVERY",
        fate === "stopped"
          ? `Stopped orphaned agent ${agent} (PID ${pid}) left by an earlier daemon`
          : `Cleaned up orphaned PID ${pid} for ${agent}${fate === "different" ? " (the pid now belongs to another process, which was left alone)" : ""}`,
        { agent }
      )
      return true
    })
  )
  // Agents the slot file does not name: it was lost or corrupt, or the daemon died between
  // starting an agent and recording it. Found by their environment, stopped the same way.
  const unrecorded = yield* agentProcess.runningAgents(paths.root)
  yield* Effect.forEach(unrecorded, ({ agent, pid, startTime }) =>
    agentProcess.stopOrphan(pid, startTime).pipe(
      Effect.flatMap((fate) =>
        fate === "stopped"
          ? log.event("RECOVERY", `Stopped orphaned agent ${agent} (PID ${pid}) left by an earlier daemon; the slot file did not record it`, { agent })
          : Effect.void
      )
    ), { concurrency: "unbounded", discard: true })
  const requeued = yield* queue.recoverClaimed
  for (const name of requeued) {
    yield* log.event("RECOVERY", `${name}.processing had no running agent; back in the queue as ${name}.trigger`)
  }
  yield* queue.rescan
}).pipe(Effect.withSpan("Monitor.recover"))

export class Monitor extends Context.Tag("starforge/Monitor")<Monitor, {
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

export const layer = Layer.scoped(Monitor, make)
