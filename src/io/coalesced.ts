/**
 * Work that follows changes without running once per change: the daemon's state files written
 * behind their changes (`writeBehind`) and an agent's progress published to its slot
 * (`watchOutput`).
 */
import { Duration, Effect, Queue, type Scope } from "effect"

export interface Coalesced {
  /** Asks for a run; returns at once, from inside a fiber or outside any (a pipe's handler). */
  readonly signal: () => void
}

/**
 * Runs `action` when signalled, at most once per `spacingMs`: the first signal after a quiet
 * spell runs it at once; signals that come while it runs, or within `spacingMs` after, share its
 * next run. The runner lives as long as the scope.
 */
export const coalesced = (action: Effect.Effect<void>, spacingMs: number): Effect.Effect<Coalesced, never, Scope.Scope> =>
  Effect.gen(function*() {
    // Holds one pending signal; further signals before it is taken add nothing.
    const pending = yield* Queue.dropping<void>(1)
    yield* Queue.take(pending).pipe(
      Effect.zipRight(action),
      Effect.zipRight(spacingMs > 0 ? Effect.sleep(Duration.millis(spacingMs)) : Effect.yieldNow()),
      Effect.forever,
      Effect.forkScoped
    )
    return { signal: () => void Queue.unsafeOffer(pending, undefined) }
  })
