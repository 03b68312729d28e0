#!/usr/bin/env node
/** The only entry point: runs the CLI and turns errors into one line on stderr and an exit code. */
import { ValidationError } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Cause, Effect, Layer, Logger } from "effect"
import { helpFirst } from "./cli/argv.js"
import { run } from "./cli/Cli.js"

const fail = (message: string, code: number) =>
  Effect.sync(() => {
    process.stderr.write(`starforge: ${message}\n`)
    process.exitCode = code
  })

run([...helpFirst(process.argv)]).pipe(
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
  Effect.catchAllCause((cause) =>
    Cause.isInterruptedOnly(cause) ? Effect.void : fail(`unexpected error: ${Cause.pretty(cause)}`, 70)
  ),
  // The daemon writes its own log; Effect's default logger would repeat every event on stdout.
  Effect.provide(Layer.merge(NodeContext.layer, Logger.remove(Logger.defaultLogger))),
  NodeRuntime.runMain({ disableErrorReporting: true, disablePrettyLogger: true })
)
