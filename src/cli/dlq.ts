/** `starforge dlq list|show|retry|purge`: the dead-letter queue (contract §1, §3). */
import * as fs from "node:fs"
import * as path from "node:path"
import { Args, Command, Options } from "@effect/cli"
import { Console, Effect, Option } from "effect"
import { UsageError } from "../domain/errors.js"
import type { ProjectPaths } from "../domain/ProjectPaths.js"
import { archiveStamp, isoSeconds } from "../domain/time.js"
import { moveNoClobber } from "../queue/triggerFiles.js"
import { jsonOption, printJson, projectOption, resolveProject, table } from "./shared.js"

export interface Entry {
  readonly name: string
  readonly file: string
  readonly meta: Record<string, unknown> | undefined
}

const readMeta = (file: string): Record<string, unknown> | undefined => {
  try {
    const parsed: unknown = JSON.parse(fs.readFileSync(`${file}.meta.json`, "utf8"))
    return parsed !== null && typeof parsed === "object" ? (parsed as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}

export const entries = (paths: ProjectPaths): ReadonlyArray<Entry> => {
  let names: Array<string>
  try {
    names = fs.readdirSync(paths.deadLetter).filter((n) => n.endsWith(".trigger")).sort()
  } catch {
    return []
  }
  return names.map((name) => {
    const file = path.join(paths.deadLetter, name)
    return { name, file, meta: readMeta(file) }
  })
}

/** `dlq list --json`: one object per entry, its name and its meta's fields. */
export const listJson = (paths: ProjectPaths) => entries(paths).map((e) => ({ name: e.name, ...(e.meta ?? {}) }))

/** NAME is `X.trigger` or its stem `X`, never a path. */
export const findEntry = (paths: ProjectPaths, name: string) =>
  Effect.gen(function*() {
    if (name.includes("/") || name.includes("\0") || name === "." || name === "..") {
      return yield* new UsageError({ message: `${JSON.stringify(name)} is not a dead-letter entry name: use the file name shown by 'starforge dlq list'` })
    }
    const fileName = name.endsWith(".trigger") ? name : `${name}.trigger`
    const file = path.join(paths.deadLetter, fileName)
    if (!fs.existsSync(file)) {
      return yield* new UsageError({ message: `No dead-letter entry named ${fileName}: see 'starforge dlq list'` })
    }
    return { name: fileName, file, meta: readMeta(file) } satisfies Entry
  })

const field = (meta: Record<string, unknown> | undefined, key: string) => {
  const value = meta?.[key]
  return value === undefined || value === null ? "-" : String(value)
}

const list = Command.make("list", { project: projectOption, json: jsonOption }, ({ json, project }) =>
  Effect.gen(function*() {
    const paths = yield* resolveProject(project)
    const all = entries(paths)
    if (json) return yield* printJson(listJson(paths))
    if (all.length === 0) return yield* Console.log("Dead letter queue is empty")
    yield* Console.log(`Dead letter queue (${all.length} trigger${all.length === 1 ? "" : "s"}):\n`)
    yield* Console.log(table(
      ["TRIGGER", "AGENT", "TRACE ID", "ATTEMPTS", "EXIT", "ENTERED", "REASON"],
      all.map((e) => [
        e.name,
        field(e.meta, "agent"),
        field(e.meta, "trace_id"),
        field(e.meta, "attempts"),
        e.meta?.["signal"] ? String(e.meta["signal"]) : field(e.meta, "exit_code"),
        field(e.meta, "dlq_entry_timestamp"),
        e.meta ? field(e.meta, "failure_reason") : "(no metadata)"
      ])
    ))
    yield* Console.log(`\nRetry: starforge dlq retry <TRIGGER>    Remove: starforge dlq purge [--older-than DAYS]`)
  })).pipe(Command.withDescription("List the triggers that failed every attempt."))

const nameArg = Args.text({ name: "NAME" }).pipe(Args.withDescription("The entry's file name X.trigger (or X)."))

const show = Command.make("show", { project: projectOption, name: nameArg }, ({ name, project }) =>
  Effect.gen(function*() {
    const entry = yield* findEntry(yield* resolveProject(project), name)
    const content = yield* Effect.try({
      try: () => fs.readFileSync(entry.file, "utf8"),
      catch: (e) => new UsageError({ message: `Cannot read ${entry.file}: ${(e as Error).message}` })
    })
    yield* Console.log(`Trigger: ${entry.file}`)
    yield* Console.log(content.trimEnd())
    yield* Console.log(`\nFailure (${entry.file}.meta.json):`)
    yield* Console.log(entry.meta ? JSON.stringify(entry.meta, null, 2) : "(no metadata)")
  })).pipe(Command.withDescription("Show a dead-letter entry: the trigger and why it failed."))

/** Moves an entry back to the queue (its meta kept aside with the retry's time); returns the trigger's new path. */
export const retryEntry = (paths: ProjectPaths, entry: Entry) =>
  Effect.try({
    try: () => {
      const to = moveNoClobber(entry.file, paths.triggers, entry.name)
      // The failure record is kept, with the time of the manual retry, out of the listing.
      if (fs.existsSync(`${entry.file}.meta.json`)) {
        const retried = path.join(paths.deadLetter, "retried")
        const metaTo = moveNoClobber(`${entry.file}.meta.json`, retried, `${archiveStamp(Date.now())}-${entry.name}.meta.json`)
        fs.writeFileSync(metaTo, JSON.stringify({ ...(entry.meta ?? {}), manual_retry_timestamp: isoSeconds(Date.now()) }, null, 2) + "\n")
      }
      return to
    },
    catch: (e) => new UsageError({ message: `Cannot move ${entry.file} back to the queue: ${(e as Error).message}` })
  })

/** Deletes an entry and its meta file. */
export const removeEntry = (entry: Entry) =>
  Effect.try({
    try: () => {
      fs.rmSync(entry.file, { force: true, recursive: true })
      fs.rmSync(`${entry.file}.meta.json`, { force: true })
    },
    catch: (e) => new UsageError({ message: `Cannot remove ${entry.file}: ${(e as Error).message}` })
  })

const retry = Command.make("retry", { project: projectOption, name: nameArg }, ({ name, project }) =>
  Effect.gen(function*() {
    const paths = yield* resolveProject(project)
    const target = yield* retryEntry(paths, yield* findEntry(paths, name))
    yield* Console.log(`Trigger moved back to the queue: ${target}`)
    yield* Console.log("It runs again with fresh attempts when its agent is free.")
  })).pipe(Command.withDescription("Move an entry back to the queue, where it runs again with fresh attempts."))

const purge = Command.make(
  "purge",
  {
    project: projectOption,
    olderThan: Options.integer("older-than").pipe(
      Options.optional,
      Options.withDescription("Only entries that entered the queue more than DAYS days ago.")
    )
  },
  ({ olderThan, project }) =>
    Effect.gen(function*() {
      const paths = yield* resolveProject(project)
      if (Option.isSome(olderThan) && olderThan.value < 0) {
        return yield* new UsageError({ message: "--older-than takes a number of days, 0 or more" })
      }
      const cutoff = Option.map(olderThan, (days) => Date.now() - days * 86_400_000)
      let purged = 0
      for (const entry of entries(paths)) {
        const entered = yield* Effect.try({
          try: () => Date.parse(String(entry.meta?.["dlq_entry_timestamp"] ?? "")) || fs.lstatSync(entry.file).mtimeMs,
          catch: (e) => new UsageError({ message: `Cannot remove ${entry.file}: ${(e as Error).message}` })
        })
        if (Option.isSome(cutoff) && entered > cutoff.value) continue
        yield* removeEntry(entry)
        purged++
      }
      yield* Console.log(`Purged ${purged} dead-letter entr${purged === 1 ? "y" : "ies"}`)
    })
).pipe(Command.withDescription("Delete dead-letter entries (all, or those older than --older-than DAYS)."))

export const dlqCommand = Command.make("dlq").pipe(
  Command.withDescription("The dead-letter queue: triggers that failed every attempt."),
  Command.withSubcommands([list, show, retry, purge])
)
