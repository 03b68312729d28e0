/**
 * The scheduler against fake layers: an in-memory queue, in-memory slots and the fake spawner,
 * whose processes write and exit when the test says so, all under the TestClock. The attempts
 * write their agents' logs for real, into a temporary project.
 *
 * The tests never pause for a number of turns: each awaits the event it expects (a process
 * start, a timer the code set, a line of the daemon log, an outcome of the queue), with a
 * deadline (`eventually`). What must NOT happen is asserted once a later event proves the
 * scheduler had its chance: a later start, or a start time that shows when it came.
 */
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Clock, Deferred, Duration, Effect, Ref, Schedule, TestClock } from "effect"
import type { DaemonSettings } from "../../src/config/DaemonConfig.js"
import { ExitStatus } from "../../src/domain/Outcome.js"
import { idleMachine, type MachineReading, MachineState } from "../../src/platform/MachineState.js"
import * as Job from "../../src/scheduler/Job.js"
import * as Scheduler from "../../src/scheduler/Scheduler.js"
import { eventually, eventuallyDone, eventuallySleeping } from "../support/eventually.js"
import { readText, t, withScheduler } from "../support/scheduler.js"

/**
 * The delays `policy` puts between attempts, for as many failures as it takes. `Schedule.run`
 * also returns the output of the step that ended the schedule: no wait follows that one.
 */
const delaysOf = (policy: ReturnType<typeof Job.retryPolicy>) =>
  Effect.map(Schedule.run(Schedule.delays(policy), 0, Array.from({ length: 20 })), (delays) => {
    expect(delays.length).toBeLessThan(20)
    return Array.from(delays, Duration.toMillis).slice(0, -1)
  })

describe("retryPolicy", () => {
  it.effect("spaces attempts by INITIAL_RETRY_DELAY, doubling, for MAX_RETRIES attempts in total", () =>
    Effect.gen(function*() {
      expect(yield* delaysOf(Job.retryPolicy(5_000, 3))).toEqual([5_000, 10_000])
      expect(yield* delaysOf(Job.retryPolicy(200, 4))).toEqual([200, 400, 800])
      expect(yield* delaysOf(Job.retryPolicy(5_000, 1))).toEqual([])
      // The scheduler re-exports it.
      expect(Scheduler.retryPolicy).toBe(Job.retryPolicy)
    }))

  it.effect("resumed at attempt `first`, waits what the attempts after it would have waited", () =>
    Effect.gen(function*() {
      expect(yield* delaysOf(Job.retryPolicy(5_000, 3, 1))).toEqual([5_000, 10_000])
      expect(yield* delaysOf(Job.retryPolicy(5_000, 3, 2))).toEqual([10_000])
      expect(yield* delaysOf(Job.retryPolicy(200, 5, 3))).toEqual([800, 1_600])
      // Its last attempt, or past it: no retry left.
      expect(yield* delaysOf(Job.retryPolicy(5_000, 3, 3))).toEqual([])
      expect(yield* delaysOf(Job.retryPolicy(5_000, 3, 4))).toEqual([])
    }))
})

