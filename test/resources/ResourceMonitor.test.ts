/**
 * The sampler of the agents' processes: the pure `nextSample`, then the service on a fake process
 * table whose usage the test sets, in-memory slots, under the TestClock.
 *
 * A pass runs at start and then every `RESOURCE_SAMPLE_INTERVAL`; each pass ends with a timer set
 * for the next. A test moves the clock to the next pass only once that timer is set and reads its
 * result once the timer after it is set.
 */
import * as os from "node:os"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Context, Duration, Effect, Fiber, Layer, Metric, Option, Ref, TestClock } from "effect"
import { DaemonConfig, type DaemonSettings } from "../../src/config/DaemonConfig.js"
import { idleSlot } from "../../src/domain/Slot.js"
import { DaemonLog } from "../../src/observability/DaemonLog.js"
import { ProcessTable, type TreeUsage } from "../../src/platform/ProcessTable.js"
import * as ResourceMonitor from "../../src/resources/ResourceMonitor.js"
import { AgentSlots } from "../../src/slots/AgentSlots.js"
import { eventually, eventuallySleeping } from "../support/eventually.js"

const MB = 1024 * 1024

const tree = (rssMb: number, cpuSeconds: number, processes = 1): TreeUsage => ({ rssBytes: rssMb * MB, cpuSeconds, processes })

describe("nextSample", () => {
  it("the first sample of an attempt: CPU use since the attempt started", () => {
    const sample = ResourceMonitor.nextSample("a", 42, tree(100, 6, 3), undefined, 0, 60_000)
    expect(sample).toEqual({
      agent: "a",
      pid: 42,
      cpuPercent: 10,
      rssBytes: 100 * MB,
      processes: 3,
      peakRssBytes: 100 * MB,
      cpuSeconds: 6,
      sampledAtMs: 60_000
    })
    // Too soon after the start to tell.
    expect(ResourceMonitor.nextSample("a", 42, tree(100, 0.01), undefined, 60_000, 60_050).cpuPercent).toBeNull()
  })

  it("CPU use from the rise of cpuSeconds over the time since the previous sample", () => {
    const first = ResourceMonitor.nextSample("a", 42, tree(100, 6), undefined, 0, 60_000)
    const second = ResourceMonitor.nextSample("a", 42, tree(80, 8.5), first, 0, 65_000)
    // 2.5 s of CPU in 5 s.
    expect(second.cpuPercent).toBe(50)
    expect(second.cpuSeconds).toBe(8.5)
    expect(second.sampledAtMs).toBe(65_000)
    // Several cores: above 100.
    const third = ResourceMonitor.nextSample("a", 42, tree(80, 18.5), second, 0, 70_000)
    expect(third.cpuPercent).toBe(200)
    // One decimal.
    expect(ResourceMonitor.nextSample("a", 42, tree(80, 9.5), third, 0, 73_000).cpuPercent).toBe(0)
    expect(ResourceMonitor.nextSample("a", 42, tree(80, 19.5), third, 0, 73_000).cpuPercent).toBe(33.3)
  })

  it("keeps the peak memory of the attempt", () => {
    const first = ResourceMonitor.nextSample("a", 42, tree(100, 1), undefined, 0, 5_000)
    const second = ResourceMonitor.nextSample("a", 42, tree(300, 2), first, 0, 10_000)
    const third = ResourceMonitor.nextSample("a", 42, tree(50, 3), second, 0, 15_000)
    expect([first.peakRssBytes, second.peakRssBytes, third.peakRssBytes]).toEqual([100 * MB, 300 * MB, 300 * MB])
    expect(third.rssBytes).toBe(50 * MB)
  })

  it("a drop of cpuSeconds (a child gone) never gives a negative CPU use", () => {
    const first = ResourceMonitor.nextSample("a", 42, tree(100, 10), undefined, 0, 5_000)
    const dropped = ResourceMonitor.nextSample("a", 42, tree(100, 4), first, 0, 10_000)
    expect(dropped.cpuPercent).toBe(0)
    // The attempt's CPU time never goes down either.
    expect(dropped.cpuSeconds).toBe(10)
    const after = ResourceMonitor.nextSample("a", 42, tree(100, 12), dropped, 0, 15_000)
    expect(after.cpuPercent).toBe(40)
    expect(after.cpuSeconds).toBe(12)
  })

  it("a new pid is a new attempt: the peak and the CPU time start again", () => {
    const old = ResourceMonitor.nextSample("a", 42, tree(900, 100), undefined, 0, 5_000)
    const fresh = ResourceMonitor.nextSample("a", 43, tree(50, 2), old, 8_000, 10_000)
    expect(fresh.pid).toBe(43)
    expect(fresh.peakRssBytes).toBe(50 * MB)
    expect(fresh.cpuSeconds).toBe(2)
    // Since the new attempt's start, not since the old pid's sample.
    expect(fresh.cpuPercent).toBe(100)
  })
})

