/**
 * The scheduler against fake layers: an in-memory queue, in-memory slots and a fake process
 * runner whose runs finish when the test says so, all under the TestClock.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Duration, Effect, ExecutionStrategy, Exit, Layer, Queue, Scope, TestClock } from "effect"
import { DaemonConfig, type DaemonSettings } from "../../src/config/DaemonConfig.js"
import { ExitStatus } from "../../src/domain/Outcome.js"
import type { Trigger } from "../../src/domain/Trigger.js"
import { DaemonLog } from "../../src/daemon/DaemonLog.js"
import { DaemonState } from "../../src/daemon/DaemonState.js"
import { type HistoryEntry, History } from "../../src/daemon/History.js"
import * as Scheduler from "../../src/daemon/Scheduler.js"
import { type FakeRun, makeFake } from "../../src/process/AgentProcess.js"
import { type DeadLetterMeta, makeMemory } from "../../src/queue/TriggerQueue.js"
import { AgentSlots } from "../../src/slots/AgentSlots.js"

const base: Partial<DaemonSettings> = {
  parallel: true,
  maxConcurrent: 999,
  agentTimeoutMs: 60_000,
  killGraceMs: 1_000,
  maxRetries: 3,
  initialRetryDelayMs: 5_000,
  agentCommand: ["agent"]
}

const t = (agent: string, extra: Partial<Trigger> = {}): Trigger => ({ to_agent: agent, action: "work", ...extra })

/** Builds the scheduler over fakes; the test body runs with the scheduler's scope open. */
const withScheduler = <A, E>(
  settings: Partial<DaemonSettings>,
  body: (env: {
    readonly add: (name: string, trigger: Trigger) => Effect.Effect<void>
    readonly next: Effect.Effect<FakeRun>
    readonly startedCount: Effect.Effect<number>
    readonly outcomes: Effect.Effect<ReadonlyArray<{ name: string; completion: { _tag: string; meta?: DeadLetterMeta } }>>
    readonly requeued: Effect.Effect<ReadonlyArray<string>>
    readonly busy: Effect.Effect<ReadonlyArray<string>>
    readonly lines: Effect.Effect<ReadonlyArray<string>>
    readonly history: Effect.Effect<ReadonlyArray<HistoryEntry>>
    readonly close: Effect.Effect<void>
  }) => Effect.Effect<A, E>
) =>
  Effect.gen(function*() {
    const fake = yield* makeFake()
    const queue = yield* makeMemory
    const log = yield* DaemonLog.memory
    const history = yield* History.memory
    const services = Layer.mergeAll(
      fake.layer,
      history.layer,
      queue.layer,
      log.layer,
      AgentSlots.memory(),
      DaemonState.memory,
      DaemonConfig.layerSettings("/nonexistent/project", { ...base, ...settings })
    )
    const schedulerScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    const context = yield* Layer.buildWithScope(Layer.provideMerge(Scheduler.layer, services), schedulerScope)
    const slots = Context.get(context, AgentSlots)
    return yield* body({
      add: (name, trigger) => queue.add(name, trigger),
      next: Queue.take(fake.started),
      startedCount: Effect.map(fake.runs, (r) => r.length),
      outcomes: queue.outcomes as never,
      requeued: queue.requeued,
      busy: slots.listBusy,
      lines: log.lines,
      history: history.entries,
      close: Scope.close(schedulerScope, Exit.void)
    })
  })

