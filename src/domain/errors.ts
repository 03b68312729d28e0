/**
 * Errors a user can cause or meet. Each message is one sentence: what is wrong, what to do.
 */
import { Schema } from "effect"

/** A configuration value that cannot be used; names the variable, the value and the expected form. */
export class ConfigInvalid extends Schema.TaggedError<ConfigInvalid>()("ConfigInvalid", {
  message: Schema.String
}) {}

/** A command-line input that cannot be used (bad agent name, bad JSON, unknown DLQ entry...). */
export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", {
  message: Schema.String,
  exitCode: Schema.optionalWith(Schema.Number, { default: () => 1 })
}) {}

/** Another daemon holds the project's single-instance lock. */
export class DaemonAlreadyRunning extends Schema.TaggedError<DaemonAlreadyRunning>()("DaemonAlreadyRunning", {
  pid: Schema.Number
}) {
  override get message() {
    return `Daemon already running (PID: ${this.pid})`
  }
}

/** A file operation of the daemon failed (disk full, permissions...). */
export class StorageError extends Schema.TaggedError<StorageError>()("StorageError", {
  operation: Schema.String,
  path: Schema.String,
  cause: Schema.Unknown
}) {
  override get message() {
    const reason = this.cause instanceof Error ? this.cause.message : String(this.cause)
    return `${this.operation} ${this.path} failed: ${reason}`
  }
}
