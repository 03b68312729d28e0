/**
 * The dashboard's HTTP API and event stream against the real daemon (the built CLI, the recording
 * agent), issue 23 parts 2 and 4: every endpoint, the hostile requests (each a 4xx that changes
 * nothing), the token file, `/events` following slot changes, and the clean end at shutdown.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { deadLetters, exitWithin, type Foreground, startForeground } from "../support/daemonHelpers.js"
import { makeProject, type TestProject, trigger, waitFor } from "../support/project.js"
import { type Dashboard, dashboardOf, type EventReader, filesUnder, openEvents, request } from "./http.js"

let p: TestProject
let fg: Foreground
let d: Dashboard

beforeAll(async () => {
  p = makeProject({ DASHBOARD_ADDRESS: "127.0.0.1:0", MAX_RETRIES: "1" })
  fg = await startForeground(p)
  d = (await waitFor(() => dashboardOf(p), { what: "the dashboard files" }))!
})

afterAll(async () => {
  if (fg !== undefined && !fg.hasExited()) fg.child.kill("SIGKILL")
  await p?.cleanup()
})

const get = (url: string) => request(d.port, url, { token: d.token })
const postJson = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  request(d.port, url, { method: "POST", token: d.token, body: JSON.stringify(body), headers: { "content-type": "application/json", ...headers } })

/** Waits for an event of `name` whose data satisfies `until`; returns it. */
const nextEvent = (reader: EventReader, name: string, until: (data: any) => boolean, what: string, after = 0) =>
  waitFor(
    () => reader.events().find((e) => e.event === name && e.at >= after && until(JSON.parse(e.data))),
    { what, timeoutMs: 20_000, intervalMs: 5 }
  )

