/**
 * Why a trigger waits, as the scheduler itself reports it (`Scheduler.waiting`), one test per
 * reason; daily budgets (under the TestClock, across a UTC midnight); per-agent settings; and
 * retries that resume the agent's session. All against the fake layers of `support/scheduler`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Ref, TestClock } from "effect"
import { ExitStatus } from "../../src/domain/Outcome.js"
import { idleMachine, MachineState } from "../../src/platform/MachineState.js"
import type { QueuedTrigger } from "../../src/queue/TriggerQueue.js"
import { decide, type Pass } from "../../src/scheduler/Dispatcher.js"
import { describeWait, type Waiting, WaitReason, whyJson } from "../../src/scheduler/Why.js"
import { eventually, eventuallySleeping } from "../support/eventually.js"
import { readText, t, withScheduler } from "../support/scheduler.js"

const line = (o: object) => JSON.stringify(o) + "\n"
const init = (session: string) => line({ type: "system", subtype: "init", session_id: session, model: "m-1" })
const result = (costUsd: number, session = "S") =>
  line({ type: "result", subtype: "success", is_error: false, num_turns: 1, total_cost_usd: costUsd, session_id: session, result: "ok" })
const turn = (id: string) =>
  line({ type: "assistant", session_id: "S", message: { id, model: "m-1", content: [{ type: "text", text: "…" }], usage: { input_tokens: 1, output_tokens: 1 } } })

/** The reason of `trigger` once the scheduler reports it as `tag`. */
const whyOf = (waiting: Effect.Effect<ReadonlyArray<Waiting>>, trigger: string, tag: Waiting["why"]["_tag"]) =>
  Effect.map(
    eventually(`${trigger} waiting for ${tag}`, waiting, (all) => all.some((w) => w.trigger === trigger && w.why._tag === tag)),
    (all) => all.find((w) => w.trigger === trigger)!
  )

describe("why a trigger waits (Scheduler.waiting)", () => {
  it.scoped("its agent is busy: with which trigger, since when", () =>
    withScheduler({}, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        yield* s.next
        yield* s.add("a-2", t("a", { ticket: "52" }))
        const waiting = yield* whyOf(s.scheduler.waiting(), "a-2.trigger", "AgentBusy")
        expect(waiting).toMatchObject({ agent: "a", ticket: "52", attempt: 1 })
        expect(whyJson(waiting.why)).toEqual({
          reason: "agent_busy",
          text: "a is busy with a-1.trigger since 1970-01-01T00:00:00Z",
          agent: "a",
          trigger: "a-1.trigger",
          since: "1970-01-01T00:00:00Z"
        })
      })))

  it.scoped("the cap is reached: n of n", () =>
    withScheduler({ maxConcurrent: 1 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        yield* s.next
        yield* s.add("b-1", t("b"))
        const { why } = yield* whyOf(s.scheduler.waiting(), "b-1.trigger", "CapReached")
        expect(why).toMatchObject({ running: 1, cap: 1, max: 1 })
        expect(describeWait(why)).toBe("1 of 1 agents running: the cap (MAX_CONCURRENT_AGENTS) is reached")
      })))

  it.scoped("a retry delay: until when, for which attempt", () =>
    withScheduler({}, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        const run = yield* s.next
        yield* TestClock.adjust("2 seconds")
        yield* run.finish(ExitStatus.Exited({ code: 1 }))
        const { attempt, why } = yield* whyOf(s.scheduler.waiting(), "a-1.trigger", "RetryDelay")
        expect(attempt).toBe(2)
        expect(why).toMatchObject({ until: "1970-01-01T00:00:07Z", attempt: 2 })
        // Once the delay is over it runs again and waits for nothing.
        yield* eventuallySleeping("the retry delay", 7_000)
        yield* TestClock.adjust("5 seconds")
        yield* s.next
        expect((yield* s.scheduler.waiting()).map((w) => w.trigger)).toEqual([])
      })))

  it.scoped("a usage-limit pause: until when, and the agent's reason", () =>
    withScheduler({
      usage: {
        limits: {
          agent: { until: "1970-01-01T01:00:00Z", since: "1970-01-01T00:00:00Z", agent: "b", trigger: null, reason: "You've hit your limit", source: "cooldown", consecutive: 1 }
        },
        days: {}
      }
    }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        const { why } = yield* whyOf(s.scheduler.waiting(), "a-1.trigger", "UsageLimit")
        expect(describeWait(why)).toBe("paused by a usage limit until 1970-01-01T01:00:00Z (You've hit your limit)")
      })))

  it.scoped("an agent with a command of its own is not paused by another command's usage limit", () =>
    withScheduler({
      agents: { b: { agentCommand: ["other-agent"] } },
      usage: {
        limits: {
          agent: { until: "1970-01-01T01:00:00Z", since: "1970-01-01T00:00:00Z", agent: "a", trigger: null, reason: "limit", source: "cooldown", consecutive: 1 }
        },
        days: {}
      }
    }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        yield* s.add("b-1", t("b"))
        const run = yield* s.next
        expect(run.request.command).toBe("other-agent")
        yield* whyOf(s.scheduler.waiting(), "a-1.trigger", "UsageLimit")
      })))
})

