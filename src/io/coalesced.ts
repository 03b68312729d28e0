/**
 * Work that follows changes without running once per change: the daemon's state files written
 * behind their changes (`writeBehind`) and an agent's progress published to its slot
 * (`watchOutput`).
 */
import { Duration, Effect, Fiber, Runtime, type Scope } from "effect"

export interface Coalesced {
  /** Asks for a run; returns at once, from inside a fiber or outside any (a pipe's handler). */
  readonly signal: () => void
}

export interface CoalescedRunner extends Coalesced {
  /** Stops a round in progress (or waiting); signals after it start nothing. */
  readonly close: Effect.Effect<void>
}

/**
 * Runs `action` when signalled, at most once per `spacingMs`: the first signal after a quiet
 * spell runs it at once; signals that come while it runs, or within `spacingMs` after, share its
 * next run. A fiber exists only while there is something to run (a daemon holds one runner per
 * running agent, most of them never signalled). Whoever makes it closes it.
 */
export const makeCoalesced = (action: Effect.Effect<void>, spacingMs: number): Effect.Effect<CoalescedRunner> =>
  Effect.map(Effect.runtime<never>(), (runtime) => {
    let wanted = false
    let active = false
    let closed = false
    let fiber: Fiber.RuntimeFiber<void> | undefined
    // Decided in one synchronous step with `active`: a signal either sees the runner still
    // active (and is taken by its next round) or starts a new one.
    const again = Effect.sync(() => {
      if (wanted && !closed) return true
      active = false
      return false
    })
    const rounds: Effect.Effect<void> = Effect.suspend(() => {
      wanted = false
      return action.pipe(
        Effect.zipRight(spacingMs > 0 ? Effect.sleep(Duration.millis(spacingMs)) : Effect.yieldNow()),
        Effect.zipRight(again),
        Effect.flatMap((more) => (more ? rounds : Effect.void))
      )
    })
    return {
      signal: () => {
        wanted = true
        if (active || closed) return
        active = true
        fiber = Runtime.runFork(runtime)(rounds)
      },
      close: Effect.suspend(() => {
        closed = true
        return active && fiber !== undefined ? Fiber.interrupt(fiber) : Effect.void
      })
    }
  })

/** `makeCoalesced`, closed with the scope. */
export const coalesced = (action: Effect.Effect<void>, spacingMs: number): Effect.Effect<Coalesced, never, Scope.Scope> =>
  Effect.tap(makeCoalesced(action, spacingMs), (runner) => Effect.addFinalizer(() => runner.close))
