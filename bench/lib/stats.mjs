// Pure helpers of the benchmark harness: statistics, bounds, the seeded job mix, the verdicts and
// the results table. No I/O here, so they are unit-tested (test/bench/stats.test.ts).

/** The median of a non-empty list (mean of the two middle values for an even length). */
export const median = (values) => {
  if (values.length === 0) throw new Error("median of nothing")
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** Nearest-rank percentile (p in 0..100) of a non-empty list: the smallest value with p% at or below it. */
export const percentile = (values, p) => {
  if (values.length === 0) throw new Error("percentile of nothing")
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length))
  return sorted[Math.min(rank, sorted.length) - 1]
}

/** Deterministic pseudo-random numbers in [0, 1) (mulberry32), so a seed always gives the same job mix. */
export const seededRandom = (seed) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * The B2 job mix: `agents` x `perAgent` jobs in queue order (round-robin over the agents), each
 * lasting between `minSeconds` and `maxSeconds`, rounded to 10 ms.
 */
export const seededJobs = ({ agents, perAgent, minSeconds, maxSeconds, seed }) => {
  const random = seededRandom(seed)
  const jobs = []
  for (let i = 0; i < perAgent; i++) {
    for (let a = 0; a < agents; a++) {
      const seconds = Math.round((minSeconds + random() * (maxSeconds - minSeconds)) * 100) / 100
      jobs.push({ agent: `agent-${a}`, seconds })
    }
  }
  return jobs
}

/**
 * No schedule can be shorter than the busiest agent's total (an agent runs one job at a time) or
 * than the total work spread over `cap` agents at once.
 */
export const makespanLowerBound = (jobs, cap) => {
  const perAgent = new Map()
  let total = 0
  for (const { agent, seconds } of jobs) {
    perAgent.set(agent, (perAgent.get(agent) ?? 0) + seconds)
    total += seconds
  }
  return Math.max(0, ...perAgent.values(), total / cap)
}

/**
 * The makespan of the daemon's policy with zero overhead: whenever a slot frees, start the first
 * job in queue order whose agent is idle, while fewer than `cap` run. What no implementation of
 * the contract's order can beat; the gap to it is the daemon's own overhead.
 */
export const policyMakespan = (jobs, cap) => {
  const waiting = jobs.map((job, index) => ({ ...job, index }))
  const running = [] // { agent, end }
  let now = 0
  let makespan = 0
  while (waiting.length > 0 || running.length > 0) {
    const busy = new Set(running.map((r) => r.agent))
    for (let i = 0; i < waiting.length && running.length < cap;) {
      const job = waiting[i]
      if (busy.has(job.agent)) {
        i++
        continue
      }
      waiting.splice(i, 1)
      busy.add(job.agent)
      running.push({ agent: job.agent, end: now + job.seconds })
    }
    running.sort((a, b) => a.end - b.end)
    const next = running.shift()
    now = next.end
    makespan = Math.max(makespan, now)
  }
  return makespan
}

/**
 * Each lane's jobs, dealt in queue order over `lanes` lanes (job i to lane i % lanes), as the
 * sleeps a shell loop runs back to back (`shellLanes` in workloads.mjs).
 */
export const dealLanes = (jobs, lanes) => {
  const dealt = Array.from({ length: Math.min(lanes, jobs.length) }, () => [])
  jobs.forEach((job, i) => dealt[i % dealt.length].push(job.seconds))
  return dealt
}

/**
 * What a job costs beyond its sleep when nothing schedules it, from the runs of shell loops that
 * ran `lanes[i]` (sleeps, in order) back to back and recorded themselves as `lane-<i>`: the
 * agent's own time beyond its sleep (its forks of date and sleep) and the gap from one job's end to
 * the next one's start in its lane (the shell starting the agent). Medians, in seconds: what most
 * jobs pay, so a makespan built on them is no longer than one built on their means.
 */
export const laneCosts = (lanes, runs) => {
  const own = []
  const gaps = []
  lanes.forEach((sleeps, i) => {
    const list = runs.filter((r) => r.agent === `lane-${i}`).sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0))
    if (list.length !== sleeps.length) throw new Error(`lane ${i} recorded ${list.length} runs of ${sleeps.length}`)
    list.forEach((run, k) => {
      own.push(Number(run.end - run.start) / 1e9 - sleeps[k])
      if (k + 1 < list.length) gaps.push(Number(list[k + 1].start - run.end) / 1e9)
    })
  })
  return { ownSeconds: median(own), gapSeconds: gaps.length === 0 ? 0 : median(gaps) }
}

/**
 * The makespan of the contract's order with no scheduler overhead at all, each job lasting its
 * sleep plus what the agent itself costs (`laneCosts`): every job but the first of its slot is
 * preceded by the gap a shell needs to start it. No implementation of the contract's order on
 * this machine can beat it, whatever it does.
 */
export const floorMakespan = (jobs, cap, { ownSeconds, gapSeconds }) =>
  policyMakespan(jobs.map((job) => ({ agent: job.agent, seconds: job.seconds + ownSeconds + gapSeconds })), cap) - gapSeconds

