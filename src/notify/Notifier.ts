/**
 * Notifications to webhooks: Discord (`DISCORD_WEBHOOK_URL`, or `DISCORD_WEBHOOK_<AGENT>` for
 * one agent) and a generic JSON POST (`NOTIFY_WEBHOOK_URL`).
 *
 * - `notify` only puts the message in a bounded queue: a slow, hanging or dead webhook never
 *   delays an agent or the scheduler. Each destination has its own queue and sender, so one dead
 *   webhook does not hold back another.
 * - At most one message per event: a request is sent again only when it certainly was not taken
 *   (connection refused or not made, HTTP 429, 502/503/504). A request that timed out or broke
 *   after it was sent is not repeated. A 429 waits for Discord's `retry_after` (or `Retry-After`),
 *   other retries back off exponentially. The generic POST carries the event id (also as
 *   `Idempotency-Key`), so a receiver can drop duplicates of its own.
 */
import { randomUUID } from "node:crypto"
import { Clock, Context, Data, Duration, Effect, ExecutionStrategy, Exit, Layer, Queue, Ref, Schedule, Scope } from "effect"
import { agentVariableSuffix, DaemonConfig, type DaemonSettings } from "../config/DaemonConfig.js"
import { DaemonLog } from "../observability/DaemonLog.js"
import { pollUntil } from "../io/pollUntil.js"
import { isoSeconds } from "../domain/time.js"

export type NotifyKind = "start" | "progress" | "complete" | "failed" | "timeout" | "stalled" | "dead_letter" | "usage_limit" | "budget"

export interface NotifyEvent {
  readonly kind: NotifyKind
  readonly agent: string
  readonly trigger: string | null
  readonly ticket: string | null
  readonly attempt: number | null
  /** One line for people. */
  readonly message: string
  /** Extra fields of the generic payload (summary, pause end, …). */
  readonly details?: Readonly<Record<string, unknown>>
}

export interface Notification extends NotifyEvent {
  readonly id: string
  readonly time: string
}

export interface NotifierShape {
  /** Queues the event for every destination of its agent; never waits for the network. */
  readonly notify: (event: NotifyEvent) => Effect.Effect<void>
}

export class Notifier extends Context.Tag("starforge/Notifier")<Notifier, NotifierShape>() {
  /** The webhooks of the configuration (none configured: nothing is sent). */
  static readonly layer = Layer.scoped(
    Notifier,
    Effect.gen(function*() {
      const { settings } = yield* DaemonConfig
      const log = yield* DaemonLog
      return yield* make(settings, {
        report: (message) => log.event("NOTIFY", message)
      })
    })
  )

  /** Keeps the events in memory, for tests. */
  static readonly memory = Effect.gen(function*() {
    const events = yield* Ref.make<ReadonlyArray<NotifyEvent>>([])
    return {
      layer: Layer.succeed(Notifier, { notify: (event) => Ref.update(events, (all) => [...all, event]) }),
      events: Ref.get(events)
    }
  })
}

const ICONS: Record<NotifyKind, string> = {
  start: "▶️",
  progress: "⏳",
  complete: "✅",
  failed: "❌",
  timeout: "⏱️",
  stalled: "🧊",
  dead_letter: "💀",
  usage_limit: "🚫",
  budget: "💰"
}

/** Discord's limit on `content`. */
const DISCORD_MAX = 2000

export const discordBody = (n: Notification) => {
  const text = `${ICONS[n.kind]} ${n.message}`
  return {
    username: "starforge",
    content: text.length > DISCORD_MAX ? `${text.slice(0, DISCORD_MAX - 1)}…` : text,
    // Never ping anyone, whatever an agent or trigger name contains.
    allowed_mentions: { parse: [] }
  }
}

export const genericBody = (n: Notification) => ({
  id: n.id,
  event: n.kind,
  time: n.time,
  agent: n.agent,
  trigger: n.trigger,
  ticket: n.ticket,
  attempt: n.attempt,
  message: n.message,
  ...n.details
})

interface Destination {
  readonly url: string
  readonly kind: "discord" | "generic"
}

