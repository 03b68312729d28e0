/**
 * `starforge daemon status`: the daemon, the queue counts, the agent slots and recent activity,
 * read from the files; as text, as JSON, or redrawn every second (`--watch`).
 */
import { Command, Options } from "@effect/cli"
import * as fs from "node:fs"
import * as path from "node:path"
import { Console, Duration, Effect, Either, Fiber, Schedule } from "effect"
import { agentVariableSuffix, type DaemonSettings, load } from "../config/DaemonConfig.js"
import { probe } from "../daemon/DaemonInstance.js"
import { UsageError } from "../domain/errors.js"
import type { ProjectPaths } from "../domain/ProjectPaths.js"
import { formatDuration } from "../domain/time.js"
import { compareOrder, parseTrigger, ticketOf } from "../domain/Trigger.js"
import { inspect } from "../queue/inspectTrigger.js"
import type { QueuedTrigger } from "../queue/TriggerQueue.js"
import { readWaiting, WAITING_FILE_LIMIT, type WaitingFile, waitingJson } from "../scheduler/Scheduler.js"
import { nextUtcDay } from "../scheduler/Dispatcher.js"
import { WaitReason } from "../scheduler/Why.js"
import { formatCost } from "../stream/StreamJson.js"
import { displayLine } from "../observability/DaemonLog.js"
import { type CapacityView, readCapacity } from "../resources/Capacity.js"
import { readTable } from "../slots/AgentSlots.js"
import { recentCounts } from "../state/History.js"
import { costLine, formatBytes, limitLines, readUsageStatus, SLOT_HEADER, slotRows } from "./progress.js"
import { countBySuffix, countTriggers, ExitWith, jsonOption, printJson, projectOption, resolveProject, table, tailLines } from "./shared.js"

/** What `status` shows; read from the files, so it works whether or not a daemon runs. */
export const readStatus = (paths: ProjectPaths) =>
  Effect.gen(function*() {
    // The daemon answers while the files are read.
    const answer = yield* Effect.fork(probe(paths))
    const config = yield* Effect.either(load({ project: paths.root }))
    const settings = Either.isRight(config) ? config.right.settings : undefined
    const slots = readTable(paths.slotsFile).table
    const busy = Object.values(slots).filter((s) => s.status === "busy").length
    // One read of the queue's directory for both: listing a large queue is not cheap.
    const [pending, processing] = countBySuffix(paths.triggers, [".trigger", ".processing"]) as [number, number]
    const hello = yield* Fiber.join(answer)
    const usage = readUsageStatus(paths, Date.now())
    const running = hello ? Math.min(busy, processing) : 0
    // Without a daemon, claimed triggers go back to the queue at the next start.
    const interrupted = hello ? 0 : processing
    // A running daemon says how it runs; otherwise the configuration tells how it would.
    const parallel = hello ? hello.settings.parallel : settings?.parallel
    return {
      running: hello !== undefined,
      pid: hello?.pid ?? null,
      mode: parallel ? "parallel" : "sequential",
      max_concurrent: hello ? hello.settings.max_concurrent : settings ? (settings.parallel ? settings.maxConcurrent : 1) : null,
      uptime_seconds: hello ? Math.max(0, Math.floor((Date.now() - Date.parse(hello.started)) / 1000)) : null,
      // The effective cap the running daemon last wrote; a file left by a stopped one says nothing.
      capacity: hello ? readCapacity(paths) ?? null : null,
      queue: {
        pending: pending + interrupted,
        running,
        done: countTriggers(paths.processed),
        failed: processing - running - interrupted,
        invalid: countTriggers(paths.invalid),
        dead_letter: countTriggers(paths.deadLetter)
      },
      slots,
      last_hour: recentCounts(paths.historyFile, Date.now()),
      ...waitingOf(paths, hello !== undefined),
      ...usage,
      budgets: budgetsOf(settings, usage.cost_today, Date.now()),
      config_error: Either.isLeft(config) ? config.left.message : undefined
    }
  })

