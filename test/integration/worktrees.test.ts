/**
 * Worktrees made on demand (issue 24 part 2) with the real daemon and CLI: AGENT_WORKTREES=auto
 * in a real git repository, three agents starting at once, each recording the directory it runs
 * in; then `starforge worktrees list|prune`; and a project that is not a git repository.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { archivedTriggers, deadLetters, exitWithin, startForeground, writeSlots } from "../support/daemonHelpers.js"
import { branchIn, gitSync, gitWorktrees, initRepo } from "../support/gitRepo.js"
import { daemonLog, listDir, readText, type TestProject, trigger, useProjects, waitFor } from "../support/project.js"

const projects = useProjects()

const AGENTS = ["junior-dev-a", "junior-dev-b", "qa-engineer"]

/**
 * An agent that writes the directory it runs in (`pwd -P`) to `<root>/pwd/<agent>`, then waits
 * until `$EXPECTED_AGENTS` agents have written theirs (so they all run at once), at most 20 s
 * (exit 3, a failed attempt the test sees).
 */
const installPwdAgent = (p: TestProject, expected: number) => {
  const script = path.join(p.root, "pwd-agent.sh")
  fs.mkdirSync(path.join(p.root, "pwd"))
  fs.writeFileSync(
    script,
    `#!/bin/sh
dir="$STARFORGE_PROJECT_ROOT/pwd"
pwd -P > "$dir/$STARFORGE_AGENT_ID.tmp" && mv "$dir/$STARFORGE_AGENT_ID.tmp" "$dir/$STARFORGE_AGENT_ID"
n=0
while [ "$(ls "$dir" | grep -vc '[.]tmp$')" -lt ${expected} ]; do
  n=$((n + 1))
  [ "$n" -gt 400 ] && exit 3
  sleep 0.05
done
exit 0
`,
    { mode: 0o755 }
  )
  ;(p.env as Record<string, string>)["AGENT_COMMAND"] = script
}

const pwdOf = (p: TestProject, agent: string) => readText(path.join(p.root, "pwd", agent))?.trim()
const worktreeOf = (p: TestProject, agent: string) => `${p.root}-${agent}`
const worktreeLines = (p: TestProject) => daemonLog(p).split("\n").filter((l) => l.includes("] WORKTREE: "))

describe("AGENT_WORKTREES=auto in a git repository", () => {
  it("three agents starting at once each run in a worktree of their own; list shows them, prune removes them and keeps the branches", async () => {
    const p = projects.make({ AGENT_WORKTREES: "auto", PARALLEL_DAEMON: "true" })
    initRepo(p.root, [".claude/", "pwd/", "*.sh", "records.txt"])
    for (const agent of AGENTS) projects.trackDir(worktreeOf(p, agent))
    installPwdAgent(p, AGENTS.length)
    const daemon = await startForeground(p)
    for (const agent of AGENTS) p.drop(`${agent}-work-1`, trigger(agent))
    await waitFor(() => archivedTriggers(p).length === AGENTS.length, { what: "the three triggers to be archived", timeoutMs: 40_000 })

    for (const agent of AGENTS) {
      expect(pwdOf(p, agent)).toBe(worktreeOf(p, agent))
      expect(branchIn(worktreeOf(p, agent))).toBe(`starforge/${agent}`)
    }
    expect(gitWorktrees(p.root).sort()).toEqual([p.root, ...AGENTS.map((a) => worktreeOf(p, a))].sort())
    expect(worktreeLines(p).sort()).toEqual(AGENTS.map((agent) =>
      expect.stringContaining(`WORKTREE: Created worktree ${worktreeOf(p, agent)} on branch starforge/${agent} for agent ${agent}`)))
    expect(daemonLog(p)).toContain("CONFIG: worktrees: made on demand with git worktree add")

    const listed = await p.cli(["worktrees", "list", "--json"])
    expect(listed).toMatchObject({ code: 0, stderr: "" })
    expect(JSON.parse(listed.stdout)).toEqual(AGENTS.map((agent) => ({
      agent,
      path: worktreeOf(p, agent),
      branch: `starforge/${agent}`,
      created_at: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/),
      exists: true,
      dirty: false
    })))

    daemon.child.kill("SIGTERM")
    await exitWithin(daemon, 30_000)

    // One worktree with work in it, one agent busy (as the slot file says): both refused, the third removed.
    fs.writeFileSync(path.join(worktreeOf(p, "junior-dev-a"), "notes.txt"), "unsaved\n")
    writeSlots(p, { "qa-engineer": { status: "busy", pid: "4242", ticket: null, started_at: "2026-01-01T00:00:00Z" } })
    const text = await p.cli(["worktrees", "list"])
    expect(text.code).toBe(0)
    expect(text.stdout).toMatch(new RegExp(`^junior-dev-a\\s+${worktreeOf(p, "junior-dev-a")}\\s+starforge/junior-dev-a\\s+yes\\s+yes\\s`, "m"))
    const refused = await p.cli(["worktrees", "prune"])
    expect(refused.code).toBe(1)
    expect(refused.stdout).toContain(
      `Removed the worktree ${worktreeOf(p, "junior-dev-b")} of agent junior-dev-b; branch starforge/junior-dev-b kept`
    )
    expect(refused.stderr).toContain(`starforge: the worktree ${worktreeOf(p, "junior-dev-a")} of agent junior-dev-a has uncommitted changes`)
    expect(refused.stderr).toContain("pass --force")
    expect(refused.stderr).toContain("starforge: agent qa-engineer is busy (PID 4242)")
    expect(fs.existsSync(worktreeOf(p, "junior-dev-b"))).toBe(false)
    expect(fs.existsSync(worktreeOf(p, "junior-dev-a"))).toBe(true)
    expect(fs.existsSync(worktreeOf(p, "qa-engineer"))).toBe(true)

    writeSlots(p, { "qa-engineer": { status: "idle", pid: null, ticket: null, started_at: null } })
    const forced = await p.cli(["worktrees", "prune", "--force"])
    expect(forced).toMatchObject({ code: 0, stderr: "" })
    expect(forced.stdout.trim().split("\n")).toHaveLength(2)
    for (const agent of AGENTS) expect(fs.existsSync(worktreeOf(p, agent))).toBe(false)
    expect(gitWorktrees(p.root)).toEqual([p.root])
    // Branches are kept: they may hold the agents' commits.
    expect(gitSync(p.root, ["branch", "--list", "starforge/*", "--format=%(refname:short)"]).trim().split("\n")).toEqual(
      AGENTS.map((a) => `starforge/${a}`)
    )
    expect(await p.cli(["worktrees", "list"])).toMatchObject({ code: 0, stdout: "No worktrees made by starforge (see AGENT_WORKTREES=auto)\n" })
  })

  it("prune and list reject bad input like the other commands, and have --help", async () => {
    const p = projects.make()
    const unknown = await p.cli(["worktrees", "prune", "--agent", "nobody"])
    expect(unknown).toMatchObject({ code: 1, stdout: "" })
    expect(unknown.stderr).toBe("starforge: starforge made no worktree for agent nobody: see 'starforge worktrees list'\n")
    const invalid = await p.cli(["worktrees", "prune", "--agent", "../x"])
    expect(invalid).toMatchObject({ code: 1, stderr: "starforge: --agent \"../x\" is not a valid agent name\n" })
    fs.mkdirSync(path.join(p.claude, "daemon"), { recursive: true })
    fs.writeFileSync(path.join(p.claude, "daemon", "worktrees.json"), "{ not json")
    const corrupt = await p.cli(["worktrees", "list"])
    expect(corrupt.code).toBe(1)
    expect(corrupt.stderr).toMatch(/^starforge: .*worktrees\.json cannot be read \(not valid JSON\): remove it/)
    for (const sub of ["list", "prune"]) {
      const help = await p.cli(["worktrees", sub, "--help"])
      expect(help.code).toBe(0)
      // Its own usage, not the root's.
      expect(help.stdout).toContain(`$ ${sub} [--project text]`)
    }
    expect((await p.cli(["worktrees", "prune", "--help"])).stdout).toContain("--force")
  })
})