describe("decide, the dispatcher's one decision", () => {
  const pass = (over: Partial<Pass> = {}): Pass => ({
    now: 0,
    stopping: false,
    busy: new Set(),
    capacity: { effective_cap: 2, max_concurrent: 2, min_concurrent: 1, reason: null, changed_at: null, load_per_core: null, available_memory_bytes: null, checked_at: null },
    blocked: () => Effect.succeed(undefined),
    ...over
  })
  const queued: QueuedTrigger = { name: "a-1", agent: "a", trigger: t("a"), priority: "normal", createdNs: 0n }

  it.effect("a stopping daemon starts nothing, whatever else holds; then a pause; then a put-back trigger's time", () =>
    Effect.gen(function*() {
      expect(yield* decide(pass(), queued, undefined, undefined)).toBe("start")
      const paused = WaitReason.UsageLimit({ until: "1970-01-01T01:00:00Z", reason: "limit" })
      expect(yield* decide(pass({ stopping: true, blocked: () => Effect.succeed(paused) }), queued, undefined, undefined)).toEqual(WaitReason.Stopping())
      expect(describeWait(WaitReason.Stopping())).toBe("the daemon is stopping")
      expect(yield* decide(pass({ blocked: () => Effect.succeed(paused), busy: new Set(["a"]) }), queued, undefined, undefined)).toBe(paused)
      const held = { attempt: 2, timestamps: [], notBefore: 10_000 }
      const heldBack = yield* decide(pass({ busy: new Set(["a"]) }), queued, undefined, held)
      expect(heldBack !== "start" && whyJson(heldBack)).toEqual({
        reason: "held_back",
        text: "put back in the queue; looked at again at 1970-01-01T00:00:10Z",
        until: "1970-01-01T00:00:10Z"
      })
    }))
})

describe("why a trigger waits while dynamic scaling lowers the cap", () => {
  it.scoped("the effective cap and the reason it is below the hard cap", () =>
    Effect.gen(function*() {
      const machine = yield* MachineState.fake({ ...idleMachine, cores: 4, loadAverage: 0 })
      yield* withScheduler({ maxConcurrent: 4, scaleMaxLoad: 1, scaleIntervalMs: 30_000, machine: machine.layer }, (s) =>
        Effect.gen(function*() {
          yield* s.add("a-1", t("a"))
          yield* s.next
          yield* Ref.update(machine.reading, (m) => ({ ...m, loadAverage: 8 }))
          // The machine is looked at every 5 s.
          yield* eventuallySleeping("the look at the machine", 5_000)
          yield* TestClock.adjust("5 seconds")
          yield* s.linesWith("Effective cap")
          yield* s.add("b-1", t("b"))
          const { why } = yield* whyOf(s.scheduler.waiting(), "b-1.trigger", "CapReached")
          expect(describeWait(why)).toBe("1 of 1 agents running: the effective cap is 1 of 4 (load 2 per core is over SCALE_MAX_LOAD 1)")
        }))
    }))
})