/**
 * The waiting triggers with their reasons: the running daemon's own (`waiting.json`, from its
 * dispatcher), or, without a daemon, the queue's files, each waiting for one.
 */
export const waitingOf = (paths: ProjectPaths, running: boolean): { readonly waiting: WaitingFile["waiting"]; readonly waiting_total: number } => {
  if (running) {
    const file = readWaiting(paths)
    return { waiting: file?.waiting ?? [], waiting_total: file?.total ?? 0 }
  }
  let names: Array<string>
  try {
    names = fs.readdirSync(paths.triggers)
  } catch {
    return { waiting: [], waiting_total: 0 }
  }
  const queued: Array<QueuedTrigger> = []
  let total = 0
  for (const file of names) {
    // A claimed trigger goes back to the queue at the next start.
    const stem = file.endsWith(".trigger") ? file.slice(0, -8) : file.endsWith(".processing") ? file.slice(0, -11) : undefined
    if (stem === undefined) continue
    total++
    if (queued.length >= WAITING_FILE_LIMIT) continue
    const found = file.endsWith(".trigger") ? inspect(paths.triggers, stem, false) : undefined
    if (found?._tag === "Queued") queued.push(found.entry)
    else if (file.endsWith(".processing")) {
      const claimed = inspectClaimed(paths.triggers, stem)
      if (claimed !== undefined) queued.push(claimed)
    }
  }
  queued.sort(compareOrder)
  return {
    waiting: queued.map((q) =>
      waitingJson({ trigger: `${q.name}.trigger`, agent: q.agent, ticket: ticketOf(q.trigger), attempt: 1, why: WaitReason.NoDaemon() })),
    waiting_total: total
  }
}

/** A claimed `X.processing` read as the trigger it holds; undefined when it cannot be. */
const inspectClaimed = (triggers: string, stem: string): QueuedTrigger | undefined => {
  try {
    const file = path.join(triggers, `${stem}.processing`)
    const parsed = parseTrigger(fs.readFileSync(file))
    if (Either.isLeft(parsed)) return undefined
    const stat = fs.statSync(file, { bigint: true })
    return { name: stem, agent: parsed.right.to_agent, trigger: parsed.right, priority: parsed.right.priority ?? "normal", createdNs: stat.mtimeNs }
  } catch {
    return undefined
  }
}

/** The `Waiting` section of `status --why`: each waiting trigger and why. */
export const waitingText = (s: { readonly running: boolean; readonly waiting: WaitingFile["waiting"]; readonly waiting_total: number }): string => {
  if (s.waiting_total === 0) return "Waiting: nothing"
  const rows = s.waiting.map((w) => [w.trigger, w.agent, w.ticket ?? "-", String(w.attempt), String(w.why["text"] ?? w.why["reason"])])
  const more = s.waiting_total > s.waiting.length ? `\n(and ${s.waiting_total - s.waiting.length} more)` : ""
  return `Waiting (${s.waiting_total}):\n\n` + table(["TRIGGER", "AGENT", "TICKET", "ATTEMPT", "WHY"], rows) + more
}

/** A configured daily budget against today's cost (`budgets` of `status --json`). */
export interface BudgetView {
  /** `null`: the budget of all agents (`DAILY_BUDGET_USD`); else the agent (`DAILY_BUDGET_USD_<AGENT>`). */
  readonly agent: string | null
  readonly budget_usd: number
  readonly spent_usd: number
  /** Spent: new attempts of what it covers wait until `until` (the next UTC day). */
  readonly spent: boolean
  readonly until: string
}

