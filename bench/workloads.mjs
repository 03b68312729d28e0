// The workloads B1-B8 of issue 4, and B9 (the cost of resource sampling, issue 21: the sampling
// pass of each variant's build, run by bench/sampling.mjs outside the daemon). The others run the
// real daemon of every variant under test (issue 20, lib/variants.mjs: after/linux, after/posix,
// before/linux) on temporary projects. Each returns rows
// { figure, variant, measured, baseline, target, verdict } plus notes: `variant` is the variant's
// label, or undefined for a machine floor (shell loops, xargs, bare Node), which is measured once
// per repetition, not per variant. Where a workload repeats, every repetition runs every variant,
// in an order rotated from one repetition to the next, so that the machine's drift hits all alike.
// Sizes and repetitions depend on the mode: `quick` or `full`.
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import {
  alive,
  cpuTicks,
  cpuTicksWithChildren,
  fileCreateMs,
  makeProject,
  memory,
  sleep,
  spawnHelperOf,
  spawnTracked,
  startDaemon,
  systemCpuTicks,
  TICKS_PER_SECOND,
  timeCli,
  timeNode,
  waitFor
} from "./lib/harness.mjs"
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
  median,
  pairRuns,
  percentile,
  policyMakespan,
  seededJobs,
  slowestChain,
  verdict
} from "./lib/stats.mjs"
import { rotated } from "./lib/variants.mjs"

const SPAWN_LOOP = fileURLToPath(new URL("./lib/spawnLoop.mjs", import.meta.url))
const SAMPLING = fileURLToPath(new URL("./sampling.mjs", import.meta.url))
const CONTRACT_LOOP = fileURLToPath(new URL("./lib/contractLoop.mjs", import.meta.url))

/** Queue order is (priority, creation time, name); creation times tie at coarse clock ticks, so names carry the order. */
const seqName = (i, agent) => `${String(i).padStart(5, "0")}-${agent}`

const row = (figure, value, { variant, unit = "", digits = 3, baseline = "—", target, targetValue, kind }) => ({
  figure,
  variant: variant?.label,
  measured: `${fmtAgainst(value, targetValue, digits)}${unit}`,
  baseline,
  target,
  verdict: targetValue === undefined ? "—" : verdict(value, targetValue, kind)
})

const SCHEDULER_ONLY = fileURLToPath(new URL("./lib/schedulerOnly.mjs", import.meta.url))

/**
 * CPU ms per job of the scheduler alone (see lib/schedulerOnly.mjs: this checkout's build), with
 * the daemon's Node options; undefined if it cannot run (it imports the build's modules by path).
 */
const schedulerOnlyCpuMs = async (jobs, agents, nodeOptions) => {
  const run = spawnTracked(process.execPath, [...nodeOptions, SCHEDULER_ONLY, String(jobs), String(agents)], { stdio: ["ignore", "pipe", "ignore"] })
  let out = ""
  run.child.stdout.on("data", (d) => (out += d))
  const { code } = await run.exited
  try {
    return code === 0 ? JSON.parse(out).cpuMsPerJob : undefined
  } catch {
    return undefined
  }
}

/** Starts the daemon on a queue filled beforehand, waits for `count` agent ends, stops it; returns the runs. */
const runToCompletion = async (project, variant, count, timeoutMs) => {
  const daemon = await startDaemon(project, variant)
  await waitFor(() => project.countRecords("end") >= count, { timeoutMs, intervalMs: 50, what: `${count} agent runs to end` })
  await daemon.stop()
  const runs = pairRuns(project.readRecords())
  if (runs.length !== count) throw new Error(`expected ${count} agent runs, recorded ${runs.length}`)
  if (!agentsNeverOverlap(runs)) throw new Error("an agent ran two jobs at once")
  return runs
}

/**
 * The agent with no scheduler at all: `lanes` (each a list of sleeps) run at once, each lane's
 * jobs back to back from a plain shell loop, recorded as `lane-<i>`. Its runs.
 */
const shellLanes = async (lanes) => {
  const base = makeProject()
  const script = lanes
    .map((sleeps, i) => `( for s in ${sleeps.join(" ")}; do STARFORGE_AGENT_ID=lane-${i} STARFORGE_ACTION=sleep-$s "${base.agent}"; done ) &`)
    .join("\n") + "\nwait\n"
  const loop = spawnTracked("/bin/sh", ["-c", script], { env: base.env, stdio: "ignore" })
  await loop.exited
  const runs = pairRuns(base.readRecords())
  const expected = lanes.reduce((n, sleeps) => n + sleeps.length, 0)
  if (runs.length !== expected) throw new Error(`the shell lanes recorded ${runs.length} runs of ${expected}`)
  return runs
}

/** The median of each of several runs' `laneCosts`. */
const medianCosts = (costs) => ({ ownSeconds: median(costs.map((c) => c.ownSeconds)), gapSeconds: median(costs.map((c) => c.gapSeconds)) })

/** What a job costs beyond its sleep with no scheduler (`laneCosts`), for a note: "X ms of its own, Y ms to start". */
const costsText = ({ ownSeconds, gapSeconds }) =>
  `${fmt(ownSeconds * 1000, 1)} ms of the agent's own beyond its sleep (its forks of date and sleep) and ${fmt(gapSeconds * 1000, 1)} ms for the shell to start the next`

// ---------------------------------------------------------------------------------------------

/** Where the median run's makespan went, along the agent that finished last. */
const chainNote = (c) =>
  `B1, median run: the agent that finished last (${c.agent}) started its first job ${fmt(c.firstStart * 1000, 1)} ms after the first agent; ` +
  `its ${c.jobs} jobs took ${fmt(c.own * 1000, 1)} ms beyond their sleeps (the agent's own forks of sleep and date, which the ideal leaves out); ` +
  `its ${c.jobs - 1} gaps (exit -> next start) ${fmt(c.gaps * 1000, 1)} ms, ${fmt((c.gaps / (c.jobs - 1)) * 1000, 1)} ms each on average`

