/**
 * The daemon as an Effect program: the layers composed in the order the contract needs.
 *
 *   configuration → platform → single-instance lock + pid file → spawner → daemon log → slots, state,
 *   queue → resource sampling and the effective cap → start-up lines and crash recovery → scheduler →
 *   monitor → front ends (the dashboard, when the CLI starts the daemon with `DASHBOARD_ADDRESS` set) → ready
 *
 * Interrupting the program (SIGTERM/SIGINT through the CLI, or an embedding program closing its
 * scope) is the graceful shutdown: the layers are released in reverse order, so the jobs are
 * stopped and requeued first and the pid file is removed last.
 *
 * ```ts
 * import { Daemon } from "starforge"
 * import { NodeRuntime } from "@effect/platform-node"
 * Daemon.run({ project: "/path/to/project" }).pipe(NodeRuntime.runMain)
 * // Own agent runner and queue; the configuration is still loaded for the project:
 * Daemon.run({ project: "/path/to/project" }, { spawner: mySpawner, queue: myQueue })
 * ```
 */
import * as fs from "node:fs"
import { Context, Effect, Either, FiberRef, Layer, Tracer } from "effect"
import { DaemonConfig, type LoadOptions } from "../config/DaemonConfig.js"
import { type ConfigInvalid, StorageError } from "../domain/errors.js"
import { daemonDirectories } from "../domain/ProjectPaths.js"
import { formatMegabytes, formatSeconds } from "../domain/Outcome.js"
import * as LogMaintenance from "../monitor/LogMaintenance.js"
import * as Housekeeping from "../monitor/Housekeeping.js"
import * as Recovery from "../monitor/Recovery.js"
import * as Leftovers from "../process/Leftovers.js"
import { Spawner } from "../process/Spawner.js"
import type { InstanceLock } from "../platform/InstanceLock.js"
import type { MachineState } from "../platform/MachineState.js"
import type { ProcessTable } from "../platform/ProcessTable.js"
import * as Capacity from "../resources/Capacity.js"
import * as ResourceMonitor from "../resources/ResourceMonitor.js"
import * as FileTriggerQueue from "../queue/FileTriggerQueue.js"
import type { TriggerQueue } from "../queue/TriggerQueue.js"
import { AgentSlots } from "../slots/AgentSlots.js"
import * as Platform from "../platform/Platform.js"
import { DaemonInstance, type Hello } from "./DaemonInstance.js"
import { DaemonLog } from "../observability/DaemonLog.js"
import { DaemonState } from "../state/DaemonState.js"
import { History } from "../state/History.js"
import { Sessions } from "../state/Sessions.js"
import { Usage } from "../state/Usage.js"
import { Notifier } from "../notify/Notifier.js"
import * as Scheduler from "../scheduler/Scheduler.js"
import * as Telemetry from "../observability/Telemetry.js"
import { Worktrees } from "../workspace/Worktrees.js"

export interface DaemonOptions extends LoadOptions {
  /** Copy every daemon-log line to stderr (foreground mode). */
  readonly echo?: boolean
  /** Called once the daemon takes triggers. */
  readonly onReady?: (hello: Hello) => Effect.Effect<void>
}

/**
 * The daemon's replaceable parts; each one left out is the real one. Error types are the
 * caller's own and show up in the daemon's error type.
 */
/** What a front end served with the daemon (`DaemonServices.frontEnd`) may use. */
export type FrontEndContext = DaemonConfig | InstanceLock | DaemonInstance | DaemonLog | AgentSlots | History | Scheduler.Scheduler

export interface DaemonServices<EA = never, EQ = never, EC = never> {
  /**
   * The process table and the instance lock. Default: the machine's (`Platform.layer`: Linux or
   * POSIX); `ProcessTable.empty` and `InstanceLock.memory` are the test doubles.
   */
  readonly platform?: Layer.Layer<ProcessTable | InstanceLock>
  /** The machine's load and memory, for dynamic scaling. Default: the machine's (`Platform.machine`); `MachineState.fake` is the test double. */
  readonly machine?: Layer.Layer<MachineState>
  /** Starts the agents. Default: child processes of the daemon (`Spawner.direct`). */
  readonly spawner?: Layer.Layer<Spawner, EA, DaemonConfig | ProcessTable>
  /** Where triggers come from and go to. Default: the project's trigger directory (`FileTriggerQueue.layer`). */
  readonly queue?: Layer.Layer<TriggerQueue, EQ, DaemonConfig | DaemonLog>
  /**
   * The configuration, e.g. `DaemonConfig.layerSettings(project, settings)`. Default: loaded for
   * `options.project` from its flags, environment, `.env` and `daemon.conf` (`DaemonConfig.layer`).
   */
  readonly config?: Layer.Layer<DaemonConfig, EC>
  /**
   * Served with the daemon: built once it runs and released first. `daemon start` gives the
   * dashboard (`Dashboard.layer`, which serves only when `DASHBOARD_ADDRESS` is set). Default: none.
   */
  readonly frontEnd?: Layer.Layer<never, ConfigInvalid | StorageError, FrontEndContext>
}