/** Lets forked fibers run until nothing more happens. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow()
})

describe("retryDelays", () => {
  it("spaces attempts by INITIAL_RETRY_DELAY, doubling, for MAX_RETRIES attempts in total", () => {
    expect(Scheduler.retryDelays(5_000, 3).map(Duration.toMillis)).toEqual([5_000, 10_000])
    expect(Scheduler.retryDelays(200, 4).map(Duration.toMillis)).toEqual([200, 400, 800])
    expect(Scheduler.retryDelays(5_000, 1)).toEqual([])
  })
})

describe("Scheduler", () => {
  it.scoped("runs triggers of one agent one at a time, oldest first", () =>
    withScheduler({}, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        yield* s.add("a-2", t("a"))
        yield* s.add("a-3", t("a"))
        const first = yield* s.next
        expect(first.spec.header).toContain("Trigger: a-1.trigger")
        yield* settle
        expect(yield* s.startedCount).toBe(1)
        yield* first.finish(ExitStatus.Exited({ code: 0 }))
        const second = yield* s.next
        expect(second.spec.header).toContain("Trigger: a-2.trigger")
        yield* second.finish(ExitStatus.Exited({ code: 0 }))
        const third = yield* s.next
        expect(third.spec.header).toContain("Trigger: a-3.trigger")
        yield* third.finish(ExitStatus.Exited({ code: 0 }))
        yield* settle
        expect((yield* s.outcomes).map((o) => [o.name, o.completion._tag])).toEqual([
          ["a-1", "Done"],
          ["a-2", "Done"],
          ["a-3", "Done"]
        ])
        expect(yield* s.busy).toEqual([])
      })))

  it.scoped("starts the first runnable trigger: a busy agent never blocks another", () =>
    withScheduler({}, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        yield* s.add("a-2", t("a"))
        yield* s.add("b-3", t("b"))
        const one = yield* s.next
        const two = yield* s.next
        expect([one.spec.agent, two.spec.agent]).toEqual(["a", "b"])
        expect(two.spec.header).toContain("Trigger: b-3.trigger")
        yield* settle
        expect(yield* s.startedCount).toBe(2)
        expect([...(yield* s.busy)].sort()).toEqual(["a", "b"])
      })))

  it.scoped("never runs more than MAX_CONCURRENT_AGENTS at once", () =>
    withScheduler({ maxConcurrent: 2 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        yield* s.add("b-1", t("b"))
        yield* s.add("c-1", t("c"))
        const a = yield* s.next
        yield* s.next
        yield* settle
        expect(yield* s.startedCount).toBe(2)
        yield* a.finish(ExitStatus.Exited({ code: 0 }))
        const c = yield* s.next
        expect(c.spec.agent).toBe("c")
      })))

  it.scoped("sequential mode runs one agent at a time whatever the cap", () =>
    withScheduler({ parallel: false, maxConcurrent: 10 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        yield* s.add("b-1", t("b"))
        const a = yield* s.next
        yield* settle
        expect(yield* s.startedCount).toBe(1)
        yield* a.finish(ExitStatus.Exited({ code: 0 }))
        expect((yield* s.next).spec.agent).toBe("b")
      })))

  it.scoped("high priority runs before older normal triggers", () =>
    withScheduler({ parallel: false }, (s) =>
      Effect.gen(function*() {
        yield* s.add("blocker", t("z"))
        const blocker = yield* s.next
        yield* s.add("normal", t("a"))
        yield* s.add("low", t("b", { priority: "low" }))
        yield* s.add("high", t("c", { priority: "high" }))
        yield* blocker.finish(ExitStatus.Exited({ code: 0 }))
        const order: Array<string> = []
        for (let i = 0; i < 3; i++) {
          const run = yield* s.next
          order.push(run.spec.agent)
          yield* run.finish(ExitStatus.Exited({ code: 0 }))
        }
        expect(order).toEqual(["c", "a", "b"])
      })))

  it.scoped("retries after INITIAL_RETRY_DELAY, then twice that, then dead-letters", () =>
    withScheduler({ initialRetryDelayMs: 5_000, maxRetries: 3 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a", { trace_id: "T-1" }))
        const first = yield* s.next
        expect(first.spec.env["STARFORGE_ATTEMPT"]).toBe("1")
        yield* first.finish(ExitStatus.Exited({ code: 3 }))
        yield* settle
        yield* TestClock.adjust("4999 millis")
        yield* settle
        expect(yield* s.startedCount).toBe(1)
        yield* TestClock.adjust("1 millis")
        const second = yield* s.next
        expect(second.spec.env["STARFORGE_ATTEMPT"]).toBe("2")
        yield* second.finish(ExitStatus.Exited({ code: 3 }))
        yield* settle
        yield* TestClock.adjust("9999 millis")
        yield* settle
        expect(yield* s.startedCount).toBe(2)
        yield* TestClock.adjust("1 millis")
        const third = yield* s.next
        yield* third.finish(ExitStatus.Signaled({ signal: "SIGKILL" }))
        yield* settle
        const outcomes = yield* s.outcomes
        expect(outcomes).toHaveLength(1)
        expect(outcomes[0]!.completion._tag).toBe("DeadLetter")
        const meta = outcomes[0]!.completion.meta!
        expect(meta.attempts).toBe(3)
        expect(meta.retry_timestamps).toEqual(["1970-01-01T00:00:00Z", "1970-01-01T00:00:05Z", "1970-01-01T00:00:15Z"])
        expect(meta.signal).toBe("SIGKILL")
        expect(meta.exit_code).toBe(null)
        expect(meta.trace_id).toBe("T-1")
        expect(meta.agent).toBe("a")
        expect(meta.failure_reason).toContain("SIGKILL")
        const lines = (yield* s.lines).join("\n")
        expect(lines).toMatch(/RETRY: Attempt 2\/3 for a-1.trigger in 5s/)
        expect(lines).toMatch(/RETRY: Attempt 3\/3 for a-1.trigger in 10s/)
        expect(lines).toMatch(/\[T-1\] DLQ:/)
      })))

  it.scoped("every finished attempt is one history entry: failed, timed out, succeeded, interrupted by shutdown", () =>
    withScheduler({ initialRetryDelayMs: 1_000, agentTimeoutMs: 10_000, maxRetries: 3 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a", { trace_id: "T-9", context: { ticket: 52 } }))
        yield* TestClock.adjust("2 seconds")
        yield* (yield* s.next).finish(ExitStatus.Exited({ code: 4 }))
        yield* settle
        yield* TestClock.adjust("1 second")
        yield* s.next
        yield* TestClock.adjust("10 seconds") // the second attempt times out
        yield* settle
        yield* TestClock.adjust("2 seconds")
        yield* (yield* s.next).finish(ExitStatus.Exited({ code: 0 }))
        yield* settle
        yield* s.add("b-1", t("b"))
        yield* s.next
        yield* s.close
        const entries = yield* s.history
        expect(entries.map((e) => [e.trigger, e.attempt, e.outcome, e.exit_code, e.signal])).toEqual([
          ["a-1.trigger", 1, "failed", 4, null],
          ["a-1.trigger", 2, "timeout", null, "SIGTERM"],
          ["a-1.trigger", 3, "success", 0, null],
          ["b-1.trigger", 1, "interrupted", null, null]
        ])
        expect(entries[0]).toMatchObject({
          agent: "a",
          start: "1970-01-01T00:00:00.000Z",
          end: "1970-01-01T00:00:02.000Z",
          ticket: "52",
          trace_id: "T-9"
        })
        expect(entries[1]).toMatchObject({ start: "1970-01-01T00:00:03.000Z", end: "1970-01-01T00:00:13.000Z" })
        expect(entries[0]!.log).toMatch(/\/nonexistent\/project\/\.claude\/logs\/a-\d+\.log$/)
      })))

  it.scoped("a trigger that succeeds on the second attempt is archived as done", () =>
    withScheduler({ initialRetryDelayMs: 1_000 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        yield* (yield* s.next).finish(ExitStatus.Exited({ code: 1 }))
        yield* settle
        yield* TestClock.adjust("1 second")
        yield* (yield* s.next).finish(ExitStatus.Exited({ code: 0 }))
        yield* settle
        expect((yield* s.outcomes).map((o) => o.completion._tag)).toEqual(["Done"])
      })))

  it.scoped("while a trigger waits for its retry, its agent runs other triggers", () =>
    withScheduler({ initialRetryDelayMs: 5_000 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        yield* s.add("a-2", t("a"))
        yield* (yield* s.next).finish(ExitStatus.Exited({ code: 1 }))
        const other = yield* s.next
        expect(other.spec.header).toContain("Trigger: a-2.trigger")
        // The retry is due but the agent is busy: it waits, in its place, for the slot.
        yield* TestClock.adjust("5 seconds")
        yield* settle
        expect(yield* s.startedCount).toBe(2)
        yield* other.finish(ExitStatus.Exited({ code: 0 }))
        const retry = yield* s.next
        expect(retry.spec.header).toContain("Trigger: a-1.trigger")
        expect(retry.spec.env["STARFORGE_ATTEMPT"]).toBe("2")
      })))

  it.scoped("AGENT_TIMEOUT interrupts the attempt and counts as a failure", () =>
    withScheduler({ agentTimeoutMs: 1_000, maxRetries: 2, initialRetryDelayMs: 100 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        const first = yield* s.next
        yield* TestClock.adjust("1 second")
        yield* first.interrupted.pipe(Effect.asVoid)
        yield* settle
        yield* TestClock.adjust("100 millis")
        const second = yield* s.next
        yield* TestClock.adjust("1 second")
        yield* settle
        expect((yield* second.interrupted.pipe(Effect.as(true)))).toBe(true)
        const outcomes = yield* s.outcomes
        expect(outcomes[0]!.completion._tag).toBe("DeadLetter")
        expect(outcomes[0]!.completion.meta!.failure_reason).toContain("timed out after 1s")
        expect((yield* s.lines).join("\n")).toMatch(/TIMEOUT: a timed out after 1s/)
      })))

  it.scoped("shutdown stops every running job and puts its trigger back in the queue", () =>
    withScheduler({}, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        yield* s.add("b-1", t("b"))
        const a = yield* s.next
        const b = yield* s.next
        yield* s.close
        expect(yield* a.interrupted.pipe(Effect.as(true))).toBe(true)
        expect(yield* b.interrupted.pipe(Effect.as(true))).toBe(true)
        expect([...(yield* s.requeued)].sort()).toEqual(["a-1", "b-1"])
        expect(yield* s.busy).toEqual([])
        expect(yield* s.outcomes).toEqual([])
      })))

  it.scoped("a spawn failure is a failed attempt that ends in the dead-letter queue", () =>
    withScheduler({ maxRetries: 1 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        yield* (yield* s.next).finish(ExitStatus.SpawnFailed({ message: "command not found: claude (install it or set AGENT_COMMAND)" }))
        yield* settle
        const meta = (yield* s.outcomes)[0]!.completion.meta!
        expect(meta.failure_reason).toContain("AGENT_COMMAND")
        expect(meta.attempts).toBe(1)
      })))
})