/** Where an agent's events go: its own Discord webhook or the common one, and the generic one. */
export const destinationsOf = (settings: DaemonSettings, agent: string): ReadonlyArray<Destination> => {
  const discord = settings.discordAgentWebhooks[agentVariableSuffix(agent)] ?? settings.discordWebhookUrl
  const out: Array<Destination> = []
  if (discord) out.push({ url: discord, kind: "discord" })
  if (settings.notifyWebhookUrl) out.push({ url: settings.notifyWebhookUrl, kind: "generic" })
  return out
}

export interface SendOptions {
  /** How long one request may take before it is given up (and not repeated). */
  readonly requestTimeoutMs: number
  /** Tries per message, the first one included. */
  readonly maxTries: number
  /** The first back-off; doubles per try. */
  readonly backoffMs: number
  /** The longest wait a 429 is honoured for. */
  readonly maxRetryAfterMs: number
  /** Messages waiting per destination; more are dropped (and reported). */
  readonly queueSize: number
  /** How long a shutdown waits for the queues to empty. */
  readonly flushMs: number
  readonly report: (message: string) => Effect.Effect<void>
}

const defaults: Omit<SendOptions, "report"> = {
  requestTimeoutMs: 10_000,
  maxTries: 5,
  backoffMs: 500,
  maxRetryAfterMs: 600_000,
  queueSize: 1_000,
  flushMs: 5_000
}

/** A try the webhook certainly did not take: worth another, after `retryAfterMs` if it asked for a wait. */
class NotTaken extends Data.TaggedError("NotTaken")<{ readonly why: string; readonly retryAfterMs: number | null }> {}

/** A try that may have been taken, or was turned down for good: sending it again could only duplicate it. */
class Undelivered extends Data.TaggedError("Undelivered")<{ readonly why: string }> {}

type DeliveryFailure = NotTaken | Undelivered

const NOT_SENT = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "UND_ERR_CONNECT_TIMEOUT"])

/** The network error code under fetch's `TypeError: fetch failed`. */
const errorCode = (e: unknown): string | undefined => {
  let cause: unknown = e
  for (let i = 0; i < 4 && cause; i++) {
    const code = (cause as { code?: unknown }).code
    if (typeof code === "string") return code
    cause = (cause as { cause?: unknown }).cause
  }
  return undefined
}

/** Discord's `retry_after` (seconds, in the JSON body) or the `Retry-After` header (seconds). */
const retryAfterMs = async (response: Response): Promise<number | null> => {
  try {
    const body = (await response.json()) as { retry_after?: unknown }
    if (typeof body.retry_after === "number" && body.retry_after >= 0) return body.retry_after * 1000
  } catch {
    // Not JSON: the header may say it.
  }
  const header = Number(response.headers.get("retry-after"))
  return Number.isFinite(header) && header >= 0 ? header * 1000 : null
}

const tryOnce = (destination: Destination, n: Notification, timeoutMs: number): Effect.Effect<void, DeliveryFailure> =>
  Effect.flatten(Effect.promise(async (signal): Promise<Exit.Exit<void, DeliveryFailure>> => {
    const body = destination.kind === "discord" ? discordBody(n) : genericBody(n)
    try {
      const response = await fetch(destination.url, {
        method: "POST",
        headers: { "content-type": "application/json", "idempotency-key": n.id, "user-agent": "starforge" },
        body: JSON.stringify(body),
        signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)])
      })
      if (response.ok) {
        await response.body?.cancel().catch(() => undefined)
        return Exit.void
      }
      if (response.status === 429) return Exit.fail(new NotTaken({ why: "HTTP 429", retryAfterMs: await retryAfterMs(response) }))
      await response.body?.cancel().catch(() => undefined)
      // A gateway answered for a server it could not reach: the message was not taken.
      if ([502, 503, 504].includes(response.status)) {
        return Exit.fail(new NotTaken({ why: `HTTP ${response.status}`, retryAfterMs: null }))
      }
      return Exit.fail(new Undelivered({ why: `HTTP ${response.status}` }))
    } catch (e) {
      const code = errorCode(e)
      if (code !== undefined && NOT_SENT.has(code)) return Exit.fail(new NotTaken({ why: code, retryAfterMs: null }))
      const timedOut = (e as Error).name === "TimeoutError" || (e as Error).name === "AbortError"
      // It may have arrived: sending it again could make a duplicate.
      return Exit.fail(new Undelivered({ why: timedOut ? `no answer within ${timeoutMs / 1000}s` : code ?? (e as Error).message }))
    }
  }))

