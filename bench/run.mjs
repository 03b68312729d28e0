#!/usr/bin/env node
// Benchmarks of the real daemon (measure, never assert). Quick mode only for now:
// B1 scheduling efficiency: 8 agents x N triggers, each job sleeps 0.5 s, no cap.
// efficiency = ideal makespan (N x 0.5 s) / measured makespan (first agent start -> last agent end),
// taken from the agents' own start/end records. Median of several runs.
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const bin = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "dist", "bin.js")
const runs = Number(process.env.BENCH_RUNS ?? 3)
const perAgent = Number(process.env.BENCH_TRIGGERS ?? 4)
const agents = 8
const jobSeconds = 0.5

const agentScript = `#!/bin/sh
echo "start $(date +%s%N)" >> "$STARFORGE_PROJECT_ROOT/records-$STARFORGE_AGENT_ID.txt"
sleep ${jobSeconds}
echo "end $(date +%s%N)" >> "$STARFORGE_PROJECT_ROOT/records-$STARFORGE_AGENT_ID.txt"
`

const once = async () => {
  const project = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "starforge-bench-")))
  const triggers = path.join(project, ".claude", "triggers")
  fs.mkdirSync(triggers, { recursive: true })
  fs.writeFileSync(path.join(project, "agent.sh"), agentScript, { mode: 0o755 })
  for (let a = 0; a < agents; a++) {
    for (let i = 0; i < perAgent; i++) {
      fs.writeFileSync(path.join(triggers, `agent-${a}-${i}.trigger`), JSON.stringify({ to_agent: `agent-${a}` }))
    }
  }
  const env = { ...process.env, AGENT_COMMAND: path.join(project, "agent.sh"), PARALLEL_DAEMON: "true", ORCHESTRATOR_INTERVAL: "0" }
  const cli = (...args) => execFileSync(process.execPath, [bin, ...args, "--project", project], { env, encoding: "utf8" })
  cli("daemon", "start")
  const total = agents * perAgent
  const processed = path.join(triggers, "processed")
  const deadline = Date.now() + 120_000
  while ((fs.existsSync(processed) ? fs.readdirSync(processed).filter((n) => n.endsWith(".trigger")).length : 0) < total) {
    if (Date.now() > deadline) throw new Error("benchmark run did not finish in 120 s")
    await new Promise((r) => setTimeout(r, 50))
  }
  cli("daemon", "stop")
  const times = fs.readdirSync(project).filter((n) => n.startsWith("records-")).flatMap((n) =>
    fs.readFileSync(path.join(project, n), "utf8").trim().split("\n").map((l) => l.split(" ")))
  const starts = times.filter(([k]) => k === "start").map(([, t]) => BigInt(t))
  const ends = times.filter(([k]) => k === "end").map(([, t]) => BigInt(t))
  const min = starts.reduce((a, b) => (b < a ? b : a))
  const max = ends.reduce((a, b) => (b > a ? b : a))
  fs.rmSync(project, { recursive: true, force: true })
  return Number(max - min) / 1e9
}

const makespans = []
for (let i = 0; i < runs; i++) makespans.push(await once())
makespans.sort((a, b) => a - b)
const median = makespans[Math.floor(makespans.length / 2)]
const ideal = perAgent * jobSeconds
const efficiency = ideal / median
console.log(`machine: ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`)
console.log(`B1 ${agents} agents x ${perAgent} triggers x ${jobSeconds}s: makespans ${makespans.map((m) => m.toFixed(3)).join(", ")} s`)
console.log(`B1 efficiency (ideal ${ideal.toFixed(1)} s / median ${median.toFixed(3)} s) = ${efficiency.toFixed(3)} (target >= 0.95: ${efficiency >= 0.95 ? "met" : "missed"})`)
