/**
 * The dashboard's HTTP server (`DASHBOARD_ADDRESS`), loaded by `Dashboard.layer` only when it is
 * configured: the page, the JSON API under `/api/`, and the event stream `/events`, behind the
 * checks of `security.ts` (token, Host, Origin), with bodies limited to `MAX_BODY_BYTES`.
 *
 * At start it makes the token, listens only on the configured host and port, and writes
 * `C/dashboard.token` (mode 0600) and `C/daemon/dashboard.json` (the URL and real port), both
 * removed at shutdown; the `DASHBOARD` log line gives the URL without the token. At shutdown the
 * event streams end first, then the server closes (connections still open after
 * `CLOSE_GRACE_MS` are cut).
 */
import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import * as HttpIncomingMessage from "@effect/platform/HttpIncomingMessage"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Deferred, Duration, Effect, Layer, Option } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { DaemonInstance } from "../daemon/DaemonInstance.js"
import { ConfigInvalid, StorageError } from "../domain/errors.js"
import type { ProjectPaths } from "../domain/ProjectPaths.js"
import { writeFileAtomic } from "../io/stateFile.js"
import { DaemonLog } from "../observability/DaemonLog.js"
import { InstanceLock } from "../platform/InstanceLock.js"
import { Scheduler } from "../scheduler/Scheduler.js"
import { AgentSlots } from "../slots/AgentSlots.js"
import { History } from "../state/History.js"
import * as Api from "./api.js"
import { infoFile, tokenFile } from "./Dashboard.js"
import { eventStream } from "./events.js"
import { pageDirectory, readPageFile } from "./page.js"
import { type Bound, cookieName, makeToken, pageUrl, refusal, tokenMatches } from "./security.js"

/** The largest request body read (a trigger is far smaller); a larger one gets a 413. */
export const MAX_BODY_BYTES = 64 * 1024
/** At shutdown, connections still open this long after the event streams ended are cut. */
const CLOSE_GRACE_MS = 2_000
/** The most waiting triggers `/api/queue` and the `queue` event list (a queue of thousands is not sent whole). */
export const QUEUE_LIMIT = 1_000

const SECURITY_HEADERS = {
  "content-security-policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer"
}

const json = (status: number, body: unknown) =>
  HttpServerResponse.unsafeJson(body, { status, headers: { "cache-control": "no-store" } })

const refused = (status: number, reason: string) => json(status, { error: reason })

/** The request's query parameters. */
const queryOf = (request: HttpServerRequest.HttpServerRequest) => new URL(request.url, "http://dashboard").searchParams

/** A route parameter, as the router decoded it. */
const param = (name: string) => Effect.map(HttpRouter.params, (params) => params[name] ?? "")

/** A JSON body of at most `MAX_BODY_BYTES`: 413 when larger, 415 when not JSON, 400 when it does not parse. */
const jsonBody = Effect.gen(function*() {
  const request = yield* HttpServerRequest.HttpServerRequest
  const length = Number(request.headers["content-length"] ?? 0)
  if (length > MAX_BODY_BYTES) {
    return yield* new Api.ApiError({ status: 413, reason: `the body is larger than ${MAX_BODY_BYTES / 1024} KiB` })
  }
  // A form post of another site cannot send this type without a CORS preflight, which is refused.
  if (!/^application\/json\s*(;|$)/i.test(request.headers["content-type"] ?? "")) {
    return yield* new Api.ApiError({ status: 415, reason: "send the body as Content-Type: application/json" })
  }
  const text = yield* request.text.pipe(
    HttpIncomingMessage.withMaxBodySize(Option.some(MAX_BODY_BYTES)),
    Effect.mapError((e) =>
      String(e.cause).includes("maxBytes exceeded")
        ? new Api.ApiError({ status: 413, reason: `the body is larger than ${MAX_BODY_BYTES / 1024} KiB` })
        : new Api.ApiError({ status: 400, reason: "the body could not be read" })
    )
  )
  return yield* Effect.try({
    try: () => JSON.parse(text) as unknown,
    catch: (e) => new Api.ApiError({ status: 400, reason: `the body is not valid JSON: ${(e as Error).message.split("\n")[0]}` })
  })
})

