#!/usr/bin/env node
// B10: what an open dashboard page costs the daemon (issue 23). Two daemons of the same build run
// side by side, each with N long-running agents (the harness's recording agent sleeping 600 s), one
// with DASHBOARD_ADDRESS set and one without; one client behaves like an open page on the first:
// it holds `/events` (reading every event) and fetches `/api/status` and `/api/history` (the last
// day, as the page asks) every few seconds. The figure is the difference of the two daemons' CPU
// (their own and their reaped children's, from /proc) over the same window, in % of one core.
// Measure, never assert.
//
//   node bench/dashboard.mjs [--agents 100] [--seconds 30] [--poll 3] [--json]
//
// `npm run bench` runs it as B10 (this module's `B10`), on each variant whose build has a
// dashboard. Every process it starts is stopped however it ends (lib/harness.mjs).
import * as http from "node:http"
import * as fs from "node:fs"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { cpuTicksWithChildren, installCleanup, makeProject, sleep, startDaemon, stopAll, TICKS_PER_SECOND, waitFor } from "./lib/harness.mjs"
import { cpuPercentOfCore, fmt, fmtAgainst, verdict } from "./lib/stats.mjs"
import { recordedPids } from "./workloads.mjs"

const TARGET_PERCENT = 2


/** The dashboard the daemon of `project` serves (its port and token), once it has written them. */
const dashboardOf = (project) => {
  try {
    const info = JSON.parse(fs.readFileSync(path.join(project.root, ".claude", "daemon", "dashboard.json"), "utf8"))
    return { port: info.port, token: fs.readFileSync(path.join(project.root, ".claude", "dashboard.token"), "utf8").trim() }
  } catch {
    return undefined
  }
}

/** A GET to the dashboard; resolves with the status and the body's size. */
const get = (d, url) =>
  new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port: d.port, path: url, headers: { authorization: `Bearer ${d.token}` } }, (res) => {
      let bytes = 0
      res.on("data", (chunk) => (bytes += chunk.length))
      res.on("end", () => resolve({ status: res.statusCode, bytes }))
    })
    req.on("error", reject)
  })

/**
 * The page: `/events` held open (events counted by name), and every `pollSeconds` the status and
 * the last day's history. Returns its counts and a `close`.
 */
const openPage = (d, pollSeconds) => {
  const counts = { events: {}, eventBytes: 0, requests: 0, failedRequests: 0 }
  const req = http.get({ host: "127.0.0.1", port: d.port, path: "/events", headers: { authorization: `Bearer ${d.token}` } }, (res) => {
    let buffer = ""
    res.setEncoding("utf8")
    res.on("data", (chunk) => {
      counts.eventBytes += Buffer.byteLength(chunk)
      buffer += chunk
      for (let at = buffer.indexOf("\n\n"); at >= 0; at = buffer.indexOf("\n\n")) {
        const name = /^event: (.*)$/m.exec(buffer.slice(0, at))?.[1] ?? "comment"
        counts.events[name] = (counts.events[name] ?? 0) + 1
        buffer = buffer.slice(at + 2)
      }
    })
  })
  req.on("error", () => {})
  const poll = async () => {
    const since = new Date(Date.now() - 86_400_000).toISOString()
    for (const url of ["/api/status", `/api/history?since=${encodeURIComponent(since)}`]) {
      const r = await get(d, url).catch(() => ({ status: 0 }))
      counts.requests++
      if (r.status !== 200) counts.failedRequests++
    }
  }
  void poll()
  const timer = setInterval(() => void poll(), pollSeconds * 1000)
  return { counts, close: () => (clearInterval(timer), req.destroy()) }
}

/** A daemon of `variant` on a new project with `agents` agents all started and recorded. */
const daemonWithAgents = async (variant, agents, settings) => {
  const project = makeProject(settings)
  for (let a = 0; a < agents; a++) project.write(`${String(a).padStart(4, "0")}-agent-${a}`, { to_agent: `agent-${a}`, action: "sleep-600" })
  const daemon = await startDaemon(project, variant)
  await waitFor(() => recordedPids(project) >= agents, { timeoutMs: 120_000, intervalMs: 100, what: `the daemon to record ${agents} agents` })
  return { project, daemon }
}

/**
 * One measurement: both daemons up with their agents, a settling pause, then the window with the
 * page open on the dashboard's daemon. Returns the figures.
 */
