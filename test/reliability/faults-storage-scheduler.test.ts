/**
 * Faults, "nothing lost", at the library level: the scheduler over the fake spawner and an
 * in-memory queue wrapped to fail on demand, so it runs the same with or without root. The
 * agent's log cannot be written (its directory is gone) for a while; the archive, the
 * dead-letter move or the requeue fails for a while. Nothing is lost, nothing is counted against
 * the trigger, no agent runs twice for one success, and work resumes when the storage does,
 * without a restart.
 *
 * Every wait is for an event (`eventually`): a process start, a timer the code set, a line of
 * the daemon log, an outcome of the queue.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, ExecutionStrategy, Exit, Layer, Scope, TestClock } from "effect"
import { DaemonConfig, type DaemonSettings } from "../../src/config/DaemonConfig.js"
import { StorageError } from "../../src/domain/errors.js"
import { ExitStatus } from "../../src/domain/Outcome.js"
import { projectPaths } from "../../src/domain/ProjectPaths.js"
import type { Trigger } from "../../src/domain/Trigger.js"
import { Notifier } from "../../src/notify/Notifier.js"
import { DaemonLog } from "../../src/observability/DaemonLog.js"
import { type FakeProcess, makeFake } from "../../src/process/Spawner.js"
import { type Completion, makeMemory, TriggerQueue } from "../../src/queue/TriggerQueue.js"
import * as Scheduler from "../../src/scheduler/Scheduler.js"
import { AgentSlots } from "../../src/slots/AgentSlots.js"
import { DaemonState } from "../../src/state/DaemonState.js"
import { History } from "../../src/state/History.js"
import { Sessions } from "../../src/state/Sessions.js"
import { Usage } from "../../src/state/Usage.js"
import { eventually, eventuallySleeping, eventuallyTake } from "../support/eventually.js"
import { resourceLayers } from "../support/resources.js"

const settings: Partial<DaemonSettings> = {
  parallel: true,
  maxConcurrent: 999,
  agentTimeoutMs: 60_000,
  killGraceMs: 1_000,
  // 2 s: no other timer of the daemon (its state writes, 1 s after an attempt) falls on a retry.
  initialRetryDelayMs: 2_000,
  monitorIntervalMs: 10_000,
  agentCommand: ["agent"],
  resourceSampleIntervalMs: 0
}

const t = (agent: string): Trigger => ({ to_agent: agent, action: "work" })

const ENOSPC = Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" })
const EROFS = Object.assign(new Error("EROFS: read-only file system, rename"), { code: "EROFS" })

/** Faults the test switches on and off: how many of the next archive or dead-letter moves, and requeues, fail. */
interface Faults {
  complete: number
  requeue: number
}

const readText = (file: string) => fs.readFileSync(file, "utf8")

