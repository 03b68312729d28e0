/**
 * The frames between the daemon and its spawn helper (`spawnHelperMain.ts`), one codec for both
 * sides: the daemon encodes requests and decodes replies, the helper the reverse. A frame is
 *
 *   [u32 LE payload length][u8 kind][u32 LE request id][payload]
 *
 * Requests: `Spawn` (JSON of the request), `Close` (stop reading the agent's pipes). Replies:
 * `Spawned` (u32 pid), `SpawnFailed` (JSON errno code and message), `Output` (whole lines of one
 * pipe of the agent), `OutputEnd` (both pipes ended, once), `Exit` (JSON code and signal).
 * Plain Node, no Effect: the helper stays small (every spawn it makes copies its page tables).
 */
import type { SpawnRequest } from "./Spawner.js"

export const Kind = {
  Spawn: 1,
  Close: 2,
  Spawned: 3,
  SpawnFailed: 4,
  Output: 5,
  OutputEnd: 6,
  Exit: 7
} as const

export type Request =
  | { readonly kind: typeof Kind.Spawn; readonly id: number; readonly request: SpawnRequest }
  | { readonly kind: typeof Kind.Close; readonly id: number }

export type Reply =
  | { readonly kind: typeof Kind.Spawned; readonly id: number; readonly pid: number }
  | { readonly kind: typeof Kind.SpawnFailed; readonly id: number; readonly code: string | undefined; readonly message: string }
  | { readonly kind: typeof Kind.Output; readonly id: number; readonly bytes: Uint8Array }
  | { readonly kind: typeof Kind.OutputEnd; readonly id: number }
  | { readonly kind: typeof Kind.Exit; readonly id: number; readonly code: number | null; readonly signal: string | null }

export type Frame = Request | Reply

export const HEADER_BYTES = 9

/** Longer than any frame either side writes (an output frame holds at most a few pipe reads): a corrupt stream. */
export const MAX_PAYLOAD_BYTES = 64 * 1024 * 1024

/** The stream of frames cannot be read (a bug, or something else wrote on the channel). */
export class FrameError extends Error {}

const NONE = Buffer.alloc(0)

const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value), "utf8")

const payloadOf = (frame: Frame): Uint8Array => {
  switch (frame.kind) {
    case Kind.Spawn:
      return json(frame.request)
    case Kind.Close:
    case Kind.OutputEnd:
      return NONE
    case Kind.Spawned: {
      const pid = Buffer.allocUnsafe(4)
      pid.writeUInt32LE(frame.pid, 0)
      return pid
    }
    case Kind.SpawnFailed:
      return json({ code: frame.code, message: frame.message })
    case Kind.Output:
      return frame.bytes
    case Kind.Exit:
      return json({ code: frame.code, signal: frame.signal })
  }
}

/** One frame as bytes, ready to be written. */
export const encode = (frame: Frame): Buffer => {
  const payload = payloadOf(frame)
  const bytes = Buffer.allocUnsafe(HEADER_BYTES + payload.length)
  bytes.writeUInt32LE(payload.length, 0)
  bytes[4] = frame.kind
  bytes.writeUInt32LE(frame.id, 5)
  bytes.set(payload, HEADER_BYTES)
  return bytes
}

const parse = <A>(payload: Buffer): A => {
  try {
    return JSON.parse(payload.toString("utf8")) as A
  } catch {
    throw new FrameError("a frame's JSON payload cannot be parsed")
  }
}

const decodeOne = (kind: number, id: number, payload: Buffer): Frame => {
  switch (kind) {
    case Kind.Spawn:
      return { kind, id, request: parse<SpawnRequest>(payload) }
    case Kind.Close:
    case Kind.OutputEnd:
      return { kind, id }
    case Kind.Spawned:
      if (payload.length !== 4) throw new FrameError(`a Spawned frame of ${payload.length} bytes`)
      return { kind, id, pid: payload.readUInt32LE(0) }
    case Kind.SpawnFailed: {
      const { code, message } = parse<{ code?: string; message: string }>(payload)
      return { kind, id, code: typeof code === "string" ? code : undefined, message: String(message) }
    }
    case Kind.Output:
      return { kind, id, bytes: payload }
    case Kind.Exit: {
      const { code, signal } = parse<{ code: number | null; signal: string | null }>(payload)
      return { kind, id, code: code ?? null, signal: signal ?? null }
    }
    default:
      throw new FrameError(`unknown frame kind ${kind}`)
  }
}

/**
 * A streaming decoder: `push` takes the bytes as they were read (a frame may be split over any
 * number of chunks, a chunk may hold many frames) and returns the frames completed by them.
 * Throws `FrameError` on a corrupt stream.
 */
export const makeDecoder = () => {
  // Bytes read and not yet decoded, kept as chunks: a large frame arriving in many pieces is
  // joined once, when it is whole.
  let chunks: Array<Buffer> = []
  let buffered = 0
  return (chunk: Uint8Array): Array<Frame> => {
    const frames: Array<Frame> = []
    if (chunk.length === 0) return frames
    chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length))
    buffered += chunk.length
    if (buffered < HEADER_BYTES) return frames
    if (chunks[0]!.length < HEADER_BYTES) chunks = [Buffer.concat(chunks, buffered)]
    const first = chunks[0]!.readUInt32LE(0)
    if (first > MAX_PAYLOAD_BYTES) throw new FrameError(`a frame of ${first} bytes`)
    if (buffered < HEADER_BYTES + first) return frames
    let data = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, buffered)
    let at = 0
    while (data.length - at >= HEADER_BYTES) {
      const length = data.readUInt32LE(at)
      if (length > MAX_PAYLOAD_BYTES) throw new FrameError(`a frame of ${length} bytes`)
      const end = at + HEADER_BYTES + length
      if (end > data.length) break
      frames.push(decodeOne(data[at + 4]!, data.readUInt32LE(at + 5), data.subarray(at + HEADER_BYTES, end)))
      at = end
    }
    data = data.subarray(at)
    chunks = data.length === 0 ? [] : [data]
    buffered = data.length
    return frames
  }
}
