/**
 * Log rotation and maintenance through the real daemon (issue 6 part 1): agent logs and the
 * daemon log rotate at `LOG_MAX_SIZE_MB` while they are written, old files are gzipped after
 * `LOG_COMPRESS_AFTER_HOURS` and deleted after `LOG_RETENTION_DAYS`, and `daemon logs` reads
 * every part, gzipped or not, oldest first.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as zlib from "node:zlib"
import { describe, expect, it } from "vitest"
import { archivedTriggers, exitWithin, startForeground } from "../support/daemonHelpers.js"
import { listDir, readText, trigger, useProjects, waitFor } from "../support/project.js"

const projects = useProjects()

const LINE = (i: number) => `line ${String(i).padStart(6, "0")} abcdefghijklmnopqrstuvwxyz0123456789`

/** The open file descriptors of a process that point into `dir`. */
const fdsInto = (pid: number, dir: string) =>
  fs.readdirSync(`/proc/${pid}/fd`).map((fd) => {
    try {
      return fs.readlinkSync(`/proc/${pid}/fd/${fd}`)
    } catch {
      return ""
    }
  }).filter((target) => target.startsWith(dir))

describe("log rotation", () => {
  it("rotates an agent log and daemon.log while they are written: every line kept, in order, no fd left open", async () => {
    // 1 KiB parts; a part ends after the write that reaches the limit, and the daemon writes what
    // it read from the pipe at once (up to 64 KiB), so the 196 KB of lines make at least 4 parts.
    const p = projects.make({ LOG_MAX_SIZE_MB: "0.0009765625" })
    const fg = await startForeground(p)
    const logs = path.join(p.claude, "logs")
    const lines = 4_000
    p.drop("big", trigger("writer", `write=${lines}`))
    p.drop("small", trigger("other", "exit=0"))
    await waitFor(() => archivedTriggers(p).length === 2, { timeoutMs: 30_000, what: "both triggers to finish" })
    const parts = listDir(logs).filter((n) => n.startsWith("writer-"))
    expect(parts.length).toBeGreaterThanOrEqual(4)
    const out = await p.cli(["daemon", "logs", "writer"])
    expect(out.code).toBe(0)
    const printed = out.stdout.split("\n")
    expect(printed.filter((l) => l.startsWith("line "))).toEqual(Array.from({ length: lines }, (_, i) => LINE(i)))
    expect(printed[0]).toBe("Agent: writer")
    expect(out.stdout).toMatch(/\nCompleted: \S+\nExit code: 0\n$/)
    // The daemon holds no log open but its own daemon.log (the agents' logs are closed).
    expect(fdsInto(fg.pid, logs)).toEqual([path.join(logs, "daemon.log")])
    fg.child.kill("SIGTERM")
    expect((await exitWithin(fg, 15_000)).code).toBe(0)
    // The daemon log rotated too; `daemon logs` prints its parts in order, ending with the STOP line.
    expect(listDir(logs)).toContain("daemon.log.1")
    const daemonOut = (await p.cli(["daemon", "logs"])).stdout.trimEnd().split("\n")
    const joined = listDir(logs).filter((n) => n.startsWith("daemon.log.")).sort((a, b) => Number(a.slice(11)) - Number(b.slice(11)))
      .map((n) => readText(path.join(logs, n))!).join("") + readText(path.join(logs, "daemon.log"))!
    expect(daemonOut).toEqual(joined.trimEnd().split("\n"))
    expect(daemonOut[0]).toMatch(/START: Daemon started/)
    expect(daemonOut.at(-1)).toMatch(/STOP: /)
  })

  it("gzips logs older than LOG_COMPRESS_AFTER_HOURS and deletes those older than LOG_RETENTION_DAYS; daemon logs reads .gz", async () => {
    const p = projects.make({ LOG_MAINTENANCE_INTERVAL: "0.3" })
    const logs = path.join(p.claude, "logs")
    fs.mkdirSync(logs, { recursive: true })
    const hoursAgo = (h: number) => new Date(Date.now() - h * 3_600_000)
    const write = (name: string, content: string, age: number) => {
      fs.writeFileSync(path.join(logs, name), content)
      fs.utimesSync(path.join(logs, name), hoursAgo(age), hoursAgo(age))
    }
    write("dev-1790000000.log", "Agent: dev\nold run\n", 25) // older than a day: gzipped
    write("dev-1790000100.log.1", "part one\n", 30) // a rotated part: gzipped
    write("dev-1780000000.log", "ancient\n", 8 * 24) // older than a week: deleted
    write("dev-1790000200.log", "recent\n", 23) // younger than a day: left as it is
    write("daemon.log.1", "[old] daemon line\n", 26)
    write("notes.txt", "not a log\n", 24 * 30)
    const fg = await startForeground(p)
    await waitFor(() => /LOGS: /.test(readText(path.join(logs, "daemon.log")) ?? ""), { timeoutMs: 15_000, what: "the maintenance pass" })
    const files = listDir(logs)
    expect(files).toEqual(expect.arrayContaining(["dev-1790000000.log.gz", "dev-1790000100.log.1.gz", "dev-1790000200.log", "notes.txt"]))
    for (const gone of ["dev-1790000000.log", "dev-1790000100.log.1", "dev-1780000000.log", "daemon.log.1"]) expect(files).not.toContain(gone)
    expect(zlib.gunzipSync(fs.readFileSync(path.join(logs, "dev-1790000000.log.gz"))).toString()).toBe("Agent: dev\nold run\n")
    // The compressed copy keeps the age of the log, so retention still counts from its last write.
    expect(Date.now() - fs.statSync(path.join(logs, "daemon.log.1.gz")).mtimeMs).toBeGreaterThan(25 * 3_600_000)
    expect(readText(path.join(logs, "daemon.log"))).toMatch(/LOGS: Compressed 3 and deleted 1 old log file/)
    // The newest log of dev is the uncompressed one; after it is gone, the gzipped one is found.
    expect((await p.cli(["daemon", "logs", "dev"])).stdout).toBe("recent\n")
    fs.rmSync(path.join(logs, "dev-1790000200.log"))
    fs.renameSync(path.join(logs, "dev-1790000100.log.1.gz"), path.join(logs, "dev-1790000000.log.1.gz"))
    const gz = await p.cli(["daemon", "logs", "dev"])
    expect(gz.code).toBe(0)
    expect(gz.stdout).toBe("part one\nAgent: dev\nold run\n")
    const daemonLogs = await p.cli(["daemon", "logs"])
    expect(daemonLogs.stdout.startsWith("[old] daemon line\n")).toBe(true)
    expect(daemonLogs.stdout).toMatch(/START: Daemon started/)
    fg.child.kill("SIGTERM")
    await exitWithin(fg, 15_000)
  })
})