/** Each configured budget against today's cost, from the CLI's configuration. */
export const budgetsOf = (
  settings: Pick<DaemonSettings, "dailyBudgetUsd" | "agentBudgetsUsd"> | undefined,
  cost: { readonly agents: Readonly<Record<string, { readonly cost_usd: number }>>; readonly total_usd: number },
  nowMs: number
): ReadonlyArray<BudgetView> => {
  if (settings === undefined) return []
  const until = new Date(nextUtcDay(nowMs)).toISOString().replace(/\.\d{3}Z$/, "Z")
  const view = (agent: string | null, spent: number, budget: number): BudgetView => ({
    agent,
    budget_usd: budget,
    spent_usd: Math.round(spent * 1e6) / 1e6,
    spent: spent >= budget,
    until
  })
  const views: Array<BudgetView> = []
  if (settings.dailyBudgetUsd > 0) views.push(view(null, cost.total_usd, settings.dailyBudgetUsd))
  for (const [suffix, budget] of Object.entries(settings.agentBudgetsUsd).sort(([a], [b]) => a.localeCompare(b))) {
    const agents = Object.keys(cost.agents).filter((agent) => agentVariableSuffix(agent) === suffix)
    const spent = agents.reduce((sum, agent) => sum + cost.agents[agent]!.cost_usd, 0)
    views.push(view(agents.length === 1 ? agents[0]! : suffix, spent, budget))
  }
  return views
}

/** `Daily budget of all agents: $1.10 of $1.00 spent today; spent, no new attempt starts until …`. */
export const budgetLines = (budgets: ReadonlyArray<BudgetView>): ReadonlyArray<string> =>
  budgets.map((b) =>
    `Daily budget ${b.agent === null ? "of all agents" : `of ${b.agent}`}: ${formatCost(b.spent_usd)} of ${formatCost(b.budget_usd)} spent today` +
    (b.spent ? `; spent, no new attempt starts until ${b.until}` : ""))

/**
 * `Mode: parallel (max concurrent: 8)`, with `; effective cap 3: <reason>` inside the parentheses
 * while dynamic scaling holds the cap below the hard cap.
 */
export const modeLine = (mode: string, maxConcurrent: number | null, capacity: CapacityView | null): string => {
  if (mode !== "parallel") return `Mode: ${mode}`
  const lowered = capacity !== null && capacity.effective_cap < capacity.max_concurrent
    ? `; effective cap ${capacity.effective_cap}${capacity.reason ? `: ${capacity.reason}` : ""}`
    : ""
  return `Mode: parallel (max concurrent: ${maxConcurrent}${lowered})`
}

/** `Machine: load 0.42 per core, 12.3 GB memory available`, from the daemon's last look; undefined without one. */
export const machineLine = (capacity: CapacityView | null): string | undefined => {
  if (capacity === null) return undefined
  const parts: Array<string> = []
  if (capacity.load_per_core !== null) parts.push(`load ${Math.round(capacity.load_per_core * 100) / 100} per core`)
  if (capacity.available_memory_bytes !== null) parts.push(`${formatBytes(capacity.available_memory_bytes)} memory available`)
  return parts.length === 0 ? undefined : `Machine: ${parts.join(", ")}`
}

/** The text of `status`, also each screen of `status --watch` (with more recent events). */
export const statusText = (paths: ProjectPaths, s: Effect.Effect.Success<ReturnType<typeof readStatus>>, events = 5): string => {
  const lines: Array<string> = []
  lines.push(s.running ? `Daemon is running (PID: ${s.pid}), up ${formatDuration(s.uptime_seconds ?? 0)}` : "Daemon is not running")
  if (s.config_error) lines.push(`Configuration problem: ${s.config_error}`)
  else lines.push(modeLine(s.mode, s.max_concurrent, s.capacity))
  const machine = s.running ? machineLine(s.capacity) : undefined
  if (machine !== undefined) lines.push(machine)
  const q = s.queue
  lines.push(
    `Queue: ${q.pending} pending, ${q.running} running, ${q.done} done, ${q.failed} failed (waiting to retry), ` +
      `${q.invalid} invalid, ${q.dead_letter} dead-letter`
  )
  lines.push(`Last hour: ${s.last_hour.done} done, ${s.last_hour.failed} failed`)
  lines.push(...limitLines(s, Date.now()))
  lines.push(...budgetLines(s.budgets))
  const rows = slotRows(s.slots)
  lines.push(rows.length === 0 ? "Agents: none seen yet" : "\n" + table(SLOT_HEADER, rows))
  const cost = costLine(s)
  if (cost !== undefined) lines.push("\n" + cost)
  const recent = tailLines(paths.daemonLog, events).map(displayLine)
  if (recent.length > 0) lines.push(`\n${s.running ? "Recent activity" : "Last activity"}:\n` + recent.map((l) => `  ${l}`).join("\n"))
  return lines.join("\n")
}

