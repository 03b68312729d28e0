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

/** Is a recorded pid still the process recorded? */
export type Identity = "same" | "gone" | "different"

/** A live agent of a project, found by the environment the daemon gave it. */
export interface AgentLeader {
  readonly pid: number
  readonly agent: string
  readonly startTime: string
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
  /** The real user id a process runs as; undefined when it is gone. */
  readonly ownerOf: (pid: number) => Effect.Effect<number | undefined>
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
    ownerOf: () => Effect.succeed(undefined),
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
