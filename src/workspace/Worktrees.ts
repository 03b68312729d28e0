/**
 * Where each agent runs: its git worktree `<parent of P>/<basename of P>-<agent>` (`worktreeOf`)
 * when that directory exists, else the project root (contract §5).
 *
 * With `AGENT_WORKTREES=auto`, a missing worktree is made before the agent's job starts:
 * `git worktree add` on the branch `starforge/<agent>` (made from the current HEAD, or reused
 * when it exists). The git calls run one at a time (git locks `.git/worktrees` and the index),
 * and the directory is looked at again once it is this agent's turn, so no worktree is made
 * twice; a worktree the user deleted is made again at the agent's next job. What starforge made
 * is recorded in `C/daemon/worktrees.json` for `starforge worktrees list|prune`.
 *
 * A worktree that cannot be made is one `WORKTREE` line in the daemon log (written again only when
 * the reason changes), then `AGENT_WORKTREE_ON_FAILURE` decides: `root` runs the agent in the
 * project root, `fail` fails the attempt as a command that cannot start. It is tried again at the
 * agent's next job, since the cause (a lock held by the user's own git command) may be gone.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Clock, Context, Data, Effect, Either, HashMap, Layer, Option, Ref, Schema } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { type ProjectPaths, worktreeOf } from "../domain/ProjectPaths.js"
import { isoSeconds } from "../domain/time.js"
import { keepCorruptCopy, readStateFile, writeFileAtomic } from "../io/stateFile.js"
import { DaemonLog, type DaemonLogShape } from "../observability/DaemonLog.js"
import { git, gitComplaint } from "./git.js"

/** A worktree starforge made: one entry of `C/daemon/worktrees.json`. */
export const WorktreeRecord = Schema.Struct({
  agent: Schema.String,
  path: Schema.String,
  branch: Schema.String,
  created_at: Schema.String
})
export type WorktreeRecord = typeof WorktreeRecord.Type

const decodeRecords = Schema.decodeUnknownEither(Schema.parseJson(Schema.Array(WorktreeRecord)))

/** `C/daemon/worktrees.json`. */
export const worktreesFile = (paths: ProjectPaths): string => path.join(paths.daemonDir, "worktrees.json")

/** The branch an agent's worktree is made on. */
export const branchOf = (agent: string): string => `starforge/${agent}`

/** What reading the record of made worktrees found (see `readStateFile`). */
export const readRecords = (file: string) => readStateFile(file, decodeRecords)

/** Writes the record atomically, one entry per agent, sorted by agent. */
export const saveRecords = (file: string, records: ReadonlyArray<WorktreeRecord>) =>
  writeFileAtomic(file, JSON.stringify([...records].sort((a, b) => a.agent.localeCompare(b.agent)), null, 2) + "\n")

const isDirectory = (dir: string): boolean => fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory() === true

/** The agent's directory as the contract has it: its worktree when that directory exists, else P. */
export const existingCwd = (paths: ProjectPaths, agent: string): string => {
  const worktree = worktreeOf(paths, agent)
  return isDirectory(worktree) ? worktree : paths.root
}

/** The agent's worktree cannot be made and `AGENT_WORKTREE_ON_FAILURE=fail`: its attempt fails. */
export class WorktreeUnavailable extends Schema.TaggedError<WorktreeUnavailable>()("WorktreeUnavailable", {
  agent: Schema.String,
  path: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `no worktree for agent ${this.agent} at ${this.path}: ${this.reason}`
  }
}

export interface WorktreesShape {
  /**
   * The directory `agent`'s next job runs in, its worktree made first when `AGENT_WORKTREES=auto`.
   * Fails only when the worktree cannot be made and `AGENT_WORKTREE_ON_FAILURE=fail`.
   */
  readonly cwdFor: (agent: string) => Effect.Effect<string, WorktreeUnavailable>
}

export class Worktrees extends Context.Tag("starforge/Worktrees")<Worktrees, WorktreesShape>() {
  /** The daemon's: `AGENT_WORKTREES` and `AGENT_WORKTREE_ON_FAILURE` from the configuration. */
  static readonly layer = Layer.effect(
    Worktrees,
    Effect.gen(function*() {
      const { paths, settings } = yield* DaemonConfig
      return yield* make({ paths, mode: settings.agentWorktrees, onFailure: settings.worktreeFailure, log: yield* DaemonLog })
    })
  )

  /** Today's behaviour without a daemon log: the worktree when it exists, else P (`AGENT_WORKTREES=existing`). */
  static readonly existing = (paths: ProjectPaths): WorktreesShape => ({
    cwdFor: (agent) => Effect.sync(() => existingCwd(paths, agent))
  })

  /** Test double: every agent gets what `cwdFor` answers. */
  static readonly fake = (cwdFor: WorktreesShape["cwdFor"]) => Layer.succeed(Worktrees, { cwdFor })
}

/** Why a worktree could not be made, in a sentence that says what to do (git's own words included). */
class CannotMake extends Data.TaggedError("CannotMake")<{ readonly reason: string }> {}

/** How long `git worktree add` may take: it checks out the whole tree, and runs the repository's post-checkout hook. */
const ADD_TIMEOUT_MS = 10 * 60_000

export interface WorktreesOptions {
  readonly paths: ProjectPaths
  readonly mode: "existing" | "auto"
  readonly onFailure: "root" | "fail"
  readonly log: DaemonLogShape
}