const B1 = {
  id: "B1",
  title: "8 agents x 10 triggers, each job sleeps 0.5 s, no cap: scheduling efficiency",
  // Quick: 2 runs, each with every variant and one floor.
  plan: (mode) => ({ runs: mode === "full" ? 5 : 2 }),
  estimateSeconds: ({ runs }, variants) => runs * (7 * variants + 7),
  run: async ({ runs }, say, variants) => {
    const agents = 8
    const perAgent = 10
    const jobSeconds = 0.5
    const makespans = new Map(variants.map((v) => [v.label, []]))
    const fractions = new Map(variants.map((v) => [v.label, []]))
    const chains = new Map(variants.map((v) => [v.label, []]))
    const lanes = Array.from({ length: agents }, () => Array.from({ length: perAgent }, () => jobSeconds))
    const floors = []
    const costs = []
    for (let r = 0; r < runs; r++) {
      const mine = new Map()
      for (const variant of rotated(variants, r)) {
        const project = makeProject()
        let i = 0
        for (let k = 0; k < perAgent; k++) {
          for (let a = 0; a < agents; a++) project.write(seqName(i++, `agent-${a}`), { to_agent: `agent-${a}`, action: `sleep-${jobSeconds}` })
        }
        const runsOfAll = await runToCompletion(project, variant, agents * perAgent, 120_000)
        const m = makespanSeconds(runsOfAll)
        mine.set(variant.label, m)
        makespans.get(variant.label).push(m)
        chains.get(variant.label).push({ makespan: m, ...slowestChain(runsOfAll, jobSeconds) })
      }
      // The same jobs with no scheduler, right after: the same noise. Once per run, for every variant.
      const floorRuns = await shellLanes(lanes)
      const floor = makespanSeconds(floorRuns)
      floors.push(floor)
      costs.push(laneCosts(lanes, floorRuns))
      for (const [label, m] of mine) fractions.get(label).push(floor / m)
      say(`run ${r + 1}/${runs}: makespan ${[...mine].map(([label, m]) => `${label} ${fmt(m)} s`).join(", ")}; with no scheduler ${fmt(floor)} s`)
    }
    const ideal = perAgent * jobSeconds
    const floorEfficiency = ideal / median(floors)
    const cost = medianCosts(costs)
    const after = variants.find((v) => v.name === "after")
    const schedulerMs = after === undefined ? undefined : await schedulerOnlyCpuMs(400, agents, after.nodeOptions)
    return {
      rows: [
        ...variants.map((variant) =>
          row("scheduling efficiency (ideal / median makespan)", ideal / median(makespans.get(variant.label)), {
            variant,
            baseline: `ideal ${fmt(ideal)} s; makespans ${makespans.get(variant.label).map((m) => fmt(m)).join(", ")} s`,
            target: ">= 0.95",
            targetValue: 0.95,
            kind: "min"
          })
        ),
        ...variants.map((variant) =>
          row("fraction of the no-scheduler floor (floor makespan / makespan, median of per-run ratios)", median(fractions.get(variant.label)), {
            variant,
            baseline: `per run: ${fractions.get(variant.label).map((f) => fmt(f)).join(", ")} (each against the floor of its run)`,
            target: ">= 0.97 of the floor",
            targetValue: 0.97,
            kind: "min"
          })
        ),
        row("floor: no scheduler, each agent's jobs back to back in a shell loop (ideal / median makespan)", floorEfficiency, {
          baseline: `makespans ${floors.map((m) => fmt(m)).join(", ")} s; a job took ${costsText(cost)} (medians)`,
          target: "—"
        })
      ],
      notes: [
        `B1 floor: the ideal leaves out what the agent itself costs, and what starting it costs: ${costsText(cost)}. ` +
          `The same ${agents * perAgent} jobs run by ${agents} shell loops, one per agent, each job started as soon as the one before it ended (no scheduler at all), ` +
          `reach ${fmt(floorEfficiency)} of the ideal on this machine` +
          (floorEfficiency < 0.95
            ? ": below the target, so no scheduler reaches it here; the daemon's figure is to be read against this floor."
            : "; the target is within reach of a scheduler that adds nothing."),
        ...variants.map((variant) => {
          const ms = makespans.get(variant.label)
          return `B1 ${variant.label}: mean gap per job ${fmt(((median(ms) - ideal) / perAgent) * 1000, 1)} ms (agent exit -> next start, incl. the agent's own fork of sleep/date)`
        }),
        ...(schedulerMs === undefined
          ? []
          : [
              `B1: the scheduler of this checkout alone (fake processes, in-memory queue: bench/lib/schedulerOnly.mjs) costs ${fmt(schedulerMs, 2)} ms of CPU per job, ` +
                `and ${agents} agents that finish together wait for each other's share`
            ]),
        ...variants.map((variant) => {
          const ms = makespans.get(variant.label)
          const cs = chains.get(variant.label)
          return `${variant.label}: ${chainNote(cs.find((c) => c.makespan === median(ms)) ?? cs[0])}`
        })
      ]
    }
  }
}

// ---------------------------------------------------------------------------------------------

const B2 = {
  id: "B2",
  title: "20 agents x 5 triggers, job times 0.1-1.0 s (seed 42), cap 8: efficiency against the lower bound",
  // The bare Node loop runs after each run's daemons, but only once in quick mode (its time).
  plan: (mode) => ({ runs: mode === "full" ? 5 : 2, loopRuns: mode === "full" ? 5 : 1 }),
  estimateSeconds: ({ runs, loopRuns }, variants) => runs * (9 * variants + 9) + loopRuns * 8,
  run: async ({ runs, loopRuns }, say, variants) => {
    const cap = 8
    const jobs = seededJobs({ agents: 20, perAgent: 5, minSeconds: 0.1, maxSeconds: 1.0, seed: 42 })
    const bound = makespanLowerBound(jobs, cap)
    const policy = policyMakespan(jobs, cap)
    const lanes = dealLanes(jobs, cap)
    const queue = (project) => {
      jobs.forEach((job, i) => project.write(seqName(i, job.agent), { to_agent: job.agent, action: `sleep-${job.seconds}` }))
      return jobs.length
    }
    const makespans = new Map(variants.map((v) => [v.label, []]))
    const fractions = new Map(variants.map((v) => [v.label, []]))
    const costs = []
    const floors = []
    const loops = []
    for (let r = 0; r < runs; r++) {
      const mine = new Map()
      for (const variant of rotated(variants, r)) {
        const project = makeProject({ MAX_CONCURRENT_AGENTS: String(cap) })
        queue(project)
        const m = makespanSeconds(await runToCompletion(project, variant, jobs.length, 120_000))
        mine.set(variant.label, m)
        makespans.get(variant.label).push(m)
      }
      // What each job costs beyond its sleep with no scheduler, 8 at a time as under the cap, right after: the same noise.
      const cost = laneCosts(lanes, await shellLanes(lanes))
      costs.push(cost)
      const floor = floorMakespan(jobs, cap, cost)
      floors.push(floor)
      for (const [label, m] of mine) fractions.get(label).push(floor / m)
      // The same queue under a bare Node loop (as B4's second ceiling), right after too.
      if (r < loopRuns) {
        const loopRecords = await contractLoopRuns(queue, cap)
        if (!agentsNeverOverlap(loopRecords)) throw new Error("the contract loop ran an agent's two jobs at once")
        loops.push(makespanSeconds(loopRecords))
      }
      say(
        `run ${r + 1}/${runs}: makespan ${[...mine].map(([label, m]) => `${label} ${fmt(m)} s`).join(", ")}; floor ${fmt(floor)} s` +
          (r < loopRuns ? `; a bare Node loop ${fmt(loops[r])} s` : "")
      )
    }
    const cost = medianCosts(costs)
    const floor = median(floors)
    return {
      rows: [
        ...variants.map((variant) =>
          row("efficiency (lower bound / median makespan)", bound / median(makespans.get(variant.label)), {
            variant,
            baseline: `bound ${fmt(bound)} s = max(longest agent total, total work / ${cap}); makespans ${makespans.get(variant.label).map((m) => fmt(m)).join(", ")} s`,
            target: ">= 0.90",
            targetValue: 0.9,
            kind: "min"
          })
        ),
        ...variants.map((variant) =>
          row("fraction of the no-scheduler floor (floor makespan / makespan, median of per-run ratios)", median(fractions.get(variant.label)), {
            variant,
            baseline: `per run: ${fractions.get(variant.label).map((f) => fmt(f)).join(", ")} (each against the floor of its run); of the bare Node loop: ${fmt(median(loops) / median(makespans.get(variant.label)))}`,
            target: ">= 0.97 of the floor",
            targetValue: 0.97,
            kind: "min"
          })
        ),
        row("floor: the contract's order with no overhead, each job costing what it costs with no scheduler (lower bound / median floor makespan)", bound / floor, {
          baseline: `floor makespans ${floors.map((f) => fmt(f)).join(", ")} s; a job took ${costsText(cost)} (medians of ${cap} shell loops running the same jobs)`,
          target: "—"
        }),
        row(`reference: a bare Node loop doing the contract's file work per job, the agents writing straight into their logs (lib/contractLoop.mjs; lower bound / ${loops.length === 1 ? "its makespan, one run" : "its median makespan"})`, bound / median(loops), {
          baseline: `makespan${loops.length === 1 ? "" : "s"} ${loops.map((m) => fmt(m)).join(", ")} s`,
          target: "—"
        })
      ],
      notes: [
        `B2: the contract's order (first runnable trigger in queue order) with zero overhead needs ${fmt(policy)} s ` +
          `(efficiency ${fmt(bound / policy)} at best); ` +
          variants.map((v) => `${v.label} reaches ${fmt(policy / median(makespans.get(v.label)))} of that`).join(", "),
        `B2 floor: the bound leaves out what the agent itself costs, and what starting it costs: ${costsText(cost)}. ` +
          `The contract's order with no scheduler overhead, each job lasting its sleep plus those, takes ${fmt(floor)} s: ${fmt(bound / floor)} of the bound` +
          (bound / floor < 0.9
            ? ", below the target, so no implementation of the contract reaches it on this machine; the daemon's figure is to be read against this floor."
            : "; the target is within reach of a scheduler that adds nothing."),
        `B2 reference: a Node process that does only the contract's file work with synchronous calls and starts each agent with a spawn of its own ` +
          `(no Effect, no spawn helper, no pipes to drain, no validation, history, retries or tracing) reaches ${fmt(bound / median(loops))} of the bound. ` +
          "It shows what starting agents from Node costs on this machine before any of the daemon's work; it is not a bound the daemon cannot pass."
      ]
    }
  }
}
// ---------------------------------------------------------------------------------------------

