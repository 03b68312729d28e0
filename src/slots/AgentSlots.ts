/**
 * Per-agent exclusivity. The in-memory table is the truth; every change is persisted to
 * `C/daemon/agent-slots.json` through a temporary file in the same directory and a rename, so
 * the file is always valid JSON (contract §4). Only the daemon writes it.
 *
 * The API mirrors the original `agent-slots.sh` (`isBusy`, `markBusy`, `markIdle`, `pidOf`,
 * `ticketOf`, `listBusy`, `countBusy`, `cleanupOrphans`).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Context, Effect, Either, Layer, Ref, Schema } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { StorageError } from "../domain/errors.js"
import { type BusyInfo, busySlot, idleSlot, type Slot, SlotTable } from "../domain/Slot.js"
import type { Progress } from "../stream/StreamJson.js"
import { archiveStamp } from "../domain/time.js"
import { freeName } from "../queue/triggerFiles.js"

export interface ProcessInfo {
  readonly pid: number
  readonly startTime: string | null
  readonly log: string
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
  /** Writes the table again (e.g. after the file was deleted under the daemon). */
  readonly persist: Effect.Effect<void>
  /** How the slot file was found at start when it could not be used as it was (logged by recovery). */
  readonly startNote: string | undefined
}

/** Builds the service on a table and a function that persists a snapshot. */
export const make = (
  initial: SlotTable,
  save: (table: SlotTable) => Effect.Effect<void>,
  startNote?: string
): Effect.Effect<AgentSlotsShape> =>
  Effect.gen(function*() {
    const table = yield* Ref.make<SlotTable>(initial)
    const persist = yield* latestWriter(Ref.get(table), save)
    const change = (f: (t: SlotTable) => SlotTable) => Ref.update(table, f).pipe(Effect.zipRight(persist))
    const slotOf = (agent: string) => Effect.map(Ref.get(table), (t): Slot | undefined => t[agent])
    const busyNames = (t: SlotTable) => Object.keys(t).filter((a) => t[a]!.status === "busy")
    return {
      snapshot: Ref.get(table),
      isBusy: (agent) => Effect.map(slotOf(agent), (s) => s?.status === "busy"),
      markBusy: (agent, info) => change((t) => ({ ...t, [agent]: busySlot(info) })),
      setProcess: (agent, info) =>
        change((t) => {
          const slot = t[agent]
          if (slot?.status !== "busy") return t
          return {
            ...t,
            [agent]: { ...slot, pid: String(info.pid), pid_start_time: info.startTime, log: info.log }
          }
        }),
      setProgress: (agent, progress) =>
        change((t) => {
          const slot = t[agent]
          return slot?.status === "busy" ? { ...t, [agent]: { ...slot, ...progress } } : t
        }),
      markIdle: (agent) => change((t) => ({ ...t, [agent]: idleSlot })),
      pidOf: (agent) => Effect.map(slotOf(agent), (s) => s?.pid ?? null),
      ticketOf: (agent) => Effect.map(slotOf(agent), (s) => s?.ticket ?? null),
      listBusy: Effect.map(Ref.get(table), busyNames),
      countBusy: Effect.map(Ref.get(table), (t) => busyNames(t).length),
      cleanupOrphans: (isOrphan) =>
        Effect.gen(function*() {
          const current = yield* Ref.get(table)
          // Concurrently: each check may wait a kill grace for an orphan to stop.
          const checked = yield* Effect.forEach(
            busyNames(current),
            (agent) => Effect.map(isOrphan(agent, current[agent]!), (orphan) => (orphan ? { agent, slot: current[agent]! } : undefined)),
            { concurrency: "unbounded" }
          )
          const released = checked.filter((r): r is ReleasedSlot => r !== undefined)
          if (released.length > 0) {
            yield* change((t) => {
              const next = { ...t }
              for (const { agent } of released) next[agent] = idleSlot
              return next
            })
          }
          return released
        }),
      persist,
      startNote
    }
  })

const decodeTable = Schema.decodeUnknownEither(Schema.parseJson(SlotTable))

/** What reading one of the daemon's JSON state files found. */
export type ReadStateFile<A> =
  | { readonly _tag: "Missing" }
  | { readonly _tag: "Valid"; readonly value: A }
  /** Empty, truncated, not JSON, or JSON of the wrong shape: `problem` says which. */
  | { readonly _tag: "Corrupt"; readonly problem: string }

