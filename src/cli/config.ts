/**
 * `starforge config show [--agent A] [--json]`: the settings a daemon started now would use, each
 * with where it came from (flag, environment, `.env`, `daemon.conf` or default); with `--agent`,
 * as that agent gets them, its own `<VARIABLE>_<AGENT>` values first.
 */
import { Command, Options } from "@effect/cli"
import { Console, Effect, Either, Option } from "effect"
import { explain, load } from "../config/DaemonConfig.js"
import { UsageError } from "../domain/errors.js"
import { isValidAgentName } from "../domain/Trigger.js"
import { flagsOf, setOption } from "./daemon.js"
import { ExitWith, jsonOption, printJson, projectOption, resolveProject, table } from "./shared.js"

const agentOption = Options.text("agent").pipe(
  Options.optional,
  Options.withDescription("Show the settings as this agent gets them (its own <VARIABLE>_<AGENT> values first).")
)

const show = Command.make(
  "show",
  { project: projectOption, json: jsonOption, agent: agentOption, set: setOption },
  ({ agent, json, project, set }) =>
    Effect.gen(function*() {
      const paths = yield* resolveProject(project)
      if (Option.isSome(agent) && !isValidAgentName(agent.value)) {
        return yield* new UsageError({ message: `--agent ${JSON.stringify(agent.value)} is not a valid agent name` })
      }
      const flags = yield* flagsOf({ set, parallel: false })
      const options = { project: paths.root, flags }
      const rows = explain(options, Option.getOrUndefined(agent))
      // The same validation as `daemon start`: a bad value is reported, after what was found.
      const loaded = yield* Effect.either(load(options))
      const error = Either.isLeft(loaded) ? loaded.left.message : null
      if (json) {
        yield* printJson({ project: paths.root, agent: Option.getOrNull(agent), valid: error === null, error, values: rows })
      } else {
        yield* Console.log(Option.isSome(agent) ? `Settings of ${agent.value} in ${paths.root}:\n` : `Settings in ${paths.root}:\n`)
        yield* Console.log(table(
          ["VARIABLE", "VALUE", "SOURCE"],
          rows.map((r) => [r.key, r.value === "" ? "(empty)" : r.value, r.source])
        ))
        if (error !== null) yield* Console.error(`\nstarforge: ${error}`)
      }
      if (error !== null) return yield* new ExitWith({ code: 1 })
    })
).pipe(Command.withDescription(
  "Show the effective settings and where each value came from (flag, environment, .env, daemon.conf, default); exit 1 if one is invalid."
))

export const configCommand = Command.make("config").pipe(
  Command.withDescription("Inspect the configuration."),
  Command.withSubcommands([show])
)
