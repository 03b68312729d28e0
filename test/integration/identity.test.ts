/**
 * Which daemon is "the project's daemon": the same one whatever path names the project, and
 * never a process that merely answers on the lock's (public) socket name.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import * as Linux from "../../src/platform/linux.js"
import * as Posix from "../../src/platform/posix.js"
import { daemonProcesses } from "../support/daemonHelpers.js"
import { isAlive, PLATFORM, runCli, useProjects } from "../support/project.js"

const projects = useProjects()

describe("daemon identity", () => {
  it("a symlink to the project names the same daemon", async () => {
    const p = projects.make()
    const link = `${p.root}-link`
    fs.symlinkSync(p.root, link)
    projects.trackDir(link)
    const first = await p.cli(["daemon", "start"])
    expect(first.stdout).toMatch(/^Daemon started \(PID: (\d+)\)/)
    const pid = /PID: (\d+)/.exec(first.stdout)![1]
    const second = await runCli(["daemon", "start", "--project", link], { cwd: p.root, env: p.env })
    expect(second.code).toBe(0)
    expect(second.stdout.trim()).toBe(`Daemon already running (PID: ${pid})`)
    expect(daemonProcesses(p)).toHaveLength(1)
    const status = await runCli(["daemon", "status", "--project", link], { cwd: p.root, env: p.env })
    expect(status.stdout).toContain(`PID: ${pid}`)
  })

  it("a process squatting the lock's name is never signalled; start and stop say what is wrong", async () => {
    const p = projects.make()
    const victim = projects.track(spawn("sleep", ["60"], { stdio: "ignore" }))
    // Pretends to be the daemon of this project, announcing the victim's pid.
    const server = net.createServer((socket) => {
      socket.end(JSON.stringify({ pid: victim.pid, project: p.root, started: new Date().toISOString(), settings: { parallel: true, max_concurrent: 1, kill_grace_ms: 1000 } }) + "\n")
    })
    const address = (PLATFORM === "posix" ? Posix : Linux).lockAddress(p.root)
    if (PLATFORM === "posix") fs.mkdirSync(path.dirname(address), { recursive: true })
    await new Promise<void>((resolve) => server.listen(address, resolve))
    try {
      const stop = await p.cli(["daemon", "stop"])
      expect(stop.code).not.toBe(0)
      expect(stop.stderr).toContain("was not signalled")
      expect(isAlive(victim.pid!)).toBe(true)
      const start = await p.cli(["daemon", "start"])
      expect(start.stdout).toContain(`Daemon already running (PID: ${victim.pid})`)
      expect(isAlive(victim.pid!)).toBe(true)
      expect(fs.existsSync(path.join(p.claude, "daemon.pid"))).toBe(false)
    } finally {
      server.close()
    }
  })
})