export const measure = async (variant, { agents, seconds, pollSeconds }) => {
  const off = await daemonWithAgents(variant, agents, {})
  const on = await daemonWithAgents(variant, agents, { DASHBOARD_ADDRESS: "127.0.0.1:0" })
  const d = await waitFor(() => dashboardOf(on.project), { timeoutMs: 10_000, what: "the dashboard's address" })
  const page = openPage(d, pollSeconds)
  // The first resource samples and the page's first requests are not the steady state.
  await sleep(3_000)
  const t0 = [cpuTicksWithChildren(off.daemon.pid), cpuTicksWithChildren(on.daemon.pid)]
  const w0 = performance.now()
  await sleep(seconds * 1000)
  const ticks = [cpuTicksWithChildren(off.daemon.pid) - t0[0], cpuTicksWithChildren(on.daemon.pid) - t0[1]]
  const wall = (performance.now() - w0) / 1000
  page.close()
  await Promise.all([off.daemon.stop(), on.daemon.stop()])
  const [offPercent, onPercent] = ticks.map((t) => cpuPercentOfCore(t, TICKS_PER_SECOND, wall))
  return { agents, seconds: wall, pollSeconds, ticks: { off: ticks[0], on: ticks[1] }, percent: { off: offPercent, on: onPercent }, extra: onPercent - offPercent, page: page.counts }
}

const describeRun = (r) =>
  `${r.agents} agents each, ${fmt(r.seconds, 1)} s window: without the dashboard ${r.ticks.off} ticks (${fmt(r.percent.off, 2)}%), ` +
  `with it and the page ${r.ticks.on} ticks (${fmt(r.percent.on, 2)}%), of 1/${TICKS_PER_SECOND} s; the page got ` +
  `${Object.entries(r.page.events).map(([k, v]) => `${v} ${k}`).join(", ")} (${fmt(r.page.eventBytes / 1024, 0)} KiB) and made ${r.page.requests} requests ` +
  `(${r.page.failedRequests} failed; status and history every ${r.pollSeconds} s)`

/** The workload for bench/run.mjs. */
export const B10 = {
  id: "B10",
  title: "dashboard: one open page (events + status/history polls) on a daemon with 100 running agents vs none: the daemon's extra CPU",
  plan: (mode) => ({ agents: 100, seconds: mode === "full" ? 60 : 30, pollSeconds: 3 }),
  estimateSeconds: ({ seconds }, variants) => variants * (seconds + 20),
  run: async (plan, say, variants) => {
    const rows = []
    const notes = []
    for (const variant of variants) {
      if (!fs.existsSync(path.join(path.dirname(variant.bin), "dashboard", "server.cjs"))) {
        notes.push(`B10 ${variant.label}: no row: its build has no dashboard`)
        continue
      }
      const r = await measure(variant, plan)
      say(`${variant.label}: ${describeRun(r)}`)
      rows.push({
        figure: `daemon CPU added by an open dashboard page, ${plan.agents} running agents`,
        variant: variant.label,
        measured: `${fmtAgainst(r.extra, TARGET_PERCENT, 2)}% of a core`,
        baseline: describeRun(r),
        target: `< ${TARGET_PERCENT}%`,
        verdict: verdict(r.extra, TARGET_PERCENT, "max")
      })
    }
    return { rows, notes }
  }
}

// Run alone: this checkout's build, linux layer.
if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const options = { agents: 100, seconds: 30, poll: 3 }
  let json = false
  const argv = process.argv.slice(2)
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--json") json = true
    else if (argv[i] === "--help" || argv[i] === "-h") {
      console.log("usage: node bench/dashboard.mjs [--agents N (100)] [--seconds S (30)] [--poll S (3)] [--json]")
      process.exit(0)
    } else {
      const key = argv[i].replace(/^--/, "")
      const value = Number(argv[++i])
      if (!(key in options) || !(value > 0)) {
        console.error(`dashboard: bad option ${argv[i - 1]} ${argv[i] ?? ""}`)
        process.exit(2)
      }
      options[key] = value
    }
  }
  installCleanup()
  const { loadVariants } = await import("./lib/variants.mjs")
  const [variant] = await loadVariants(["after"], undefined, () => {})
  const r = await measure(variant, { agents: options.agents, seconds: options.seconds, pollSeconds: options.poll })
  stopAll()
  if (json) console.log(JSON.stringify(r))
  else {
    console.log(`B10 dashboard: ${describeRun(r)}`)
    console.log(`extra daemon CPU with an open page: ${fmt(r.extra, 2)}% of a core (target < ${TARGET_PERCENT}%: ${verdict(r.extra, TARGET_PERCENT, "max")})`)
  }
}
