/**
 * Splits an agent's output bytes into lines, each decoded only once complete and bounded in size:
 * a line over the bound is dropped as it streams and reported as `Oversized`.
 */

/** Lines longer than this are skipped (counted, never buffered whole): one bad line costs at most this much memory. */
export const MAX_LINE_BYTES = 2 * 1024 * 1024

export type Line =
  | { readonly _tag: "Line"; readonly text: string }
  /** A line over the bound: its bytes were dropped. */
  | { readonly _tag: "Oversized"; readonly bytes: number }

/**
 * Splits a byte stream into lines. A line is decoded only once complete, so a multi-byte
 * character split across reads is intact; a line over `maxBytes` is dropped as it streams.
 */
export class LineSplitter {
  private parts: Array<Uint8Array> = []
  private size = 0
  /** Bytes of the current line already dropped for being over the bound. */
  private dropped = 0

  constructor(private readonly maxBytes: number = MAX_LINE_BYTES) {}

  push(chunk: Uint8Array): Array<Line> {
    const lines: Array<Line> = []
    let start = 0
    for (;;) {
      const nl = chunk.indexOf(10, start)
      if (nl === -1) break
      this.append(chunk.subarray(start, nl))
      lines.push(this.take())
      start = nl + 1
    }
    if (start < chunk.length) this.append(chunk.subarray(start))
    return lines
  }

  /** The unterminated last line, if any (at the end of the output). */
  end(): Array<Line> {
    return this.size > 0 || this.dropped > 0 ? [this.take()] : []
  }

  private append(bytes: Uint8Array) {
    if (bytes.length === 0) return
    if (this.dropped > 0 || this.size + bytes.length > this.maxBytes) {
      this.dropped += this.size + bytes.length
      this.parts = []
      this.size = 0
      return
    }
    // Copied: the reader may reuse its buffer.
    this.parts.push(Uint8Array.from(bytes))
    this.size += bytes.length
  }

  private take(): Line {
    if (this.dropped > 0) {
      const bytes = this.dropped
      this.dropped = 0
      return { _tag: "Oversized", bytes }
    }
    const text = Buffer.concat(this.parts, this.size).toString("utf8").replace(/\r$/, "")
    this.parts = []
    this.size = 0
    return { _tag: "Line", text }
  }
}
