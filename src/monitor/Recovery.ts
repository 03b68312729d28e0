/**
 * Start-up recovery, before the scheduler takes work: every busy slot left by an earlier daemon is
 * checked by pid *and* start time; a process that is still that agent is stopped, a pid that is
 * gone or now belongs to another process is released without being signalled. Agents the slot
 * file does not name (lost or corrupt file, crash before the pid was recorded) are found by their
 * environment and stopped too, and then what those agents left running outside their groups
 * (found by their attempts' tokens, see `Leftovers`). Every `X.processing` goes back to the queue
 * (at-least-once: nothing is lost, a trigger may run again). A slot or state file found missing or corrupt was rebuilt by
 * its layer (a copy of a corrupt one kept); recovery logs what was done.
 */
import { Effect } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { DaemonLog } from "../observability/DaemonLog.js"
import { ProcessTable } from "../platform/ProcessTable.js"
import { stopOrphan } from "../process/KillLadder.js"
import { type EndedAttempt, Leftovers } from "../process/Leftovers.js"
import { TriggerQueue } from "../queue/TriggerQueue.js"
import { AgentSlots } from "../slots/AgentSlots.js"
import { DaemonState } from "../state/DaemonState.js"

export const recover = Effect.gen(function*() {
  const { paths, settings } = yield* DaemonConfig
  const table = yield* ProcessTable
  const slots = yield* AgentSlots
  const state = yield* DaemonState
  const queue = yield* TriggerQueue
  const log = yield* DaemonLog
  const leftovers = yield* Leftovers
  // The attempts the earlier daemon ran, by their tokens: what they left is stopped after their groups.
  const earlier: Array<EndedAttempt> = []
  for (const note of [slots.startNote, state.startNote]) if (note !== undefined) yield* log.event("RECOVERY", note)
  yield* log.event("RECOVERY", "Checking for orphaned agent processes")
  yield* slots.cleanupOrphans((agent, slot) =>
    Effect.gen(function*() {
      if (slot.attempt_id) earlier.push({ agent, token: slot.attempt_id, since: slot.pid_start_time ?? null })
      const pid = slot.pid === null ? NaN : Number(slot.pid)
      if (!Number.isInteger(pid) || pid <= 1) {
        yield* log.event("RECOVERY", `Released the slot of ${agent} (no process was recorded)`, { agent })
        return true
      }
      const fate = yield* stopOrphan(pid, slot.pid_start_time ?? null, settings.killGraceMs)
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
  const unrecorded = yield* table.agentLeaders(paths.root)
  yield* Effect.forEach(unrecorded, ({ agent, pid, startTime }) =>
    stopOrphan(pid, startTime, settings.killGraceMs).pipe(
      Effect.flatMap((fate) =>
        fate === "stopped"
          ? log.event("RECOVERY", `Stopped orphaned agent ${agent} (PID ${pid}) left by an earlier daemon; the slot file did not record it`, { agent })
          : Effect.void
      )
    ), { concurrency: "unbounded", discard: true })
  for (const { agent, startTime, token } of unrecorded) if (token !== undefined) earlier.push({ agent, token, since: startTime })
  yield* leftovers.sweepNow(earlier)
  const requeued = yield* queue.recoverClaimed
  for (const name of requeued) {
    yield* log.event("RECOVERY", `${name}.processing had no running agent; back in the queue as ${name}.trigger`)
  }
  yield* queue.rescan
}).pipe(Effect.withSpan("Recovery.recover"))

