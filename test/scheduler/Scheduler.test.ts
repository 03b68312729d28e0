/**
 * The scheduler against fake layers: an in-memory queue, in-memory slots and a fake process
 * runner whose runs finish when the test says so, all under the TestClock.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Duration, Effect, ExecutionStrategy, Exit, Layer, Queue, Scope, TestClock } from "effect"
import { DaemonConfig, type DaemonSettings } from "../../src/config/DaemonConfig.js"
import { ExitStatus } from "../../src/domain/Outcome.js"
import type { Trigger } from "../../src/domain/Trigger.js"
import { DaemonLog } from "../../src/observability/DaemonLog.js"
import { DaemonState } from "../../src/state/DaemonState.js"
import { type HistoryEntry, History } from "../../src/state/History.js"
import { Usage } from "../../src/state/Usage.js"
import { Notifier, type NotifyEvent } from "../../src/notify/Notifier.js"
import * as Scheduler from "../../src/scheduler/Scheduler.js"
import { settle } from "../support/settle.js"
import { type FakeRun, makeFake } from "../../src/process/AgentProcess.js"
import { type DeadLetterMeta, makeMemory } from "../../src/queue/TriggerQueue.js"
import { AgentSlots } from "../../src/slots/AgentSlots.js"
import type { SlotTable } from "../../src/domain/Slot.js"

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
  settings: Partial<DaemonSettings> & { readonly project?: string },
  body: (env: {
    readonly add: (name: string, trigger: Trigger) => Effect.Effect<void>
    readonly next: Effect.Effect<FakeRun>
    readonly startedCount: Effect.Effect<number>
    readonly outcomes: Effect.Effect<ReadonlyArray<{ name: string; completion: { _tag: string; meta?: DeadLetterMeta } }>>
    readonly requeued: Effect.Effect<ReadonlyArray<string>>
    readonly busy: Effect.Effect<ReadonlyArray<string>>
    readonly slots: Effect.Effect<SlotTable>
    readonly notified: Effect.Effect<ReadonlyArray<NotifyEvent>>
    readonly lines: Effect.Effect<ReadonlyArray<string>>
    readonly history: Effect.Effect<ReadonlyArray<HistoryEntry>>
    readonly close: Effect.Effect<void>
  }) => Effect.Effect<A, E>
) =>
  Effect.gen(function*() {
    const { project, ...rest } = settings
    const fake = yield* makeFake()
    const queue = yield* makeMemory
    const log = yield* DaemonLog.memory
    const history = yield* History.memory
    const notifier = yield* Notifier.memory
    const services = Layer.mergeAll(
      fake.layer,
      history.layer,
      queue.layer,
      log.layer,
      AgentSlots.memory(),
      DaemonState.memory,
      Usage.memory(),
      notifier.layer,
      DaemonConfig.layerSettings(project ?? "/nonexistent/project", { ...base, ...rest })
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
      slots: slots.snapshot,
      notified: notifier.events,
      lines: log.lines,
      history: history.entries,
      close: Scope.close(schedulerScope, Exit.void)
    })
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

// These projects have no log directory, so the fake writes no log at all: the output reaches the
// scheduler only the way the real layer hands it over, from memory (`onOutput`), never from a file.
describe("Scheduler reading the agent's stream-json output", () => {
  const line = (o: object) => JSON.stringify(o) + "\n"
  const tool = (id: string, name: string) =>
    line({ type: "assistant", session_id: "S", message: { id, model: "m-1", content: [{ type: "tool_use", name, input: {} }], usage: { input_tokens: 100, output_tokens: 10 } } })
  const result = (extra: object = {}) =>
    line({ type: "result", subtype: "success", is_error: false, num_turns: 2, total_cost_usd: 0.5, session_id: "S", result: "ok", ...extra })

  it.scoped("keeps the live progress in the slot and logs PROGRESS every PROGRESS_INTERVAL while the agent runs", () =>
    withScheduler({ progressIntervalMs: 300_000, agentTimeoutMs: 3_600_000, agentStallTimeoutMs: 0 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        const run = yield* s.next
        yield* run.output(line({ type: "system", subtype: "init", session_id: "S", model: "m-1" }) + tool("m1", "Bash") + tool("m2", "Edit"))
        yield* TestClock.adjust("1 second")
        expect((yield* s.slots)["a"]).toMatchObject({
          status: "busy",
          turns: 2,
          tool_uses: 2,
          last_tool: "Edit",
          tokens_in: 200,
          tokens_out: 20,
          session_id: "S",
          model: "m-1",
          cost_usd: null,
          last_event_at: "1970-01-01T00:00:00Z"
        })
        yield* TestClock.adjust("299 seconds")
        const progress = (yield* s.lines).filter((l) => l.includes("PROGRESS:"))
        expect(progress).toEqual([
          "[1970-01-01T00:05:00.000Z] [] PROGRESS: a running 5m 00s on a-1.trigger (attempt 1/3): 2 turns, 2 tool uses (last: Edit), " +
          "200 in / 20 out tokens, session S; last output 300s ago"
        ])
        yield* TestClock.adjust("300 seconds")
        expect((yield* s.lines).filter((l) => l.includes("PROGRESS:"))).toHaveLength(2)
        yield* run.output(result())
        yield* run.finish(ExitStatus.Exited({ code: 0 }))
        yield* settle
        expect((yield* s.lines).find((l) => l.includes("FINISH:"))).toContain(
          "a completed a-1.trigger successfully in 600s (attempt 1): 2 turns, $0.5000, session S"
        )
        // No PROGRESS once the agent is done.
        yield* TestClock.adjust("600 seconds")
        expect((yield* s.lines).filter((l) => l.includes("PROGRESS:"))).toHaveLength(2)
        expect((yield* s.notified).map((n) => n.kind)).toEqual(["start", "progress", "progress", "complete"])
        expect((yield* s.notified)[3]).toMatchObject({ agent: "a", trigger: "a-1.trigger", attempt: 1, details: { cost_usd: 0.5, turns: 2, session_id: "S" } })
      })))

  it.scoped("a result with is_error fails an attempt that exited 0; the DLQ meta carries the summary", () =>
    withScheduler({ maxRetries: 1 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        const run = yield* s.next
        yield* run.output(tool("m1", "Bash") + result({ is_error: true, subtype: "error_during_execution", result: "tool crashed", total_cost_usd: 0.25 }))
        yield* TestClock.adjust("2 seconds")
        yield* run.finish(ExitStatus.Exited({ code: 0 }))
        yield* settle
        const [outcome] = yield* s.outcomes
        expect(outcome!.completion._tag).toBe("DeadLetter")
        expect(outcome!.completion.meta).toMatchObject({
          failure_reason: "failed 1 time; last attempt exited with code 0 but reported an error (error_during_execution: tool crashed)",
          failure_kind: "agent_error",
          exit_code: 0,
          turns: 2,
          cost_usd: 0.25,
          total_cost_usd: 0.25,
          session_id: "S",
          duration_seconds: 2
        })
      })))

  it.scoped("an agent silent for AGENT_STALL_TIMEOUT is stopped as stalled, not timed out; output keeps it alive", () =>
    withScheduler({ maxRetries: 1, agentStallTimeoutMs: 600_000, agentTimeoutMs: 3_600_000 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        const run = yield* s.next
        yield* TestClock.adjust("500 seconds")
        // Seen the moment it is written (no log is read back): the silence counts from here.
        yield* run.output("still thinking\n")
        yield* TestClock.adjust("599 seconds")
        yield* settle
        expect(yield* Deferred.isDone(run.interrupted)).toBe(false)
        yield* TestClock.adjust("1 second")
        yield* settle
        expect(yield* Deferred.isDone(run.interrupted)).toBe(true)
        const lines = yield* s.lines
        expect(lines.find((l) => l.includes("STALLED:"))).toContain("STALLED: a stalled (no output for 600s) on a-1.trigger")
        expect(lines.some((l) => l.includes("TIMEOUT:"))).toBe(false)
        const [outcome] = yield* s.outcomes
        expect(outcome!.completion.meta).toMatchObject({ failure_kind: "stalled", signal: "SIGTERM" })
        expect((yield* s.notified).map((n) => n.kind)).toEqual(["start", "progress", "progress", "progress", "stalled", "dead_letter"])
      })))

  it.scoped("AGENT_STALL_TIMEOUT=0 never stops a silent agent", () =>
    withScheduler({ agentStallTimeoutMs: 0, agentTimeoutMs: 7_200_000 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        const run = yield* s.next
        yield* TestClock.adjust("20 minutes")
        yield* settle
        expect(yield* Deferred.isDone(run.interrupted)).toBe(false)
      })))
})

describe("Scheduler on a usage limit", () => {
  const limitResult = (text: string) =>
    JSON.stringify({ type: "result", subtype: "success", is_error: true, result: text, total_cost_usd: 0 }) + "\n"

  it.scoped("requeues the trigger without counting the attempt and pauses every agent for the cooldown, doubling in a row", () =>
    withScheduler({ usageLimitCooldownMs: 300_000, agentStallTimeoutMs: 0 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        const first = yield* s.next
        yield* first.output(limitResult("You've hit your limit"))
        yield* TestClock.adjust("1 second")
        yield* first.finish(ExitStatus.Exited({ code: 1 }))
        yield* settle
        expect(yield* s.requeued).toEqual(["a-1"])
        expect((yield* s.lines).find((l) => l.includes("LIMIT:"))).toContain(
          "a hit a usage limit on a-1.trigger (attempt 1, not counted): You've hit your limit; agents running this AGENT_COMMAND " +
            "wait until 1970-01-01T00:05:01Z (cooldown, limit 1 in a row)"
        )
        // Another agent's trigger waits too.
        yield* s.add("b-1", t("b"))
        yield* TestClock.adjust("299 seconds")
        yield* settle
        expect(yield* s.startedCount).toBe(1)
        yield* TestClock.adjust("1 second")
        const again = yield* s.next
        const other = yield* s.next
        expect([again.spec.agent, other.spec.agent].sort()).toEqual(["a", "b"])
        const a = again.spec.agent === "a" ? again : other
        // Attempt 1 again: the limited attempt did not count.
        expect(a.spec.env["STARFORGE_ATTEMPT"]).toBe("1")
        yield* a.output(limitResult("Claude AI usage limit reached"))
        yield* TestClock.adjust("1 second")
        yield* a.finish(ExitStatus.Exited({ code: 1 }))
        yield* settle
        expect((yield* s.lines).filter((l) => l.includes("LIMIT:"))[1]).toContain("wait until 1970-01-01T00:15:02Z (cooldown, limit 2 in a row)")
        expect(yield* s.outcomes).toEqual([])
      })))

  it.scoped("pauses until the reset time the agent named", () =>
    withScheduler({ agentStallTimeoutMs: 0 }, (s) =>
      Effect.gen(function*() {
        yield* TestClock.setTime(Date.parse("2026-11-28T10:00:00Z"))
        yield* s.add("a-1", t("a"))
        const run = yield* s.next
        yield* run.output(limitResult("You've hit your limit · resets 1pm (UTC)"))
        yield* TestClock.adjust("1 second")
        yield* run.finish(ExitStatus.Exited({ code: 1 }))
        yield* settle
        expect((yield* s.lines).find((l) => l.includes("LIMIT:"))).toContain("wait until 2026-11-28T13:00:00Z (the reset time the agent named)")
        yield* TestClock.adjust("2 hours")
        yield* settle
        expect(yield* s.startedCount).toBe(1)
        yield* TestClock.adjust("1 hour")
        expect((yield* s.next).spec.agent).toBe("a")
      })))

  it.scoped("a limit mentioned by an agent that succeeds changes nothing", () =>
    withScheduler({ agentStallTimeoutMs: 0 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        const run = yield* s.next
        yield* run.output("API Error: 429 rate_limit_error, retrying in 5 seconds\n")
        yield* TestClock.adjust("1 second")
        yield* run.finish(ExitStatus.Exited({ code: 0 }))
        yield* settle
        expect((yield* s.outcomes).map((o) => o.completion._tag)).toEqual(["Done"])
        expect((yield* s.lines).some((l) => l.includes("LIMIT:"))).toBe(false)
      })))
})