/** The scheduler over the in-memory queue (wrapped to fail on demand) and the fake spawner, in a temporary project. */
const withFaultyScheduler = <A, E>(
  overrides: Partial<DaemonSettings>,
  body: (env: {
    readonly faults: Faults
    readonly logs: string
    /** The agents' logs directory goes away (its logs with it): no agent log can be opened. */
    readonly logsGone: Effect.Effect<void>
    /** …and comes back. */
    readonly logsBack: Effect.Effect<void>
    readonly add: (name: string, trigger: Trigger) => Effect.Effect<void>
    /** The next process that starts, with its log's header read from disk. */
    readonly next: Effect.Effect<FakeProcess & { readonly header: string }>
    readonly startedCount: Effect.Effect<number>
    /** Every `complete` that went through, in order. */
    readonly outcomes: Effect.Effect<ReadonlyArray<{ readonly name: string; readonly completion: Completion }>>
    /** Until the queue has `count` outcomes. */
    readonly outcomesAt: (count: number) => Effect.Effect<ReadonlyArray<{ readonly name: string; readonly completion: Completion }>>
    readonly requeued: Effect.Effect<ReadonlyArray<string>>
    /** Until the queue has requeued `count` triggers. */
    readonly requeuedAt: (count: number) => Effect.Effect<ReadonlyArray<string>>
    readonly lines: Effect.Effect<ReadonlyArray<string>>
    /** Until the daemon log has `count` lines containing `text`; returns them. */
    readonly linesWith: (text: string, count?: number) => Effect.Effect<ReadonlyArray<string>>
    readonly close: Effect.Effect<void>
  }) => Effect.Effect<A, E>
) =>
  Effect.gen(function*() {
    const faults: Faults = { complete: 0, requeue: 0 }
    const paths = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const root = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-faults-"))
        fs.mkdirSync(projectPaths(root).logs, { recursive: true })
        return projectPaths(root)
      }),
      (paths) => Effect.sync(() => fs.rmSync(paths.root, { recursive: true, force: true }))
    )
    const away = `${paths.logs}.away`
    const fake = yield* makeFake
    const queue = yield* makeMemory
    const log = yield* DaemonLog.memory
    const history = yield* History.memory
    const notifier = yield* Notifier.memory
    const faultyQueue = Layer.effect(
      TriggerQueue,
      Effect.map(TriggerQueue, (real) => ({
        ...real,
        complete: (claimed, completion) =>
          Effect.zipRight(
            Effect.suspend(() => {
              if (faults.complete <= 0) return Effect.void
              faults.complete--
              return Effect.fail(new StorageError({ operation: "archiving", path: claimed.file, cause: ENOSPC }))
            }),
            real.complete(claimed, completion)
          ),
        requeue: (claimed) =>
          Effect.zipRight(
            Effect.suspend(() => {
              if (faults.requeue <= 0) return Effect.void
              faults.requeue--
              return Effect.fail(new StorageError({ operation: "requeueing", path: claimed.file, cause: EROFS }))
            }),
            real.requeue(claimed)
          )
      }))
    ).pipe(Layer.provide(queue.layer))
    const services = Layer.mergeAll(
      fake.layer,
      faultyQueue,
      log.layer,
      history.layer,
      AgentSlots.memory(),
      DaemonState.memory,
      Usage.memory(),
      Sessions.memory(),
      notifier.layer,
      DaemonConfig.layerSettings(paths.root, { ...settings, ...overrides })
    )
    const schedulerScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    yield* Layer.buildWithScope(Layer.provideMerge(Scheduler.layer, Layer.provideMerge(resourceLayers(), services)), schedulerScope)
    const given = new Set<string>()
    return yield* body({
      faults,
      logs: paths.logs,
      logsGone: Effect.sync(() => fs.renameSync(paths.logs, away)),
      logsBack: Effect.sync(() => fs.renameSync(away, paths.logs)),
      add: (name, trigger) => queue.add(name, trigger),
      next: Effect.gen(function*() {
        const process = yield* eventuallyTake("a process to start", fake.started)
        const trigger = path.basename(process.request.env["STARFORGE_TRIGGER_FILE"] ?? "", ".processing")
        // Its log was written before it was spawned: the one not yet seen that names its trigger.
        const file = fs.readdirSync(paths.logs).map((name) => path.join(paths.logs, name)).find((file) =>
          !given.has(file) && readText(file).includes(`\nTrigger: ${trigger}.trigger\n`)
        )
        if (file === undefined) return yield* Effect.dieMessage(`no log in ${paths.logs} for ${trigger}`)
        given.add(file)
        return { ...process, header: readText(file).split("\n\n")[0]! }
      }),
      startedCount: Effect.map(fake.runs, (r) => r.length),
      outcomes: queue.outcomes,
      outcomesAt: (count) => eventually(`${count} outcome(s) of the queue`, queue.outcomes, (all) => all.length >= count),
      requeued: queue.requeued,
      requeuedAt: (count) => eventually(`${count} requeue(s)`, queue.requeued, (all) => all.length >= count),
      lines: log.lines,
      linesWith: (text, count = 1) =>
        Effect.map(
          eventually(`${count} daemon log line(s) with "${text}"`, log.lines, (all) => all.filter((l) => l.includes(text)).length >= count),
          (all) => all.filter((l) => l.includes(text))
        ),
      close: Scope.close(schedulerScope, Exit.void)
    })
  })

const errors = (lines: ReadonlyArray<string>) => lines.filter((l) => l.includes("] ERROR: "))

