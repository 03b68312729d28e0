/**
 * Without `DASHBOARD_ADDRESS` the dashboard costs nothing (issue 23): no listening socket, its
 * module never loaded (Node's module debug log names every module required), no token; and
 * `starforge dashboard` says why it has no address. The same checks with the dashboard on show
 * that they see it when it is there.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { startForeground } from "../support/daemonHelpers.js"
import { useProjects, waitFor } from "../support/project.js"
import { dashboardOf } from "./http.js"

const projects = useProjects()

/** The TCP ports a process listens on (its socket inodes in the kernel's listening sockets). */
const listeningPorts = (pid: number): Array<number> => {
  const inodes = new Set<string>()
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`))
      if (m) inodes.add(m[1]!)
    } catch {
      // Closed meanwhile.
    }
  }
  const ports: Array<number> = []
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    const lines = fs.existsSync(table) ? fs.readFileSync(table, "utf8").trim().split("\n").slice(1) : []
    for (const line of lines) {
      const f = line.trim().split(/\s+/)
      // local_address is HEX_IP:HEX_PORT, st 0A is LISTEN, inode is the 10th field.
      if (f[3] === "0A" && inodes.has(f[9]!)) ports.push(parseInt(f[1]!.split(":")[1]!, 16))
    }
  }
  return ports
}

const DEBUG = { NODE_DEBUG: "module" }
const SERVER_MODULE = "dashboard/server.cjs"

describe("dashboard off", () => {
  it("no daemon: starforge dashboard says so and exits 1", async () => {
    const p = projects.make()
    const r = await p.cli(["dashboard"])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain("No daemon is running")
    expect(r.stderr.trim().split("\n")).toHaveLength(1)
  })

  it("without DASHBOARD_ADDRESS: no port, no module, no token; with it: all three", async () => {
    const off = projects.make()
    const fg = await startForeground(off, DEBUG)
    // The module debug log is on (the daemon's own bundle is named in it) and never names the server.
    expect(fg.output()).toContain("MODULE")
    expect(fg.output()).not.toContain(SERVER_MODULE)
    expect(listeningPorts(fg.pid)).toEqual([])
    expect(fs.existsSync(path.join(off.claude, "dashboard.token"))).toBe(false)
    expect(fs.existsSync(path.join(off.claude, "daemon", "dashboard.json"))).toBe(false)
    const r = await off.cli(["dashboard"])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(`The daemon (PID: ${fg.pid}) serves no dashboard: set DASHBOARD_ADDRESS`)

    const on = projects.make({ DASHBOARD_ADDRESS: "127.0.0.1:0" })
    const withDashboard = await startForeground(on, DEBUG)
    const d = await waitFor(() => dashboardOf(on), { what: "the dashboard files" })
    expect(withDashboard.output()).toContain(SERVER_MODULE)
    expect(listeningPorts(withDashboard.pid)).toEqual([d.port])
    // The daemon without it still has neither, once the other one runs.
    expect(fg.output()).not.toContain(SERVER_MODULE)
    expect(listeningPorts(fg.pid)).toEqual([])
  })
})
