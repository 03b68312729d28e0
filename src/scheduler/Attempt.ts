/**
 * One attempt of a claimed trigger: the agent's command line and environment, its log, its
 * start reported to the slot table, the daemon log and the webhooks, its progress lines while it
 * runs, and its history line however it ends.
 */
import * as crypto from "node:crypto"
import { Clock, Deferred, Effect, Either, Option, Ref } from "effect"
import { DaemonConfig, type DaemonSettings, SESSION_PLACEHOLDER, settingsFor } from "../config/DaemonConfig.js"
import { StorageError } from "../domain/errors.js"
import { ExitStatus, isSuccess } from "../domain/Outcome.js"
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
import { Sessions } from "../state/Sessions.js"
import { emptyOutput, type OutputState, type Progress, reportedError } from "../stream/StreamJson.js"
import { Worktrees } from "../workspace/Worktrees.js"
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
    const config = yield* DaemonConfig
    const { paths } = config
    const slots = yield* AgentSlots
    const monitor = yield* ResourceMonitor
    const leftovers = yield* Leftovers
    const worktrees = yield* Worktrees
    const sessions = yield* Sessions
    // The daemon's environment, which every agent inherits, copied once.
    const daemonEnv = { ...process.env } as Record<string, string>

    /** What the agent is started with: the command line, its directory and its environment. */
    const requestOf = (claimed: ClaimedTrigger, attempt: number, token: string, settings: DaemonSettings, resume: string | undefined, cwd: string) => {
      const { agent, trigger } = claimed.queued
      const [command, ...args] = commandLineOf(settings, { prompt: buildPrompt(trigger, claimed.file), triggerFile: claimed.file }, resume)
      return {
        command: command!,
        args,
        cwd,
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

    /** One run of the agent for the attempt: fresh, or resuming the session `resume`. */
    const runOnce = (claimed: ClaimedTrigger, attempt: number, exitProbe: Ref.Ref<ExitProbe>, resume: string | undefined) =>
      Effect.gen(function*() {
        const { agent, name } = claimed.queued
        const settings = settingsFor(config, agent)
        const memoryLimit = settings.agentMaxMemoryBytes
        const startedMs = yield* Clock.currentTimeMillis
        const logFile = agentLogFile(paths.logs, agent, startedMs)
        // Everything the agent starts inherits it: what is left outside its group is found by it.
        const token = crypto.randomUUID()
        // The agent once it runs: its last resource sample goes into the attempt's history line, and
        // what it leaves running is stopped if it started since.
        const spawned = yield* Ref.make<{ readonly pid: number; readonly startTime: string | null } | null>(null)
        const resources = Effect.flatMap(Ref.get(spawned), (agentProcess) =>
          agentProcess === null ? Effect.succeed(undefined) : Effect.map(monitor.latest(agent, agentProcess.pid), Option.getOrUndefined))
        // The agent's progress so far: its session is recorded for the trigger's next attempt as
        // soon as it is known, and the history line has its cost and tokens.
        const seen = yield* Ref.make<Progress>(emptyOutput.progress)
        const turnsOver = yield* Deferred.make<AgentRun.TurnsOverrun>()
        const onProgress = (progress: Progress) =>
          Effect.gen(function*() {
            yield* slots.setProgress(agent, progress)
            const before = yield* Ref.getAndSet(seen, progress)
            if (progress.session_id !== null && progress.session_id !== before.session_id) {
              yield* sessions.set(`${name}.trigger`, { agent, session_id: progress.session_id, attempt })
            }
            if (settings.agentMaxTurns > 0 && progress.turns > settings.agentMaxTurns) {
              yield* Deferred.succeed(turnsOver, { turns: progress.turns, limit: settings.agentMaxTurns })
            }
          })
        const recorded = (status: ExitStatus | undefined, outcome?: "error" | "interrupted") =>
          Effect.flatMap(Effect.zip(resources, Ref.get(seen)), ([used, progress]) =>
            events.recorded(claimed, attempt, startedMs, logFile, used, status, outcome, {
              session_id: progress.session_id,
              resumed_session: resume ?? null,
              cost_usd: progress.cost_usd,
              turns: progress.turns,
              tokens_in: progress.tokens_in,
              tokens_out: progress.tokens_out
            }))
        const ended = (outcome: ExitStatus, output: OutputState, pid: number | null) =>
          Effect.gen(function*() {
            // The whole output was read: its last progress may not have been published yet.
            yield* Ref.set(seen, output.progress)
            yield* recorded(outcome)
            const seconds = ((yield* Clock.currentTimeMillis) - startedMs) / 1000
            return { outcome, output, logFile, startedMs, seconds, pid, resources: yield* resources, resumed: resume ?? null } satisfies AttemptResult
          })

        const run = Effect.gen(function*() {
          // Its worktree, made first with AGENT_WORKTREES=auto; none under AGENT_WORKTREE_ON_FAILURE=fail: not started.
          const cwd = yield* Effect.either(worktrees.cwdFor(agent))
          const started = yield* (Either.isLeft(cwd) ? (spec: AgentRun.AgentRunSpec) => AgentRun.notStarted(spec, cwd.left.message) : AgentRun.start)({
            request: requestOf(claimed, attempt, token, settings, resume, Either.getOrElse(cwd, () => paths.root)),
            logFile,
            header: [
              `Agent: ${agent}`,
              `Trigger: ${name}.trigger`,
              `Started: ${isoSeconds(startedMs)}`,
              `Attempt: ${attempt}/${settings.maxRetries}`,
              ...(resume === undefined ? [] : [`Resumed session: ${resume}`])
            ],
            maxLogBytes: settings.logMaxBytes,
            timeoutMs: settings.agentTimeoutMs,
            stallMs: settings.agentStallTimeoutMs,
            onProgress,
            ...(settings.agentMaxTurns > 0 ? { overTurns: Deferred.await(turnsOver) } : {}),
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

    /**
     * Runs attempt `attempt` of `claimed` to its end (its slot was reserved by the dispatcher),
     * resuming the session `resume` when given. A resumed run that fails at once because the
     * session is unknown is followed, in the same attempt, by a fresh one. `exitProbe` is given
     * how to learn the agent's exit while it runs. Only an agent log that cannot be written fails
     * it: the agent was then not started.
     */
    return (
      claimed: ClaimedTrigger,
      attempt: number,
      exitProbe: Ref.Ref<ExitProbe>,
      resume?: string
    ): Effect.Effect<AttemptResult, StorageError, Spawner> =>
      Effect.flatMap(runOnce(claimed, attempt, exitProbe, resume), (result) =>
        resume !== undefined && unknownSession(result)
          ? events.sessionUnknown(claimed, attempt, resume).pipe(
            // Not tried again, should the fresh run end before it reports a session of its own.
            Effect.zipRight(sessions.forget(`${claimed.queued.name}.trigger`)),
            Effect.zipRight(runOnce(claimed, attempt, exitProbe, undefined))
          )
          : Effect.succeed(result))
  })

/** The resumed session did not exist: the agent failed before its first turn, saying so. */
export const unknownSession = (result: AttemptResult): boolean =>
  !isSuccess(result.outcome) && result.output.sessionUnknown && result.output.progress.turns === 0

/**
 * The agent's command line: `AGENT_COMMAND` and the full prompt, or, to resume `session`,
 * `AGENT_RESUME_COMMAND` (default `AGENT_COMMAND --resume <session>`) and `AGENT_RESUME_PROMPT`.
 */
export const commandLineOf = (
  settings: Pick<DaemonSettings, "agentCommand" | "resumeCommand" | "resumePrompt">,
  prompt: { readonly prompt: string; readonly triggerFile: string },
  session: string | undefined
): ReadonlyArray<string> => {
  if (session === undefined) return [...settings.agentCommand, prompt.prompt]
  const command = settings.resumeCommand.length > 0
    ? settings.resumeCommand.map((word) => word.replaceAll(SESSION_PLACEHOLDER, session))
    : [...settings.agentCommand, "--resume", session]
  return [...command, settings.resumePrompt.replaceAll("{trigger_file}", prompt.triggerFile)]
}

export type RunAttempt = Effect.Effect.Success<ReturnType<typeof make>>
