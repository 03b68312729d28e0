/**
 * Dynamic scaling: the pure `step` of the effective cap, then the service on a fake machine,
 * in-memory slots and the in-memory daemon log, under the TestClock.
 *
 * The service looks at the machine at start and then every `min(SCALE_INTERVAL, 5 s)`; each
 * look ends with a timer set for the next. A test moves the clock to the next look only once that
 * timer is set, and reads the result once the timer after it is set: no pause for a number of
 * turns anywhere.
 *
 * `capacity.json` is written for real, behind the looks: after each look a test also waits for
 * its writer (`writerPausedAt`), and reads the file once it has the look it waits for (`writtenAt`).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Context, Effect, Layer, Ref, Stream, TestClock } from "effect"
import { DaemonConfig, type DaemonSettings, defaultSettings } from "../../src/config/DaemonConfig.js"
import { type ProjectPaths, projectPaths } from "../../src/domain/ProjectPaths.js"
import { busySlot, type SlotTable } from "../../src/domain/Slot.js"
import { DaemonLog } from "../../src/observability/DaemonLog.js"
import { type MachineReading, MachineState } from "../../src/platform/MachineState.js"
import * as Capacity from "../../src/resources/Capacity.js"
import { AgentSlots, SLOTS_WRITE_SPACING_MS } from "../../src/slots/AgentSlots.js"
import { eventually, eventuallySleeping } from "../support/eventually.js"

const MB = 1024 * 1024
const GB = 1024 * MB

/** Four cores, nothing running, plenty of memory. */
const calm: MachineReading = { cores: 4, loadAverage: 0, availableMemoryBytes: 8 * GB, totalMemoryBytes: 16 * GB }
/** 2 per core: over SCALE_MAX_LOAD 1. */
const loaded: MachineReading = { ...calm, loadAverage: 8 }
const memory = (availableMb: number): MachineReading => ({ ...calm, availableMemoryBytes: availableMb * MB })

const limits: Capacity.Limits = { hard: 4, min: 1, maxLoad: 1, minFreeBytes: 1024 * MB, intervalMs: 30_000 }
const initial = Capacity.initialState(limits)

/** The state after a series of looks, each `[reading, running, nowMs]`, from `state`. */
const after = (
  looks: ReadonlyArray<readonly [MachineReading, number, number]>,
  state: Capacity.CapacityState = initial,
  lim: Capacity.Limits = limits
): Capacity.CapacityState => looks.reduce((s, [reading, running, now]) => Capacity.step(lim, s, reading, running, now).state, state)

describe("limitsOf / scales", () => {
  it("takes the thresholds from the settings; sequential mode caps at 1", () => {
    const settings: DaemonSettings = {
      ...defaultSettings,
      parallel: true,
      maxConcurrent: 6,
      minConcurrent: 2,
      scaleMaxLoad: 1.5,
      scaleMinFreeMemoryBytes: 512 * MB,
      scaleIntervalMs: 10_000
    }
    expect(Capacity.limitsOf(settings)).toEqual({ hard: 6, min: 2, maxLoad: 1.5, minFreeBytes: 512 * MB, intervalMs: 10_000 })
    const sequential = Capacity.limitsOf({ ...settings, parallel: false })
    expect(sequential.hard).toBe(1)
    expect(sequential.min).toBe(1)
    expect(Capacity.scales(sequential)).toBe(false)
  })

  it("scales only with a threshold set and room between the minimum and the hard cap", () => {
    expect(Capacity.scales(limits)).toBe(true)
    expect(Capacity.scales({ ...limits, maxLoad: 0 })).toBe(true)
    expect(Capacity.scales({ ...limits, minFreeBytes: 0 })).toBe(true)
    expect(Capacity.scales({ ...limits, maxLoad: 0, minFreeBytes: 0 })).toBe(false)
    expect(Capacity.scales({ ...limits, min: 4 })).toBe(false)
    expect(Capacity.scales({ ...limits, hard: 1, min: 1 })).toBe(false)
    // The defaults watch nothing.
    expect(Capacity.scales(Capacity.limitsOf({ ...defaultSettings, parallel: true, maxConcurrent: 4 }))).toBe(false)
  })

  it("starts at the hard cap", () => {
    expect(initial).toEqual({ cap: 4, reason: null, changedAtMs: null, calmSinceMs: null })
  })
})

