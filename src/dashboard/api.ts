/**
 * What the dashboard's JSON endpoints answer, in the shapes of the CLI's `--json` output and with
 * the CLI's own functions: `status` (`daemon status --json`), `dlq` (`dlq list --json`), triggers
 * made and validated as `trigger create` makes them. A request that cannot be answered fails with
 * an `ApiError`: its status and a one-line reason.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as zlib from "node:zlib"
import { Data, Effect, Either, ParseResult, Schema } from "effect"
import { findEntry, listJson, removeEntry, retryEntry } from "../cli/dlq.js"
import { parseSince } from "../cli/history.js"
import { newestAgentLog } from "../cli/logs.js"
import { usageFile } from "../cli/progress.js"
import { readStatus } from "../cli/status.js"
import { createTrigger } from "../cli/trigger.js"
import type { ProjectPaths } from "../domain/ProjectPaths.js"
import { isValidAgentName } from "../domain/Trigger.js"
import { readHistory } from "../state/History.js"
import { readUsage } from "../state/Usage.js"
import { type Waiting, whyJson } from "../scheduler/Why.js"

/** A request the API refuses: the HTTP status and a one-line reason. */
export class ApiError extends Data.TaggedError("ApiError")<{ readonly status: number; readonly reason: string }> {}

const badRequest = (reason: string) => new ApiError({ status: 400, reason })
const notFound = (reason: string) => new ApiError({ status: 404, reason })

/** `daemon status --json`. */
export const status = (paths: ProjectPaths) =>
  Effect.map(readStatus(paths), ({ config_error: _ignored, ...rest }) => rest)

/** One pending trigger and why it waits, as `/api/queue` and the `queue` event list them. */
export const queueItem = (w: Waiting) => ({ trigger: w.trigger, agent: w.agent, ticket: w.ticket, attempt: w.attempt, why: whyJson(w.why) })

/** The most entries `/api/history` returns (the last ones). */
const MAX_HISTORY = 10_000

/**
 * The finished attempts, oldest first, with the filters of `starforge history` (`agent`, `since`)
 * and `outcome` and `limit` (the last N).
 */
export const history = (paths: ProjectPaths, query: URLSearchParams) =>
  Effect.gen(function*() {
    const agent = query.get("agent") || undefined
    if (agent !== undefined && !isValidAgentName(agent)) return yield* badRequest(`agent ${JSON.stringify(agent)} is not a valid agent name`)
    const outcome = query.get("outcome") || undefined
    if (outcome !== undefined && !/^[a-z-]{1,32}$/.test(outcome)) return yield* badRequest(`outcome ${JSON.stringify(outcome)} is not an outcome such as success or failed`)
    const since = query.get("since") || undefined
    const sinceMs = since === undefined ? undefined : parseSince(since)
    if (since !== undefined && sinceMs === undefined) {
      return yield* badRequest(`since ${JSON.stringify(since)} is not an ISO-8601 time such as 2025-10-25T05:00:00Z or 2025-10-25`)
    }
    const limit = yield* wholeNumber(query, "limit", MAX_HISTORY, MAX_HISTORY)
    const found = readHistory(paths.historyFile, sinceMs === undefined ? {} : { sinceMs })
      .filter((e) => (agent === undefined || e.agent === agent) && (outcome === undefined || e.outcome === outcome))
    return found.slice(Math.max(0, found.length - limit))
  })

/** A query parameter that must be a whole number from 1 to `max`; `fallback` when absent. */
const wholeNumber = (query: URLSearchParams, name: string, fallback: number, max: number) => {
  const text = query.get(name)
  if (text === null || text === "") return Effect.succeed(fallback)
  const value = Number(text)
  return /^\d+$/.test(text) && value >= 1 && value <= max
    ? Effect.succeed(value)
    : Effect.fail(badRequest(`${name} must be a whole number from 1 to ${max}`))
}

/** `dlq list --json`. */
export const dlqList = (paths: ProjectPaths) => Effect.sync(() => listJson(paths))

/** A dead-letter entry's name as the CLI takes it (`X.trigger` or `X`), never a path: else a 400. */
const entryOf = (paths: ProjectPaths, name: string) =>
  name === "" || name.includes("/") || name.includes("\\") || name.includes("\0") || name.startsWith(".")
    ? Effect.fail(badRequest(`${JSON.stringify(name)} is not a dead-letter entry name: use a name from /api/dlq`))
    : Effect.mapError(findEntry(paths, name), (e) => notFound(e.message))

/** One entry: its trigger (parsed, or its text when it is not JSON) and its failure record. */
export const dlqShow = (paths: ProjectPaths, name: string) =>
  Effect.flatMap(entryOf(paths, name), (entry) =>
    Effect.try({
      try: () => {
        const content = fs.readFileSync(entry.file, "utf8")
        const trigger = Either.getOrNull(Either.try(() => JSON.parse(content) as unknown))
        return { name: entry.name, file: entry.file, trigger, content, meta: entry.meta ?? null }
      },
      catch: (e) => notFound(`cannot read ${entry.name}: ${(e as Error).message}`)
    }))

/** `dlq retry NAME`: back to the queue with fresh attempts. */
export const dlqRetry = (paths: ProjectPaths, name: string) =>
  Effect.flatMap(entryOf(paths, name), (entry) =>
    Effect.map(
      Effect.mapError(retryEntry(paths, entry), (e) => new ApiError({ status: 500, reason: e.message })),
      (file) => ({ retried: entry.name, file })
    ))

