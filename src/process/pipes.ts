/**
 * A child's stdout and stderr as one stream of whole lines. The pipes are read from the moment
 * of the spawn, whoever reads the stream and whenever: Node drains the pipes nobody listens to
 * when a child exits, so the output of an agent that fails at once would otherwise be lost.
 * A line of stdout and one of stderr never mix; a partial line is passed on only at the end of
 * its pipe, or when it outgrows `MAX_HELD_BYTES`, and then the other pipe waits for its end
 * (`lines.ts`).
 */
import type { Readable } from "node:stream"
import { Effect, Stream, type StreamEmit } from "effect"
import { lineMerger } from "./lines.js"

export { MAX_HELD_BYTES } from "./lines.js"

export interface Pipes {
  /** The output so far, then as it comes; ends when both pipes end (or `end` is called). */
  readonly output: Stream.Stream<Uint8Array>
  /** Passes on what is held back and stops reading: for pipes escaped processes still hold open. */
  readonly end: Effect.Effect<void>
}

export const readPipes = (pipes: ReadonlyArray<Readable | null>): Pipes => {
  // Output not taken by a reader yet, and the reader once there is one.
  const waiting: Array<Uint8Array> = []
  let reader: StreamEmit.Emit<never, never, Uint8Array, void> | undefined
  let ended = false
  const pass = (bytes: Uint8Array) => {
    if (bytes.length === 0) return
    if (reader === undefined) waiting.push(bytes)
    else void reader.single(bytes)
  }
  const open = pipes.filter((pipe): pipe is Readable => pipe !== null)
  const lines = lineMerger(open.length)
  let live = open.length
  const finishAll = () => {
    if (ended) return
    ended = true
    open.forEach((pipe, index) => {
      lines.end(index).forEach(pass)
      pipe.destroy()
    })
    void reader?.end()
  }
  open.forEach((pipe, index) => {
    pipe.on("data", (chunk: Buffer) => {
      if (ended) return
      lines.push(index, chunk).forEach(pass)
    })
    // The end of the data is what counts ('end'; 'close' if the pipe broke first).
    let done = false
    const finish = () => {
      if (done || ended) return
      done = true
      lines.end(index).forEach(pass)
      if (--live === 0) finishAll()
    }
    pipe.once("end", finish)
    pipe.once("close", finish)
    pipe.once("error", finish)
  })
  if (live === 0) finishAll()
  return {
    output: Stream.async<Uint8Array>((emit) => {
      for (const bytes of waiting.splice(0)) void emit.single(bytes)
      reader = emit
      if (ended) void emit.end()
    }, "unbounded"),
    end: Effect.sync(finishAll)
  }
}
