/**
 * Spans of job attempts. One `starforge.attempt` span per attempt, from the moment its trigger
 * started waiting (queued, or its retry delay began) to its outcome, with child spans for the
 * stages: `queue wait`, `spawn`, `run`, `kill` (in AgentRun) and `archive`. The trigger's
 * `trace_id` becomes the trace id when it is a valid one (32 hex digits, not all zero); otherwise
 * each job gets a fresh trace, shared by its attempts. Spans go nowhere unless a tracer is
 * installed (see `Telemetry`).
 */
import { Context, Effect, Exit, type Fiber, Option, Tracer } from "effect"

/** The trace id a trigger's `trace_id` names, if it is a valid W3C/OTel trace id. */
export const validTraceId = (traceId: string | null | undefined): string | undefined =>
  traceId && /^[0-9a-f]{32}$/i.test(traceId) && !/^0+$/.test(traceId) ? traceId.toLowerCase() : undefined

/**
 * Options for the spans every job opens: no captured call site. Effect takes a stack trace for
 * each span (its `code.stacktrace`) unless told not to; a job's spans are named for their stage
 * and need none.
 */
export const NO_STACK = { captureStackTrace: false } as const

/**
 * `2 * bytes` random hex digits. Ids need to be unique, not secret: `Math.random`, as Effect's
 * own spans use, and no call into OpenSSL per job.
 */
const randomHex = (bytes: number) => {
  let hex = ""
  for (let i = 0; i < bytes; i++) hex += HEX_BYTES[(Math.random() * 256) | 0]
  return hex
}
const HEX_BYTES = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, "0"))

/** The parent of every span of one job: its trace, from the trigger's `trace_id` where valid. */
export const jobParent = (traceId: string | null | undefined): Tracer.ExternalSpan =>
  Tracer.externalSpan({ traceId: validTraceId(traceId) ?? randomHex(16), spanId: randomHex(8), sampled: true })

const nanos = (ms: number) => BigInt(Math.round(ms * 1000)) * 1000n

/**
 * Opens a span that started at `startMs`, in one step: the tracer and (without `parent`) the
 * current span are read from the fiber.
 */
const openSpan = (fiber: Fiber.RuntimeFiber<unknown, unknown>, name: string, startMs: number, parent?: Tracer.AnySpan): Tracer.Span =>
  Context.get(fiber.currentDefaultServices, Tracer.Tracer).span(
    name,
    parent ? Option.some(parent) : Context.getOption(fiber.currentContext, Tracer.ParentSpan),
    Context.empty(),
    [],
    nanos(startMs),
    "internal"
  )

/**
 * Runs `effect` inside a span that started at `startMs` (which may be before now, e.g. when the
 * trigger was queued). Without `parent`, the current span is the parent.
 */
export const spanSince = (
  name: string,
  startMs: number,
  options: { readonly attributes?: Record<string, unknown>; readonly parent?: Tracer.AnySpan } = {}
) =>
<A, E, R>(effect: (span: Tracer.Span) => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime((fiber) => {
    const span = openSpan(fiber, name, startMs, options.parent)
    for (const [key, value] of Object.entries(options.attributes ?? {})) span.attribute(key, value)
    return effect(span).pipe(
      Effect.withParentSpan(span),
      Effect.onExit((exit) => Effect.sync(() => span.end(nanos(Date.now()), exit)))
    )
  })

/**
 * A span of a stage that had nothing to do (a first attempt's queue wait, the kill stage of an
 * agent already gone), opened at `startMs` (default: now) and ended now, in one step: much cheaper
 * than wrapping an empty effect in a span.
 */
export const endedSpan = (name: string, startMs?: number): Effect.Effect<void> =>
  Effect.withFiberRuntime((fiber) => {
    const now = Date.now()
    openSpan(fiber, name, startMs ?? now).end(nanos(now), Exit.void)
    return Effect.void
  })
