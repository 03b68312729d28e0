/**
 * Work that follows changes without running once per change: the daemon's state files written
 * behind their changes (`writeBehind`) and an agent's progress published to its slot
 * (`watchOutput`).
 */
import { Duration, Effect, Queue, type Scope } from "effect"

export interface Coalesced {
  /** Asks for a run; returns at once. */
  readonly signal: Effect.Effect<void>
}

/**
 * Runs `action` when signalled, at most once per `spacingMs`: the first signal after a quiet
 * spell runs it at once; signals that come while it runs, or within `spacingMs` after, share its
 * next run. Its fiber lives in the scope: closing the scope stops it.
 */
export const coalesced = (action: Effect.Effect<void>, spacingMs: number): Effect.Effect<Coalesced, never, Scope.Scope> =>
  Effect.gen(function*() {
    // Holds one request at most: every signal until the next run is the same request.
    const wanted = yield* Queue.sliding<void>(1)
    yield* Queue.take(wanted).pipe(
      Effect.zipRight(action),
      Effect.zipRight(spacingMs > 0 ? Effect.sleep(Duration.millis(spacingMs)) : Effect.yieldNow()),
      Effect.forever,
      Effect.forkScoped
    )
    return { signal: Queue.offer(wanted, undefined).pipe(Effect.asVoid) }
  })