/** The agent started `count` times in a row by a plain shell loop: `<kind> <ns>` before each start. */
const shellFloor = async (project, count) => {
  const floorRecords = path.join(project.base, "floor.txt")
  const script = `i=0; while [ $i -lt ${count} ]; do echo "spawn $(date +%s%N)" >> "${floorRecords}"; "${project.agent}"; i=$((i+1)); done`
  const loop = spawnTracked("/bin/sh", ["-c", script], { env: { ...project.env, BENCH_RECORDS: floorRecords }, stdio: "ignore" })
  await loop.exited
  const lines = fs.readFileSync(floorRecords, "utf8").trim().split("\n").map((l) => l.split(" "))
  fs.rmSync(floorRecords)
  const latencies = []
  let spawnAt
  for (const [kind, ns] of lines) {
    if (kind === "spawn") spawnAt = BigInt(ns)
    else if (kind === "start" && spawnAt !== undefined) latencies.push(Number(BigInt(ns) - spawnAt) / 1e6)
  }
  return latencies
}

/**
 * The bare Node spawn loop of `lib/spawnLoop.mjs` on a fresh project, `triggers` runs at `agents`
 * at a time, its resident size raised by `ballastMiB`: jobs/s and its RSS. `withoutPipes`: the
 * agents' output goes to one file instead of pipes.
 */
const nodeSpawnLoop = async (triggers, agents, ballastMiB, withoutPipes = false) => {
  const base = makeProject()
  const output = withoutPipes ? [path.join(base.base, "output.txt")] : []
  const loop = spawnTracked(process.execPath, [SPAWN_LOOP, String(triggers), String(agents), String(Math.max(0, Math.round(ballastMiB))), base.agent, ...output], {
    env: base.env,
    stdio: ["ignore", "pipe", "inherit"]
  })
  let out = ""
  loop.child.stdout.on("data", (d) => (out += d))
  await loop.exited
  const runs = pairRuns(base.readRecords())
  if (runs.length !== triggers) throw new Error(`the Node spawn loop recorded ${runs.length} runs of ${triggers}`)
  const { rssMiB, spawnMs } = JSON.parse(out)
  return { jobsPerSecond: triggers / makespanSeconds(runs), rssMiB, spawnMs }
}

/**
 * `lib/contractLoop.mjs`, `concurrency` agents at a time, on the triggers `queue` writes into a new
 * project: the contract's file work per job around bare spawns. The agents' runs.
 */
const contractLoopRuns = async (queue, concurrency) => {
  const base = makeProject()
  const triggers = queue(base)
  const loop = spawnTracked(process.execPath, [CONTRACT_LOOP, String(concurrency), base.agent, base.root], { env: base.env, stdio: ["ignore", "ignore", "inherit"] })
  await loop.exited
  const runs = pairRuns(base.readRecords())
  if (runs.length !== triggers) throw new Error(`the contract loop recorded ${runs.length} runs of ${triggers}`)
  return runs
}

/** The contract loop on `triggers` queued triggers for `agents` agents, as B4 queues them. Jobs/s. */
const contractLoop = async (triggers, agents) => {
  const runs = await contractLoopRuns((base) => {
    for (let i = 0; i < triggers; i++) base.write(seqName(i, `agent-${i % agents}`), { to_agent: `agent-${i % agents}` })
    return triggers
  }, agents)
  return triggers / makespanSeconds(runs)
}

