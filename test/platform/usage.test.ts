/**
 * Resource sampling: `ProcessTable.usage` (what each agent's tree of processes uses) on both
 * platform layers (`/proc` and `ps`; the portable one runs on Linux too), its pure parts (the
 * tree walk, the parsers), and `MachineState` on both layers.
 *
 * Every process a test starts is recorded and SIGKILLed (with its group) in `afterEach`, which
 * then waits until they are gone, so a failing test leaves nothing behind. The CPU burner also
 * stops by itself once its parent is gone.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { MachineState } from "../../src/platform/MachineState.js"
import { type ProcessTableShape, type ProcessUsage, type TreeUsage, treeUsage } from "../../src/platform/ProcessTable.js"
import * as Linux from "../../src/platform/linux.js"
import * as Posix from "../../src/platform/posix.js"
import { useProcessCleanup, waitUntil } from "../support/processes.js"

const { track, tempDir } = useProcessCleanup("starforge-usage-")

const MB = 1024 * 1024

/** A surely unused pid (and pgid): above the kernel's maximum pid (2^22). */
const DEAD_PID = 2 ** 22 + 12345

// ---------------------------------------------------------------------------------------------
// treeUsage (pure)
// ---------------------------------------------------------------------------------------------

const proc = (pid: number, ppid: number, pgid: number, rssBytes = pid * 10, cpuSeconds = pid / 10): ProcessUsage => ({
  pid,
  ppid,
  pgid,
  rssBytes,
  cpuSeconds
})

describe("treeUsage", () => {
  it("sums a group's members", () => {
    const all = [proc(1, 0, 1), proc(100, 1, 100, 1_000, 1.5), proc(101, 100, 100, 2_000, 0.25), proc(102, 100, 100, 3_000, 0)]
    expect(treeUsage(all, [100]).get(100)).toEqual({ rssBytes: 6_000, cpuSeconds: 1.75, processes: 3 })
  })

  it("counts a descendant that left the group (its own session), and that one's children", () => {
    const all = [
      proc(1, 0, 1),
      proc(100, 1, 100, 1_000, 1),
      // setsid: its own group, still a child of the agent.
      proc(200, 100, 200, 500, 2),
      // A child of that one, in its group.
      proc(201, 200, 200, 250, 4),
      // Someone else's process in another group: not counted.
      proc(300, 1, 300, 99_999, 99)
    ]
    expect(treeUsage(all, [100]).get(100)).toEqual({ rssBytes: 1_750, cpuSeconds: 7, processes: 3 })
  })

  it("a descendant in another requested group counts for its own group only, not twice", () => {
    const all = [proc(100, 1, 100, 1_000, 1), proc(200, 100, 200, 500, 2), proc(201, 200, 200, 250, 4)]
    const result = treeUsage(all, [100, 200])
    expect(result.get(100)).toEqual({ rssBytes: 1_000, cpuSeconds: 1, processes: 1 })
    expect(result.get(200)).toEqual({ rssBytes: 750, cpuSeconds: 6, processes: 2 })
  })

  it("a group without members is absent; no group asked, no answer", () => {
    const all = [proc(100, 1, 100), proc(150, 100, 150)]
    const result = treeUsage(all, [100, 555])
    expect(result.has(555)).toBe(false)
    expect([...result.keys()]).toEqual([100])
    expect(treeUsage(all, []).size).toBe(0)
    expect(treeUsage([], [100]).size).toBe(0)
  })

  it("a loop of parent links (a pid reused while the table was read) does not hang", () => {
    const all = [proc(100, 101, 100), proc(101, 100, 100)]
    expect(treeUsage(all, [100]).get(100)?.processes).toBe(2)
  })
})

// ---------------------------------------------------------------------------------------------
// Parsers (pure)
// ---------------------------------------------------------------------------------------------

describe("parseCpuTime", () => {
  it("Linux `time`: [dd-]hh:mm:ss", () => {
    expect(Posix.parseCpuTime("00:01:02")).toBe(62)
    expect(Posix.parseCpuTime("1-02:00:00")).toBe(86_400 + 7_200)
    expect(Posix.parseCpuTime("  12:00:01 ")).toBe(43_201)
  })

  it("macOS `time` (MMM:SS.cc, minutes past 59) and Linux `bsdtime` (MMM:SS)", () => {
    expect(Posix.parseCpuTime("12:34.56")).toBeCloseTo(754.56, 9)
    expect(Posix.parseCpuTime("123:45.67")).toBeCloseTo(7_425.67, 9)
    expect(Posix.parseCpuTime("0:00.00")).toBe(0)
    expect(Posix.parseCpuTime("0:57")).toBe(57)
    expect(Posix.parseCpuTime("1234:05")).toBe(74_045)
  })

  it("anything else is undefined", () => {
    for (const garbage of ["", "-", "abc", "12", "1:2:3:4", "12:60", "1:60:00", "1-12:00", "12:34.", "1:-2", "12:34.56x", "NaN:00"]) {
      expect(Posix.parseCpuTime(garbage), JSON.stringify(garbage)).toBeUndefined()
    }
  })
})

