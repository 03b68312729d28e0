/**
 * What agents cost and when the provider told them to stop: `C/daemon/usage.json`.
 *
 * - `limits`: per agent command line (`AGENT_COMMAND`), the time until which no agent using it
 *   starts, after one of them reported a usage limit. The reset time the agent named is used
 *   when there is one; otherwise an exponential cooldown (`USAGE_LIMIT_COOLDOWN`, doubling with
 *   each limit in a row, at most 6 hours). A success with the command after the pause ends the
 *   series.
 * - `days`: per UTC day and agent, the cost, tokens and attempts read from the agents' results.
 *
 * Kept in a file (temp file + rename, one writer: the daemon) so that `status` shows it and a
 * restarted daemon still honours a pause.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Clock, Context, Effect, Layer, Schema } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { isoSeconds } from "../domain/time.js"
import { writeBehind, writeFileAtomic } from "../io/stateFile.js"

export const UsageLimit = Schema.Struct({
  /** No agent with this command starts before this time (UTC ISO). */
  until: Schema.String,
  since: Schema.String,
  agent: Schema.String,
  trigger: Schema.NullOr(Schema.String),
  reason: Schema.String,
  /** `reset` when the agent named the reset time, `cooldown` otherwise. */
  source: Schema.Literal("reset", "cooldown"),
  /** Limits in a row without a success in between. */
  consecutive: Schema.Number
})
export type UsageLimit = typeof UsageLimit.Type

export const AgentDay = Schema.Struct({
  cost_usd: Schema.Number,
  attempts: Schema.Number,
  tokens_in: Schema.Number,
  tokens_out: Schema.Number
})
export type AgentDay = typeof AgentDay.Type

export const UsageFile = Schema.Struct({
  limits: Schema.Record({ key: Schema.String, value: UsageLimit }),
  days: Schema.Record({ key: Schema.String, value: Schema.Record({ key: Schema.String, value: AgentDay }) })
})
export type UsageFile = typeof UsageFile.Type

const emptyUsage: UsageFile = { limits: {}, days: {} }

/** Longest cooldown when no reset time is known; also the furthest a named reset time is believed. */
export const MAX_COOLDOWN_MS = 6 * 3600_000
const MAX_RESET_AHEAD_MS = 8 * 24 * 3600_000
/** Days of cost kept in the file. */
export const KEEP_DAYS = 31

const decodeFile = Schema.decodeUnknownEither(Schema.parseJson(UsageFile))

/** Reads the usage file; a missing or unreadable one is empty (it only holds what can be rebuilt). */
export const readUsage = (file: string): UsageFile => {
  try {
    const decoded = decodeFile(fs.readFileSync(file, "utf8"))
    return decoded._tag === "Right" ? decoded.right : emptyUsage
  } catch {
    return emptyUsage
  }
}

/** The UTC day of an instant, the key of `days`. */
export const dayOf = (ms: number): string => new Date(ms).toISOString().slice(0, 10)

/**
 * Until when to pause after the `consecutive`-th limit in a row: the named reset time when it is
 * ahead (and not absurdly far), else `cooldownMs` doubled per earlier limit, at most 6 hours.
 */
export const pauseUntil = (
  nowMs: number,
  resetsAtMs: number | null,
  consecutive: number,
  cooldownMs: number
): { readonly untilMs: number; readonly source: "reset" | "cooldown" } => {
  if (resetsAtMs !== null && resetsAtMs > nowMs && resetsAtMs - nowMs <= MAX_RESET_AHEAD_MS) {
    return { untilMs: resetsAtMs, source: "reset" }
  }
  const delay = Math.min(cooldownMs * 2 ** Math.max(0, consecutive - 1), MAX_COOLDOWN_MS)
  return { untilMs: nowMs + delay, source: "cooldown" }
}

/** The key of a usage-limit pause: the agent command line (today every agent shares one). */
export const limitKey = (agentCommand: ReadonlyArray<string>): string => agentCommand.join(" ")

export interface LimitHit {
  readonly command: string
  readonly agent: string
  readonly trigger: string | null
  readonly reason: string
  readonly resetsAtMs: number | null
}

export interface AttemptCost {
  readonly agent: string
  readonly costUsd: number | null
  readonly tokensIn: number
  readonly tokensOut: number
}

export interface DayCost {
  readonly totalUsd: number
  readonly byAgent: ReadonlyMap<string, number>
}

export interface UsageShape {
  /** When the pause of this command ends (epoch ms), if it is paused now. */
  readonly pausedUntil: (command: string) => Effect.Effect<number | undefined>
  /** The limit that pauses this command now, if one does. */
  readonly pauseOf: (command: string) => Effect.Effect<UsageLimit | undefined>
  /** Records a limit and returns the pause it starts. */
  readonly limitHit: (hit: LimitHit) => Effect.Effect<UsageLimit>
  /** A success with the command after its pause: the next limit starts the cooldown from the beginning. */
  readonly succeeded: (command: string) => Effect.Effect<void>
  /** Adds one attempt's cost to today's total of its agent. */
  readonly recordAttempt: (cost: AttemptCost) => Effect.Effect<void>
  /** The cost recorded today (UTC): all agents together, and by agent. */
  readonly costToday: Effect.Effect<DayCost>
  readonly snapshot: Effect.Effect<UsageFile>
}