describe("step", () => {
  it("over SCALE_MAX_LOAD, drops the cap to what is running", () => {
    const next = Capacity.step(limits, initial, loaded, 2, 1_000)
    expect(next.state).toEqual({ cap: 2, reason: "load 2 per core is over SCALE_MAX_LOAD 1", changedAtMs: 1_000, calmSinceMs: null })
    expect(next.change).toBe("Effective cap 4 → 2 (max 4, min 1): load 2 per core is over SCALE_MAX_LOAD 1")
    expect(next.emergency).toBeUndefined()
    // The load is per core, rounded to hundredths.
    expect(Capacity.step(limits, initial, { ...calm, loadAverage: 5, cores: 3 }, 1, 0).state.reason).toBe(
      "load 1.67 per core is over SCALE_MAX_LOAD 1"
    )
  })

  it("never drops below MIN_CONCURRENT_AGENTS", () => {
    expect(Capacity.step(limits, initial, loaded, 0, 0).state.cap).toBe(1)
    const min3 = { ...limits, min: 3 }
    const next = Capacity.step(min3, Capacity.initialState(min3), loaded, 1, 0)
    expect(next.state.cap).toBe(3)
    expect(next.change).toBe("Effective cap 4 → 3 (max 4, min 3): load 2 per core is over SCALE_MAX_LOAD 1")
    // At the minimum already: nothing to drop.
    const atMin = { ...min3, hard: 3 }
    const still = Capacity.step(atMin, Capacity.initialState(atMin), loaded, 0, 0)
    expect(still.state.cap).toBe(3)
    expect(still.change).toBeUndefined()
  })

  it("over a threshold with as many running as the cap: no change, the reason stays null at the hard cap", () => {
    const next = Capacity.step(limits, initial, loaded, 4, 0)
    expect(next.change).toBeUndefined()
    expect(next.state).toEqual({ cap: 4, reason: null, changedAtMs: null, calmSinceMs: null })
  })

  it("a load exactly at SCALE_MAX_LOAD is not over it", () => {
    const next = Capacity.step(limits, initial, { ...calm, loadAverage: 4 }, 1, 0)
    expect(next.change).toBeUndefined()
    expect(next.state.calmSinceMs).toBe(0)
  })

  it("changes the cap at most once per SCALE_INTERVAL", () => {
    const dropped = after([[loaded, 2, 0]])
    expect(dropped.cap).toBe(2)
    // Fewer run now, still over: the cap may not follow them before the interval is over.
    const early = Capacity.step(limits, dropped, loaded, 1, 29_999)
    expect(early.change).toBeUndefined()
    expect(early.state.cap).toBe(2)
    expect(early.state.changedAtMs).toBe(0)
    expect(early.state.reason).toBe("load 2 per core is over SCALE_MAX_LOAD 1")
    const due = Capacity.step(limits, early.state, loaded, 1, 30_000)
    expect(due.change).toBe("Effective cap 2 → 1 (max 4, min 1): load 2 per core is over SCALE_MAX_LOAD 1")
    expect(due.state.cap).toBe(1)
    expect(due.state.changedAtMs).toBe(30_000)
  })

  it("rises one step after a whole interval under the thresholds, then one step per interval up to the hard cap", () => {
    const dropped = after([[loaded, 2, 0]])
    // Calm from 10 s on.
    const calmFrom10 = Capacity.step(limits, dropped, calm, 2, 10_000)
    expect(calmFrom10.change).toBeUndefined()
    expect(calmFrom10.state).toEqual({ ...dropped, calmSinceMs: 10_000 })
    const notYet = Capacity.step(limits, calmFrom10.state, calm, 2, 39_999)
    expect(notYet.change).toBeUndefined()
    expect(notYet.state.cap).toBe(2)

    const first = Capacity.step(limits, notYet.state, calm, 2, 40_000)
    expect(first.change).toBe("Effective cap 2 → 3 (max 4, min 1): under the thresholds for 30s")
    expect(first.state).toEqual({
      cap: 3,
      reason: "rising one step per SCALE_INTERVAL: under the thresholds since 1970-01-01T00:00:10Z",
      changedAtMs: 40_000,
      calmSinceMs: 10_000
    })
    expect(first.emergency).toBeUndefined()

    // Calm for long enough already, but the last change was less than an interval ago.
    const between = Capacity.step(limits, first.state, calm, 3, 69_999)
    expect(between.change).toBeUndefined()
    expect(between.state.cap).toBe(3)

    const second = Capacity.step(limits, between.state, calm, 3, 70_000)
    expect(second.change).toBe("Effective cap 3 → 4 (max 4, min 1): under the thresholds for 60s")
    expect(second.state.cap).toBe(4)
    // At the hard cap: nothing to explain.
    expect(second.state.reason).toBeNull()

    const atHard = Capacity.step(limits, second.state, calm, 4, 200_000)
    expect(atHard.change).toBeUndefined()
    expect(atHard.state.cap).toBe(4)
  })

  it("a look over a threshold restarts the calm spell", () => {
    const state = after([[loaded, 2, 0], [calm, 2, 10_000], [loaded, 2, 20_000], [calm, 2, 25_000]])
    expect(state.cap).toBe(2)
    expect(state.calmSinceMs).toBe(25_000)
    // 30 s after 10 s: the spell that counted started at 25 s.
    expect(Capacity.step(limits, state, calm, 2, 40_000).change).toBeUndefined()
    expect(Capacity.step(limits, state, calm, 2, 55_000).state.cap).toBe(3)
  })

  it("memory under SCALE_MIN_FREE_MEMORY_MB drops the cap like the load does, without an emergency", () => {
    const next = Capacity.step(limits, initial, memory(700), 3, 0)
    expect(next.emergency).toBeUndefined()
    expect(next.state.cap).toBe(3)
    expect(next.state.reason).toBe("available memory 700 MB is under SCALE_MIN_FREE_MEMORY_MB 1024 MB")
    expect(next.change).toBe(
      "Effective cap 4 → 3 (max 4, min 1): available memory 700 MB is under SCALE_MIN_FREE_MEMORY_MB 1024 MB"
    )
    // Both at once: both reasons.
    const both = Capacity.step(limits, initial, { ...loaded, availableMemoryBytes: 700 * MB }, 2, 0)
    expect(both.state.reason).toBe(
      "load 2 per core is over SCALE_MAX_LOAD 1; available memory 700 MB is under SCALE_MIN_FREE_MEMORY_MB 1024 MB"
    )
  })

  it("memory under half of SCALE_MIN_FREE_MEMORY_MB is an emergency: the cap drops below what runs, at once", () => {
    const next = Capacity.step(limits, initial, memory(400), 3, 0)
    const why = "available memory 400 MB is under half of SCALE_MIN_FREE_MEMORY_MB 1024 MB"
    expect(next.emergency).toBe(why)
    expect(next.state).toEqual({
      cap: 2,
      reason: "available memory 400 MB is under SCALE_MIN_FREE_MEMORY_MB 1024 MB",
      changedAtMs: 0,
      calmSinceMs: null
    })
    expect(next.change).toBe(`Effective cap 4 → 2 (max 4, min 1): ${why}; the youngest agent is stopped`)

    // Within the interval of the last change: at once all the same.
    const again = Capacity.step(limits, next.state, memory(300), 2, 1_000)
    expect(again.emergency).toBe("available memory 300 MB is under half of SCALE_MIN_FREE_MEMORY_MB 1024 MB")
    expect(again.state.cap).toBe(1)
    expect(again.state.changedAtMs).toBe(1_000)
  })

  it("no second emergency while the agent the first one stops is still running", () => {
    const first = Capacity.step(limits, initial, memory(400), 3, 0)
    expect(first.state.cap).toBe(2)
    // Its group takes up to a kill grace to stop: the next look still counts 3 running.
    const pending = Capacity.step(limits, first.state, memory(400), 3, 5_000)
    expect(pending.emergency).toBeUndefined()
    expect(pending.change).toBeUndefined()
    expect(pending.state.cap).toBe(2)
    expect(pending.state.changedAtMs).toBe(0)
    // Stopped, and memory still short: the next one.
    const next = Capacity.step(limits, pending.state, memory(400), 2, 10_000)
    expect(next.emergency).toBeDefined()
    expect(next.state.cap).toBe(1)
  })

  it("no emergency while no more than MIN_CONCURRENT_AGENTS run, and never below it", () => {
    const atMin = Capacity.step(limits, initial, memory(100), 1, 0)
    expect(atMin.emergency).toBeUndefined()
    // Still under the threshold: the cap drops to what runs.
    expect(atMin.state.cap).toBe(1)
    const none = Capacity.step(limits, initial, memory(100), 0, 0)
    expect(none.emergency).toBeUndefined()
    expect(none.state.cap).toBe(1)

    const min2 = { ...limits, min: 2 }
    expect(Capacity.step(min2, Capacity.initialState(min2), memory(100), 2, 0).emergency).toBeUndefined()
    const over = Capacity.step(min2, Capacity.initialState(min2), memory(100), 3, 0)
    expect(over.emergency).toBeDefined()
    expect(over.state.cap).toBe(2)
    // Running 2 over a minimum of 1: the cap drops to 1, never to 0.
    expect(Capacity.step(limits, initial, memory(100), 2, 0).state.cap).toBe(1)
  })

  it("memory alone is not watched when SCALE_MIN_FREE_MEMORY_MB is 0", () => {
    const loadOnly = { ...limits, minFreeBytes: 0 }
    const next = Capacity.step(loadOnly, Capacity.initialState(loadOnly), memory(1), 3, 0)
    expect(next.change).toBeUndefined()
    expect(next.emergency).toBeUndefined()
    expect(next.state.cap).toBe(4)
  })
})

