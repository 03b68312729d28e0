/**
 * Span export: over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, nothing otherwise. The standard variables are
 * honoured: `…_ENDPOINT` gets `/v1/traces` appended, `…_TRACES_ENDPOINT` is used as it is,
 * `OTEL_EXPORTER_OTLP_HEADERS` / `…_TRACES_HEADERS` (`key=value,…`), `OTEL_SERVICE_NAME`
 * (default `starforge`), `OTEL_BSP_SCHEDULE_DELAY` (ms between exports, default 5000),
 * `OTEL_SDK_DISABLED=true` and `OTEL_TRACES_EXPORTER=none` turn it off.
 *
 * Metrics (each agent's CPU, memory and processes, the effective cap) go the same way to
 * `/v1/metrics` (or `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`, `…_METRICS_HEADERS`), every
 * `OTEL_METRIC_EXPORT_INTERVAL` ms (default 60000); `OTEL_METRICS_EXPORTER=none` turns them off.
 *
 * The exporter module is imported only when it is needed.
 */
import { Effect, Layer } from "effect"
import { VERSION } from "../version.js"

export interface ExportSettings {
  readonly url: string
  readonly headers: Record<string, string>
  readonly serviceName: string
  readonly exportIntervalMs: number
}

const parseHeaders = (text: string | undefined): Record<string, string> => {
  const headers: Record<string, string> = {}
  for (const pair of (text ?? "").split(",")) {
    const at = pair.indexOf("=")
    if (at <= 0) continue
    try {
      headers[decodeURIComponent(pair.slice(0, at).trim())] = decodeURIComponent(pair.slice(at + 1).trim())
    } catch {
      // A malformed escape: the header is skipped, as the OpenTelemetry SDKs do.
    }
  }
  return headers
}

/** What differs between the export of spans and of metrics: the signal's variables and defaults. */
const SIGNALS = {
  traces: { intervalVariable: "OTEL_BSP_SCHEDULE_DELAY", defaultIntervalMs: 5_000 },
  metrics: { intervalVariable: "OTEL_METRIC_EXPORT_INTERVAL", defaultIntervalMs: 60_000 }
} as const

/**
 * Where and how to export `signal`, from `endpoint` (the configured `OTEL_EXPORTER_OTLP_ENDPOINT`)
 * and the standard variables of the environment; undefined: export nothing.
 */
const signalSettings = (
  signal: keyof typeof SIGNALS,
  endpoint: string,
  env: Readonly<Record<string, string | undefined>>
): ExportSettings | undefined => {
  const upper = signal.toUpperCase()
  if (env["OTEL_SDK_DISABLED"]?.trim().toLowerCase() === "true") return undefined
  if (env[`OTEL_${upper}_EXPORTER`]?.trim().toLowerCase() === "none") return undefined
  const own = env[`OTEL_EXPORTER_OTLP_${upper}_ENDPOINT`]?.trim()
  const url = own ? own : endpoint ? `${endpoint.replace(/\/+$/, "")}/v1/${signal}` : undefined
  if (url === undefined) return undefined
  const interval = Number(env[SIGNALS[signal].intervalVariable])
  return {
    url,
    headers: { ...parseHeaders(env["OTEL_EXPORTER_OTLP_HEADERS"]), ...parseHeaders(env[`OTEL_EXPORTER_OTLP_${upper}_HEADERS`]) },
    serviceName: env["OTEL_SERVICE_NAME"]?.trim() || "starforge",
    exportIntervalMs: Number.isFinite(interval) && interval > 0 ? interval : SIGNALS[signal].defaultIntervalMs
  }
}

/** Where and how to export spans; undefined: export none. */
export const exportSettings = (endpoint: string, env: Readonly<Record<string, string | undefined>> = process.env) =>
  signalSettings("traces", endpoint, env)

/** Where and how to export metrics; undefined: export none. */
export const metricsExportSettings = (endpoint: string, env: Readonly<Record<string, string | undefined>> = process.env) =>
  signalSettings("metrics", endpoint, env)

/** The tracer and metrics layers for these settings (empty when there is nothing to export). */
export const layer = (traces: ExportSettings | undefined, metrics?: ExportSettings): Layer.Layer<never> =>
  traces === undefined && metrics === undefined
    ? Layer.empty
    : Layer.unwrapScoped(
      Effect.map(Effect.promise(() => import("./otlp.js")), (otlp) =>
        Layer.mergeAll(
          traces === undefined ? Layer.empty : otlp.tracerLayer({ ...traces, serviceVersion: VERSION }),
          metrics === undefined ? Layer.empty : otlp.metricsLayer({ ...metrics, serviceVersion: VERSION })
        ))
    )