/**
 * The waits between the tries of one message: `backoffMs`, doubling with each try, unless a 429
 * asked for its own wait; never longer than `maxRetryAfterMs`; `maxTries` tries in all.
 */
const retrySchedule = (o: SendOptions) =>
  Schedule.exponential(Duration.millis(o.backoffMs)).pipe(
    Schedule.intersect(Schedule.identity<DeliveryFailure>()),
    Schedule.modifyDelay(([backoff, failure]) =>
      Duration.min(
        failure._tag === "NotTaken" && failure.retryAfterMs !== null ? Duration.millis(failure.retryAfterMs) : backoff,
        Duration.millis(o.maxRetryAfterMs)
      )),
    Schedule.intersect(Schedule.recurs(Math.max(0, o.maxTries - 1)))
  )

/** Builds the notifier; its senders run until the scope closes (then get `flushMs` to finish). */
export const make = (settings: DaemonSettings, options: Partial<Omit<SendOptions, "report">> & Pick<SendOptions, "report">) =>
  Effect.gen(function*() {
    const o: SendOptions = { ...defaults, ...options }
    const schedule = retrySchedule(o)
    const deliver = (destination: Destination, n: Notification) => {
      const notDelivered = (why: string) => {
        const where = `${destination.kind === "discord" ? "Discord webhook" : "NOTIFY_WEBHOOK_URL"} ${new URL(destination.url).host}`
        return o.report(`${n.kind} notification for ${n.agent} not delivered to ${where}: ${why}`)
      }
      return tryOnce(destination, n, o.requestTimeoutMs).pipe(
        Effect.retry({ schedule, while: (failure) => failure._tag === "NotTaken" }),
        Effect.catchTags({
          // Still not taken when the schedule ended: every try was used.
          NotTaken: (failure) => notDelivered(`${failure.why} after ${Math.max(1, o.maxTries)} tries`),
          Undelivered: (failure) => notDelivered(failure.why)
        })
      )
    }

    // One queue and one sender per webhook URL, all known from the configuration.
    const urls = new Set<string>([
      ...(settings.discordWebhookUrl ? [settings.discordWebhookUrl] : []),
      ...Object.values(settings.discordAgentWebhooks),
      ...(settings.notifyWebhookUrl ? [settings.notifyWebhookUrl] : [])
    ])
    const senders = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    const queues = new Map<string, { readonly queue: Queue.Queue<Notification>; readonly busy: Ref.Ref<boolean> }>()
    for (const url of urls) {
      const queue = yield* Queue.dropping<Notification>(o.queueSize)
      const busy = yield* Ref.make(false)
      queues.set(url, { queue, busy })
      const kind = url === settings.notifyWebhookUrl ? "generic" : "discord"
      yield* Queue.take(queue).pipe(
        Effect.tap(() => Ref.set(busy, true)),
        Effect.flatMap((n) => deliver({ url, kind }, n)),
        Effect.zipRight(Ref.set(busy, false)),
        Effect.forever,
        Effect.forkIn(senders)
      )
    }
    // Registered after the senders' scope, so it runs first at shutdown: the senders get up to
    // `flushMs` to empty their queues before they are stopped.
    const pending = Effect.reduce(queues.values(), 0, (n, { busy, queue }) =>
      Effect.zipWith(Queue.size(queue), Ref.get(busy), (size, sending) => n + size + (sending ? 1 : 0)))
    yield* Effect.addFinalizer(() => pollUntil(Effect.map(pending, (n) => n === 0), Duration.millis(o.flushMs), Duration.millis(50)))

    return {
      notify: (event) =>
        Effect.gen(function*() {
          const destinations = destinationsOf(settings, event.agent)
          if (destinations.length === 0) return
          const n: Notification = { ...event, id: randomUUID(), time: isoSeconds(yield* Clock.currentTimeMillis) }
          for (const destination of destinations) {
            if (!(yield* Queue.offer(queues.get(destination.url)!.queue, n))) {
              yield* o.report(`${n.kind} notification for ${n.agent} dropped: ${o.queueSize} messages already wait for ${new URL(destination.url).host}`)
            }
          }
        })
    } satisfies NotifierShape
  })
