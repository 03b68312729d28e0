/**
 * A child's stdout and stderr as one stream of whole lines. The pipes are read from the moment
 * of the spawn, whoever reads the stream and whenever: Node drains the pipes nobody listens to
 * when a child exits, so the output of an agent that fails at once would otherwise be lost.
 * A line of stdout and one of stderr never mix; a partial line is passed on only at the end of
 * its pipe, or when it outgrows `MAX_HELD_BYTES`.
 */
import type { Readable } from "node:stream"
import { Effect, Stream, type StreamEmit } from "effect"

/** Longest partial line held back while waiting for its newline. */
export const MAX_HELD_BYTES = 64 * 1024

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
  const held: Array<Buffer> = open.map(() => Buffer.alloc(0))
  let live = open.length
  const finishAll = () => {
    if (ended) return
    ended = true
    open.forEach((pipe, index) => {
      pass(held[index]!)
      held[index] = Buffer.alloc(0)
      pipe.destroy()
    })
    void reader?.end()
  }
  open.forEach((pipe, index) => {
    pipe.on("data", (chunk: Buffer) => {
      if (ended) return
      const data = held[index]!.length === 0 ? chunk : Buffer.concat([held[index]!, chunk])
      const cut = data.lastIndexOf(10) + 1
      if (cut > 0) pass(data.subarray(0, cut))
      held[index] = cut > 0 ? data.subarray(cut) : data
      if (held[index]!.length > MAX_HELD_BYTES) {
        pass(held[index]!)
        held[index] = Buffer.alloc(0)
      }
    })
    // The end of the data is what counts ('end'; 'close' if the pipe broke first).
    let done = false
    const finish = () => {
      if (done || ended) return
      done = true
      pass(held[index]!)
      held[index] = Buffer.alloc(0)
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