// ---------------------------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------------------------

const INTERVAL_MS = 5_000
/** Every test starts the clock here; the agents started at 0. */
const START_MS = 60_000
const PID = 4242

const base: Partial<DaemonSettings> = { parallel: true, maxConcurrent: 4, resourceSampleIntervalMs: INTERVAL_MS }

/** A process table whose `usage` answers from a `Ref`, for the groups asked about; records every question. */
const fakeTable = Effect.gen(function*() {
  const usage = yield* Ref.make<ReadonlyMap<number, TreeUsage>>(new Map())
  // While set, a pass dies with it (as the posix layer does when `ps` cannot run).
  const broken = yield* Ref.make<string | undefined>(undefined)
  const asked = yield* Ref.make<ReadonlyArray<ReadonlyArray<number>>>([])
  const empty = Context.get(yield* Layer.build(ProcessTable.empty), ProcessTable)
  const layer = Layer.succeed(ProcessTable, {
    ...empty,
    usage: (pgids) =>
      Effect.zipRight(
        Ref.update(asked, (all) => [...all, [...pgids]]),
        Effect.flatMap(Ref.get(broken), (message) =>
          message !== undefined
            ? Effect.die(new Error(message))
            : Effect.map(Ref.get(usage), (all) => new Map([...all].filter(([pgid]) => pgids.includes(pgid)))))
      )
  })
  return {
    layer,
    asked: Ref.get(asked),
    set: (entries: ReadonlyArray<readonly [number, TreeUsage]>) => Ref.set(usage, new Map(entries)),
    breakWith: (message: string | undefined) => Ref.set(broken, message)
  }
})

/**
 * In-memory slots and the fake table at `START_MS`; `start` builds the monitor over them (the
 * test makes its slots busy first) and returns once its first pass is done.
 */
const setup = (settings: Partial<DaemonSettings> = {}) =>
  Effect.gen(function*() {
    yield* TestClock.setTime(START_MS)
    const table = yield* fakeTable
    const slotsContext = yield* Layer.build(AgentSlots.memory())
    const log = yield* DaemonLog.memory
    const slots = Context.get(slotsContext, AgentSlots)
    const intervalMs = settings.resourceSampleIntervalMs ?? INTERVAL_MS
    let now = START_MS
    const start = Effect.gen(function*() {
      const context = yield* Layer.build(
        ResourceMonitor.layer.pipe(
          Layer.provide(Layer.mergeAll(Layer.succeedContext(slotsContext), table.layer, log.layer, DaemonConfig.layerSettings(os.tmpdir(), { ...base, ...settings })))
        )
      )
      if (intervalMs > 0) yield* eventuallySleeping("the pass after the first", START_MS + intervalMs)
      return Context.get(context, ResourceMonitor.ResourceMonitor)
    })
    /** Moves the clock to the next pass and returns once it is done. */
    const nextPass = Effect.gen(function*() {
      yield* eventuallySleeping(`the pass due at ${now + intervalMs}`, now + intervalMs)
      yield* TestClock.adjust(Duration.millis(intervalMs))
      now += intervalMs
      yield* eventuallySleeping(`the pass after the one at ${now}`, now + intervalMs)
    })
    /** Makes `agent`'s slot busy with a job started at 0, running as `pid` (none: not spawned yet). */
    const busy = (agent: string, pid?: number) =>
      Effect.gen(function*() {
        yield* slots.markBusy(agent, { ticket: null, trigger: `${agent}-1`, attempt: 1, traceId: null, startedAt: "1970-01-01T00:00:00Z" })
        if (pid !== undefined) yield* slots.setProcess(agent, { pid, startTime: "1", log: `/logs/${agent}.log` })
      })
    const slot = (agent: string) => Effect.map(slots.snapshot, (all) => all[agent])
    return { table, slots, start, nextPass, busy, slot, lines: log.lines }
  })

const gauge = (metric: Metric.Metric.Gauge<number>, agent: string) =>
  Effect.map(Metric.value(Metric.tagged(metric, "agent", agent)), (state) => state.value)