describe("the agent's log cannot be written", () => {
  it.scoped("the agent is not started, the trigger goes back to the queue, no attempt is counted, and it runs when the disk is back", () =>
    withFaultyScheduler({ maxRetries: 1 }, (s) =>
      Effect.gen(function*() {
        // Five failures in a row, far more than MAX_RETRIES=1: none of them is an attempt.
        yield* s.logsGone
        yield* s.add("a-1", t("a"))
        for (let i = 1; i <= 5; i++) {
          expect(yield* s.requeuedAt(i)).toHaveLength(i)
          expect(yield* s.outcomes).toEqual([])
          expect(yield* s.startedCount).toBe(0)
          if (i === 5) yield* s.logsBack
          // Not tried again before PROCESS_MONITOR_INTERVAL, even though the queue changed.
          yield* eventuallySleeping(`try ${i + 1}`, i * 10_000)
          yield* TestClock.adjust("9999 millis")
          yield* TestClock.adjust("1 millis")
        }
        const run = yield* s.next
        expect(run.request.env["STARFORGE_ATTEMPT"]).toBe("1")
        expect(run.header).toContain("Attempt: 1/1")
        expect(run.header).toContain("Started: 1970-01-01T00:00:50Z")
        yield* run.finish(ExitStatus.Exited({ code: 0 }))
        expect((yield* s.outcomesAt(1)).map((o) => [o.name, o.completion._tag])).toEqual([["a-1", "Done"]])
        expect(yield* s.startedCount).toBe(1)
        const lines = yield* s.lines
        expect(errors(lines)).toHaveLength(5)
        // One try every 10 s, each named by its time: none came early.
        expect(errors(lines).map((l) => /logs\/(a-\d+\.log) failed/.exec(l)?.[1])).toEqual(["a-0.log", "a-10.log", "a-20.log", "a-30.log", "a-40.log"])
        expect(errors(lines)[0]).toContain(`ERROR: writing the agent log ${s.logs}/a-0.log failed: ENOENT: no such file or directory`)
        expect(errors(lines)[0]).toMatch(
          /; a was not started for a-1\.trigger \(attempt 1\/1 not counted\); it stays queued and is tried again in 10s$/
        )
        expect(lines.filter((l) => l.includes("QUEUE: a-1.trigger not started; back in the queue"))).toHaveLength(5)
        expect(lines.some((l) => l.includes("DLQ:"))).toBe(false)
      })))

  it.scoped("a retry whose log cannot be written keeps its attempt number and the earlier attempts", () =>
    withFaultyScheduler({ maxRetries: 2 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        yield* (yield* s.next).finish(ExitStatus.Exited({ code: 3 }))
        yield* s.linesWith("RETRY: Attempt 2/2 for a-1.trigger in 2s")
        yield* s.logsGone
        // The retry after 2 s, then 2 × the monitor interval of storage failures.
        yield* eventuallySleeping("the wait before attempt 2", 2_000)
        yield* TestClock.adjust("2 seconds")
        yield* s.requeuedAt(1)
        yield* eventuallySleeping("the next try", 12_000)
        yield* TestClock.adjust("10 seconds")
        yield* s.requeuedAt(2)
        yield* s.logsBack
        yield* eventuallySleeping("the next try", 22_000)
        yield* TestClock.adjust("10 seconds")
        const second = yield* s.next
        expect(second.request.env["STARFORGE_ATTEMPT"]).toBe("2")
        expect(second.header).toContain("Attempt: 2/2")
        yield* second.finish(ExitStatus.Exited({ code: 3 }))
        const outcomes = yield* s.outcomesAt(1)
        expect(outcomes.map((o) => o.completion._tag)).toEqual(["DeadLetter"])
        const meta = (outcomes[0]!.completion as Extract<Completion, { _tag: "DeadLetter" }>).meta
        expect(meta.attempts).toBe(2)
        expect(meta.retry_timestamps).toEqual(["1970-01-01T00:00:00Z", "1970-01-01T00:00:22Z"])
        expect(errors(yield* s.lines).map((l) => /attempt \d\/2 not counted/.exec(l)?.[0])).toEqual([
          "attempt 2/2 not counted",
          "attempt 2/2 not counted"
        ])
        expect(yield* s.startedCount).toBe(2)
      })))
})

