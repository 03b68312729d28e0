/**
 * Helpers for tests that run the real CLI against a temporary project with shell-script agents.
 *
 * Every project lives in its own temporary directory; `cleanup()` kills every process whose
 * command line or working directory mentions that directory (daemon, agents, grandchildren) and
 * removes it, so a failing test leaves nothing behind. `useProjects()` does that after each test.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process"
import { once } from "node:events"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterEach } from "vitest"

export const BIN = fileURLToPath(new URL("../../dist/bin.cjs", import.meta.url))

/**
 * The platform layer the daemon and the CLI run on in these tests: vitest's `posix` project sets
 * `STARFORGE_PLATFORM=posix`, and then every daemon and command also runs under a guard that
 * fails on any read of `/proc` (`no-proc.cjs`), recorded in `PROC_GUARD_LOG`.
 */
export const PLATFORM: "linux" | "posix" = process.env["STARFORGE_PLATFORM"] === "posix" ? "posix" : "linux"
export const PROC_GUARD_LOG = path.join(os.tmpdir(), `starforge-proc-guard-${process.pid}.log`)
export const platformEnv: Record<string, string> = PLATFORM === "posix"
  ? {
    STARFORGE_PLATFORM: "posix",
    NODE_OPTIONS: `--require ${fileURLToPath(new URL("./no-proc.cjs", import.meta.url))}`,
    STARFORGE_PROC_GUARD_LOG: PROC_GUARD_LOG
  }
  : {}

/** Fails with what the guard recorded since the last check (reads of `/proc` by the portable layer). */
export const checkProcGuard = () => {
  const recorded = readText(PROC_GUARD_LOG)
  if (!recorded) return
  fs.rmSync(PROC_GUARD_LOG, { force: true })
  throw new Error(`the daemon or the CLI read /proc on the portable layer:\n${recorded}`)
}

export interface CliResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/**
 * Runs `starforge <args>` exactly as given (no `--project` added); by default in the system's
 * temporary directory with nothing but PATH in the environment.
 */
export const runCli = (
  args: ReadonlyArray<string>,
  options: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {}
) =>
  new Promise<CliResult>((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      {
        cwd: options.cwd ?? os.tmpdir(),
        env: { ...(options.env ?? { PATH: process.env["PATH"] ?? "/usr/bin:/bin" }), ...platformEnv },
        timeout: options.timeoutMs ?? 60_000
      },
      (error, stdout, stderr) => resolve({ code: error ? (typeof error.code === "number" ? error.code : 1) : 0, stdout, stderr })
    )
  })

export interface TestProject {
  readonly root: string
  readonly claude: string
  readonly triggers: string
  /** Where the recording agent writes one line per start/end. */
  readonly records: string
  /** Runs `starforge <args> --project root` with the project's environment. */
  readonly cli: (args: ReadonlyArray<string>, options?: { env?: Record<string, string>; timeoutMs?: number }) => Promise<CliResult>
  /** Starts `starforge daemon start --foreground` as a child of the test. */
  readonly foreground: (env?: Record<string, string>) => ChildProcess
  /** Writes `<name>.trigger` atomically (staging file, then rename); text and bytes as they are, anything else as JSON. */
  readonly drop: (name: string, content: unknown) => string
  readonly env: Record<string, string>
  /** Kills every process that belongs to this project, then removes it. */
  readonly cleanup: () => Promise<void>
}

/**
 * The recording agent: appends `start <agent> <trigger> <ns>` and `end …` lines to `records`,
 * then behaves as the trigger's `message` says: `sleep=S` (seconds), `exit=N`, `ignore-term`,
 * `grandchild` (leaves a background `sleep` in its group), `fail-first` (fails attempt 1),
 * `write=N` (prints N numbered lines `line 000000 …`, one write each, as fast as it can).
 */
