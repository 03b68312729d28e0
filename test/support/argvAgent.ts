/**
 * An agent that records, byte for byte, the arguments it was given and the `STARFORGE_*` values
 * of its environment, so a test can compare them with what the trigger held.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { listDir, type TestProject } from "./project.js"

export interface ArgvRecord {
  /** `$#`: the number of arguments after the program itself. */
  readonly argc: number
  readonly agent: string
  readonly action: string
  readonly fromAgent: string
  readonly ticket: string
  readonly traceId: string
  readonly triggerFile: string
  /** The arguments after the program, exactly as received. */
  readonly args: ReadonlyArray<string>
}

const FIELDS = 7

/**
 * Writes `<root>/argv-agent.sh` and makes it the project's `AGENT_COMMAND` followed by `words`
 * (already quoted for `AGENT_COMMAND`). The agent writes one NUL-separated record per run to
 * `<root>/argv/<pid>.rec` (renamed into place when complete) and exits with 0.
 */
export const installArgvAgent = (p: TestProject, words = ""): string => {
  const script = path.join(p.root, "argv-agent.sh")
  const dir = path.join(p.root, "argv")
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(
    script,
    `#!/bin/sh
out="${dir}/$$.rec"
printf '%s\\0' "$#" "$STARFORGE_AGENT_ID" "$STARFORGE_ACTION" "$STARFORGE_FROM_AGENT" "$STARFORGE_TICKET" \\
  "$STARFORGE_TRACE_ID" "$STARFORGE_TRIGGER_FILE" "$@" > "$out.tmp"
mv "$out.tmp" "$out"
`,
    { mode: 0o755 }
  )
  ;(p.env as Record<string, string>)["AGENT_COMMAND"] = words === "" ? script : `${script} ${words}`
  return script
}

/** Every complete record of the argv agent. */
export const argvRecords = (p: TestProject): Array<ArgvRecord> =>
  listDir(path.join(p.root, "argv")).filter((n) => n.endsWith(".rec")).map((n) => {
    const fields = fs.readFileSync(path.join(p.root, "argv", n), "utf8").split("\0")
    fields.pop() // after the last separator
    const [argc, agent, action, fromAgent, ticket, traceId, triggerFile] = fields
    return {
      argc: Number(argc),
      agent: agent!,
      action: action!,
      fromAgent: fromAgent!,
      ticket: ticket!,
      traceId: traceId!,
      triggerFile: triggerFile!,
      args: fields.slice(FIELDS)
    }
  })

/** Files named `pwned…` (what `touch pwned` in a hostile value would create) under `dirs`. */
export const pwnedFiles = (dirs: ReadonlyArray<string>): Array<string> => {
  const found: Array<string> = []
  const walk = (dir: string, depth: number) => {
    let entries: Array<fs.Dirent>
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true })
    } catch {
      return
    }
    for (const entry of entries) {
      if (/^pwned/.test(entry.name)) found.push(path.join(dir, entry.name))
      if (depth > 0 && entry.isDirectory()) walk(path.join(dir, entry.name), depth - 1)
    }
  }
  for (const dir of dirs) walk(dir, dir === "/" ? 0 : 8)
  return found
}