/** `dlq purge` of one entry: the entry and its failure record are deleted. */
export const dlqPurge = (paths: ProjectPaths, name: string) =>
  Effect.flatMap(entryOf(paths, name), (entry) =>
    Effect.as(Effect.mapError(removeEntry(entry), (e) => new ApiError({ status: 500, reason: e.message })), { purged: entry.name }))

/** Read from the end of a log for its tail, at most this many bytes. */
const TAIL_BYTES = 512 * 1024
const MAX_LINES = 5_000

/**
 * The last `lines` lines of the agent's newest log in `C/logs/` (also when it is gzipped). The
 * agent name is checked first, so a name is never a path; a log that is not a regular file (a
 * symlink) is not read.
 */
export const logTail = (paths: ProjectPaths, agent: string, query: URLSearchParams) =>
  Effect.gen(function*() {
    if (!isValidAgentName(agent)) return yield* badRequest(`${JSON.stringify(agent)} is not a valid agent name`)
    const lines = yield* wholeNumber(query, "lines", 200, MAX_LINES)
    const newest = newestAgentLog(paths.logs, agent)
    const file = newest === undefined ? undefined : [newest, `${newest}.gz`].find((f) => fs.lstatSync(f, { throwIfNoEntry: false })?.isFile())
    if (file === undefined || path.dirname(file) !== paths.logs) return yield* notFound(`${agent} has no log in ${paths.logs} yet`)
    const unreadable = (e: unknown) => notFound(`cannot read ${path.basename(file)}: ${(e as Error).message}`)
    const text = yield* file.endsWith(".gz")
      ? Effect.tryPromise({ try: () => gzipTailText(file), catch: unreadable })
      : Effect.try({ try: () => tailText(file), catch: unreadable })
    const all = text.split("\n")
    if (all[all.length - 1] === "") all.pop()
    return { agent, file: path.relative(paths.root, file), lines: all.slice(Math.max(0, all.length - lines)) }
  })

/**
 * The end of a gzipped log, from the first whole line of its last `TAIL_BYTES`: decompressed as a
 * stream that keeps only its end (a rotated log may hold `LOG_MAX_SIZE_MB`).
 */
const gzipTailText = async (file: string): Promise<string> => {
  const source = fs.createReadStream(file)
  const gunzip = zlib.createGunzip()
  source.on("error", (e) => gunzip.destroy(e))
  let kept = Buffer.alloc(0)
  let cut = false
  for await (const chunk of source.pipe(gunzip)) {
    kept = Buffer.concat([kept, chunk as Buffer])
    // Trimmed once it holds twice the tail: each byte is copied a bounded number of times.
    if (kept.length > 2 * TAIL_BYTES) [kept, cut] = [kept.subarray(kept.length - TAIL_BYTES), true]
  }
  if (kept.length > TAIL_BYTES) [kept, cut] = [kept.subarray(kept.length - TAIL_BYTES), true]
  const text = kept.toString("utf8")
  return cut ? text.slice(text.indexOf("\n") + 1) : text
}

/** The end of a file, from the first whole line of its last `TAIL_BYTES`. */
const tailText = (file: string): string => {
  const fd = fs.openSync(file, "r")
  try {
    const size = fs.fstatSync(fd).size
    const length = Math.min(size, TAIL_BYTES)
    const buffer = Buffer.alloc(length)
    fs.readSync(fd, buffer, 0, length, size - length)
    const text = buffer.toString("utf8")
    return length < size ? text.slice(text.indexOf("\n") + 1) : text
  } finally {
    fs.closeSync(fd)
  }
}

/** `C/daemon/usage.json`: usage-limit pauses and each agent's cost, tokens and attempts per day. */
export const usage = (paths: ProjectPaths) => Effect.sync(() => readUsage(usageFile(paths)))

/** The body of `POST /api/triggers`: the fields of `trigger create`, named as in the trigger's JSON. */
export const TriggerBody = Schema.Struct({
  to_agent: Schema.String,
  action: Schema.String,
  from_agent: Schema.optional(Schema.String),
  message: Schema.optional(Schema.String),
  command: Schema.optional(Schema.String),
  ticket: Schema.optional(Schema.Union(Schema.String, Schema.Number)),
  context: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown })),
  priority: Schema.optional(Schema.String)
})

const decodeBody = Schema.decodeUnknownEither(TriggerBody, { errors: "first" })

/** The first problem of a Schema failure, on one line: `to_agent: is missing`. */
const firstIssue = (error: ParseResult.ParseError): string => {
  const [issue] = ParseResult.ArrayFormatter.formatErrorSync(error)
  if (issue === undefined) return "the body does not match the trigger's fields"
  const where = issue.path.length === 0 ? "the body" : issue.path.join(".")
  return `${where}: ${issue.message.replace(/\s+/g, " ")}`
}

/**
 * Creates a trigger from a JSON body as `trigger create` would (the same checks, written into the
 * queue the same way); returns its file name and path.
 */
export const newTrigger = (paths: ProjectPaths, body: unknown) =>
  Effect.gen(function*() {
    const decoded = decodeBody(body)
    if (Either.isLeft(decoded)) return yield* badRequest(`Invalid trigger: ${firstIssue(decoded.left)}`)
    const b = decoded.right
    const file = yield* Effect.mapError(
      createTrigger(paths, {
        to: b.to_agent,
        action: b.action,
        from: b.from_agent ?? "dashboard",
        message: b.message,
        command: b.command,
        ticket: b.ticket === undefined ? undefined : String(b.ticket),
        context: b.context ?? {},
        priority: b.priority
      }),
      // A trigger that would be invalid is the request's fault; a queue that cannot be written is ours.
      (e) => new ApiError({ status: e.message.startsWith("Invalid trigger") ? 400 : 500, reason: e.message })
    )
    return { trigger: path.basename(file), file }
  })
