/**
 * Per-agent exclusivity. The in-memory table is the truth; changes are persisted to
 * `C/daemon/agent-slots.json` through a temporary file in the same directory and a rename, so
 * the file is always valid JSON (contract §4). Only the daemon writes it, behind the changes
 * (`writeBehind`): a job's start or end never waits for the disk.
 *
 * The API mirrors the original `agent-slots.sh` (`isBusy`, `markBusy`, `markIdle`, `pidOf`,
 * `ticketOf`, `listBusy`, `countBusy`, `cleanupOrphans`).
 */
import * as path from "node:path"
import { Context, Effect, Layer, PubSub, Schema, type Scope, Stream } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { type BusyInfo, busySlot, idleSlot, type Slot, type SlotResources, SlotTable } from "../domain/Slot.js"
import { keepCorruptCopy, readStateFile, reportingFailures, writeBehind } from "../io/stateFile.js"
import type { Progress } from "../stream/StreamJson.js"

export interface ProcessInfo {
  readonly pid: number
  readonly startTime: string | null
  readonly log: string
  /** The attempt's token, in the agent's environment. */
  readonly token?: string
}

/** A busy slot released by `cleanupOrphans`. */
export interface ReleasedSlot {
  readonly agent: string
  readonly slot: Slot
}

export interface AgentSlotsShape {
  readonly snapshot: Effect.Effect<SlotTable>
  readonly isBusy: (agent: string) => Effect.Effect<boolean>
  /** Reserves the agent's slot for a job; its process is recorded later with `setProcess`. */
  readonly markBusy: (agent: string, info: BusyInfo) => Effect.Effect<void>
  readonly setProcess: (agent: string, info: ProcessInfo) => Effect.Effect<void>
  /** Records the live progress of the agent's running job (ignored when the slot is idle). */
  readonly setProgress: (agent: string, progress: Progress) => Effect.Effect<void>
  /** Records a sample of the agent's processes, if its slot still runs the process `pid`. */
  readonly setResources: (agent: string, pid: number, resources: SlotResources) => Effect.Effect<void>
  readonly markIdle: (agent: string) => Effect.Effect<void>
  readonly pidOf: (agent: string) => Effect.Effect<string | null>
  readonly ticketOf: (agent: string) => Effect.Effect<string | null>
  readonly listBusy: Effect.Effect<ReadonlyArray<string>>
  readonly countBusy: Effect.Effect<number>
  /**
   * Releases every busy slot that `isOrphan` says has no live agent (the original's
   * `cleanup_orphaned_pids`) and returns them.
   */
  readonly cleanupOrphans: <E, R>(
    isOrphan: (agent: string, slot: Slot) => Effect.Effect<boolean, E, R>
  ) => Effect.Effect<ReadonlyArray<ReleasedSlot>, E, R>
  /**
   * Returns once the file has every change made so far (changes are written behind, soon after
   * they happen); also writes the table again after the file was deleted under the daemon.
   */
  readonly persist: Effect.Effect<void>
  /** How the slot file was found at start when it could not be used as it was (logged by recovery). */
  readonly startNote: string | undefined
  /**
   * Emits after changes to the table from the moment of subscription on (busy, idle, process,
   * progress, resource samples); changes that come while a subscriber is busy are one emission.
   */
  readonly changes: Stream.Stream<void>
}

/** At most one write of the slot file per this many ms while changes keep coming. */
export const SLOTS_WRITE_SPACING_MS = 50

