/**
 * The Worktrees service on real temporary git repositories: each project is `<tmp>/project`, so
 * the worktrees it gets (`<tmp>/project-<agent>`) are in the same temporary directory.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { projectPaths } from "../../src/domain/ProjectPaths.js"
import { DaemonLog } from "../../src/observability/DaemonLog.js"
import { make, readRecords, worktreesFile } from "../../src/workspace/Worktrees.js"
import { branchIn, gitSync, gitWorktrees, initRepo } from "../support/gitRepo.js"

const temporary: Array<string> = []
afterEach(() => {
  for (const dir of temporary.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
})

/** `<tmp>/project`, a git repository with one commit unless `git: false`. */
const project = (options: { readonly git?: boolean } = {}) => {
  const base = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "starforge-worktrees-")))
  temporary.push(base)
  const root = path.join(base, "project")
  if (options.git === false) fs.mkdirSync(root)
  else initRepo(root, [".claude/"])
  return { root, paths: projectPaths(root), worktree: (agent: string) => path.join(base, `project-${agent}`) }
}

/** The service for `root` with its daemon log in memory. */
const service = (root: string, mode: "existing" | "auto", onFailure: "root" | "fail" = "root") =>
  Effect.gen(function*() {
    const log = yield* DaemonLog.memory
    const worktrees = yield* make({ paths: projectPaths(root), mode, onFailure, log: yield* Effect.provide(DaemonLog, log.layer) })
    return { worktrees, lines: log.lines }
  })

const worktreeLines = (lines: ReadonlyArray<string>) => lines.filter((l) => l.includes("] WORKTREE: "))

describe("Worktrees, AGENT_WORKTREES=existing", () => {
  it.live("runs an agent in its worktree when that directory exists, else in the project root, and never calls git", () =>
    Effect.gen(function*() {
      const p = project({ git: false })
      fs.mkdirSync(p.worktree("b"))
      const { lines, worktrees } = yield* service(p.root, "existing")
      expect(yield* worktrees.cwdFor("a")).toBe(p.root)
      expect(yield* worktrees.cwdFor("b")).toBe(p.worktree("b"))
      expect(fs.existsSync(p.worktree("a"))).toBe(false)
      expect(yield* lines).toEqual([])
    }))
})

