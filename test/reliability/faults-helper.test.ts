/**
 * Faults: the spawn helper SIGKILLed at random moments while 200 triggers for 8 agents run
 * (issue 25, part 2). The daemon keeps running: it starts a new helper, stops the agents the dead
 * one had started (their exit status died with it) and ends their attempts as failed, so they
 * are retried; a spawn the dead helper had not answered never leaves a second copy running.
 *
 * At the end: every trigger archived exactly once (all succeed in the end), none in the
 * dead-letter queue, no agent ever ran two jobs at once (the recording agent's start and end
 * records, as in faults-sigkill.test.ts), no process left after the daemon stops, and no exit
 * status invented: an attempt recorded as a success in history.jsonl is one whose agent recorded
 * its own `exit=0`, and an attempt whose end was unknown is recorded as failed.
 *
 * Every wait is for an event with a deadline; the only sleeps are the short random spacings
 * that place the kills. The seed is printed; STARFORGE_CHAOS_SEED replays a run.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { archivedTriggers, busyAgents, deadLetters, exitWithin, maxOverlap, queueFiles, readSlots, runsOf, startForeground } from "../support/daemonHelpers.js"
import { isAlive, listDir, projectProcesses, records, trigger, useProjects, waitFor } from "../support/project.js"
import { seeded } from "../support/seeded.js"

const projects = useProjects()

/**
 * The agent: the start record first, the end record last (with its exit, or `term` from its
 * SIGTERM trap). It writes a line of output at its start and at its end through the helper's
 * pipes; SIGPIPE is ignored, so a pipe whose reader (the helper) died fails that write instead of
 * killing the agent before it records its end.
 */
const AGENT = `#!/bin/sh
trap '' PIPE
for last; do :; done
rec="$STARFORGE_PROJECT_ROOT/records.txt"
id="$STARFORGE_AGENT_ID $(basename "$STARFORGE_TRIGGER_FILE" .processing) $STARFORGE_ATTEMPT"
trap 'echo "end $id $(date +%s%N) $$ term" >> "$rec"; exit 143' TERM
echo "start $id $(date +%s%N) $$" >> "$rec"
echo "working on $id" 2>/dev/null
msg=$(printf '%s' "$last" | sed -n 's/^Message: //p')
sleep "$msg" &
wait $!
echo "done with $id" 2>/dev/null
echo "end $id $(date +%s%N) $$ exit=0" >> "$rec"
exit 0
`

const AGENTS = Array.from({ length: 8 }, (_, i) => `agent-${i}`)
const TRIGGERS = 200
const KILLS = 5

/** Live processes named as the spawn helper whose parent is `daemon`. */
const helpersOf = (daemon: number): Array<number> => {
  const found: Array<number> = []
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8")
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      if (fields[0] === "Z" || Number(fields[1]) !== daemon) continue
      if (fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").includes("spawn-helper")) found.push(Number(entry))
    } catch {
      // Gone while we looked.
    }
  }
  return found
}

interface HistoryLine {
  readonly trigger: string
  readonly agent: string
  readonly attempt: number
  readonly outcome: string
  readonly exit_code: number | null
  readonly signal: string | null
}