// ---------------------------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------------------------

/** `min(SCALE_INTERVAL, 5 s)`: the time between two looks at the machine. */
const CHECK_MS = 5_000

const scaling: Partial<DaemonSettings> = {
  parallel: true,
  maxConcurrent: 4,
  minConcurrent: 1,
  scaleMaxLoad: 1,
  scaleMinFreeMemoryBytes: 0,
  scaleIntervalMs: 30_000,
  resourceSampleIntervalMs: 0
}

/** A temporary project root; removed with the test's scope. */
const tempRoot = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "starforge-capacity-"))),
  (root) => Effect.sync(() => fs.rmSync(root, { recursive: true, force: true }))
)

const busyTable = (...agents: ReadonlyArray<string>): SlotTable =>
  Object.fromEntries(agents.map((agent) => [
    agent,
    busySlot({ ticket: null, trigger: `${agent}-1`, attempt: 1, traceId: null, startedAt: "1970-01-01T00:00:00Z" })
  ]))

/**
 * Like `eventually`, for a value that changes only once a write to disk has completed: between
 * two looks, Node's event loop turns once (`setImmediate`: no timer, no pause), where the write's
 * completion comes in. `eventually` counts turns of Effect's scheduler, which a slow disk (or a
 * busy machine) can outlast; the deadline here is one of real time, far beyond any write.
 */
