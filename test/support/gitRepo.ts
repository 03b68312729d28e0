/**
 * Real git repositories for the worktree tests: `git init`, one commit, and a look at what git
 * says about a directory. The identity is given on the command line, so the machine's git
 * configuration needs none.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

const IDENTITY = ["-c", "user.name=starforge test", "-c", "user.email=test@starforge.invalid", "-c", "commit.gpgsign=false"]

/** Runs `git -C dir args…` and returns its stdout; throws when git fails. */
export const gitSync = (dir: string, args: ReadonlyArray<string>): string =>
  execFileSync("git", ["-C", dir, ...IDENTITY, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })

/** Makes `dir` a git repository with one commit (a README), leaving out `ignored` (e.g. `.claude/`). */
export const initRepo = (dir: string, ignored: ReadonlyArray<string> = []): void => {
  fs.mkdirSync(dir, { recursive: true })
  gitSync(dir, ["init", "-q", "-b", "main"])
  fs.writeFileSync(path.join(dir, "README.md"), "a project\n")
  fs.writeFileSync(path.join(dir, ".gitignore"), ignored.map((p) => `${p}\n`).join(""))
  gitSync(dir, ["add", "README.md", ".gitignore"])
  gitSync(dir, ["commit", "-q", "-m", "first commit"])
}

/** The branch checked out in `dir` (a worktree). */
export const branchIn = (dir: string): string => gitSync(dir, ["rev-parse", "--abbrev-ref", "HEAD"]).trim()

/** The worktree paths git lists for the repository at `dir` (the main one first). */
export const gitWorktrees = (dir: string): Array<string> =>
  gitSync(dir, ["worktree", "list", "--porcelain"]).split("\n").filter((l) => l.startsWith("worktree ")).map((l) => l.slice(9))
