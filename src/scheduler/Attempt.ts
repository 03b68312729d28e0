/**
 * One attempt of a claimed trigger: the agent's command line and environment, its log, its
 * start reported to the slot table, the daemon log and the webhooks, its progress lines while it
 * runs, and its history line however it ends.
 */
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import { Clock, Effect, Option, Ref } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import type { StorageError } from "../domain/errors.js"
import { ExitStatus, isSuccess } from "../domain/Outcome.js"
import { worktreeOf } from "../domain/ProjectPaths.js"
import { isoSeconds } from "../domain/time.js"
import { buildPrompt, ticketOf } from "../domain/Trigger.js"
import { freeName } from "../io/freeName.js"
import * as AgentRun from "../process/AgentRun.js"
import { Leftovers } from "../process/Leftovers.js"
import { ATTEMPT_TOKEN_VARIABLE } from "../platform/ProcessTable.js"
import type { Spawner } from "../process/Spawner.js"
import type { ClaimedTrigger } from "../queue/TriggerQueue.js"
import { ResourceMonitor } from "../resources/ResourceMonitor.js"
import { AgentSlots } from "../slots/AgentSlots.js"
import { emptyOutput, type OutputState, reportedError } from "../stream/StreamJson.js"
import type { AttemptResult, JobEvents } from "./JobEvents.js"

/** The agent's log for one attempt: `C/logs/<agent>-<epoch seconds>.log`, never reused. */
export const agentLogFile = (logs: string, agent: string, nowMs: number): string =>
  freeName(logs, `${agent}-${Math.floor(nowMs / 1000)}.log`)

/** The process's exit, corrected by what the agent itself reported in its output. */
export const reportedOutcome = (status: ExitStatus, output: OutputState): ExitStatus => {
  const reported = reportedError(output)
  return reported !== undefined && isSuccess(status) ? ExitStatus.ReportedError({ code: 0, message: reported }) : status
}

/** The exit of the attempt's agent, once known: a stop that lands after a success must not rerun it. */
export type ExitProbe = Effect.Effect<Option.Option<ExitStatus>>