const B3 = {
  id: "B3",
  title: "triggers dropped one at a time into an idle daemon: dispatch latency (renamed into place -> agent started)",
  // `drops` per variant, in `runs` blocks: each block runs the shell floor, every variant's daemon, the floor again.
  plan: (mode) => ({ drops: mode === "full" ? 500 : 200, runs: 2 }),
  estimateSeconds: ({ drops, runs }, variants) => 6 + runs * variants * 2 + drops * (0.08 * variants + 0.03),
  run: async ({ drops, runs }, say, variants) => {
    const floor = []
    const latencies = new Map(variants.map((v) => [v.label, []]))
    const rss = new Map()
    const warmUp = 3
    const perBlock = (r) => Math.floor(drops / runs) + (r < drops % runs ? 1 : 0)
    for (let r = 0; r < runs; r++) {
      const floorProject = makeProject()
      floor.push(...(await shellFloor(floorProject, Math.ceil(perBlock(r) / 2))))
      for (const variant of rotated(variants, r)) {
        const project = makeProject()
        const daemon = await startDaemon(project, variant)
        for (let i = 0; i < perBlock(r) + warmUp; i++) {
          const at = project.drop(`drop-${i}`, { to_agent: "agent-0" })
          await waitFor(() => project.processedCount() >= i + 1, { timeoutMs: 30_000, intervalMs: 5, what: `trigger ${i} to be processed` })
          const starts = project.readRecords().filter((x) => x.kind === "start")
          if (i >= warmUp) latencies.get(variant.label).push(Number(starts[i].ns - at) / 1e6)
          // Idle again before the next one (the daemon has archived it; let it settle).
          await sleep(10 + (i % 5) * 5)
        }
        rss.set(variant.label, memory(daemon.pid).rssMiB)
        await daemon.stop()
      }
      floor.push(...(await shellFloor(floorProject, Math.floor(perBlock(r) / 2))))
      say(`block ${r + 1}/${runs}: ${perBlock(r)} drops into each daemon (${rotated(variants, r).map((v) => v.label).join(", ")}), the shell floor before and after`)
    }
    // What one spawn() costs any Node process of the daemon's size (Node forks; see B4).
    const small = await nodeSpawnLoop(40, 1, 0)
    const firstRss = rss.get(variants[0].label)
    const sized = await nodeSpawnLoop(40, 1, firstRss - small.rssMiB)
    const f50 = percentile(floor, 50)
    const f99 = percentile(floor, 99)
    const rows = []
    for (const variant of variants) {
      const ls = latencies.get(variant.label)
      const p50 = percentile(ls, 50)
      const p99 = percentile(ls, 99)
      say(`${variant.label}: daemon p50 ${fmt(p50, 2)} ms, p99 ${fmt(p99, 2)} ms, max ${fmt(Math.max(...ls), 2)} ms`)
      rows.push(
        row("dispatch latency p50 over the floor", p50 - f50, {
          variant,
          unit: " ms",
          digits: 2,
          baseline: `daemon p50 ${fmt(p50, 2)} ms, shell floor p50 ${fmt(f50, 2)} ms (${ls.length} drops)`,
          target: "<= 10 ms",
          targetValue: 10,
          kind: "max"
        }),
        row("dispatch latency p99 over the floor", p99 - f99, {
          variant,
          unit: " ms",
          digits: 2,
          baseline: `daemon p99 ${fmt(p99, 2)} ms, shell floor p99 ${fmt(f99, 2)} ms`,
          target: "<= 50 ms",
          targetValue: 50,
          kind: "max"
        })
      )
    }
    say(`shell floor p50 ${fmt(f50, 2)} ms, p99 ${fmt(f99, 2)} ms (${floor.length} starts)`)
    rows.push({
      figure: "floor: a shell loop starting the agent, latency p50 / p99 (its spawn record -> the agent's start record)",
      variant: undefined,
      measured: `${fmt(f50, 2)} / ${fmt(f99, 2)} ms`,
      baseline: `${floor.length} starts, half before and half after each block's daemons`,
      target: "—",
      verdict: "—"
    })
    return {
      rows,
      notes: [
        `B3: one spawn() call (fork, and the wait for the child's exec) takes ${fmt(small.spawnMs, 2)} ms (median) in a bare Node process ` +
          `of ${fmt(small.rssMiB, 0)} MiB, as the daemon's spawn helper is, and ${fmt(sized.spawnMs, 2)} ms at the ${variants[0].label} daemon's size (${fmt(sized.rssMiB, 0)} MiB)`
      ]
    }
  }
}

// ---------------------------------------------------------------------------------------------

