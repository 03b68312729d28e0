/**
 * `GET /events`: the server-sent events a page follows instead of polling.
 *
 * - `slots`: the slot table (as `/api/slots`), at each change of a slot (busy, idle, progress,
 *   resource samples), at most one per `SPACING_MS`;
 * - `queue`: the waiting triggers with their reason (as `/api/queue`), when that list changes
 *   (looked at after slot changes and daemon events, and once a second for new files);
 * - `attempt`: an attempt ended (its history entry, as a line of `history.jsonl`);
 * - `log`: each daemon-log event, `{time, event, message, agent}`;
 * - `: ping` every `PING_MS`, so proxies and browsers keep the connection.
 *
 * On connect the current `slots` and `queue` come first. The stream ends when the daemon stops.
 * Each connection has its own fibers, in the scope of its response: a page closed stops them.
 */
import { Deferred, Duration, Effect, Queue, Ref, Schedule, Stream } from "effect"
import { coalesced } from "../io/coalesced.js"
import type { DaemonLogShape } from "../observability/DaemonLog.js"
import type { AgentSlotsShape } from "../slots/AgentSlots.js"
import type { HistoryEntry } from "../state/History.js"

/** At most one `slots` (and one `queue`) event per this many ms while changes keep coming. */
export const SPACING_MS = 200
/** A comment line this often keeps an idle connection open. */
export const PING_MS = 15_000
/** How often the waiting list is looked at without any other event (a trigger file dropped in the queue). */
const QUEUE_LOOK_MS = 1_000
/** Frames a connection may have waiting to be written before its producers wait for it. */
const BACKLOG = 256

/** One event in the text/event-stream format (JSON data is one line). */
export const frame = (event: string, json: string) => `event: ${event}\ndata: ${json}\n\n`

export interface EventSources {
  readonly slots: AgentSlotsShape
  readonly log: DaemonLogShape
  /** The waiting list, as `/api/queue` answers. */
  readonly queue: Effect.Effect<unknown>
  /** The attempts recorded: each is an `attempt` event. */
  readonly attempts: Stream.Stream<HistoryEntry>
  /** Completed when the daemon stops: the stream ends. */
  readonly shutdown: Deferred.Deferred<void>
}

/** The event stream of one connection, as UTF-8 text. */
export const eventStream = (sources: EventSources): Stream.Stream<Uint8Array> =>
  Stream.unwrapScoped(
    Effect.gen(function*() {
      const out = yield* Queue.bounded<string>(BACKLOG)
      const send = (text: string) => Queue.offer(out, text)
      const sendSlots = Effect.flatMap(sources.slots.snapshot, (table) => send(frame("slots", JSON.stringify(table))))
      const lastQueue = yield* Ref.make("")
      const sendQueue = Effect.gen(function*() {
        const json = JSON.stringify(yield* sources.queue)
        if ((yield* Ref.getAndSet(lastQueue, json)) !== json) yield* send(frame("queue", json))
      })
      const slotsChanged = yield* coalesced(sendSlots, SPACING_MS)
      const lookAgain = yield* coalesced(sendQueue, SPACING_MS)

      yield* sources.slots.changes.pipe(
        Stream.runForEach(() => Effect.zipRight(slotsChanged.signal, lookAgain.signal)),
        Effect.forkScoped
      )
      // Sent as recorded, before the queue is looked at again: a page that sees a trigger leave the
      // queue can find how it ended.
      yield* sources.attempts.pipe(
        Stream.runForEach((entry) => Effect.zipRight(send(frame("attempt", JSON.stringify(entry))), lookAgain.signal)),
        Effect.forkScoped
      )
      yield* sources.log.events.pipe(
        Stream.runForEach((event) => Effect.zipRight(send(frame("log", JSON.stringify(event))), lookAgain.signal)),
        Effect.forkScoped
      )
      yield* lookAgain.signal.pipe(Effect.repeat(Schedule.spaced(Duration.millis(QUEUE_LOOK_MS))), Effect.forkScoped)
      yield* send(": ping\n\n").pipe(Effect.delay(Duration.millis(PING_MS)), Effect.forever, Effect.forkScoped)
      // Lets the subscriptions above start before the first look.
      yield* Effect.yieldNow()
      yield* sendSlots
      yield* sendQueue
      const encoder = new TextEncoder()
      return Stream.fromQueue(out).pipe(
        Stream.map((text) => encoder.encode(text)),
        Stream.interruptWhen(Deferred.await(sources.shutdown))
      )
    })
  )