describe("Scheduler", () => {
  it.scoped("runs triggers of one agent one at a time, oldest first", () =>
    withScheduler({}, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        yield* s.add("a-2", t("a"))
        yield* s.add("a-3", t("a"))
        const first = yield* s.next
        expect(first.trigger).toBe("a-1")
        expect(first.header).toContain("Trigger: a-1.trigger")
        // Queued after a-2 and a-3: the pass that starts it went past them, and left them queued.
        yield* s.add("b-1", t("b"))
        const probe = yield* s.next
        expect(probe.trigger).toBe("b-1")
        expect(yield* s.startedCount).toBe(2)
        yield* probe.finish(ExitStatus.Exited({ code: 0 }))
        yield* first.finish(ExitStatus.Exited({ code: 0 }))
        const second = yield* s.next
        expect(second.header).toContain("Trigger: a-2.trigger")
        yield* second.finish(ExitStatus.Exited({ code: 0 }))
        const third = yield* s.next
        expect(third.header).toContain("Trigger: a-3.trigger")
        yield* third.finish(ExitStatus.Exited({ code: 0 }))
        const outcomes = yield* s.outcomesAt(4)
        expect(outcomes.filter((o) => o.name.startsWith("a-")).map((o) => [o.name, o.completion._tag])).toEqual([
          ["a-1", "Done"],
          ["a-2", "Done"],
          ["a-3", "Done"]
        ])
        expect(yield* s.startedCount).toBe(4)
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
        expect([one.agent, two.agent]).toEqual(["a", "b"])
        expect(two.header).toContain("Trigger: b-3.trigger")
        expect(two.request.env["STARFORGE_TRIGGER_FILE"]).toBe("/memory/b-3.processing")
        // Queued after a-2: its start proves a-2 was passed over, not forgotten.
        yield* s.add("c-4", t("c"))
        expect((yield* s.next).trigger).toBe("c-4")
        expect(yield* s.startedCount).toBe(3)
        expect([...(yield* s.busy)].sort()).toEqual(["a", "b", "c"])
      })))

  it.scoped("never runs more than MAX_CONCURRENT_AGENTS at once", () =>
    withScheduler({ maxConcurrent: 2 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        yield* s.add("b-1", t("b"))
        yield* s.add("c-1", t("c"))
        const a = yield* s.next
        yield* s.next
        yield* TestClock.adjust("1 second")
        yield* a.finish(ExitStatus.Exited({ code: 0 }))
        const c = yield* s.next
        expect(c.agent).toBe("c")
        // Started once a's slot was free, not with the first two.
        expect(c.header).toContain("Started: 1970-01-01T00:00:01Z")
        expect(yield* s.startedCount).toBe(3)
      })))

  it.scoped("sequential mode runs one agent at a time whatever the cap", () =>
    withScheduler({ parallel: false, maxConcurrent: 10 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        yield* s.add("b-1", t("b"))
        const a = yield* s.next
        expect(a.header).toContain("Started: 1970-01-01T00:00:00Z")
        yield* TestClock.adjust("1 second")
        yield* a.finish(ExitStatus.Exited({ code: 0 }))
        const b = yield* s.next
        expect(b.agent).toBe("b")
        expect(b.header).toContain("Started: 1970-01-01T00:00:01Z")
        expect(yield* s.startedCount).toBe(2)
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
          order.push(run.agent)
          yield* run.finish(ExitStatus.Exited({ code: 0 }))
        }
        expect(order).toEqual(["c", "a", "b"])
      })))

  it.scoped("retries after INITIAL_RETRY_DELAY, then twice that, then dead-letters", () =>
    withScheduler({ initialRetryDelayMs: 5_000, maxRetries: 3 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a", { trace_id: "T-1" }))
        const first = yield* s.next
        expect(first.request.env["STARFORGE_ATTEMPT"]).toBe("1")
        expect(first.header).toContain("Attempt: 1/3")
        yield* first.finish(ExitStatus.Exited({ code: 3 }))
        yield* s.linesWith("RETRY: Attempt 2/3")
        yield* eventuallySleeping("the wait before attempt 2", 5_000)
        yield* TestClock.adjust("4999 millis")
        expect(yield* s.startedCount).toBe(1)
        yield* TestClock.adjust("1 millis")
        const second = yield* s.next
        expect(second.request.env["STARFORGE_ATTEMPT"]).toBe("2")
        expect(second.header).toContain("Started: 1970-01-01T00:00:05Z")
        yield* second.finish(ExitStatus.Exited({ code: 3 }))
        yield* s.linesWith("RETRY: Attempt 3/3")
        yield* eventuallySleeping("the wait before attempt 3", 15_000)
        yield* TestClock.adjust("9999 millis")
        expect(yield* s.startedCount).toBe(2)
        yield* TestClock.adjust("1 millis")
        const third = yield* s.next
        expect(third.header).toContain("Started: 1970-01-01T00:00:15Z")
        yield* third.finish(ExitStatus.Signaled({ signal: "SIGKILL" }))
        const outcomes = yield* s.outcomesAt(1)
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
        expect(meta.last_log).toBe(third.log)
        const lines = (yield* s.lines).join("\n")
        expect(lines).toMatch(/RETRY: Attempt 2\/3 for a-1.trigger in 5s/)
        expect(lines).toMatch(/RETRY: Attempt 3\/3 for a-1.trigger in 10s/)
        expect(lines).toMatch(/\[T-1\] DLQ:/)
        expect(yield* s.startedCount).toBe(3)
      })))

  it.scoped("every finished attempt is one history entry: failed, timed out, succeeded, interrupted by shutdown", () =>
    // 2 s between attempts: no other timer of the daemon falls on the instants awaited.
    withScheduler({ initialRetryDelayMs: 2_000, agentTimeoutMs: 10_000, maxRetries: 3 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a", { trace_id: "T-9", context: { ticket: 52 } }))
        const first = yield* s.next
        yield* TestClock.adjust("2 seconds")
        yield* first.finish(ExitStatus.Exited({ code: 4 }))
        yield* eventuallySleeping("the wait before attempt 2", 4_000)
        yield* TestClock.adjust("2 seconds")
        const second = yield* s.next
        yield* eventuallySleeping("the second attempt's AGENT_TIMEOUT", 14_000)
        yield* TestClock.adjust("10 seconds") // the second attempt times out
        yield* eventuallyDone("the second attempt to be stopped", second.interrupted)
        yield* eventuallySleeping("the wait before attempt 3", 18_000)
        yield* TestClock.adjust("4 seconds")
        const third = yield* s.next
        yield* third.finish(ExitStatus.Exited({ code: 0 }))
        yield* s.outcomesAt(1)
        yield* s.add("b-1", t("b"))
        const b = yield* s.next
        yield* s.close
        expect(yield* Deferred.isDone(b.interrupted)).toBe(true)
        const entries = yield* s.history
        expect(entries.map((e) => [e.trigger, e.attempt, e.outcome, e.exit_code, e.signal])).toEqual([
          ["a-1.trigger", 1, "failed", 4, null],
          ["a-1.trigger", 2, "timeout", null, "SIGTERM"],
          ["a-1.trigger", 3, "success", 0, null],
          // Stopped by the shutdown: its signal is kept.
          ["b-1.trigger", 1, "interrupted", null, "SIGTERM"]
        ])
        expect(entries[0]).toMatchObject({
          agent: "a",
          start: "1970-01-01T00:00:00.000Z",
          end: "1970-01-01T00:00:02.000Z",
          ticket: "52",
          trace_id: "T-9"
        })
        expect(entries[1]).toMatchObject({ start: "1970-01-01T00:00:04.000Z", end: "1970-01-01T00:00:14.000Z" })
        expect(entries.map((e) => e.log)).toEqual([first.log, second.log, third.log, b.log])
        expect(entries[0]!.log).toBe(path.join(s.logs, "a-0.log"))
        // Each log has its header and its footer.
        expect(readText(first.log)).toMatch(/^Agent: a\nTrigger: a-1.trigger\nStarted: 1970-01-01T00:00:00Z\nAttempt: 1\/3\n\n[^]*\nFailed: 1970-01-01T00:00:02Z\nExit code: 4\n$/)
        expect(readText(second.log)).toContain("\nTimed out after 10s\nSignal: SIGTERM\n")
        expect(readText(third.log)).toMatch(/\nCompleted: 1970-01-01T00:00:18Z\nExit code: 0\n$/)
      })))

  it.scoped("a trigger that succeeds on the second attempt is archived as done", () =>
    withScheduler({ initialRetryDelayMs: 1_500 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        yield* (yield* s.next).finish(ExitStatus.Exited({ code: 1 }))
        yield* eventuallySleeping("the wait before attempt 2", 1_500)
        yield* TestClock.adjust("1500 millis")
        const second = yield* s.next
        expect(second.attempt).toBe("2")
        yield* second.finish(ExitStatus.Exited({ code: 0 }))
        expect((yield* s.outcomesAt(1)).map((o) => o.completion._tag)).toEqual(["Done"])
        expect(yield* s.startedCount).toBe(2)
      })))

  it.scoped("while a trigger waits for its retry, its agent runs other triggers", () =>
    withScheduler({ initialRetryDelayMs: 5_000 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        yield* s.add("a-2", t("a"))
        yield* (yield* s.next).finish(ExitStatus.Exited({ code: 1 }))
        const other = yield* s.next
        expect(other.header).toContain("Trigger: a-2.trigger")
        // The retry is due but the agent is busy: it waits, in its place, for the slot.
        yield* eventuallySleeping("the wait before attempt 2", 5_000)
        yield* TestClock.adjust("5 seconds")
        yield* TestClock.adjust("1 second")
        yield* other.finish(ExitStatus.Exited({ code: 0 }))
        const retry = yield* s.next
        expect(retry.header).toContain("Trigger: a-1.trigger")
        expect(retry.request.env["STARFORGE_ATTEMPT"]).toBe("2")
        // It started when a-2 ended, not when its wait was over.
        expect(retry.header).toContain("Started: 1970-01-01T00:00:06Z")
        expect(yield* s.startedCount).toBe(3)
      })))

  it.scoped("AGENT_TIMEOUT interrupts the attempt and counts as a failure", () =>
    withScheduler({ agentTimeoutMs: 1_000, maxRetries: 2, initialRetryDelayMs: 100 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        const first = yield* s.next
        yield* eventuallySleeping("the first attempt's AGENT_TIMEOUT", 1_000)
        yield* TestClock.adjust("1 second")
        yield* eventuallyDone("the first attempt to be stopped", first.interrupted)
        yield* eventuallySleeping("the wait before attempt 2", 1_100)
        yield* TestClock.adjust("100 millis")
        const second = yield* s.next
        yield* eventuallySleeping("the second attempt's AGENT_TIMEOUT", 2_100)
        yield* TestClock.adjust("1 second")
        yield* eventuallyDone("the second attempt to be stopped", second.interrupted)
        const outcomes = yield* s.outcomesAt(1)
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
        expect(yield* Deferred.isDone(a.interrupted)).toBe(true)
        expect(yield* Deferred.isDone(b.interrupted)).toBe(true)
        expect([...(yield* s.requeued)].sort()).toEqual(["a-1", "b-1"])
        expect(yield* s.busy).toEqual([])
        expect(yield* s.outcomes).toEqual([])
      })))

  it.scoped("a spawn failure is a failed attempt that ends in the dead-letter queue", () =>
    withScheduler({ maxRetries: 1, spawnError: "command not found: claude (install it or set AGENT_COMMAND)" }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        const meta = (yield* s.outcomesAt(1))[0]!.completion.meta!
        expect(meta.failure_reason).toContain("AGENT_COMMAND")
        expect(meta.attempts).toBe(1)
        expect(yield* s.startedCount).toBe(0)
        // The log says why the agent never ran.
        expect(readText(meta.last_log!)).toMatch(/\nError: command not found: claude \(install it or set AGENT_COMMAND\)\n$/)
        expect(yield* s.busy).toEqual([])
      })))
})

