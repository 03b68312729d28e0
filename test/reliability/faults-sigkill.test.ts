/**
 * Faults, "nothing lost": the daemon SIGKILLed at random moments while 200 triggers for 10 agents
 * run, restarted each time. At the end every trigger is archived exactly once where its kind
 * says (done, invalid, dead-letter), nothing is left in the queue, no process is left, and no
 * agent ever ran two jobs at the same time.
 *
 * "Ran two jobs at the same time", precisely: every run of the agent writes a `start` record as
 * its first act and an `end` record as its last (on its own exit, and from its SIGTERM trap when
 * the daemon, or a restarted daemon's recovery, stops it). A run is the interval from its start
 * record to its end record (a subset of the process's life, which the daemon waits out before it
 * starts the agent again). Two runs of one agent overlap when one starts before the other ends;
 * a run without an end record counts as never ending. The check: for every agent, at most one
 * run at any instant, and every run has its end record.
 *
 * The seed is printed with the figures; set STARFORGE_CHAOS_SEED to replay a run.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { busyAgents, deadLetters, invalidEntries, maxOverlap, queueFiles, readSlots, runsOf } from "../support/daemonHelpers.js"
import { daemonLog, isAlive, listDir, projectProcesses, records, trigger, useProjects, waitFor } from "../support/project.js"
import { seeded } from "../support/seeded.js"

const projects = useProjects()

/**
 * The chaos agent: the start record first, the end record last, also from its SIGTERM trap.
 * Its output goes nowhere: a daemon killed mid-run closes the agent's output pipes, and any
 * write there (even the shell's own notice of a killed job) would kill it by SIGPIPE before it
 * could record its end.
 */
const AGENT = `#!/bin/sh
exec >/dev/null 2>&1
for last; do :; done
rec="$STARFORGE_PROJECT_ROOT/records.txt"
id="$STARFORGE_AGENT_ID $(basename "$STARFORGE_TRIGGER_FILE" .processing) $STARFORGE_ATTEMPT"
trap 'echo "end $id $(date +%s%N) $$ term" >> "$rec"; exit 143' TERM
echo "start $id $(date +%s%N) $$" >> "$rec"
msg=$(printf '%s' "$last" | sed -n 's/^Message: //p')
sleep "\${msg%% *}" &
wait $!
code=\${msg#* }
echo "end $id $(date +%s%N) $$ exit=$code" >> "$rec"
exit "$code"
`

const AGENTS = Array.from({ length: 10 }, (_, i) => `agent-${i}`)
const TRIGGERS = 200
const KILLS = 6

type Kind = "done" | "invalid" | "dead-letter"

/** Archived stems, without the `yyyymmdd-HHMMSS-` prefix, in each outcome directory. */
const archived = (triggers: string) => {
  const strip = (n: string) => n.replace(/^\d{8}-\d{6}-/, "").replace(/\.trigger$/, "")
  return {
    done: listDir(path.join(triggers, "processed")).filter((n) => n.endsWith(".trigger")).map(strip),
    invalid: listDir(path.join(triggers, "processed", "invalid")).filter((n) => n.endsWith(".trigger")).map(strip),
    "dead-letter": listDir(path.join(triggers, "dead-letter")).filter((n) => n.endsWith(".trigger")).map(strip)
  }
}

