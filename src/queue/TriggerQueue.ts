/**
 * The queue of triggers: the pending set in order, claim, requeue, and the archive of every
 * outcome. The file layer (`FileTriggerQueue.ts`) watches `C/triggers`; the memory layer here
 * serves tests of the scheduler.
 */
import { Context, Effect, Layer, Option, Queue, Ref } from "effect"
import type { StorageError } from "../domain/errors.js"
import { compareOrder, type OrderKey, priorityOf, type Trigger } from "../domain/Trigger.js"

/** A valid trigger waiting in `C/triggers/<name>.trigger`. */
export interface QueuedTrigger extends OrderKey {
  /** The file's stem `X` of `X.trigger`. */
  readonly name: string
  readonly agent: string
  readonly trigger: Trigger
}

/** A trigger renamed to `X.processing`: it belongs to the daemon until it is archived or requeued. */
export interface ClaimedTrigger {
  readonly queued: QueuedTrigger
  /** Absolute path of `C/triggers/X.processing` (what the agent is told). */
  readonly file: string
}

/** The dead-letter meta file (contract §3). */
export interface DeadLetterMeta {
  readonly failure_reason: string
  readonly exit_code: number | null
  readonly signal: string | null
  readonly attempts: number
  readonly retry_timestamps: ReadonlyArray<string>
  readonly dlq_entry_timestamp: string
  readonly agent: string
  readonly trace_id: string | null
  readonly last_log: string | null
  /** exit, signal, spawn, timeout, stalled or agent_error (the last attempt's failure). */
  readonly failure_kind?: string
  /** The last attempt's summary, from its stream-json output (zero/null for other agents). */
  readonly duration_seconds?: number
  readonly turns?: number
  readonly cost_usd?: number | null
  readonly session_id?: string | null
  readonly tokens_in?: number
  readonly tokens_out?: number
  readonly model?: string | null
  /** What every attempt of the trigger cost together. */
  readonly total_cost_usd?: number
}

export type Completion =
  | { readonly _tag: "Done" }
  | { readonly _tag: "DeadLetter"; readonly meta: DeadLetterMeta }

export interface TriggerQueueShape {
  /** Valid, unclaimed triggers in run order (priority, age, name). */
  readonly pending: Effect.Effect<ReadonlyArray<QueuedTrigger>>
  /** Suspends until the pending set may have changed since the last call. */
  readonly changed: Effect.Effect<void>
  /** Renames `X.trigger` to `X.processing`; `None` when the file is gone. */
  readonly claim: (trigger: QueuedTrigger) => Effect.Effect<Option.Option<ClaimedTrigger>, StorageError>
  /** Puts a claimed trigger back in the queue (`X.processing` → `X.trigger`). */
  readonly requeue: (claimed: ClaimedTrigger) => Effect.Effect<void, StorageError>
  /** Archives a claimed trigger; returns where it went. */
  readonly complete: (claimed: ClaimedTrigger, completion: Completion) => Effect.Effect<string, StorageError>
  /** Start-up recovery: every `X.processing` back to `X.trigger`; returns their names. */
  readonly recoverClaimed: Effect.Effect<ReadonlyArray<string>, StorageError>
  /** Re-reads the directory (watchers miss events). */
  readonly rescan: Effect.Effect<void>
}

export class TriggerQueue extends Context.Tag("starforge/TriggerQueue")<TriggerQueue, TriggerQueueShape>() {}

/** Sorts pending triggers into run order. */
export const sortPending = (triggers: Iterable<QueuedTrigger>): Array<QueuedTrigger> =>
  Array.from(triggers).sort(compareOrder)

/** Where `t` goes in `list` (in run order): the index of the first entry that does not come before it. */
const positionOf = (list: ReadonlyArray<QueuedTrigger>, t: QueuedTrigger): number => {
  let low = 0
  let high = list.length
  while (low < high) {
    const middle = (low + high) >>> 1
    if (compareOrder(list[middle]!, t) < 0) low = middle + 1
    else high = middle
  }
  return low
}

/**
 * The pending triggers by name, and in run order. The order is kept from one read to the next: a
 * read after a few changes cuts out what left and slots in what came (binary searches and one
 * copy), so a claim does not cost a sort of the whole queue at the next dispatch.
 */
export class PendingTriggers {
  private readonly byName = new Map<string, QueuedTrigger>()
  private ordered: ReadonlyArray<QueuedTrigger> = []
  /** Set since the last read (a replaced entry is here again, as its new value). */
  private added: Array<QueuedTrigger> = []
  /** Deleted or replaced since the last read. */
  private gone: Array<QueuedTrigger> = []

