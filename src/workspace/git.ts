/**
 * Running `git` for the worktrees: one call with its arguments (never through a shell), its exit
 * code and output collected. Used by the daemon (`Worktrees`) and the `worktrees` command.
 */
import { execFile } from "node:child_process"
import { Data, Effect } from "effect"

export interface GitResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** `git` could not be run at all (not installed), or did not finish in time. */
export class GitUnavailable extends Data.TaggedError("GitUnavailable")<{ readonly message: string }> {}

/**
 * Variables that point git at another repository or index than the one in `cwd`: a daemon started
 * from a git hook inherits them, and they would send every call to that repository instead.
 */
const REPOSITORY_VARIABLES = ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY"]

const gitEnv = (): NodeJS.ProcessEnv => {
  const env = { ...process.env }
  for (const name of REPOSITORY_VARIABLES) delete env[name]
  return env
}

/**
 * Runs `git -C cwd args…`. A non-zero exit is a result (the caller knows what it means); only a
 * git that cannot start, or runs past `timeoutMs` (then killed), fails. Interrupting it kills git.
 */
export const git = (
  cwd: string,
  args: ReadonlyArray<string>,
  timeoutMs = 60_000
): Effect.Effect<GitResult, GitUnavailable> =>
  Effect.async<GitResult, GitUnavailable>((resume) => {
    const child = execFile(
      "git",
      ["-C", cwd, ...args],
      { env: gitEnv(), timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, encoding: "utf8" },
      (error, stdout, stderr) => {
        if (error === null) return resume(Effect.succeed({ code: 0, stdout, stderr }))
        if (typeof error.code === "number") return resume(Effect.succeed({ code: error.code, stdout, stderr }))
        if (error.code === "ENOENT") {
          return resume(Effect.fail(new GitUnavailable({ message: "git was not found on PATH: install git" })))
        }
        if (error.killed) {
          return resume(Effect.fail(new GitUnavailable({ message: `'git ${args.join(" ")}' did not finish within ${timeoutMs / 1000}s and was stopped` })))
        }
        resume(Effect.fail(new GitUnavailable({ message: `'git ${args.join(" ")}' could not run: ${error.message}` })))
      }
    )
    return Effect.sync(() => void child.kill())
  })

/**
 * The line of git's stderr that says what went wrong: its first `fatal:`/`error:` line (git
 * prints progress such as `Preparing worktree …` before it), else its first line.
 */
export const gitComplaint = (result: GitResult): string => {
  const lines = result.stderr.split("\n").map((line) => line.trim()).filter((line) => line !== "")
  return lines.find((line) => /^(fatal|error):/.test(line)) ?? lines[0] ?? `git exited with code ${result.code}`
}