interface Context {
  readonly paths: ProjectPaths
  readonly bound: Bound
  readonly token: string
  readonly shutdown: Deferred.Deferred<void>
}

/** The page's index, setting the token cookie when it was opened with the right `?token=`. */
const indexPage = (ctx: Context) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const file = readPageFile(pageDirectory(), "index.html")
    if (file._tag === "NoPage") return HttpServerResponse.text(`The dashboard page is not installed (no ${file.directory}); the API under /api/ works.\n`, { status: 404 })
    if (file._tag === "NotFound") return HttpServerResponse.text("The dashboard page has no index.html; the API under /api/ works.\n", { status: 404 })
    const response = HttpServerResponse.uint8Array(file.body, { contentType: file.contentType, headers: { "cache-control": "no-cache" } })
    const given = queryOf(request).get("token")
    return given !== null && tokenMatches(given, ctx.token)
      ? HttpServerResponse.unsafeSetCookie(response, cookieName(ctx.bound.port), ctx.token, { httpOnly: true, sameSite: "strict", path: "/" })
      : response
  })

const asset = Effect.map(param("*"), (name) => {
  const file = readPageFile(pageDirectory(), name)
  return file._tag === "Found"
    ? HttpServerResponse.uint8Array(file.body, { contentType: file.contentType, headers: { "cache-control": "no-cache" } })
    : refused(404, `no asset ${JSON.stringify(name)}`)
})

/** Every route; each answers JSON or fails with an `ApiError`. */
const routes = (ctx: Context) =>
  Effect.gen(function*() {
    const slots = yield* AgentSlots
    const history = yield* History
    const scheduler = yield* Scheduler
    const log = yield* DaemonLog
    const lock = yield* InstanceLock
    const { paths } = ctx
    const queue = Effect.map(scheduler.waiting(QUEUE_LIMIT), (all) => all.map(Api.queueItem))
    const query = Effect.map(HttpServerRequest.HttpServerRequest, queryOf)
    const ok = <A, E, R>(effect: Effect.Effect<A, E, R>, status = 200) => Effect.map(effect, (body) => json(status, body))
    return HttpRouter.empty.pipe(
      HttpRouter.get("/", indexPage(ctx)),
      HttpRouter.get("/assets/*", asset),
      HttpRouter.get("/api/status", ok(Effect.provideService(Api.status(paths), InstanceLock, lock))),
      HttpRouter.get("/api/slots", ok(slots.snapshot)),
      HttpRouter.get("/api/queue", ok(queue)),
      HttpRouter.get("/api/history", ok(Effect.flatMap(query, (q) => Api.history(paths, q)))),
      HttpRouter.get("/api/dlq", ok(Api.dlqList(paths))),
      HttpRouter.get("/api/dlq/:name", ok(Effect.flatMap(param("name"), (name) => Api.dlqShow(paths, name)))),
      HttpRouter.get("/api/logs/:agent", ok(Effect.flatMap(Effect.zip(param("agent"), query), ([agent, q]) => Api.logTail(paths, agent, q)))),
      HttpRouter.get("/api/usage", ok(Api.usage(paths))),
      HttpRouter.post("/api/triggers", ok(Effect.flatMap(jsonBody, (body) => Api.newTrigger(paths, body)), 201)),
      HttpRouter.post("/api/dlq/:name/retry", ok(Effect.flatMap(param("name"), (name) => Api.dlqRetry(paths, name)))),
      HttpRouter.post("/api/dlq/:name/purge", ok(Effect.flatMap(param("name"), (name) => Api.dlqPurge(paths, name)))),
      HttpRouter.get(
        "/events",
        Effect.succeed(HttpServerResponse.stream(
          eventStream({ slots, log, queue, attempts: history.recorded, shutdown: ctx.shutdown }),
          {
            contentType: "text/event-stream",
            // `Connection: close`: the socket closes when the stream ends (at shutdown), not kept alive.
            headers: { "cache-control": "no-store", "connection": "close", "x-accel-buffering": "no" }
          }
        ))
      )
    )
  })