const eventuallyAfterIo = <A>(what: string, check: Effect.Effect<A>, until: (value: A) => boolean): Effect.Effect<A> =>
  Effect.gen(function*() {
    const deadline = Date.now() + 20_000
    for (;;) {
      const value = yield* check
      if (until(value)) return value
      if (Date.now() > deadline) return yield* Effect.dieMessage(`waited in vain for ${what}; last seen: ${JSON.stringify(value)}`)
      yield* Effect.async<void>((resume) => {
        const turn = setImmediate(() => resume(Effect.void))
        return Effect.sync(() => clearImmediate(turn))
      })
    }
  })

/**
 * `capacity.json` is written behind the looks, by a writer that pauses `SLOTS_WRITE_SPACING_MS`
 * on the clock after each write. That pause starts once the write is done, in real time: were the
 * clock moved to the next look before, the pause would end only 50 ms after that look, and the
 * look's view would reach the file only when the clock next moves. So after each look a test
 * waits for the writer's pause, which also tells the file has the look.
 */
const writerPausedAt = (instant: number) =>
  Effect.asVoid(eventuallyAfterIo(
    `capacity.json's writer to pause until ${instant}`,
    Effect.map(TestClock.sleeps(), Chunk.toReadonlyArray),
    (sleeps) => sleeps.includes(instant)
  ))