const AGENT = `#!/bin/sh
for last; do :; done
rec="$STARFORGE_PROJECT_ROOT/records.txt"
msg=$(printf '%s' "$last" | sed -n 's/^Message: //p')
now() { date +%s%N; }
echo "start $STARFORGE_AGENT_ID $(basename "$STARFORGE_TRIGGER_FILE" .processing) $STARFORGE_ATTEMPT $(now) $$" >> "$rec"
sleep_s=$(printf '%s' "$msg" | sed -n 's/.*sleep=\\([0-9.]*\\).*/\\1/p')
code=$(printf '%s' "$msg" | sed -n 's/.*exit=\\([0-9]*\\).*/\\1/p')
case "$msg" in *ignore-term*) trap '' TERM ;; esac
case "$msg" in *grandchild*) sleep 300 & echo "grandchild $!" >> "$rec" ;; esac
case "$msg" in *fail-first*) [ "$STARFORGE_ATTEMPT" = 1 ] && code=7 ;; esac
echo "agent $STARFORGE_AGENT_ID running: $msg"
lines=$(printf '%s' "$msg" | sed -n 's/.*write=\\([0-9]*\\).*/\\1/p')
if [ -n "$lines" ]; then
  awk -v n="$lines" 'BEGIN { for (i = 0; i < n; i++) { printf "line %06d %s\\n", i, "abcdefghijklmnopqrstuvwxyz0123456789"; fflush() } }'
fi
if [ -n "$sleep_s" ]; then
  # Sleep in the foreground of a subshell so an ignored TERM is really ignored by the shell.
  sleep "$sleep_s" &
  wait $! || wait $!
fi
echo "end $STARFORGE_AGENT_ID $(basename "$STARFORGE_TRIGGER_FILE" .processing) $STARFORGE_ATTEMPT $(now) $$" >> "$rec"
exit "\${code:-0}"
`

export const makeProject = (settings: Record<string, string> = {}): TestProject => {
  const root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "starforge-test-")))
  const claude = path.join(root, ".claude")
  const triggers = path.join(claude, "triggers")
  fs.mkdirSync(path.join(triggers, "staging"), { recursive: true })
  const agent = path.join(root, "agent.sh")
  fs.writeFileSync(agent, AGENT, { mode: 0o755 })
  const env: Record<string, string> = {
    PATH: process.env["PATH"] ?? "/usr/bin:/bin",
    HOME: process.env["HOME"] ?? root,
    AGENT_COMMAND: agent,
    ORCHESTRATOR_INTERVAL: "0",
    PARALLEL_DAEMON: "true",
    AGENT_KILL_GRACE: "1",
    INITIAL_RETRY_DELAY: "0.2",
    PROCESS_MONITOR_INTERVAL: "1",
    ...platformEnv,
    ...settings
  }
  let counter = 0
  const project: TestProject = {
    root,
    claude,
    triggers,
    records: path.join(root, "records.txt"),
    env,
    cli: (args, options = {}) =>
      runCli([...args, "--project", root], { cwd: root, env: { ...env, ...options.env }, timeoutMs: options.timeoutMs }),
    foreground: (extra = {}) =>
      spawn(process.execPath, [BIN, "daemon", "start", "--foreground", "--project", root], {
        cwd: root,
        env: { ...env, ...extra },
        stdio: ["ignore", "pipe", "pipe"]
      }),
    drop: (name, content) => {
      const staged = path.join(triggers, "staging", `${name}.${counter++}.tmp`)
      fs.writeFileSync(staged, typeof content === "string" || content instanceof Uint8Array ? content : JSON.stringify(content))
      const target = path.join(triggers, `${name}.trigger`)
      fs.renameSync(staged, target)
      return target
    },
    cleanup: async () => {
      killProjectProcesses(root)
      await waitFor(() => projectProcesses(root).length === 0, { timeoutMs: 10_000, what: "project processes to exit" })
      fs.rmSync(root, { recursive: true, force: true })
    }
  }
  return project
}

/**
 * The per-file scaffolding of the integration tests. Registers an `afterEach` that SIGKILLs the
 * child processes handed to `track`, cleans up every project made with `make` (killing whatever
 * belongs to it) and removes the directories handed to `trackDir`. Call once, at the top level of
 * a test file.
 */