/** Start-up lines, then recovery, before any trigger is taken. */
const startUp = Effect.gen(function*() {
  const { paths, settings, warnings } = yield* DaemonConfig
  const log = yield* DaemonLog
  const instance = yield* DaemonInstance
  const spawner = yield* Spawner
  yield* log.event("START", `Daemon started (PID: ${instance.pid}) for ${paths.root}`)
  yield* log.event(
    "MODE",
    settings.parallel ? `Parallel execution enabled (max concurrent: ${settings.maxConcurrent})` : "Sequential execution"
  )
  yield* log.event(
    "CONFIG",
    `agent command: ${settings.agentCommand.join(" ")}; timeout ${formatSeconds(settings.agentTimeoutMs / 1000)}, ` +
      `kill grace ${formatSeconds(settings.killGraceMs / 1000)}, ${settings.maxRetries} attempts, first retry after ` +
      `${formatSeconds(settings.initialRetryDelayMs / 1000)}, monitor every ${formatSeconds(settings.monitorIntervalMs / 1000)}, ` +
      `orchestrator ${settings.orchestratorIntervalMs > 0 ? `every ${formatSeconds(settings.orchestratorIntervalMs / 1000)}` : "disabled"}, ` +
      `spawner ${spawner.name ?? "custom"}`
  )
  const limits = Capacity.limitsOf(settings)
  yield* log.event(
    "CONFIG",
    `resources: ${settings.resourceSampleIntervalMs > 0 ? `sampled every ${formatSeconds(settings.resourceSampleIntervalMs / 1000)}` : "not sampled"}, ` +
      `memory limit ${settings.agentMaxMemoryBytes > 0 ? formatMegabytes(settings.agentMaxMemoryBytes) : "none"}; ` +
      (Capacity.scales(limits)
        ? `dynamic scaling between ${limits.min} and ${limits.hard} agents (` +
          [
            ...(limits.maxLoad > 0 ? [`SCALE_MAX_LOAD ${limits.maxLoad} per core`] : []),
            ...(limits.minFreeBytes > 0 ? [`SCALE_MIN_FREE_MEMORY_MB ${formatMegabytes(limits.minFreeBytes)}`] : [])
          ].join(", ") + `, at most one change every ${formatSeconds(limits.intervalMs / 1000)})`
        : "no dynamic scaling")
  )
  if (settings.agentWorktrees === "auto") {
    yield* log.event("CONFIG", `worktrees: made on demand with git worktree add; when one cannot be made the agent ${settings.worktreeFailure === "root" ? "runs in the project root" : "does not start"}`)
  }
  const { agents } = yield* DaemonConfig
  const budgets = [
    ...(settings.dailyBudgetUsd > 0 ? [`$${settings.dailyBudgetUsd} a day for all agents`] : []),
    ...Object.entries(settings.agentBudgetsUsd).map(([agent, usd]) => `$${usd} a day for ${agent}`)
  ]
  yield* log.event(
    "CONFIG",
    `sessions ${settings.resumeOnRetry ? "resumed on retry" : "not resumed on retry"}; ` +
      `turn limit ${settings.agentMaxTurns > 0 ? settings.agentMaxTurns : "none"}; budget ${budgets.length > 0 ? budgets.join(", ") : "none"}` +
      (agents.size > 0 ? `; own settings for ${[...agents.keys()].join(", ")}` : "")
  )
  for (const warning of warnings) yield* log.event("WARN", warning)
  yield* Recovery.recover
}).pipe(Effect.withSpan("Daemon.start"))

const directories = Layer.effectDiscard(
  Effect.flatMap(DaemonConfig, ({ paths }) =>
    Effect.forEach(daemonDirectories(paths), (dir) =>
      Effect.try({
        try: () => fs.mkdirSync(dir, { recursive: true }),
        catch: (cause) => new StorageError({ operation: "creating", path: dir, cause })
      })))
)

