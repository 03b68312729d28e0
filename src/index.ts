/**
 * starforge as a library: the daemon as an Effect program and its services, for embedding and
 * for tests with fake layers.
 */
export * as Daemon from "./daemon/Daemon.js"
export { DaemonConfig, type DaemonSettings, defaultSettings, VARIABLES } from "./config/DaemonConfig.js"
export { DaemonLog } from "./observability/DaemonLog.js"
export { DaemonState } from "./state/DaemonState.js"
export { DaemonInstance } from "./daemon/DaemonInstance.js"
export * as Scheduler from "./scheduler/Scheduler.js"
export * as Recovery from "./monitor/Recovery.js"
export * as Housekeeping from "./monitor/Housekeeping.js"
export * as AgentProcess from "./process/AgentProcess.js"
export * as TriggerQueue from "./queue/TriggerQueue.js"
export * as FileTriggerQueue from "./queue/FileTriggerQueue.js"
export * as AgentSlots from "./slots/AgentSlots.js"
export * as Trigger from "./domain/Trigger.js"
export * from "./domain/errors.js"
export * from "./domain/Outcome.js"
export * from "./domain/Slot.js"
export * from "./domain/ProjectPaths.js"