const B4 = {
  id: "B4",
  title: "queued triggers (2,000; quick: 500), 100 agents, agents exit at once, cap 100: throughput against xargs -P 100",
  // The Node ceilings (no targets) run after each run's daemons, but only in the first run in quick mode (their time).
  plan: (mode) => ({ runs: mode === "full" ? 3 : 2, triggers: mode === "full" ? 2000 : 500, ceilingRuns: mode === "full" ? 3 : 1 }),
  estimateSeconds: ({ runs, triggers, ceilingRuns }, variants) => runs * (variants + 1) * (3 + triggers / 60) + Math.min(runs, ceilingRuns) * 4 * (2 + triggers / 70),
  run: async ({ runs, triggers, ceilingRuns }, say, variants) => {
    const agents = 100
    const ours = new Map(variants.map((v) => [v.label, []]))
    const ratios = new Map(variants.map((v) => [v.label, []]))
    const peaks = new Map(variants.map((v) => [v.label, []]))
    const cpu = new Map(variants.map((v) => [v.label, []]))
    const xargs = []
    const bare = []
    const sized = []
    const unpiped = []
    const contract = []
    const xargsCpu = []
    const creates = []
    for (let r = 0; r < runs; r++) {
      // The baseline first, then every variant's daemon, then the Node ceilings: all see the same noise.
      const base = makeProject()
      const list = path.join(base.base, "list.txt")
      fs.writeFileSync(list, Array.from({ length: triggers }, (_, i) => String(i)).join("\n") + "\n")
      const systemBefore = systemCpuTicks()
      const x = spawnTracked("/bin/sh", ["-c", `xargs -P ${agents} -n 1 "${base.agent}" < "${list}"`], { env: base.env, stdio: "ignore" })
      await x.exited
      xargsCpu.push(((systemCpuTicks() - systemBefore) * 1000) / TICKS_PER_SECOND / triggers)
      const xRuns = pairRuns(base.readRecords())
      if (xRuns.length !== triggers) throw new Error(`xargs recorded ${xRuns.length} runs of ${triggers}`)
      const xRate = triggers / makespanSeconds(xRuns)
      xargs.push(xRate)

      for (const variant of rotated(variants, r)) {
        const project = makeProject({ MAX_CONCURRENT_AGENTS: String(agents) })
        for (let i = 0; i < triggers; i++) project.write(seqName(i, `agent-${i % agents}`), { to_agent: `agent-${i % agents}` })
        // What creating the job's log costs the daemon on this disk right now.
        creates.push(fileCreateMs())
        const daemon = await startDaemon(project, variant)
        // Where the machine's CPU goes while it runs: the daemon, its spawn helper, this harness, the rest (agents, kernel).
        const helper = spawnHelperOf(daemon.pid)
        const before = { system: systemCpuTicks(), daemon: cpuTicks(daemon.pid), helper: helper === undefined ? 0 : cpuTicks(helper), harness: cpuTicks(process.pid) }
        await waitFor(() => project.countRecords("end") >= triggers, { timeoutMs: 300_000, intervalMs: 50, what: `${triggers} agent runs to end` })
        const msPerJob = (ticks) => (ticks * 1000) / TICKS_PER_SECOND / triggers
        const used = {
          daemon: msPerJob(cpuTicks(daemon.pid) - before.daemon),
          helper: helper === undefined ? 0 : msPerJob(cpuTicks(helper) - before.helper),
          harness: msPerJob(cpuTicks(process.pid) - before.harness),
          system: msPerJob(systemCpuTicks() - before.system)
        }
        cpu.get(variant.label).push({ ...used, others: used.system - used.daemon - used.harness, xargs: xRate })
        peaks.get(variant.label).push(memory(daemon.pid).peakMiB)
        await daemon.stop()
        const daemonRuns = pairRuns(project.readRecords())
        if (daemonRuns.length !== triggers) throw new Error(`${variant.label}: expected ${triggers} agent runs, recorded ${daemonRuns.length}`)
        if (!agentsNeverOverlap(daemonRuns)) throw new Error(`${variant.label}: an agent ran two jobs at once`)
        const rate = triggers / makespanSeconds(daemonRuns)
        ours.get(variant.label).push(rate)
        ratios.get(variant.label).push(rate / xRate)
      }
      say(
        `run ${r + 1}/${runs}: xargs ${fmt(xRate, 0)} jobs/s; ` +
          rotated(variants, r).map((v) => `${v.label} ${fmt(ours.get(v.label)[r], 0)} jobs/s (peak RSS ${fmt(peaks.get(v.label)[r], 0)} MiB)`).join(", ")
      )

      if (r < ceilingRuns) {
        // The floor for any Node daemon: a bare spawn loop, at its own size and at the first variant's daemon's.
        const small = await nodeSpawnLoop(triggers, agents, 0)
        bare.push({ ...small, xargs: xRate })
        sized.push({ ...(await nodeSpawnLoop(triggers, agents, peaks.get(variants[0].label)[r] - small.rssMiB)), xargs: xRate })
        unpiped.push({ ...(await nodeSpawnLoop(triggers, agents, 0, true)), xargs: xRate })
        contract.push({ jobsPerSecond: await contractLoop(triggers, agents), xargs: xRate })
        say(
          `run ${r + 1}/${runs}, ceilings: bare Node spawn loop ${fmt(small.jobsPerSecond, 0)} jobs/s at ${fmt(small.rssMiB, 0)} MiB, ` +
            `${fmt(sized.at(-1).jobsPerSecond, 0)} jobs/s at ${fmt(sized.at(-1).rssMiB, 0)} MiB, ${fmt(unpiped.at(-1).jobsPerSecond, 0)} jobs/s without pipes; ` +
            `with the contract's file work ${fmt(contract.at(-1).jobsPerSecond, 0)} jobs/s`
        )
      }
    }
    const ofXargs = (list) => median(list.map((b) => b.jobsPerSecond / b.xargs))
    const bareRatio = ofXargs(bare)
    const cores = os.cpus().length
    // At the target rate, what the cores leave the daemon once the helper, the agents and the kernel have had what they took per job.
    const budgetsOf = (label) => cpu.get(label).map((c) => daemonCpuBudget({ targetJobsPerSecond: 0.5 * c.xargs, cores, othersMsPerJob: c.others }))
    const perJob = (label, key) => fmt(median(cpu.get(label).map((c) => c[key])), 2)
    const runsNote = ceilingRuns < runs ? ` (measured in the first ${ceilingRuns === 1 ? "run" : `${ceilingRuns} runs`} only)` : ""
    return {
      rows: [
        ...variants.map((variant) =>
          row(`throughput / xargs -P 100, ${triggers} triggers (median of per-run ratios)`, median(ratios.get(variant.label)), {
            variant,
            baseline: `daemon ${ours.get(variant.label).map((v) => fmt(v, 0)).join(", ")} jobs/s; xargs ${xargs.map((v) => fmt(v, 0)).join(", ")} jobs/s; peak RSS ${peaks.get(variant.label).map((p) => fmt(p, 0)).join(", ")} MiB`,
            target: ">= 0.5",
            targetValue: 0.5,
            kind: "min"
          })
        ),
        ...variants.map((variant) =>
          row(`daemon CPU per job (ms), against what ${cores} cores leave it at the target (0.5 x xargs)`, median(cpu.get(variant.label).map((c) => c.daemon)), {
            variant,
            digits: 2,
            baseline: `budget ${fmt(median(budgetsOf(variant.label).map((b) => b.daemonMsPerJob)), 2)} ms of the ${fmt(median(budgetsOf(variant.label).map((b) => b.capacityMsPerJob)), 2)} ms the cores hold per job at the target; ` +
              `the spawn helper took ${perJob(variant.label, "helper")}, the agents, the kernel and the rest of the machine ${fmt(median(cpu.get(variant.label).map((c) => c.others - c.helper)), 2)}`,
            target: "—"
          })
        ),
        row("xargs -P 100 and its agents: machine CPU per job (ms)", median(xargsCpu), {
          digits: 2,
          baseline: `${xargs.map((v) => fmt(v, 0)).join(", ")} jobs/s; creating one file took ${creates.map((c) => fmt(c, 3)).join(", ")} ms before the daemons' runs`,
          target: "—"
        }),
        row(`ceiling: a bare Node spawn loop, the agents' output in pipes as the spawn helper has it / xargs${runsNote}`, bareRatio, {
          baseline: `${bare.map((b) => `${fmt(b.jobsPerSecond, 0)} jobs/s at ${fmt(b.rssMiB, 0)} MiB`).join(", ")}; ` +
            `at the ${variants[0].label} daemon's size: ${sized.map((b) => `${fmt(b.jobsPerSecond, 0)} jobs/s at ${fmt(b.rssMiB, 0)} MiB`).join(", ")} (${fmt(ofXargs(sized))} of xargs); ` +
            `without the pipes (the agents' output appended to one file): ${unpiped.map((b) => fmt(b.jobsPerSecond, 0)).join(", ")} jobs/s (${fmt(ofXargs(unpiped))} of xargs)`,
          target: "—"
        }),
        row(`ceiling: a bare Node loop doing the contract's file work per job, the agents writing straight into their logs / xargs (lib/contractLoop.mjs)${runsNote}`, ofXargs(contract), {
          baseline: `${contract.map((c) => fmt(c.jobsPerSecond, 0)).join(", ")} jobs/s (per run: ${contract.map((c) => fmt(c.jobsPerSecond / c.xargs)).join(", ")} of xargs)`,
          target: "—"
        })
      ],
      notes: [
        `B4: ${variants.map((v) => `${v.label} reaches ${fmt(median(ratios.get(v.label)) / bareRatio)}`).join(", ")} of a bare Node spawn loop. Node's child_process forks, and a fork copies the parent's page ` +
          "tables, so the cost of each spawn grows with the size of the process: that is why the daemon starts agents from a small helper process. " +
          "The first ceiling is a Node process that does nothing but start the agents, their stdout and stderr pipes drained as the daemon's spawn helper drains them (one process, as the helper is; the helper also passes what it reads on to the daemon); " +
          "xargs, a small C program, forks a process of a few hundred KiB. " +
          "The second does what the contract asks of every job (claim by rename, a log with header and footer, two daemon-log lines, the archive rename, the slot and state files), " +
          "with synchronous calls and no Effect, but gives each agent its log as stdout and stderr: no pipes, so nothing follows the output or rotates the log. " +
          "That it passes the first shows what two pipes per agent cost a Node process; the first row's spawn loop without them (its last figure) measures it alone.",
        `B4 budget: at half of xargs's rate the ${cores} cores hold a fixed amount of CPU per job. ` +
          "In each daemon's runs the spawn helper, the agents and the kernel took the part shown (from /proc: the daemon's and the helper's own times, the machine's busy time less theirs and this harness's); " +
          "what is left is the most the daemon's own process may use per job for the target to be reachable at all (the budget in each daemon's CPU row). " +
          "At or below zero, the agents, started this way (a fork of the Node helper each), and the helper itself take about all of the cores at the target rate, whatever the daemon does."
      ]
    }
  }
}