const whyOption = Options.boolean("why").pipe(
  Options.withDescription("List every waiting trigger with the reason it has not started (the dispatcher's own decision).")
)

const watchOption = Options.boolean("watch").pipe(
  Options.withAlias("w"),
  Options.withDescription("Refresh every second until q or Ctrl-C (a live screen on a terminal, repeated plain output otherwise).")
)

export const status = Command.make("status", { project: projectOption, json: jsonOption, watch: watchOption, why: whyOption }, ({ json, project, watch, why }) =>
  Effect.gen(function*() {
    const paths = yield* resolveProject(project)
    if (watch) {
      if (json) return yield* new UsageError({ message: "--watch and --json cannot be combined: use one of them" })
      return yield* watchStatus(paths)
    }
    const s = yield* readStatus(paths)
    if (json) {
      const { config_error: _ignored, ...rest } = s
      yield* printJson(rest)
    } else {
      yield* Console.log(statusText(paths, s))
      if (why) yield* Console.log("\n" + waitingText(s))
    }
    if (!s.running) return yield* new ExitWith({ code: 1 })
  })).pipe(Command.withDescription("Show the daemon, the queue counts and the agent slots (exit 1 when not running); --watch keeps it live."))

/**
 * `status --watch`: on a terminal, a full screen redrawn every second (alternate screen, hidden
 * cursor, keys read raw; a resized terminal is fitted at the next second) until `q` or Ctrl-C,
 * after which the terminal is as it was; otherwise the plain status every second, each under a
 * time line, until interrupted.
 */
const watchStatus = (paths: ProjectPaths) =>
  Effect.gen(function*() {
    const tty = process.stdout.isTTY === true
    if (tty) {
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          if (process.stdin.isTTY) {
            process.stdin.setRawMode(true)
            process.stdin.resume()
          }
          process.stdout.write("\x1b[?1049h\x1b[?25l")
        }),
        () =>
          Effect.sync(() => {
            if (process.stdin.isTTY) {
              process.stdin.setRawMode(false)
              process.stdin.pause()
            }
            process.stdout.write("\x1b[?25h\x1b[?1049l")
          })
      )
    }
    // q, Q, Ctrl-C (raw mode delivers it as a byte), Ctrl-D.
    const quitKey = Effect.async<void>((resume) => {
      const onKey = (key: Buffer) => {
        if (key.some((b) => b === 0x71 || b === 0x51 || b === 0x03 || b === 0x04)) resume(Effect.void)
      }
      process.stdin.on("data", onKey)
      return Effect.sync(() => void process.stdin.off("data", onKey))
    })
    const frame = Effect.gen(function*() {
      const s = yield* readStatus(paths)
      const now = new Date().toISOString().replace(/\.\d{3}Z$/, "Z")
      if (tty) {
        const rows = process.stdout.rows ?? 40
        const body = `starforge: ${paths.root}   ${now}   (q to quit)\n\n` + statusText(paths, s, 10)
        // Whole screen at once, each line cleared to its end, cut to the terminal's height.
        const lines = body.split("\n").slice(0, rows - 1).map((l) => l.slice(0, process.stdout.columns ?? 200) + "\x1b[K")
        process.stdout.write("\x1b[H" + lines.join("\n") + "\n\x1b[J")
      } else {
        process.stdout.write(`--- ${now} ---\n${statusText(paths, s)}\n\n`)
      }
    })
    yield* frame.pipe(
      Effect.repeat(Schedule.spaced(Duration.seconds(1))),
      Effect.raceFirst(tty && process.stdin.isTTY ? quitKey : Effect.never)
    )
  }).pipe(Effect.scoped)
