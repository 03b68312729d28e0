/**
 * HTTP helpers for the dashboard tests: requests with every header under the test's control (a
 * forged `Host`, a path sent as it is, a body of any size) and an event-stream reader.
 */
import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import type { TestProject } from "../support/project.js"

export interface Reply {
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  readonly text: string
  /** The body as JSON (undefined when it is not JSON). */
  readonly json: any
}

export interface Dashboard {
  readonly url: string
  readonly port: number
  readonly token: string
}

/** The running daemon's dashboard, from the files it wrote. */
export const dashboardOf = (p: TestProject): Dashboard | undefined => {
  try {
    const info = JSON.parse(fs.readFileSync(path.join(p.claude, "daemon", "dashboard.json"), "utf8"))
    const token = fs.readFileSync(path.join(p.claude, "dashboard.token"), "utf8").trim()
    return { url: info.url, port: info.port, token }
  } catch {
    return undefined
  }
}

export interface RequestOptions {
  readonly method?: string
  readonly headers?: Record<string, string>
  readonly body?: string | Buffer
  /** Sent as the Authorization bearer (default: none). */
  readonly token?: string
}

/** One request to 127.0.0.1:`port`; `Host` is `127.0.0.1:port` unless given. The path is sent as is. */
export const request = (port: number, pathAndQuery: string, options: RequestOptions = {}) =>
  new Promise<Reply>((resolve, reject) => {
    const headers: Record<string, string> = {
      host: `127.0.0.1:${port}`,
      ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
      ...(options.body === undefined ? {} : { "content-length": String(Buffer.byteLength(options.body)) }),
      ...options.headers
    }
    const req = http.request({ host: "127.0.0.1", port, path: pathAndQuery, method: options.method ?? "GET", headers, agent: false }, (res) => {
      let text = ""
      res.setEncoding("utf8")
      res.on("data", (d) => (text += d))
      res.on("end", () => {
        let json: unknown
        try {
          json = JSON.parse(text)
        } catch {
          json = undefined
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json })
      })
    })
    // A server that answers before the whole body is sent may close while it is still written.
    req.on("error", reject)
    if (options.body !== undefined) req.write(options.body)
    req.end()
  })

export interface SseEvent {
  readonly event: string
  readonly data: string
  /** When it arrived (Date.now()). */
  readonly at: number
}

export interface EventReader {
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  /** Every event so far (comments as event ":"). */
  readonly events: () => ReadonlyArray<SseEvent>
  /** Resolves when the server ends the stream. */
  readonly ended: Promise<void>
  readonly close: () => void
}

/** Opens `/events` (or `pathAndQuery`) and parses what arrives. */
export const openEvents = (port: number, pathAndQuery: string, options: RequestOptions = {}) =>
  new Promise<EventReader>((resolve, reject) => {
    const events: Array<SseEvent> = []
    const req = http.request(
      { host: "127.0.0.1", port, path: pathAndQuery, headers: { host: `127.0.0.1:${port}`, ...(options.token ? { authorization: `Bearer ${options.token}` } : {}), ...options.headers }, agent: false },
      (res) => {
        let buffer = ""
        let end: () => void = () => {}
        const ended = new Promise<void>((r) => (end = r))
        res.setEncoding("utf8")
        res.on("data", (chunk: string) => {
          buffer += chunk
          for (let at = buffer.indexOf("\n\n"); at >= 0; at = buffer.indexOf("\n\n")) {
            const block = buffer.slice(0, at)
            buffer = buffer.slice(at + 2)
            if (block.startsWith(":")) events.push({ event: ":", data: block, at: Date.now() })
            else {
              const event = /^event: (.*)$/m.exec(block)?.[1] ?? "message"
              const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n")
              events.push({ event, data, at: Date.now() })
            }
          }
        })
        res.on("end", () => end())
        res.on("close", () => end())
        resolve({ status: res.statusCode ?? 0, headers: res.headers, events: () => events, ended, close: () => req.destroy() })
      }
    )
    req.on("error", reject)
    req.end()
  })

/** Every file under `dir` (relative paths, sorted): what a refused request must leave as it was. */
export const filesUnder = (dir: string): Array<string> =>
  (fs.readdirSync(dir, { recursive: true }) as Array<string>).map(String).sort()
