/**
 * Why a trigger waits: the reason the dispatcher did not start it, as data and as a sentence.
 * The dispatcher takes its decision with `decide` and reports the same decision here, so the
 * reason shown is the reason it waits.
 */
import { Data } from "effect"

/** The reason a trigger has not started, most specific first. */
export type WaitReason = Data.TaggedEnum<{
  /** The dispatcher will look at it at its next pass (just arrived, or a slot was just freed). */
  Next: {}
  /** Its agent runs another trigger. */
  AgentBusy: { readonly agent: string; readonly trigger: string | null; readonly since: string | null }
  /** As many agents run as the cap allows; `reason` says why the effective cap is below the hard one. */
  CapReached: { readonly running: number; readonly cap: number; readonly max: number; readonly reason: string | null }
  /** It failed and waits for its retry delay. */
  RetryDelay: { readonly until: string; readonly attempt: number }
  /** Agents with its command are paused after a usage limit. */
  UsageLimit: { readonly until: string; readonly reason: string }
  /** A daily budget is spent. */
  Budget: { readonly until: string; readonly spentUsd: number; readonly budgetUsd: number; readonly scope: "all" | "agent" }
  /** It was put back (log not writable, memory emergency) and is not looked at before `until`. */
  HeldBack: { readonly until: string }
  /** The daemon is stopping: nothing new starts. */
  Stopping: {}
  /** No daemon runs for the project. */
  NoDaemon: {}
}>
export const WaitReason = Data.taggedEnum<WaitReason>()

/** `AgentBusy` → `agent_busy`: the `reason` of the JSON form. */
const snake = (tag: string) => tag.replace(/[A-Z]/g, (c, i: number) => (i === 0 ? "" : "_") + c.toLowerCase())

/** The sentence a user reads. */
export const describeWait = (why: WaitReason): string =>
  WaitReason.$match(why, {
    Next: () => "about to start",
    AgentBusy: ({ agent, since, trigger }) =>
      `${agent} is busy${trigger === null ? "" : ` with ${trigger}`}${since === null ? "" : ` since ${since}`}`,
    CapReached: ({ cap, max, reason, running }) =>
      cap < max
        ? `${running} of ${cap} agents running: the effective cap is ${cap} of ${max}${reason === null ? "" : ` (${reason})`}`
        : `${running} of ${cap} agents running: the cap (MAX_CONCURRENT_AGENTS) is reached`,
    RetryDelay: ({ attempt, until }) => `attempt ${attempt} waits for its retry delay until ${until}`,
    UsageLimit: ({ reason, until }) => `paused by a usage limit until ${until} (${reason})`,
    Budget: ({ budgetUsd, scope, spentUsd, until }) =>
      `the daily budget ${scope === "all" ? "of all agents" : "of its agent"} is spent ($${round(spentUsd)} of $${round(budgetUsd)}) until ${until}`,
    HeldBack: ({ until }) => `put back in the queue; looked at again at ${until}`,
    Stopping: () => "the daemon is stopping",
    NoDaemon: () => "no daemon runs (start one with 'starforge daemon start')"
  })

const round = (usd: number) => (Math.round(usd * 100) / 100).toFixed(2)

/** The JSON form: `{ reason: "agent_busy", text: "…", …details }`. */
export const whyJson = (why: WaitReason): Record<string, unknown> => {
  const { _tag, ...details } = why
  return { reason: snake(_tag), text: describeWait(why), ...details }
}

/** A trigger that waits, as `status --json`, `status --why` and the dashboard show it. */
export interface Waiting {
  /** `X.trigger` */
  readonly trigger: string
  readonly agent: string
  readonly ticket: string | null
  /** The attempt it waits to run. */
  readonly attempt: number
  readonly why: WaitReason
}
