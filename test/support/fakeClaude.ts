/**
 * A fake `claude -p --output-format stream-json --verbose`: replays recorded-style stream-json
 * lines. The trigger's message picks what it does, as `key=value` words:
 *
 * - `scenario=success` (default): init, text, two tool uses with results, a `result` with cost.
 * - `scenario=is_error`: a `result` with `is_error: true`, then exit 0.
 * - `scenario=limit limit_in=S`: a rejected `rate_limit_event` and an error result
 *   `Claude AI usage limit reached|<epoch>` resetting S seconds from now; exit 1.
 * - `scenario=limit_text`: only the text `You've hit your limit · resets <h>am|pm (UTC)`, two hours
 *   ahead; exit 1.
 * - `scenario=garbage`: plain text, a broken JSON line, a 1 MiB line, a 3 MiB line, a
 *   `rate_limit_event` cut into another line, then the success events.
 * - `scenario=stall`: init, then silence (`sleep=S`, default 300).
 * - `scenario=steady`: one tool use every `every=S` seconds for `sleep=S` seconds, then success.
 * - `limit_after=N`: for `scenario=limit`, the N-th attempt onwards succeeds (counted in a file).
 *
 * Every start appends `start <agent> <attempt> <pid>` to `$STARFORGE_PROJECT_ROOT/records.txt`.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import type { TestProject } from "./project.js"

const SCRIPT = String.raw`
import * as fs from "node:fs"
const prompt = process.argv.at(-1) ?? ""
const message = (/^Message: (.*)$/m.exec(prompt) ?? [])[1] ?? ""
const opt = (key, fallback) => (new RegExp("(?:^|\\s)" + key + "=(\\S+)").exec(message) ?? [])[1] ?? fallback
const root = process.env.STARFORGE_PROJECT_ROOT
const agent = process.env.STARFORGE_AGENT_ID
fs.appendFileSync(root + "/records.txt", "start " + agent + " " + process.env.STARFORGE_ATTEMPT + " " + process.pid + "\n")
const out = (o) => fs.writeSync(1, (typeof o === "string" ? o : JSON.stringify(o)) + "\n")
const session = "sess-" + agent + "-" + process.env.STARFORGE_ATTEMPT
const init = { type: "system", subtype: "init", session_id: session, model: "claude-test-1", cwd: process.cwd(), tools: ["Bash", "Edit"] }
const usage = (i, o) => ({ input_tokens: i, output_tokens: o, cache_read_input_tokens: 10 })
const assistant = (id, content, u) => ({ type: "assistant", session_id: session, message: { id, model: "claude-test-1", content, usage: u } })
const tool = (id, name) => assistant(id, [{ type: "tool_use", id: "tu-" + id, name, input: { command: "true" } }], usage(100, 20))
const toolResult = (id) => ({ type: "user", message: { content: [{ type: "tool_result", tool_use_id: "tu-" + id, content: "ok" }] } })
const result = (extra) => ({ type: "result", subtype: "success", is_error: false, duration_ms: 1234, num_turns: 3, result: "done", session_id: session, total_cost_usd: 0.0123, usage: usage(300, 60), ...extra })
const sleep = (s) => new Promise((r) => setTimeout(r, s * 1000))
const success = () => {
  out(assistant("m1", [{ type: "text", text: "Looking at the ticket." }], usage(100, 20)))
  out(tool("m2", "Bash")); out(toolResult("m2"))
  out(tool("m3", "Edit")); out(toolResult("m3"))
  out(result({}))
}
const scenario = opt("scenario", "success")
out(init)
if (scenario === "success") success()
else if (scenario === "is_error") {
  out(tool("m2", "Bash")); out(toolResult("m2"))
  out(result({ subtype: "error_during_execution", is_error: true, result: "The tool failed badly" }))
} else if (scenario === "limit") {
  const counter = root + "/limit-count-" + agent
  const n = Number(fs.existsSync(counter) ? fs.readFileSync(counter, "utf8") : "0") + 1
  fs.writeFileSync(counter, String(n))
  if (n >= Number(opt("limit_after", "1000000"))) { success(); process.exit(0) }
  const reset = Math.floor(Date.now() / 1000 + Number(opt("limit_in", "3")))
  out({ type: "rate_limit_event", rate_limit_info: { status: "rejected", resetsAt: reset, rateLimitType: "five_hour" } })
  out(assistant("m1", [{ type: "text", text: "Claude AI usage limit reached|" + reset }], { input_tokens: 0, output_tokens: 0 }))
  out(result({ is_error: true, result: "Claude AI usage limit reached|" + reset, total_cost_usd: 0 }))
  process.exit(1)
} else if (scenario === "limit_text") {
  const at = new Date(Date.now() + 2 * 3600_000)
  const h = at.getUTCHours()
  out(assistant("m1", [{ type: "text", text: "You've hit your limit · resets " + ((h % 12) || 12) + (h < 12 ? "am" : "pm") + " (UTC)" }], { input_tokens: 0, output_tokens: 0 }))
  out(result({ is_error: true, result: "You've hit your limit · resets " + ((h % 12) || 12) + (h < 12 ? "am" : "pm") + " (UTC)", total_cost_usd: 0 }))
  process.exit(1)
} else if (scenario === "garbage") {
  out("plain text from some wrapper")
  out("{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"tool_use\",\"name\":\"Bro")
  out("{\"type\":\"assistant\",\"message\":" + "{\"content\":[{\"type\":\"text\",\"text\":\"" + "x".repeat(1024 * 1024) + "\"}]}}")
  out("y".repeat(3 * 1024 * 1024))
  out("{\"type\":\"assistant\",\"mess{\"type\":\"rate_limit_event\",\"rate_limit_info\":{\"status\":\"allowed\",\"resetsAt\":1}}age\":{}}")
  process.stderr.write("Warning: something on stderr\n")
  success()
} else if (scenario === "stall") {
  await sleep(Number(opt("sleep", "300")))
} else if (scenario === "steady") {
  const until = Date.now() + Number(opt("sleep", "3")) * 1000
  let i = 0
  while (Date.now() < until) { i++; out(tool("s" + i, "Bash")); out(toolResult("s" + i)); await sleep(Number(opt("every", "0.5"))) }
  out(result({ num_turns: i }))
}
process.exit(Number(opt("exit", "0")))
`

/** Writes the fake into the project and makes it the project's `AGENT_COMMAND`. */
export const useFakeClaude = (project: TestProject): string => {
  const file = path.join(project.root, "fake-claude.mjs")
  fs.writeFileSync(file, SCRIPT)
  const command = `${process.execPath} ${file} -p --output-format stream-json --verbose`
  project.env["AGENT_COMMAND"] = command
  return command
}
