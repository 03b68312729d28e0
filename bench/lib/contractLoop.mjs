// A second floor for B4: the file work the contract asks of every job, done by a bare Node process
// (no Effect, synchronous calls, nothing else) around the spawns of `spawnLoop.mjs`. Per job, in
// queue order, first runnable trigger of an idle agent:
//   read and parse `X.trigger`; rename it to `X.processing` (the claim); create the agent's log
//   and write its header; start the agent (own process group, stdin closed, its stdout and stderr
//   the log itself: cheaper than the pipes the daemon drains); a SPAWNED line in the daemon log;
//   at its exit the footer, a FINISH line, the rename to `processed/<stamp>-X.trigger`.
// The slot file and the state file are rewritten (temporary file, rename) at most once per turn of
// the event loop, not once per change. Left out, though the daemon does them: validating the
// trigger, history, retries, timeouts, progress, rotation, notifications, tracing.
// It prints nothing; the agents' records give its throughput.
//
//   node contractLoop.mjs <concurrency> <agent> <project root>
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

const concurrency = Number(process.argv[2])
const agent = process.argv[3]
const root = process.argv[4]
const claude = path.join(root, ".claude")
const triggers = path.join(claude, "triggers")
const logs = path.join(claude, "logs")
const processed = path.join(triggers, "processed")
for (const dir of [logs, processed, path.join(claude, "daemon")]) fs.mkdirSync(dir, { recursive: true })
const slotsFile = path.join(claude, "daemon", "agent-slots.json")
const stateFile = path.join(claude, "daemon-state.json")
const daemonLog = fs.openSync(path.join(logs, "daemon.log"), "a")

const names = fs.readdirSync(triggers).filter((n) => n.endsWith(".trigger")).sort()
const slots = {}
const state = { daemon_started: new Date().toISOString(), last_trigger_processed: null, total_triggers_processed: 0, current_trigger: "none" }
let dirty = false
const replace = (file, text) => {
  fs.writeFileSync(`${file}.tmp`, text)
  fs.renameSync(`${file}.tmp`, file)
}
const changed = () => {
  if (dirty) return
  dirty = true
  setImmediate(() => {
    dirty = false
    replace(slotsFile, JSON.stringify(slots, null, 2) + "\n")
    replace(stateFile, JSON.stringify(state, null, 2) + "\n")
  })
}
const line = (level, message) => fs.writeSync(daemonLog, `[${new Date().toISOString().slice(0, 19)}Z] [] ${level}: ${message}\n`)

const busy = new Set()
let first = 0
let left = names.length
const startNext = () => {
  for (let i = first; i < names.length && busy.size < concurrency; i++) {
    const name = names[i]
    if (name === undefined) continue
    const trigger = JSON.parse(fs.readFileSync(path.join(triggers, name), "utf8"))
    const to = trigger.to_agent
    if (busy.has(to)) continue
    names[i] = undefined
    while (first < names.length && names[first] === undefined) first++
    busy.add(to)
    const claimed = path.join(triggers, `${name.slice(0, -".trigger".length)}.processing`)
    fs.renameSync(path.join(triggers, name), claimed)
    const log = fs.openSync(path.join(logs, `${to}-${Math.floor(Date.now() / 1000)}-${i}.log`), "wx")
    fs.writeSync(log, `Agent: ${to}\nTrigger: ${name}\nStarted: ${new Date().toISOString()}\nAttempt: 1/3\n\n`)
    const child = spawn(agent, [`You are ${to}. ${trigger.message ?? ""}`], {
      detached: true,
      stdio: ["ignore", log, log],
      env: { ...process.env, STARFORGE_AGENT_ID: to, STARFORGE_TRIGGER_FILE: claimed, STARFORGE_ACTION: trigger.action ?? "", STARFORGE_ATTEMPT: "1" }
    })
    slots[to] = { status: "busy", pid: String(child.pid), ticket: null, started_at: new Date().toISOString() }
    state.current_trigger = name
    changed()
    line("SPAWNED", `${to} started (PID: ${child.pid}) for ${name}`)
    child.once("exit", (code) => {
      fs.writeSync(log, `\nCompleted: ${new Date().toISOString()}\nExit code: ${code}\n`)
      fs.closeSync(log)
      line("FINISH", `${to} completed ${name}`)
      fs.renameSync(claimed, path.join(processed, `${new Date().toISOString().replace(/[-:]/g, "").slice(0, 15)}-${name}`))
      slots[to] = { status: "idle", pid: null, ticket: null, started_at: null }
      state.total_triggers_processed++
      state.last_trigger_processed = name
      changed()
      busy.delete(to)
      if (--left > 0) startNext()
    })
  }
}
startNext()
