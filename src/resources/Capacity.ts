/**
 * Dynamic scaling: the effective cap on running agents, between `MIN_CONCURRENT_AGENTS` and the
 * hard cap (`MAX_CONCURRENT_AGENTS`, 1 in sequential mode), from the machine's load and available
 * memory (`SCALE_MAX_LOAD`, `SCALE_MIN_FREE_MEMORY_MB`).
 *
 * - Over a threshold, the cap drops to what is running (never below the minimum): new starts wait.
 * - Under both for a whole `SCALE_INTERVAL`, it rises one step; the cap changes at most once per
 *   `SCALE_INTERVAL`, so it does not flap.
 * - Available memory under half of `SCALE_MIN_FREE_MEMORY_MB` is an emergency: the youngest agent
 *   must stop (`emergencies`; the scheduler stops it) while more than the minimum run, and the cap
 *   drops below what runs, at once. The next one waits until that agent has stopped.
 *
 * Running agents are never stopped to lower the cap; only an emergency stops one. Every change is
 * a `SCALE` line in the daemon log and is written to `C/daemon/capacity.json` for `status`.
 */
import * as path from "node:path"
import { Clock, Context, Duration, Effect, Layer, Metric, Queue, Ref, Schedule, Schema, Stream, SubscriptionRef } from "effect"
import { DaemonConfig, type DaemonSettings } from "../config/DaemonConfig.js"
import { formatMegabytes, formatSeconds } from "../domain/Outcome.js"
import type { ProjectPaths } from "../domain/ProjectPaths.js"
import { isoSeconds } from "../domain/time.js"
import { readStateFile, reportingFailures, writeBehind } from "../io/stateFile.js"
import { DaemonLog } from "../observability/DaemonLog.js"
import { type MachineReading, MachineState } from "../platform/MachineState.js"
import { AgentSlots, SLOTS_WRITE_SPACING_MS } from "../slots/AgentSlots.js"

/** The thresholds, from the settings. */
export interface Limits {
  /** `MAX_CONCURRENT_AGENTS` (1 in sequential mode). */
  readonly hard: number
  readonly min: number
  /** Load average per core; 0: not watched. */
  readonly maxLoad: number
  /** Bytes; 0: not watched. */
  readonly minFreeBytes: number
  readonly intervalMs: number
}

export const limitsOf = (settings: DaemonSettings): Limits => {
  const hard = settings.parallel ? settings.maxConcurrent : 1
  return {
    hard,
    min: Math.min(settings.minConcurrent, hard),
    maxLoad: settings.scaleMaxLoad,
    minFreeBytes: settings.scaleMinFreeMemoryBytes,
    intervalMs: settings.scaleIntervalMs
  }
}

/** Is any threshold watched? Without one the cap is the hard cap, always. */
export const scales = (limits: Limits): boolean => limits.hard > limits.min && (limits.maxLoad > 0 || limits.minFreeBytes > 0)

/** Where the cap stands. */
export interface CapacityState {
  readonly cap: number
  /** Why the cap is below the hard cap; null at the hard cap. */
  readonly reason: string | null
  /** The last change (epoch ms); null before the first. */
  readonly changedAtMs: number | null
  /** Since when the machine has been under every threshold; null while over one. */
  readonly calmSinceMs: number | null
}

export const initialState = (limits: Limits): CapacityState => ({ cap: limits.hard, reason: null, changedAtMs: null, calmSinceMs: null })

/** What one look at the machine decides. */
export interface Step {
  readonly state: CapacityState
  /** The cap changed: the log line's text. */
  readonly change?: string
  /** Memory ran short: why the youngest agent is stopped. */
  readonly emergency?: string
}

const round2 = (n: number) => Math.round(n * 100) / 100

/** The next state of the cap after looking at the machine while `running` agents run. */
export const step = (limits: Limits, state: CapacityState, reading: MachineReading, running: number, nowMs: number): Step => {
  const loadPerCore = reading.loadAverage / Math.max(1, reading.cores)
  const available = reading.availableMemoryBytes
  const over: Array<string> = []
  if (limits.maxLoad > 0 && loadPerCore > limits.maxLoad) {
    over.push(`load ${round2(loadPerCore)} per core is over SCALE_MAX_LOAD ${limits.maxLoad}`)
  }
  if (limits.minFreeBytes > 0 && available < limits.minFreeBytes) {
    over.push(`available memory ${formatMegabytes(available)} is under SCALE_MIN_FREE_MEMORY_MB ${formatMegabytes(limits.minFreeBytes)}`)
  }
  const mayChange = state.changedAtMs === null || nowMs - state.changedAtMs >= limits.intervalMs
  const changed = (cap: number, reason: string | null, why: string, extra: Partial<Step> = {}): Step => ({
    state: { cap, reason, changedAtMs: nowMs, calmSinceMs: over.length === 0 ? state.calmSinceMs ?? nowMs : null },
    change: `Effective cap ${state.cap} → ${cap} (max ${limits.hard}, min ${limits.min}): ${why}`,
    ...extra
  })

  // An agent over the cap is one an emergency already stops (its slot frees when its group is gone).
  if (limits.minFreeBytes > 0 && available < limits.minFreeBytes / 2 && running > limits.min && running <= state.cap) {
    const why = `available memory ${formatMegabytes(available)} is under half of SCALE_MIN_FREE_MEMORY_MB ${formatMegabytes(limits.minFreeBytes)}`
    const cap = Math.max(limits.min, running - 1)
    return changed(cap, over.join("; "), `${why}; the youngest agent is stopped`, { emergency: why })
  }
  if (over.length > 0) {
    const target = Math.max(limits.min, Math.min(state.cap, running))
    const reason = over.join("; ")
    if (target < state.cap && mayChange) return changed(target, reason, reason)
    // Still over: the reason stays current, the cap as it is.
    return { state: { ...state, reason: state.cap < limits.hard ? reason : state.reason, calmSinceMs: null } }
  }
  const calmSinceMs = state.calmSinceMs ?? nowMs
  if (state.cap < limits.hard && mayChange && nowMs - calmSinceMs >= limits.intervalMs) {
    const cap = state.cap + 1
    return changed(
      cap,
      cap < limits.hard ? `rising one step per SCALE_INTERVAL: under the thresholds since ${isoSeconds(calmSinceMs)}` : null,
      `under the thresholds for ${formatSeconds(round2((nowMs - calmSinceMs) / 1000))}`
    )
  }
  return { state: { ...state, calmSinceMs } }
}

