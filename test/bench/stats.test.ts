// The benchmark harness's pure helpers (bench/lib/stats.mjs). Timings themselves are never asserted.
import { describe, expect, it } from "vitest"
import {
  agentsNeverOverlap,
  cpuPercentOfCore,
  daemonCpuBudget,
  dealLanes,
  floorMakespan,
  fmt,
  fmtAgainst,
  laneCosts,
  makespanLowerBound,
  makespanSeconds,
  markdownTable,
  median,
  pairRuns,
  parseRecords,
  percentile,
  policyMakespan,
  seededJobs,
  slowestChain,
  verdict
} from "../../bench/lib/stats.mjs"

describe("bench stats", () => {
  it("median and nearest-rank percentiles", () => {
    expect(median([3, 1, 2])).toBe(2)
    expect(median([4, 1, 3, 2])).toBe(2.5)
    const hundred = Array.from({ length: 100 }, (_, i) => 100 - i)
    expect(percentile(hundred, 50)).toBe(50)
    expect(percentile(hundred, 99)).toBe(99)
    expect(percentile(hundred, 100)).toBe(100)
    expect(percentile([7], 99)).toBe(7)
    expect(() => median([])).toThrow()
  })

  it("the seeded job mix is the same for a seed, in range, round-robin over the agents", () => {
    const options = { agents: 20, perAgent: 5, minSeconds: 0.1, maxSeconds: 1.0, seed: 42 }
    const jobs = seededJobs(options)
    expect(jobs).toEqual(seededJobs(options))
    expect(jobs).not.toEqual(seededJobs({ ...options, seed: 43 }))
    expect(jobs).toHaveLength(100)
    expect(jobs.slice(0, 3).map((j) => j.agent)).toEqual(["agent-0", "agent-1", "agent-2"])
    for (const { seconds } of jobs) {
      expect(seconds).toBeGreaterThanOrEqual(0.1)
      expect(seconds).toBeLessThanOrEqual(1.0)
    }
  })

  it("the lower bound is the busiest agent's total or the work spread over the cap, whichever is larger", () => {
    const jobs = [
      { agent: "a", seconds: 3 },
      { agent: "a", seconds: 3 },
      { agent: "b", seconds: 1 },
      { agent: "c", seconds: 1 }
    ]
    expect(makespanLowerBound(jobs, 4)).toBe(6)
    expect(makespanLowerBound(jobs, 1)).toBe(8)
  })

  it("the policy makespan starts the first runnable job in queue order, never two at once for an agent", () => {
    // Cap 1: everything in sequence.
    expect(policyMakespan([{ agent: "a", seconds: 1 }, { agent: "b", seconds: 2 }], 1)).toBe(3)
    // a's second job waits for a; b runs meanwhile: max(1 + 1, 2).
    expect(policyMakespan([{ agent: "a", seconds: 1 }, { agent: "a", seconds: 1 }, { agent: "b", seconds: 2 }], 8)).toBe(2)
    // B1's shape: 8 agents x 10 jobs of 0.5 s, no cap, is the ideal 5 s.
    const b1 = Array.from({ length: 80 }, (_, i) => ({ agent: `agent-${i % 8}`, seconds: 0.5 }))
    expect(policyMakespan(b1, 999)).toBeCloseTo(5, 9)
    const b2 = seededJobs({ agents: 20, perAgent: 5, minSeconds: 0.1, maxSeconds: 1.0, seed: 42 })
    expect(policyMakespan(b2, 8)).toBeGreaterThanOrEqual(makespanLowerBound(b2, 8))
  })

  it("records pair into runs by pid; makespan and overlap come from the agents' own times", () => {
    const records = parseRecords([
      "start 1000000000 11 a",
      "start 1500000000 12 b",
      "end 2000000000 11 a",
      "start 2000000001 13 a",
      "end 3000000000 12 b",
      "end 4000000000 13 a",
      "start 4100000000 14 c"
    ].join("\n"))
    const runs = pairRuns(records)
    expect(runs.map((r) => [r.agent, r.pid])).toEqual([["a", 11], ["b", 12], ["a", 13]])
    expect(makespanSeconds(runs)).toBe(3)
    // a ends last: its first job began with the first start, its jobs lasted 1 s and 1.999999999 s
    // (0.5 s jobs: 1.999999999 s beyond), one gap of 1 ns.
    const chain = slowestChain(runs, 0.5)
    expect(chain).toMatchObject({ agent: "a", firstStart: 0, jobs: 2 })
    expect(chain.own).toBeCloseTo(1.999999999, 9)
    expect(chain.gaps).toBeCloseTo(1e-9, 12)
    expect(agentsNeverOverlap(runs)).toBe(true)
    expect(agentsNeverOverlap([...runs, { agent: "b", pid: 15, start: 2_500_000_000n, end: 2_600_000_000n }])).toBe(false)
    // xargs runs have no agent name.
    expect(parseRecords("start 5 9 ")[0]!.agent).toBe("")
  })

  it("the floor: jobs dealt to shell lanes, what each costs beyond its sleep, and the contract's order built on that", () => {
    const jobs = [
      { agent: "a", seconds: 1 },
      { agent: "b", seconds: 2 },
      { agent: "a", seconds: 3 }
    ]
    expect(dealLanes(jobs, 2)).toEqual([[1, 3], [2]])
    expect(dealLanes(jobs, 8)).toEqual([[1], [2], [3]])
    const s = 1_000_000_000n
    // lane-0 ran sleeps 1 and 3: 0.1 s and 0.3 s beyond them, 0.02 s between; lane-1 ran sleep 2 with 0.2 s beyond.
    const runs = [
      { agent: "lane-0", pid: 2, start: 1_120_000_000n + s, end: 4_420_000_000n + s },
      { agent: "lane-0", pid: 1, start: s, end: 1_100_000_000n + s },
      { agent: "lane-1", pid: 3, start: s, end: 2_200_000_000n + s }
    ]
    const costs = laneCosts([[1, 3], [2]], runs)
    expect(costs.ownSeconds).toBeCloseTo(0.2, 9)
    expect(costs.gapSeconds).toBeCloseTo(0.02, 9)
    expect(() => laneCosts([[1, 3, 5], [2]], runs)).toThrow(/lane 0 recorded 2 runs of 3/)
    // A job with nothing after it in its lane leaves no gap.
    expect(laneCosts([[2]], [{ agent: "lane-0", pid: 4, start: 0n, end: 2_500_000_000n }])).toEqual({ ownSeconds: 0.5, gapSeconds: 0 })
    // B1's shape: 10 jobs of 0.5 s per agent, each 0.05 s beyond its sleep and 0.01 s apart: 10 x 0.55 + 9 x 0.01.
    const b1 = Array.from({ length: 80 }, (_, i) => ({ agent: `agent-${i % 8}`, seconds: 0.5 }))
    expect(floorMakespan(b1, 999, { ownSeconds: 0.05, gapSeconds: 0.01 })).toBeCloseTo(5.59, 9)
    // Free jobs give the policy's own makespan.
    const b2 = seededJobs({ agents: 20, perAgent: 5, minSeconds: 0.1, maxSeconds: 1.0, seed: 42 })
    expect(floorMakespan(b2, 8, { ownSeconds: 0, gapSeconds: 0 })).toBeCloseTo(policyMakespan(b2, 8), 9)
    expect(floorMakespan(b2, 8, { ownSeconds: 0.02, gapSeconds: 0.01 })).toBeGreaterThan(policyMakespan(b2, 8))
  })

  it("CPU share of a core, verdicts and the Markdown table", () => {
    expect(cpuPercentOfCore(30, 100, 60)).toBeCloseTo(0.5, 9)
    expect(verdict(0.95, 0.95, "min")).toBe("met")
    expect(verdict(0.94, 0.95, "min")).toBe("missed")
    expect(verdict(300, 300, "max")).toBe("met")
    expect(verdict(Number.NaN, 1, "max")).toBe("missed")
    expect(markdownTable(["a", "b"], [["1", "x|y"]])).toBe("| a | b |\n| --- | --- |\n| 1 | x\\|y |")
  })

  it("the CPU a throughput target leaves the daemon: the cores' time per job less the others', at most one core", () => {
    // 250 jobs/s: 4 ms of wall time per job, 8 ms of CPU on 2 cores.
    const budget = daemonCpuBudget({ targetJobsPerSecond: 250, cores: 2, othersMsPerJob: 7 })
    expect(budget.wallMsPerJob).toBeCloseTo(4, 9)
    expect(budget.capacityMsPerJob).toBeCloseTo(8, 9)
    expect(budget.daemonMsPerJob).toBeCloseTo(1, 9)
    // The others leave more than a core: one thread still gets one core.
    expect(daemonCpuBudget({ targetJobsPerSecond: 250, cores: 2, othersMsPerJob: 1 }).daemonMsPerJob).toBeCloseTo(4, 9)
    // The others need more than the cores have: nothing is left, the figure says by how much.
    expect(daemonCpuBudget({ targetJobsPerSecond: 250, cores: 2, othersMsPerJob: 8.5 }).daemonMsPerJob).toBeCloseTo(-0.5, 9)
  })

  it("a figure that would round to its target shows the digits that tell them apart", () => {
    expect(fmt(0.9497)).toBe("0.95")
    expect(fmtAgainst(0.9497, 0.95)).toBe("0.9497")
    expect(fmtAgainst(0.95004, 0.95)).toBe("0.95004")
    expect(fmtAgainst(0.95, 0.95)).toBe("0.95")
    expect(fmtAgainst(0.943, 0.95)).toBe("0.943")
    expect(fmtAgainst(6.371, 10, 2)).toBe("6.37")
    expect(fmtAgainst(0.9497, undefined)).toBe("0.95")
  })
})
