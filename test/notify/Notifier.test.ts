/**
 * The notifier's delivery to a local HTTP server on 127.0.0.1 standing in for the webhook, its
 * back-off under the TestClock: which answers are tried again, after which wait, and what is
 * reported when a message is given up.
 */
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Clock, Effect, Queue, TestClock, TestServices } from "effect"
import { defaultSettings } from "../../src/config/DaemonConfig.js"
import { make, type SendOptions } from "../../src/notify/Notifier.js"

interface Answer {
  readonly status: number
  readonly headers?: Record<string, string>
  readonly body?: string
}

/**
 * A webhook stand-in. `answer` gets each request's message and its number among the requests of
 * that message (1 first); undefined never answers.
 */
const webhook = (answer: (message: string, n: number) => Answer | undefined) =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: http.Server; readonly url: string; readonly received: ReadonlyArray<string> }>((resume) => {
      const received: Array<string> = []
      const counts = new Map<string, number>()
      const server = http.createServer((req, res) => {
        let data = ""
        req.on("data", (d) => (data += String(d)))
        req.on("end", () => {
          const message = String(JSON.parse(data).message)
          received.push(message)
          const n = (counts.get(message) ?? 0) + 1
          counts.set(message, n)
          const a = answer(message, n)
          if (a !== undefined) res.writeHead(a.status, a.headers).end(a.body)
        })
      })
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, received })))
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )

/** A URL on a port nothing listens on. */
const refusedUrl = Effect.async<string>((resume) => {
  const server = http.createServer()
  server.listen(0, "127.0.0.1", () => {
    const port = (server.address() as AddressInfo).port
    server.close(() => resume(Effect.succeed(`http://127.0.0.1:${port}/hook`)))
  })
})

/** Fails the test if `effect` takes longer than 5 s of real time (the requests are real). */
const within5s = <A, E>(what: string, effect: Effect.Effect<A, E>) =>
  TestServices.provideLive(effect.pipe(Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error(`no ${what} within 5s`) })))

/** The real time: requests and their answers take real time, whatever the TestClock says. */
const realNow = TestServices.provideLive(Clock.currentTimeMillis)

/** Waits until the sender sleeps, and gives how long (ms) each pending sleep still has to run. */
const backoff = Effect.gen(function*() {
  const deadline = (yield* realNow) + 5_000
  for (;;) {
    const sleeps = Chunk.toReadonlyArray(yield* TestClock.sleeps())
    const now = yield* Clock.currentTimeMillis
    if (sleeps.length > 0) return sleeps.map((at) => at - now)
    if ((yield* realNow) > deadline) return yield* Effect.fail(new Error("no back-off within 5s"))
    yield* TestServices.provideLive(Effect.sleep("2 millis"))
  }
})

/** A notifier sending to `url` only; `report` gives its next report. */
const notifier = (url: string, options: Partial<Omit<SendOptions, "report">> = {}) =>
  Effect.gen(function*() {
    const reports = yield* Queue.unbounded<string>()
    // flushMs 0: closing the test's scope does not wait on the TestClock for the senders.
    const n = yield* make({ ...defaultSettings, notifyWebhookUrl: url }, { flushMs: 0, ...options, report: (m) => Queue.offer(reports, m) })
    return {
      notify: (message: string) =>
        n.notify({ kind: "complete", agent: "a", trigger: null, ticket: null, attempt: null, message }),
      report: within5s("report", Queue.take(reports)),
      where: `NOTIFY_WEBHOOK_URL ${new URL(url).host}`
    }
  })

