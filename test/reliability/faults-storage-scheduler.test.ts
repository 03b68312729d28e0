/**
 * Faults, "nothing lost", at the library level: the scheduler over fault-injecting layers, so
 * it runs the same with or without root. The agent's log cannot be written (disk full, logs
 * directory not writable) for a while; the archive or the dead-letter move fails for a while.
 * Nothing is lost, nothing is counted against the trigger, no agent runs twice for one success,
 * and work resumes when the storage does.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, ExecutionStrategy, Exit, Layer, Queue, Scope, TestClock } from "effect"
import { DaemonConfig, type DaemonSettings } from "../../src/config/DaemonConfig.js"
import { StorageError } from "../../src/domain/errors.js"
import { ExitStatus } from "../../src/domain/Outcome.js"
import type { Trigger } from "../../src/domain/Trigger.js"
import { DaemonLog } from "../../src/observability/DaemonLog.js"
import { DaemonState } from "../../src/state/DaemonState.js"
import { History } from "../../src/state/History.js"
import { Usage } from "../../src/state/Usage.js"
import { Notifier } from "../../src/notify/Notifier.js"
import * as Scheduler from "../../src/scheduler/Scheduler.js"
import { settle } from "../support/settle.js"
import { AgentProcess, type FakeRun, makeFake } from "../../src/process/AgentProcess.js"
import { type Completion, makeMemory, TriggerQueue } from "../../src/queue/TriggerQueue.js"
import { AgentSlots } from "../../src/slots/AgentSlots.js"

const settings: Partial<DaemonSettings> = {
  parallel: true,
  maxConcurrent: 999,
  agentTimeoutMs: 60_000,
  killGraceMs: 1_000,
  initialRetryDelayMs: 1_000,
  monitorIntervalMs: 10_000,
  agentCommand: ["agent"]
}

const t = (agent: string): Trigger => ({ to_agent: agent, action: "work" })

const ENOSPC = Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" })

/** Faults the test switches on and off: how many of the next operations fail. */
interface Faults {
  logOpen: number
  complete: number
}

/** The scheduler over the in-memory queue and the fake agent runner, each wrapped to fail on demand. */
const withFaultyScheduler = <A, E>(
  overrides: Partial<DaemonSettings>,
  body: (env: {
    readonly faults: Faults
    readonly add: (name: string, trigger: Trigger) => Effect.Effect<void>
    readonly next: Effect.Effect<FakeRun>
    readonly startedCount: Effect.Effect<number>
    /** Every `complete` that went through, in order. */
    readonly outcomes: Effect.Effect<ReadonlyArray<{ readonly name: string; readonly completion: Completion }>>
    readonly requeued: Effect.Effect<ReadonlyArray<string>>
    readonly lines: Effect.Effect<ReadonlyArray<string>>
    readonly close: Effect.Effect<void>
  }) => Effect.Effect<A, E>
) =>
  Effect.gen(function*() {
    const faults: Faults = { logOpen: 0, complete: 0 }
    const fake = yield* makeFake()
    const queue = yield* makeMemory
    const log = yield* DaemonLog.memory
    const history = yield* History.memory
    const notifier = yield* Notifier.memory
    const fail = (key: keyof Faults, operation: string, path: string) =>
      Effect.suspend(() => {
        if (faults[key] <= 0) return Effect.void
        faults[key]--
        return Effect.fail(new StorageError({ operation, path, cause: ENOSPC }))
      })
    const faultyProcess = Layer.effect(
      AgentProcess,
      Effect.map(AgentProcess, (real) => ({
        ...real,
        // Opening the log is the first thing a run does: a failure means the agent never started.
        run: (spec) => Effect.zipRight(fail("logOpen", "writing the agent log", spec.logFile), real.run(spec))
      }))
    ).pipe(Layer.provide(fake.layer))
    const faultyQueue = Layer.effect(
      TriggerQueue,
      Effect.map(TriggerQueue, (real) => ({
        ...real,
        complete: (claimed, completion) =>
          Effect.zipRight(fail("complete", "archiving", claimed.file), real.complete(claimed, completion))
      }))
    ).pipe(Layer.provide(queue.layer))
    const services = Layer.mergeAll(
      faultyProcess,
      faultyQueue,
      log.layer,
      history.layer,
      AgentSlots.memory(),
      DaemonState.memory,
      Usage.memory(),
      notifier.layer,
      DaemonConfig.layerSettings("/nonexistent/project", { ...settings, ...overrides })
    )
    const schedulerScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    yield* Layer.buildWithScope(Layer.provideMerge(Scheduler.layer, services), schedulerScope)
    return yield* body({
      faults,
      add: (name, trigger) => queue.add(name, trigger),
      next: Queue.take(fake.started),
      startedCount: Effect.map(fake.runs, (r) => r.length),
      outcomes: queue.outcomes,
      requeued: queue.requeued,
      lines: log.lines,
      close: Scope.close(schedulerScope, Exit.void)
    })
  })

const errors = (lines: ReadonlyArray<string>) => lines.filter((l) => l.includes("] ERROR: "))