/** Builds the service on a table and a function that persists a snapshot (written behind the changes). */
export const make = (
  initial: SlotTable,
  save: (table: SlotTable) => Effect.Effect<void>,
  startNote?: string,
  spacingMs = SLOTS_WRITE_SPACING_MS
): Effect.Effect<AgentSlotsShape, never, Scope.Scope> =>
  Effect.gen(function*() {
    // Changed in place, so a job's changes do not each copy the whole table. Readers get a copy
    // (`snapshot`).
    const table = new Map<string, Slot>(Object.entries(initial))
    const snapshot = Effect.sync((): SlotTable => Object.fromEntries(table))
    const file = yield* writeBehind(snapshot, save, spacingMs)
    const persist = file.flush
    // Holds one pending "changed" per subscriber; publishing costs next to nothing without one.
    const changed = yield* PubSub.sliding<void>(1)
    const change = (update: () => void) => Effect.suspend(() => {
      update()
      return Effect.zipRight(file.changed, PubSub.publish(changed, undefined))
    })
    const slotOf = (agent: string) => Effect.sync((): Slot | undefined => table.get(agent))
    const busyNames = () => {
      const names: Array<string> = []
      for (const [agent, slot] of table) if (slot.status === "busy") names.push(agent)
      return names
    }
    /** Replaces the agent's slot while it is busy (a change for an idle slot is dropped). */
    const updateBusy = (agent: string, update: (slot: Slot) => Slot) =>
      change(() => {
        const slot = table.get(agent)
        if (slot?.status === "busy") table.set(agent, update(slot))
      })
    return {
      snapshot,
      isBusy: (agent) => Effect.map(slotOf(agent), (s) => s?.status === "busy"),
      markBusy: (agent, info) => change(() => void table.set(agent, busySlot(info))),
      setProcess: (agent, info) =>
        updateBusy(agent, (slot) => ({ ...slot, pid: String(info.pid), pid_start_time: info.startTime, log: info.log, attempt_id: info.token ?? null })),
      setProgress: (agent, progress) => updateBusy(agent, (slot) => ({ ...slot, ...progress })),
      setResources: (agent, pid, resources) =>
        updateBusy(agent, (slot) => (slot.pid === String(pid) ? { ...slot, ...resources } : slot)),
      markIdle: (agent) => change(() => void table.set(agent, idleSlot)),
      pidOf: (agent) => Effect.map(slotOf(agent), (s) => s?.pid ?? null),
      ticketOf: (agent) => Effect.map(slotOf(agent), (s) => s?.ticket ?? null),
      listBusy: Effect.sync(busyNames),
      countBusy: Effect.sync(() => busyNames().length),
      cleanupOrphans: (isOrphan) =>
        Effect.gen(function*() {
          // Concurrently: each check may wait a kill grace for an orphan to stop.
          const checked = yield* Effect.forEach(
            busyNames().map((agent) => ({ agent, slot: table.get(agent)! })),
            (busy) => Effect.map(isOrphan(busy.agent, busy.slot), (orphan) => (orphan ? busy : undefined)),
            { concurrency: "unbounded" }
          )
          const released = checked.filter((r): r is ReleasedSlot => r !== undefined)
          if (released.length > 0) {
            yield* change(() => {
              for (const { agent } of released) table.set(agent, idleSlot)
            })
          }
          return released
        }),
      persist,
      startNote,
      changes: Stream.fromPubSub(changed)
    }
  })

const decodeTable = Schema.decodeUnknownEither(Schema.parseJson(SlotTable))

/** The slot table as the file holds it (the CLI's view): missing or corrupt is an empty table. */
export const readTable = (file: string): { readonly table: SlotTable } => {
  const read = readStateFile(file, decodeTable)
  return { table: read._tag === "Valid" ? read.value : {} }
}

/** What loading the slot file at daemon start found. */
export interface LoadedTable {
  readonly table: SlotTable
  /** How the file was found when it could not be used as it was, for the start-up log. */
  readonly note?: string
  /** Set when the file was corrupt and its copy could be kept. */
  readonly corruptCopy?: string
}

/** Reads the slot file at daemon start; a corrupt file is copied aside and replaced by an empty table. */
export const loadTable = (file: string, now: number): LoadedTable => {
  const read = readStateFile(file, decodeTable)
  switch (read._tag) {
    case "Valid":
      return { table: read.value }
    case "Missing":
      return { table: {}, note: `${path.basename(file)} was not found; every agent starts idle` }
    case "Corrupt": {
      const copy = keepCorruptCopy(file, now)
      return {
        table: {},
        note: `${path.basename(file)} was ${read.problem}; ${copy ? `kept a copy as ${path.basename(copy)}` : "no copy could be kept"}; ` +
          "rebuilt with every agent idle",
        ...(copy ? { corruptCopy: copy } : {})
      }
    }
  }
}

export class AgentSlots extends Context.Tag("starforge/AgentSlots")<AgentSlots, AgentSlotsShape>() {
  /**
   * The slot file of the project. The table found at start is kept as is (busy slots included)
   * for crash recovery; a failed write is reported once as an Effect warning and retried with the next change.
   */
  static readonly layer = Layer.scoped(
    AgentSlots,
    Effect.gen(function*() {
      const { paths } = yield* DaemonConfig
      const loaded = loadTable(paths.slotsFile, Date.now())
      const slots = yield* make(loaded.table, reportingFailures(paths.slotsFile, (table) => JSON.stringify(table, null, 2) + "\n"), loaded.note)
      yield* slots.persist
      return slots
    })
  )

  /** In memory only, for tests. */
  static readonly memory = (initial: SlotTable = {}) => Layer.scoped(AgentSlots, make(initial, () => Effect.void))
}