describe("parseUsageLine (ps)", () => {
  it("reads pid, ppid, pgid, rss (KiB) and the CPU time", () => {
    expect(Posix.parseUsageLine("  4321     1  4321 Ss    20480   1:02")).toEqual({
      pid: 4321,
      ppid: 1,
      pgid: 4321,
      rssBytes: 20 * MB,
      cpuSeconds: 62
    })
    expect(Posix.parseUsageLine("77 10 77 R+ 1024 123:45.67")?.cpuSeconds).toBeCloseTo(7_425.67, 9)
  })

  it("a zombie, a header and a broken line are skipped", () => {
    expect(Posix.parseUsageLine(" 88 1 88 Z 0 0:00")).toBeUndefined()
    expect(Posix.parseUsageLine("  PID  PPID  PGID STAT   RSS   TIME")).toBeUndefined()
    expect(Posix.parseUsageLine("88 1 88 S 12")).toBeUndefined()
    expect(Posix.parseUsageLine("")).toBeUndefined()
  })
})

describe("parseStatUsage (/proc/<pid>/stat)", () => {
  /** Fields 3..52: state, ppid, pgid, then utime..cstime (14-17) and rss (24) set. */
  const line = (pid: number, comm: string, state: string, ticks: [number, number, number, number], rssPages: number) =>
    `${pid} (${comm}) ${[state, 1, pid, pid, 0, -1, 4194560, 10, 0, 0, 0, ...ticks, 20, 0, 1, 0, "123456", 9999999, rssPages, ...Array.from({ length: 28 }, (_, i) => i)].join(" ")}\n`

  it("reads state, ppid, pgid, the four CPU times (ticks) and rss (pages)", () => {
    expect(Linux.parseStatUsage(42, line(42, "a) b (c", "S", [100, 50, 7, 3], 2_560))).toEqual({
      pid: 42,
      state: "S",
      ppid: 1,
      pgid: 42,
      cpuTicks: 160,
      rssPages: 2_560
    })
  })

  it("a truncated line is rejected", () => {
    expect(Linux.parseStatUsage(1, "1 (cmd) S 0 1 1 0 -1")).toBeUndefined()
    expect(Linux.parseStatUsage(1, "")).toBeUndefined()
  })

  it("this process's real line agrees with process.cpuUsage and memoryUsage", () => {
    const stat = Linux.parseStatUsage(process.pid, fs.readFileSync(`/proc/${process.pid}/stat`, "utf8"))!
    const { pageSize, ticksPerSecond } = Linux.statUnits()
    expect(stat.ppid).toBe(process.ppid)
    const cpu = process.cpuUsage()
    // Ticks are 10 ms; the children this worker reaped add to the stat line only.
    expect(stat.cpuTicks / ticksPerSecond).toBeGreaterThanOrEqual((cpu.user + cpu.system) / 1e6 - 0.5)
    expect(stat.rssPages * pageSize).toBeGreaterThan(process.memoryUsage().rss / 2)
  })
})

describe("memory parsers", () => {
  it("MemAvailable of /proc/meminfo, in bytes", () => {
    const meminfo = "MemTotal:       24731400 kB\nMemFree:        22746348 kB\nMemAvailable:   24144424 kB\n"
    expect(Linux.parseMemAvailable(meminfo)).toBe(24_144_424 * 1024)
    expect(Linux.parseMemAvailable("MemTotal: 1 kB\nMemFree: 1 kB\n")).toBeUndefined()
  })

  it("sysctl -n kern.memorystatus_level hw.memsize: that percentage of the memory", () => {
    expect(Posix.parseMemoryStatus("42\n17179869184\n")).toBe(Math.round(0.42 * 17_179_869_184))
    expect(Posix.parseMemoryStatus("100\n1024\n")).toBe(1024)
    expect(Posix.parseMemoryStatus("")).toBeUndefined()
    expect(Posix.parseMemoryStatus("sysctl: unknown oid 'kern.memorystatus_level'\n")).toBeUndefined()
    expect(Posix.parseMemoryStatus("142\n1024\n")).toBeUndefined()
  })
})

// ---------------------------------------------------------------------------------------------
// Real processes, both layers
// ---------------------------------------------------------------------------------------------

/**
 * An agent-like tree: a node process (its own group) holding 200 MB it has written to, and its
 * child in a session of its own (`detached`, so `setsid`) burning CPU. The burner's pid goes to
 * `argv[1]` (written whole: a temporary file, then a rename). The burner exits by itself once its
 * parent is gone, should the clean-up miss it.
 */