/** One line about a state file that could not be used. */
const problemOf = (text: string, error: unknown): string => {
  if (text.trim() === "") return "empty"
  try {
    JSON.parse(text)
  } catch {
    return "not valid JSON"
  }
  const detail = String((error as { message?: unknown })?.message ?? error).split("\n")[0]
  return `valid JSON of the wrong shape (${detail})`
}

/** Reads and decodes a state file without changing anything. */
export const readStateFile = <A>(
  file: string,
  decode: (text: string) => Either.Either<A, unknown>
): ReadStateFile<A> => {
  let text: string
  try {
    text = fs.readFileSync(file, "utf8")
  } catch {
    return { _tag: "Missing" }
  }
  const decoded = decode(text)
  return Either.isRight(decoded)
    ? { _tag: "Valid", value: decoded.right }
    : { _tag: "Corrupt", problem: problemOf(text, decoded.left) }
}

/** The slot table as the file holds it (the CLI's view): missing or corrupt is an empty table. */
export const readTable = (file: string): { readonly table: SlotTable } => {
  const read = readStateFile(file, decodeTable)
  return { table: read._tag === "Valid" ? read.value : {} }
}

/**
 * Copies a corrupt state file aside as `<file>.corrupt-<yyyymmdd-HHMMSS>` before it is replaced;
 * returns the copy's path, or undefined when it could not be kept.
 */
export const keepCorruptCopy = (file: string, now: number): string | undefined => {
  const copy = freeName(path.dirname(file), `${path.basename(file)}.corrupt-${archiveStamp(now)}`)
  try {
    fs.copyFileSync(file, copy, fs.constants.COPYFILE_EXCL)
    return copy
  } catch {
    return undefined
  }
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

/**
 * Persists a changing value with group commit. `persist` returns once a write that read the value
 * after the call has finished, so a caller's change is saved when it returns. Writes run one at a
 * time, always of the latest value (a slow write never lands an old state last), and callers that
 * arrive while a write is in flight share the next one: under load the file is written as often
 * as the disk allows, not once per change.
 */
export const latestWriter = <A>(
  read: Effect.Effect<A>,
  save: (value: A) => Effect.Effect<void>
): Effect.Effect<Effect.Effect<void>> =>
  Effect.map(Effect.makeSemaphore(1), (writes) => {
    let requested = 0
    let written = 0
    return Effect.suspend(() => {
      const mine = ++requested
      return writes.withPermits(1)(
        Effect.suspend(() => {
          if (written >= mine) return Effect.void
          const covered = requested
          // Uninterruptible: an abandoned write could still rename an old state over a newer one.
          return read.pipe(
            Effect.flatMap(save),
            Effect.ensuring(Effect.sync(() => (written = Math.max(written, covered)))),
            Effect.uninterruptible
          )
        })
      )
    })
  })

/**
 * Temp file in the same directory, then rename: readers never see a half-written file. Done
 * asynchronously, since replacing a file by rename can wait for the disk (ext4 flushes the new
 * data first) and the daemon's event loop must not.
 */
export const writeFileAtomic = (file: string, content: string) =>
  Effect.tryPromise({
    try: async () => {
      await fs.promises.mkdir(path.dirname(file), { recursive: true })
      const tmp = `${file}.${process.pid}.tmp`
      try {
        await fs.promises.writeFile(tmp, content, { mode: 0o644 })
        await fs.promises.rename(tmp, file)
      } catch (e) {
        // A full disk leaves a partial temporary file: never leave it behind.
        await fs.promises.rm(tmp, { force: true })
        throw e
      }
    },
    catch: (cause) => new StorageError({ operation: "writing", path: file, cause })
  })


/**
 * Saves a state file atomically; a failed write is reported on stderr once (not at every change,
 * a full disk would flood it) and the next change tries again.
 */
export const reportingFailures = <A>(file: string, render: (value: A) => string) => {
  let failing = false
  return (value: A): Effect.Effect<void> =>
    writeFileAtomic(file, render(value)).pipe(
      Effect.matchEffect({
        onFailure: (error) =>
          Effect.sync(() => {
            if (!failing) process.stderr.write(`starforge: ${error.message}; retried at the next change\n`)
            failing = true
          }),
        onSuccess: () => Effect.sync(() => void (failing = false))
      })
    )
}

export class AgentSlots extends Context.Tag("starforge/AgentSlots")<AgentSlots, AgentSlotsShape>() {
  /**
   * The slot file of the project. The table found at start is kept as is (busy slots included)
   * for crash recovery; a failed write is reported on stderr and retried with the next change.
   */
  static readonly layer = Layer.effect(
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
  static readonly memory = (initial: SlotTable = {}) => Layer.effect(AgentSlots, make(initial, () => Effect.void))
}
