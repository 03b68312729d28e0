/**
 * Work of lower priority than whatever the event loop has due: agents' exits waiting to be read,
 * the next trigger of an agent that just exited.
 */
import { Effect } from "effect"

/**
 * Lets the event loop turn before going on: I/O that is due (an agent's exit report) is read and
 * what it starts runs first. `Effect.yieldNow` does not do that: it yields to other fibers only,
 * within the same turn.
 */
export const yieldToEventLoop: Effect.Effect<void> = Effect.async<void>((resume) => {
  const immediate = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(immediate))
})
