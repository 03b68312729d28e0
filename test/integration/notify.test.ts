/**
 * Notifications through the real daemon to local HTTP servers on 127.0.0.1 standing in for the
 * webhooks: a Discord stand-in that first answers 429 with `retry_after`, a generic receiver, a
 * per-agent Discord webhook that never answers, and a port that refuses connections.
 */
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { afterEach, describe, expect, it } from "vitest"
import { archivedTriggers, deadLetters, startForeground } from "../support/daemonHelpers.js"
import { useFakeClaude } from "../support/fakeClaude.js"
import { daemonLog, trigger, useProjects, waitFor } from "../support/project.js"

const projects = useProjects()

interface Received {
  readonly at: number
  readonly body: Record<string, any>
  readonly headers: http.IncomingHttpHeaders
}

const servers: Array<http.Server> = []
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections()
    await new Promise((r) => server.close(r))
  }
})

/** A webhook stand-in; `answer` decides each response (undefined: never answer). */
const webhook = async (answer: (n: number, res: http.ServerResponse) => void | undefined) => {
  const received: Array<Received> = []
  let n = 0
  const server = http.createServer((req, res) => {
    let data = ""
    req.on("data", (d) => (data += String(d)))
    req.on("end", () => {
      received.push({ at: Date.now(), body: JSON.parse(data), headers: req.headers })
      answer(++n, res)
    })
  })
  servers.push(server)
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, received }
}

/** A port nothing listens on. */
const refusedUrl = async () => {
  const server = http.createServer()
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  const port = (server.address() as AddressInfo).port
  await new Promise((r) => server.close(r))
  return `http://127.0.0.1:${port}/hook`
}

describe("notifications", () => {
  it("one message per event to Discord (honouring 429 retry_after) and the generic webhook; a hanging webhook delays nothing", async () => {
    const discord = await webhook((n, res) => {
      if (n === 1) {
        res.writeHead(429, { "content-type": "application/json" }).end(JSON.stringify({ retry_after: 0.7, global: false }))
      } else res.writeHead(204).end()
    })
    const generic = await webhook((_, res) => void res.writeHead(200).end("ok"))
    const hanging = await webhook(() => undefined)
    const p = projects.make({
      MAX_RETRIES: "1",
      DISCORD_WEBHOOK_URL: discord.url,
      DISCORD_WEBHOOK_SLOW_AGENT: hanging.url,
      NOTIFY_WEBHOOK_URL: generic.url
    })
    useFakeClaude(p)
    await startForeground(p)
    const started = Date.now()
    p.drop("slow-agent-1", trigger("slow-agent", "scenario=success", { context: { ticket: "7" } }))
    p.drop("a-1", trigger("a", "scenario=success", { context: { ticket: "52" } }))
    p.drop("b-1", trigger("b", "scenario=is_error"))
    await waitFor(() => archivedTriggers(p).length === 2 && deadLetters(p).length === 1, { what: "the three jobs to end" })
    // The agent whose webhook hangs finished like the others.
    expect(Date.now() - started).toBeLessThan(15_000)
    const kinds = (rs: ReadonlyArray<Received>, agent: string) => rs.filter((r) => r.body["agent"] === agent).map((r) => r.body["event"])
    await waitFor(() => generic.received.length >= 7, { what: "the generic webhook's messages" })
    expect(kinds(generic.received, "a")).toEqual(["start", "complete"])
    expect(kinds(generic.received, "b")).toEqual(["start", "failed", "dead_letter"])
    expect(kinds(generic.received, "slow-agent")).toEqual(["start", "complete"])
    const complete = generic.received.find((r) => r.body["agent"] === "a" && r.body["event"] === "complete")!
    expect(complete.body).toMatchObject({ ticket: "52", trigger: "a-1.trigger", attempt: 1, cost_usd: 0.0123, session_id: "sess-a-1", turns: 3 })
    expect(complete.headers["idempotency-key"]).toBe(complete.body["id"])
    // Discord: a's and b's messages, each once, after the 429 was waited out; slow-agent's went to its own webhook.
    await waitFor(() => discord.received.length >= 6, { what: "the Discord messages" })
    const contents = discord.received.map((r) => r.body["content"] as string)
    expect(new Set(contents.slice(1)).size).toBe(contents.length - 1)
    expect(contents.filter((c) => c.includes("slow-agent"))).toEqual([])
    expect(discord.received.slice(1).map((r) => r.body["content"] as string).filter((c) => c.startsWith("✅"))).toEqual([
      expect.stringMatching(/^✅ a completed a-1\.trigger \(ticket 52\) in \d+s \(attempt 1\): 3 turns, \$0\.0123, session sess-a-1$/)
    ])
    expect(contents.some((c) => c.startsWith("💀") && c.includes("b-1.trigger"))).toBe(true)
    // The retry of the refused message waited retry_after.
    const retried = discord.received.findIndex((r, i) => i > 0 && r.body["content"] === discord.received[0]!.body["content"])
    expect(retried).toBeGreaterThan(0)
    expect(discord.received[retried]!.at - discord.received[0]!.at).toBeGreaterThanOrEqual(650)
    expect(discord.received.every((r) => JSON.stringify(r.body["allowed_mentions"]) === JSON.stringify({ parse: [] }))).toBe(true)
    expect(hanging.received.length).toBeGreaterThanOrEqual(1)
  })

  it("a webhook that refuses connections is retried with backoff, then reported; the job is not affected", async () => {
    const p = projects.make({ NOTIFY_WEBHOOK_URL: await refusedUrl() })
    useFakeClaude(p)
    await startForeground(p)
    p.drop("a-1", trigger("a", "scenario=success"))
    await waitFor(() => archivedTriggers(p).length === 1, { what: "the job to succeed" })
    await waitFor(() => /NOTIFY: start notification for a not delivered to NOTIFY_WEBHOOK_URL 127\.0\.0\.1:\d+: ECONNREFUSED after 5 tries/.test(daemonLog(p)), {
      timeoutMs: 60_000,
      what: "the NOTIFY line"
    })
  })
})