// The attempt reads the agent's output from its pipes (the fake's `output`), as it writes the log.
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
        yield* eventuallySleeping("the first PROGRESS", 300_000)
        yield* run.output(line({ type: "system", subtype: "init", session_id: "S", model: "m-1" }) + tool("m1", "Bash") + tool("m2", "Edit"))
        const slots = yield* eventually("the progress in the slot", s.slots, (table) => table["a"]?.last_tool === "Edit")
        expect(slots["a"]).toMatchObject({
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
        yield* TestClock.adjust("1 second")
        yield* TestClock.adjust("299 seconds")
        const progress = yield* s.linesWith("PROGRESS:")
        expect(progress).toEqual([
          "[1970-01-01T00:05:00.000Z] [] PROGRESS: a running 5m 00s on a-1.trigger (attempt 1/3): 2 turns, 2 tool uses (last: Edit), " +
          "200 in / 20 out tokens, session S; last output 300s ago"
        ])
        yield* eventuallySleeping("the second PROGRESS", 600_000)
        yield* TestClock.adjust("300 seconds")
        yield* s.linesWith("PROGRESS:", 2)
        yield* run.output(result())
        yield* run.finish(ExitStatus.Exited({ code: 0 }))
        const [finish] = yield* s.linesWith("FINISH:")
        expect(finish).toContain("a completed a-1.trigger successfully in 600s (attempt 1): 2 turns, $0.5000, session S")
        // No PROGRESS once the agent is done (its loop ended with the attempt, before FINISH).
        yield* TestClock.adjust("600 seconds")
        yield* s.outcomesAt(1)
        expect((yield* s.lines).filter((l) => l.includes("PROGRESS:"))).toHaveLength(2)
        expect((yield* s.notified).map((n) => n.kind)).toEqual(["start", "progress", "progress", "complete"])
        expect((yield* s.notified)[3]).toMatchObject({ agent: "a", trigger: "a-1.trigger", attempt: 1, details: { cost_usd: 0.5, turns: 2, session_id: "S" } })
        // What it wrote is in its log, between the header and the footer.
        expect(readText(run.log)).toContain(`${tool("m2", "Edit")}${result()}\nCompleted: 1970-01-01T00:10:00Z\nExit code: 0\n`)
      })))

  it.scoped("a result with is_error fails an attempt that exited 0; the DLQ meta carries the summary", () =>
    withScheduler({ maxRetries: 1 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        const run = yield* s.next
        yield* run.output(tool("m1", "Bash") + result({ is_error: true, subtype: "error_during_execution", result: "tool crashed", total_cost_usd: 0.25 }))
        yield* TestClock.adjust("2 seconds")
        yield* run.finish(ExitStatus.Exited({ code: 0 }))
        const [outcome] = yield* s.outcomesAt(1)
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
        yield* eventuallySleeping("the stall watch", 600_000)
        yield* eventuallySleeping("the first PROGRESS", 300_000)
        yield* TestClock.adjust("500 seconds")
        yield* s.linesWith("PROGRESS:")
        // Seen the moment it is written: the silence counts from here.
        yield* run.output("still thinking\n")
        yield* eventually("the output in the agent's log", Effect.sync(() => readText(run.log)), (text) => text.includes("still thinking\n"))
        yield* TestClock.adjust("100 seconds")
        // At 600 s the stall watch found 100 s of silence and looks again at 1100 s.
        yield* eventuallySleeping("the stall watch, moved by the output", 1_100_000)
        yield* s.linesWith("PROGRESS:", 2)
        yield* eventuallySleeping("the third PROGRESS", 900_000)
        yield* TestClock.adjust("499 seconds")
        yield* s.linesWith("PROGRESS:", 3)
        expect(yield* Deferred.isDone(run.interrupted)).toBe(false)
        yield* TestClock.adjust("1 second")
        yield* eventuallyDone("the agent to be stopped", run.interrupted)
        const [outcome] = yield* s.outcomesAt(1)
        const lines = yield* s.lines
        expect(lines.find((l) => l.includes("STALLED:"))).toContain("STALLED: a stalled (no output for 600s) on a-1.trigger")
        expect(lines.some((l) => l.includes("TIMEOUT:"))).toBe(false)
        expect(lines.filter((l) => l.includes("PROGRESS:")).map((l) => /last output \d+s ago/.exec(l)?.[0])).toEqual([
          "last output 300s ago",
          "last output 100s ago",
          "last output 400s ago"
        ])
        expect(outcome!.completion.meta).toMatchObject({ failure_kind: "stalled", signal: "SIGTERM" })
        expect((yield* s.notified).map((n) => n.kind)).toEqual(["start", "progress", "progress", "progress", "stalled", "dead_letter"])
      })))

  it.scoped("AGENT_STALL_TIMEOUT=0 never stops a silent agent", () =>
    withScheduler({ agentStallTimeoutMs: 0, agentTimeoutMs: 7_200_000 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        const run = yield* s.next
        // Every 5 minutes a PROGRESS: at 20 minutes the attempt's timers have had their chance.
        for (let i = 1; i <= 4; i++) {
          yield* eventuallySleeping(`PROGRESS ${i}`, i * 300_000)
          yield* TestClock.adjust("5 minutes")
          yield* s.linesWith("PROGRESS:", i)
        }
        const progress = yield* s.linesWith("PROGRESS:", 4)
        expect(progress[3]).toContain("last output 1200s ago")
        expect(yield* Deferred.isDone(run.interrupted)).toBe(false)
        expect(yield* s.busy).toEqual(["a"])
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
        expect(yield* eventually("the trigger to be requeued", s.requeued, (r) => r.length > 0)).toEqual(["a-1"])
        expect((yield* s.lines).find((l) => l.includes("LIMIT:"))).toContain(
          "a hit a usage limit on a-1.trigger (attempt 1, not counted): You've hit your limit; agents running this AGENT_COMMAND " +
            "wait until 1970-01-01T00:05:01Z (cooldown, limit 1 in a row)"
        )
        // Another agent's trigger waits too.
        yield* s.add("b-1", t("b"))
        yield* eventuallySleeping("the end of the pause", 301_000)
        yield* TestClock.adjust("299 seconds")
        yield* TestClock.adjust("1 second")
        const again = yield* s.next
        const other = yield* s.next
        expect([again.agent, other.agent].sort()).toEqual(["a", "b"])
        // Neither started before the pause was over (b-1 was queued at 1 s).
        expect(again.header).toContain("Started: 1970-01-01T00:05:01Z")
        expect(other.header).toContain("Started: 1970-01-01T00:05:01Z")
        expect(yield* s.startedCount).toBe(3)
        const a = again.agent === "a" ? again : other
        // Attempt 1 again: the limited attempt did not count.
        expect(a.request.env["STARFORGE_ATTEMPT"]).toBe("1")
        yield* a.output(limitResult("Claude AI usage limit reached"))
        yield* TestClock.adjust("1 second")
        yield* a.finish(ExitStatus.Exited({ code: 1 }))
        const limits = yield* s.linesWith("LIMIT:", 2)
        expect(limits[1]).toContain("wait until 1970-01-01T00:15:02Z (cooldown, limit 2 in a row)")
        yield* eventually("the trigger to be requeued again", s.requeued, (r) => r.length === 2)
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
        const [limit] = yield* s.linesWith("LIMIT:")
        expect(limit).toContain("wait until 2026-11-28T13:00:00Z (the reset time the agent named)")
        yield* eventuallySleeping("the end of the pause", Date.parse("2026-11-28T13:00:00Z"))
        yield* TestClock.adjust("2 hours")
        yield* TestClock.adjust("1 hour")
        const again = yield* s.next
        expect(again.agent).toBe("a")
        // Not a moment before the reset time.
        expect(again.header).toContain("Started: 2026-11-28T13:00:00Z")
        expect(yield* s.startedCount).toBe(2)
      })))

  it.scoped("a limit mentioned by an agent that succeeds changes nothing", () =>
    withScheduler({ agentStallTimeoutMs: 0 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        const run = yield* s.next
        yield* run.output("API Error: 429 rate_limit_error, retrying in 5 seconds\n")
        yield* TestClock.adjust("1 second")
        yield* run.finish(ExitStatus.Exited({ code: 0 }))
        expect((yield* s.outcomesAt(1)).map((o) => o.completion._tag)).toEqual(["Done"])
        expect((yield* s.lines).some((l) => l.includes("LIMIT:"))).toBe(false)
      })))
})