/** Start and end times (ns, bigint) of agent runs: first start to last end, in seconds. */
export const makespanSeconds = (runs) => {
  if (runs.length === 0) throw new Error("no agent runs recorded")
  let first = runs[0].start
  let last = runs[0].end
  for (const { start, end } of runs) {
    if (start < first) first = start
    if (end > last) last = end
  }
  return Number(last - first) / 1e9
}

/**
 * Pairs `start`/`end` records by process id into runs `{ agent, pid, start, end }`. Records are
 * `{ kind, ns, pid, agent }`; a start without an end (a killed agent) is left out.
 */
export const pairRuns = (records) => {
  const open = new Map()
  const runs = []
  for (const r of records) {
    if (r.kind === "start") open.set(r.pid, r)
    else if (r.kind === "end") {
      const s = open.get(r.pid)
      if (s === undefined) continue
      open.delete(r.pid)
      runs.push({ agent: s.agent, pid: r.pid, start: s.ns, end: r.ns })
    }
  }
  return runs
}

/**
 * Where the makespan of the agent that finished last went, in seconds: how long after the first
 * start its first job started, its jobs' own time beyond `jobSeconds` each (the agent's forks of
 * `sleep` and `date`), and the gaps between its jobs (its exit -> its next start).
 */
export const slowestChain = (runs, jobSeconds) => {
  let first = runs[0].start
  for (const r of runs) if (r.start < first) first = r.start
  const byAgent = new Map()
  for (const r of runs) byAgent.set(r.agent, [...(byAgent.get(r.agent) ?? []), r])
  let slowest
  for (const [agent, list] of byAgent) {
    list.sort((a, b) => (a.start < b.start ? -1 : 1))
    const last = list[list.length - 1].end
    if (slowest === undefined || last > slowest.last) slowest = { agent, list, last }
  }
  const s = (ns) => Number(ns) / 1e9
  const { agent, list } = slowest
  let own = 0
  let gaps = 0
  for (let i = 0; i < list.length; i++) {
    own += s(list[i].end - list[i].start) - jobSeconds
    if (i + 1 < list.length) gaps += s(list[i + 1].start - list[i].end)
  }
  return { agent, firstStart: s(list[0].start - first), own, gaps, jobs: list.length }
}

/** Parses the agents' record lines `<kind> <ns> <pid> <agent>`. */
export const parseRecords = (text) =>
  text.split("\n").filter((l) => l.trim() !== "").map((line) => {
    const [kind, ns, pid, agent = ""] = line.trim().split(" ")
    return { kind, ns: BigInt(ns), pid: Number(pid), agent }
  })

/** Whether no agent ever ran two jobs at once (the one-slot-per-agent rule, from the agents' own records). */
export const agentsNeverOverlap = (runs) => {
  const byAgent = new Map()
  for (const run of runs) byAgent.set(run.agent, [...(byAgent.get(run.agent) ?? []), run])
  for (const list of byAgent.values()) {
    list.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0))
    for (let i = 1; i < list.length; i++) if (list[i].start < list[i - 1].end) return false
  }
  return true
}

/** CPU time (clock ticks) over a wall-clock window, as a percentage of one core. */
export const cpuPercentOfCore = (ticks, ticksPerSecond, wallSeconds) => (ticks / ticksPerSecond / wallSeconds) * 100

/**
 * What a throughput target leaves the daemon's own process, in ms of CPU per job: at
 * `targetJobsPerSecond`, `cores` give `cores / rate` of CPU per job, of which everything else the
 * run needs (`othersMsPerJob`: the spawn helper, the agents, the kernel) is taken first; and the
 * daemon's single thread can use at most one core, `1 / rate`.
 */
export const daemonCpuBudget = ({ targetJobsPerSecond, cores, othersMsPerJob }) => {
  const wallMsPerJob = 1000 / targetJobsPerSecond
  const capacityMsPerJob = cores * wallMsPerJob
  return { wallMsPerJob, capacityMsPerJob, daemonMsPerJob: Math.min(wallMsPerJob, capacityMsPerJob - othersMsPerJob) }
}

/** `met` when `value` is on the right side of `target` ("max": at most, "min": at least). */
export const verdict = (value, target, kind) => {
  if (!Number.isFinite(value)) return "missed"
  return (kind === "max" ? value <= target : value >= target) ? "met" : "missed"
}

/** A fixed-precision number without trailing noise. */
export const fmt = (value, digits = 3) => (Number.isFinite(value) ? Number(value.toFixed(digits)).toString() : String(value))

/**
 * `fmt`, with as many more digits (up to three) as it takes to tell `value` from `target` when it
 * would round to it: 0.9497 against 0.95 shows as 0.9497, not as a missed 0.95.
 */
export const fmtAgainst = (value, target, digits = 3) => {
  let shown = digits
  while (target !== undefined && shown < digits + 3 && value !== target && Number(value.toFixed(shown)) === target) shown++
  return fmt(value, shown)
}

/** A Markdown table. */
export const markdownTable = (header, rows) => {
  const line = (cells) => `| ${cells.map((c) => String(c).replace(/\|/g, "\\|")).join(" | ")} |`
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n")
}
