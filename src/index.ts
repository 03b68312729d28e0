/**
 * starforge as a library: the daemon as an Effect program and its services, for embedding and
 * for tests with fake layers.
 */
export * as Daemon from "./daemon/Daemon.js"
export { DaemonConfig, type DaemonSettings, defaultSettings, VARIABLES } from "./config/DaemonConfig.js"
export { DaemonLog } from "./daemon/DaemonLog.js"
export { DaemonState } from "./daemon/DaemonState.js"
export { DaemonInstance } from "./daemon/DaemonInstance.js"
export * as Scheduler from "./daemon/Scheduler.js"
export * as Monitor from "./monitor/Monitor.js"
export * as AgentProcess from "./process/AgentProcess.js"
export * as TriggerQueue from "./queue/TriggerQueue.js"
export * as FileTriggerQueue from "./queue/FileTriggerQueue.js"
export * as AgentSlots from "./slots/AgentSlots.js"
export * as Trigger from "./domain/Trigger.js"
export * from "./domain/errors.js"
export * from "./domain/Outcome.js"
export * from "./domain/Slot.js"
export * from "./domain/ProjectPaths.js"