/**
 * Builds `layer` with no current span. Effect's tracer logger adds every log line to the current
 * span as an event: the daemon's fibers live as long as it does, so under a caller's span (or one
 * of ours) every event it ever logged would be kept. Their work has spans of its own.
 */
const withoutCurrentSpan = <A, E, R>(layer: Layer.Layer<A, E, R>) =>
  Layer.locallyWith(layer, FiberRef.currentContext, Context.omit(Tracer.ParentSpan))

/**
 * Every layer of a running daemon for one project. `services` replaces the agent runner, the
 * queue or the configuration (see `DaemonServices`); the rest is always the daemon's own.
 */
export const layer = <EA = never, EQ = never, EC = never>(options: DaemonOptions, services: DaemonServices<EA, EQ, EC> = {}) => {
  const core = Layer.mergeAll(AgentSlots.layer, DaemonState.layer, services.queue ?? FileTriggerQueue.layer, History.layer, Usage.layer, Sessions.layer, Notifier.layer)
  const ready = Layer.effectDiscard(
    Effect.gen(function*() {
      const instance = yield* DaemonInstance
      const log = yield* DaemonLog
      yield* log.event("START", "Ready to take triggers")
      if (options.onReady) yield* options.onReady(instance)
    })
  )
  return ready.pipe(
    // Built last and released first: its event streams end before the jobs are stopped.
    Layer.provideMerge(services.frontEnd ?? Layer.empty),
    Layer.provideMerge(Housekeeping.layer),
    Layer.provideMerge(LogMaintenance.layer),
    Layer.provideMerge(Scheduler.layer),
    Layer.provideMerge(Layer.scopedDiscard(
      // Released after the scheduler: by then every job is stopped and requeued.
      Effect.zipRight(startUp, Effect.addFinalizer(() => Effect.flatMap(DaemonLog, (log) => log.event("STOP", "All agents stopped; state saved"))))
    )),
    Layer.provideMerge(Layer.mergeAll(ResourceMonitor.layer, Capacity.layer, Leftovers.layer, Worktrees.layer)),
    Layer.provideMerge(core),
    Layer.provideMerge(DaemonLog.layer({ echo: options.echo ?? false })),
    Layer.provideMerge(directories),
    Layer.provideMerge(services.spawner ?? Spawner.direct),
    Layer.provideMerge(DaemonInstance.layer),
    Layer.provideMerge(configLayer(options, services)),
    Layer.provideMerge(services.platform ?? Platform.layer),
    Layer.provideMerge(services.machine ?? Platform.machine),
    withoutCurrentSpan
  )
}

const configLayer = <EC>(options: DaemonOptions, services: DaemonServices<unknown, unknown, EC>): Layer.Layer<DaemonConfig, EC | ConfigInvalid> =>
  services.config ?? DaemonConfig.layer(options)

/** Logs the shutdown once the program is interrupted. */
const stopLine = Effect.gen(function*() {
  const log = yield* DaemonLog
  yield* log.event("STOP", "Daemon shutting down gracefully")
})

/**
 * Span and metrics export for `OTEL_EXPORTER_OTLP_ENDPOINT` (see `Telemetry`); nothing without it. A bad
 * configuration exports nothing: the daemon's own layers report it.
 */
const telemetry = <EC>(options: DaemonOptions, config: Layer.Layer<DaemonConfig, EC>) =>
  Layer.unwrapEffect(
    Effect.map(Effect.either(Effect.provide(DaemonConfig, config)), (config) =>
      Either.isRight(config)
        ? Telemetry.layer(
          Telemetry.exportSettings(config.right.settings.otlpEndpoint, options.env ?? process.env),
          Telemetry.metricsExportSettings(config.right.settings.otlpEndpoint, options.env ?? process.env)
        )
        : Layer.empty)
  )

/**
 * Runs the daemon until interrupted; fails at start on bad configuration or a running daemon.
 * `services` as for `layer`.
 */
export const run = <EA = never, EQ = never, EC = never>(options: DaemonOptions, services: DaemonServices<EA, EQ, EC> = {}) =>
  Layer.launch(
    Layer.scopedDiscard(Effect.addFinalizer(() => stopLine)).pipe(Layer.provideMerge(layer(options, services)))
  ).pipe(Effect.provide(telemetry(options, configLayer(options, services))))
