/**
 * The OTLP/HTTP (JSON) span and metrics exporters of `@effect/opentelemetry`, over the built-in `fetch`.
 * Loaded only when an endpoint is configured (see `Telemetry`), so the CLI never pays for it.
 */
import * as OtlpMetrics from "@effect/opentelemetry/OtlpMetrics"
import * as OtlpSerialization from "@effect/opentelemetry/OtlpSerialization"
import * as OtlpTracer from "@effect/opentelemetry/OtlpTracer"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { Duration, Layer } from "effect"

export interface OtlpOptions {
  readonly url: string
  readonly headers: Record<string, string>
  readonly serviceName: string
  readonly serviceVersion: string
  readonly exportIntervalMs: number
}

/** The options both exporters take. */
const exporterOptions = (options: OtlpOptions) => ({
  url: options.url,
  headers: options.headers,
  resource: { serviceName: options.serviceName, serviceVersion: options.serviceVersion },
  exportInterval: Duration.millis(options.exportIntervalMs),
  shutdownTimeout: Duration.seconds(3)
})

const transport = Layer.merge(FetchHttpClient.layer, OtlpSerialization.layerJson)

export const tracerLayer = (options: OtlpOptions): Layer.Layer<never> =>
  OtlpTracer.layer(exporterOptions(options)).pipe(Layer.provide(transport))

export const metricsLayer = (options: OtlpOptions): Layer.Layer<never> =>
  OtlpMetrics.layer(exporterOptions(options)).pipe(Layer.provide(transport))