describe("daemon SIGKILLed during a run", () => {
  it(`200 triggers for 10 agents, ${KILLS} SIGKILLs at random moments: each archived once, nothing left, no agent ran two jobs at once`, async () => {
    const seed = Number(process.env["STARFORGE_CHAOS_SEED"] ?? Math.floor(Math.random() * 2 ** 31))
    console.log(`chaos seed: ${seed} (STARFORGE_CHAOS_SEED=${seed} replays it)`)
    const random = seeded(seed)
    const p = projects.make({ MAX_RETRIES: "2", INITIAL_RETRY_DELAY: "0.1", AGENT_KILL_GRACE: "2" })
    const agentScript = path.join(p.root, "chaos-agent.sh")
    fs.writeFileSync(agentScript, AGENT, { mode: 0o755 })
    p.env["AGENT_COMMAND"] = agentScript

    // 200 triggers round-robin over the agents: most succeed, some always fail, some are invalid.
    const expected = new Map<string, Kind>()
    for (let i = 0; i < TRIGGERS; i++) {
      const agent = AGENTS[i % AGENTS.length]!
      const name = `${agent}-job-${String(i).padStart(3, "0")}`
      const roll = random()
      const kind: Kind = roll < 0.08 ? "invalid" : roll < 0.16 ? "dead-letter" : "done"
      // Mostly short jobs; one in eight long enough to outlive a daemon killed under it.
      const sleep = (random() < 0.125 ? 0.8 + random() * 0.8 : 0.02 + random() * 0.15).toFixed(2)
      expected.set(name, kind)
      p.drop(name, kind === "invalid" ? { ...trigger(agent), to_agent: "no such/agent" } : trigger(agent, `${sleep} ${kind === "done" ? 0 : 1}`))
    }

    const started = Date.now()
    const total = () => {
      const a = archived(p.triggers)
      return a.done.length + a.invalid.length + a["dead-letter"].length
    }
    // Kill points: random archive counts between 5 % and 90 % of the run, then a random extra delay.
    const points = Array.from({ length: KILLS }, () => Math.floor(TRIGGERS * (0.05 + random() * 0.85))).sort((a, b) => a - b)
    const kills: Array<{ at: number; pid: number; running: number }> = []
    for (const point of points) {
      const start = await p.cli(["daemon", "start"])
      expect(start.code, start.stdout + start.stderr).toBe(0)
      const pid = Number(/Daemon started \(PID: (\d+)\)/.exec(start.stdout)?.[1])
      expect(pid, start.stdout).toBeGreaterThan(0)
      await waitFor(() => total() >= point, { timeoutMs: 30_000, intervalMs: 10, what: `${point} triggers archived` })
      await new Promise((r) => setTimeout(r, Math.floor(random() * 300)))
      const running = runsOf(records(p)).filter((r) => r.end === undefined).length
      process.kill(pid, "SIGKILL")
      await waitFor(() => !isAlive(pid), { what: "the daemon to die" })
      kills.push({ at: total(), pid, running })
    }
    const last = await p.cli(["daemon", "start"])
    expect(last.code, last.stdout + last.stderr).toBe(0)
    await waitFor(() => total() === TRIGGERS && queueFiles(p).length === 0, {
      timeoutMs: 40_000,
      intervalMs: 20,
      what: "every trigger archived"
    })
    await waitFor(() => busyAgents(readSlots(p)).length === 0, { what: "every slot idle" })
    const stop = await p.cli(["daemon", "stop"])
    expect(stop.code).toBe(0)
    const seconds = (Date.now() - started) / 1000

    // Every trigger archived exactly once, where its kind says; nothing left in the queue.
    const outcome = archived(p.triggers)
    const seen = new Map<string, Array<Kind>>()
    for (const kind of ["done", "invalid", "dead-letter"] as const) {
      for (const name of outcome[kind]) seen.set(name, [...(seen.get(name) ?? []), kind])
    }
    expect([...seen.keys()].sort()).toEqual([...expected.keys()].sort())
    for (const [name, kind] of expected) expect(seen.get(name), name).toEqual([kind])
    expect(queueFiles(p)).toEqual([])
    expect(listDir(p.triggers).filter((n) => n.endsWith(".processing"))).toEqual([])
    expect(invalidEntries(p).filter((n) => n.endsWith(".reason.txt"))).toHaveLength(outcome.invalid.length)
    expect(deadLetters(p).every((n) => fs.existsSync(path.join(p.triggers, "dead-letter", `${n}.meta.json`)))).toBe(true)

    // No process left: no daemon, no agent, nothing of their groups.
    expect(projectProcesses(p.root)).toEqual([])

    // No agent ever ran two jobs at once, and every run recorded its end.
    const runs = runsOf(records(p))
    const unended = runs.filter((r) => r.end === undefined)
    const about = (pid: number) => daemonLog(p).split("\n").filter((l) => new RegExp(`\\b${pid}\\b`).test(l)).join("\n")
    expect(unended, `runs without an end record:\n${unended.map((r) => about(r.pid)).join("\n")}`).toEqual([])
    for (const agent of AGENTS) {
      expect(maxOverlap(runs.filter((r) => r.agent === agent)), `${agent} ran two jobs at once`).toBe(1)
    }
    // Invalid triggers never ran; every other trigger ran at least once, to its end.
    const ranTriggers = new Set(runs.map((r) => r.trigger))
    for (const [name, kind] of expected) expect(ranTriggers.has(name), name).toBe(kind !== "invalid")

    const terms = (fs.readFileSync(p.records, "utf8").match(/ term$/gm) ?? []).length
    const reruns = [...ranTriggers].filter((t) => runs.filter((r) => r.trigger === t && r.attempt === 1).length > 1).length
    const recovered = (daemonLog(p).match(/RECOVERY: Stopped orphaned agent/g) ?? []).length
    console.log(
      `chaos: ${kills.length} SIGKILLs at ${kills.map((k) => `${k.at} archived/${k.running} running`).join(", ")}; ` +
        `${runs.length} runs, ${terms} stopped by SIGTERM, ${recovered} orphans stopped by recovery, ${reruns} triggers rerun from attempt 1; ` +
        `done ${outcome.done.length}, invalid ${outcome.invalid.length}, dead-letter ${outcome["dead-letter"].length}; ${seconds.toFixed(1)} s`
    )
    expect(kills.length).toBeGreaterThanOrEqual(5)
  }, 120_000)
})
