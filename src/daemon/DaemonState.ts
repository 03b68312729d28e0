/**
 * `C/daemon-state.json` (contract §6): when the daemon started, the last trigger it processed,
 * how many triggers succeeded (carried across restarts) and the trigger it runs now.
 */
import * as fs from "node:fs"
import { Clock, Context, Effect, Layer, Ref } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { isoSeconds } from "../domain/time.js"
import { latestWriter, writeFileAtomicAsync } from "../slots/AgentSlots.js"

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
}

interface Internal {
  readonly file: StateFile
  /** Running triggers, oldest start first. */
  readonly running: ReadonlyArray<string>
}

/** Reads the previous total; a missing or corrupt file starts from 0. */
export const previousTotal = (file: string): number => {
  try {
    const parsed = JSON.parse(fs.readFileSync(file, "utf8")) as { total_triggers_processed?: unknown }
    const n = parsed.total_triggers_processed
    return typeof n === "number" && Number.isInteger(n) && n >= 0 ? n : 0
  } catch {
    return 0
  }
}

export const make = (initialTotal: number, save: (state: StateFile) => Effect.Effect<void>) =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const state = yield* Ref.make<Internal>({
      file: {
        daemon_started: isoSeconds(now),
        last_trigger_processed: null,
        total_triggers_processed: initialTotal,
        current_trigger: "none"
      },
      running: []
    })
    const persist = yield* latestWriter(Effect.map(Ref.get(state), (s) => s.file), save)
    const update = (f: (s: Internal, nowIso: string) => Internal) =>
      Clock.currentTimeMillis.pipe(
        Effect.flatMap((ms) => Ref.update(state, (s) => f(s, isoSeconds(ms)))),
        Effect.zipRight(persist)
      )
    yield* persist
    // At shutdown nothing runs any more.
    yield* Effect.addFinalizer(() =>
      update((s) => ({ running: [], file: { ...s.file, current_trigger: "none" } }))
    )
    const service: DaemonStateShape = {
      started: (trigger) =>
        update((s) => ({ running: [...s.running, trigger], file: { ...s.file, current_trigger: trigger } })),
      finished: (trigger, succeeded) =>
        update((s, nowIso) => {
          const running = s.running.filter((t) => t !== trigger)
          return {
            running,
            file: {
              ...s.file,
              last_trigger_processed: nowIso,
              total_triggers_processed: s.file.total_triggers_processed + (succeeded ? 1 : 0),
              current_trigger: running[running.length - 1] ?? "none"
            }
          }
        }),
      current: Effect.map(Ref.get(state), (s) => s.file)
    }
    return service
  })

export class DaemonState extends Context.Tag("starforge/DaemonState")<DaemonState, DaemonStateShape>() {
  static readonly layer = Layer.scoped(
    DaemonState,
    Effect.gen(function*() {
      const { paths } = yield* DaemonConfig
      return yield* make(previousTotal(paths.stateFile), (s) =>
        writeFileAtomicAsync(paths.stateFile, JSON.stringify(s, null, 2) + "\n").pipe(
          Effect.catchAll((error) => Effect.sync(() => process.stderr.write(`starforge: ${error.message}\n`)))
        ))
    })
  )

  static readonly memory = Layer.scoped(DaemonState, make(0, () => Effect.void))
}