describe("daily budgets", () => {
  it.scoped("once the day's recorded cost reaches DAILY_BUDGET_USD, the next trigger waits with the budget as its reason; the next UTC day it runs", () =>
    withScheduler({ dailyBudgetUsd: 1 }, (s) =>
      Effect.gen(function*() {
        yield* TestClock.adjust("10 hours")
        yield* s.add("a-1", t("a"))
        const first = yield* s.next
        yield* first.output(result(0.6))
        yield* first.finish(ExitStatus.Exited({ code: 0 }))
        yield* s.outcomesAt(1)
        yield* s.add("b-1", t("b"))
        const second = yield* s.next
        // A running attempt is never stopped: it finishes and its cost counts.
        yield* second.output(result(0.5))
        yield* second.finish(ExitStatus.Exited({ code: 0 }))
        yield* s.outcomesAt(2)
        yield* s.add("c-1", t("c"))
        const { why } = yield* whyOf(s.scheduler.waiting(), "c-1.trigger", "Budget")
        expect(why).toEqual({ _tag: "Budget", until: "1970-01-02T00:00:00Z", spentUsd: 1.1, budgetUsd: 1, scope: "all" })
        expect(describeWait(why)).toBe("the daily budget of all agents is spent ($1.10 of $1.00) until 1970-01-02T00:00:00Z")
        const [budget] = yield* s.linesWith("BUDGET:")
        expect(budget).toContain("The daily budget of all agents (DAILY_BUDGET_USD) is spent: $1.10 of $1.00; no new attempt starts for any agent until 1970-01-02T00:00:00Z (running ones finish)")
        // Said once, however many passes find it spent.
        yield* s.add("d-1", t("d"))
        yield* whyOf(s.scheduler.waiting(), "d-1.trigger", "Budget")
        expect((yield* s.notified).filter((n) => n.kind === "budget")).toHaveLength(1)
        expect(yield* s.startedCount).toBe(2)
        // Midnight UTC: the budget is whole again (the dispatcher looks at the clock once a minute).
        yield* eventuallySleeping("the dispatcher's look at the clock", 10 * 3600_000 + 60_000)
        yield* TestClock.adjust("14 hours")
        const third = yield* s.next
        expect(third.trigger).toBe("c-1")
      })))

  it.scoped("the attempt that spends a budget is counted before its slot is free: a trigger already waiting does not start", () =>
    withScheduler({ agentBudgetsUsd: { A: 0.5 } }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        const first = yield* s.next
        yield* s.add("a-2", t("a"))
        yield* whyOf(s.scheduler.waiting(), "a-2.trigger", "AgentBusy")
        yield* first.output(result(0.9))
        yield* first.finish(ExitStatus.Exited({ code: 0 }))
        yield* s.outcomesAt(1)
        const { why } = yield* whyOf(s.scheduler.waiting(), "a-2.trigger", "Budget")
        expect(why).toMatchObject({ scope: "agent", spentUsd: 0.9, budgetUsd: 0.5 })
        expect(yield* s.startedCount).toBe(1)
      })))

  it.scoped("DAILY_BUDGET_USD_<AGENT> stops only that agent", () =>
    withScheduler({ agentBudgetsUsd: { A: 0.5 } }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        const first = yield* s.next
        yield* first.output(result(0.5))
        yield* first.finish(ExitStatus.Exited({ code: 0 }))
        yield* s.outcomesAt(1)
        yield* s.add("a-2", t("a"))
        yield* s.add("b-1", t("b"))
        const other = yield* s.next
        expect(other.trigger).toBe("b-1")
        const { why } = yield* whyOf(s.scheduler.waiting(), "a-2.trigger", "Budget")
        expect(why).toMatchObject({ scope: "agent", spentUsd: 0.5, budgetUsd: 0.5 })
        expect((yield* s.linesWith("BUDGET:"))[0]).toContain("The daily budget of a is spent")
      })))
})

