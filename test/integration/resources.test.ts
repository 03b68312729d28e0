/**
 * Resource monitoring through the real daemon and CLI (issue 21), on real processes: each running
 * agent's tree is sampled into its slot (`status --json`, `slots show`), its attempt's peak memory
 * and CPU time reach `history.jsonl`, and `AGENT_MAX_MEMORY_MB` stops an agent over it. Run on both
 * platform layers (the posix project repeats test/integration with `/proc` barred to the daemon).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { archivedTriggers, deadLetters, readSlots, startForeground } from "../support/daemonHelpers.js"
import { daemonLog, type TestProject, trigger, useProjects, waitFor } from "../support/project.js"

const projects = useProjects()

const MB = 1024 * 1024

/**
 * An agent whose tree uses what its trigger's message asks: `alloc=N` a child holding N MiB,
 * `burn=S` a grandchild in a session of its own burning CPU for S seconds, `hold=S` how long the
 * children live. Each child writes a marker file once it holds its memory.
 */
const RESOURCE_AGENT = `#!/bin/sh
for last; do :; done
msg=$(printf '%s' "$last" | sed -n 's/^Message: //p')
opt() { printf '%s' "$msg" | sed -n "s/.*$1=\\([0-9.]*\\).*/\\1/p"; }
alloc=$(opt alloc); burn=$(opt burn); hold=$(opt hold)
hold=\${hold:-3}
dir="$STARFORGE_PROJECT_ROOT"
if [ -n "$alloc" ]; then
  node -e "const b = Buffer.alloc($alloc * 1024 * 1024, 1); require('fs').writeFileSync('$dir/allocated-' + process.env.STARFORGE_AGENT_ID, String(b.length)); setTimeout(() => {}, $hold * 1000)" &
fi
if [ -n "$burn" ]; then
  setsid node -e "const end = Date.now() + $burn * 1000; while (Date.now() < end) {}" &
fi
wait
echo "done"
`

const makeProject = (settings: Record<string, string> = {}): TestProject => {
  const p = projects.make({ RESOURCE_SAMPLE_INTERVAL: "0.5", MAX_RETRIES: "1", ...settings })
  const agent = path.join(p.root, "resource-agent.sh")
  fs.writeFileSync(agent, RESOURCE_AGENT, { mode: 0o755 })
  ;(p.env as Record<string, string>)["AGENT_COMMAND"] = agent
  return p
}

interface HistoryLine {
  readonly agent: string
  readonly outcome: string
  readonly peak_rss_bytes?: number | null
  readonly cpu_seconds?: number | null
}

const history = (p: TestProject): Array<HistoryLine> => {
  const file = path.join(p.claude, "daemon", "history.jsonl")
  if (!fs.existsSync(file)) return []
  return fs.readFileSync(file, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as HistoryLine)
}

describe("resource monitoring", () => {
  it("an agent whose child holds about 200 MB shows it in status --json and slots show; its peak reaches history", async () => {
    const p = makeProject()
    await startForeground(p)
    p.drop("big", trigger("alpha", "alloc=200 hold=4"))
    await waitFor(() => fs.existsSync(path.join(p.root, "allocated-alpha")), { timeoutMs: 20_000, what: "the child to hold its memory" })
    const slot = await waitFor(async () => {
      const status = await p.cli(["daemon", "status", "--json"])
      const s = (JSON.parse(status.stdout) as { slots: Record<string, { rss_bytes?: number; processes?: number; peak_rss_bytes?: number; cpu_percent?: number | null }> })
        .slots["alpha"]
      return s?.rss_bytes !== undefined && s.rss_bytes >= 180 * MB ? s : undefined
    }, { timeoutMs: 15_000, what: "status --json to show the agent's ~200 MB" })
    expect(slot.processes).toBeGreaterThanOrEqual(2)
    expect(slot.peak_rss_bytes).toBeGreaterThanOrEqual(slot.rss_bytes!)
    const shown = await p.cli(["slots", "show", "alpha"])
    expect(shown.stdout).toMatch(/rss_bytes: \d{9}/)

    await waitFor(() => archivedTriggers(p).length === 1, { timeoutMs: 20_000, what: "the trigger to be archived" })
    const [line] = history(p)
    expect(line).toMatchObject({ agent: "alpha", outcome: "success" })
    expect(line!.peak_rss_bytes).toBeGreaterThanOrEqual(180 * MB)
    expect(line!.cpu_seconds).toBeGreaterThanOrEqual(0)
  })

  it("the CPU and memory of the agent's children count, a grandchild in a session of its own included", async () => {
    const p = makeProject()
    await startForeground(p)
    p.drop("busy", trigger("beta", "alloc=50 burn=3 hold=3"))
    const slot = await waitFor(() => {
      const s = readSlots(p)?.["beta"] as { processes?: number; cpu_percent?: number | null; rss_bytes?: number } | undefined
      return s?.processes !== undefined && s.processes >= 3 && (s.cpu_percent ?? 0) > 20 && (s.rss_bytes ?? 0) >= 50 * MB ? s : undefined
    }, { timeoutMs: 15_000, what: "the slot to count the shell, the allocating child and the burning grandchild" })
    expect(slot.processes).toBeGreaterThanOrEqual(3)
    await waitFor(() => archivedTriggers(p).length === 1, { timeoutMs: 20_000, what: "the trigger to be archived" })
    const [line] = history(p)
    expect(line!.cpu_seconds).toBeGreaterThan(0.5)
    expect(line!.peak_rss_bytes).toBeGreaterThanOrEqual(50 * MB)
  })

  it("AGENT_MAX_MEMORY_MB=100 stops an agent over it: MEMORY in the log, memory in history and the DLQ meta", async () => {
    const p = makeProject({ AGENT_MAX_MEMORY_MB: "100" })
    await startForeground(p)
    p.drop("hog", trigger("gamma", "alloc=200 hold=60"))
    await waitFor(() => deadLetters(p).length === 1, { timeoutMs: 30_000, what: "the trigger in the dead-letter queue" })
    expect(history(p).map((l) => l.outcome)).toEqual(["memory"])
    expect(daemonLog(p)).toMatch(/MEMORY: gamma was stopped for using \d+ MB of memory \(AGENT_MAX_MEMORY_MB is 100 MB\)/)
    const meta = JSON.parse(fs.readFileSync(path.join(p.triggers, "dead-letter", "hog.trigger.meta.json"), "utf8")) as Record<string, unknown>
    expect(meta["failure_kind"]).toBe("memory")
    const log = fs.readdirSync(path.join(p.claude, "logs")).find((n) => n.startsWith("gamma-"))!
    expect(fs.readFileSync(path.join(p.claude, "logs", log), "utf8")).toMatch(/Memory: \d+ MB, over the limit of 100 MB\nSignal: SIGTERM/)
  })
})
