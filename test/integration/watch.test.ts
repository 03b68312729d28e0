/**
 * `starforge daemon status --watch` (issue 6 part 2), driven in a real pseudo terminal with tmux
 * and its screen read back; and the plain repeated output when stdout is not a terminal.
 */
import { execFileSync, spawn } from "node:child_process"
import { describe, expect, it } from "vitest"
import { startForeground } from "../support/daemonHelpers.js"
import { BIN, trigger, useProjects, waitFor } from "../support/project.js"

const projects = useProjects()

/** A tmux server of our own (its own socket), so the test never touches anyone else's. */
const tmuxServer = () => {
  const socket = `starforge-test-${process.pid}-${Math.random().toString(16).slice(2)}`
  const tmux = (...args: Array<string>) => execFileSync("/usr/bin/tmux", ["-L", socket, ...args], { encoding: "utf8" })
  return {
    tmux,
    screen: () => tmux("capture-pane", "-p", "-t", "w"),
    flags: () => {
      const [alternate, cursor] = tmux("display", "-p", "-t", "w", "#{alternate_on} #{cursor_flag}").trim().split(" ")
      return { alternateScreen: alternate === "1", cursorVisible: cursor === "1" }
    },
    kill: () => {
      try {
        tmux("kill-server")
      } catch {
        // Already gone.
      }
    }
  }
}

/** The elapsed seconds in the row of `agent` on the screen. */
const elapsedOf = (screen: string, agent: string): number | undefined => {
  const row = screen.split("\n").find((l) => l.startsWith(`${agent} `))
  const m = row ? /\s(?:(\d+)m )?(\d+)s\s/.exec(row) : null
  return m ? Number(m[1] ?? 0) * 60 + Number(m[2]) : undefined
}

describe("daemon status --watch", () => {
  it("in a terminal: a live screen of slots, queue, elapsed time and events; q and Ctrl-C quit and restore the terminal", async () => {
    const p = projects.make()
    await startForeground(p)
    p.drop("long-job", trigger("watcher-a", "sleep=60", { context: { ticket: "77" } }))
    p.drop("waiting", trigger("watcher-a", "exit=0"))
    const t = tmuxServer()
    try {
      t.tmux("new-session", "-d", "-s", "w", "-x", "150", "-y", "40", "sh")
      const command = `${process.execPath} ${BIN} daemon status --watch --project ${p.root}; echo EXIT=$?`
      t.tmux("send-keys", "-t", "w", command, "Enter")
      const first = await waitFor(() => {
        const s = t.screen()
        return /watcher-a\s+busy/.test(s) && elapsedOf(s, "watcher-a") !== undefined ? s : undefined
      }, { timeoutMs: 20_000, what: "the watch screen to show the running agent" })
      expect(first).toMatch(/^starforge: .* \(q to quit\)/)
      expect(first).toMatch(/Daemon is running \(PID: \d+\)/)
      expect(first).toMatch(/Queue: 1 pending, 1 running, 0 done/)
      expect(first).toMatch(/watcher-a\s+busy\s+\d+\s+77\s+\d+s\s+long-job\.trigger/)
      expect(first).toContain("SPAWNED: watcher-a started")
      expect(t.flags()).toEqual({ alternateScreen: true, cursorVisible: false })
      // It refreshes: the elapsed time grows.
      const before = elapsedOf(first, "watcher-a")!
      await waitFor(() => (elapsedOf(t.screen(), "watcher-a") ?? 0) >= before + 2, { timeoutMs: 10_000, what: "the elapsed time to grow" })

      t.tmux("send-keys", "-t", "w", "q")
      await waitFor(() => t.screen().includes("EXIT=0"), { timeoutMs: 10_000, what: "q to end the watch" })
      expect(t.flags()).toEqual({ alternateScreen: false, cursorVisible: true })
      // The screen is the shell's again (the watch's frame is gone) and the line discipline is back to normal.
      expect(t.screen()).not.toContain("(q to quit)")
      t.tmux("send-keys", "-t", "w", "stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e -icanon -e echo -e -echo", "Enter")
      await waitFor(() => /^icanon$/m.test(t.screen()) && /^echo$/m.test(t.screen()), { timeoutMs: 5_000, what: "stty to show icanon and echo" })

      t.tmux("send-keys", "-t", "w", "clear", "Enter")
      t.tmux("send-keys", "-t", "w", command, "Enter")
      await waitFor(() => t.screen().includes("(q to quit)"), { timeoutMs: 20_000, what: "the second watch" })
      t.tmux("send-keys", "-t", "w", "C-c")
      await waitFor(() => t.screen().includes("EXIT=0"), { timeoutMs: 10_000, what: "Ctrl-C to end the watch" })
      expect(t.flags()).toEqual({ alternateScreen: false, cursorVisible: true })
    } finally {
      t.kill()
    }
  })

  it("without a terminal: the plain status repeated every second, no escape codes", async () => {
    const p = projects.make()
    const child = spawn(process.execPath, [BIN, "daemon", "status", "--watch", "--project", p.root], {
      env: p.env,
      stdio: ["ignore", "pipe", "pipe"]
    })
    let out = ""
    child.stdout.on("data", (d) => (out += String(d)))
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
    await waitFor(() => (out.match(/^--- \S+Z ---$/gm) ?? []).length >= 3, { timeoutMs: 20_000, what: "three refreshes" })
    child.kill("SIGINT")
    await exited
    const blocks = out.split(/^--- \S+Z ---$/m).filter((b) => b.trim() !== "")
    expect(blocks.length).toBeGreaterThanOrEqual(3)
    for (const block of blocks) {
      expect(block).toContain("Daemon is not running")
      expect(block).toContain("Queue: 0 pending")
    }
    expect(out).not.toContain("\x1b")
    const stamps = (out.match(/^--- (\S+Z) ---$/gm) ?? []).map((l) => Date.parse(l.slice(4, -4)))
    // About a second apart (whole seconds in the stamps).
    expect(stamps[2]! - stamps[0]!).toBeGreaterThanOrEqual(1_000)
    expect(stamps[2]! - stamps[0]!).toBeLessThanOrEqual(6_000)
    const both = await p.cli(["daemon", "status", "--watch", "--json"])
    expect(both.code).toBe(1)
    expect(both.stderr).toContain("--watch and --json cannot be combined")
  })
})
