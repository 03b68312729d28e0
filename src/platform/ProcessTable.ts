/**
 * The operating system's process table, as the daemon needs it: is this pid still the process
 * we started (pid plus start time), the live members of a process group, the agents of a project
 * still running, and signals. A bare pid is never trusted: the kernel reuses pids, so a process
 * is identified by its pid together with its start time. Zombies count as gone: they hold no
 * resources and cannot be stopped.
 *
 * Two layers: `linux.ts` reads `/proc`; `posix.ts` asks `ps` (macOS, and Linux when forced with
 * `STARFORGE_PLATFORM=posix`). `Platform.ts` chooses one at start.
 */
import { Context, Effect, Layer } from "effect"

/** One live process as the table saw it. */
export interface ProcessEntry {
  readonly pid: number
  readonly ppid: number
  readonly pgid: number
  /** The first letter of `ps`'s `stat`: R, S, D (U on macOS), T, I, Z… */
  readonly state: string
  /** When it started, in the layer's own notation: only ever compared for equality. */
  readonly startTime: string
  /** It leads its own session (every agent does: it is spawned detached). */
  readonly sessionLeader: boolean
}

/** What one process uses, as a sampling pass reads it. */
export interface ProcessUsage {
  readonly pid: number
  readonly ppid: number
  readonly pgid: number
  /** Resident memory. */
  readonly rssBytes: number
  /**
   * CPU time (user and system) of the process, and of the children it has waited for where the
   * system tells (Linux; macOS's `ps` does not, so there a tree's total drops when a child exits).
   */
  readonly cpuSeconds: number
}

/** What an agent's tree of processes uses at one moment. */
export interface TreeUsage {
  readonly rssBytes: number
  /** CPU time so far (see `ProcessUsage.cpuSeconds`): its rise over an interval is the tree's CPU use. */
  readonly cpuSeconds: number
  readonly processes: number
}

/** A live process that carries an attempt's token (`STARFORGE_ATTEMPT_ID`) in its environment. */
export interface AttemptProcess {
  readonly pid: number
  readonly startTime: string
  readonly token: string
}

/**
 * Did the process that started at `startTime` start no earlier than the one that started at
 * `reference`? Both in one layer's notation: clock ticks since boot (Linux) or UTC ISO-8601 (POSIX).
 */
export const startedSince = (startTime: string, reference: string): boolean =>
  /^\d+$/.test(startTime) && /^\d+$/.test(reference) ? Number(startTime) >= Number(reference) : startTime >= reference

/** The environment variable that carries each attempt's token to everything its agent starts. */
export const ATTEMPT_TOKEN_VARIABLE = "STARFORGE_ATTEMPT_ID"

/** Is a recorded pid still the process recorded? */
export type Identity = "same" | "gone" | "different"

/** A live agent of a project, found by the environment the daemon gave it. */
export interface AgentLeader {
  readonly pid: number
  readonly agent: string
  readonly startTime: string
  /** Its attempt's token (`STARFORGE_ATTEMPT_ID`), when its environment has one. */
  readonly token?: string
}