describe("per-agent settings in the scheduler", () => {
  it.scoped("AGENT_TIMEOUT_<AGENT> times out that agent only", () =>
    withScheduler({ agentTimeoutMs: 3_600_000, agentStallTimeoutMs: 0, maxRetries: 1, agents: { qa: { agentTimeoutMs: 60_000 } } }, (s) =>
      Effect.gen(function*() {
        yield* s.add("dev-1", t("dev"))
        yield* s.add("qa-1", t("qa"))
        const runs = [yield* s.next, yield* s.next]
        const dev = runs.find((r) => r.agent === "dev")!
        yield* eventuallySleeping("the qa timeout", 60_000)
        yield* TestClock.adjust("60 seconds")
        const [outcome] = yield* s.outcomesAt(1)
        expect(outcome).toMatchObject({ name: "qa-1", completion: { _tag: "DeadLetter", meta: { failure_kind: "timeout" } } })
        yield* dev.finish(ExitStatus.Exited({ code: 0 }))
        expect((yield* s.outcomesAt(2))[1]).toMatchObject({ name: "dev-1", completion: { _tag: "Done" } })
      })))

  it.scoped("MAX_RETRIES_<AGENT> and INITIAL_RETRY_DELAY_<AGENT> shape that agent's retries only", () =>
    withScheduler({ maxRetries: 3, initialRetryDelayMs: 5_000, agents: { qa: { maxRetries: 2, initialRetryDelayMs: 60_000 } } }, (s) =>
      Effect.gen(function*() {
        yield* s.add("qa-1", t("qa"))
        const first = yield* s.next
        expect(first.header).toContain("Attempt: 1/2")
        yield* first.finish(ExitStatus.Exited({ code: 1 }))
        const [retry] = yield* s.linesWith("RETRY:")
        expect(retry).toContain("Attempt 2/2 for qa-1.trigger in 60s")
      })))
})


type Env = Parameters<Parameters<typeof withScheduler>[1]>[0]

/** Runs `name` for `agent`, whose process reports `session` and fails; returns the retry's process. */
const failedWithSession = (s: Env, name: string, agent: string, session: string) =>
  Effect.gen(function*() {
    yield* s.add(name, t(agent))
    const run = yield* s.next
    yield* run.output(init(session))
    yield* eventually("the session recorded", s.sessions.get(`${name}.trigger`), (r) => r?.session_id === session)
    yield* run.finish(ExitStatus.Exited({ code: 1 }))
    return yield* s.next
  })

