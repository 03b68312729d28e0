/** `starforge slots list|show|cleanup` (contract §1, §4). */
import * as fs from "node:fs"
import { Args, Command } from "@effect/cli"
import { Console, Effect } from "effect"
import { probe } from "../daemon/DaemonInstance.js"
import { idleSlot, type Slot } from "../domain/Slot.js"
import { ProcessTable } from "../platform/ProcessTable.js"
import { writeFileAtomic } from "../io/stateFile.js"
import { readTable } from "../slots/AgentSlots.js"
import { SLOT_HEADER, slotDetails, slotRows } from "./progress.js"
import { ExitWith, jsonOption, printJson, projectOption, resolveProject, table } from "./shared.js"

const readSlots = (project: string) =>
  Effect.map(resolveProject(project), (paths) => ({ paths, slots: readTable(paths.slotsFile).table }))

const list = Command.make("list", { project: projectOption, json: jsonOption }, ({ json, project }) =>
  Effect.gen(function*() {
    const { slots } = yield* readSlots(project)
    if (json) return yield* printJson(slots)
    const rows = slotRows(slots)
    yield* Console.log(rows.length === 0 ? "No agent slots yet" : table(SLOT_HEADER, rows))
  })).pipe(Command.withDescription("Show every agent slot."))

const show = Command.make(
  "show",
  { project: projectOption, json: jsonOption, agent: Args.text({ name: "AGENT" }) },
  ({ agent, json, project }) =>
    Effect.gen(function*() {
      const { slots } = yield* readSlots(project)
      const slot = slots[agent]
      if (json) yield* printJson(slot ?? null)
      else if (!slot) yield* Console.log(`${agent}: no slot (the daemon has not seen this agent)`)
      else {
        yield* Console.log(table(SLOT_HEADER, slotRows({ [agent]: slot })))
        const details = slotDetails(slot)
        if (details.length > 0) yield* Console.log("\n" + details.join("\n"))
      }
      if (slot?.status !== "busy") return yield* new ExitWith({ code: 1 })
    })
).pipe(Command.withDescription("Show one slot; exit 0 if the agent is busy, 1 if idle or unknown."))

const cleanup = Command.make("cleanup", { project: projectOption }, ({ project }) =>
  Effect.gen(function*() {
    const { paths, slots } = yield* readSlots(project)
    const daemon = yield* probe(paths)
    if (daemon) {
      return yield* Console.log(`The daemon (PID: ${daemon.pid}) is running and keeps its slots itself; nothing to clean up`)
    }
    const next: Record<string, Slot> = { ...slots }
    let changed = false
    for (const [agent, slot] of Object.entries(slots)) {
      if (slot.status !== "busy") continue
      const pid = Number(slot.pid)
      if (slot.pid !== null && (yield* Effect.flatMap(ProcessTable, (table) => table.identify(pid, slot.pid_start_time))) === "same") {
        yield* Console.log(`${agent} (PID ${pid}) is still running; left busy (the next daemon start stops it)`)
        continue
      }
      next[agent] = idleSlot
      changed = true
      yield* Console.log(slot.pid === null ? `Released ${agent} (no process recorded)` : `Cleaned up orphaned PID ${slot.pid} for ${agent}`)
    }
    if (changed) yield* writeFileAtomic(paths.slotsFile, JSON.stringify(next, null, 2) + "\n")
    else if (fs.existsSync(paths.slotsFile)) yield* Console.log("No orphaned slots")
  })).pipe(Command.withDescription("Release slots whose process is gone (the original's cleanup_orphaned_pids)."))

export const slotsCommand = Command.make("slots").pipe(
  Command.withDescription("Inspect the agent slots."),
  Command.withSubcommands([list, show, cleanup])
)