export class Usage extends Context.Tag("starforge/Usage")<Usage, UsageShape>() {
  /** The project's `C/daemon/usage.json`. */
  static readonly layer = Layer.scoped(
    Usage,
    Effect.gen(function*() {
      const { paths, settings } = yield* DaemonConfig
      const file = path.join(paths.daemonDir, "usage.json")
      return yield* make(readUsage(file), settings.usageLimitCooldownMs, (usage) =>
        writeFileAtomic(file, JSON.stringify(usage, null, 2) + "\n").pipe(
          Effect.catchAll((error) => Effect.logWarning(error.message))
        ))
    })
  )

  /** In memory only, for tests. */
  static readonly memory = (cooldownMs = 300_000, initial: UsageFile = emptyUsage) =>
    Layer.scoped(Usage, make(initial, cooldownMs, () => Effect.void))
}

/** At most one write of `usage.json` per this many ms while attempts keep ending. */
export const USAGE_WRITE_SPACING_MS = 1_000

export const make = (initial: UsageFile, cooldownMs: number, save: (usage: UsageFile) => Effect.Effect<void>) =>
  Effect.gen(function*() {
    let limits = initial.limits
    // Per day and agent, changed in place, so an attempt's end does not copy the day's whole table.
    // Readers get a copy (`snapshot`).
    const days = new Map(Object.entries(initial.days).map(([day, agents]) => [day, new Map(Object.entries(agents))]))
    const snapshot = Effect.sync((): UsageFile => ({
      limits,
      days: Object.fromEntries([...days.keys()].sort().map((day) => [day, Object.fromEntries(days.get(day)!)]))
    }))
    // Costs are written behind (an attempt's end never waits for the disk); a pause is saved
    // before it is acted on, so a restart right after it still waits.
    const file = yield* writeBehind(snapshot, save, USAGE_WRITE_SPACING_MS)
    const changeLimits = (f: (current: UsageFile["limits"]) => UsageFile["limits"]) =>
      Effect.zipRight(Effect.sync(() => void (limits = f(limits))), file.changed)
    const pauseOf = (command: string) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const limit = limits[command]
        return limit !== undefined && Date.parse(limit.until) > now ? limit : undefined
      })
    return {
      pausedUntil: (command) => Effect.map(pauseOf(command), (limit) => limit && Date.parse(limit.until)),
      pauseOf,
      limitHit: (hit) =>
        Effect.gen(function*() {
          const now = yield* Clock.currentTimeMillis
          const previous = limits[hit.command]
          const consecutive = (previous?.consecutive ?? 0) + 1
          const { source, untilMs } = pauseUntil(now, hit.resetsAtMs, consecutive, cooldownMs)
          // Another agent's limit may already pause longer.
          const keep = previous !== undefined && Date.parse(previous.until) > untilMs
          const limit: UsageLimit = {
            until: keep ? previous.until : isoSeconds(untilMs),
            since: isoSeconds(now),
            agent: hit.agent,
            trigger: hit.trigger,
            reason: hit.reason,
            source: keep ? previous.source : source,
            consecutive
          }
          yield* changeLimits((current) => ({ ...current, [hit.command]: limit }))
          yield* file.flush
          return limit
        }),
      succeeded: (command) =>
        Effect.gen(function*() {
          const limit = limits[command]
          // A job that started before another agent's limit may still succeed: that ends no pause.
          if (limit === undefined || Date.parse(limit.until) > (yield* Clock.currentTimeMillis)) return
          yield* changeLimits((current) => {
            const { [command]: _ended, ...rest } = current
            return rest
          })
        }),
      recordAttempt: (cost) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.zipRight(
            Effect.sync(() => {
              const day = dayOf(now)
              let today = days.get(day)
              if (today === undefined) days.set(day, today = new Map())
              if (days.size > KEEP_DAYS) for (const old of [...days.keys()].sort().slice(0, -KEEP_DAYS)) days.delete(old)
              const was = today.get(cost.agent) ?? { cost_usd: 0, attempts: 0, tokens_in: 0, tokens_out: 0 }
              today.set(cost.agent, {
                cost_usd: Math.round((was.cost_usd + (cost.costUsd ?? 0)) * 1e6) / 1e6,
                attempts: was.attempts + 1,
                tokens_in: was.tokens_in + cost.tokensIn,
                tokens_out: was.tokens_out + cost.tokensOut
              })
            }),
            file.changed
          )),
      costToday: Effect.map(Clock.currentTimeMillis, (now): DayCost => {
        const byAgent = new Map(Array.from(days.get(dayOf(now)) ?? [], ([agent, day]) => [agent, day.cost_usd] as const))
        let totalUsd = 0
        for (const cost of byAgent.values()) totalUsd += cost
        return { totalUsd, byAgent }
      }),
      snapshot
    } satisfies UsageShape
  })
