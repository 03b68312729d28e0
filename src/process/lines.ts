/**
 * Whole lines of a child's pipes: bytes are passed on up to the last newline read, the rest is
 * held until its newline comes, the pipe ends, or it outgrows `MAX_HELD_BYTES`; `lineMerger`
 * keeps the lines of several pipes from mixing. Used by the daemon's own pipe reading
 * (`pipes.ts`) and by the spawn helper (`spawnHelperMain.ts`). Plain Node, no Effect.
 */

/** Longest partial line held back while waiting for its newline. */
export const MAX_HELD_BYTES = 64 * 1024

const EMPTY: Buffer = Buffer.alloc(0)

export interface LineBuffer {
  /** The whole lines completed by `chunk` (empty when none). */
  readonly push: (chunk: Buffer) => Buffer
  /** What is held back (at the pipe's end); empty when nothing. */
  readonly flush: () => Buffer
}

export const lineBuffer = (): LineBuffer => {
  let held: Buffer = EMPTY
  return {
    push: (chunk) => {
      const data = held.length === 0 ? chunk : Buffer.concat([held, chunk])
      const cut = data.lastIndexOf(10) + 1
      held = cut > 0 ? data.subarray(cut) : data
      if (held.length > MAX_HELD_BYTES) {
        held = EMPTY
        return data
      }
      return cut > 0 ? data.subarray(0, cut) : EMPTY
    },
    flush: () => {
      const rest = held
      held = EMPTY
      return rest
    }
  }
}

/** How much of the other pipes' output waits for an overlong line to end before it goes anyway. */
export const MAX_WAITING_BYTES = 4 * 1024 * 1024

export interface LineMerger {
  /** Pipe `pipe` read `chunk`: what may be passed on now, in order. */
  readonly push: (pipe: number, chunk: Buffer) => ReadonlyArray<Buffer>
  /** Pipe `pipe` ended: its held-back rest, and whatever waited for it, in order. */
  readonly end: (pipe: number) => ReadonlyArray<Buffer>
}

/**
 * The whole lines of several pipes, merged so that lines never mix: once a line outgrows
 * `MAX_HELD_BYTES` and is passed on in parts, the other pipes' output waits until that line
 * ends (its newline, or its pipe's end), up to `MAX_WAITING_BYTES`.
 */
export const lineMerger = (pipes: number): LineMerger => {
  const buffers = Array.from({ length: pipes }, lineBuffer)
  // The pipe in the middle of an overlong line, and what the others passed meanwhile.
  let owner: number | undefined
  let waiting: Array<Buffer> = []
  let waitingBytes = 0
  const release = (): ReadonlyArray<Buffer> => {
    owner = undefined
    const out = waiting
    waiting = []
    waitingBytes = 0
    return out
  }
  const pass = (pipe: number, bytes: Buffer, lineEnded: boolean): ReadonlyArray<Buffer> => {
    if (bytes.length === 0) return []
    if (owner !== undefined && owner !== pipe) {
      waiting.push(bytes)
      waitingBytes += bytes.length
      return waitingBytes > MAX_WAITING_BYTES ? release() : []
    }
    if (owner === pipe) {
      // The overlong line ends at the first newline: what waited for it goes right after it.
      const cut = bytes.indexOf(10) + 1
      if (cut === 0) return [bytes]
      return [bytes.subarray(0, cut), ...release(), ...pass(pipe, bytes.subarray(cut), lineEnded)]
    }
    if (!lineEnded) owner = pipe
    return [bytes]
  }
  return {
    push: (pipe, chunk) => {
      const bytes = buffers[pipe]!.push(chunk)
      return pass(pipe, bytes, bytes.length === 0 || bytes[bytes.length - 1] === 10)
    },
    end: (pipe) => {
      const rest = pass(pipe, buffers[pipe]!.flush(), true)
      return owner === pipe ? [...rest, ...release()] : rest
    }
  }
}
