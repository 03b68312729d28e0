/**
 * Nothing outlives its agent (issue 25 part 1), with real processes: an agent that leaves a
 * `setsid` sleeper, one that double-forks into a session of its own, and one that spawns a
 * detached Node child. After a success, a timeout, `daemon stop`, and a daemon SIGKILL and
 * restart, none of them is alive; a process with a look-alike environment but another token is
 * never touched. Run on both platform layers (the posix project bars `/proc` to the daemon; `ps e`
 * shows the environment of every process of the user on Linux).
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { archivedTriggers, deadLetters, exitWithin, startForeground } from "../support/daemonHelpers.js"
import { isAlive, type TestProject, trigger, useProjects, waitFor } from "../support/project.js"

const projects = useProjects()

/**
 * Starts the three escapes, writes their pids to `escaped-<agent>`, then sleeps for the trigger's
 * `hold=S` seconds (default 0).
 */
const ESCAPING_AGENT = `#!/bin/sh
for last; do :; done
msg=$(printf '%s' "$last" | sed -n 's/^Message: //p')
hold=$(printf '%s' "$msg" | sed -n 's/.*hold=\\([0-9.]*\\).*/\\1/p')
out="$STARFORGE_PROJECT_ROOT/escaped-$STARFORGE_AGENT_ID"
setsid sleep 300 > /dev/null 2>&1 < /dev/null &
echo $! >> "$out.tmp"
setsid sh -c 'sleep 300 > /dev/null 2>&1 < /dev/null & echo $! >> "$1"' sh "$out.tmp" < /dev/null > /dev/null 2>&1
node -e "const c = require('child_process').spawn('sleep', ['300'], { detached: true, stdio: 'ignore' }); require('fs').appendFileSync(process.argv[1], c.pid + '\\\\n'); c.unref()" "$out.tmp"
mv "$out.tmp" "$out"
[ -n "$hold" ] && sleep "$hold"
exit 0
`

const makeProject = (settings: Record<string, string> = {}): TestProject => {
  const p = projects.make({ MAX_RETRIES: "1", ...settings })
  const agent = path.join(p.root, "escaping-agent.sh")
  fs.writeFileSync(agent, ESCAPING_AGENT, { mode: 0o755 })
  ;(p.env as Record<string, string>)["AGENT_COMMAND"] = agent
  return p
}

/** The three escaped pids, once the agent has started them all. */
const escapedPids = (p: TestProject, agent: string) =>
  waitFor(() => {
    const file = path.join(p.root, `escaped-${agent}`)
    if (!fs.existsSync(file)) return undefined
    const pids = fs.readFileSync(file, "utf8").split("\n").filter((l) => l !== "").map(Number)
    return pids.length === 3 ? pids : undefined
  }, { timeoutMs: 20_000, what: `${agent}'s three escaped processes` })

const allGone = (pids: ReadonlyArray<number>, what: string) =>
  waitFor(() => pids.every((pid) => !isAlive(pid)), { timeoutMs: 20_000, what })

/** A process with the project's environment but a token no attempt had; it must survive everything. */
const bystanders: Array<ChildProcess> = []
afterEach(() => {
  for (const child of bystanders.splice(0)) child.kill("SIGKILL")
})
const lookAlike = (p: TestProject): number => {
  const child = spawn("sleep", ["300"], {
    detached: true,
    stdio: "ignore",
    env: { ...p.env, STARFORGE_PROJECT_ROOT: p.root, STARFORGE_ATTEMPT_ID: "not-an-attempt-of-this-daemon" }
  })
  bystanders.push(child)
  return child.pid!
}

describe("what an agent leaves outside its process group", () => {
  it("is stopped when the attempt succeeds; a look-alike with another token is left alone", async () => {
    const p = makeProject()
    const bystander = lookAlike(p)
    await startForeground(p)
    p.drop("t1", trigger("alpha", ""))
    const pids = await escapedPids(p, "alpha")
    await waitFor(() => archivedTriggers(p).length === 1, { timeoutMs: 20_000, what: "the trigger to be archived" })
    await allGone(pids, "the escaped processes to be stopped after the success")
    expect(isAlive(bystander)).toBe(true)
  })

  it("is stopped after a timeout", async () => {
    const p = makeProject({ AGENT_TIMEOUT: "2" })
    await startForeground(p)
    p.drop("t1", trigger("beta", "hold=60"))
    const pids = await escapedPids(p, "beta")
    await waitFor(() => deadLetters(p).length === 1, { timeoutMs: 20_000, what: "the timed-out trigger in the dead-letter queue" })
    await allGone(pids, "the escaped processes to be stopped after the timeout")
  })

  it("is stopped by daemon stop", async () => {
    const p = makeProject()
    const bystander = lookAlike(p)
    const daemon = await startForeground(p)
    p.drop("t1", trigger("gamma", "hold=60"))
    const pids = await escapedPids(p, "gamma")
    daemon.child.kill("SIGTERM")
    await exitWithin(daemon, 20_000)
    // Gone by the time the daemon has exited: the stop waits for them.
    expect(pids.filter(isAlive)).toEqual([])
    expect(isAlive(bystander)).toBe(true)
  })

  it("is stopped by the next start after the daemon was SIGKILLed", async () => {
    const p = makeProject()
    const bystander = lookAlike(p)
    const daemon = await startForeground(p)
    p.drop("t1", trigger("delta", "hold=60"))
    const pids = await escapedPids(p, "delta")
    // The slot records the attempt's token within moments of the spawn.
    await waitFor(() => fs.readFileSync(path.join(p.claude, "daemon", "agent-slots.json"), "utf8").includes("attempt_id\": \""), {
      what: "the slot to record the attempt's token"
    })
    daemon.child.kill("SIGKILL")
    await exitWithin(daemon, 10_000)
    expect(pids.every(isAlive)).toBe(true)
    const next = await startForeground(p)
    await allGone(pids, "the escaped processes to be stopped by the recovery of the next start")
    expect(isAlive(bystander)).toBe(true)
    // The requeued trigger runs again and leaves its own: the stop takes them with it.
    next.child.kill("SIGTERM")
    await exitWithin(next, 20_000)
  })
})
