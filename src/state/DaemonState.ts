/**
 * `C/daemon-state.json` (contract §6): when the daemon started, the last trigger it processed,
 * how many triggers succeeded (carried across restarts) and the trigger it runs now.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Clock, Context, Effect, Layer, Schema } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { isoSeconds } from "../domain/time.js"
import { keepCorruptCopy, readStateFile, reportingFailures, writeBehind } from "../io/stateFile.js"

export interface StateFile {
  readonly daemon_started: string
  readonly last_trigger_processed: string | null
  readonly total_triggers_processed: number
  readonly current_trigger: string
}

export interface DaemonStateShape {
  /** A trigger's agent started. */
  readonly started: (trigger: string) => Effect.Effect<void>
  /** A trigger left the running set; `succeeded` counts it in the total. */
  readonly finished: (trigger: string, succeeded: boolean) => Effect.Effect<void>
  readonly current: Effect.Effect<StateFile>
  /**
   * Returns once the file has every change made so far (changes are written behind, soon after
   * they happen); also writes the file again after it was deleted under the daemon.
   */
  readonly persist: Effect.Effect<void>
  /** How the file was found at start when it could not be used as it was (logged by recovery). */
  readonly startNote: string | undefined
}

const StateFileSchema = Schema.Struct({
  daemon_started: Schema.String,
  last_trigger_processed: Schema.NullOr(Schema.String),
  total_triggers_processed: Schema.NonNegativeInt,
  current_trigger: Schema.String
})
const decodeState = Schema.decodeUnknownEither(Schema.parseJson(StateFileSchema))

/** What loading the state file at start found. */
export interface LoadedState {
  readonly total: number
  /** How the file was found when it could not be used as it was, for the start-up log. */
  readonly note?: string
}

/** Successful triggers still in the archive: the best count when the state file is lost. */
const countArchived = (processed: string): number => {
  try {
    return fs.readdirSync(processed).filter((n) => n.endsWith(".trigger")).length
  } catch {
    return 0
  }
}

/**
 * Reads the total of the previous daemon. A missing or corrupt file (a copy of it is kept) is
 * rebuilt from the triggers archived in `processed/`.
 */
export const loadState = (file: string, processed: string, now: number): LoadedState => {
  const read = readStateFile(file, decodeState)
  if (read._tag === "Valid") return { total: read.value.total_triggers_processed }
  const total = countArchived(processed)
  const rebuilt = `total_triggers_processed rebuilt from ${path.basename(processed)}/ (${total})`
  if (read._tag === "Missing") return { total, note: `${path.basename(file)} was not found; ${rebuilt}` }
  const copy = keepCorruptCopy(file, now)
  return {
    total,
    note: `${path.basename(file)} was ${read.problem}; ${copy ? `kept a copy as ${path.basename(copy)}` : "no copy could be kept"}; ${rebuilt}`
  }
}

/** At most one write of the state file per this many ms while changes keep coming. */
export const STATE_WRITE_SPACING_MS = 50

export const make = (
  initialTotal: number,
  save: (state: StateFile) => Effect.Effect<void>,
  startNote?: string,
  spacingMs = STATE_WRITE_SPACING_MS
) =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    let file: StateFile = {
      daemon_started: isoSeconds(now),
      last_trigger_processed: null,
      total_triggers_processed: initialTotal,
      current_trigger: "none"
    }
    // Running triggers, oldest start first; changed in place, so a job's start and end copy nothing.
    const running: Array<string> = []
    const writer = yield* writeBehind(Effect.sync(() => file), save, spacingMs)
    const persist = writer.flush
    const update = (next: (current: StateFile, nowIso: string) => StateFile) =>
      Clock.currentTimeMillis.pipe(
        Effect.flatMap((ms) => Effect.sync(() => void (file = next(file, isoSeconds(ms))))),
        Effect.zipRight(writer.changed)
      )
    const newest = () => running[running.length - 1] ?? "none"
    yield* persist
    // At shutdown nothing runs any more: saved before the writer stops.
    yield* Effect.addFinalizer(() =>
      update((current) => {
        running.length = 0
        return { ...current, current_trigger: "none" }
      }).pipe(Effect.zipRight(persist))
    )
    const service: DaemonStateShape = {
      started: (trigger) =>
        update((current) => {
          running.push(trigger)
          return { ...current, current_trigger: trigger }
        }),
      finished: (trigger, succeeded) =>
        update((current, nowIso) => {
          for (let at = running.indexOf(trigger); at >= 0; at = running.indexOf(trigger, at)) running.splice(at, 1)
          return {
            ...current,
            last_trigger_processed: nowIso,
            total_triggers_processed: current.total_triggers_processed + (succeeded ? 1 : 0),
            current_trigger: newest()
          }
        }),
      current: Effect.sync(() => file),
      persist,
      startNote
    }
    return service
  })

export class DaemonState extends Context.Tag("starforge/DaemonState")<DaemonState, DaemonStateShape>() {
  static readonly layer = Layer.scoped(
    DaemonState,
    Effect.gen(function*() {
      const { paths } = yield* DaemonConfig
      const loaded = loadState(paths.stateFile, paths.processed, Date.now())
      return yield* make(loaded.total, reportingFailures(paths.stateFile, (s: StateFile) => JSON.stringify(s, null, 2) + "\n"), loaded.note)
    })
  )

  static readonly memory = Layer.scoped(DaemonState, make(0, () => Effect.void))
}
