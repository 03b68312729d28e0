/**
 * Waiting for an event of the code under test, under the TestClock as well as the live one.
 *
 * `eventually` looks at a value of the services (a queue's outcomes, the daemon log's lines, the
 * TestClock's pending sleeps…) until it is what the test waits for, letting every other fiber
 * run in between. It never sleeps, so it needs no clock to move; its deadline is a number of
 * looks, far more than any of these events takes, after which it fails loudly with what it was
 * waiting for and the last value it saw. It is a wait for one condition, not a pause: a test that
 * asserts that something did NOT happen must first await a later event that proves the code had
 * its chance to do it.
 */
import { Chunk, Deferred, Effect, Option, Queue, TestClock } from "effect"

/** Looks this many times at most (each after every ready fiber has run once more). */
const MAX_LOOKS = 20_000

/** Returns `check`'s value once `until` holds for it; dies after `MAX_LOOKS` looks. */
export const eventually = <A, E, R>(
  what: string,
  check: Effect.Effect<A, E, R>,
  until: (value: A) => boolean
): Effect.Effect<A, E, R> =>
  Effect.gen(function*() {
    let last: A | undefined
    for (let look = 0; look < MAX_LOOKS; look++) {
      last = yield* check
      if (until(last)) return last
      yield* Effect.yieldNow()
    }
    return yield* Effect.dieMessage(`waited in vain for ${what}; last seen: ${describe(last)}`)
  })

/** The next element of `queue`. */
export const eventuallyTake = <A>(what: string, queue: Queue.Dequeue<A>): Effect.Effect<A> =>
  Effect.map(eventually(what, Queue.poll(queue), Option.isSome), (taken) => (taken as Option.Some<A>).value)

/** The value `deferred` completes with. */
export const eventuallyDone = <A, E>(what: string, deferred: Deferred.Deferred<A, E>): Effect.Effect<A, E> =>
  Effect.flatMap(eventually(what, Deferred.poll(deferred), Option.isSome), (done) => (done as Option.Some<Effect.Effect<A, E>>).value)

/**
 * Until a fiber sleeps until `instant` (epoch ms) on the TestClock: a timer the code set, which
 * a `TestClock.adjust` past `instant` then fires. (An interrupted sleep stays listed until the
 * clock passes it: pick an instant no earlier timer used.)
 */
export const eventuallySleeping = (what: string, instant: number): Effect.Effect<void> =>
  Effect.asVoid(eventually(`${what} (a timer at ${new Date(instant).toISOString()})`, TestClock.sleeps(), Chunk.contains(instant)))

const describe = (value: unknown): string => {
  try {
    const text = JSON.stringify(value, (_, v) => (typeof v === "bigint" ? `${v}n` : v))
    return text === undefined ? String(value) : text.length > 2_000 ? `${text.slice(0, 2_000)}…` : text
  } catch {
    return String(value)
  }
}