describe("Scheduler with dynamic scaling (a fake machine)", () => {
  const MB = 1024 * 1024
  const scaling: Partial<DaemonSettings> = {
    maxConcurrent: 4,
    minConcurrent: 1,
    scaleIntervalMs: 30_000,
    agentStallTimeoutMs: 0,
    agentTimeoutMs: 3_600_000
  }
  /** The machine as a `Ref` the test changes, and the layer that reads it. */
  const fakeMachine = (initial: Partial<MachineReading> = {}) => MachineState.fake({ ...idleMachine, ...initial })
  /** The machine is looked at every 5 s (the interval, when shorter). */
  const LOOK_MS = 5_000
  /**
   * Moves the clock to `seconds`, look by look: each look's timer is awaited before the clock
   * passes it, and the next one after it, so every look has run when this returns.
   */
  const looksUntil = (seconds: number) =>
    Effect.gen(function*() {
      const end = seconds * 1000
      for (;;) {
        const now = yield* Clock.currentTimeMillis
        const next = (Math.floor(now / LOOK_MS) + 1) * LOOK_MS
        if (next > end) return yield* TestClock.setTime(end)
        yield* eventuallySleeping(`the look at the machine at ${next / 1000}s`, next)
        yield* TestClock.setTime(next)
        yield* eventuallySleeping(`the look at the machine at ${(next + LOOK_MS) / 1000}s`, next + LOOK_MS)
      }
    })

  it.scoped("over SCALE_MAX_LOAD new starts wait at what runs; under it for a whole interval the cap rises one step at a time", () =>
    Effect.gen(function*() {
      const machine = yield* fakeMachine({ cores: 4, loadAverage: 0 })
      yield* withScheduler({ ...scaling, scaleMaxLoad: 1, machine: machine.layer }, (s) =>
        Effect.gen(function*() {
          yield* s.add("a-1", t("a"))
          yield* s.add("b-1", t("b"))
          const a = yield* s.next
          yield* s.next
          yield* Ref.update(machine.reading, (m) => ({ ...m, loadAverage: 8 }))
          yield* looksUntil(5)
          const [drop] = yield* s.linesWith("Effective cap")
          expect(drop).toContain("Effective cap 4 → 2 (max 4, min 1): load 2 per core is over SCALE_MAX_LOAD 1")
          yield* s.add("c-1", t("c"))
          yield* s.add("d-1", t("d"))
          yield* looksUntil(10)
          expect(yield* s.startedCount).toBe(2)
          // One ends: one more may start, never past the cap.
          yield* a.finish(ExitStatus.Exited({ code: 0 }))
          expect((yield* s.next).trigger).toBe("c-1")
          yield* looksUntil(15)
          expect(yield* s.startedCount).toBe(3)
          // The load falls after the look at 15 s: the look at 20 s sees it, and a whole
          // SCALE_INTERVAL later (50 s) the cap rises by one, and d starts.
          yield* Ref.update(machine.reading, (m) => ({ ...m, loadAverage: 0 }))
          yield* looksUntil(45)
          expect((yield* s.lines).filter((l) => l.includes("Effective cap")).length).toBe(1)
          expect(yield* s.startedCount).toBe(3)
          yield* looksUntil(50)
          const [rise] = yield* s.linesWith("Effective cap 2 → 3")
          expect(rise).toContain("under the thresholds for 30s")
          expect((yield* s.next).trigger).toBe("d-1")
          // At most one change per interval, then the hard cap again.
          yield* looksUntil(75)
          expect((yield* s.lines).filter((l) => l.includes("Effective cap")).length).toBe(2)
          yield* looksUntil(80)
          yield* s.linesWith("Effective cap 3 → 4")
        }))
    }))

  it.scoped("memory under half of SCALE_MIN_FREE_MEMORY_MB stops the youngest agent; its trigger goes back to its place, its attempt not counted", () =>
    Effect.gen(function*() {
      const machine = yield* fakeMachine({ availableMemoryBytes: 8_000 * MB })
      yield* withScheduler({ ...scaling, scaleMinFreeMemoryBytes: 1_000 * MB, machine: machine.layer }, (s) =>
        Effect.gen(function*() {
          yield* s.add("a-1", t("a"))
          const a = yield* s.next
          yield* TestClock.setTime(1_000)
          yield* s.add("b-1", t("b"))
          const b = yield* s.next
          yield* Ref.update(machine.reading, (m) => ({ ...m, availableMemoryBytes: 400 * MB }))
          yield* looksUntil(5)
          // b started last: it is stopped, a runs on.
          yield* eventuallyDone("b to be stopped", b.interrupted)
          const [line] = yield* s.linesWith("to free memory")
          expect(line).toContain(
            "b stopped on b-1.trigger (attempt 1, not counted) to free memory: available memory 400 MB is under half of SCALE_MIN_FREE_MEMORY_MB 1000 MB"
          )
          yield* eventually("b-1 to be back in the queue", s.requeued, (r) => r.includes("b-1"))
          expect(yield* Deferred.isDone(a.interrupted)).toBe(false)
          expect((yield* eventually("b's history line", s.history, (h) => h.some((e) => e.agent === "b"))).find((e) => e.agent === "b")?.outcome)
            .toBe("interrupted")
          // A trigger that came later waits behind it.
          yield* s.add("c-1", t("c"))
          yield* looksUntil(10)
          expect(yield* s.startedCount).toBe(2)
          // Memory comes back at 10 s: a whole interval later the cap rises and b-1 runs first, as attempt 1 again.
          yield* Ref.update(machine.reading, (m) => ({ ...m, availableMemoryBytes: 8_000 * MB }))
          yield* looksUntil(45)
          yield* s.linesWith("Effective cap 1 → 2")
          const again = yield* s.next
          expect(again.trigger).toBe("b-1")
          expect(again.attempt).toBe("1")
        }))
    }))

  it.scoped("never below MIN_CONCURRENT_AGENTS: no emergency stop when only the minimum runs", () =>
    Effect.gen(function*() {
      const machine = yield* fakeMachine({ availableMemoryBytes: 8_000 * MB })
      yield* withScheduler({ ...scaling, minConcurrent: 2, scaleMinFreeMemoryBytes: 1_000 * MB, machine: machine.layer }, (s) =>
        Effect.gen(function*() {
          yield* s.add("a-1", t("a"))
          yield* s.add("b-1", t("b"))
          const a = yield* s.next
          const b = yield* s.next
          yield* Ref.update(machine.reading, (m) => ({ ...m, availableMemoryBytes: 100 * MB }))
          yield* looksUntil(5)
          yield* s.linesWith("Effective cap 4 → 2")
          yield* s.add("c-1", t("c"))
          yield* looksUntil(60)
          expect(yield* Deferred.isDone(a.interrupted)).toBe(false)
          expect(yield* Deferred.isDone(b.interrupted)).toBe(false)
          expect(yield* s.startedCount).toBe(2)
          // One ends: the minimum still holds, so c starts.
          yield* a.finish(ExitStatus.Exited({ code: 0 }))
          expect((yield* s.next).trigger).toBe("c-1")
        }))
    }))
})