// ---------------------------------------------------------------------------------------------

/** How many agents the daemon's slot file names with a pid (0 while it cannot be read). */
export const recordedPids = (project) => {
  try {
    const table = JSON.parse(fs.readFileSync(path.join(project.root, ".claude", "daemon", "agent-slots.json"), "utf8"))
    return Object.values(table).filter((slot) => slot.pid !== null && slot.pid !== undefined).length
  } catch {
    return 0
  }
}

/** RSS of an idle `node -e` process (the baseline of B5). */
const idleNodeRss = async (project) => {
  const idle = spawnTracked(process.execPath, ["-e", "setInterval(() => {}, 1e6)"], { env: project.env, stdio: "ignore" })
  await sleep(1000)
  const { rssMiB } = memory(idle.pid)
  process.kill(idle.pid, "SIGKILL")
  await idle.exited
  return rssMiB
}

const B5 = {
  id: "B5",
  title: "agents (500; quick: 200) sleeping 30 s at once: daemon peak RSS, daemon CPU while they sleep",
  plan: (mode) => ({ agents: mode === "full" ? 500 : 200, windowSeconds: mode === "full" ? 15 : 10 }),
  estimateSeconds: ({ windowSeconds }, variants) => 2 + variants * (25 + windowSeconds),
  run: async ({ agents, windowSeconds }, say, variants) => {
    const baseline = await idleNodeRss(makeProject())
    const rows = []
    // One daemon at a time (each starts its agents; two bursts at once would measure each other).
    for (const variant of variants) {
      const project = makeProject()
      for (let a = 0; a < agents; a++) project.write(seqName(a, `agent-${a}`), { to_agent: `agent-${a}`, action: "sleep-30" })
      const daemon = await startDaemon(project, variant)
      const readyRss = memory(daemon.pid).rssMiB
      const t0 = Date.now()
      await waitFor(() => project.countRecords("start") >= agents, { timeoutMs: 60_000, intervalMs: 100, what: `${agents} agents to start` })
      const startedIn = (Date.now() - t0) / 1000
      // The agents run before the daemon has finished starting them (its spawn helper starts them;
      // the daemon then takes their pipes and records them): its start burst ends when its slot
      // file names every agent's pid.
      await waitFor(() => recordedPids(project) >= agents, { timeoutMs: 60_000, intervalMs: 50, what: `the daemon to record ${agents} agents` })
      const recordedIn = (Date.now() - t0) / 1000
      // The window: from just after that until the first agent could end (30 s after the first start).
      const firstStartMs = Number(project.readRecords().filter((r) => r.kind === "start").reduce((m, r) => (r.ns < m ? r.ns : m), 1n << 80n) / 1_000_000n)
      await sleep(500)
      const windowMs = Math.min(windowSeconds * 1000, firstStartMs + 29_000 - Date.now())
      if (windowMs < 2_000) throw new Error(`${variant.label}: starting ${agents} agents took ${fmt(startedIn, 1)} s: too little of their 30 s sleep is left to measure`)
      // Its own CPU and that of the children it waited for meanwhile (a `ps` it ran, say).
      const own0 = cpuTicks(daemon.pid)
      const ticks0 = cpuTicksWithChildren(daemon.pid)
      const w0 = performance.now()
      // Second by second, to show when in the window the CPU is used.
      const perSecond = []
      for (let last = ticks0, left = windowMs; left > 0; left -= 1000) {
        await sleep(Math.min(1000, left))
        const now = cpuTicksWithChildren(daemon.pid)
        perSecond.push(now - last)
        last = now
      }
      const ticks = cpuTicksWithChildren(daemon.pid) - ticks0
      const own = cpuTicks(daemon.pid) - own0
      const wall = (performance.now() - w0) / 1000
      const ended = project.countRecords("end")
      const { peakMiB } = memory(daemon.pid)
      await daemon.stop()
      if (ended > 0) throw new Error(`${variant.label}: ${ended} agents ended before the CPU window closed; the window is not 'while they sleep'`)
      const cpu = cpuPercentOfCore(ticks, TICKS_PER_SECOND, wall)
      say(`${variant.label}: all ${agents} started in ${fmt(startedIn, 1)} s, recorded by the daemon in ${fmt(recordedIn, 1)} s; peak RSS ${fmt(peakMiB, 1)} MiB; CPU ${ticks} ticks (own ${own}) in ${fmt(wall, 1)} s`)
      rows.push(
        row(`daemon peak RSS (VmHWM), ${agents} agents`, peakMiB, {
          variant,
          unit: " MiB",
          digits: 1,
          baseline: `idle node -e: ${fmt(baseline, 1)} MiB (x${fmt(peakMiB / baseline, 2)}); daemon when ready: ${fmt(readyRss, 1)} MiB`,
          target: "<= 150 MB",
          targetValue: 150e6 / 2 ** 20,
          kind: "max"
        }),
        row(`daemon CPU while ${agents} agents sleep (its own and its reaped children's)`, cpu, {
          variant,
          unit: "% of a core",
          digits: 2,
          baseline: `${ticks} ticks of 1/${TICKS_PER_SECOND} s (its own: ${own}) in ${fmt(wall, 1)} s (from 0.5 s after the daemon recorded every agent, ` +
            `${fmt(recordedIn, 1)} s after it was ready; the agents had all started after ${fmt(startedIn, 1)} s); per second: ${perSecond.join(", ")}`,
          target: "<= 2%",
          targetValue: 2,
          kind: "max"
        })
      )
    }
    rows.push(row("idle `node -e` process: RSS", baseline, { unit: " MiB", digits: 1, baseline: "a Node process that only waits (the RSS any Node daemon starts from)", target: "—" }))
    return { rows, notes: [] }
  }
}

// ---------------------------------------------------------------------------------------------