describe("the archive cannot be written", () => {
  it.scoped("after a success the archive is tried again until it works; the agent never runs again", () =>
    withFaultyScheduler({ maxRetries: 3 }, (s) =>
      Effect.gen(function*() {
        s.faults.complete = 3
        yield* s.add("a-1", t("a"))
        yield* (yield* s.next).finish(ExitStatus.Exited({ code: 0 }))
        for (let i = 1; i <= 3; i++) {
          yield* s.linesWith("] ERROR: archiving", i)
          expect(yield* s.outcomes).toEqual([])
          yield* eventuallySleeping(`archive try ${i + 1}`, i * 10_000)
          yield* TestClock.adjust("10 seconds")
        }
        expect((yield* s.outcomesAt(1)).map((o) => [o.name, o.completion._tag])).toEqual([["a-1", "Done"]])
        expect(yield* s.startedCount).toBe(1)
        expect(yield* s.requeued).toEqual([])
        const lines = yield* s.lines
        expect(errors(lines)).toHaveLength(3)
        expect(errors(lines)[0]).toContain(
          "ERROR: archiving /memory/a-1.processing failed: ENOSPC: no space left on device, write; a succeeded, so it is not run again: archiving a-1.trigger is tried again in 10s"
        )
        expect(lines.filter((l) => l.includes("FINISH: a completed a-1.trigger successfully"))).toHaveLength(1)
        expect(lines.filter((l) => l.includes("QUEUE: a-1.trigger archived as"))).toHaveLength(1)
      })))

  it.scoped("the agent's other triggers run while the archive waits", () =>
    withFaultyScheduler({}, (s) =>
      Effect.gen(function*() {
        s.faults.complete = 1
        yield* s.add("a-1", t("a"))
        yield* s.add("a-2", t("a"))
        yield* (yield* s.next).finish(ExitStatus.Exited({ code: 0 }))
        const second = yield* s.next
        expect(second.header).toContain("Trigger: a-2.trigger")
        yield* s.linesWith("] ERROR: archiving /memory/a-1.processing")
        yield* second.finish(ExitStatus.Exited({ code: 0 }))
        expect((yield* s.outcomesAt(1)).map((o) => o.name)).toEqual(["a-2"])
        yield* eventuallySleeping("the next archive try", 10_000)
        yield* TestClock.adjust("10 seconds")
        expect((yield* s.outcomesAt(2)).map((o) => o.name)).toEqual(["a-2", "a-1"])
        expect(yield* s.startedCount).toBe(2)
      })))

  it.scoped("a dead-letter move that fails is tried again; the agent is not run again", () =>
    withFaultyScheduler({ maxRetries: 1 }, (s) =>
      Effect.gen(function*() {
        s.faults.complete = 2
        yield* s.add("a-1", t("a"))
        yield* (yield* s.next).finish(ExitStatus.Exited({ code: 9 }))
        for (let i = 1; i <= 2; i++) {
          yield* s.linesWith("] ERROR: archiving", i)
          yield* eventuallySleeping(`dead-letter try ${i + 1}`, i * 10_000)
          yield* TestClock.adjust("10 seconds")
        }
        expect((yield* s.outcomesAt(1)).map((o) => o.completion._tag)).toEqual(["DeadLetter"])
        expect(yield* s.startedCount).toBe(1)
        expect(errors(yield* s.lines)).toHaveLength(2)
        expect(errors(yield* s.lines)[0]).toContain("moving a-1.trigger to the dead-letter queue is tried again in 10s")
      })))

  it.scoped("a shutdown while the archive waits tries it once more and never requeues a success", () =>
    withFaultyScheduler({}, (s) =>
      Effect.gen(function*() {
        s.faults.complete = 1
        yield* s.add("a-1", t("a"))
        yield* (yield* s.next).finish(ExitStatus.Exited({ code: 0 }))
        yield* s.linesWith("] ERROR: archiving")
        expect(yield* s.outcomes).toEqual([])
        yield* s.close
        expect((yield* s.outcomes).map((o) => o.completion._tag)).toEqual(["Done"])
        expect(yield* s.requeued).toEqual([])
      })))
})

describe("a shutdown while the archive keeps failing", () => {
  it.scoped("leaves the trigger claimed for the next start (at-least-once), never requeued or dead-lettered now", () =>
    withFaultyScheduler({}, (s) =>
      Effect.gen(function*() {
        s.faults.complete = 100
        yield* s.add("a-1", t("a"))
        yield* (yield* s.next).finish(ExitStatus.Exited({ code: 0 }))
        yield* s.linesWith("] ERROR: archiving")
        yield* s.close
        expect(yield* s.outcomes).toEqual([])
        expect(yield* s.requeued).toEqual([])
        expect((yield* s.lines).at(-1)).toContain("/memory/a-1.processing is left as it is")
      })))
})