/** `capacity.json` once it has the view of the look at `ms` (or a later one). */
const writtenAt = (paths: ProjectPaths, ms: number) =>
  eventuallyAfterIo(
    `capacity.json of the look at ${ms}`,
    Effect.sync(() => Capacity.readCapacity(paths)),
    (view) => view?.checked_at != null && Date.parse(view.checked_at) >= ms
  ).pipe(Effect.map((view) => view!))

/** Builds the service over fakes; returns it with its fakes once its first look (at 0) is done. */
const withCapacity = (settings: Partial<DaemonSettings>, busy: ReadonlyArray<string>, reading: MachineReading = calm) =>
  Effect.gen(function*() {
    const root = yield* tempRoot
    const paths = projectPaths(root)
    const machine = yield* MachineState.fake(reading)
    const log = yield* DaemonLog.memory
    const context = yield* Layer.build(
      Layer.provideMerge(
        Capacity.layer,
        Layer.mergeAll(DaemonConfig.layerSettings(root, { ...scaling, ...settings }), machine.layer, log.layer, AgentSlots.memory(busyTable(...busy)))
      )
    )
    const capacity = Context.get(context, Capacity.Capacity)
    const slots = Context.get(context, AgentSlots)
    /** Moves the clock to the look due at `ms` and returns once it is done (the next one is set). */
    const lookAt = (ms: number) =>
      Effect.gen(function*() {
        yield* eventuallySleeping(`the look due at ${ms}`, ms)
        yield* TestClock.setTime(ms)
        yield* eventuallySleeping(`the look after the one at ${ms}`, ms + CHECK_MS)
        yield* writerPausedAt(ms + SLOTS_WRITE_SPACING_MS)
      })
    let now = 0
    /** Every look from the last one up to `ms`, one at a time. */
    const lookUntil = (ms: number) =>
      Effect.gen(function*() {
        while (now < ms) {
          now += CHECK_MS
          yield* lookAt(now)
        }
      })
    const capAt = (ms: number) => Effect.zipRight(lookUntil(ms), Effect.map(capacity.current, (v) => v.effective_cap))
    const scaleLines = Effect.map(log.lines, (all) => all.filter((l) => l.includes("] SCALE: ")))
    yield* eventuallySleeping("the first look", CHECK_MS)
    yield* writerPausedAt(SLOTS_WRITE_SPACING_MS)
    return { paths, capacity, slots, machine: machine.reading, lookUntil, capAt, scaleLines, lines: log.lines }
  })

const readJson = (file: string): unknown => JSON.parse(fs.readFileSync(file, "utf8"))