export const make = (events: JobEvents) =>
  Effect.gen(function*() {
    const { paths, settings } = yield* DaemonConfig
    const slots = yield* AgentSlots
    const monitor = yield* ResourceMonitor
    const leftovers = yield* Leftovers
    const memoryLimit = settings.agentMaxMemoryBytes
    const [command, ...commandArgs] = settings.agentCommand
    // The daemon's environment, which every agent inherits, copied once.
    const daemonEnv = { ...process.env } as Record<string, string>

    /** What the agent is started with: the command line, its directory and its environment. */
    const requestOf = (claimed: ClaimedTrigger, attempt: number, token: string) => {
      const { agent, trigger } = claimed.queued
      const worktree = worktreeOf(paths, agent)
      return {
        command: command!,
        args: [...commandArgs, buildPrompt(trigger, claimed.file)],
        cwd: fs.statSync(worktree, { throwIfNoEntry: false })?.isDirectory() ? worktree : paths.root,
        env: {
          ...daemonEnv,
          STARFORGE_AGENT_ID: agent,
          STARFORGE_TRIGGER_FILE: claimed.file,
          STARFORGE_ACTION: trigger.action ?? "",
          STARFORGE_FROM_AGENT: trigger.from_agent ?? "",
          STARFORGE_TICKET: ticketOf(trigger) ?? "",
          STARFORGE_TRACE_ID: trigger.trace_id ?? "",
          STARFORGE_ATTEMPT: String(attempt),
          STARFORGE_PROJECT_ROOT: paths.root,
          [ATTEMPT_TOKEN_VARIABLE]: token
        }
      }
    }

    /**
     * Runs attempt `attempt` of `claimed` to its end (its slot was reserved by the dispatcher).
     * `exitProbe` is given how to learn the agent's exit while it runs. Only an agent log that
     * cannot be written fails it: the agent was then not started.
     */
    return (claimed: ClaimedTrigger, attempt: number, exitProbe: Ref.Ref<ExitProbe>): Effect.Effect<AttemptResult, StorageError, Spawner> =>
      Effect.gen(function*() {
        const { agent, name } = claimed.queued
        const startedMs = yield* Clock.currentTimeMillis
        const logFile = agentLogFile(paths.logs, agent, startedMs)
        // Everything the agent starts inherits it: what is left outside its group is found by it.
        const token = crypto.randomUUID()
        // The agent once it runs: its last resource sample goes into the attempt's history line, and
        // what it leaves running is stopped if it started since.
        const spawned = yield* Ref.make<{ readonly pid: number; readonly startTime: string | null } | null>(null)
        const resources = Effect.flatMap(Ref.get(spawned), (agentProcess) =>
          agentProcess === null ? Effect.succeed(undefined) : Effect.map(monitor.latest(agent, agentProcess.pid), Option.getOrUndefined))
        const recorded = (status: ExitStatus | undefined, outcome?: "error" | "interrupted") =>
          Effect.flatMap(resources, (used) => events.recorded(claimed, attempt, startedMs, logFile, used, status, outcome))
        const ended = (outcome: ExitStatus, output: OutputState, pid: number | null) =>
          Effect.gen(function*() {
            yield* recorded(outcome)
            const seconds = ((yield* Clock.currentTimeMillis) - startedMs) / 1000
            return { outcome, output, logFile, startedMs, seconds, pid, resources: yield* resources } satisfies AttemptResult
          })

        const run = Effect.gen(function*() {
          const started = yield* AgentRun.start({
            request: requestOf(claimed, attempt, token),
            logFile,
            header: [`Agent: ${agent}`, `Trigger: ${name}.trigger`, `Started: ${isoSeconds(startedMs)}`, `Attempt: ${attempt}/${settings.maxRetries}`],
            maxLogBytes: settings.logMaxBytes,
            timeoutMs: settings.agentTimeoutMs,
            stallMs: settings.agentStallTimeoutMs,
            onProgress: (progress) => slots.setProgress(agent, progress),
            ...(memoryLimit > 0
              ? {
                overMemory: (pid: number) =>
                  Effect.map(monitor.overLimit(agent, pid, memoryLimit), (sample) => ({ rssBytes: sample.rssBytes, limitBytes: memoryLimit }))
              }
              : {})
          }).pipe(Effect.tapError(() => recorded(undefined, "error")))
          if (started._tag === "NotStarted") return yield* ended(started.status, emptyOutput, null)
          yield* Ref.set(exitProbe, started.exited)
          yield* Ref.set(spawned, { pid: started.pid, startTime: started.startTime })
          yield* slots.setProcess(agent, { pid: started.pid, startTime: started.startTime, log: logFile, token })
          yield* events.spawned(claimed, attempt, started.pid)
          // The PROGRESS line every PROGRESS_INTERVAL while the agent runs.
          const status = yield* settings.progressIntervalMs > 0
            ? Effect.raceFirst(
              started.end,
              events.progress(claimed, attempt, startedMs, started.watch).pipe(Effect.delay(settings.progressIntervalMs), Effect.forever)
            )
            : started.end
          // Read to its end and recorded as one step: the attempt's history line is never lost.
          return yield* Effect.uninterruptible(Effect.flatMap(started.watch.finish, (output) =>
            ended(reportedOutcome(status, output), output, started.pid)))
        })

        yield* Ref.set(exitProbe, Effect.succeedNone)
        return yield* Effect.scoped(run).pipe(
          // Once the group is swept: what the agent left outside it.
          Effect.ensuring(Effect.flatMap(Ref.get(spawned), (agentProcess) =>
            agentProcess === null ? Effect.void : leftovers.afterAttempt({ agent, token, since: agentProcess.startTime }))),
          // Recorded once the scope has stopped the agent: its signal is kept, and an agent that
          // had already succeeded is recorded as a success.
          Effect.onInterrupt(() =>
            Effect.flatMap(Effect.flatten(Ref.get(exitProbe)), (exited) =>
              Option.match(exited, {
                onNone: () => recorded(undefined, "interrupted"),
                onSome: (status) => recorded(status, isSuccess(status) ? undefined : "interrupted")
              }))
          )
        )
      })
  })

export type RunAttempt = Effect.Effect.Success<ReturnType<typeof make>>
