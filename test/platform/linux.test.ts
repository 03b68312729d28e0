import { describe, expect, it } from "@effect/vitest"
import { identify, isAlive, parseStat, readStat, startTimeOf } from "../../src/platform/linux.js"

/** A `/proc/<pid>/stat` line; fields after the command name, starting with field 3 (state). */
const statLine = (pid: number, comm: string, fields: ReadonlyArray<string | number>) =>
  `${pid} (${comm}) ${fields.join(" ")}\n`

/** Fields 3..52 of a real stat line, with state, ppid, pgid, sid and starttime (field 22) settable. */
const restOf = (state: string, ppid: number, pgid: number, sid: number, startTime: string) => [
  state, // 3
  ppid, // 4
  pgid, // 5
  sid, // 6
  34816, // 7 tty_nr
  4242, // 8 tpgid
  4194560, // 9 flags
  1234, // 10 minflt
  0, // 11 cminflt
  5, // 12 majflt
  0, // 13 cmajflt
  17, // 14 utime
  3, // 15 stime
  0, // 16 cutime
  0, // 17 cstime
  20, // 18 priority
  0, // 19 nice
  1, // 20 num_threads
  0, // 21 itrealvalue
  startTime, // 22 starttime
  12345678, // 23 vsize
  890, // 24 rss
  ...Array.from({ length: 28 }, (_, i) => i) // 25..52
]

/** A surely unused pid: above the kernel's maximum pid (2^22). */
const DEAD_PID = 2 ** 22 + 12345

describe("parseStat", () => {
  it("reads state, ppid, pgid, sid and the start time (field 22)", () => {
    const text = statLine(4321, "claude", restOf("S", 1, 4321, 4321, "987654"))
    expect(parseStat(4321, text)).toEqual({
      pid: 4321,
      state: "S",
      ppid: 1,
      pgid: 4321,
      sid: 4321,
      startTime: "987654"
    })
  })

  it("a command name with spaces and ')'", () => {
    const text = statLine(77, "my (weird) cmd) S 1 2 3", restOf("R", 10, 77, 5, "123456789"))
    expect(parseStat(77, text)).toEqual({
      pid: 77,
      state: "R",
      ppid: 10,
      pgid: 77,
      sid: 5,
      startTime: "123456789"
    })
  })

  it("a command name that is just ') ('", () => {
    const text = statLine(8, ") (", restOf("Z", 2, 8, 8, "42"))
    expect(parseStat(8, text)?.state).toBe("Z")
    expect(parseStat(8, text)?.startTime).toBe("42")
  })

  it("keeps a large start time exactly, as a string", () => {
    const text = statLine(9, "x", restOf("S", 1, 9, 9, "18446744073709551615"))
    expect(parseStat(9, text)?.startTime).toBe("18446744073709551615")
  })

  it("a line without ')' is rejected", () => {
    expect(parseStat(1, "1 cmd S 0 1 1")).toBeUndefined()
  })

  it("a truncated line is rejected", () => {
    expect(parseStat(1, "1 (cmd) S 0 1 1 0 -1")).toBeUndefined()
    expect(parseStat(1, "1 (cmd)")).toBeUndefined()
    expect(parseStat(1, "")).toBeUndefined()
  })

  it("parses this process's real stat line", () => {
    const stat = readStat(process.pid)
    expect(stat).toBeDefined()
    expect(stat!.pid).toBe(process.pid)
    expect(stat!.ppid).toBe(process.ppid)
    expect(stat!.state).toMatch(/^[RSD]$/)
    expect(stat!.startTime).toMatch(/^\d+$/)
  })
})

describe("process identity", () => {
  it("readStat of a dead pid is undefined", () => {
    expect(readStat(DEAD_PID)).toBeUndefined()
  })

  it("startTimeOf(process.pid) equals readStat(process.pid).startTime", () => {
    const startTime = startTimeOf(process.pid)
    expect(startTime).toBeDefined()
    expect(startTime).toBe(readStat(process.pid)!.startTime)
  })

  it("startTimeOf a dead pid is undefined", () => {
    expect(startTimeOf(DEAD_PID)).toBeUndefined()
  })

  it("identify with the right start time is 'same'", () => {
    expect(identify(process.pid, startTimeOf(process.pid))).toBe("same")
  })

  it("identify without a start time is 'different', never 'same'", () => {
    expect(identify(process.pid, null)).toBe("different")
    expect(identify(process.pid, undefined)).toBe("different")
  })

  it("identify with another start time is 'different'", () => {
    const startTime = startTimeOf(process.pid)!
    expect(identify(process.pid, String(BigInt(startTime) + 1n))).toBe("different")
    expect(identify(process.pid, "")).toBe("different")
  })

  it("identify of a dead pid is 'gone'", () => {
    expect(identify(DEAD_PID, null)).toBe("gone")
    expect(identify(DEAD_PID, "12345")).toBe("gone")
  })

  it("isAlive", () => {
    expect(isAlive(process.pid)).toBe(true)
    expect(isAlive(DEAD_PID)).toBe(false)
  })
})