describe("dashboard API", () => {
  it("listens where told, says so once in the log, and keeps its token in a 0600 file", () => {
    expect(d.url).toBe(`http://127.0.0.1:${d.port}/`)
    expect(d.port).toBeGreaterThan(0)
    const tokenFile = path.join(p.claude, "dashboard.token")
    expect(fs.statSync(tokenFile).mode & 0o777).toBe(0o600)
    expect(d.token).toMatch(/^[A-Za-z0-9_-]{43}$/)
    const lines = fs.readFileSync(path.join(p.claude, "logs", "daemon.log"), "utf8").split("\n").filter((l) => l.includes("DASHBOARD:"))
    expect(lines).toHaveLength(1)
    expect(lines[0]).toContain(d.url)
    expect(lines[0]).not.toContain(d.token)
  })

  it("starforge dashboard prints the address with the token (text and JSON)", async () => {
    const text = await p.cli(["dashboard"])
    expect(text.code).toBe(0)
    expect(text.stdout.trim()).toBe(`${d.url}?token=${d.token}`)
    const json = await p.cli(["dashboard", "--json"])
    expect(JSON.parse(json.stdout)).toMatchObject({ url: `${d.url}?token=${d.token}`, address: d.url, token: d.token, port: d.port, pid: fg.pid })
    const help = await p.cli(["dashboard", "--help"])
    expect(help.code).toBe(0)
    expect(help.stdout).toContain("--open")
  })

  it("starforge dashboard --open runs xdg-open on a private page leading to the address, and says so clearly when that fails", async () => {
    const bin = path.join(p.root, "fake-bin")
    fs.mkdirSync(bin, { recursive: true })
    const opened = path.join(p.root, "opened.txt")
    const fake = path.join(bin, "xdg-open")
    const env = { PATH: `${bin}:${p.env["PATH"]}` }
    fs.writeFileSync(fake, `#!/bin/sh\nprintf '%s' "$1" > "${opened}"\n`, { mode: 0o755 })
    const ok = await p.cli(["dashboard", "--open"], { env })
    expect(ok.code).toBe(0)
    // The opener gets a private page that sends the browser on: the token is on no command line.
    const page = path.join(p.claude, "dashboard-open.html")
    expect(fs.readFileSync(opened, "utf8")).toBe(`file://${page}`)
    expect(fs.statSync(page).mode & 0o777).toBe(0o600)
    expect(fs.readFileSync(page, "utf8")).toContain(`<meta http-equiv="refresh" content="0;url=${d.url}?token=${d.token}">`)
    fs.writeFileSync(fake, "#!/bin/sh\nexit 3\n", { mode: 0o755 })
    const failed = await p.cli(["dashboard", "--open"], { env })
    expect(failed.code).toBe(1)
    expect(failed.stdout.trim()).toBe(`${d.url}?token=${d.token}`)
    expect(failed.stderr).toContain("Cannot open a browser (xdg-open exited with code 3): open the address above yourself")
    fs.rmSync(fake)
    const missing = await p.cli(["dashboard", "--open"], { env: { PATH: bin } })
    expect(missing.code).toBe(1)
    expect(missing.stderr).toContain("Cannot open a browser (xdg-open")
  })

  it("serves the page: the token in the query sets an HttpOnly SameSite=Strict cookie that then stands for it", async () => {
    const page = await request(d.port, `/?token=${d.token}`)
    expect(page.status).toBe(200)
    expect(page.headers["content-type"]).toBe("text/html; charset=utf-8")
    expect(page.headers["content-security-policy"]).toContain("default-src 'self'")
    expect(page.headers["x-content-type-options"]).toBe("nosniff")
    expect(page.headers["x-frame-options"]).toBe("DENY")
    const cookie = page.headers["set-cookie"]?.[0] ?? ""
    expect(cookie).toMatch(new RegExp(`^starforge_token_${d.port}=${d.token}; `))
    expect(cookie).toContain("HttpOnly")
    expect(cookie).toContain("SameSite=Strict")
    expect(cookie).toContain("Path=/")
    const withCookie = await request(d.port, "/api/slots", { headers: { cookie: cookie.split(";")[0]! } })
    expect(withCookie.status).toBe(200)
    const css = await request(d.port, "/assets/style.css", { headers: { cookie: cookie.split(";")[0]! } })
    expect(css.status).toBe(200)
    expect(css.headers["content-type"]).toBe("text/css; charset=utf-8")
    expect(css.headers["cache-control"]).toBe("no-cache")
    expect((await get("/assets/app.js")).headers["content-type"]).toBe("text/javascript; charset=utf-8")
    // Without the token the page is refused too.
    expect((await request(d.port, "/")).status).toBe(401)
  })

  it("answers status, slots, queue, history, logs, DLQ and usage in the CLI's shapes; /events follows the slots within a second", async () => {
    const events = await openEvents(d.port, `/events?token=${d.token}`)
    try {
      expect(events.status).toBe(200)
      expect(events.headers["content-type"]).toBe("text/event-stream")
      // On connect: the current slots and queue.
      await nextEvent(events, "slots", () => true, "the first slots event")
      await nextEvent(events, "queue", (q) => Array.isArray(q), "the first queue event")

      const dropped = Date.now()
      p.drop("long", trigger("alpha", "sleep=300"))
      const busy = await nextEvent(events, "slots", (t) => t.alpha?.status === "busy", "alpha busy in a slots event")
      expect(busy.at - dropped).toBeLessThan(1_000)

      // A second trigger of the busy agent waits, and says why.
      p.drop("second", trigger("alpha", "exit=0"))
      const queued = await nextEvent(events, "queue", (q) => q.some((w: any) => w.trigger === "second.trigger"), "second.trigger in a queue event")
      const item = JSON.parse(queued.data).find((w: any) => w.trigger === "second.trigger")
      expect(item).toMatchObject({ agent: "alpha", attempt: 1, why: { reason: "agent_busy", agent: "alpha", trigger: "long.trigger" } })
      expect(item.why.text).toContain("alpha is busy")
      const queue = await get("/api/queue")
      expect(queue.status).toBe(200)
      expect(queue.json).toContainEqual(item)

      const status = await get("/api/status")
      expect(status.status).toBe(200)
      const cli = JSON.parse((await p.cli(["daemon", "status", "--json"])).stdout)
      expect(Object.keys(status.json).sort()).toEqual(Object.keys(cli).sort())
      expect(status.json).toMatchObject({ running: true, pid: fg.pid, mode: "parallel" })
      expect(status.json.slots.alpha.status).toBe("busy")

      const slots = await get("/api/slots")
      expect(slots.json.alpha).toMatchObject({ status: "busy", trigger: "long.trigger" })
      expect(Object.keys(slots.json).sort()).toEqual(Object.keys(JSON.parse((await p.cli(["slots", "list", "--json"])).stdout)).sort())

      // A failing trigger: an attempt event, then the dead-letter queue (MAX_RETRIES=1).
      p.drop("bad", trigger("beta", "exit=3"))
      const attempt = await nextEvent(events, "attempt", (a) => a.trigger === "bad.trigger", "the attempt event of bad.trigger")
      expect(JSON.parse(attempt.data)).toMatchObject({ agent: "beta", attempt: 1, outcome: "failed", exit_code: 3 })
      await nextEvent(events, "log", (l) => l.event === "DLQ" && l.agent === "beta", "the DLQ log event")
      await waitFor(() => deadLetters(p).includes("bad.trigger"), { what: "bad.trigger in the DLQ" })

      const history = await get("/api/history?agent=beta")
      expect(history.json).toEqual(JSON.parse((await p.cli(["history", "--agent", "beta", "--json"])).stdout))
      expect(history.json).toHaveLength(1)
      expect((await get("/api/history?outcome=success")).json).toEqual([])
      expect((await get("/api/history?outcome=failed&limit=1")).json).toHaveLength(1)
      expect((await get("/api/history?since=2999-01-01")).json).toEqual([])
      for (const bad of ["agent=../x", "since=yesterday", "limit=0", "limit=abc", "outcome=FAILED;rm"]) {
        const r = await get(`/api/history?${bad}`)
        expect(r.status, bad).toBe(400)
        expect(r.json.error.split("\n"), bad).toHaveLength(1)
      }

      const log = await get("/api/logs/beta?lines=2")
      expect(log.status).toBe(200)
      expect(log.json).toMatchObject({ agent: "beta", file: expect.stringMatching(/^\.claude\/logs\/beta-\d+\.log$/) })
      expect(log.json.lines).toHaveLength(2)
      expect(log.json.lines[0]).toMatch(/^Failed: /)
      expect(log.json.lines[1]).toBe("Exit code: 3")
      expect((await get("/api/logs/nobody")).status).toBe(404)

      const dlq = await get("/api/dlq")
      expect(dlq.json).toEqual(JSON.parse((await p.cli(["dlq", "list", "--json"])).stdout))
      expect(dlq.json[0]).toMatchObject({ name: "bad.trigger", agent: "beta", exit_code: 3 })
      const one = await get("/api/dlq/bad.trigger")
      expect(one.json).toMatchObject({ name: "bad.trigger", trigger: { to_agent: "beta" }, meta: { agent: "beta", exit_code: 3 } })
      expect((await get("/api/dlq/none.trigger")).status).toBe(404)

      const usage = await get("/api/usage")
      expect(usage.status).toBe(200)
      expect(typeof usage.json).toBe("object")

      // Retry: back to the queue, it fails again and returns to the DLQ; purge removes it.
      const retried = await postJson("/api/dlq/bad.trigger/retry", {})
      expect(retried.status).toBe(200)
      expect(retried.json).toMatchObject({ retried: "bad.trigger" })
      const again = Date.now()
      await nextEvent(events, "attempt", (a) => a.trigger === "bad.trigger", "the retried attempt", again)
      await waitFor(() => deadLetters(p).includes("bad.trigger"), { what: "bad.trigger back in the DLQ" })
      const purged = await postJson("/api/dlq/bad/purge", {})
      expect(purged.json).toEqual({ purged: "bad.trigger" })
      expect(deadLetters(p)).toEqual([])
      expect((await postJson("/api/dlq/bad.trigger/purge", {})).status).toBe(404)
    } finally {
      events.close()
    }
  })

  it("creates a trigger as 'trigger create' does: 201 with its name, then it runs", async () => {
    const created = await postJson("/api/triggers", { to_agent: "gamma", action: "work", message: "exit=0", ticket: 52, priority: "high" }, { origin: d.url.slice(0, -1) })
    expect(created.status).toBe(201)
    expect(created.json.trigger).toMatch(/^gamma-work-\d+-[0-9a-f]+\.trigger$/)
    expect(path.dirname(created.json.file)).toBe(p.triggers)
    await waitFor(() => fs.readdirSync(path.join(p.triggers, "processed")).some((n) => n.endsWith(created.json.trigger)), { what: "the created trigger to be archived" })
    const archived = fs.readdirSync(path.join(p.triggers, "processed")).find((n) => n.endsWith(created.json.trigger))!
    const content = JSON.parse(fs.readFileSync(path.join(p.triggers, "processed", archived), "utf8"))
    expect(content).toMatchObject({ to_agent: "gamma", from_agent: "dashboard", action: "work", priority: "high", context: { ticket: "52" } })
    expect(content.trace_id).toMatch(/^TRACE-/)
  })

  it("refuses hostile requests with a 4xx and a one-line reason, and changes nothing", async () => {
    const before = filesUnder(p.claude).filter((f) => !f.startsWith("logs") && !f.startsWith("daemon"))
    const good = JSON.stringify({ to_agent: "delta", action: "work" })
    const json = { "content-type": "application/json" }
    const cases: Array<[string, Promise<{ status: number; json: any }>, number]> = [
      ["no token", request(d.port, "/api/status"), 401],
      ["no token on POST", request(d.port, "/api/triggers", { method: "POST", body: good, headers: json }), 401],
      ["a wrong token", request(d.port, "/api/status", { token: "x".repeat(43) }), 401],
      ["a wrong token in the query", request(d.port, "/events?token=nope"), 401],
      ["a wrong cookie", request(d.port, "/", { headers: { cookie: `starforge_token_${d.port}=nope` } }), 401],
      ["a token in the query of a POST", request(d.port, `/api/triggers?token=${d.token}`, { method: "POST", body: good, headers: json }), 401],
      ["a cross-site Origin", request(d.port, "/api/triggers", { method: "POST", token: d.token, body: good, headers: { ...json, origin: "http://evil.example" } }), 403],
      ["a cross-site Referer", request(d.port, "/api/triggers", { method: "POST", token: d.token, body: good, headers: { ...json, referer: "http://evil.example/x" } }), 403],
      ["a cross-site retry", request(d.port, "/api/dlq/x.trigger/retry", { method: "POST", token: d.token, body: "{}", headers: { ...json, origin: "http://evil.example" } }), 403],
      ["a Host that is not the bound address", request(d.port, "/api/status", { token: d.token, headers: { host: `evil.example:${d.port}` } }), 421],
      ["a Host with another port", request(d.port, "/api/status", { token: d.token, headers: { host: `127.0.0.1:${d.port + 1}` } }), 421],
      ["../ in a log name", request(d.port, "/api/logs/../daemon", { token: d.token }), 404],
      ["%2e%2e%2f in a log name", request(d.port, "/api/logs/%2e%2e%2fdaemon.log", { token: d.token }), 400],
      ["%2e%2e in a log name", request(d.port, "/api/logs/%2e%2e", { token: d.token }), 400],
      ["an absolute log path", request(d.port, "/api/logs/%2fetc%2fpasswd", { token: d.token }), 400],
      ["../ in an asset", request(d.port, "/assets/%2e%2e%2fapi.js", { token: d.token }), 404],
      ["../ in a DLQ name", request(d.port, "/api/dlq/%2e%2e%2fprocessed/retry", { method: "POST", token: d.token, body: "{}", headers: json }), 400],
      ["a 10 MB body", request(d.port, "/api/triggers", { method: "POST", token: d.token, body: Buffer.alloc(10 * 1024 * 1024, 0x20), headers: json }), 413],
      ["bad JSON", request(d.port, "/api/triggers", { method: "POST", token: d.token, body: "{to_agent:", headers: json }), 400],
      ["not JSON at all", request(d.port, "/api/triggers", { method: "POST", token: d.token, body: "to_agent=x", headers: { "content-type": "application/x-www-form-urlencoded" } }), 415],
      ["a bad trigger (agent name)", request(d.port, "/api/triggers", { method: "POST", token: d.token, body: JSON.stringify({ to_agent: "../x", action: "a" }), headers: json }), 400],
      ["a bad trigger (priority)", request(d.port, "/api/triggers", { method: "POST", token: d.token, body: JSON.stringify({ to_agent: "delta", action: "a", priority: "urgent" }), headers: json }), 400],
      ["a bad trigger (missing field)", request(d.port, "/api/triggers", { method: "POST", token: d.token, body: JSON.stringify({ action: "a" }), headers: json }), 400],
      ["a bad trigger (wrong type)", request(d.port, "/api/triggers", { method: "POST", token: d.token, body: JSON.stringify({ to_agent: "delta", action: 5 }), headers: json }), 400],
      ["a bad trigger (not an object)", request(d.port, "/api/triggers", { method: "POST", token: d.token, body: "[1]", headers: json }), 400],
      ["an unknown endpoint", request(d.port, "/api/nothing", { token: d.token }), 404],
      ["a GET on a POST endpoint", request(d.port, "/api/triggers", { token: d.token }), 404]
    ]
    for (const [what, reply, status] of cases) {
      const r = await reply
      expect(r.status, what).toBe(status)
      expect(typeof r.json?.error, what).toBe("string")
      expect(r.json.error.split("\n"), what).toHaveLength(1)
    }
    // The daemon still answers, and nothing was written or moved.
    expect((await get("/api/status")).status).toBe(200)
    expect(filesUnder(p.claude).filter((f) => !f.startsWith("logs") && !f.startsWith("daemon"))).toEqual(before)
  })

  it("ends the event stream cleanly at shutdown, removes its files and exits 0", async () => {
    const events = await openEvents(d.port, "/events", { token: d.token })
    await nextEvent(events, "slots", () => true, "the first slots event")
    fg.child.kill("SIGTERM")
    await events.ended
    expect((await exitWithin(fg, 20_000)).code).toBe(0)
    expect(fs.existsSync(path.join(p.claude, "dashboard.token"))).toBe(false)
    expect(fs.existsSync(path.join(p.claude, "daemon", "dashboard.json"))).toBe(false)
    const answer = await p.cli(["dashboard"])
    expect(answer.code).toBe(1)
    expect(answer.stderr).toContain("No daemon is running")
  })
})
