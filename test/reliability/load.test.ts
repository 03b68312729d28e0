/**
 * Load: 10,000 triggers already queued at start, for 100 agents, with a fast agent. Every trigger
 * is processed exactly once, never more than MAX_CONCURRENT_AGENTS run at once, each agent takes
 * its triggers in queue order, and the daemon's memory stays bounded (its peak RSS is printed).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { exitWithin, maxOverlap, type Run, startForeground } from "../support/daemonHelpers.js"
import { listDir, readText, trigger, useProjects, waitFor } from "../support/project.js"

const projects = useProjects()

const TRIGGERS = 10_000
const AGENTS = 100
const CAP = 20

/** Records start and end with bash's clock builtin: no fork, so the agent costs one exec. */
const FAST_AGENT = `#!/bin/bash
rec="$STARFORGE_PROJECT_ROOT/records.txt"
t="\${STARFORGE_TRIGGER_FILE##*/}"
echo "start $STARFORGE_AGENT_ID \${t%.processing} $EPOCHREALTIME $$" >> "$rec"
echo "end $STARFORGE_AGENT_ID \${t%.processing} $EPOCHREALTIME $$" >> "$rec"
`

/** Microseconds since the epoch from bash's `$EPOCHREALTIME` (`seconds.micros`). */
const micros = (text: string) => BigInt(text.replace(".", ""))

const peakRssKiB = (pid: number): number => {
  const status = readText(`/proc/${pid}/status`) ?? ""
  return Number(/^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1] ?? Number.NaN)
}

describe("load", () => {
  it(`${TRIGGERS} queued triggers for ${AGENTS} agents: all run once, under the cap, in order per agent`, async () => {
    const p = projects.make({ MAX_CONCURRENT_AGENTS: String(CAP), PROCESS_MONITOR_INTERVAL: "5" })
    const agent = path.join(p.root, "fast-agent.sh")
    fs.writeFileSync(agent, FAST_AGENT, { mode: 0o755 })
    // Zero-padded names: the files are made in index order, so queue order is index order.
    const name = (i: number) => `t${String(i).padStart(5, "0")}`
    for (let i = 0; i < TRIGGERS; i++) p.drop(name(i), trigger(`agent-${i % AGENTS}`, `job ${i}`))

    const started = Date.now()
    const fg = await startForeground(p, { AGENT_COMMAND: agent })
    const processed = path.join(p.triggers, "processed")
    await waitFor(() => listDir(processed).filter((f) => f.endsWith(".trigger")).length === TRIGGERS, {
      timeoutMs: 540_000,
      intervalMs: 500,
      what: `all ${TRIGGERS} triggers to be archived`
    })
    const seconds = (Date.now() - started) / 1000
    const peakKiB = peakRssKiB(fg.pid)
    fg.child.kill("SIGTERM")
    expect((await exitWithin(fg, 20_000)).code).toBe(0)

    // Exactly once each, nothing left behind in the queue.
    const archived = listDir(processed).filter((f) => f.endsWith(".trigger"))
    expect(new Set(archived.map((f) => f.replace(/^\d{8}-\d{6}-/, ""))).size).toBe(TRIGGERS)
    expect(listDir(path.join(processed, "invalid"))).toEqual([])
    expect(listDir(path.join(p.triggers, "dead-letter"))).toEqual([])
    expect(listDir(p.triggers).filter((f) => f.endsWith(".trigger") || f.endsWith(".processing"))).toEqual([])

    const lines = (readText(p.records) ?? "").trim().split("\n")
    // Keyed by trigger: each runs once, while pids may be reused over 10,000 processes.
    const runs = new Map<string, { agent: string; trigger: string; pid: number; start: bigint; end?: bigint }>()
    const order = new Map<string, Array<number>>()
    for (const line of lines) {
      const [kind, agentId, triggerName, time, pid] = line.split(" ")
      if (kind === "start") {
        expect(runs.has(triggerName!), `${triggerName} ran twice`).toBe(false)
        runs.set(triggerName!, { agent: agentId!, trigger: triggerName!, pid: Number(pid), start: micros(time!) })
        order.set(agentId!, [...(order.get(agentId!) ?? []), Number(triggerName!.slice(1))])
      } else runs.get(triggerName!)!.end = micros(time!)
    }
    expect(runs.size).toBe(TRIGGERS)
    const all: Array<Run> = Array.from(runs.values(), (r) => ({ ...r, attempt: 1, end: r.end }))
    const overlap = maxOverlap(all)
    expect(overlap).toBeLessThanOrEqual(CAP)
    // Each agent ran its own triggers, in queue order, one at a time.
    expect(order.size).toBe(AGENTS)
    for (const [agentId, indices] of order) {
      expect(indices, agentId).toEqual([...indices].sort((a, b) => a - b))
      expect(indices.every((i) => `agent-${i % AGENTS}` === agentId)).toBe(true)
      expect(maxOverlap(all.filter((r) => r.agent === agentId)), agentId).toBe(1)
    }
    expect(peakKiB).toBeLessThan(512 * 1024)
    console.log(
      `load: ${TRIGGERS} triggers, ${AGENTS} agents, cap ${CAP}: ${seconds.toFixed(1)} s ` +
        `(${(TRIGGERS / seconds).toFixed(0)} jobs/s), most at once ${overlap}, daemon peak RSS ${(peakKiB / 1024).toFixed(0)} MiB`
    )
  }, 600_000)
})
