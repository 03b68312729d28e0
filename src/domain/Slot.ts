/**
 * One agent slot as persisted in `C/daemon/agent-slots.json` (contract §4). The first four keys
 * are the original format; the rest are additions the contract allows.
 */
import { Schema } from "effect"

export const SlotStatus = Schema.Literal("busy", "idle")

export const Slot = Schema.Struct({
  status: SlotStatus,
  pid: Schema.NullOr(Schema.String),
  ticket: Schema.NullOr(Schema.String),
  started_at: Schema.NullOr(Schema.String),
  trigger: Schema.optional(Schema.NullOr(Schema.String)),
  log: Schema.optional(Schema.NullOr(Schema.String)),
  attempt: Schema.optional(Schema.NullOr(Schema.Number)),
  pid_start_time: Schema.optional(Schema.NullOr(Schema.String)),
  trace_id: Schema.optional(Schema.NullOr(Schema.String)),
  // The attempt's token (`STARFORGE_ATTEMPT_ID`): what its agent leaves running is found by it.
  attempt_id: Schema.optional(Schema.NullOr(Schema.String)),
  // Live progress read from the agent's stream-json output (see stream/OutputState.ts).
  last_event_at: Schema.optional(Schema.NullOr(Schema.String)),
  turns: Schema.optional(Schema.Number),
  tool_uses: Schema.optional(Schema.Number),
  last_tool: Schema.optional(Schema.NullOr(Schema.String)),
  cost_usd: Schema.optional(Schema.NullOr(Schema.Number)),
  tokens_in: Schema.optional(Schema.Number),
  tokens_out: Schema.optional(Schema.Number),
  session_id: Schema.optional(Schema.NullOr(Schema.String)),
  model: Schema.optional(Schema.NullOr(Schema.String)),
  // The agent's process tree, sampled every RESOURCE_SAMPLE_INTERVAL (see resources/ResourceMonitor.ts).
  cpu_percent: Schema.optional(Schema.NullOr(Schema.Number)),
  rss_bytes: Schema.optional(Schema.Number),
  processes: Schema.optional(Schema.Number),
  peak_rss_bytes: Schema.optional(Schema.Number),
  cpu_seconds: Schema.optional(Schema.Number),
  sampled_at: Schema.optional(Schema.String)
})
export type Slot = typeof Slot.Type

export const SlotTable = Schema.Record({ key: Schema.String, value: Slot })
export type SlotTable = typeof SlotTable.Type

/** What a sample of the agent's process tree adds to its busy slot. */
export interface SlotResources {
  readonly cpu_percent: number | null
  readonly rss_bytes: number
  readonly processes: number
  readonly peak_rss_bytes: number
  readonly cpu_seconds: number
  readonly sampled_at: string
}

export const idleSlot: Slot = { status: "idle", pid: null, ticket: null, started_at: null }

/** What a busy slot records about the job it runs. */
export interface BusyInfo {
  readonly ticket: string | null
  readonly trigger: string
  readonly attempt: number
  readonly traceId: string | null
  readonly startedAt: string
}

export const busySlot = (info: BusyInfo): Slot => ({
  status: "busy",
  pid: null,
  ticket: info.ticket,
  started_at: info.startedAt,
  trigger: info.trigger,
  log: null,
  attempt: info.attempt,
  pid_start_time: null,
  trace_id: info.traceId
})
