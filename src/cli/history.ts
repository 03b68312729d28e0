/** `starforge history [--agent A] [--since ISO] [--json]`: the finished attempts, oldest first. */
import * as path from "node:path"
import { Command, Options } from "@effect/cli"
import { Console, Effect, Option } from "effect"
import { readHistory } from "../state/History.js"
import { UsageError } from "../domain/errors.js"
import { formatDuration } from "../domain/time.js"
import { isValidAgentName } from "../domain/Trigger.js"
import { formatCost } from "../stream/StreamJson.js"
import { formatBytes, formatCpuSeconds } from "./progress.js"
import { jsonOption, printJson, projectOption, resolveProject, table } from "./shared.js"

const ISO_DATE = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/

/** `--since`: an ISO-8601 date or time; a time without an offset is UTC. */
export const parseSince = (text: string): number | undefined => {
  const m = ISO_DATE.exec(text.trim())
  if (!m) return undefined
  const withZone = text.includes("T") || text.includes(" ") ? (m[1] ? text.trim() : `${text.trim()}Z`) : text.trim()
  const ms = Date.parse(withZone.replace(" ", "T"))
  return Number.isNaN(ms) ? undefined : ms
}

export const historyCommand = Command.make(
  "history",
  {
    project: projectOption,
    json: jsonOption,
    agent: Options.text("agent").pipe(Options.optional, Options.withDescription("Only the attempts of this agent.")),
    since: Options.text("since").pipe(
      Options.optional,
      Options.withDescription("Only attempts that ended at or after this ISO-8601 time (UTC unless it has an offset), e.g. 2025-10-25T05:00:00Z or 2025-10-25.")
    )
  },
  ({ agent, json, project, since }) =>
    Effect.gen(function*() {
      const paths = yield* resolveProject(project)
      if (Option.isSome(agent) && !isValidAgentName(agent.value)) {
        return yield* new UsageError({ message: `--agent ${JSON.stringify(agent.value)} is not a valid agent name` })
      }
      const sinceMs = Option.isSome(since) ? parseSince(since.value) : undefined
      if (Option.isSome(since) && sinceMs === undefined) {
        return yield* new UsageError({
          message: `--since ${JSON.stringify(since.value)} is not an ISO-8601 time: give one such as 2025-10-25T05:00:00Z or 2025-10-25`
        })
      }
      const entries = readHistory(paths.historyFile, sinceMs === undefined ? {} : { sinceMs })
        .filter((e) => Option.isNone(agent) || e.agent === agent.value)
      if (json) return yield* printJson(entries)
      if (entries.length === 0) return yield* Console.log("No finished attempts")
      yield* Console.log(table(
        ["ENDED", "AGENT", "TRIGGER", "ATTEMPT", "OUTCOME", "EXIT", "TOOK", "COST", "PEAK MEM", "CPU", "RESUMED", "LOG"],
        entries.map((e) => [
          e.end.replace(/\.\d+Z$/, "Z"),
          e.agent,
          e.trigger,
          String(e.attempt),
          e.outcome,
          e.signal ?? (e.exit_code === null ? "-" : String(e.exit_code)),
          formatDuration((Date.parse(e.end) - Date.parse(e.start)) / 1000),
          e.cost_usd === null || e.cost_usd === undefined ? "-" : formatCost(e.cost_usd),
          // Null when no sample was taken; absent in lines written before sampling.
          formatBytes(e.peak_rss_bytes),
          formatCpuSeconds(e.cpu_seconds),
          // The session this attempt resumed; absent in lines written before resuming existed.
          e.resumed_session ?? "-",
          path.relative(paths.root, e.log)
        ])
      ))
    })
).pipe(Command.withDescription("Show the finished attempts (from .claude/daemon/history.jsonl), oldest first."))
