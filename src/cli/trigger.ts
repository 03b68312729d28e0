/** `starforge trigger create` (contract §1, §3). */
import { Command, Options } from "@effect/cli"
import { Clock, Console, Effect, Either, Option } from "effect"
import { UsageError } from "../domain/errors.js"
import { isoSeconds } from "../domain/time.js"
import { makeTraceId, parseTrigger, promptProblem } from "../domain/Trigger.js"
import { writeNewTrigger } from "../queue/triggerFiles.js"
import { projectOption, resolveProject } from "./shared.js"

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
      if (Option.isSome(o.ticket)) context = { ...context, ticket: o.ticket.value }
      const now = yield* Clock.currentTimeMillis
      const content: Record<string, unknown> = {
        trace_id: makeTraceId(now),
        from_agent: Option.getOrElse(o.from, () => process.env["STARFORGE_AGENT_ID"] || "user"),
        to_agent: o.to,
        action: o.action,
        ...(Option.isSome(o.message) ? { message: o.message.value } : {}),
        ...(Option.isSome(o.command) ? { command: o.command.value } : {}),
        context,
        ...(Option.isSome(o.priority) ? { priority: o.priority.value } : {}),
        timestamp: isoSeconds(now)
      }
      // The same validation the daemon applies, so a created trigger is never invalid.
      const checked = parseTrigger(Buffer.from(JSON.stringify(content)))
      if (Either.isLeft(checked)) return yield* new UsageError({ message: `Invalid trigger: ${checked.left.reason}` })
      const tooLong = promptProblem(checked.right, `${paths.triggers}/${"x".repeat(120)}.processing`)
      if (tooLong) return yield* new UsageError({ message: `Invalid trigger: ${tooLong}` })
      const file = yield* Effect.try({
        try: () => writeNewTrigger(paths, content, now),
        catch: (e) => new UsageError({ message: `Cannot write the trigger in ${paths.triggers}: ${(e as Error).message}` })
      })
      yield* Console.log(file)
    })
).pipe(Command.withDescription("Write a valid trigger into the queue atomically and print its path."))

export const triggerCommand = Command.make("trigger").pipe(
  Command.withDescription("Create triggers."),
  Command.withSubcommands([create])
)
