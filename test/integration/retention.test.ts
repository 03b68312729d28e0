/**
 * Nothing grows forever, through the real daemon (issue 25 part 4): `history.jsonl` rotates at
 * `LOG_MAX_SIZE_MB` and is still read whole; the maintenance pass removes archived triggers older
 * than `PROCESSED_RETENTION_DAYS` (never the dead-letter queue) and stale `.gz.partial` files, and
 * copies and empties the background daemon's `daemon.out` at `LOG_MAX_SIZE_MB`. And part 5: a
 * duration no timer can hold stops `daemon start`.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { archivedTriggers, exitWithin, readPidFile, startForeground } from "../support/daemonHelpers.js"
import { daemonLog, listDir, readText, trigger, useProjects, waitFor } from "../support/project.js"

const projects = useProjects()

const DAY = 86_400_000

/** Sets the modification time of `file` to `ageMs` ago. */
const age = (file: string, ageMs: number) => {
  const at = new Date(Date.now() - ageMs)
  fs.utimesSync(file, at, at)
  return file
}

const writeAged = (file: string, content: string, ageMs: number) => {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, content)
  return age(file, ageMs)
}

describe("retention", () => {
  it("history.jsonl rotates at LOG_MAX_SIZE_MB; history and status still read every attempt", async () => {
    // 0.5 KiB: a part holds one or two lines.
    const p = projects.make({ LOG_MAX_SIZE_MB: "0.00048828125" })
    const daemonDir = path.join(p.claude, "daemon")
    const fg = await startForeground(p)
    const names = Array.from({ length: 6 }, (_, i) => `job-${i}`)
    for (const name of names) p.drop(name, trigger(`agent-${name}`, "exit=0"))
    await waitFor(() => archivedTriggers(p).length === names.length, { timeoutMs: 30_000, what: "every trigger to finish" })
    fg.child.kill("SIGTERM")
    expect((await exitWithin(fg, 15_000)).code).toBe(0)

    const parts = listDir(daemonDir).filter((n) => /^history\.jsonl\.\d+$/.test(n))
    expect(parts.length).toBeGreaterThanOrEqual(2)
    for (const part of parts) expect(fs.statSync(path.join(daemonDir, part)).size).toBeLessThan(2 * 512)
    // Every line is whole, in a part or the live file.
    const lines = [...parts.sort((a, b) => Number(a.slice(14)) - Number(b.slice(14))), "history.jsonl"]
      .flatMap((n) => (readText(path.join(daemonDir, n)) ?? "").split("\n").filter((l) => l !== ""))
      .map((l) => JSON.parse(l))
    expect(lines.map((e) => e.trigger).sort()).toEqual(names.map((n) => `${n}.trigger`))
    const history = await p.cli(["history", "--json"])
    expect(history.code, history.stderr).toBe(0)
    expect(JSON.parse(history.stdout)).toEqual(lines)
    const status = await p.cli(["daemon", "status", "--json"])
    expect(JSON.parse(status.stdout).last_hour).toEqual({ done: names.length, failed: 0 })
  })

  it("an archived trigger older than PROCESSED_RETENTION_DAYS is removed in the next pass; newer ones and the DLQ stay; a stale .gz.partial goes", async () => {
    const p = projects.make({ LOG_MAINTENANCE_INTERVAL: "0.3", PROCESSED_RETENTION_DAYS: "30" })
    const processed = path.join(p.triggers, "processed")
    const invalid = path.join(processed, "invalid")
    const deadLetter = path.join(p.triggers, "dead-letter")
    const logs = path.join(p.claude, "logs")
    writeAged(path.join(processed, "20240101-000000-old.trigger"), JSON.stringify(trigger("dev")), 31 * DAY)
    writeAged(path.join(processed, "20250101-000000-young.trigger"), JSON.stringify(trigger("dev")), 29 * DAY)
    writeAged(path.join(invalid, "20240101-000000-bad.trigger"), "not json", 40 * DAY)
    writeAged(path.join(invalid, "20240101-000000-bad.trigger.reason.txt"), "not valid JSON\n", 39 * DAY)
    writeAged(path.join(deadLetter, "failed.trigger"), JSON.stringify(trigger("dev")), 400 * DAY)
    writeAged(path.join(deadLetter, "failed.trigger.meta.json"), "{}", 400 * DAY)
    writeAged(path.join(logs, "dev-1700000000.log.gz.partial"), "half a gzip", 2 * DAY)

    const fg = await startForeground(p)
    await waitFor(() => /LOGS: Removed 2 archived trigger\(s\) older than 30 days from \.claude\/triggers\/processed/.test(daemonLog(p)), {
      timeoutMs: 15_000,
      what: "the first pass to remove the two old archived triggers"
    })
    expect(listDir(processed)).toEqual(["20250101-000000-young.trigger", "invalid"])
    expect(listDir(invalid)).toEqual([])
    expect(listDir(deadLetter)).toEqual(["failed.trigger", "failed.trigger.meta.json"])
    expect(listDir(logs)).not.toContain("dev-1700000000.log.gz.partial")
    expect(daemonLog(p)).toMatch(/LOGS: Removed dev-1700000000\.log\.gz\.partial in \.claude\/logs, left by a compression that never finished/)

    // A trigger the daemon archives now, then aged past the retention: gone at the next pass.
    p.drop("fresh", trigger("dev", "exit=0"))
    p.drop("aged", trigger("dev", "exit=0"))
    await waitFor(() => archivedTriggers(p).filter((n) => /-(fresh|aged)\.trigger$/.test(n)).length === 2, { what: "both triggers to be archived" })
    const aged = path.join(processed, archivedTriggers(p).find((n) => n.endsWith("-aged.trigger"))!)
    age(aged, 30 * DAY + 60_000)
    await waitFor(() => !fs.existsSync(aged), { timeoutMs: 15_000, what: "the next pass to remove the aged archive" })
    await waitFor(() => (daemonLog(p).match(/LOGS: Removed 1 archived trigger\(s\) older than 30 days/g) ?? []).length === 1, {
      what: "its LOGS line"
    })
    expect(archivedTriggers(p).filter((n) => n.endsWith("-fresh.trigger"))).toHaveLength(1)
    expect(listDir(deadLetter)).toEqual(["failed.trigger", "failed.trigger.meta.json"])
    fg.child.kill("SIGTERM")
    expect((await exitWithin(fg, 15_000)).code).toBe(0)
  })

  it("the background daemon's daemon.out is copied and emptied once it reaches LOG_MAX_SIZE_MB, while the daemon holds it open", async () => {
    // 1 KiB.
    const p = projects.make({ LOG_MAX_SIZE_MB: "0.0009765625", LOG_MAINTENANCE_INTERVAL: "0.3" })
    const logs = path.join(p.claude, "logs")
    const earlier = "output of an earlier daemon\n".repeat(50)
    writeAged(path.join(logs, "daemon.out"), earlier, 0)
    const start = await p.cli(["daemon", "start"])
    expect(start.code, start.stderr).toBe(0)
    expect(readPidFile(p)).toBeGreaterThan(0)
    // The LOGS line comes once the copy and the truncation are done. daemon.log rotates at the same
    // small size: `daemon logs` reads all its parts.
    await waitFor(async () => /LOGS: \.claude\/logs\/daemon\.out reached LOG_MAX_SIZE_MB: copied to daemon\.out\.1 and emptied/.test((await p.cli(["daemon", "logs"])).stdout), {
      timeoutMs: 15_000,
      what: "the pass to rotate daemon.out"
    })
    expect(readText(path.join(logs, "daemon.out.1"))!.startsWith(earlier)).toBe(true)
    expect(fs.statSync(path.join(logs, "daemon.out")).size).toBeLessThan(1024)
    const stop = await p.cli(["daemon", "stop"])
    expect(stop.code, stop.stderr).toBe(0)
  })
  it("a time no timer can hold stops 'daemon start' with one line naming the variable and its largest value; no daemon starts", async () => {
    const p = projects.make()
    const result = await p.cli(["daemon", "start"], { env: { AGENT_TIMEOUT: "9999999" } })
    expect(result.code).toBe(1)
    expect(result.stdout).toBe("")
    expect(result.stderr).toBe(
      "starforge: AGENT_TIMEOUT=9999999 is too long: timers hold at most 2147483.647 seconds (24.8 days). " +
        "Fix it in the environment, .env or .claude/config/daemon.conf\n"
    )
    expect(readPidFile(p)).toBeUndefined()
  })
})
