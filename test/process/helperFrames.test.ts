/** The frame codec between the daemon and its spawn helper: every kind round trips, whatever the reads split. */
import { describe, expect, it } from "vitest"
import { encode, type Frame, FrameError, HEADER_BYTES, Kind, makeDecoder } from "../../src/process/helperFrames.js"

const frames: Array<Frame> = [
  { kind: Kind.Spawn, id: 1, request: { command: "sh", args: ["-c", "echo 'é' \"$HOME\"", ""], cwd: "/tmp/a b", env: { PATH: "/bin", LINES: "one\ntwo", EMPTY: "" } } },
  { kind: Kind.Close, id: 2 },
  { kind: Kind.Spawned, id: 3, pid: 4_194_303 },
  { kind: Kind.SpawnFailed, id: 4, code: "ENOENT", message: "spawn nope ENOENT" },
  { kind: Kind.SpawnFailed, id: 5, code: undefined, message: "no code" },
  { kind: Kind.Output, id: 6, bytes: Buffer.from("a line\nanother\n") },
  { kind: Kind.Output, id: 7, bytes: Buffer.from([0, 1, 2, 255, 10]) },
  { kind: Kind.OutputEnd, id: 8 },
  { kind: Kind.Exit, id: 9, code: 3, signal: null },
  { kind: Kind.Exit, id: 0xffffffff, code: null, signal: "SIGKILL" }
]

/** Frames as plain data (an `Output`'s bytes as an array) to compare. */
const plain = (list: ReadonlyArray<Frame>) => list.map((f) => (f.kind === Kind.Output ? { ...f, bytes: Array.from(f.bytes) } : f))

describe("helper frames", () => {
  it("round trips every kind, one frame per chunk", () => {
    const decode = makeDecoder()
    expect(plain(frames.flatMap((f) => decode(encode(f))))).toEqual(plain(frames))
  })

  it("decodes many frames in one chunk", () => {
    expect(plain(makeDecoder()(Buffer.concat(frames.map(encode))))).toEqual(plain(frames))
  })

  it("decodes the frames whatever byte position splits the stream, in two and one byte at a time", () => {
    const all = Buffer.concat(frames.map(encode))
    for (let at = 0; at <= all.length; at++) {
      const decode = makeDecoder()
      expect(plain([...decode(all.subarray(0, at)), ...decode(all.subarray(at))])).toEqual(plain(frames))
    }
    const decode = makeDecoder()
    const out: Array<Frame> = []
    for (let i = 0; i < all.length; i++) out.push(...decode(all.subarray(i, i + 1)))
    expect(plain(out)).toEqual(plain(frames))
  })

  it("a large output frame split into many chunks comes whole", () => {
    const bytes = Buffer.alloc(1_000_000, 120)
    const all = encode({ kind: Kind.Output, id: 1, bytes })
    const decode = makeDecoder()
    const out: Array<Frame> = []
    for (let i = 0; i < all.length; i += 65_536) out.push(...decode(all.subarray(i, i + 65_536)))
    expect(out).toHaveLength(1)
    expect(out[0]!.kind === Kind.Output && Buffer.compare(Buffer.from(out[0]!.bytes), bytes)).toBe(0)
  })

  it("a corrupt stream is an error, not a hang", () => {
    const header = Buffer.alloc(HEADER_BYTES)
    header[4] = 99
    expect(() => makeDecoder()(header)).toThrow(FrameError)
    const huge = Buffer.alloc(HEADER_BYTES)
    huge.writeUInt32LE(0xffffffff, 0)
    expect(() => makeDecoder()(huge)).toThrow(FrameError)
  })
})