describe("Worktrees, AGENT_WORKTREES=auto", () => {
  it.live("three agents starting at once get three worktrees, each on its own branch from HEAD, recorded", () =>
    Effect.gen(function*() {
      const p = project()
      const head = gitSync(p.root, ["rev-parse", "HEAD"]).trim()
      const { lines, worktrees } = yield* service(p.root, "auto")
      const agents = ["junior-dev-a", "junior-dev-b", "qa-engineer"]
      const cwds = yield* Effect.forEach(agents, (agent) => worktrees.cwdFor(agent), { concurrency: "unbounded" })
      expect(cwds).toEqual(agents.map(p.worktree))
      for (const agent of agents) {
        expect(branchIn(p.worktree(agent))).toBe(`starforge/${agent}`)
        expect(gitSync(p.worktree(agent), ["rev-parse", "HEAD"]).trim()).toBe(head)
        expect(fs.readFileSync(path.join(p.worktree(agent), "README.md"), "utf8")).toBe("a project\n")
      }
      expect(gitWorktrees(p.root).sort()).toEqual([p.root, ...agents.map(p.worktree)].sort())
      expect(worktreeLines(yield* lines).sort()).toEqual(agents.map((agent) =>
        expect.stringContaining(`WORKTREE: Created worktree ${p.worktree(agent)} on branch starforge/${agent} for agent ${agent}`)))
      const read = readRecords(worktreesFile(p.paths))
      expect(read._tag).toBe("Valid")
      if (read._tag !== "Valid") return
      expect(read.value.map((r) => ({ agent: r.agent, path: r.path, branch: r.branch }))).toEqual(
        agents.map((agent) => ({ agent, path: p.worktree(agent), branch: `starforge/${agent}` }))
      )
      for (const r of read.value) expect(r.created_at).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/)
    }))

  it.live("the same agent asked for twice at once gets its worktree made once", () =>
    Effect.gen(function*() {
      const p = project()
      const { lines, worktrees } = yield* service(p.root, "auto")
      const cwds = yield* Effect.all([worktrees.cwdFor("a"), worktrees.cwdFor("a")], { concurrency: "unbounded" })
      expect(cwds).toEqual([p.worktree("a"), p.worktree("a")])
      expect(worktreeLines(yield* lines)).toHaveLength(1)
      // A later job finds it and calls git no more.
      expect(yield* worktrees.cwdFor("a")).toBe(p.worktree("a"))
      expect(worktreeLines(yield* lines)).toHaveLength(1)
    }))

  it.live("a worktree the user deleted is made again on the agent's branch, its commits kept", () =>
    Effect.gen(function*() {
      const p = project()
      const { lines, worktrees } = yield* service(p.root, "auto")
      const dir = yield* worktrees.cwdFor("a")
      fs.writeFileSync(path.join(dir, "work.txt"), "the agent's work\n")
      gitSync(dir, ["add", "work.txt"])
      gitSync(dir, ["commit", "-q", "-m", "work"])
      fs.rmSync(dir, { recursive: true, force: true })

      expect(yield* worktrees.cwdFor("a")).toBe(dir)
      expect(branchIn(dir)).toBe("starforge/a")
      expect(fs.readFileSync(path.join(dir, "work.txt"), "utf8")).toBe("the agent's work\n")
      expect(worktreeLines(yield* lines)[1]).toContain(`WORKTREE: Created worktree ${dir} on the existing branch starforge/a for agent a`)
      expect(gitWorktrees(p.root)).toEqual([p.root, dir])
    }))

  it.live("a directory already there (made by the user) is used as it is, not recorded", () =>
    Effect.gen(function*() {
      const p = project()
      fs.mkdirSync(p.worktree("a"))
      const { lines, worktrees } = yield* service(p.root, "auto")
      expect(yield* worktrees.cwdFor("a")).toBe(p.worktree("a"))
      expect(yield* lines).toEqual([])
      expect(readRecords(worktreesFile(p.paths))._tag).toBe("Missing")
    }))

  it.live("a project that is not a git repository: one clear line, and the agent runs in the project root (root)", () =>
    Effect.gen(function*() {
      const p = project({ git: false })
      const { lines, worktrees } = yield* service(p.root, "auto", "root")
      expect(yield* worktrees.cwdFor("a")).toBe(p.root)
      expect(yield* worktrees.cwdFor("a")).toBe(p.root)
      const logged = worktreeLines(yield* lines)
      // Once, not once per job.
      expect(logged).toHaveLength(1)
      expect(logged[0]).toContain(
        `WORKTREE: Cannot make the worktree ${p.worktree("a")} for agent a: ${p.root} is not a git repository: AGENT_WORKTREES=auto needs one`
      )
      expect(logged[0]).toContain(`a runs in the project root ${p.root} (AGENT_WORKTREE_ON_FAILURE=root)`)
      expect(fs.existsSync(p.worktree("a"))).toBe(false)
    }))

  it.live("a project that is not a git repository fails the agent's attempts (fail)", () =>
    Effect.gen(function*() {
      const p = project({ git: false })
      const { lines, worktrees } = yield* service(p.root, "auto", "fail")
      const result = yield* Effect.either(worktrees.cwdFor("a"))
      expect(Either.isLeft(result)).toBe(true)
      if (Either.isRight(result)) return
      expect(result.left._tag).toBe("WorktreeUnavailable")
      expect(result.left.message).toBe(
        `no worktree for agent a at ${p.worktree("a")}: ${p.root} is not a git repository: AGENT_WORKTREES=auto needs one ` +
          `(run 'git init' and make a first commit there, or set AGENT_WORKTREES=existing)`
      )
      expect(worktreeLines(yield* lines)[0]).toContain("a's attempts fail until this is fixed (AGENT_WORKTREE_ON_FAILURE=fail)")
    }))

  it.live("git refusing (a repository without a commit) is logged with git's own words, then made once it can be", () =>
    Effect.gen(function*() {
      const p = project({ git: false })
      gitSync(p.root, ["init", "-q", "-b", "main"])
      const { lines, worktrees } = yield* service(p.root, "auto", "root")
      expect(yield* worktrees.cwdFor("a")).toBe(p.root)
      const first = worktreeLines(yield* lines)
      expect(first).toHaveLength(1)
      expect(first[0]).toMatch(/'git worktree add -b starforge\/a .* HEAD' failed: fatal: .*HEAD/)

      // Fixed while the daemon runs: the next job gets its worktree.
      fs.writeFileSync(path.join(p.root, "README.md"), "x\n")
      gitSync(p.root, ["add", "README.md"])
      gitSync(p.root, ["commit", "-q", "-m", "first"])
      expect(yield* worktrees.cwdFor("a")).toBe(p.worktree("a"))
      expect(worktreeLines(yield* lines)[1]).toContain("Created worktree")
    }))
})
