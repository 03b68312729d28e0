/**
 * Tracing through the real daemon (issue 6 part 4): with `OTEL_EXPORTER_OTLP_ENDPOINT` set, one
 * `starforge.attempt` span per attempt (with its stages as children) reaches an OTLP/HTTP JSON
 * receiver on 127.0.0.1; a valid trigger `trace_id` is the trace id. Each agent's sampled CPU,
 * memory and processes go to the same receiver as metrics (issue 21).
 */
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { afterEach, describe, expect, it } from "vitest"
import { exportSettings, metricsExportSettings } from "../../src/observability/Telemetry.js"
import { archivedTriggers, exitWithin, startForeground } from "../support/daemonHelpers.js"
import { trigger, useProjects, waitFor } from "../support/project.js"

const projects = useProjects()

interface OtlpValue {
  readonly stringValue?: string
  readonly intValue?: string | number
  readonly boolValue?: boolean
}
interface OtlpSpan {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly name: string
  readonly startTimeUnixNano: string
  readonly endTimeUnixNano: string
  readonly attributes: ReadonlyArray<{ key: string; value: OtlpValue }>
}

interface OtlpMetric {
  readonly name: string
  readonly gauge?: { readonly dataPoints: ReadonlyArray<{ attributes: ReadonlyArray<{ key: string; value: OtlpValue }>; asDouble?: number; asInt?: string | number }> }
}

/** A minimal OTLP/HTTP receiver: decodes the JSON protocol, keeps every span, metric and resource. */
const receivers: Array<http.Server> = []
afterEach(async () => {
  for (const server of receivers.splice(0)) await new Promise((r) => server.close(r))
})
const startReceiver = async () => {
  const spans: Array<OtlpSpan> = []
  const metrics: Array<OtlpMetric> = []
  const resources: Array<Record<string, unknown>> = []
  const paths: Array<string> = []
  const headers: Array<http.IncomingHttpHeaders> = []
  const server = http.createServer((req, res) => {
    let body = ""
    req.on("data", (d) => (body += String(d)))
    req.on("end", () => {
      paths.push(req.url ?? "")
      headers.push(req.headers)
      const data = JSON.parse(body) as {
        resourceSpans?: Array<{ resource: { attributes: Array<{ key: string; value: OtlpValue }> }; scopeSpans: Array<{ spans: Array<OtlpSpan> }> }>
        resourceMetrics?: Array<{ scopeMetrics: Array<{ metrics: Array<OtlpMetric> }> }>
      }
      for (const rs of data.resourceSpans ?? []) {
        resources.push(Object.fromEntries(rs.resource.attributes.map((a) => [a.key, a.value.stringValue])))
        for (const ss of rs.scopeSpans) spans.push(...ss.spans)
      }
      for (const rm of data.resourceMetrics ?? []) for (const sm of rm.scopeMetrics) metrics.push(...sm.metrics)
      res.writeHead(200, { "content-type": "application/json" })
      res.end("{}")
    })
  })
  receivers.push(server)
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, spans, metrics, resources, paths, headers }
}

const attrs = (span: OtlpSpan): Record<string, unknown> =>
  Object.fromEntries(span.attributes.map((a) => [a.key, a.value.stringValue ?? (a.value.intValue !== undefined ? Number(a.value.intValue) : a.value.boolValue)]))

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"