const AGENT = `
const { spawn } = require("node:child_process")
const fs = require("node:fs")
const held = Buffer.alloc(200 * 1024 * 1024, 1)
const burner = spawn(process.execPath, ["-e", \`
  const parent = process.ppid
  for (let i = 1; ; i++) if (i % 1e7 === 0 && process.ppid !== parent) process.exit(0)
\`], { detached: true, stdio: "ignore" })
fs.writeFileSync(process.argv[1] + ".tmp", String(burner.pid))
fs.renameSync(process.argv[1] + ".tmp", process.argv[1])
setInterval(() => { held[0]++ }, 1000)
`

/** Starts the tree; its group (the agent's pid) and the burner's pid, both recorded for clean-up. */
const startAgent = Effect.gen(function*() {
  const burnerFile = path.join(tempDir(), "burner.pid")
  const child = spawn(process.execPath, ["-e", AGENT, burnerFile], { detached: true, stdio: "ignore" })
  const pgid = child.pid
  if (pgid === undefined) return yield* Effect.die(new Error("could not start node"))
  track(pgid)
  child.unref()
  yield* waitUntil("the burner's pid", () => fs.existsSync(burnerFile), 20_000)
  const burner = Number(fs.readFileSync(burnerFile, "utf8"))
  track(burner)
  return { pgid, burner }
})

const LAYERS: ReadonlyArray<readonly [string, Effect.Effect<ProcessTableShape>]> = [
  ["linux", Effect.succeed(Linux.processTable)],
  ["posix", Posix.makeProcessTable]
]

for (const [name, makeTable] of LAYERS) {
  describe(`usage (${name} layer, real processes)`, () => {
    it.live("an agent's tree: its 200 MB, the CPU of a child in another session, rising", () =>
      Effect.gen(function*() {
        const table = yield* makeTable
        const { pgid, burner } = yield* startAgent
        let seen: TreeUsage | undefined
        yield* waitUntil(
          "the tree at 180 MB or more, the burner counted",
          Effect.map(table.usage([pgid]), (all) => {
            seen = all.get(pgid)
            return seen !== undefined && seen.rssBytes >= 180 * MB && seen.processes >= 2
          }),
          30_000
        )
        // The agent and the burner, nothing else.
        expect(seen!.processes).toBe(2)
        const before = seen!.cpuSeconds
        yield* waitUntil(
          `the tree's CPU time past ${before} s`,
          Effect.map(table.usage([pgid]), (all) => (all.get(pgid)?.cpuSeconds ?? 0) > before),
          20_000
        )

        // The burner's group asked about too: it counts there, and only there.
        const both = yield* table.usage([pgid, burner])
        expect(both.get(pgid)?.processes).toBe(1)
        expect(both.get(pgid)?.rssBytes).toBeGreaterThanOrEqual(180 * MB)
        expect(both.get(burner)?.processes).toBe(1)
        expect(both.get(burner)?.rssBytes).toBeLessThan(180 * MB)
      }), 90_000)

    it.live("a group with no process is absent from the answer; no group, an empty answer", () =>
      Effect.gen(function*() {
        const table = yield* makeTable
        const all = yield* table.usage([DEAD_PID])
        expect(all.has(DEAD_PID)).toBe(false)
        expect(all.size).toBe(0)
        expect((yield* table.usage([])).size).toBe(0)
        // A live group next to a dead one: only the live one answers.
        const ownGroup = Linux.readStat(process.pid)!.pgid
        const mine = yield* table.usage([ownGroup, DEAD_PID])
        expect([...mine.keys()]).toEqual([ownGroup])
        expect(mine.get(ownGroup)!.processes).toBeGreaterThanOrEqual(1)
      }))
  })
}

// ---------------------------------------------------------------------------------------------
// MachineState, both layers
// ---------------------------------------------------------------------------------------------

for (const [name, layer] of [["linux", Linux.machineLayer], ["posix", Posix.machineLayer]] as const) {
  describe(`MachineState (${name} layer)`, () => {
    it.live("reads plausible numbers", () =>
      Effect.gen(function*() {
        const reading = yield* Effect.flatMap(MachineState, (m) => m.read).pipe(Effect.provide(layer))
        expect(Number.isInteger(reading.cores)).toBe(true)
        expect(reading.cores).toBeGreaterThanOrEqual(1)
        expect(reading.loadAverage).toBeGreaterThanOrEqual(0)
        expect(reading.totalMemoryBytes).toBeGreaterThan(0)
        expect(reading.availableMemoryBytes).toBeGreaterThan(0)
        expect(reading.availableMemoryBytes).toBeLessThanOrEqual(reading.totalMemoryBytes)
      }))
  })
}