/** The whole app: the checks, then the routes; every answer gets the security headers. */
const app = (ctx: Context) =>
  Effect.map(routes(ctx), (router) =>
    Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const refusedBy = refusal({ method: request.method, url: request.url, headers: request.headers }, ctx.bound, ctx.token)
      if (refusedBy !== undefined) return refused(refusedBy.status, refusedBy.reason)
      return yield* router
    }).pipe(
      Effect.catchTags({
        ApiError: (e) => Effect.succeed(refused(e.status, e.reason)),
        RouteNotFound: () => Effect.succeed(refused(404, "no such page or endpoint"))
      }),
      Effect.map(HttpServerResponse.setHeaders(SECURITY_HEADERS))
    ))

/** Writes the token, mode 0600, through a temporary file renamed into place; removed with the scope. */
const tokenFileScoped = (file: string, token: string) =>
  Effect.acquireRelease(
    Effect.try({
      try: () => {
        const tmp = `${file}.${process.pid}.tmp`
        fs.rmSync(tmp, { force: true })
        fs.writeFileSync(tmp, token + "\n", { mode: 0o600, flag: "wx" })
        fs.renameSync(tmp, file)
      },
      catch: (cause) => new StorageError({ operation: "writing", path: file, cause })
    }),
    () => Effect.sync(() => fs.rmSync(file, { force: true }))
  )

/**
 * Ends the event streams, then closes the server: it stops listening and waits for the
 * connections still open, at most `CLOSE_GRACE_MS`, then cuts them.
 */
const closeServer = (server: http.Server, shutdown: Deferred.Deferred<void>) =>
  Effect.zipRight(
    Deferred.succeed(shutdown, undefined),
    Effect.async<void>((resume) => {
      server.close(() => resume(Effect.void))
    }).pipe(
      // A finalizer is uninterruptible; the timeout must be able to interrupt the wait.
      Effect.interruptible,
      Effect.timeout(Duration.millis(CLOSE_GRACE_MS)),
      Effect.catchTag("TimeoutException", () => Effect.sync(() => server.closeAllConnections()))
    )
  )

/** The server on `address` (see the module comment). */
export const layer = (address: { readonly host: string; readonly port: number }) =>
  Layer.scopedDiscard(
    Effect.gen(function*() {
      const { paths } = yield* DaemonConfig
      const log = yield* DaemonLog
      const instance = yield* DaemonInstance
      const token = makeToken()
      const shutdown = yield* Deferred.make<void>()
      const server = http.createServer()
      const listening = yield* NodeHttpServer.make(() => server, { host: address.host, port: address.port }).pipe(
        Effect.mapError((e) =>
          new ConfigInvalid({
            message: `DASHBOARD_ADDRESS ${address.host}:${address.port} cannot be served (${(e.cause as Error)?.message ?? String(e.cause)}): ` +
              "choose another address, or port 0 for a free one"
          })
        )
      )
      const port = listening.address._tag === "TcpAddress" ? listening.address.port : address.port
      const ctx: Context = { paths, bound: { host: address.host, port }, token, shutdown }
      // No span per request: a page polls and streams; its requests are not the daemon's work.
      yield* Effect.locally(listening.serve(yield* app(ctx)), HttpMiddleware.currentTracerDisabledWhen, () => true)
      // Registered after `serve`, so it runs before the request handler is removed.
      yield* Effect.addFinalizer(() => closeServer(server, shutdown))
      const url = pageUrl(ctx.bound)
      yield* tokenFileScoped(tokenFile(paths), token)
      yield* Effect.acquireRelease(
        writeFileAtomic(infoFile(paths), JSON.stringify({ url, pid: instance.pid, host: address.host, port }, null, 2) + "\n"),
        () => Effect.sync(() => fs.rmSync(infoFile(paths), { force: true }))
      )
      yield* log.event(
        "DASHBOARD",
        `Serving the dashboard and HTTP API on ${url} (token in ${path.relative(paths.root, tokenFile(paths))}; 'starforge dashboard' prints the address with it)`
      )
    })
  )
