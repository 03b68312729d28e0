/** The one wait for a condition with a deadline: a process gone, a queue empty. */
import { Duration, Effect, Schedule } from "effect"

/**
 * Reads `done` every `every` until it holds, at most for `within`; true when it held. Usable in
 * a finalizer: only the raced wait is interruptible (by its deadline), not the finalizer's fiber,
 * whose own interruption may be what runs it.
 */
export const pollUntil = (
  done: Effect.Effect<boolean>,
  within: Duration.DurationInput,
  every: Duration.DurationInput = Duration.millis(25)
): Effect.Effect<boolean> =>
  done.pipe(
    Effect.repeat({ schedule: Schedule.spaced(every), until: (held) => held }),
    Effect.interruptible,
    Effect.timeoutTo({ duration: within, onSuccess: () => true, onTimeout: () => false })
  )