describe("Capacity service", () => {
  it.scoped("drops the cap when the load rises, logs it as SCALE, and rises one step after 30 s under the thresholds", () =>
    Effect.gen(function*() {
      const c = yield* withCapacity({}, ["a", "b"])
      const seen = yield* Ref.make<ReadonlyArray<number>>([])
      yield* c.capacity.changes.pipe(
        Stream.runForEach((view) => Ref.update(seen, (all) => [...all, view.effective_cap])),
        Effect.forkScoped
      )
      // The current value first.
      yield* eventually("the current cap on the stream", Ref.get(seen), (all) => all.length === 1)
      expect(yield* Ref.get(seen)).toEqual([4])
      expect((yield* c.capacity.current).effective_cap).toBe(4)
      expect((yield* c.capacity.current).checked_at).toBe("1970-01-01T00:00:00Z")

      yield* Ref.set(c.machine, loaded)
      expect(yield* c.capAt(5_000)).toBe(2)
      expect(yield* c.scaleLines).toEqual([
        "[1970-01-01T00:00:05.000Z] [] SCALE: Effective cap 4 → 2 (max 4, min 1): load 2 per core is over SCALE_MAX_LOAD 1"
      ])
      yield* eventually("the drop on the stream", Ref.get(seen), (all) => all.length === 2)
      const view = yield* c.capacity.current
      expect(view).toEqual({
        effective_cap: 2,
        max_concurrent: 4,
        min_concurrent: 1,
        reason: "load 2 per core is over SCALE_MAX_LOAD 1",
        changed_at: "1970-01-01T00:00:05Z",
        load_per_core: 2,
        available_memory_bytes: 8 * GB,
        checked_at: "1970-01-01T00:00:05Z"
      })

      // Calm from 10 s on: up one step at 40 s, not before.
      yield* Ref.set(c.machine, calm)
      expect(yield* c.capAt(35_000)).toBe(2)
      expect(yield* c.scaleLines).toHaveLength(1)
      expect(yield* c.capAt(40_000)).toBe(3)
      expect(yield* c.scaleLines).toHaveLength(2)
      expect((yield* c.scaleLines)[1]).toBe(
        "[1970-01-01T00:00:40.000Z] [] SCALE: Effective cap 2 → 3 (max 4, min 1): under the thresholds for 30s"
      )
      expect((yield* c.capacity.current).reason).toBe("rising one step per SCALE_INTERVAL: under the thresholds since 1970-01-01T00:00:10Z")
      // One step per interval: 4 at 70 s.
      expect(yield* c.capAt(65_000)).toBe(3)
      expect(yield* c.capAt(70_000)).toBe(4)
      expect((yield* c.capacity.current).reason).toBeNull()
      // Looks that leave the cap as it is are not on the stream (the last change is there).
      yield* c.lookUntil(90_000)
      yield* eventually("the rises on the stream", Ref.get(seen), (all) => all.length === 4)
      expect(yield* Ref.get(seen)).toEqual([4, 2, 3, 4])
      expect(yield* c.scaleLines).toHaveLength(3)
    }))

  it.scoped("holds the cap for a whole interval: a look over the threshold restarts the calm spell, a drop waits for the interval", () =>
    Effect.gen(function*() {
      const c = yield* withCapacity({}, ["a", "b"])
      yield* Ref.set(c.machine, loaded)
      expect(yield* c.capAt(5_000)).toBe(2)
      // Calm at 10 s, over again at 15 s (2 run: nothing to drop), calm from 20 s.
      yield* Ref.set(c.machine, calm)
      expect(yield* c.capAt(10_000)).toBe(2)
      yield* Ref.set(c.machine, loaded)
      expect(yield* c.capAt(15_000)).toBe(2)
      yield* Ref.set(c.machine, calm)
      // 40 s would have been 30 s after the first calm look: the spell restarted at 20 s.
      expect(yield* c.capAt(45_000)).toBe(2)
      expect(yield* c.capAt(50_000)).toBe(3)

      // Over again right after the rise, with one agent fewer: the drop to 1 waits until 80 s.
      yield* c.slots.markIdle("b")
      yield* Ref.set(c.machine, loaded)
      expect(yield* c.capAt(55_000)).toBe(3)
      expect((yield* c.capacity.current).reason).toBe("load 2 per core is over SCALE_MAX_LOAD 1")
      expect(yield* c.capAt(75_000)).toBe(3)
      expect(yield* c.capAt(80_000)).toBe(1)
      expect((yield* c.scaleLines).map((l) => l.slice(0, 27) + l.slice(l.indexOf("Effective cap"), l.indexOf(" (max")))).toEqual([
        "[1970-01-01T00:00:05.000Z] Effective cap 4 → 2",
        "[1970-01-01T00:00:50.000Z] Effective cap 2 → 3",
        "[1970-01-01T00:01:20.000Z] Effective cap 3 → 1"
      ])
    }))

  it.scoped("writes capacity.json in the project's .claude/daemon with the cap and why", () =>
    Effect.gen(function*() {
      const c = yield* withCapacity({}, ["a", "b"])
      const file = Capacity.capacityFile(c.paths)
      expect(file).toBe(path.join(c.paths.root, ".claude", "daemon", "capacity.json"))
      // The first look's.
      yield* writtenAt(c.paths, 0)
      expect(readJson(file)).toEqual({
        effective_cap: 4,
        max_concurrent: 4,
        min_concurrent: 1,
        reason: null,
        changed_at: null,
        load_per_core: 0,
        available_memory_bytes: 8 * GB,
        checked_at: "1970-01-01T00:00:00Z"
      })

      yield* Ref.set(c.machine, loaded)
      yield* c.lookUntil(5_000)
      yield* writtenAt(c.paths, 5_000)
      expect(readJson(file)).toMatchObject({
        effective_cap: 2,
        reason: "load 2 per core is over SCALE_MAX_LOAD 1",
        changed_at: "1970-01-01T00:00:05Z",
        load_per_core: 2,
        checked_at: "1970-01-01T00:00:05Z"
      })
      // Every look is written, not only changes; `readCapacity` is what `status` reads.
      yield* c.lookUntil(10_000)
      expect(yield* writtenAt(c.paths, 10_000)).toMatchObject({
        effective_cap: 2,
        reason: "load 2 per core is over SCALE_MAX_LOAD 1",
        changed_at: "1970-01-01T00:00:05Z",
        checked_at: "1970-01-01T00:00:10Z"
      })
    }))

  it.scoped("a memory emergency puts a reason on `emergencies` at once, until no more than the minimum run", () =>
    Effect.gen(function*() {
      const c = yield* withCapacity({ scaleMaxLoad: 0, scaleMinFreeMemoryBytes: 1024 * MB }, ["a", "b", "c"])
      const emergencies = yield* Ref.make<ReadonlyArray<string>>([])
      yield* c.capacity.emergencies.pipe(
        Stream.runForEach((why) => Ref.update(emergencies, (all) => [...all, why])),
        Effect.forkScoped
      )
      yield* Ref.set(c.machine, memory(400))
      expect(yield* c.capAt(5_000)).toBe(2)
      const why = "available memory 400 MB is under half of SCALE_MIN_FREE_MEMORY_MB 1024 MB"
      expect(yield* eventually("an emergency", Ref.get(emergencies), (all) => all.length >= 1)).toEqual([why])
      expect(yield* c.scaleLines).toEqual([
        `[1970-01-01T00:00:05.000Z] [] SCALE: Effective cap 4 → 2 (max 4, min 1): ${why}; the youngest agent is stopped`
      ])
      expect(yield* writtenAt(c.paths, 5_000)).toMatchObject({
        effective_cap: 2,
        reason: "available memory 400 MB is under SCALE_MIN_FREE_MEMORY_MB 1024 MB",
        available_memory_bytes: 400 * MB
      })

      // The scheduler stopped the youngest; still short 5 s later, within the interval: another.
      yield* c.slots.markIdle("c")
      expect(yield* c.capAt(10_000)).toBe(1)
      expect(yield* eventually("a second emergency", Ref.get(emergencies), (all) => all.length >= 2)).toEqual([why, why])

      // One runs, the minimum: no more emergencies, however short the memory.
      yield* c.slots.markIdle("b")
      yield* Ref.set(c.machine, memory(100))
      expect(yield* c.capAt(20_000)).toBe(1)
      expect((yield* c.capacity.current).checked_at).toBe("1970-01-01T00:00:20Z")
      expect(yield* Ref.get(emergencies)).toHaveLength(2)
      expect(yield* c.scaleLines).toHaveLength(2)
    }))

  it.scoped("without a threshold, never looks at the machine: the cap stays the hard cap", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const paths = projectPaths(root)
      const log = yield* DaemonLog.memory
      // No MachineState at all would do too; one that fails the test if read.
      const machine = Layer.succeed(MachineState, { read: Effect.dieMessage("the machine was read") })
      const context = yield* Layer.build(
        Capacity.layer.pipe(
          Layer.provide(
            Layer.mergeAll(
              DaemonConfig.layerSettings(root, { ...scaling, scaleMaxLoad: 0, scaleMinFreeMemoryBytes: 0 }),
              machine,
              log.layer,
              AgentSlots.memory(busyTable("a", "b"))
            )
          )
        )
      )
      const capacity = Context.get(context, Capacity.Capacity)
      // No timer: nothing looks.
      expect(Chunk.toReadonlyArray(yield* TestClock.sleeps())).toEqual([])
      yield* TestClock.adjust("1 minute")
      expect(yield* capacity.current).toEqual({
        effective_cap: 4,
        max_concurrent: 4,
        min_concurrent: 1,
        reason: null,
        changed_at: null,
        load_per_core: null,
        available_memory_bytes: null,
        checked_at: null
      })
      // Written once, at start.
      expect(Capacity.readCapacity(paths)).toEqual(yield* capacity.current)
      expect(yield* log.lines).toEqual([])
    }))

  it.effect("Capacity.fixed stays at its cap", () =>
    Effect.gen(function*() {
      const capacity = yield* Capacity.Capacity
      expect(yield* capacity.current).toMatchObject({ effective_cap: 3, max_concurrent: 3, min_concurrent: 3, reason: null })
    }).pipe(Effect.provide(Capacity.Capacity.fixed(3))))
})
