/** `starforge daemon stop`: SIGTERM, a wait for the graceful shutdown, SIGKILL after the timeout (also used by `restart`). */
import * as fs from "node:fs"
import { Command, Options } from "@effect/cli"
import { Console, Duration, Effect, Option } from "effect"
import { isOurDaemon, probe, recordedPid } from "../daemon/DaemonInstance.js"
import { UsageError } from "../domain/errors.js"
import type { ProjectPaths } from "../domain/ProjectPaths.js"
import { ProcessTable } from "../platform/ProcessTable.js"
import { stopProcess } from "../process/KillLadder.js"
import { readTable } from "../slots/AgentSlots.js"
import { projectOption, resolveProject } from "./shared.js"

/** SIGTERM, wait for the graceful shutdown, SIGKILL after the timeout. */
export const stopDaemon = (paths: ProjectPaths, timeoutSeconds: Option.Option<number>) =>
  Effect.gen(function*() {
    const table = yield* ProcessTable
    const hello = yield* probe(paths)
    if (!hello) {
      yield* removeStalePidFile(paths)
      return yield* Console.log("Daemon is not running")
    }
    if (!(yield* isOurDaemon(paths, hello))) {
      return yield* new UsageError({
        message: `The process answering for ${paths.root} (PID: ${hello.pid}) is not the daemon named in ` +
          `${paths.pidFile}; it was not signalled. Check it with 'ps -p ${hello.pid}'`
      })
    }
    // The daemon's own grace, not this command's configuration.
    const timeoutMs = Option.getOrElse(Option.map(timeoutSeconds, (s) => s * 1000), () => hello.settings.kill_grace_ms + 10_000)
    yield* Console.log(`Stopping daemon (PID: ${hello.pid})...`)
    // The kill ladder over the daemon alone: its own shutdown stops its agents' groups.
    if ((yield* stopProcess(hello.pid, Duration.millis(timeoutMs))) !== "SIGKILL") return yield* Console.log("Daemon stopped")
    // The daemon could not stop its agents; stop those that are provably still its agents.
    let stopped = 0
    for (const [agent, slot] of Object.entries(readTable(paths.slotsFile).table)) {
      if (slot.status !== "busy" || slot.pid === null) continue
      const pid = Number(slot.pid)
      if ((yield* table.identify(pid, slot.pid_start_time)) === "same") {
        yield* table.signalGroup(pid, "SIGKILL")
        stopped++
        yield* Console.log(`Killed agent ${agent} (PID ${pid})`)
      }
    }
    yield* removeStalePidFile(paths)
    yield* Console.log(
      `Daemon did not stop within ${timeoutMs / 1000}s and was killed${stopped > 0 ? `, with ${stopped} agent process group(s)` : ""}; ` +
        `its triggers go back to the queue at the next start`
    )
  })

/** Removes a pid file whose process is gone; a live pid that is not our daemon is left alone. */
const removeStalePidFile = (paths: ProjectPaths) =>
  Effect.gen(function*() {
    const recorded = yield* recordedPid(paths)
    if (recorded === undefined) return
    const pid = Number(recorded)
    const alive = Number.isInteger(pid) && pid > 0 && (yield* Effect.flatMap(ProcessTable, (table) => table.isAlive(pid)))
    if (!alive) yield* Effect.sync(() => fs.rmSync(paths.pidFile, { force: true }))
  })

export const timeoutOption = Options.integer("timeout").pipe(
  Options.optional,
  Options.withDescription("Seconds to wait for the graceful shutdown before SIGKILL (default: AGENT_KILL_GRACE + 10).")
)

export const stop = Command.make("stop", { project: projectOption, timeout: timeoutOption }, ({ project, timeout }) =>
  Effect.flatMap(resolveProject(project), (paths) => stopDaemon(paths, timeout))).pipe(
    Command.withDescription("Stop the daemon: its agents are stopped and their triggers go back to the queue.")
  )