describe("Notifier delivery", () => {
  it.scoped("502, 503 and 504 are tried again after 500 ms, then twice as long each time, until one is taken", () =>
    Effect.gen(function*() {
      const hook = yield* webhook((message, n) =>
        message === "end" ? { status: 400 } : n <= 3 ? { status: [502, 503, 504][n - 1]! } : { status: 204 }
      )
      const { notify, report, where } = yield* notifier(hook.url)
      yield* notify("m")
      for (const wait of [500, 1000, 2000]) {
        expect(yield* backoff).toEqual([wait])
        yield* TestClock.adjust(wait)
      }
      // A message given up at once, after "m" was taken: the sender is done with "m".
      yield* notify("end")
      expect(yield* report).toBe(`complete notification for a not delivered to ${where}: HTTP 400`)
      expect(hook.received).toEqual(["m", "m", "m", "m", "end"])
      expect(Chunk.toReadonlyArray(yield* TestClock.sleeps())).toEqual([])
    }))

  it.scoped("a refused connection is tried 5 times in all (after 500, 1000, 2000 and 4000 ms), then reported once", () =>
    Effect.gen(function*() {
      const { notify, report, where } = yield* notifier(yield* refusedUrl)
      yield* notify("m")
      for (const wait of [500, 1000, 2000, 4000]) {
        expect(yield* backoff).toEqual([wait])
        yield* TestClock.adjust(wait)
      }
      expect(yield* report).toBe(`complete notification for a not delivered to ${where}: ECONNREFUSED after 5 tries`)
      expect(Chunk.toReadonlyArray(yield* TestClock.sleeps())).toEqual([])
    }))

  it.scoped("maxTries bounds the tries", () =>
    Effect.gen(function*() {
      const hook = yield* webhook(() => ({ status: 503 }))
      const { notify, report, where } = yield* notifier(hook.url, { maxTries: 2 })
      yield* notify("m")
      expect(yield* backoff).toEqual([500])
      yield* TestClock.adjust(500)
      expect(yield* report).toBe(`complete notification for a not delivered to ${where}: HTTP 503 after 2 tries`)
      expect(hook.received).toEqual(["m", "m"])
    }))

  it.scoped("a 429 waits for retry_after or Retry-After, at most maxRetryAfterMs; it counts as a try of the back-off", () =>
    Effect.gen(function*() {
      const json = { "content-type": "application/json" }
      const hook = yield* webhook((message, n) => {
        if (message === "end") return { status: 400 }
        switch (n) {
          case 1:
            return { status: 429, headers: json, body: JSON.stringify({ retry_after: 2.5, global: false }) }
          case 2:
            return { status: 502 }
          case 3:
            return { status: 429, headers: { "retry-after": "7" }, body: "slow down" }
          case 4:
            return { status: 429, headers: json, body: JSON.stringify({ retry_after: 100 }) }
          default:
            return { status: 204 }
        }
      })
      const { notify, report } = yield* notifier(hook.url, { maxRetryAfterMs: 30_000 })
      yield* notify("m")
      // The 502 of the second try waits the second back-off (1000 ms), the first 429 having been the first try.
      for (const wait of [2500, 1000, 7000, 30_000]) {
        expect(yield* backoff).toEqual([wait])
        yield* TestClock.adjust(wait)
      }
      yield* notify("end")
      expect(yield* report).toMatch(/: HTTP 400$/)
      expect(hook.received).toEqual(["m", "m", "m", "m", "m", "end"])
    }))

  it.scoped("an answer that may mean the message was taken is never repeated: another status, or no answer in time", () =>
    Effect.gen(function*() {
      const hook = yield* webhook((message) => (message === "hang" ? undefined : { status: 500 }))
      const { notify, report, where } = yield* notifier(hook.url, { requestTimeoutMs: 200 })
      yield* notify("m")
      expect(yield* report).toBe(`complete notification for a not delivered to ${where}: HTTP 500`)
      yield* notify("hang")
      expect(yield* report).toBe(`complete notification for a not delivered to ${where}: no answer within 0.2s`)
      expect(hook.received).toEqual(["m", "hang"])
      expect(Chunk.toReadonlyArray(yield* TestClock.sleeps())).toEqual([])
    }))
})
