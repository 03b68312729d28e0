/**
 * A fake `claude` that can resume its sessions, for the resume-on-retry tests (issue 24 part 3).
 *
 * Every run writes one record (`<root>/claude-runs/<ns>-<pid>.json`, renamed into place whole)
 * with the arguments it got after the program, its `STARFORGE_ATTEMPT`, the session it resumed
 * (`--resume <id>` or `--continue-session <id>`) and the one it runs in; a run that reaches its
 * own end also writes `<ns>-<pid>.end`.
 *
 * A fresh run issues a session `sess-<trigger>-<n>` (n: the trigger's run count) and prints it
 * first, as `claude -p --output-format stream-json --verbose` does (`system`/`init`); a session
 * it issued is kept in `<root>/claude-sessions/<id>`. A run asked to resume a session it issued
 * continues in it; any other session gets `No conversation found with session ID: <id>` on stderr
 * and exit 1, before any turn.
 *
 * What each run does comes from the trigger's `message` (read from `STARFORGE_TRIGGER_FILE`, since a
 * resumed run is given only a short continuation prompt), as `key=value` words:
 *
 * - `runs=A,B,…`: the i-th run of the trigger (the unknown-session answers not counted) does the
 *   i-th action, the last one repeated: `ok` (a turn and a successful `result`, exit 0), `hang`
 *   (init, then silence for 300 s), `fail` (init, then exit 1), `limit` (init, then a usage limit resetting 2 s later, exit 1), `slow` (`turns=N` assistant turns
 *   `every=S` seconds apart, then a `result`, exit 0). Default `ok`.
 * - `forget`: the sessions of this trigger are not kept, so resuming one finds nothing.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { listDir, type TestProject } from "./project.js"

const SCRIPT = (shebang: string) => `${shebang}
"use strict"
const fs = require("node:fs")
const path = require("node:path")
const root = process.env.STARFORGE_PROJECT_ROOT
const agent = process.env.STARFORGE_AGENT_ID
const triggerFile = process.env.STARFORGE_TRIGGER_FILE
const stem = path.basename(triggerFile).replace(/\\.(processing|trigger)$/, "")
const args = process.argv.slice(2)
let message = ""
try {
  message = JSON.parse(fs.readFileSync(triggerFile, "utf8")).message || ""
} catch {
  message = (/^Message: (.*)$/m.exec(args[args.length - 1] || "") || [])[1] || ""
}
const opt = (key, fallback) => (new RegExp("(?:^|\\\\s)" + key + "=(\\\\S+)").exec(message) || [])[1] || fallback
const flag = (key) => new RegExp("(?:^|\\\\s)" + key + "(?:\\\\s|$)").test(message)
let resume = null
for (let i = 0; i < args.length - 1; i++) {
  if (args[i] === "--resume" || args[i] === "--continue-session") resume = args[i + 1]
}
const mkdir = (d) => (fs.mkdirSync(d, { recursive: true }), d)
const runs = mkdir(path.join(root, "claude-runs"))
const sessions = mkdir(path.join(root, "claude-sessions"))
const counts = mkdir(path.join(root, "claude-counts"))
const ns = process.hrtime.bigint().toString().padStart(24, "0")
const id = ns + "-" + process.pid
const record = (extra) => {
  const file = path.join(runs, id + ".json")
  fs.writeFileSync(file + ".tmp", JSON.stringify({
    ns, pid: process.pid, agent, attempt: Number(process.env.STARFORGE_ATTEMPT), trigger: stem, triggerFile, args,
    prompt: args[args.length - 1], resume, ...extra
  }))
  fs.renameSync(file + ".tmp", file)
}
const out = (o) => fs.writeSync(1, JSON.stringify(o) + "\\n")
if (resume !== null && !fs.existsSync(path.join(sessions, resume))) {
  record({ session: null, unknown: true, action: null })
  process.stderr.write("No conversation found with session ID: " + resume + "\\n")
  process.exit(1)
}
const countFile = path.join(counts, stem)
const n = Number(fs.existsSync(countFile) ? fs.readFileSync(countFile, "utf8") : "0") + 1
fs.writeFileSync(countFile, String(n))
const actions = opt("runs", "ok").split(",")
const action = actions[Math.min(n, actions.length) - 1]
const session = resume !== null ? resume : "sess-" + stem + "-" + n
if (!flag("forget")) fs.writeFileSync(path.join(sessions, session), agent)
record({ session, unknown: false, action })
const usage = { input_tokens: 10, output_tokens: 5 }
const turn = (i, text) => out({ type: "assistant", session_id: session, message: { id: "m-" + n + "-" + i, model: "claude-test-1", content: [{ type: "text", text }], usage } })
const result = (turns) => out({ type: "result", subtype: "success", is_error: false, num_turns: turns, result: "done", session_id: session, total_cost_usd: 0.001, usage })
const end = (code) => {
  fs.writeFileSync(path.join(runs, id + ".end"), String(code))
  process.exit(code)
}
out({ type: "system", subtype: "init", session_id: session, model: "claude-test-1", cwd: process.cwd(), tools: ["Bash"] })
if (action === "ok") {
  turn(1, resume === null ? "Starting the task." : "Continuing where I stopped.")
  result(1)
  end(0)
} else if (action === "hang") {
  setTimeout(() => end(0), 300000)
} else if (action === "fail") {
  process.stderr.write("something broke\\n")
  end(1)
} else if (action === "limit") {
  const reset = Math.floor(Date.now() / 1000) + 2
  out({ type: "rate_limit_event", rate_limit_info: { status: "rejected", resetsAt: reset, rateLimitType: "five_hour" } })
  out({ type: "result", subtype: "success", is_error: true, num_turns: 0, result: "Claude AI usage limit reached|" + reset, session_id: session, total_cost_usd: 0 })
  end(1)
} else if (action === "slow") {
  const total = Number(opt("turns", "5"))
  const every = Number(opt("every", "1")) * 1000
  let i = 0
  const next = () => {
    i++
    turn(i, "Turn " + i)
    if (i < total) setTimeout(next, every)
    else { result(total); end(0) }
  }
  next()
} else {
  process.stderr.write("unknown action " + action + "\\n")
  end(2)
}
`

export interface ClaudeRun {
  readonly ns: string
  readonly pid: number
  readonly agent: string
  readonly attempt: number
  readonly trigger: string
  /** \`STARFORGE_TRIGGER_FILE\` as the run got it. */
  readonly triggerFile: string
  /** The arguments after the program, exactly as received. */
  readonly args: ReadonlyArray<string>
  /** The last argument. */
  readonly prompt: string
  /** The session given with `--resume` / `--continue-session`, or null. */
  readonly resume: string | null
  /** The session it ran in (null when it answered that the session was unknown). */
  readonly session: string | null
  /** It was asked to resume a session it never issued (or forgot). */
  readonly unknown: boolean
  readonly action: string | null
  /** It reached its own end (not stopped). */
  readonly ended: boolean
}

