/**
 * Samples the CPU and memory of every running agent's process tree every
 * `RESOURCE_SAMPLE_INTERVAL`, all agents in one look at the process table (`ProcessTable.usage`).
 * Each pass is written to the agents' slots, set on the per-agent metrics and published, so an
 * attempt can stop its agent once it stays over `AGENT_MAX_MEMORY_MB` (`overLimit`) and record
 * its peak memory and CPU time (`latest`).
 */
import { Cause, Clock, Context, Duration, Effect, Layer, Metric, Option, PubSub, Ref, Schedule, Stream } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { isoSeconds } from "../domain/time.js"
import { DaemonLog } from "../observability/DaemonLog.js"
import { ProcessTable } from "../platform/ProcessTable.js"
import { AgentSlots } from "../slots/AgentSlots.js"

/** One agent's process tree at one pass, with what its attempt used so far. */
export interface AgentResources {
  readonly agent: string
  /** The agent's pid (and process group). */
  readonly pid: number
  /** CPU use since the previous sample, in % of one core (above 100 on several cores). */
  readonly cpuPercent: number | null
  readonly rssBytes: number
  readonly processes: number
  /** The largest `rssBytes` of the attempt so far. */
  readonly peakRssBytes: number
  /** CPU time the attempt's processes used so far. */
  readonly cpuSeconds: number
  readonly sampledAtMs: number
}

export interface ResourceMonitorShape {
  /** The agent's last sample while it runs as `pid`. */
  readonly latest: (agent: string, pid: number) => Effect.Effect<Option.Option<AgentResources>>
  /**
   * Succeeds once the tree of `agent`, running as `pid`, has used more than `limitBytes` in two
   * samples in a row; with the second of them.
   */
  readonly overLimit: (agent: string, pid: number, limitBytes: number) => Effect.Effect<AgentResources>
}

export class ResourceMonitor extends Context.Tag("starforge/ResourceMonitor")<ResourceMonitor, ResourceMonitorShape>() {}

/** The metrics of each agent (tagged `agent`), exported with the spans when OTLP is on. */
export const metrics = {
  cpuPercent: Metric.gauge("starforge.agent.cpu_percent", { description: "CPU use of the agent's processes, % of one core" }),
  rssBytes: Metric.gauge("starforge.agent.rss_bytes", { description: "Resident memory of the agent's processes" }),
  processes: Metric.gauge("starforge.agent.processes", { description: "Processes in the agent's tree" })
}

const setMetrics = (agent: string, cpuPercent: number, rssBytes: number, processes: number) =>
  Effect.all([
    Metric.set(Metric.tagged(metrics.cpuPercent, "agent", agent), cpuPercent),
    Metric.set(Metric.tagged(metrics.rssBytes, "agent", agent), rssBytes),
    Metric.set(Metric.tagged(metrics.processes, "agent", agent), processes)
  ], { discard: true })

/** The next sample of one agent from its tree's usage now and its previous sample. */
export const nextSample = (
  agent: string,
  pid: number,
  tree: { readonly rssBytes: number; readonly cpuSeconds: number; readonly processes: number },
  previous: AgentResources | undefined,
  startedMs: number,
  nowMs: number
): AgentResources => {
  const same = previous !== undefined && previous.pid === pid ? previous : undefined
  // The tree's CPU time drops when a process exits unreaped by the tree: never count that as negative.
  const cpuSeconds = Math.max(same?.cpuSeconds ?? 0, tree.cpuSeconds)
  const sinceMs = same ? nowMs - same.sampledAtMs : nowMs - startedMs
  const used = cpuSeconds - (same?.cpuSeconds ?? 0)
  return {
    agent,
    pid,
    cpuPercent: sinceMs >= 100 ? Math.round((used / (sinceMs / 1000)) * 1000) / 10 : null,
    rssBytes: tree.rssBytes,
    processes: tree.processes,
    peakRssBytes: Math.max(same?.peakRssBytes ?? 0, tree.rssBytes),
    cpuSeconds,
    sampledAtMs: nowMs
  }
}

