/** The slot table's resource columns and their formats (`status`, `slots list|show`). */
import { describe, expect, it } from "vitest"
import {
  formatBytes,
  formatCpuPercent,
  formatCpuSeconds,
  resourceCells,
  SLOT_HEADER,
  slotDetails,
  slotRows
} from "../../src/cli/progress.js"
import { table } from "../../src/cli/shared.js"
import type { Slot } from "../../src/domain/Slot.js"

const MB = 1024 * 1024
const PEAK = Math.round(1.4 * 1024 * MB)
const NOW = Date.parse("2025-10-25T05:10:00Z")

const busy: Slot = {
  status: "busy",
  pid: "4242",
  ticket: "52",
  started_at: "2025-10-25T05:00:00Z",
  trigger: "dev-a-work-1.trigger",
  attempt: 1,
  log: "/p/.claude/logs/dev-a-1761368400.log",
  cpu_percent: 37.4,
  rss_bytes: 212 * MB,
  processes: 5,
  peak_rss_bytes: PEAK,
  cpu_seconds: 12.34,
  sampled_at: "2025-10-25T05:09:58Z"
}
const idle: Slot = { status: "idle", pid: null, ticket: null, started_at: null }

describe("formats", () => {
  it("formatBytes: B, KB, MB, then GB with one decimal; '-' when unknown", () => {
    expect(formatBytes(0)).toBe("0 B")
    expect(formatBytes(512)).toBe("512 B")
    expect(formatBytes(1024)).toBe("1 KB")
    expect(formatBytes(12 * 1024 + 100)).toBe("12 KB")
    expect(formatBytes(212 * MB)).toBe("212 MB")
    expect(formatBytes(212.4 * MB)).toBe("212 MB")
    // Never `1024 MB`: a count that rounds up to the next unit is shown in it.
    expect(formatBytes(1023.7 * MB)).toBe("1.0 GB")
    expect(formatBytes(1.4 * 1024 * MB)).toBe("1.4 GB")
    expect(formatBytes(12.34 * 1024 * MB)).toBe("12.3 GB")
    expect(formatBytes(null)).toBe("-")
    expect(formatBytes(undefined)).toBe("-")
    expect(formatBytes(Number.NaN)).toBe("-")
  })

  it("formatCpuPercent: whole percent of one core, above 100 on several cores; '-' when unknown", () => {
    expect(formatCpuPercent(37.4)).toBe("37%")
    expect(formatCpuPercent(0)).toBe("0%")
    expect(formatCpuPercent(0.4)).toBe("0%")
    expect(formatCpuPercent(251.6)).toBe("252%")
    expect(formatCpuPercent(null)).toBe("-")
    expect(formatCpuPercent(undefined)).toBe("-")
  })

  it("formatCpuSeconds: seconds with one decimal; '-' when unknown", () => {
    expect(formatCpuSeconds(12.34)).toBe("12.3s")
    expect(formatCpuSeconds(0)).toBe("0.0s")
    expect(formatCpuSeconds(3725)).toBe("3725.0s")
    expect(formatCpuSeconds(null)).toBe("-")
    expect(formatCpuSeconds(undefined)).toBe("-")
  })
})

describe("slot table", () => {
  it("a busy slot shows its last sample in CPU, MEM, PEAK and PROCS", () => {
    expect(resourceCells(busy)).toEqual(["37%", "212 MB", "1.4 GB", "5"])
    expect(SLOT_HEADER).toEqual(["AGENT", "STATUS", "PID", "TICKET", "RUNNING FOR", "TRIGGER", "CPU", "MEM", "PEAK", "PROCS", "PROGRESS"])
    expect(slotRows({ "dev-a": busy }, NOW)).toEqual([
      ["dev-a", "busy", "4242", "52", "10m 00s", "dev-a-work-1.trigger", "37%", "212 MB", "1.4 GB", "5", "-"]
    ])
  })

  it("'-' before the first sample, for an unknown CPU (first sample) and for an idle slot", () => {
    const { cpu_percent: _c, rss_bytes: _r, processes: _p, peak_rss_bytes: _k, cpu_seconds: _s, sampled_at: _a, ...unsampled } = busy
    expect(resourceCells(unsampled)).toEqual(["-", "-", "-", "-"])
    expect(resourceCells({ ...busy, cpu_percent: null })).toEqual(["-", "212 MB", "1.4 GB", "5"])
    expect(resourceCells(idle)).toEqual(["-", "-", "-", "-"])
    // An idle slot never shows what a previous attempt left in it.
    expect(resourceCells({ ...busy, status: "idle" })).toEqual(["-", "-", "-", "-"])
  })

  it("rows are sorted by agent and line up under the header", () => {
    const text = table(SLOT_HEADER, slotRows({ "dev-b": idle, "dev-a": busy }, NOW))
    expect(text.split("\n")).toEqual([
      "AGENT  STATUS  PID   TICKET  RUNNING FOR  TRIGGER               CPU  MEM     PEAK    PROCS  PROGRESS",
      "dev-a  busy    4242  52      10m 00s      dev-a-work-1.trigger  37%  212 MB  1.4 GB  5      -",
      "dev-b  idle    -     -       -            -                     -    -       -       -      -"
    ])
  })

  it("slots show lists the sample's fields, bytes also in human form", () => {
    const details = slotDetails(busy)
    expect(details).toEqual(expect.arrayContaining([
      "cpu_percent: 37.4",
      `rss_bytes: ${212 * MB} (212 MB)`,
      "processes: 5",
      `peak_rss_bytes: ${PEAK} (1.4 GB)`,
      "cpu_seconds: 12.34",
      "sampled_at: 2025-10-25T05:09:58Z"
    ]))
    // Not sampled yet: none of them; an unknown CPU share is left out.
    expect(slotDetails({ ...busy, cpu_percent: null }).some((l) => l.startsWith("cpu_percent"))).toBe(false)
    expect(slotDetails(idle)).toEqual([])
  })
})