describe("ResourceMonitor service", () => {
  it.scoped("writes each pass to the busy slot, the metrics and `latest`", () =>
    Effect.gen(function*() {
      const s = yield* setup()
      yield* s.busy("sampled", PID)
      yield* s.table.set([[PID, tree(100, 6, 3)]])
      const monitor = yield* s.start
      // The first pass, at start: CPU since the job started (6 s in 60 s).
      expect(yield* s.slot("sampled")).toMatchObject({
        status: "busy",
        pid: String(PID),
        rss_bytes: 100 * MB,
        processes: 3,
        peak_rss_bytes: 100 * MB,
        cpu_percent: 10,
        cpu_seconds: 6,
        sampled_at: "1970-01-01T00:01:00Z"
      })

      yield* s.table.set([[PID, tree(80, 8.5, 2)]])
      yield* s.nextPass
      expect(yield* s.slot("sampled")).toMatchObject({
        rss_bytes: 80 * MB,
        processes: 2,
        peak_rss_bytes: 100 * MB,
        cpu_percent: 50,
        cpu_seconds: 8.5,
        sampled_at: "1970-01-01T00:01:05Z"
      })
      expect(yield* monitor.latest("sampled", PID)).toEqual(Option.some({
        agent: "sampled",
        pid: PID,
        cpuPercent: 50,
        rssBytes: 80 * MB,
        processes: 2,
        peakRssBytes: 100 * MB,
        cpuSeconds: 8.5,
        sampledAtMs: START_MS + INTERVAL_MS
      }))
      // Another pid (an earlier attempt), or another agent: nothing.
      expect(yield* monitor.latest("sampled", PID + 1)).toEqual(Option.none())
      expect(yield* monitor.latest("other", PID)).toEqual(Option.none())
      expect(yield* gauge(ResourceMonitor.metrics.rssBytes, "sampled")).toBe(80 * MB)
      expect(yield* gauge(ResourceMonitor.metrics.cpuPercent, "sampled")).toBe(50)
      expect(yield* gauge(ResourceMonitor.metrics.processes, "sampled")).toBe(2)

      // The job ended: no longer sampled, its metrics read zero.
      yield* s.slots.markIdle("sampled")
      yield* s.nextPass
      expect(yield* monitor.latest("sampled", PID)).toEqual(Option.none())
      expect(yield* gauge(ResourceMonitor.metrics.rssBytes, "sampled")).toBe(0)
      expect(yield* gauge(ResourceMonitor.metrics.cpuPercent, "sampled")).toBe(0)
      expect(yield* gauge(ResourceMonitor.metrics.processes, "sampled")).toBe(0)
      expect(yield* s.slot("sampled")).toEqual(idleSlot)
    }))

  it.scoped("a tree gone from the table while its slot is busy keeps its last sample for the attempt's history, until the slot frees", () =>
    Effect.gen(function*() {
      const s = yield* setup()
      yield* s.busy("vanishing", PID)
      yield* s.table.set([[PID, tree(100, 6)]])
      const monitor = yield* s.start
      const first = yield* monitor.latest("vanishing", PID)
      expect(Option.isSome(first)).toBe(true)
      // Exited, its attempt not recorded yet: a pass in between must not lose the sample.
      yield* s.table.set([])
      yield* s.nextPass
      expect(yield* monitor.latest("vanishing", PID)).toEqual(first)
      expect(yield* s.slot("vanishing")).toMatchObject({ rss_bytes: 100 * MB, sampled_at: "1970-01-01T00:01:00Z" })
      // Recorded and idle: the sample goes.
      yield* s.slots.markIdle("vanishing")
      yield* s.nextPass
      expect(yield* monitor.latest("vanishing", PID)).toEqual(Option.none())
    }))

  it.scoped("`overLimit` completes only after two samples in a row over the limit", () =>
    Effect.gen(function*() {
      const s = yield* setup()
      yield* s.busy("hungry", PID)
      yield* s.table.set([[PID, tree(600, 1)]])
      const monitor = yield* s.start
      const limit = 500 * MB
      const over = yield* Effect.fork(monitor.overLimit("hungry", PID, limit))
      // Another pid of the same agent is never over anything.
      const otherPid = yield* Effect.fork(monitor.overLimit("hungry", PID + 1, 0))
      // Both wait for passes: subscribed.
      yield* eventually("overLimit to wait for passes", Fiber.status(over), (st) => st._tag === "Suspended")
      yield* eventually("overLimit (other pid) to wait for passes", Fiber.status(otherPid), (st) => st._tag === "Suspended")

      // Over, then under: the count starts again.
      yield* s.nextPass
      yield* s.table.set([[PID, tree(400, 2)]])
      yield* s.nextPass
      expect(Option.isNone(yield* Fiber.poll(over))).toBe(true)
      // Over twice in a row (different sizes, to tell which pass ended it).
      yield* s.table.set([[PID, tree(650, 3)]])
      yield* s.nextPass
      expect(Option.isNone(yield* Fiber.poll(over))).toBe(true)
      yield* s.table.set([[PID, tree(700, 4)]])
      yield* s.nextPass
      const done = yield* eventually("overLimit to complete", Fiber.poll(over), Option.isSome)
      expect(Option.isSome(done)).toBe(true)
      const sample = yield* Fiber.join(over)
      // The second of the two in a row: the pass at 80 s.
      expect(sample).toMatchObject({ agent: "hungry", pid: PID, rssBytes: 700 * MB, peakRssBytes: 700 * MB, sampledAtMs: START_MS + 4 * INTERVAL_MS })
      expect(Option.isNone(yield* Fiber.poll(otherPid))).toBe(true)
      yield* Fiber.interrupt(otherPid)
    }))

  it.scoped("a limit only exceeded once in a while never completes `overLimit`", () =>
    Effect.gen(function*() {
      const s = yield* setup()
      yield* s.busy("spiky", PID)
      yield* s.table.set([[PID, tree(100, 1)]])
      const monitor = yield* s.start
      const over = yield* Effect.fork(monitor.overLimit("spiky", PID, 500 * MB))
      yield* eventually("overLimit to wait for passes", Fiber.status(over), (st) => st._tag === "Suspended")
      for (const rss of [600, 100, 600, 100, 600, 500]) {
        yield* s.table.set([[PID, tree(rss, 1)]])
        yield* s.nextPass
      }
      // 500 MB is not over 500 MB.
      expect(Option.isNone(yield* Fiber.poll(over))).toBe(true)
      yield* Fiber.interrupt(over)
    }))

  it.scoped("samples only busy slots with a process", () =>
    Effect.gen(function*() {
      const s = yield* setup()
      yield* s.busy("running", PID)
      // Reserved for a job whose process has not started yet.
      yield* s.busy("reserved")
      // Ran a job that ended.
      yield* s.busy("finished", 5151)
      yield* s.slots.markIdle("finished")
      yield* s.table.set([[PID, tree(100, 1)], [5151, tree(300, 1)]])
      const monitor = yield* s.start
      yield* s.nextPass
      expect(yield* s.table.asked).toEqual([[PID], [PID]])
      expect(yield* s.slot("running")).toHaveProperty("rss_bytes", 100 * MB)
      expect(yield* s.slot("reserved")).not.toHaveProperty("rss_bytes")
      expect(yield* s.slot("finished")).toEqual(idleSlot)
      expect(yield* monitor.latest("finished", 5151)).toEqual(Option.none())
    }))

  it.scoped("a new process of the agent starts a new peak", () =>
    Effect.gen(function*() {
      const s = yield* setup()
      yield* s.busy("retried", PID)
      yield* s.table.set([[PID, tree(900, 50)]])
      const monitor = yield* s.start
      expect(yield* s.slot("retried")).toHaveProperty("peak_rss_bytes", 900 * MB)
      // Its next attempt, as another process (started at 0 as far as the slot tells).
      yield* s.busy("retried", 5151)
      yield* s.table.set([[5151, tree(100, 2)]])
      yield* s.nextPass
      expect(yield* s.slot("retried")).toMatchObject({ pid: "5151", rss_bytes: 100 * MB, peak_rss_bytes: 100 * MB, cpu_seconds: 2 })
      expect(yield* monitor.latest("retried", PID)).toEqual(Option.none())
      expect(Option.map(yield* monitor.latest("retried", 5151), (r) => r.peakRssBytes)).toEqual(Option.some(100 * MB))
    }))

  it.scoped("RESOURCE_SAMPLE_INTERVAL=0 samples nothing", () =>
    Effect.gen(function*() {
      const s = yield* setup({ resourceSampleIntervalMs: 0 })
      yield* s.busy("unwatched", PID)
      yield* s.table.set([[PID, tree(100, 1)]])
      const monitor = yield* s.start
      yield* TestClock.adjust("1 minute")
      // No timer left anywhere (the slot file's writer included): no sampler is waiting to run.
      yield* eventually("no timer", TestClock.sleeps(), Chunk.isEmpty)
      expect(yield* s.table.asked).toEqual([])
      expect(yield* s.slot("unwatched")).not.toHaveProperty("rss_bytes")
      expect(yield* monitor.latest("unwatched", PID)).toEqual(Option.none())
    }))

  it.scoped("a pass that fails is said once in the daemon log; sampling goes on, and says so when it works again", () =>
    Effect.gen(function*() {
      const s = yield* setup()
      yield* s.busy("alpha", PID)
      yield* s.table.set([[PID, tree(100, 1)]])
      yield* s.table.breakWith("/bin/ps failed: spawn EAGAIN")
      yield* s.start
      yield* s.nextPass
      yield* s.nextPass
      const warnings = (yield* s.lines).filter((l) => l.includes("Resource sampling failed"))
      expect(warnings).toHaveLength(1)
      expect(warnings[0]).toContain("WARN: Resource sampling failed: /bin/ps failed: spawn EAGAIN; tried again every pass")
      yield* s.table.breakWith(undefined)
      yield* s.nextPass
      expect((yield* s.lines).filter((l) => l.includes("Resource sampling works again"))).toHaveLength(1)
      expect(yield* s.slot("alpha")).toHaveProperty("rss_bytes", 100 * MB)
    }))
})
