/** `starforge trigger create` (contract §1, §3). */
import { Command, Options } from "@effect/cli"
import { Clock, Console, Effect, Either, Option } from "effect"
import { UsageError } from "../domain/errors.js"
import type { ProjectPaths } from "../domain/ProjectPaths.js"
import { isoSeconds } from "../domain/time.js"
import { makeTraceId, parseTrigger, promptProblem } from "../domain/Trigger.js"
import { writeNewTrigger } from "../queue/triggerFiles.js"
import { projectOption, resolveProject } from "./shared.js"

/** What a new trigger is made of (the options of `trigger create`, or the dashboard's form). */
export interface NewTrigger {
  readonly to: string
  readonly action: string
  readonly from: string
  readonly message?: string | undefined
  readonly command?: string | undefined
  readonly ticket?: string | undefined
  readonly context: Record<string, unknown>
  readonly priority?: string | undefined
}

/**
 * Builds the trigger's JSON and checks it as the daemon will (so a created trigger is never
 * invalid), then writes it into the queue atomically; returns its path.
 */
export const createTrigger = (paths: ProjectPaths, input: NewTrigger) =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const context = input.ticket === undefined ? input.context : { ...input.context, ticket: input.ticket }
    const content: Record<string, unknown> = {
      trace_id: makeTraceId(now),
      from_agent: input.from,
      to_agent: input.to,
      action: input.action,
      ...(input.message === undefined ? {} : { message: input.message }),
      ...(input.command === undefined ? {} : { command: input.command }),
      context,
      ...(input.priority === undefined ? {} : { priority: input.priority }),
      timestamp: isoSeconds(now)
    }
    const checked = parseTrigger(Buffer.from(JSON.stringify(content)))
    if (Either.isLeft(checked)) return yield* new UsageError({ message: `Invalid trigger: ${checked.left.reason}` })
    const tooLong = promptProblem(checked.right, `${paths.triggers}/${"x".repeat(120)}.processing`)
    if (tooLong) return yield* new UsageError({ message: `Invalid trigger: ${tooLong}` })
    return yield* Effect.try({
      try: () => writeNewTrigger(paths, content, now),
      catch: (e) => new UsageError({ message: `Cannot write the trigger in ${paths.triggers}: ${(e as Error).message}` })
    })
  })

const text = (name: string, description: string) =>
  Options.text(name).pipe(Options.optional, Options.withDescription(description))

const create = Command.make(
  "create",
  {
    project: projectOption,
    to: Options.text("to").pipe(Options.withDescription("The agent that runs the trigger (to_agent).")),
    action: Options.text("action").pipe(Options.withDescription("What the agent should do, e.g. implement_ticket.")),
    from: text("from", "Who asks (from_agent). Default: $STARFORGE_AGENT_ID or 'user'."),
    message: text("message", "Free text for the agent."),
    ticket: text("ticket", "The ticket (stored as context.ticket)."),
    context: text("context", "A JSON object with more context, e.g. '{\"pr\": 161}'."),
    command: text("command", "An instruction line for the agent."),
    // Checked with the trigger's other fields below, so a bad value gets a message naming priority.
    priority: text("priority", "Queue priority: high, normal or low (default normal).")
  },
  (o) =>
    Effect.gen(function*() {
      const paths = yield* resolveProject(o.project)
      let context: Record<string, unknown> = {}
      if (Option.isSome(o.context)) {
        let parsed: unknown
        try {
          parsed = JSON.parse(o.context.value)
        } catch (e) {
          return yield* new UsageError({ message: `--context is not valid JSON (${(e as Error).message}): pass an object such as '{"pr": 161}'` })
        }
        if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
          return yield* new UsageError({ message: `--context must be a JSON object such as '{"pr": 161}'` })
        }
        context = parsed as Record<string, unknown>
      }
      const file = yield* createTrigger(paths, {
        to: o.to,
        action: o.action,
        from: Option.getOrElse(o.from, () => process.env["STARFORGE_AGENT_ID"] || "user"),
        message: Option.getOrUndefined(o.message),
        command: Option.getOrUndefined(o.command),
        ticket: Option.getOrUndefined(o.ticket),
        context,
        priority: Option.getOrUndefined(o.priority)
      })
      yield* Console.log(file)
    })
).pipe(Command.withDescription("Write a valid trigger into the queue atomically and print its path."))

export const triggerCommand = Command.make("trigger").pipe(
  Command.withDescription("Create triggers."),
  Command.withSubcommands([create])
)