describe("tracing", () => {
  it("exports one span per attempt with its stages to an OTLP/HTTP receiver; a valid trace_id is the trace id", async () => {
    const receiver = await startReceiver()
    const p = projects.make({
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_HEADERS: "x-team=agents",
      OTEL_SERVICE_NAME: "starforge-test",
      OTEL_BSP_SCHEDULE_DELAY: "200",
      OTEL_METRICS_EXPORTER: "none"
    })
    const fg = await startForeground(p)
    p.drop("flaky", trigger("alpha", "fail-first", { trace_id: TRACE, context: { ticket: "52" } }))
    p.drop("plain", trigger("beta", "exit=0", { trace_id: "TRACE-1761732900-a3f9b2" }))
    await waitFor(() => archivedTriggers(p).length === 2, { timeoutMs: 30_000, what: "both triggers to finish" })
    await waitFor(() => receiver.spans.filter((s) => s.name === "starforge.attempt").length === 3, {
      timeoutMs: 15_000,
      what: "three attempt spans at the receiver"
    })
    fg.child.kill("SIGTERM")
    expect((await exitWithin(fg, 15_000)).code).toBe(0)

    expect(new Set(receiver.paths)).toEqual(new Set(["/v1/traces"]))
    expect(receiver.headers[0]!["x-team"]).toBe("agents")
    expect(receiver.resources[0]).toMatchObject({ "service.name": "starforge-test", "service.version": "0.1.0" })
    const attempts = receiver.spans.filter((s) => s.name === "starforge.attempt")
    const flaky = attempts.filter((s) => attrs(s)["trigger"] === "flaky.trigger").sort((a, b) => Number(attrs(a)["attempt"]) - Number(attrs(b)["attempt"]))
    expect(flaky.map((s) => s.traceId)).toEqual([TRACE, TRACE])
    expect(flaky.map((s) => attrs(s))).toEqual([
      expect.objectContaining({ agent: "alpha", trigger: "flaky.trigger", ticket: "52", trace_id: TRACE, attempt: 1, outcome: "failed", exit_code: 7 }),
      expect.objectContaining({ agent: "alpha", attempt: 2, outcome: "success", exit_code: 0 })
    ])
    const plain = attempts.find((s) => attrs(s)["trigger"] === "plain.trigger")!
    // Not a valid trace id: a fresh trace, the trigger's id kept as an attribute.
    expect(plain.traceId).toMatch(/^[0-9a-f]{32}$/)
    expect(plain.traceId).not.toBe(TRACE)
    expect(attrs(plain)).toMatchObject({ trace_id: "TRACE-1761732900-a3f9b2", outcome: "success" })

    // The stages of each attempt are its descendants: queue wait, spawn, run, kill, archive.
    const byId = new Map(receiver.spans.map((s) => [s.spanId, s]))
    const underAttempt = (attempt: OtlpSpan) =>
      receiver.spans.filter((s) => {
        for (let up = s.parentSpanId; up; up = byId.get(up)?.parentSpanId) if (up === attempt.spanId) return true
        return false
      }).map((s) => s.name)
    expect(underAttempt(flaky[0]!)).toEqual(expect.arrayContaining(["queue wait", "spawn", "run", "kill"]))
    expect(underAttempt(flaky[0]!)).not.toContain("archive")
    expect(underAttempt(flaky[1]!)).toEqual(expect.arrayContaining(["queue wait", "spawn", "run", "kill", "archive"]))
    for (const s of receiver.spans.filter((x) => x.traceId === TRACE)) {
      expect(BigInt(s.endTimeUnixNano)).toBeGreaterThanOrEqual(BigInt(s.startTimeUnixNano))
    }
    // The second attempt's queue wait covers the retry delay (INITIAL_RETRY_DELAY=0.2 s).
    const retryWait = receiver.spans.find((s) => s.name === "queue wait" && s.parentSpanId === flaky[1]!.spanId)!
    expect(Number(BigInt(retryWait.endTimeUnixNano) - BigInt(retryWait.startTimeUnixNano)) / 1e6).toBeGreaterThanOrEqual(190)
  })

  it("exports each agent's sampled memory, CPU and processes as metrics, and the attempt's peak on its span", async () => {
    const receiver = await startReceiver()
    const p = projects.make({
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_BSP_SCHEDULE_DELAY: "200",
      OTEL_METRIC_EXPORT_INTERVAL: "200",
      RESOURCE_SAMPLE_INTERVAL: "0.2"
    })
    await startForeground(p)
    p.drop("sampled", trigger("alpha", "sleep=2"))
    const agentPoint = (name: string) =>
      receiver.metrics.filter((m) => m.name === name).flatMap((m) => m.gauge?.dataPoints ?? [])
        .find((d) => d.attributes.some((a) => a.key === "agent" && a.value.stringValue === "alpha") && Number(d.asDouble ?? d.asInt ?? 0) > 0)
    await waitFor(() => agentPoint("starforge.agent.rss_bytes") && agentPoint("starforge.agent.processes"), {
      timeoutMs: 15_000,
      what: "the agent's memory and process count at the receiver"
    })
    await waitFor(() => archivedTriggers(p).length === 1, { timeoutMs: 20_000, what: "the trigger to finish" })
    const attempt = await waitFor(() => receiver.spans.find((s) => s.name === "starforge.attempt"), { timeoutMs: 15_000, what: "the attempt span" })
    expect(Number(attempt.attributes.find((a) => a.key === "peak_rss_bytes")?.value.intValue)).toBeGreaterThan(0)
    expect(receiver.metrics.some((m) => m.name === "starforge.effective_cap")).toBe(true)
  })

  it("exports nothing without an endpoint, or when disabled; honours the standard variables", () => {
    expect(exportSettings("", {})).toBeUndefined()
    expect(exportSettings("http://collector:4318", { OTEL_SDK_DISABLED: "true" })).toBeUndefined()
    expect(exportSettings("http://collector:4318", { OTEL_TRACES_EXPORTER: "none" })).toBeUndefined()
    expect(exportSettings("http://collector:4318/", {})).toEqual({
      url: "http://collector:4318/v1/traces",
      headers: {},
      serviceName: "starforge",
      exportIntervalMs: 5_000
    })
    expect(exportSettings("", { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "https://x/api/traces", OTEL_EXPORTER_OTLP_HEADERS: "a=1,b=%20two,bad" }))
      .toMatchObject({ url: "https://x/api/traces", headers: { a: "1", b: " two" } })
    expect(metricsExportSettings("http://collector:4318/", {})).toMatchObject({ url: "http://collector:4318/v1/metrics", exportIntervalMs: 60_000 })
    expect(metricsExportSettings("http://collector:4318", { OTEL_METRICS_EXPORTER: "none" })).toBeUndefined()
    expect(metricsExportSettings("http://collector:4318", { OTEL_SDK_DISABLED: "true" })).toBeUndefined()
    expect(metricsExportSettings("", { OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: "https://x/m", OTEL_METRIC_EXPORT_INTERVAL: "1000" }))
      .toMatchObject({ url: "https://x/m", exportIntervalMs: 1_000 })
  })
})