  has(name: string): boolean {
    return this.byName.has(name)
  }

  names(): Array<string> {
    return Array.from(this.byName.keys())
  }

  set(entry: QueuedTrigger): void {
    const old = this.byName.get(entry.name)
    if (old !== undefined) this.gone.push(old)
    this.byName.set(entry.name, entry)
    this.added.push(entry)
  }

  delete(name: string): void {
    const old = this.byName.get(name)
    if (old === undefined) return
    this.gone.push(old)
    this.byName.delete(name)
  }

  /** Every pending trigger in run order (a new array after any change; never changed in place). */
  inOrder(): ReadonlyArray<QueuedTrigger> {
    if (this.added.length === 0 && this.gone.length === 0) return this.ordered
    const old = this.ordered
    // Positions in the previous order: the entries that leave it, and where each newcomer goes.
    const cuts = Array.from(new Set(this.gone.map((t) => positionOf(old, t)).filter((at, k) => old[at] === this.gone[k])))
      .sort((a, b) => a - b)
    const fresh = Array.from(new Set(this.added)).filter((t) => this.byName.get(t.name) === t).sort(compareOrder)
    this.added = []
    this.gone = []
    // The first read (the start-up scan) is just the sort.
    if (old.length === 0) return (this.ordered = fresh)
    const slots = fresh.map((t) => positionOf(old, t))
    const next: Array<QueuedTrigger> = []
    let c = 0
    let f = 0
    for (let i = 0; i <= old.length; i++) {
      while (f < fresh.length && slots[f] === i) next.push(fresh[f++]!)
      if (i === old.length) break
      if (cuts[c] === i) c++
      else next.push(old[i]!)
    }
    return (this.ordered = next)
  }
}

// ---------------------------------------------------------------------------------------------
// In-memory queue, for tests of the scheduler.
// ---------------------------------------------------------------------------------------------

export interface MemoryOutcome {
  readonly name: string
  readonly completion: Completion
}

export interface MemoryQueue {
  readonly layer: Layer.Layer<TriggerQueue>
  /** Adds a trigger; `createdNs` defaults to an increasing counter (FIFO in insertion order). */
  readonly add: (name: string, trigger: Trigger, createdNs?: bigint) => Effect.Effect<void>
  readonly outcomes: Effect.Effect<ReadonlyArray<MemoryOutcome>>
  readonly requeued: Effect.Effect<ReadonlyArray<string>>
  readonly claimed: Effect.Effect<ReadonlyArray<string>>
}

export const makeMemory: Effect.Effect<MemoryQueue> = Effect.gen(function*() {
  const pending = new Map<string, QueuedTrigger>()
  const claimed = new Set<string>()
  const outcomes = yield* Ref.make<ReadonlyArray<MemoryOutcome>>([])
  const requeued = yield* Ref.make<ReadonlyArray<string>>([])
  const changes = yield* Queue.sliding<void>(1)
  let counter = 0n
  const notify = Queue.offer(changes, undefined).pipe(Effect.asVoid)
  const service: TriggerQueueShape = {
    pending: Effect.sync(() => sortPending(pending.values())),
    changed: Queue.take(changes),
    claim: (t) =>
      Effect.sync(() => {
        if (!pending.delete(t.name)) return Option.none()
        claimed.add(t.name)
        return Option.some({ queued: t, file: `/memory/${t.name}.processing` })
      }),
    requeue: (c) =>
      Effect.gen(function*() {
        claimed.delete(c.queued.name)
        pending.set(c.queued.name, c.queued)
        yield* Ref.update(requeued, (all) => [...all, c.queued.name])
        yield* notify
      }),
    complete: (c, completion) =>
      Effect.gen(function*() {
        claimed.delete(c.queued.name)
        yield* Ref.update(outcomes, (all) => [...all, { name: c.queued.name, completion }])
        return `/memory/${completion._tag}/${c.queued.name}.trigger`
      }),
    recoverClaimed: Effect.sync(() => []),
    rescan: notify
  }
  return {
    layer: Layer.succeed(TriggerQueue, service),
    add: (name, trigger, createdNs) =>
      Effect.gen(function*() {
        pending.set(name, {
          name,
          agent: trigger.to_agent,
          trigger,
          priority: priorityOf(trigger),
          createdNs: createdNs ?? counter++
        })
        yield* notify
      }),
    outcomes: Ref.get(outcomes),
    requeued: Ref.get(requeued),
    claimed: Effect.sync(() => Array.from(claimed))
  }
})