describe("spawn helper SIGKILLed during a run", () => {
  it(`200 triggers for 8 agents, the helper SIGKILLed ${KILLS} times: each archived once, no overlap, nothing left, no status invented`, async () => {
    const seed = Number(process.env["STARFORGE_CHAOS_SEED"] ?? Math.floor(Math.random() * 2 ** 31))
    console.log(`helper chaos seed: ${seed} (STARFORGE_CHAOS_SEED=${seed} replays it)`)
    const random = seeded(seed)
    const p = projects.make({ MAX_CONCURRENT_AGENTS: "8", MAX_RETRIES: "5", INITIAL_RETRY_DELAY: "0.1", AGENT_KILL_GRACE: "1" })
    const agentScript = path.join(p.root, "helper-chaos-agent.sh")
    fs.writeFileSync(agentScript, AGENT, { mode: 0o755 })
    p.env["AGENT_COMMAND"] = agentScript

    const expected = new Set<string>()
    for (let i = 0; i < TRIGGERS; i++) {
      const agent = AGENTS[i % AGENTS.length]!
      const name = `${agent}-job-${String(i).padStart(3, "0")}`
      expected.add(name)
      p.drop(name, trigger(agent, (0.05 + random() * 0.25).toFixed(2)))
    }

    const started = Date.now()
    const fg = await startForeground(p, { STARFORGE_SPAWNER: "helper" })
    const done = () => archivedTriggers(p).length
    // Kill points: archive counts spread through the run, each then a short random delay.
    const points = Array.from({ length: KILLS }, (_, k) => Math.floor(TRIGGERS * (0.1 + (k + random()) * 0.75 / KILLS)))
    const kills: Array<{ at: number; helper: number; running: number }> = []
    const killed = new Set<number>()
    for (const point of points) {
      await waitFor(() => done() >= point, { timeoutMs: 60_000, intervalMs: 10, what: `${point} triggers archived` })
      const helper = await waitFor(() => helpersOf(fg.pid).find((pid) => !killed.has(pid)), {
        timeoutMs: 10_000,
        intervalMs: 10,
        what: "a (new) spawn helper"
      })
      await new Promise((r) => setTimeout(r, Math.floor(random() * 150)))
      const running = runsOf(records(p)).filter((r) => r.end === undefined).length
      process.kill(helper, "SIGKILL")
      killed.add(helper)
      await waitFor(() => !isAlive(helper), { what: "the helper to die" })
      kills.push({ at: done(), helper, running })
    }
    await waitFor(() => done() === TRIGGERS && queueFiles(p).length === 0, { timeoutMs: 60_000, intervalMs: 20, what: "every trigger archived" })
    await waitFor(() => busyAgents(readSlots(p)).length === 0, { what: "every slot idle" })
    // The daemon still has a helper after the last kill.
    expect(helpersOf(fg.pid).filter((pid) => !killed.has(pid))).toHaveLength(1)
    const stop = await p.cli(["daemon", "stop"])
    expect(stop.code, stop.stdout + stop.stderr).toBe(0)
    await exitWithin(fg, 20_000)
    const seconds = (Date.now() - started) / 1000

    // Every trigger archived exactly once, all done; nothing in the dead-letter queue or the queue.
    const stems = archivedTriggers(p).map((n) => n.replace(/^\d{8}-\d{6}-/, "").replace(/\.trigger$/, ""))
    expect(stems.sort()).toEqual([...expected].sort())
    expect(deadLetters(p)).toEqual([])
    expect(queueFiles(p)).toEqual([])
    expect(listDir(p.triggers).filter((n) => n.endsWith(".processing"))).toEqual([])

    // No process left: no daemon, no helper, no agent, nothing of their groups.
    expect(projectProcesses(p.root)).toEqual([])

    // No agent ever ran two jobs at once, and every run recorded its end.
    const runs = runsOf(records(p))
    expect(runs.filter((r) => r.end === undefined)).toEqual([])
    for (const agent of AGENTS) {
      expect(maxOverlap(runs.filter((r) => r.agent === agent)), `${agent} ran two jobs at once`).toBe(1)
    }

    // No status invented: a success in the history is an attempt whose agent recorded exit=0;
    // an attempt whose end was unknown is a failure, and was retried.
    const text = fs.readFileSync(p.records, "utf8")
    const exitedZero = new Set(text.split("\n").filter((l) => l.startsWith("end ") && l.endsWith(" exit=0")).map((l) => {
      const [, agent, name, attempt] = l.split(" ")
      return `${agent} ${name} ${attempt}`
    }))
    const history = fs.readFileSync(path.join(p.claude, "daemon", "history.jsonl"), "utf8").split("\n").filter((l) => l.trim() !== "")
      .map((l) => JSON.parse(l) as HistoryLine)
    const successes = history.filter((h) => h.outcome === "success")
    for (const h of successes) {
      expect(exitedZero.has(`${h.agent} ${h.trigger.replace(/\.trigger$/, "")} ${h.attempt}`), `${h.trigger} attempt ${h.attempt}`).toBe(true)
    }
    expect(new Set(successes.map((h) => h.trigger)).size).toBe(TRIGGERS)
    expect(successes).toHaveLength(TRIGGERS)
    const unknown = history.filter((h) => h.signal !== null && h.signal.includes("unknown"))
    for (const h of unknown) expect(h.outcome, `${h.trigger} attempt ${h.attempt}`).toBe("failed")

    // The daemon's warnings go to its stderr.
    const deaths = (fg.stderr().match(/the spawn helper \(PID \d+\) died/g) ?? []).length
    const unreported = (fg.stderr().match(/never reported/g) ?? []).length
    const terms = (text.match(/ term$/gm) ?? []).length
    console.log(
      `helper chaos: ${kills.length} SIGKILLs at ${kills.map((k) => `${k.at} archived/${k.running} running`).join(", ")}; ` +
        `${deaths} deaths logged, ${unreported} unreported agents stopped; ${runs.length} runs, ${terms} stopped by SIGTERM, ${unknown.length} attempts with an unknown end; ` +
        `${history.length} history lines; ${seconds.toFixed(1)} s`
    )
    expect(kills).toHaveLength(KILLS)
    expect(deaths).toBe(KILLS)
  }, 180_000)
})
