/**
 * Issue 3, bad input: files that are not a trigger (contract §3). Each lands in
 * `processed/invalid/` with a specific one-line reason, no agent starts for it, and a valid
 * trigger dropped after them still runs. One daemon per group of cases.
 */
import * as crypto from "node:crypto"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { expectReason, invalidArchive, waitForOutcomes } from "../support/badInput.js"
import { queueFiles, startForeground } from "../support/daemonHelpers.js"
import { records, trigger, useProjects } from "../support/project.js"

const projects = useProjects()

const MiB = 1024 * 1024
const utf8 = (text: string) => Buffer.from(text, "utf8")
const nested = (levels: number) => "[".repeat(levels) + "]".repeat(levels)

/** Bytes read by a process so far (`rchar` of `/proc/<pid>/io`: every read(2) of all its threads). */
const bytesRead = (pid: number): number => Number(/^rchar: (\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/io`, "utf8"))![1])

interface FileCase {
  readonly name: string
  readonly bytes: Uint8Array
  readonly reason: RegExp
}

/** `{"to_agent":"a","message":"<filler>"}` padded with spaces to exactly `size` bytes. */
const triggerOfSize = (size: number) => {
  const head = utf8(JSON.stringify(trigger("size-agent", "")))
  return Buffer.concat([head, Buffer.alloc(size - head.length, " ")])
}

const malformed: ReadonlyArray<FileCase> = [
  { name: "empty", bytes: new Uint8Array(0), reason: /^the file is empty$/ },
  { name: "blank", bytes: utf8("  \n\t \n"), reason: /^the file is empty$/ },
  { name: "not-json", bytes: utf8("to_agent: junior-dev-a\n"), reason: /^not valid JSON: / },
  { name: "cut-json", bytes: utf8(`{"to_agent": "junior-dev-a", "mess`), reason: /^not valid JSON: / },
  { name: "trailing-garbage", bytes: utf8(`{"to_agent": "junior-dev-a"} }`), reason: /^not valid JSON: / },
  { name: "array", bytes: utf8(`[{"to_agent": "junior-dev-a"}]`), reason: /^the file holds an array, not a JSON object$/ },
  { name: "string", bytes: utf8(`"junior-dev-a"`), reason: /^the file holds a string, not a JSON object$/ },
  { name: "number", bytes: utf8("42"), reason: /^the file holds a number, not a JSON object$/ },
  { name: "null", bytes: utf8("null"), reason: /^the file holds null, not a JSON object$/ },
  { name: "boolean", bytes: utf8("true"), reason: /^the file holds a boolean, not a JSON object$/ },
  { name: "nested-10000", bytes: utf8(nested(10_000)), reason: /^the JSON is nested 10000 levels deep, over the limit of 100$/ },
  {
    name: "nested-in-context",
    bytes: utf8(`{"to_agent": "junior-dev-a", "context": {"x": ${nested(10_000)}}}`),
    reason: /^the JSON is nested 10002 levels deep, over the limit of 100$/
  },
  {
    name: "nested-101",
    bytes: utf8(`{"to_agent": "junior-dev-a", "context": {"x": ${nested(99)}}}`),
    reason: /^the JSON is nested 101 levels deep, over the limit of 100$/
  },
  { name: "one-byte-over-1mib", bytes: triggerOfSize(MiB + 1), reason: /^the file is 1048577 bytes, over the 1048576 byte \(1 MiB\) limit$/ },
  {
    name: "invalid-utf8",
    bytes: Buffer.concat([utf8(`{"to_agent": "junior-dev-a", "message": "`), Buffer.from([0xff, 0xfe, 0x41]), utf8(`"}`)]),
    reason: /^the file is not valid UTF-8 text$/
  },
  { name: "ends-mid-character", bytes: Buffer.concat([utf8(`{"to_agent": "junior-dev-a"} `), Buffer.from([0xc3])]), reason: /^the file is not valid UTF-8 text$/ },
  { name: "utf16", bytes: Buffer.from(`{"to_agent": "junior-dev-a"}`, "utf16le"), reason: /^the file contains a NUL byte$/ },
  {
    name: "nul-byte",
    bytes: Buffer.concat([utf8(`{"to_agent": "junior-dev-a", "message": "a`), Buffer.from([0]), utf8(`b"}`)]),
    reason: /^the file contains a NUL byte$/
  },
  {
    name: "escaped-nul",
    bytes: utf8(`{"to_agent": "junior-dev-a", "message": "a\\u0000b"}`),
    reason: /^a text field contains a NUL character \(\\u0000\)$/
  }
]

describe("malformed trigger files", () => {
  it("empty, not JSON, array/string/number, 10,000 levels deep, over 1 MiB, invalid UTF-8, a NUL byte: each is invalid with a specific reason and the next valid trigger runs", async () => {
    const p = projects.make()
    const daemon = await startForeground(p)
    for (const c of malformed) p.drop(c.name, c.bytes)
    // Boundaries that are valid: exactly 1 MiB, and 100 levels deep.
    p.drop("exactly-1mib", triggerOfSize(MiB))
    p.drop("nested-100", { ...trigger("size-agent"), context: { x: JSON.parse(nested(98)) } })
    p.drop("valid-after", trigger("junior-dev-a"))

    await waitForOutcomes(p, { invalid: malformed.map((c) => c.name), done: ["exactly-1mib", "nested-100", "valid-after"] })
    for (const c of malformed) {
      expectReason(p, c.name, c.reason)
      // Archived as it was written.
      expect(Buffer.compare(fs.readFileSync(invalidArchive(p, c.name)!), Buffer.from(c.bytes)), c.name).toBe(0)
    }
    // Only the valid triggers ever started an agent.
    expect(records(p).filter((r) => r.kind === "start").map((r) => r.trigger).sort()).toEqual(["exactly-1mib", "nested-100", "valid-after"])
    expect(queueFiles(p)).toEqual([])
    expect(daemon.hasExited()).toBe(false)
  })

  it("a 50 MiB file is invalid as too large without being read: the daemon reads less than 2 MiB meanwhile", async () => {
    const p = projects.make()
    const daemon = await startForeground(p)
    // Real bytes, not a sparse file: a valid trigger followed by 50 MiB of spaces.
    const staged = path.join(p.triggers, "staging", "huge.tmp")
    fs.writeFileSync(staged, triggerOfSize(50 * MiB))
    const before = bytesRead(daemon.pid)
    fs.renameSync(staged, path.join(p.triggers, "huge.trigger"))
    await waitForOutcomes(p, { invalid: ["huge"] })
    const read = bytesRead(daemon.pid) - before
    expectReason(p, "huge", /^the file is 52428800 bytes, over the 1048576 byte \(1 MiB\) limit$/)
    expect(read, `bytes the daemon read while rejecting a 50 MiB file`).toBeLessThan(2 * MiB)
    expect(fs.statSync(invalidArchive(p, "huge")!).size).toBe(50 * MiB)

    p.drop("valid-after", trigger("junior-dev-a"))
    await waitForOutcomes(p, { done: ["valid-after"] })
    expect(records(p).filter((r) => r.kind === "start").map((r) => r.trigger)).toEqual(["valid-after"])
    expect(daemon.hasExited()).toBe(false)
  })
})

describe("trigger names that are not regular files", () => {
  it("a symlink (to /etc/passwd, to a valid trigger or a FIFO outside the project, dangling), a directory, a FIFO or a socket named x.trigger is never followed nor opened, is archived as invalid, and the next valid trigger runs", async () => {
    const p = projects.make()
    const outside = projects.trackDir(fs.mkdtempSync(path.join(os.tmpdir(), "starforge-outside-")))
    const outsideTrigger = path.join(outside, "valid.trigger")
    fs.writeFileSync(outsideTrigger, JSON.stringify(trigger("outside-agent")))
    const outsideFifo = path.join(outside, "fifo")
    execFileSync("mkfifo", [outsideFifo])
    const passwd = fs.readFileSync("/etc/passwd")
    const at = (name: string) => path.join(p.triggers, `${name}.trigger`)

    // Two are there before the daemon starts: the start-up scan must not block either.
    execFileSync("mkfifo", [at("early-fifo")])
    fs.symlinkSync("/etc/passwd", at("early-link"))
    const daemon = await startForeground(p)

    fs.symlinkSync("/etc/passwd", at("link-passwd"))
    fs.symlinkSync(outsideTrigger, at("link-outside"))
    fs.symlinkSync(outsideFifo, at("link-fifo"))
    fs.symlinkSync(path.join(outside, "missing"), at("link-dangling"))
    fs.symlinkSync("/etc", at("link-dir"))
    fs.symlinkSync("../../agent.sh", at("link-relative"))
    fs.mkdirSync(at("dir"))
    fs.writeFileSync(path.join(at("dir"), "inside.trigger"), JSON.stringify(trigger("inside-agent")))
    execFileSync("mkfifo", [at("x")])
    const socket = net.createServer()
    await new Promise<void>((resolve) => socket.listen(at("socket"), resolve))
    p.drop("valid-after", trigger("junior-dev-a"))

    const kinds = {
      "early-fifo": "a FIFO",
      "early-link": "a symbolic link \\(never followed\\)",
      "link-passwd": "a symbolic link \\(never followed\\)",
      "link-outside": "a symbolic link \\(never followed\\)",
      "link-fifo": "a symbolic link \\(never followed\\)",
      "link-dangling": "a symbolic link \\(never followed\\)",
      "link-dir": "a symbolic link \\(never followed\\)",
      "link-relative": "a symbolic link \\(never followed\\)",
      dir: "a directory",
      x: "a FIFO",
      socket: "a socket"
    }
    try {
      await waitForOutcomes(p, { invalid: Object.keys(kinds), done: ["valid-after"] })
    } finally {
      socket.close()
    }
    for (const [name, kind] of Object.entries(kinds)) {
      expectReason(p, name, new RegExp(`^not a regular file: it is ${kind}$`))
    }
    // Moved as they were: links still links to the same place, never replaced by their target.
    expect(fs.readlinkSync(invalidArchive(p, "link-passwd")!)).toBe("/etc/passwd")
    expect(fs.readlinkSync(invalidArchive(p, "link-outside")!)).toBe(outsideTrigger)
    expect(fs.lstatSync(invalidArchive(p, "x")!).isFIFO()).toBe(true)
    expect(fs.lstatSync(invalidArchive(p, "dir")!).isDirectory()).toBe(true)
    // Targets untouched, the trigger outside the project never ran, nothing in the directory ran.
    expect(Buffer.compare(fs.readFileSync("/etc/passwd"), passwd)).toBe(0)
    expect(crypto.createHash("sha256").update(fs.readFileSync(outsideTrigger)).digest("hex")).toBe(
      crypto.createHash("sha256").update(JSON.stringify(trigger("outside-agent"))).digest("hex")
    )
    expect(fs.readdirSync(outside).sort()).toEqual(["fifo", "valid.trigger"])
    expect(records(p).filter((r) => r.kind === "start").map((r) => r.trigger)).toEqual(["valid-after"])
    // Nobody holds the FIFOs open for reading: opening one to write without a reader fails at once.
    for (const fifo of [invalidArchive(p, "x")!, invalidArchive(p, "early-fifo")!, outsideFifo]) {
      expect(() => fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK), fifo).toThrow(/ENXIO/)
    }
    expect(queueFiles(p)).toEqual([])
    expect(daemon.hasExited()).toBe(false)
  })
})

describe("trigger file names", () => {
  it("a name over 200 bytes or not valid UTF-8 is invalid with a reason (never claimed, never run again and again); 200 bytes runs", async () => {
    const p = projects.make()
    const daemon = await startForeground(p)
    const longest = "l".repeat(196) + "é" + "x" // 200 bytes
    const over = "o".repeat(199) + "é" // 201 bytes
    const far = "f".repeat(246) // `.processing` would not fit in 255 bytes
    const longInvalid = "i".repeat(200) // invalid content: its reason file must fit too
    p.drop(longest, trigger("junior-dev-a"))
    p.drop(over, trigger("junior-dev-b"))
    p.drop(far, trigger("junior-dev-c"))
    p.drop(longInvalid, "not json")
    const staged = path.join(p.triggers, "staging", "raw.tmp")
    fs.writeFileSync(staged, JSON.stringify(trigger("junior-dev-d")))
    fs.renameSync(staged, Buffer.concat([Buffer.from(`${p.triggers}/bad`), Buffer.from([0xff]), Buffer.from("name.trigger")]))
    p.drop("valid-after", trigger("junior-dev-e"))
    const decoded = "bad\ufffdname"
    await waitForOutcomes(p, { done: [longest, "valid-after"], invalid: ["o".repeat(199), "f".repeat(200), longInvalid, decoded] })
    // Archived under the name cut to 200 bytes.
    expectReason(p, "o".repeat(199), /^the file name is 201 bytes long before \.trigger, over the 200 byte limit$/, over)
    expectReason(p, "f".repeat(200), /^the file name is 246 bytes long before \.trigger, over the 200 byte limit$/, far)
    expectReason(p, longInvalid, /^not valid JSON: /)
    expectReason(p, decoded, /^the file name is not valid UTF-8$/)
    expect(records(p).filter((r) => r.kind === "start").map((r) => r.agent).sort()).toEqual(["junior-dev-a", "junior-dev-e"])
    expect(fs.readdirSync(p.triggers, { encoding: "buffer" }).filter((n) => n.toString().endsWith(".trigger"))).toEqual([])
    expect(queueFiles(p)).toEqual([])
    expect(daemon.hasExited()).toBe(false)
  })
})
