/** Whole lines of several pipes, merged: lines never mix, even an overlong one passed in parts. */
import { describe, expect, it } from "vitest"
import { lineMerger, MAX_HELD_BYTES, MAX_WAITING_BYTES } from "../../src/process/lines.js"

const b = (text: string) => Buffer.from(text)
const text = (parts: ReadonlyArray<Buffer>) => Buffer.concat(parts).toString()

describe("lineMerger", () => {
  it("passes whole lines of each pipe as they come, holding partial lines", () => {
    const m = lineMerger(2)
    expect(text(m.push(0, b("out 1\nout 2 par")))).toBe("out 1\n")
    expect(text(m.push(1, b("err 1\n")))).toBe("err 1\n")
    expect(text(m.push(0, b("t\n")))).toBe("out 2 part\n")
    expect(text(m.end(0))).toBe("")
    expect(text(m.push(1, b("no newline")))).toBe("")
    expect(text(m.end(1))).toBe("no newline")
  })

  it("an overlong line passed in parts keeps the other pipe's lines out of it until it ends", () => {
    const m = lineMerger(2)
    const long = "y".repeat(MAX_HELD_BYTES + 10)
    const out: Array<Buffer> = []
    out.push(...m.push(0, b(long)))
    out.push(...m.push(1, b("Warning on stderr\n")))
    out.push(...m.push(0, b("yyy")))
    out.push(...m.push(0, b("y\nnext line\n")))
    expect(text(out)).toBe(long + "yyyy\n" + "Warning on stderr\n" + "next line\n")
  })

  it("the other pipe's lines go once the overlong line's pipe ends, even without a newline", () => {
    const m = lineMerger(2)
    const long = "z".repeat(MAX_HELD_BYTES + 1)
    const out = [...m.push(0, b(long)), ...m.push(1, b("err\n")), ...m.end(0), ...m.end(1)]
    expect(text(out)).toBe(long + "err\n")
  })

  it("what waits for an overlong line is bounded: past MAX_WAITING_BYTES it goes anyway", () => {
    const m = lineMerger(2)
    m.push(0, b("a".repeat(MAX_HELD_BYTES + 1)))
    const line = "e".repeat(1023) + "\n"
    let released = 0
    for (let sent = 0; sent <= MAX_WAITING_BYTES; sent += line.length) released += m.push(1, b(line)).length
    expect(released).toBeGreaterThan(0)
  })
})
