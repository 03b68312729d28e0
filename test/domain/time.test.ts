import { describe, expect, it } from "@effect/vitest"
import {
  describeOutcome,
  exitCodeOf,
  ExitStatus,
  formatSeconds,
  isSuccess,
  signalOf
} from "../../src/domain/Outcome.js"
import { archiveStamp, formatDuration, isoSeconds } from "../../src/domain/time.js"

const at = (iso: string) => Date.parse(iso)

describe("isoSeconds", () => {
  it("is UTC ISO-8601 to the second", () => {
    expect(isoSeconds(at("2025-10-25T05:00:00.000Z"))).toBe("2025-10-25T05:00:00Z")
  })

  it("drops the milliseconds without rounding", () => {
    expect(isoSeconds(at("2025-10-25T05:00:00.999Z"))).toBe("2025-10-25T05:00:00Z")
  })

  it("the epoch", () => {
    expect(isoSeconds(0)).toBe("1970-01-01T00:00:00Z")
  })

  it("always has the contract's shape", () => {
    for (const ms of [1, 999, 1_700_000_000_123, 4_102_444_799_999]) {
      expect(isoSeconds(ms)).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/)
    }
  })

  it("round-trips to the second", () => {
    const ms = 1_761_368_400_456
    expect(Date.parse(isoSeconds(ms))).toBe(Math.floor(ms / 1000) * 1000)
  })
})

describe("archiveStamp", () => {
  it("is yyyymmdd-HHMMSS in UTC", () => {
    expect(archiveStamp(at("2025-10-25T05:06:07.890Z"))).toBe("20251025-050607")
  })

  it("pads single digits", () => {
    expect(archiveStamp(at("2025-01-02T03:04:05Z"))).toBe("20250102-030405")
  })

  it("the end of a year", () => {
    expect(archiveStamp(at("1999-12-31T23:59:59.999Z"))).toBe("19991231-235959")
  })

  it("sorts like time", () => {
    const stamps = [at("2025-10-25T05:00:00Z"), at("2025-10-25T04:59:59Z"), at("2024-12-31T23:00:00Z")].map(
      archiveStamp
    )
    expect([...stamps].sort()).toEqual([stamps[2], stamps[1], stamps[0]])
  })

  it("agrees with isoSeconds", () => {
    const ms = 1_761_368_400_456
    const iso = isoSeconds(ms)
    expect(archiveStamp(ms)).toBe(iso.slice(0, 10).replace(/-/g, "") + "-" + iso.slice(11, 19).replace(/:/g, ""))
  })
})

describe("formatDuration", () => {
  it.each([
    [0, "0s"],
    [1, "1s"],
    [59, "59s"],
    [59.999, "59s"],
    [60, "1m 00s"],
    [61, "1m 01s"],
    [3599, "59m 59s"],
    [3600, "1h 00m 00s"],
    [3723, "1h 02m 03s"],
    [86_400, "24h 00m 00s"],
    [360_000, "100h 00m 00s"],
    [-5, "0s"]
  ])("%d seconds -> %s", (seconds, text) => {
    expect(formatDuration(seconds)).toBe(text)
  })
})

describe("Outcome", () => {
  const exited = (code: number): ExitStatus => ExitStatus.Exited({ code })
  const signaled = (signal: string): ExitStatus => ExitStatus.Signaled({ signal })
  const spawnFailed = (message: string): ExitStatus => ExitStatus.SpawnFailed({ message })
  const timedOut = (afterSeconds: number, signal = "SIGTERM"): ExitStatus => ExitStatus.TimedOut({ afterSeconds, signal })

  it("only exit code 0 is a success", () => {
    expect(isSuccess(exited(0))).toBe(true)
    expect(isSuccess(exited(1))).toBe(false)
    expect(isSuccess(signaled("SIGKILL"))).toBe(false)
    expect(isSuccess(spawnFailed("ENOENT"))).toBe(false)
    expect(isSuccess(timedOut(10))).toBe(false)
  })

  it("describes each outcome", () => {
    expect(describeOutcome(exited(0))).toBe("exited with code 0")
    expect(describeOutcome(exited(2))).toBe("exited with code 2")
    expect(describeOutcome(signaled("SIGKILL"))).toBe("was killed by signal SIGKILL")
    expect(describeOutcome(spawnFailed("spawn claude ENOENT"))).toBe("could not be started: spawn claude ENOENT")
  })

  it("a timeout says 'timed out'", () => {
    expect(describeOutcome(timedOut(1800))).toBe("timed out after 1800s")
    expect(describeOutcome(timedOut(0.5))).toMatch(/timed out/)
  })

  it("exit codes and signals for the DLQ metadata", () => {
    expect(exitCodeOf(exited(3))).toBe(3)
    expect(exitCodeOf(signaled("SIGTERM"))).toBeNull()
    expect(exitCodeOf(timedOut(1))).toBeNull()
    expect(exitCodeOf(spawnFailed("x"))).toBeNull()
    expect(signalOf(signaled("SIGKILL"))).toBe("SIGKILL")
    expect(signalOf(timedOut(1))).toBe("SIGTERM")
    expect(signalOf(timedOut(1, "SIGKILL"))).toBe("SIGKILL")
    expect(signalOf(exited(0))).toBeNull()
    expect(signalOf(spawnFailed("x"))).toBeNull()
  })

  it.each([
    [0, "0s"],
    [10, "10s"],
    [1800, "1800s"],
    [0.5, "0.5s"],
    [1.25, "1.25s"],
    [0.1 + 0.2, "0.3s"],
    [2.0004, "2s"],
    [1 / 3, "0.333s"]
  ])("formatSeconds(%d) -> %s", (seconds, text) => {
    expect(formatSeconds(seconds)).toBe(text)
  })
})