export interface ProcessTableShape {
  /** The start time of a live process; undefined when it is gone (or a zombie). */
  readonly startTimeOf: (pid: number) => Effect.Effect<string | undefined>
  /**
   * Is `pid` still the process that started at `startTime`? Without a recorded start time the
   * answer is never "same": an unverifiable pid must not be signalled.
   */
  readonly identify: (pid: number, startTime: string | null | undefined) => Effect.Effect<Identity>
  readonly isAlive: (pid: number) => Effect.Effect<boolean>
  /** The live (non-zombie) members of a process group. */
  readonly groupMembers: (pgid: number) => Effect.Effect<ReadonlyArray<ProcessEntry>>
  /**
   * The agents of the project at `root` still running, found by what the daemon put in their
   * environment (`STARFORGE_PROJECT_ROOT`, `STARFORGE_AGENT_ID`). Only session leaders count: a
   * descendant that inherited the environment goes with its agent's group.
   */
  readonly agentLeaders: (root: string) => Effect.Effect<ReadonlyArray<AgentLeader>>
  /**
   * The live processes of the project at `root` that carry an attempt's token: whatever an
   * agent started, in any group or session, found by the environment it inherited. The POSIX
   * layer sees only what `ps` shows of other processes' environments (on macOS, not that of
   * Apple's own binaries).
   */
  readonly attemptProcesses: (root: string) => Effect.Effect<ReadonlyArray<AttemptProcess>>
  /** The real user id a process runs as; undefined when it is gone. */
  readonly ownerOf: (pid: number) => Effect.Effect<number | undefined>
  /**
   * What the tree of each agent uses, by its process group: the group's live members and their
   * descendants in other groups (a child that called `setsid`), found by their parent links. One
   * look at the whole process table answers for every group (one `ps` call on the POSIX layer).
   * A group with no live member is left out of the answer.
   */
  readonly usage: (pgids: ReadonlyArray<number>) => Effect.Effect<ReadonlyMap<number, TreeUsage>>
  /** Sends a signal to a whole process group; false when the group no longer exists. */
  readonly signalGroup: (pgid: number, signal: NodeJS.Signals) => Effect.Effect<boolean>
  /** Sends a signal to one process; false when it no longer exists. */
  readonly signalProcess: (pid: number, signal: NodeJS.Signals) => Effect.Effect<boolean>
}

export class ProcessTable extends Context.Tag("starforge/ProcessTable")<ProcessTable, ProcessTableShape>() {
  /**
   * Test double: a table with no processes in it; every signal reaches nothing. For a daemon
   * whose agents are not processes (`Spawner.fromEffect`) and for tests of code that only asks.
   */
  static readonly empty: Layer.Layer<ProcessTable> = Layer.succeed(ProcessTable, {
    startTimeOf: () => Effect.succeed(undefined),
    identify: () => Effect.succeed("gone"),
    isAlive: () => Effect.succeed(false),
    groupMembers: () => Effect.succeed([]),
    agentLeaders: () => Effect.succeed([]),
    attemptProcesses: () => Effect.succeed([]),
    ownerOf: () => Effect.succeed(undefined),
    usage: () => Effect.succeed(new Map()),
    signalGroup: () => Effect.succeed(false),
    signalProcess: () => Effect.succeed(false)
  })
}

/** `kill(2)` on a group (negative pid) or a process; false when there is no such target. */
export const sendSignal = (target: number, signal: NodeJS.Signals | 0): boolean => {
  try {
    process.kill(target, signal)
    return true
  } catch {
    return false
  }
}

/** No process is left in the group: not even a zombie (kill(-pgid, 0) fails with ESRCH). */
export const groupIsEmpty = (pgid: number): boolean => !sendSignal(-pgid, 0)

/**
 * Sums each group's tree from one list of processes: the group's members, then every descendant
 * reached through parent links that is not in another of the groups asked about.
 */
export const treeUsage = (processes: Iterable<ProcessUsage>, pgids: ReadonlyArray<number>): ReadonlyMap<number, TreeUsage> => {
  const wanted = new Set(pgids)
  const children = new Map<number, Array<ProcessUsage>>()
  const members = new Map<number, Array<ProcessUsage>>()
  for (const p of processes) {
    const siblings = children.get(p.ppid)
    if (siblings === undefined) children.set(p.ppid, [p])
    else siblings.push(p)
    if (wanted.has(p.pgid)) {
      const group = members.get(p.pgid)
      if (group === undefined) members.set(p.pgid, [p])
      else group.push(p)
    }
  }
  const result = new Map<number, TreeUsage>()
  for (const [pgid, group] of members) {
    const seen = new Set<number>()
    const tree: Array<ProcessUsage> = []
    const visit = (p: ProcessUsage) => {
      if (seen.has(p.pid)) return
      seen.add(p.pid)
      tree.push(p)
    }
    group.forEach(visit)
    for (let i = 0; i < tree.length; i++) {
      for (const child of children.get(tree[i]!.pid) ?? []) {
        if (child.pgid === pgid || !wanted.has(child.pgid)) visit(child)
      }
    }
    result.set(pgid, {
      rssBytes: tree.reduce((sum, p) => sum + p.rssBytes, 0),
      cpuSeconds: tree.reduce((sum, p) => sum + p.cpuSeconds, 0),
      processes: tree.length
    })
  }
  return result
}
