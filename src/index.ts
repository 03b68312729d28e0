/**
 * starforge as a library: the daemon as an Effect program and every service it is built from,
 * with its live layer and its test double, so an embedding program can run the daemon as it is
 * (`Daemon.run`), replace its spawner, queue or configuration (`Daemon.layer(options,
 * services)`), or rebuild the graph from its parts.
 *
 * A service whose module has more than the tag (module-level layers, test doubles, helpers) is
 * exported as a namespace, Effect style: `Spawner.Spawner` is the tag,
 * `Spawner.makeFake` its double. The others are the tag itself, with `layer` (and `memory`)
 * as static members.
 */

// The daemon
export * as Daemon from "./daemon/Daemon.js"
// The dashboard and HTTP API: Daemon.run(options, { frontEnd: Dashboard.layer }) serves it when DASHBOARD_ADDRESS is set; where it listens, its token.
export * as Dashboard from "./dashboard/Dashboard.js"
export { DaemonInstance, type Hello } from "./daemon/DaemonInstance.js"

// Configuration: DaemonConfig.layer(options) loads it, DaemonConfig.layerSettings(project, settings) gives it in full.
export { DaemonConfig, type DaemonConfigShape, type DaemonSettings, defaultSettings, type LoadOptions, VARIABLES } from "./config/DaemonConfig.js"

// Observability: DaemonLog.layer({ echo }) / DaemonLog.memory.
export { DaemonLog, type DaemonLogShape, type EventContext, type EventLevel, type LogEvent } from "./observability/DaemonLog.js"

// The daemon's records: each with `layer` (the project's files) and `memory` (tests).
export { DaemonState, type DaemonStateShape } from "./state/DaemonState.js"
export { History, type HistoryEntry, type HistoryOutcome, type HistoryShape } from "./state/History.js"
export { Usage, type UsageShape } from "./state/Usage.js"
export { type SessionRecord, Sessions, type SessionsShape } from "./state/Sessions.js"
export { Notifier, type NotifierShape, type NotifyEvent, type NotifyKind } from "./notify/Notifier.js"
// AgentSlots.AgentSlots: AgentSlots.AgentSlots.layer / .memory(initial).
export * as AgentSlots from "./slots/AgentSlots.js"

// Running agents: Spawner.Spawner (tag, `.direct`: child processes; its handle is a scoped resource),
// Spawner.makeFake (tests); AgentRun.start (one attempt into its log); KillLadder (SIGTERM, then SIGKILL).
export * as Spawner from "./process/Spawner.js"
export * as AgentRun from "./process/AgentRun.js"
export * as KillLadder from "./process/KillLadder.js"

// The platform: Platform.layer picks Linux (/proc, abstract socket) or POSIX (ps, socket file).
export * as Platform from "./platform/Platform.js"
export {
  type AgentLeader,
  type Identity,
  type ProcessEntry,
  ProcessTable,
  type ProcessTableShape,
  type ProcessUsage,
  type TreeUsage
} from "./platform/ProcessTable.js"
export { InstanceLock, LockHeld } from "./platform/InstanceLock.js"
export { idleMachine, type MachineReading, MachineState, type MachineStateShape } from "./platform/MachineState.js"
// Resources: each running agent's CPU and memory, and the effective cap of dynamic scaling.
export * as ResourceMonitor from "./resources/ResourceMonitor.js"
export * as Capacity from "./resources/Capacity.js"
// Worktrees.Worktrees: where each agent runs (its git worktree, made on demand with AGENT_WORKTREES=auto); .existing / .fake.
export * as Worktrees from "./workspace/Worktrees.js"

// Triggers: TriggerQueue.TriggerQueue (tag), TriggerQueue.makeMemory (in memory); FileTriggerQueue.layer (the trigger directory).
export * as TriggerQueue from "./queue/TriggerQueue.js"
export * as FileTriggerQueue from "./queue/FileTriggerQueue.js"

// Scheduling and upkeep: Scheduler.layer, Recovery.recover, Housekeeping.layer, LogMaintenance.layer.
export * as Scheduler from "./scheduler/Scheduler.js"
export * as Recovery from "./monitor/Recovery.js"
export * as Housekeeping from "./monitor/Housekeeping.js"
export * as LogMaintenance from "./monitor/LogMaintenance.js"

// The domain
export * as Trigger from "./domain/Trigger.js"
export * from "./domain/errors.js"
export * from "./domain/Outcome.js"
export * from "./domain/Slot.js"
export * from "./domain/ProjectPaths.js"
