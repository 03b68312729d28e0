/**
 * The scheduler against fake layers: an in-memory queue, in-memory slots and the fake spawner,
 * whose processes write and exit when the test says so, all under the TestClock. The attempts
 * write their agents' logs for real, into a temporary project.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Context, Effect, ExecutionStrategy, Exit, Layer, Scope } from "effect"
import { DaemonConfig, type DaemonSettings } from "../../src/config/DaemonConfig.js"
import type { SlotTable } from "../../src/domain/Slot.js"
import { projectPaths } from "../../src/domain/ProjectPaths.js"
import type { Trigger } from "../../src/domain/Trigger.js"
import { Notifier, type NotifyEvent } from "../../src/notify/Notifier.js"
import { DaemonLog } from "../../src/observability/DaemonLog.js"
import type { MachineState } from "../../src/platform/MachineState.js"
import { type FakeProcess, makeFake, SpawnError, Spawner } from "../../src/process/Spawner.js"
import { type DeadLetterMeta, makeMemory } from "../../src/queue/TriggerQueue.js"
import * as Scheduler from "../../src/scheduler/Scheduler.js"
import { AgentSlots } from "../../src/slots/AgentSlots.js"
import { DaemonState } from "../../src/state/DaemonState.js"
import { type HistoryEntry, History } from "../../src/state/History.js"
import { Sessions } from "../../src/state/Sessions.js"
import { Usage, type UsageFile } from "../../src/state/Usage.js"
import { eventually, eventuallyTake } from "./eventually.js"
import { resourceLayers } from "./resources.js"

export const base: Partial<DaemonSettings> = {
  parallel: true,
  maxConcurrent: 999,
  agentTimeoutMs: 60_000,
  killGraceMs: 1_000,
  maxRetries: 3,
  initialRetryDelayMs: 5_000,
  agentCommand: ["agent"],
  // Sampling is tested on its own (test/resources); its timer would only slow the clock here.
  resourceSampleIntervalMs: 0
}

export const t = (agent: string, extra: Partial<Trigger> = {}): Trigger => ({ to_agent: agent, action: "work", ...extra })

/** A started process of the fake, with what its attempt wrote at the top of its log. */
export interface Run extends FakeProcess {
  /** The trigger's name, from `STARFORGE_TRIGGER_FILE`. */
  readonly trigger: string
  readonly attempt: string
  readonly log: string
  /** The log's header, read from disk (`Agent:`, `Trigger:`, `Started:`, `Attempt:` lines). */
  readonly header: string
}

export type Outcome = { readonly name: string; readonly completion: { readonly _tag: string; readonly meta?: DeadLetterMeta } }

/** A temporary project with its logs directory; removed with the test's scope. */
const tempProject = Effect.acquireRelease(
  Effect.sync(() => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-scheduler-"))
    fs.mkdirSync(projectPaths(root).logs, { recursive: true })
    return projectPaths(root)
  }),
  (paths) => Effect.sync(() => fs.rmSync(paths.root, { recursive: true, force: true }))
)

export const readText = (file: string) => fs.readFileSync(file, "utf8")