/** What `status` shows of the cap (`C/daemon/capacity.json`). */
export const CapacityView = Schema.Struct({
  effective_cap: Schema.Number,
  max_concurrent: Schema.Number,
  min_concurrent: Schema.Number,
  reason: Schema.NullOr(Schema.String),
  changed_at: Schema.NullOr(Schema.String),
  load_per_core: Schema.NullOr(Schema.Number),
  available_memory_bytes: Schema.NullOr(Schema.Number),
  checked_at: Schema.NullOr(Schema.String)
})
export type CapacityView = typeof CapacityView.Type

export const capacityFile = (paths: ProjectPaths) => path.join(paths.daemonDir, "capacity.json")

const decodeView = Schema.decodeUnknownEither(Schema.parseJson(CapacityView))

/** The cap a running daemon last wrote; undefined when there is none. */
export const readCapacity = (paths: ProjectPaths): CapacityView | undefined => {
  const read = readStateFile(capacityFile(paths), decodeView)
  return read._tag === "Valid" ? read.value : undefined
}

export interface CapacityShape {
  /** The cap now. */
  readonly current: Effect.Effect<CapacityView>
  /** Every change of the cap (the current value first). */
  readonly changes: Stream.Stream<CapacityView>
  /** One element per memory emergency: why the youngest running agent must stop. */
  readonly emergencies: Stream.Stream<string>
}

export class Capacity extends Context.Tag("starforge/Capacity")<Capacity, CapacityShape>() {
  /** The cap fixed at the hard cap, for tests and daemons that do not scale. */
  static readonly fixed = (cap: number): Layer.Layer<Capacity> =>
    Layer.succeed(Capacity, {
      current: Effect.sync(() => {
        const limits: Limits = { hard: cap, min: cap, maxLoad: 0, minFreeBytes: 0, intervalMs: 1 }
        return viewOf(limits, initialState(limits), undefined, null)
      }),
      changes: Stream.never,
      emergencies: Stream.never
    })
}

const viewOf = (limits: Limits, state: CapacityState, reading: MachineReading | undefined, checkedAtMs: number | null): CapacityView => ({
  effective_cap: state.cap,
  max_concurrent: limits.hard,
  min_concurrent: limits.min,
  reason: state.cap < limits.hard ? state.reason : null,
  changed_at: state.changedAtMs === null ? null : isoSeconds(state.changedAtMs),
  load_per_core: reading === undefined ? null : round2(reading.loadAverage / Math.max(1, reading.cores)),
  available_memory_bytes: reading?.availableMemoryBytes ?? null,
  checked_at: checkedAtMs === null ? null : isoSeconds(checkedAtMs)
})

/** The effective cap, exported with the agents' metrics. */
export const effectiveCapGauge = Metric.gauge("starforge.effective_cap", { description: "Agents allowed to run at once now" })

/** How often the machine is looked at: often enough for a change to be seen within a few seconds. */
const checkEvery = (limits: Limits) => Duration.millis(Math.min(limits.intervalMs, 5_000))

export const make = Effect.gen(function*() {
  const { paths, settings } = yield* DaemonConfig
  const limits = limitsOf(settings)
  const view = yield* SubscriptionRef.make(viewOf(limits, initialState(limits), undefined, null))
  // Written behind the looks, as the slot file is: a look never waits for the disk.
  const file = yield* writeBehind(
    SubscriptionRef.get(view),
    reportingFailures(capacityFile(paths), (current: CapacityView) => JSON.stringify(current, null, 2) + "\n"),
    SLOTS_WRITE_SPACING_MS
  )
  yield* file.flush
  const emergencies = yield* Queue.unbounded<string>()
  yield* Metric.set(effectiveCapGauge, limits.hard)

  if (scales(limits)) {
    const machine = yield* MachineState
    const slots = yield* AgentSlots
    const log = yield* DaemonLog
    const state = yield* Ref.make(initialState(limits))
    const look = Effect.gen(function*() {
      const reading = yield* machine.read
      const now = yield* Clock.currentTimeMillis
      const next = step(limits, yield* Ref.get(state), reading, yield* slots.countBusy, now)
      yield* Ref.set(state, next.state)
      const current = viewOf(limits, next.state, reading, now)
      yield* SubscriptionRef.set(view, current)
      if (next.change !== undefined) {
        yield* log.event("SCALE", next.change)
        yield* Metric.set(effectiveCapGauge, next.state.cap)
      }
      if (next.emergency !== undefined) yield* Queue.offer(emergencies, next.emergency)
      yield* file.changed
    })
    yield* look.pipe(Effect.repeat(Schedule.spaced(checkEvery(limits))), Effect.forkScoped)
  }

  return {
    current: SubscriptionRef.get(view),
    changes: Stream.changesWith(view.changes, (a, b) => a.effective_cap === b.effective_cap),
    emergencies: Stream.fromQueue(emergencies)
  } satisfies CapacityShape
})

export const layer = Layer.scoped(Capacity, make)