export const make = (options: WorktreesOptions): Effect.Effect<WorktreesShape> =>
  Effect.gen(function*() {
    const { log, paths } = options
    if (options.mode === "existing") return Worktrees.existing(paths)
    const file = worktreesFile(paths)
    // One git call at a time, and one agent's worktree at a time.
    const gitLock = yield* Effect.makeSemaphore(1)
    // The last failure logged per agent, so that a lasting one is one line, not one per job.
    const failures = yield* Ref.make(HashMap.empty<string, string>())

    const failed = (reason: string) => Effect.fail(new CannotMake({ reason }))
    const gitStep = (args: ReadonlyArray<string>, timeoutMs?: number) =>
      git(paths.root, args, timeoutMs).pipe(Effect.mapError((unavailable) => new CannotMake({ reason: unavailable.message })))

    /** Whether git still lists `dir` as a worktree (the user deleted its directory without `git worktree remove`). */
    const registered = (dir: string) =>
      Effect.flatMap(gitStep(["worktree", "list", "--porcelain"]), (listed) =>
        listed.code !== 0
          ? failed(`'git worktree list' failed: ${gitComplaint(listed)}`)
          : Effect.succeed(listed.stdout.split("\n").some((line) => line.startsWith("worktree ") && path.resolve(line.slice(9)) === dir)))

    /** Makes `dir` on the agent's branch; fails with the reason it could not. */
    const create = (agent: string, dir: string) =>
      Effect.gen(function*() {
        // `.git` (a directory, or a file in a linked worktree) is in the top directory of a repository only.
        if (!fs.existsSync(path.join(paths.root, ".git"))) {
          return yield* failed(
            `${paths.root} is not a git repository: AGENT_WORKTREES=auto needs one (run 'git init' and make a first commit there, or set AGENT_WORKTREES=existing)`
          )
        }
        if (yield* registered(dir)) {
          // Only the registration is left (the directory is gone): git refuses to add the same path until it is removed.
          const removed = yield* gitStep(["worktree", "remove", dir])
          if (removed.code !== 0) return yield* failed(`'git worktree remove ${dir}' (of a worktree whose directory is gone) failed: ${gitComplaint(removed)}`)
        }
        const branch = branchOf(agent)
        const reused = (yield* gitStep(["rev-parse", "--verify", "--quiet", `refs/heads/${branch}`])).code === 0
        const args = reused ? ["worktree", "add", dir, branch] : ["worktree", "add", "-b", branch, dir, "HEAD"]
        const added = yield* gitStep(args, ADD_TIMEOUT_MS).pipe(
          // Stopped half-way, it would leave a partial checkout that the next job would take for the worktree.
          Effect.tapError(() => Effect.ignore(git(paths.root, ["worktree", "remove", "--force", "--force", dir])))
        )
        if (added.code !== 0) {
          return yield* failed(`'git ${args.join(" ")}' failed: ${gitComplaint(added)} (fix that, or make ${dir} yourself with 'git worktree add')`)
        }
        return { branch, reused }
      })

    /** Adds (or replaces) the agent's entry in `worktrees.json`; a write that fails is a warning: the worktree is made. */
    const record = (entry: WorktreeRecord) =>
      Effect.gen(function*() {
        const read = readRecords(file)
        if (read._tag === "Corrupt") keepCorruptCopy(file, Date.parse(entry.created_at))
        const others = read._tag === "Valid" ? read.value.filter((r) => r.agent !== entry.agent) : []
        yield* saveRecords(file, [...others, entry])
      }).pipe(Effect.catchAll((error) => Effect.logWarning(`${error.message}: 'starforge worktrees list' will not show this worktree`)))

    const ensure = (agent: string, dir: string): Effect.Effect<string, WorktreeUnavailable> =>
      Effect.gen(function*() {
        // Made meanwhile (by a job that held the lock before this one): nothing to do.
        if (isDirectory(dir)) return dir
        // Uninterruptible: a daemon stop waits for git rather than leave a half-made worktree.
        const made = yield* Effect.either(Effect.uninterruptible(create(agent, dir)))
        if (Either.isRight(made)) {
          const { branch, reused } = made.right
          yield* Ref.update(failures, HashMap.remove(agent))
          yield* log.event(
            "WORKTREE",
            `Created worktree ${dir} on ${reused ? "the existing " : ""}branch ${branch} for agent ${agent}`,
            { agent }
          )
          yield* record({ agent, path: dir, branch, created_at: isoSeconds(yield* Clock.currentTimeMillis) })
          return dir
        }
        const { reason } = made.left
        const before = yield* Ref.getAndUpdate(failures, HashMap.set(agent, reason))
        if (!Option.contains(HashMap.get(before, agent), reason)) {
          yield* log.event(
            "WORKTREE",
            `Cannot make the worktree ${dir} for agent ${agent}: ${reason}; ` +
              (options.onFailure === "root"
                ? `${agent} runs in the project root ${paths.root} (AGENT_WORKTREE_ON_FAILURE=root)`
                : `${agent}'s attempts fail until this is fixed (AGENT_WORKTREE_ON_FAILURE=fail)`),
            { agent }
          )
        }
        if (options.onFailure === "root") return paths.root
        return yield* new WorktreeUnavailable({ agent, path: dir, reason })
      })

    return {
      cwdFor: (agent) =>
        Effect.suspend(() => {
          const dir = worktreeOf(paths, agent)
          return isDirectory(dir) ? Effect.succeed(dir) : gitLock.withPermits(1)(ensure(agent, dir))
        })
    } satisfies WorktreesShape
  })
