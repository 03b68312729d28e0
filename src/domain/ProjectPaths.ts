/** Every path of the contract, resolved from the project root `P` (`C` = `P/.claude`). */

import * as fs from "node:fs"
import * as path from "node:path"

export interface ProjectPaths {
  readonly root: string
  readonly claude: string
  readonly triggers: string
  readonly staging: string
  readonly processed: string
  readonly invalid: string
  readonly deadLetter: string
  readonly logs: string
  readonly daemonLog: string
  /** The background daemon's own stdout and stderr (what it could not log itself). */
  readonly daemonOut: string
  readonly daemonDir: string
  readonly slotsFile: string
  /** One JSON line per finished attempt. */
  readonly historyFile: string
  readonly stateFile: string
  readonly pidFile: string
  readonly configFile: string
  readonly envFile: string
}

/** The project root with symlinks resolved, so that every path to a project names the same daemon. */
export const canonicalRoot = (project: string): string => {
  const resolved = path.resolve(project)
  try {
    return fs.realpathSync(resolved)
  } catch {
    return resolved
  }
}

export const projectPaths = (project: string): ProjectPaths => {
  const root = canonicalRoot(project)
  const claude = path.join(root, ".claude")
  const triggers = path.join(claude, "triggers")
  const processed = path.join(triggers, "processed")
  const logs = path.join(claude, "logs")
  const daemonDir = path.join(claude, "daemon")
  return {
    root,
    claude,
    triggers,
    staging: path.join(triggers, "staging"),
    processed,
    invalid: path.join(processed, "invalid"),
    deadLetter: path.join(triggers, "dead-letter"),
    logs,
    daemonLog: path.join(logs, "daemon.log"),
    daemonOut: path.join(logs, "daemon.out"),
    daemonDir,
    slotsFile: path.join(daemonDir, "agent-slots.json"),
    historyFile: path.join(daemonDir, "history.jsonl"),
    stateFile: path.join(claude, "daemon-state.json"),
    pidFile: path.join(claude, "daemon.pid"),
    configFile: path.join(claude, "config", "daemon.conf"),
    envFile: path.join(root, ".env")
  }
}

/** The directories the daemon creates at start. */
export const daemonDirectories = (p: ProjectPaths): ReadonlyArray<string> => [
  p.triggers,
  p.staging,
  p.processed,
  p.invalid,
  p.deadLetter,
  p.logs,
  p.daemonDir
]

/** The agent's git worktree `<parent of P>/<basename of P>-<agent>`, used as cwd when it exists. */
export const worktreeOf = (p: ProjectPaths, agent: string): string =>
  path.join(path.dirname(p.root), `${path.basename(p.root)}-${agent}`)