describe("AGENT_WORKTREES=auto outside a git repository", () => {
  it("logs one clear line and runs the agent in the project root (AGENT_WORKTREE_ON_FAILURE=root)", async () => {
    const p = projects.make({ AGENT_WORKTREES: "auto" })
    installPwdAgent(p, 1)
    await startForeground(p)
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a"))
    await waitFor(() => archivedTriggers(p).length === 1, { what: "the trigger to be archived" })
    expect(pwdOf(p, "junior-dev-a")).toBe(p.root)
    const lines = worktreeLines(p)
    expect(lines).toHaveLength(1)
    expect(lines[0]).toContain(
      `WORKTREE: Cannot make the worktree ${worktreeOf(p, "junior-dev-a")} for agent junior-dev-a: ${p.root} is not a git repository: AGENT_WORKTREES=auto needs one`
    )
    expect(lines[0]).toContain(`junior-dev-a runs in the project root ${p.root}`)
    expect(fs.existsSync(worktreeOf(p, "junior-dev-a"))).toBe(false)
  })

  it("fails the attempt without starting the agent, the reason in its log and history (AGENT_WORKTREE_ON_FAILURE=fail)", async () => {
    const p = projects.make({ AGENT_WORKTREES: "auto", AGENT_WORKTREE_ON_FAILURE: "fail", MAX_RETRIES: "1" })
    installPwdAgent(p, 1)
    await startForeground(p)
    p.drop("junior-dev-a-work-1", trigger("junior-dev-a"))
    await waitFor(() => deadLetters(p).length === 1, { what: "the trigger to reach the dead-letter queue" })
    expect(pwdOf(p, "junior-dev-a")).toBeUndefined()
    const logs = listDir(path.join(p.claude, "logs")).filter((n) => n.startsWith("junior-dev-a-"))
    expect(logs).toHaveLength(1)
    const log = readText(path.join(p.claude, "logs", logs[0]!))!
    expect(log).toMatch(/^Agent: junior-dev-a\nTrigger: junior-dev-a-work-1\.trigger\n/)
    expect(log).toContain(`\nError: no worktree for agent junior-dev-a at ${worktreeOf(p, "junior-dev-a")}: ${p.root} is not a git repository`)
    const history = await p.cli(["history", "--json"])
    expect(JSON.parse(history.stdout)).toEqual([expect.objectContaining({ agent: "junior-dev-a", outcome: "spawn-failed" })])
    expect(worktreeLines(p)[0]).toContain("junior-dev-a's attempts fail until this is fixed (AGENT_WORKTREE_ON_FAILURE=fail)")
  })
})