describe("the agent's log cannot be written", () => {
  it.scoped("the agent is not started, the trigger goes back to the queue, no attempt is counted, and it runs when the disk is back", () =>
    withFaultyScheduler({ maxRetries: 1 }, (s) =>
      Effect.gen(function*() {
        // Five failures in a row, far more than MAX_RETRIES=1: none of them is an attempt.
        s.faults.logOpen = 5
        yield* s.add("a-1", t("a"))
        yield* settle
        for (let i = 1; i <= 5; i++) {
          expect(yield* s.requeued).toHaveLength(i)
          expect(yield* s.outcomes).toEqual([])
          // Not tried again before PROCESS_MONITOR_INTERVAL, even though the queue changed.
          yield* TestClock.adjust("9999 millis")
          yield* settle
          expect(yield* s.requeued).toHaveLength(i)
          yield* TestClock.adjust("1 millis")
          yield* settle
        }
        const run = yield* s.next
        expect(run.spec.env["STARFORGE_ATTEMPT"]).toBe("1")
        yield* run.finish(ExitStatus.Exited({ code: 0 }))
        yield* settle
        expect((yield* s.outcomes).map((o) => [o.name, o.completion._tag])).toEqual([["a-1", "Done"]])
        expect(yield* s.startedCount).toBe(1)
        const lines = yield* s.lines
        expect(errors(lines)).toHaveLength(5)
        expect(errors(lines)[0]).toContain(
          "ERROR: writing the agent log /nonexistent/project/.claude/logs/a-"
        )
        expect(errors(lines)[0]).toMatch(
          /failed: ENOSPC: no space left on device, write; a was not started for a-1\.trigger \(attempt 1\/1 not counted\); it stays queued and is tried again in 10s$/
        )
        expect(lines.filter((l) => l.includes("QUEUE: a-1.trigger not started; back in the queue"))).toHaveLength(5)
        expect(lines.some((l) => l.includes("DLQ:"))).toBe(false)
      })))

  it.scoped("a retry whose log cannot be written keeps its attempt number and the earlier attempts", () =>
    withFaultyScheduler({ maxRetries: 2 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        yield* (yield* s.next).finish(ExitStatus.Exited({ code: 3 }))
        s.faults.logOpen = 2
        yield* settle
        // The retry after 1 s, then 2 × the monitor interval of storage failures.
        yield* TestClock.adjust("1 second")
        yield* settle
        yield* TestClock.adjust("10 seconds")
        yield* settle
        yield* TestClock.adjust("10 seconds")
        const second = yield* s.next
        expect(second.spec.env["STARFORGE_ATTEMPT"]).toBe("2")
        yield* second.finish(ExitStatus.Exited({ code: 3 }))
        yield* settle
        const outcomes = yield* s.outcomes
        expect(outcomes.map((o) => o.completion._tag)).toEqual(["DeadLetter"])
        const meta = (outcomes[0]!.completion as Extract<Completion, { _tag: "DeadLetter" }>).meta
        expect(meta.attempts).toBe(2)
        expect(meta.retry_timestamps).toEqual(["1970-01-01T00:00:00Z", "1970-01-01T00:00:21Z"])
        expect(errors(yield* s.lines).map((l) => /attempt \d\/2 not counted/.exec(l)?.[0])).toEqual([
          "attempt 2/2 not counted",
          "attempt 2/2 not counted"
        ])
      })))
})

describe("the archive cannot be written", () => {
  it.scoped("after a success the archive is tried again until it works; the agent never runs again", () =>
    withFaultyScheduler({ maxRetries: 3 }, (s) =>
      Effect.gen(function*() {
        s.faults.complete = 3
        yield* s.add("a-1", t("a"))
        yield* (yield* s.next).finish(ExitStatus.Exited({ code: 0 }))
        yield* settle
        for (let i = 0; i < 3; i++) {
          expect(yield* s.outcomes).toEqual([])
          yield* TestClock.adjust("10 seconds")
          yield* settle
        }
        expect((yield* s.outcomes).map((o) => [o.name, o.completion._tag])).toEqual([["a-1", "Done"]])
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
        expect(second.spec.header).toContain("Trigger: a-2.trigger")
        yield* second.finish(ExitStatus.Exited({ code: 0 }))
        yield* settle
        yield* TestClock.adjust("10 seconds")
        yield* settle
        expect((yield* s.outcomes).map((o) => o.name)).toEqual(["a-2", "a-1"])
        expect(yield* s.startedCount).toBe(2)
      })))

  it.scoped("a dead-letter move that fails is tried again; the agent is not run again", () =>
    withFaultyScheduler({ maxRetries: 1 }, (s) =>
      Effect.gen(function*() {
        s.faults.complete = 2
        yield* s.add("a-1", t("a"))
        yield* (yield* s.next).finish(ExitStatus.Exited({ code: 9 }))
        yield* settle
        yield* TestClock.adjust("20 seconds")
        yield* settle
        expect((yield* s.outcomes).map((o) => o.completion._tag)).toEqual(["DeadLetter"])
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
        yield* settle
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
        yield* settle
        yield* s.close
        expect(yield* s.outcomes).toEqual([])
        expect(yield* s.requeued).toEqual([])
        expect((yield* s.lines).at(-1)).toContain("/memory/a-1.processing is left as it is")
      })))
})

