/**
 * `starforge worktrees list|prune`: the git worktrees the daemon made for its agents
 * (`AGENT_WORKTREES=auto`), as recorded in `C/daemon/worktrees.json`. Prune removes them with
 * `git worktree remove` and keeps their branches: deleting a branch could lose an agent's work.
 */
import * as fs from "node:fs"
import { Command, Options } from "@effect/cli"
import { Console, Effect, Option } from "effect"
import { UsageError } from "../domain/errors.js"
import type { ProjectPaths } from "../domain/ProjectPaths.js"
import { isValidAgentName } from "../domain/Trigger.js"
import { readTable } from "../slots/AgentSlots.js"
import { git, gitComplaint } from "../workspace/git.js"
import { readRecords, saveRecords, type WorktreeRecord, worktreesFile } from "../workspace/Worktrees.js"
import { ExitWith, jsonOption, printJson, projectOption, resolveProject, table } from "./shared.js"

/** The recorded worktrees; a record that cannot be read is an error rather than an empty list. */
const recorded = (paths: ProjectPaths) =>
  Effect.suspend(() => {
    const file = worktreesFile(paths)
    const read = readRecords(file)
    switch (read._tag) {
      case "Missing":
        return Effect.succeed<ReadonlyArray<WorktreeRecord>>([])
      case "Valid":
        return Effect.succeed(read.value)
      case "Corrupt":
        return Effect.fail(
          new UsageError({ message: `${file} cannot be read (${read.problem}): remove it; 'git worktree list' shows every worktree` })
        )
    }
  })

/** Runs git in `cwd`; a git that cannot run at all ends the command. */
const gitIn = (cwd: string, args: ReadonlyArray<string>) =>
  git(cwd, args).pipe(Effect.mapError((unavailable) => new UsageError({ message: unavailable.message })))

const exists = (dir: string) => fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory() === true

/** Whether the worktree has changes (tracked or untracked files); null when it is gone or git cannot tell. */
const dirtyOf = (record: WorktreeRecord) =>
  exists(record.path)
    ? Effect.map(gitIn(record.path, ["status", "--porcelain"]), (status) => (status.code === 0 ? status.stdout.trim() !== "" : null))
    : Effect.succeed(null)

const list = Command.make("list", { project: projectOption, json: jsonOption }, ({ json, project }) =>
  Effect.gen(function*() {
    const paths = yield* resolveProject(project)
    const rows = yield* Effect.forEach(yield* recorded(paths), (record) =>
      Effect.map(dirtyOf(record), (dirty) => ({ ...record, exists: exists(record.path), dirty })))
    if (json) return yield* printJson(rows)
    if (rows.length === 0) return yield* Console.log("No worktrees made by starforge (see AGENT_WORKTREES=auto)")
    yield* Console.log(table(
      ["AGENT", "PATH", "BRANCH", "EXISTS", "DIRTY", "CREATED"],
      rows.map((r) => [r.agent, r.path, r.branch, r.exists ? "yes" : "no", r.dirty === null ? "-" : r.dirty ? "yes" : "no", r.created_at])
    ))
  })).pipe(Command.withDescription("List the git worktrees starforge made for its agents: agent, path, branch, whether it exists and has changes."))

/** Why one worktree was left in place, or what was done with it. */
type Pruned = { readonly _tag: "Removed"; readonly message: string } | { readonly _tag: "Refused"; readonly message: string }

const pruneOne = (paths: ProjectPaths, record: WorktreeRecord, force: boolean, busyPid: string | null | undefined) =>
  Effect.gen(function*() {
    const { agent, branch } = record
    const kept = `branch ${branch} kept (delete it with 'git branch -D ${branch}' once its commits are not needed)`
    if (busyPid !== undefined) {
      return {
        _tag: "Refused",
        message: `agent ${agent} is busy${busyPid === null ? "" : ` (PID ${busyPid})`} and works in ${record.path}: ` +
          `prune it once its job has ended (if no daemon runs, 'starforge slots cleanup' releases a stale slot)`
      } satisfies Pruned
    }
    if (!exists(record.path)) {
      // Its directory was deleted by hand: only git's registration of it may be left. A worktree
      // git no longer knows either is refused ("not a working tree"): nothing is left to remove.
      yield* gitIn(paths.root, ["worktree", "remove", record.path])
      return { _tag: "Removed", message: `Forgot the worktree ${record.path} of agent ${agent} (its directory was already gone); ${kept}` } satisfies Pruned
    }
    if (!force && (yield* dirtyOf(record)) === true) {
      return {
        _tag: "Refused",
        message: `the worktree ${record.path} of agent ${agent} has uncommitted changes or untracked files: ` +
          `commit or remove them, or pass --force to delete them with the worktree`
      } satisfies Pruned
    }
    const removed = yield* gitIn(paths.root, ["worktree", "remove", ...(force ? ["--force"] : []), record.path])
    if (removed.code !== 0) {
      return { _tag: "Refused", message: `'git worktree remove ${record.path}' failed: ${gitComplaint(removed)}` } satisfies Pruned
    }
    return { _tag: "Removed", message: `Removed the worktree ${record.path} of agent ${agent}; ${kept}` } satisfies Pruned
  })

const prune = Command.make(
  "prune",
  {
    project: projectOption,
    agent: Options.text("agent").pipe(Options.optional, Options.withDescription("Only the worktree of this agent.")),
    force: Options.boolean("force").pipe(Options.withDescription("Also remove a worktree with uncommitted changes or untracked files (they are lost)."))
  },
  ({ agent, force, project }) =>
    Effect.gen(function*() {
      const paths = yield* resolveProject(project)
      if (Option.isSome(agent) && !isValidAgentName(agent.value)) {
        return yield* new UsageError({ message: `--agent ${JSON.stringify(agent.value)} is not a valid agent name` })
      }
      const records = yield* recorded(paths)
      const targets = records.filter((r) => Option.isNone(agent) || r.agent === agent.value)
      if (Option.isSome(agent) && targets.length === 0) {
        return yield* new UsageError({ message: `starforge made no worktree for agent ${agent.value}: see 'starforge worktrees list'` })
      }
      if (targets.length === 0) return yield* Console.log("No worktrees made by starforge")
      const slots = readTable(paths.slotsFile).table
      const results = yield* Effect.forEach(targets, (record) => {
        const slot = slots[record.agent]
        return Effect.map(pruneOne(paths, record, force, slot?.status === "busy" ? slot.pid : undefined), (result) => ({ record, result }))
      })
      const removed = new Set(results.filter(({ result }) => result._tag === "Removed").map(({ record }) => record.agent))
      if (removed.size > 0) yield* saveRecords(worktreesFile(paths), records.filter((r) => !removed.has(r.agent)))
      for (const { result } of results) {
        yield* result._tag === "Removed" ? Console.log(result.message) : Console.error(`starforge: ${result.message}`)
      }
      if (removed.size < results.length) return yield* new ExitWith({ code: 1 })
    })
).pipe(Command.withDescription(
  "Remove the worktrees starforge made (git worktree remove), keeping their branches. Refuses a worktree whose agent is busy, " +
    "or one with changes unless --force; exits 1 when any was left. With AGENT_WORKTREES=auto the daemon makes it again at the agent's next job."
))

export const worktreesCommand = Command.make("worktrees").pipe(
  Command.withDescription("The git worktrees starforge made for its agents (AGENT_WORKTREES=auto)."),
  Command.withSubcommands([list, prune])
)