export const make = Effect.gen(function*() {
  const { settings } = yield* DaemonConfig
  const table = yield* ProcessTable
  const slots = yield* AgentSlots
  const log = yield* DaemonLog
  const samples = yield* Ref.make<ReadonlyMap<string, AgentResources>>(new Map())
  const passes = yield* PubSub.sliding<ReadonlyMap<string, AgentResources>>(16)

  const pass = Effect.gen(function*() {
    const running = Object.entries(yield* slots.snapshot).flatMap(([agent, slot]) =>
      slot.status === "busy" && slot.pid !== null ? [{ agent, pid: Number(slot.pid), startedMs: Date.parse(slot.started_at ?? "") }] : [])
    const before = yield* Ref.get(samples)
    const usage = running.length === 0 ? new Map() : yield* table.usage(running.map((r) => r.pid))
    const now = yield* Clock.currentTimeMillis
    const next = new Map<string, AgentResources>()
    for (const { agent, pid, startedMs } of running) {
      const tree = usage.get(pid)
      if (tree === undefined) {
        // Exited, its attempt not yet recorded: the last sample stays for its history line.
        const last = before.get(agent)
        if (last?.pid === pid) next.set(agent, last)
        continue
      }
      const sample = nextSample(agent, pid, tree, before.get(agent), Number.isNaN(startedMs) ? now : startedMs, now)
      next.set(agent, sample)
      yield* slots.setResources(agent, pid, {
        cpu_percent: sample.cpuPercent,
        rss_bytes: sample.rssBytes,
        processes: sample.processes,
        peak_rss_bytes: sample.peakRssBytes,
        cpu_seconds: Math.round(sample.cpuSeconds * 100) / 100,
        sampled_at: isoSeconds(now)
      })
      yield* setMetrics(agent, sample.cpuPercent ?? 0, sample.rssBytes, sample.processes)
    }
    // An agent that stopped running reads zero until it runs again.
    for (const agent of before.keys()) if (!next.has(agent)) yield* setMetrics(agent, 0, 0, 0)
    yield* Ref.set(samples, next)
    yield* PubSub.publish(passes, next)
  })

  // A pass that fails (`ps` cannot run) is said once in the daemon log, and once when passes work again.
  const failing = yield* Ref.make(false)
  const reported = pass.pipe(
    Effect.zipRight(Effect.flatMap(Ref.getAndSet(failing, false), (was) => (was ? log.event("MONITOR", "Resource sampling works again") : Effect.void))),
    Effect.catchAllCause((cause) =>
      Effect.flatMap(Ref.getAndSet(failing, true), (was) => {
        const why = Cause.squash(cause)
        return was ? Effect.void : log.event("WARN", `Resource sampling failed: ${why instanceof Error ? why.message : String(why)}; tried again every pass`)
      }))
  )
  if (settings.resourceSampleIntervalMs > 0) {
    yield* reported.pipe(Effect.repeat(Schedule.spaced(Duration.millis(settings.resourceSampleIntervalMs))), Effect.forkScoped)
  }

  return {
    latest: (agent, pid) =>
      Effect.map(Ref.get(samples), (all) => Option.fromNullable(all.get(agent)).pipe(Option.filter((s) => s.pid === pid))),
    overLimit: (agent, pid, limitBytes) =>
      Stream.fromPubSub(passes).pipe(
        Stream.filterMap((pass) => Option.fromNullable(pass.get(agent)).pipe(Option.filter((s) => s.pid === pid))),
        Stream.mapAccum(0, (over, sample) => {
          const inARow = sample.rssBytes > limitBytes ? over + 1 : 0
          return [inARow, { inARow, sample }] as const
        }),
        Stream.find(({ inARow }) => inARow >= 2),
        Stream.runHead,
        // The stream of passes never ends while the daemon runs: only a pass over the limit ends it.
        Effect.flatMap(Option.match({ onNone: () => Effect.never, onSome: ({ sample }) => Effect.succeed(sample) }))
      )
  } satisfies ResourceMonitorShape
})

export const layer = Layer.scoped(ResourceMonitor, make)