const B6 = {
  id: "B6",
  title: "daemon idle (empty queue): CPU used",
  // Every variant's daemon idles in the same window, side by side (each on its own project): an idle daemon hardly disturbs another.
  plan: () => ({ windowSeconds: 60 }),
  estimateSeconds: ({ windowSeconds }, variants) => windowSeconds + 3 + 2 * variants,
  run: async ({ windowSeconds }, say, variants) => {
    const daemons = []
    for (const variant of variants) daemons.push({ variant, daemon: await startDaemon(makeProject(), variant) })
    await sleep(2000)
    const before = daemons.map(({ daemon }) => ({ all: cpuTicksWithChildren(daemon.pid), own: cpuTicks(daemon.pid) }))
    const w0 = performance.now()
    await sleep(windowSeconds * 1000)
    const used = daemons.map(({ daemon }, i) => ({ all: cpuTicksWithChildren(daemon.pid) - before[i].all, own: cpuTicks(daemon.pid) - before[i].own }))
    const wall = (performance.now() - w0) / 1000
    for (const { daemon } of daemons) await daemon.stop()
    say(daemons.map(({ variant }, i) => `${variant.label} ${used[i].all} ticks (own ${used[i].own})`).join(", ") + ` in ${fmt(wall, 1)} s`)
    return {
      rows: daemons.map(({ variant }, i) =>
        row(`daemon CPU while idle for ${windowSeconds} s (its own and its reaped children's)`, cpuPercentOfCore(used[i].all, TICKS_PER_SECOND, wall), {
          variant,
          unit: "% of a core",
          digits: 3,
          baseline: `${used[i].all} ticks of 1/${TICKS_PER_SECOND} s (its own: ${used[i].own}) in ${fmt(wall, 1)} s (default PROCESS_MONITOR_INTERVAL; the ${daemons.length} variants' daemons idle at once)`,
          target: "<= 0.5%",
          targetValue: 0.5,
          kind: "max"
        })
      ),
      notes: []
    }
  }
}

// ---------------------------------------------------------------------------------------------

const B7 = {
  id: "B7",
  title: "10,000 pending triggers for agents that are all busy: `daemon status` time, daemon start -> first spawn",
  // In each run every variant's daemon is started (one after the other), then the status calls go
  // round the variants (in turn forwards and backwards), each round followed by one `node -e 0`.
  plan: (mode) => ({ runs: mode === "full" ? 3 : 2, pending: 10_000, statusCalls: mode === "full" ? 10 : 5 }),
  estimateSeconds: ({ runs, statusCalls }, variants) => runs * (variants * 7 + statusCalls * (variants * 0.35 + 0.15) + 2),
  run: async ({ runs, pending, statusCalls }, say, variants) => {
    const agents = 10
    const firstSpawns = new Map(variants.map((v) => [v.label, []]))
    const statusTimes = new Map(variants.map((v) => [v.label, []]))
    const nodeTimes = []
    for (let r = 0; r < runs; r++) {
      const daemons = []
      for (const variant of rotated(variants, r)) {
        const project = makeProject()
        // The agents' long jobs go first (high priority); then the backlog for the same agents.
        for (let a = 0; a < agents; a++) project.write(`busy-agent-${a}`, { to_agent: `agent-${a}`, action: "sleep-600", priority: "high" })
        for (let i = 0; i < pending; i++) project.write(seqName(i, `agent-${i % agents}`), { to_agent: `agent-${i % agents}` })
        const daemon = await startDaemon(project, variant)
        await waitFor(() => project.countRecords("start") >= agents, { timeoutMs: 60_000, intervalMs: 20, what: `${agents} agents to start` })
        const first = project.readRecords().filter((x) => x.kind === "start").reduce((m, x) => (x.ns < m ? x.ns : m), 1n << 80n)
        firstSpawns.get(variant.label).push(Number(first - daemon.startedNs) / 1e9)
        // One call not counted: it writes the build's code cache if no earlier run has (a new baseline build has none).
        timeCli(project, ["daemon", "status"], variant)
        daemons.push({ variant, project, daemon })
      }
      for (let k = 0; k < statusCalls; k++) {
        for (const { variant, project } of k % 2 === 0 ? daemons : [...daemons].reverse()) {
          const status = timeCli(project, ["daemon", "status"], variant)
          if (status.status !== 0 || !status.stdout.includes(`${pending} pending`)) {
            throw new Error(`${variant.label}: daemon status failed or miscounted (exit ${status.status}):\n${status.stdout}${status.stderr}`)
          }
          statusTimes.get(variant.label).push(status.ms)
        }
        nodeTimes.push(timeNode())
      }
      for (const { daemon } of daemons) await daemon.stop()
      say(
        `run ${r + 1}/${runs}: ` +
          daemons.map(({ variant }) => `${variant.label} first spawn ${fmt(firstSpawns.get(variant.label)[r], 2)} s, status ${statusTimes.get(variant.label).slice(-statusCalls).map((t) => fmt(t, 0)).join(", ")} ms`).join("; ") +
          `; node -e 0 ${nodeTimes.slice(-statusCalls).map((t) => fmt(t, 0)).join(", ")} ms`
      )
    }
    const nodeMs = median(nodeTimes)
    return {
      rows: [
        ...variants.map((variant) => {
          const times = statusTimes.get(variant.label)
          return row("`starforge daemon status` / bare `node -e 0` (medians)", median(times) / nodeMs, {
            variant,
            unit: "x",
            digits: 2,
            baseline: `status ${fmt(median(times), 0)} ms (${times.length} calls, ${fmt(Math.min(...times), 0)}-${fmt(Math.max(...times), 0)} ms); node -e 0 ${fmt(nodeMs, 0)} ms`,
            target: "<= 2.5x",
            targetValue: 2.5,
            kind: "max"
          })
        }),
        ...variants.map((variant) => {
          const times = statusTimes.get(variant.label)
          return row("`starforge daemon status` (median; the old absolute target)", median(times), {
            variant,
            unit: " ms",
            digits: 0,
            baseline: `${times.length} calls, ${fmt(Math.min(...times), 0)}-${fmt(Math.max(...times), 0)} ms`,
            target: "<= 300 ms",
            targetValue: 300,
            kind: "max"
          })
        }),
        ...variants.map((variant) =>
          row("daemon start -> first spawn (median)", median(firstSpawns.get(variant.label)), {
            variant,
            unit: " s",
            digits: 2,
            baseline: `runs ${firstSpawns.get(variant.label).map((x) => fmt(x, 2)).join(", ")} s (process spawn to the agent's first record)`,
            target: "<= 2 s",
            targetValue: 2,
            kind: "max"
          })
        ),
        row("floor: a bare `node -e 0` (median)", nodeMs, {
          unit: " ms",
          digits: 0,
          baseline: `${nodeTimes.length} calls, ${fmt(Math.min(...nodeTimes), 0)}-${fmt(Math.max(...nodeTimes), 0)} ms, one after each round of status calls`,
          target: "—"
        })
      ],
      notes: []
    }
  }
}

// ---------------------------------------------------------------------------------------------