export const useProjects = () => {
  const made: Array<TestProject> = []
  const children: Array<ChildProcess> = []
  const dirs: Array<string> = []
  afterEach(async () => {
    for (const child of children.splice(0)) {
      if (child.exitCode !== null || child.signalCode !== null) continue
      try {
        child.kill("SIGKILL")
      } catch {
        // Already gone.
      }
    }
    const failures: Array<unknown> = []
    for (const project of made.splice(0)) await project.cleanup().catch((e: unknown) => void failures.push(e))
    for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
    if (failures.length > 0) throw failures[0]
    checkProcGuard()
  })
  return {
    /** A new temporary project (see `makeProject`), cleaned up after the test. */
    make: (settings?: Record<string, string>): TestProject => {
      const project = makeProject(settings)
      made.push(project)
      return project
    },
    /**
     * A process the test started itself (not the project's daemon or agents, which `cleanup()`
     * finds on its own); SIGKILLed after the test if still running.
     */
    track: <C extends ChildProcess>(child: C): C => {
      children.push(child)
      return child
    },
    /** A directory outside any project; removed after the test. */
    trackDir: (dir: string): string => {
      dirs.push(dir)
      return dir
    }
  }
}

/** The file's text, or undefined when it cannot be read (for example, not written yet). */
export const readText = (file: string): string | undefined => {
  try {
    return fs.readFileSync(file, "utf8")
  } catch {
    return undefined
  }
}

/** Live (non-zombie) processes whose command line, environment or cwd mentions `root`. */
export const projectProcesses = (root: string): Array<{ pid: number; cmdline: string }> => {
  const found: Array<{ pid: number; cmdline: string }> = []
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    const pid = Number(entry)
    if (pid === process.pid) continue
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
      const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3)
      if (state === "Z" || state === "X") continue
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ")
      let cwd = ""
      try {
        cwd = fs.readlinkSync(`/proc/${pid}/cwd`)
      } catch {
        // Not ours to read.
      }
      let environ = ""
      try {
        environ = fs.readFileSync(`/proc/${pid}/environ`, "utf8")
      } catch {
        // Not ours to read.
      }
      if (cmdline.includes(root) || cwd.startsWith(root) || environ.includes(root)) found.push({ pid, cmdline })
    } catch {
      // Exited while we looked.
    }
  }
  return found
}

export const killProjectProcesses = (root: string) => {
  for (const { pid } of projectProcesses(root)) {
    try {
      process.kill(pid, "SIGKILL")
    } catch {
      // Already gone.
    }
  }
}

/** Polls `condition` until it holds; throws with `what` after the deadline. */
export const waitFor = async <A>(
  condition: () => A | undefined | false | null | Promise<A | undefined | false | null>,
  options: { timeoutMs?: number; intervalMs?: number; what: string }
): Promise<A> => {
  const deadline = Date.now() + (options.timeoutMs ?? 20_000)
  for (;;) {
    const value = await condition()
    if (value !== undefined && value !== false && value !== null) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${options.what}`)
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 50))
  }
}

export const readJson = <A = any>(file: string): A => JSON.parse(fs.readFileSync(file, "utf8")) as A

export const listDir = (dir: string): Array<string> => {
  try {
    return fs.readdirSync(dir).sort()
  } catch {
    return []
  }
}

export interface AgentRecord {
  readonly kind: "start" | "end"
  readonly agent: string
  readonly trigger: string
  readonly attempt: number
  readonly ns: bigint
  readonly pid: number
}

/** The recording agent's start/end lines. */
export const records = (project: TestProject): Array<AgentRecord> => {
  const text = readText(project.records) ?? ""
  return text.split("\n").filter((l) => l.startsWith("start ") || l.startsWith("end ")).map((line) => {
    const [kind, agent, trigger, attempt, ns, pid] = line.split(" ")
    return {
      kind: kind as "start" | "end",
      agent: agent!,
      trigger: trigger!,
      attempt: Number(attempt),
      ns: BigInt(ns!),
      pid: Number(pid)
    }
  })
}

export const daemonLog = (project: TestProject): string => readText(path.join(project.claude, "logs", "daemon.log")) ?? ""

export const isAlive = (pid: number): boolean => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3)
    return state !== "Z" && state !== "X"
  } catch {
    return false
  }
}

/** A process that has exited, so its pid names nothing (until the kernel reuses it). */
export const deadPid = async (): Promise<number> => {
  const child = spawn("true", [], { stdio: "ignore" })
  await once(child, "exit")
  await waitFor(() => !isAlive(child.pid!), { what: "the short-lived process to be gone" })
  return child.pid!
}

/** A trigger body for the recording agent. */
export const trigger = (agent: string, message = "", extra: Record<string, unknown> = {}) => ({
  to_agent: agent,
  from_agent: "test",
  action: "work",
  message,
  ...extra
})