/** Builds the scheduler over fakes; the test body runs with the scheduler's scope open. */
export const withScheduler = <A, E>(
  settings: Partial<DaemonSettings> & {
    /** Every spawn fails with this message (the command cannot start). */
    readonly spawnError?: string
    /** The machine dynamic scaling looks at (default: a quiet one). */
    readonly machine?: Layer.Layer<MachineState>
    /** Agents (by name) with settings of their own. */
    readonly agents?: Readonly<Record<string, Partial<DaemonSettings>>>
    /** What `usage.json` held at start (costs of the day, pauses). */
    readonly usage?: UsageFile
    /** Sessions recorded at start, by trigger file name. */
    readonly sessions?: Parameters<typeof Sessions.memory>[0]
  },
  body: (env: {
    readonly logs: string
    readonly add: (name: string, trigger: Trigger) => Effect.Effect<void>
    /** The next process that starts (its log found on disk). */
    readonly next: Effect.Effect<Run>
    readonly startedCount: Effect.Effect<number>
    readonly outcomes: Effect.Effect<ReadonlyArray<Outcome>>
    /** Until the queue has `count` outcomes. */
    readonly outcomesAt: (count: number) => Effect.Effect<ReadonlyArray<Outcome>>
    readonly requeued: Effect.Effect<ReadonlyArray<string>>
    readonly busy: Effect.Effect<ReadonlyArray<string>>
    readonly slots: Effect.Effect<SlotTable>
    readonly notified: Effect.Effect<ReadonlyArray<NotifyEvent>>
    readonly lines: Effect.Effect<ReadonlyArray<string>>
    /** Until the daemon log has `count` lines containing `text`; returns them. */
    readonly linesWith: (text: string, count?: number) => Effect.Effect<ReadonlyArray<string>>
    readonly history: Effect.Effect<ReadonlyArray<HistoryEntry>>
    readonly close: Effect.Effect<void>
    /** The scheduler service (`waiting`, `jobs`). */
    readonly scheduler: Scheduler.SchedulerShape
    readonly usage: Usage["Type"]
    readonly sessions: Sessions["Type"]
  }) => Effect.Effect<A, E>
) =>
  Effect.gen(function*() {
    const { agents, machine, sessions, spawnError, usage, ...rest } = settings
    const paths = yield* tempProject
    const fake = yield* makeFake
    const queue = yield* makeMemory
    const log = yield* DaemonLog.memory
    const history = yield* History.memory
    const notifier = yield* Notifier.memory
    const spawner = spawnError === undefined
      ? fake.layer
      : Layer.succeed(Spawner, { spawn: () => Effect.fail(new SpawnError({ message: spawnError })) })
    const services = Layer.mergeAll(
      spawner,
      history.layer,
      queue.layer,
      log.layer,
      AgentSlots.memory(),
      DaemonState.memory,
      Usage.memory(rest.usageLimitCooldownMs ?? 300_000, usage),
      Sessions.memory(sessions),
      notifier.layer,
      DaemonConfig.layerSettings(paths.root, { ...base, ...rest }, agents)
    )
    const schedulerScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    const context = yield* Layer.buildWithScope(Layer.provideMerge(Scheduler.layer, Layer.provideMerge(resourceLayers(machine), services)), schedulerScope)
    const slots = Context.get(context, AgentSlots)
    // Each process's log was written before it was spawned: the first log not yet given to a run
    // whose header names its agent, trigger and attempt.
    const given = new Set<string>()
    const next = Effect.gen(function*() {
      const process = yield* eventuallyTake("a process to start", fake.started)
      const trigger = path.basename(process.request.env["STARFORGE_TRIGGER_FILE"] ?? "", ".processing")
      const attempt = process.request.env["STARFORGE_ATTEMPT"] ?? ""
      const lead = `Agent: ${process.agent}\nTrigger: ${trigger}.trigger\n`
      const file = fs.readdirSync(paths.logs).map((name) => path.join(paths.logs, name)).find((file) =>
        !given.has(file) && readText(file).startsWith(lead) && readText(file).includes(`\nAttempt: ${attempt}/`)
      )
      if (file === undefined) return yield* Effect.dieMessage(`no log in ${paths.logs} for ${trigger} attempt ${attempt}`)
      given.add(file)
      return { ...process, trigger, attempt, log: file, header: readText(file).split("\n\n")[0]! } satisfies Run
    })
    const linesWith = (text: string, count = 1) =>
      Effect.map(
        eventually(`${count} daemon log line(s) with "${text}"`, log.lines, (all) => all.filter((l) => l.includes(text)).length >= count),
        (all) => all.filter((l) => l.includes(text))
      )
    return yield* body({
      logs: paths.logs,
      add: (name, trigger) => queue.add(name, trigger),
      next,
      startedCount: Effect.map(fake.runs, (r) => r.length),
      outcomes: queue.outcomes,
      outcomesAt: (count) => eventually(`${count} outcome(s) of the queue`, queue.outcomes, (all) => all.length >= count),
      requeued: queue.requeued,
      busy: slots.listBusy,
      slots: slots.snapshot,
      notified: notifier.events,
      lines: log.lines,
      linesWith,
      history: history.entries,
      close: Scope.close(schedulerScope, Exit.void),
      scheduler: Context.get(context, Scheduler.Scheduler),
      usage: Context.get(context, Usage),
      sessions: Context.get(context, Sessions)
    })
  })

