/**
 * Lets forked fibers run until nothing more happens, the event loop turning in between (a job's
 * bookkeeping waits for it: `yieldToEventLoop`). For tests of the scheduler on its test doubles.
 */
import { Effect } from "effect"
import { yieldToEventLoop } from "../../src/io/eventLoop.js"

export const settle = Effect.gen(function*() {
  for (let turn = 0; turn < 5; turn++) {
    yield* yieldToEventLoop
    for (let i = 0; i < 50; i++) yield* Effect.yieldNow()
  }
})