const B8 = {
  id: "B8",
  title: "100 agents running, `starforge daemon stop`: time until the daemon and every agent are gone",
  plan: (mode) => ({ runs: mode === "full" ? 3 : 2 }),
  estimateSeconds: ({ runs }, variants) => runs * variants * 7,
  run: async ({ runs }, say, variants) => {
    const agents = 100
    const totals = new Map(variants.map((v) => [v.label, []]))
    const cliTimes = new Map(variants.map((v) => [v.label, []]))
    for (let r = 0; r < runs; r++) {
      for (const variant of rotated(variants, r)) {
        const project = makeProject()
        for (let a = 0; a < agents; a++) project.write(seqName(a, `agent-${a}`), { to_agent: `agent-${a}`, action: "sleep-60" })
        const daemon = await startDaemon(project, variant)
        await waitFor(() => project.countRecords("start") >= agents, { timeoutMs: 60_000, intervalMs: 50, what: `${agents} agents to start` })
        const pids = project.readRecords().filter((x) => x.kind === "start").map((x) => x.pid)
        const t0 = performance.now()
        const stop = timeCli(project, ["daemon", "stop"], variant)
        if (stop.status !== 0) throw new Error(`${variant.label}: daemon stop failed (exit ${stop.status}): ${stop.stdout}${stop.stderr}`)
        await waitFor(() => !alive(daemon.pid) && pids.every((p) => !alive(p)), { timeoutMs: 60_000, intervalMs: 5, what: "the daemon and its agents to be gone" })
        totals.get(variant.label).push((performance.now() - t0) / 1000)
        cliTimes.get(variant.label).push(stop.ms / 1000)
        await daemon.exited
      }
      say(`run ${r + 1}/${runs}: all gone ` + rotated(variants, r).map((v) => `${v.label} ${fmt(totals.get(v.label)[r], 2)} s (the command ${fmt(cliTimes.get(v.label)[r], 2)} s)`).join(", ") + " after 'daemon stop' began")
    }
    return {
      rows: variants.map((variant) =>
        row("`daemon stop` -> daemon and 100 agents gone (median)", median(totals.get(variant.label)), {
          variant,
          unit: " s",
          digits: 2,
          baseline: `runs ${totals.get(variant.label).map((t) => fmt(t, 2)).join(", ")} s; the stop command itself ${cliTimes.get(variant.label).map((t) => fmt(t, 2)).join(", ")} s`,
          target: "<= 1.5 s",
          targetValue: 1.5,
          kind: "max"
        })
      ),
      notes: []
    }
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * `bench/sampling.mjs --json` on the build in `root` (its dist/), with `agents` agents and `passes`
 * passes: its figures, or { none: why } when that build has no resource sampling (its exit code 3).
 * Its sleeps get the environment of a temporary project, so `stopAll` finds any it leaves behind.
 */
const samplingRun = async (root, agents, passes) => {
  const { env } = makeProject()
  const run = spawnTracked(process.execPath, [SAMPLING, "--json", "--agents", String(agents), "--passes", String(passes), "--dist", path.join(root, "dist")], {
    env,
    stdio: ["ignore", "pipe", "pipe"]
  })
  let out = ""
  let err = ""
  run.child.stdout.on("data", (d) => (out += d))
  run.child.stderr.on("data", (d) => (err += d))
  const closed = new Promise((resolve) => run.child.once("close", resolve))
  const { code, signal } = await run.exited
  await closed
  if (code === 3) return { none: err.trim().replace(/^sampling: /, "") }
  if (code !== 0) throw new Error(`bench/sampling.mjs on ${root} failed (${code === null ? signal : `exit ${code}`}): ${err.trim().slice(-1500)}`)
  return JSON.parse(out)
}

const B9 = {
  id: "B9",
  title: "resource sampling: running agents (500; quick: 100), one pass every RESOURCE_SAMPLE_INTERVAL: the daemon's CPU for it",
  // One run of bench/sampling.mjs per build (after/linux and after/posix share this checkout's: its
  // linux layer's figures are after/linux's, its posix layer's after/posix's).
  plan: (mode) => ({ agents: mode === "full" ? 500 : 100, passes: mode === "full" ? 40 : 20 }),
  estimateSeconds: ({ agents, passes }, variants) => 2 + agents / 80 + (passes * agents) / 5000 + variants / 2,
  run: async ({ agents, passes }, say, variants) => {
    const byRoot = new Map()
    for (const variant of variants) {
      if (!byRoot.has(variant.root)) byRoot.set(variant.root, [])
      byRoot.get(variant.root).push(variant)
    }
    const results = new Map()
    for (const [root, those] of byRoot) {
      const result = await samplingRun(root, agents, passes)
      results.set(root, result)
      const labels = those.map((v) => v.label).join(", ")
      if (result.none !== undefined) say(`${labels}: no resource sampling in this build (${result.none})`)
      else
        say(
          `${labels}: ${Object.entries(result.layers)
            .map(([layer, f]) => `${layer} layer ${fmt(f.cpuPerPassMs, 2)} ms of CPU per pass (${fmt(f.sharePercentOfCore.at5s, 3)}% of a core at 5 s), wall ${fmt(f.wallMs.median, 1)} ms`)
            .join("; ")}; ${result.processesStarted} processes started, ${result.processTable ?? "?"} in the table`
        )
    }
    const rows = []
    const notes = []
    for (const variant of variants) {
      const result = results.get(variant.root)
      const layer = variant.env.STARFORGE_PLATFORM
      const f = result.layers?.[layer]
      if (f === undefined) {
        notes.push(`B9 ${variant.label}: no row: ${result.none === undefined ? `bench/sampling.mjs has no ${layer} layer on this machine` : `its build has no resource sampling (${result.none.split(": a build without")[0]})`}`)
        continue
      }
      const ps = f.psCpuMsPerPassMean === null ? "its ps calls not measurable here" : layer === "posix" ? `its ps call ${fmt(f.psCpuMsPerPassMean, 2)} ms (mean)` : "no ps call"
      rows.push(
        row(`daemon CPU for sampling ${agents} running agents at RESOURCE_SAMPLE_INTERVAL=5 (the daemon's own and its ps calls')`, f.sharePercentOfCore.at5s, {
          variant,
          unit: "% of a core",
          digits: 3,
          baseline:
            `${fmt(f.cpuPerPassMs, 2)} ms of CPU per pass on the ${layer} layer: the daemon's own ${fmt(f.daemonCpuMsPerPass.median, 2)} ms (median; p95 ${fmt(f.daemonCpuMsPerPass.p95, 2)}), ${ps}; ` +
            `wall ${fmt(f.wallMs.median, 2)} ms (median; p95 ${fmt(f.wallMs.p95, 2)}) over ${result.passes} passes; ${f.processesCounted} processes counted; ` +
            `at RESOURCE_SAMPLE_INTERVAL=1: ${fmt(f.sharePercentOfCore.at1s, 3)}% of a core`,
          target: "< 1%",
          targetValue: 1,
          kind: "max"
        })
      )
    }
    notes.unshift(
      `B9: per pass, one \`ProcessTable.usage\` call over every agent's group (each agent \`sh -c 'sleep 600 & exec sleep 600'\`, a group of two processes) on the variant's layer ` +
        "(linux: one scan of /proc; posix: one `ps` call): the CPU of the process making it (user + system) plus that of the `ps` it ran (the rise of its cutime + cstime, a mean per pass), " +
        "over the 5 s of RESOURCE_SAMPLE_INTERVAL's default, in % of one core (bench/sampling.mjs; run alone it prints both layers side by side)."
    )
    return { rows, notes }
  }
}

export const WORKLOADS = [B1, B2, B3, B4, B5, B6, B7, B8, B9]
