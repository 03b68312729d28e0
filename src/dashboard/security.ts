/**
 * Who may talk to the dashboard: the checks every request passes before any route runs, as pure
 * functions of the request's method, URL and headers.
 *
 * - The token (made at start, in `C/dashboard.token`): `Authorization: Bearer <token>`, the cookie
 *   set when the page is opened with `/?token=<token>`, or `?token=` on a GET (for `EventSource`).
 *   Compared in constant time.
 * - `Host` must name the bound address (DNS rebinding: a page of another site whose name now points
 *   here sends its own name). A loopback bind also takes `localhost` and the other loopback
 *   literals; a wildcard bind (0.0.0.0, ::) takes any IP literal, `localhost` and this machine's
 *   host name, since an IP literal cannot be rebound. The port is always the real one.
 * - A POST or DELETE carrying `Origin` (or, without it, `Referer`) must come from this origin.
 */
import * as crypto from "node:crypto"
import * as net from "node:net"
import * as os from "node:os"

/** Where the server listens: the configured host and the real port. */
export interface Bound {
  readonly host: string
  readonly port: number
}

/** A request refused before any route: its status and the one-line reason sent as `{"error": …}`. */
export interface Refusal {
  readonly status: number
  readonly reason: string
}

/** What the checks look at. Header names are lower case, as Node gives them. */
export interface RequestHead {
  readonly method: string
  /** The path and query, as sent (`/api/status?x=1`). */
  readonly url: string
  readonly headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
}

/** A fresh token: 32 random bytes, base64url. */
export const makeToken = (): string => crypto.randomBytes(32).toString("base64url")

/**
 * The cookie holding the token. Cookies are kept per host, not per port: the port in the name
 * keeps the dashboards of two projects on one machine from replacing each other's.
 */
export const cookieName = (port: number) => `starforge_token_${port}`

const digest = (text: string) => crypto.createHash("sha256").update(text, "utf8").digest()

/** Whether `given` is the token, in time independent of where they differ (both hashed to one length first). */
export const tokenMatches = (given: string, token: string): boolean => crypto.timingSafeEqual(digest(given), digest(token))

const WILDCARDS = new Set(["0.0.0.0", "::", "[::]", ""])
const LOOPBACK_NAMES = ["localhost", "127.0.0.1", "::1"]

const isLoopback = (host: string) => host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host)

/** `[::1]:7420` → { name: "::1", port: 7420 }; the port is undefined when absent or not a number. */
export const parseHost = (header: string): { readonly name: string; readonly port: number | undefined } => {
  const text = header.trim().toLowerCase()
  const bracket = /^\[([^\]]*)\](?::(\d+))?$/.exec(text)
  if (bracket) return { name: bracket[1]!, port: bracket[2] === undefined ? undefined : Number(bracket[2]) }
  const colon = text.lastIndexOf(":")
  // A bare IPv6 address without brackets has several colons and no port.
  if (colon < 0 || text.indexOf(":") !== colon) return { name: text, port: undefined }
  const port = text.slice(colon + 1)
  return { name: text.slice(0, colon), port: /^\d+$/.test(port) ? Number(port) : undefined }
}

/** Whether a `Host` header names the bound address (see the module comment for a wildcard bind). */
export const hostAllowed = (header: string | undefined, bound: Bound): boolean => {
  if (header === undefined || header === "") return false
  const { name, port } = parseHost(header)
  if (port !== bound.port) return false
  const boundHost = bound.host.toLowerCase().replace(/^\[|\]$/g, "")
  if (WILDCARDS.has(boundHost)) return net.isIP(name) !== 0 || name === "localhost" || name === os.hostname().toLowerCase()
  if (name === boundHost) return true
  return isLoopback(boundHost) && LOOPBACK_NAMES.includes(name)
}

/** The URL to print for the bound address (a wildcard bind is reached on loopback). */
export const pageUrl = (bound: Bound): string => {
  const host = WILDCARDS.has(bound.host) ? (bound.host.includes(":") ? "[::1]" : "127.0.0.1") : bound.host
  return `http://${host.includes(":") && !host.startsWith("[") ? `[${host}]` : host}:${bound.port}/`
}

const header = (head: RequestHead, name: string): string | undefined => {
  const value = head.headers[name]
  return typeof value === "string" ? value : value?.[0]
}

/**
 * The tokens a request carries: bearer, cookie, and `?token=` (GET and HEAD only). Any of them may
 * be the right one: a cookie left by an earlier daemon must not shut out the new address.
 */
export const tokensOf = (head: RequestHead, port: number, query: URLSearchParams): ReadonlyArray<string> => {
  const authorization = header(head, "authorization")
  const bearer = authorization === undefined ? undefined : /^Bearer\s+(\S+)\s*$/i.exec(authorization)?.[1]
  const cookie = cookieValue(header(head, "cookie"), cookieName(port))
  const inQuery = head.method === "GET" || head.method === "HEAD" ? query.get("token") ?? undefined : undefined
  return [bearer, cookie, inQuery].filter((t): t is string => t !== undefined)
}

const cookieValue = (cookies: string | undefined, name: string): string | undefined => {
  if (cookies === undefined) return undefined
  for (const part of cookies.split(";")) {
    const eq = part.indexOf("=")
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}

const MUTATING = new Set(["POST", "PUT", "PATCH", "DELETE"])

/** Whether `Origin` (else `Referer`), when the request has one, is this server's own origin. */
export const sameOrigin = (head: RequestHead): boolean => {
  const own = `http://${(header(head, "host") ?? "").toLowerCase()}`
  const origin = header(head, "origin")
  if (origin !== undefined) return origin.toLowerCase() === own
  const referer = header(head, "referer")
  if (referer === undefined) return true
  try {
    return new URL(referer).origin.toLowerCase() === own
  } catch {
    return false
  }
}

/**
 * The refusal for a request that may not pass, or undefined. Checked in this order: `Host`
 * (421: not this server), the token (401), then the origin of a mutating request (403).
 */
export const refusal = (head: RequestHead, bound: Bound, token: string): Refusal | undefined => {
  if (!hostAllowed(header(head, "host"), bound)) {
    return { status: 421, reason: "the Host header does not name this dashboard's address" }
  }
  const query = new URL(head.url, "http://dashboard").searchParams
  const given = tokensOf(head, bound.port, query)
  if (given.length === 0) {
    return { status: 401, reason: "no token: open the address printed by 'starforge dashboard', or send Authorization: Bearer <token>" }
  }
  if (!given.some((t) => tokenMatches(t, token))) return { status: 401, reason: "wrong token: see 'starforge dashboard' for the current one" }
  if (MUTATING.has(head.method) && !sameOrigin(head)) {
    return { status: 403, reason: "cross-site request refused: the Origin is not this dashboard" }
  }
  return undefined
}
