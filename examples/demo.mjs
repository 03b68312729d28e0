#!/usr/bin/env node
// The demo: the real starforge daemon, in parallel mode, on a fresh temporary project.
// A dozen triggers for four agents are run by examples/agent.sh (a stand-in for `claude`),
// while the demo shows who is busy. It ends with every trigger archived and no process left.
//
//   npm run demo            (after npm install)
//   KEEP=1 npm run demo     keeps the project directory to look around afterwards
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const here = path.dirname(fileURLToPath(import.meta.url))
const bin = path.join(here, "..", "dist", "bin.cjs")
const agent = path.join(here, "agent.sh")
if (!fs.existsSync(bin)) {
  console.error("dist/bin.cjs is missing: run `npm install` (it builds) or `npm run build` first")
  process.exit(1)
}

const project = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "starforge-demo-")))
const env = {
  ...process.env,
  AGENT_COMMAND: agent,
  PARALLEL_DAEMON: "true",
  MAX_CONCURRENT_AGENTS: "4",
  ORCHESTRATOR_INTERVAL: "0",
  PROCESS_MONITOR_INTERVAL: "2",
  EXAMPLE_AGENT_SECONDS: "3",
  // The dashboard on a free port of this machine only.
  DASHBOARD_ADDRESS: "127.0.0.1:0"
}
const starforge = (...args) =>
  execFileSync(process.execPath, [bin, ...args, "--project", project], { env, encoding: "utf8" }).trimEnd()
const say = (text) => console.log(`\x1b[1m${text}\x1b[0m`)

const agents = ["junior-dev-a", "junior-dev-b", "junior-dev-c", "qa-engineer"]
const triggers = path.join(project, ".claude", "triggers")
fs.mkdirSync(path.join(triggers, "staging"), { recursive: true })

say(`Project: ${project}`)
say("1. Eight triggers are waiting before the daemon starts (written to staging/, then renamed into place)")
let ticket = 50
for (let round = 0; round < 2; round++) {
  for (const name of agents) {
    ticket++
    const file = `${name}-implement_ticket-${Date.now()}-${ticket}.trigger`
    const body = { to_agent: name, from_agent: "orchestrator", action: "implement_ticket", message: `Ticket #${ticket}`, context: { ticket } }
    fs.writeFileSync(path.join(triggers, "staging", file), JSON.stringify(body, null, 2))
    fs.renameSync(path.join(triggers, "staging", file), path.join(triggers, file))
  }
}

say("2. starforge daemon start, and its dashboard (starforge dashboard: open the address while the demo runs)")
console.log(starforge("daemon", "start"))
console.log(starforge("dashboard"))

say("3. Four more triggers arrive while it runs (starforge trigger create)")
for (const name of agents) {
  ticket++
  console.log(starforge("trigger", "create", "--to", name, "--action", "review", "--ticket", String(ticket), "--message", `Follow-up #${ticket}`))
}

say("4. Why the rest waits (starforge daemon status --why, its last part)")
const why = starforge("daemon", "status", "--why")
console.log(why.slice(why.lastIndexOf("\nWaiting")).trim())

say("5. Who is busy (starforge daemon status --json, polled)")
const started = Date.now()
const total = 12
for (;;) {
  const status = JSON.parse(starforge("daemon", "status", "--json"))
  const busy = Object.entries(status.slots).filter(([, s]) => s.status === "busy").map(([a, s]) => `${a}#${s.ticket}`)
  const q = status.queue
  console.log(
    `  t+${((Date.now() - started) / 1000).toFixed(1).padStart(4)}s  pending ${String(q.pending).padStart(2)}  ` +
      `done ${String(q.done).padStart(2)}/${total}  busy: ${busy.join(", ") || "-"}`
  )
  if (q.done + q.dead_letter + q.invalid >= total) break
  if (Date.now() - started > 60_000) {
    console.error("The demo did not finish within 60 seconds; see the daemon log:")
    console.error(fs.readFileSync(path.join(project, ".claude", "logs", "daemon.log"), "utf8"))
    starforge("daemon", "stop")
    process.exit(1)
  }
  await new Promise((r) => setTimeout(r, 700))
}

say("6. starforge slots list")
console.log(starforge("slots", "list"))
say("7. starforge daemon logs junior-dev-a (its newest log)")
console.log(starforge("daemon", "logs", "junior-dev-a"))
say("8. starforge daemon stop")
console.log(starforge("daemon", "stop"))

const archived = fs.readdirSync(path.join(triggers, "processed")).filter((n) => n.endsWith(".trigger"))
const left = fs.readdirSync(triggers).filter((n) => n.endsWith(".trigger") || n.endsWith(".processing"))
say(`Done: ${archived.length} of ${total} triggers archived in .claude/triggers/processed/, ${left.length} left in the queue.`)
console.log("The daemon log: " + path.join(project, ".claude", "logs", "daemon.log"))
if (process.env.KEEP) console.log(`Kept ${project}`)
else fs.rmSync(project, { recursive: true, force: true })
process.exit(archived.length === total && left.length === 0 ? 0 : 1)