describe("retries resume the agent's session", () => {
  it.scoped("the retry of an attempt that had a session runs AGENT_COMMAND --resume <id> with the continuation prompt; history says so", () =>
    withScheduler({ resumeOnRetry: true, maxRetries: 2, initialRetryDelayMs: 0 }, (s) =>
      Effect.gen(function*() {
        const second = yield* failedWithSession(s, "a-1", "a", "sess-1")
        expect(second.request.command).toBe("agent")
        expect(second.request.args).toEqual([
          "--resume",
          "sess-1",
          `Your previous run on this task was interrupted. Continue the task from where you stopped. The trigger file is ${second.request.env["STARFORGE_TRIGGER_FILE"]}.`
        ])
        expect(second.header).toContain("Resumed session: sess-1")
        yield* second.output(init("sess-1") + result(0.1, "sess-1"))
        yield* second.finish(ExitStatus.Exited({ code: 0 }))
        yield* s.outcomesAt(1)
        const history = yield* s.history
        expect(history.map((h) => [h.attempt, h.session_id, h.resumed_session, h.cost_usd])).toEqual([[1, "sess-1", null, null], [2, "sess-1", "sess-1", 0.1]])
        // Done with: forgotten.
        expect(yield* s.sessions.get("a-1.trigger")).toBeUndefined()
        expect((yield* s.lines).find((l) => l.includes("RETRY:"))).toContain("Attempt 2/2 (resuming session sess-1) for a-1.trigger")
      })))

  it.scoped("an unknown session: the same attempt starts fresh, with the full prompt", () =>
    withScheduler({ resumeOnRetry: true, maxRetries: 2, initialRetryDelayMs: 0 }, (s) =>
      Effect.gen(function*() {
        const resumed = yield* failedWithSession(s, "a-1", "a", "sess-1")
        expect(resumed.request.args).toContain("--resume")
        yield* resumed.output("No conversation found with session ID: sess-1\n")
        yield* resumed.finish(ExitStatus.Exited({ code: 1 }))
        const fresh = yield* s.next
        expect(fresh.attempt).toBe("2")
        expect(fresh.request.args).not.toContain("--resume")
        expect(fresh.request.args.at(-1)).toContain("You are the a agent.")
        expect((yield* s.linesWith("RESUME:"))[0]).toContain("a does not know session sess-1; attempt 2 of a-1.trigger starts fresh")
        yield* fresh.finish(ExitStatus.Exited({ code: 0 }))
        expect((yield* s.outcomesAt(1))[0]).toMatchObject({ completion: { _tag: "Done" } })
      })))

  it.scoped("RESUME_ON_RETRY=false starts fresh; a custom AGENT_RESUME_COMMAND gets the session id", () =>
    withScheduler({ maxRetries: 2, initialRetryDelayMs: 0, resumeOnRetry: false, agents: { b: { resumeOnRetry: true, resumeCommand: ["resumer", "--session={session_id}"], resumePrompt: "go on" } } }, (s) =>
      Effect.gen(function*() {
        const again = yield* failedWithSession(s, "a-1", "a", "sess-a")
        expect(again.request.args).not.toContain("--resume")
        yield* again.finish(ExitStatus.Exited({ code: 0 }))
        const resumed = yield* failedWithSession(s, "b-1", "b", "sess-b")
        expect([resumed.request.command, ...resumed.request.args]).toEqual(["resumer", "--session=sess-b", "go on"])
      })))

  it.scoped("a trigger with a recorded session (a daemon stopped or crashed mid-attempt) resumes at its next start", () =>
    withScheduler({ resumeOnRetry: true, sessions: { "a-1.trigger": { agent: "a", session_id: "sess-old", attempt: 1, updated_at: "1970-01-01T00:00:00Z" } } }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        const run = yield* s.next
        expect(run.request.args.slice(0, 2)).toEqual(["--resume", "sess-old"])
      })))
})

describe("AGENT_MAX_TURNS", () => {
  it.scoped("an agent past its turn limit is stopped as budget, and not retried (a retry would get as many turns again)", () =>
    withScheduler({ maxRetries: 3, agentMaxTurns: 2 }, (s) =>
      Effect.gen(function*() {
        yield* s.add("a-1", t("a"))
        const run = yield* s.next
        yield* run.output(turn("m1") + turn("m2"))
        yield* eventually("two turns in the slot", s.slots, (slots) => slots["a"]?.turns === 2)
        expect(yield* s.outcomes).toEqual([])
        yield* run.output(turn("m3"))
        // Progress reaches the attempt at most once a second.
        yield* TestClock.adjust("1 second")
        const [outcome] = yield* s.outcomesAt(1)
        expect(outcome!.completion.meta).toMatchObject({ failure_kind: "budget", attempts: 1 })
        expect(yield* s.startedCount).toBe(1)
        expect((yield* s.history)[0]!.outcome).toBe("budget")
        expect(readText(run.log)).toContain("Turns: 3, over the limit of 2\nSignal: SIGTERM\n")
      })))
})