/** The flags of the default `AGENT_COMMAND` after the program. */
export const CLAUDE_FLAGS = ["--print", "--output-format", "stream-json", "--verbose"] as const

/**
 * Writes the fake into the project. `named: "claude"` makes it an executable `<root>/bin/claude`
 * (so `RESUME_ON_RETRY=auto` resolves to true); otherwise it is `node <root>/fake-agent.cjs` (auto:
 * false). Returns the command line (with `CLAUDE_FLAGS`), without setting `AGENT_COMMAND`.
 */
export const writeResumableClaude = (p: TestProject, named: "claude" | "node"): string => {
  if (named === "claude") {
    const dir = path.join(p.root, "bin")
    fs.mkdirSync(dir, { recursive: true })
    const file = path.join(dir, "claude")
    fs.writeFileSync(file, SCRIPT("#!/usr/bin/env node"), { mode: 0o755 })
    return [file, ...CLAUDE_FLAGS].join(" ")
  }
  const file = path.join(p.root, "fake-agent.cjs")
  fs.writeFileSync(file, SCRIPT(""))
  return [process.execPath, file, ...CLAUDE_FLAGS].join(" ")
}

/** Writes the fake and makes it the project's `AGENT_COMMAND`; returns the command line. */
export const useResumableClaude = (p: TestProject, named: "claude" | "node"): string => {
  const command = writeResumableClaude(p, named)
  ;(p.env as Record<string, string>)["AGENT_COMMAND"] = command
  return command
}

/** Every run of the fake so far, in the order they started. */
export const claudeRuns = (p: TestProject): Array<ClaudeRun> => {
  const dir = path.join(p.root, "claude-runs")
  const names = listDir(dir)
  return names.filter((n) => n.endsWith(".json")).sort().map((n) => {
    const run = JSON.parse(fs.readFileSync(path.join(dir, n), "utf8")) as Omit<ClaudeRun, "ended">
    return { ...run, ended: names.includes(n.replace(/\.json$/, ".end")) }
  })
}

/** The lines of `history.jsonl` (the unrotated part), parsed. */
export const historyLines = (p: TestProject): Array<Record<string, unknown>> => {
  const file = path.join(p.claude, "daemon", "history.jsonl")
  if (!fs.existsSync(file)) return []
  return fs.readFileSync(file, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Record<string, unknown>)
}

/** `.claude/daemon/sessions.json`, or undefined before the daemon first writes it. */
export const sessionsFile = (p: TestProject): Record<string, { agent: string; session_id: string; attempt: number }> | undefined => {
  try {
    return JSON.parse(fs.readFileSync(path.join(p.claude, "daemon", "sessions.json"), "utf8"))
  } catch {
    return undefined
  }
}

/** The continuation prompt a resumed run gets by default (`AGENT_RESUME_PROMPT`). */
export const defaultResumePrompt = (triggerFile: string) =>
  `Your previous run on this task was interrupted. Continue the task from where you stopped. The trigger file is ${triggerFile}.`
