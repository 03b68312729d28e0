#!/usr/bin/env node
/** The only entry point: runs the CLI and turns errors into one line on stderr and an exit code. */
import { ValidationError } from "@effect/cli"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Console, Effect, Exit, HashMap, Layer, Logger, LogLevel } from "effect"
import { helpFirst } from "./cli/argv.js"
import { run } from "./cli/Cli.js"
import { terminalConsole } from "./cli/colour.js"
import * as Platform from "./platform/Platform.js"

// `starforge daemon logs | head` closes our stdout early: that is the reader's choice, not an error.
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code === "EPIPE") process.exit(0)
})

const fail = (message: string, code: number) =>
  Effect.sync(() => {
    process.stderr.write(`starforge: ${message}\n`)
    process.exitCode = code
  })

/**
 * Warnings and errors logged through Effect (a state file that cannot be written, …), one
 * `starforge: …` line each on stderr. The daemon's own events (annotated `event`) are not repeated:
 * they are in its log, and a foreground daemon echoes them.
 */
const stderrLogger = Logger.make(({ annotations, message }) => {
  if (HashMap.has(annotations, "event")) return
  process.stderr.write(`starforge: ${(Array.isArray(message) ? message : [message]).map(String).join(" ")}\n`)
})

// Help and usage errors without colour when piped or under NO_COLOR (see colour.ts).
Console.consoleWith((base) => Effect.withConsole(run([...helpFirst(process.argv)]), terminalConsole(base))).pipe(
  Effect.catchIf(ValidationError.isValidationError, () => Effect.sync(() => {
    // @effect/cli has already printed what was wrong and the usage.
    process.exitCode = 2
  })),
  Effect.catchTags({
    ExitWith: (e) => Effect.sync(() => void (process.exitCode = e.code)),
    UsageError: (e) => fail(e.message, e.exitCode),
    ConfigInvalid: (e) => fail(e.message, 1),
    StorageError: (e) => fail(e.message, 1)
  }),
  Effect.catchAllCause((cause) => {
    if (Cause.isInterruptedOnly(cause)) return Effect.void
    // A bug of ours, not the user's: one line, no stack trace.
    const error = Cause.squash(cause)
    return fail(`unexpected error: ${error instanceof Error ? error.message : String(error)}`, 70)
  }),
  // The daemon writes its own log: Effect's default logger would repeat every event on stdout. Only
  // warnings and errors reach the loggers, so the daemon builds no log entry for its other events.
  Effect.provide(Layer.mergeAll(NodeContext.layer, Platform.layer, Logger.replace(Logger.defaultLogger, stderrLogger), Logger.minimumLogLevel(LogLevel.Warning))),
  NodeRuntime.runMain({
    disableErrorReporting: true,
    disablePrettyLogger: true,
    // After SIGINT/SIGTERM runMain ends the process with this code: the exit code a command chose
    // on its way out (a foreground daemon stopped by Ctrl-C: 130) rather than always 0.
    teardown: (exit, onExit) =>
      onExit(Exit.isSuccess(exit) ? 0 : Cause.isInterruptedOnly(exit.cause) ? Number(process.exitCode ?? 0) : 1)
  })
)
