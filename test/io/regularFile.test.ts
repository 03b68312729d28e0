import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { readRegularFile } from "../../src/io/regularFile.js"

let dir: string
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-regular-"))
})
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true })
})

const at = (name: string) => path.join(dir, name)
const strict = { maxBytes: 1024, followSymlinks: false }

describe("readRegularFile", () => {
  it("reads a regular file within the limit, exactly", () => {
    fs.writeFileSync(at("f"), Buffer.from([0, 1, 0xff]))
    const read = readRegularFile(at("f"), strict)
    expect(read._tag).toBe("Read")
    if (read._tag === "Read") expect(Buffer.from(read.bytes)).toEqual(Buffer.from([0, 1, 0xff]))
  })

  it("a file over the limit is TooLarge with its size, without reading it (a 50 MiB sparse file)", () => {
    fs.writeFileSync(at("big"), "")
    fs.truncateSync(at("big"), 50 * 1024 * 1024)
    expect(readRegularFile(at("big"), strict)).toEqual({ _tag: "TooLarge", size: 50 * 1024 * 1024 })
    fs.writeFileSync(at("edge"), "x".repeat(1025))
    expect(readRegularFile(at("edge"), strict)).toEqual({ _tag: "TooLarge", size: 1025 })
  })

  it("a FIFO is NotRegular at once, never opened for a blocking read, whether reached directly or through a symlink", () => {
    execFileSync("mkfifo", [at("fifo")])
    fs.symlinkSync(at("fifo"), at("link"))
    expect(readRegularFile(at("fifo"), strict)).toEqual({ _tag: "NotRegular", kind: "a FIFO" })
    expect(readRegularFile(at("link"), { ...strict, followSymlinks: true })).toEqual({ _tag: "NotRegular", kind: "a FIFO" })
  })

  it("a symlink is never followed unless asked", () => {
    fs.writeFileSync(at("target"), "data")
    fs.symlinkSync(at("target"), at("link"))
    expect(readRegularFile(at("link"), strict)).toEqual({ _tag: "NotRegular", kind: "a symbolic link (never followed)" })
    const followed = readRegularFile(at("link"), { ...strict, followSymlinks: true })
    expect(followed._tag === "Read" && Buffer.from(followed.bytes).toString()).toBe("data")
  })

  it("a directory is NotRegular; a missing file (or a dangling followed link) is Gone", () => {
    fs.mkdirSync(at("d"))
    fs.symlinkSync(at("missing"), at("dangling"))
    expect(readRegularFile(at("d"), strict)).toEqual({ _tag: "NotRegular", kind: "a directory" })
    expect(readRegularFile(at("missing"), strict)).toEqual({ _tag: "Gone" })
    expect(readRegularFile(at("dangling"), { ...strict, followSymlinks: true })).toEqual({ _tag: "Gone" })
  })
  it("listedAsRegular skips the check before opening; a file swapped since is still caught on the descriptor", () => {
    const listed = { ...strict, listedAsRegular: true }
    fs.writeFileSync(at("f"), "data")
    const read = readRegularFile(at("f"), listed)
    expect(read._tag === "Read" && Buffer.from(read.bytes).toString()).toBe("data")
    // What each name was swapped for after the directory listed it as a regular file.
    fs.writeFileSync(at("target"), "secret")
    fs.symlinkSync(at("target"), at("link"))
    execFileSync("mkfifo", [at("fifo")])
    fs.mkdirSync(at("d"))
    fs.writeFileSync(at("edge"), "x".repeat(1025))
    expect(readRegularFile(at("link"), listed)).toEqual({ _tag: "NotRegular", kind: "a symbolic link (never followed)" })
    expect(readRegularFile(at("fifo"), listed)).toEqual({ _tag: "NotRegular", kind: "a FIFO" })
    expect(readRegularFile(at("d"), listed)).toEqual({ _tag: "NotRegular", kind: "a directory" })
    expect(readRegularFile(at("edge"), listed)).toEqual({ _tag: "TooLarge", size: 1025 })
    expect(readRegularFile(at("missing"), listed)).toEqual({ _tag: "Gone" })
  })
})