describe("the requeue cannot be written", () => {
  const limitResult = JSON.stringify({ type: "result", subtype: "success", is_error: true, result: "You've hit your limit", total_cost_usd: 0 }) + "\n"

  /** Starts a-1 and has its agent hit a usage limit (the pause lasts until 301 s): its trigger is to be put back in the queue. */
  const hitLimit = (s: Parameters<Parameters<typeof withFaultyScheduler>[1]>[0]) =>
    Effect.gen(function*() {
      yield* s.add("a-1", t("a"))
      const run = yield* s.next
      yield* run.output(limitResult)
      yield* TestClock.adjust("1 second")
      yield* run.finish(ExitStatus.Exited({ code: 1 }))
      yield* s.linesWith("LIMIT: a hit a usage limit on a-1.trigger")
    })

  it.scoped("after a usage limit the requeue is tried again every PROCESS_MONITOR_INTERVAL until it works, and the trigger runs again without a restart", () =>
    withFaultyScheduler({ maxRetries: 1, agentStallTimeoutMs: 0 }, (s) =>
      Effect.gen(function*() {
        s.faults.requeue = 3
        yield* hitLimit(s)
        for (let i = 1; i <= 3; i++) {
          yield* s.linesWith("] ERROR: requeueing", i)
          expect(yield* s.requeued).toEqual([])
          // Tries at 1 s, 11 s, 21 s, 31 s.
          yield* eventuallySleeping(`requeue try ${i + 1}`, 1_000 + i * 10_000)
          yield* TestClock.adjust("10 seconds")
        }
        expect(yield* s.requeuedAt(1)).toEqual(["a-1"])
        // Back in the queue with what it carried: it waits for the end of the pause, then runs as
        // attempt 1 again (MAX_RETRIES=1 would dead-letter otherwise).
        yield* eventuallySleeping("the end of the pause", 301_000)
        yield* TestClock.adjust("270 seconds")
        const again = yield* s.next
        expect(again.request.env["STARFORGE_ATTEMPT"]).toBe("1")
        expect(again.header).toContain("Started: 1970-01-01T00:05:01Z")
        yield* again.finish(ExitStatus.Exited({ code: 0 }))
        expect((yield* s.outcomesAt(1)).map((o) => [o.name, o.completion._tag])).toEqual([["a-1", "Done"]])
        expect(yield* s.startedCount).toBe(2)
        const lines = yield* s.lines
        expect(errors(lines)).toHaveLength(3)
        expect(errors(lines)[0]).toContain(
          "ERROR: requeueing /memory/a-1.processing failed: EROFS: read-only file system, rename; putting a-1.trigger back in the queue is tried again in 10s"
        )
        expect(lines.filter((l) => l.includes("QUEUE: a-1.trigger hit a usage limit (attempt not counted); back in the queue"))).toHaveLength(1)
        expect(lines.some((l) => l.includes("is left as it is"))).toBe(false)
      })))

  it.scoped("a trigger whose agent could not start is put back once the requeue works, and runs when the logs are back", () =>
    withFaultyScheduler({ maxRetries: 1 }, (s) =>
      Effect.gen(function*() {
        s.faults.requeue = 2
        yield* s.logsGone
        yield* s.add("a-1", t("a"))
        yield* s.linesWith("was not started for a-1.trigger")
        for (let i = 1; i <= 2; i++) {
          yield* s.linesWith("] ERROR: requeueing", i)
          expect(yield* s.requeued).toEqual([])
          // The logs come back while the requeue still fails: the trigger is started once it is back in the queue.
          if (i === 2) yield* s.logsBack
          yield* eventuallySleeping(`requeue try ${i + 1}`, i * 10_000)
          yield* TestClock.adjust("10 seconds")
        }
        expect(yield* s.requeuedAt(1)).toEqual(["a-1"])
        const run = yield* s.next
        expect(run.header).toContain("Started: 1970-01-01T00:00:20Z")
        expect(run.header).toContain("Attempt: 1/1")
        yield* run.finish(ExitStatus.Exited({ code: 0 }))
        expect((yield* s.outcomesAt(1)).map((o) => o.completion._tag)).toEqual(["Done"])
        expect(errors(yield* s.lines).filter((l) => l.includes("putting a-1.trigger back in the queue is tried again in 10s"))).toHaveLength(2)
      })))

  it.scoped("a shutdown while the requeue waits tries it once more", () =>
    withFaultyScheduler({ agentStallTimeoutMs: 0 }, (s) =>
      Effect.gen(function*() {
        s.faults.requeue = 1
        yield* hitLimit(s)
        yield* s.linesWith("] ERROR: requeueing")
        expect(yield* s.requeued).toEqual([])
        yield* s.close
        expect(yield* s.requeued).toEqual(["a-1"])
        expect(yield* s.outcomes).toEqual([])
      })))

  it.scoped("a shutdown while the requeue keeps failing does not wait for the disk: the trigger is left claimed for the next start", () =>
    withFaultyScheduler({ agentStallTimeoutMs: 0 }, (s) =>
      Effect.gen(function*() {
        s.faults.requeue = 100
        yield* hitLimit(s)
        yield* s.linesWith("] ERROR: requeueing")
        yield* s.close
        expect(yield* s.requeued).toEqual([])
        expect(yield* s.outcomes).toEqual([])
        expect(errors(yield* s.lines)).toHaveLength(2)
        expect((yield* s.lines).at(-1)).toContain("ERROR: requeueing /memory/a-1.processing failed: EROFS: read-only file system, rename; /memory/a-1.processing is left as it is")
      })))
})
