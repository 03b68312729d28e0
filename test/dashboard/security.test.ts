/** The dashboard's request checks and page files, as pure functions (issue 23 part 4). */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { readPageFile } from "../../src/dashboard/page.js"
import { cookieName, hostAllowed, makeToken, pageUrl, parseHost, refusal, tokenMatches } from "../../src/dashboard/security.js"

const bound = { host: "127.0.0.1", port: 7420 }
const token = makeToken()
const head = (headers: Record<string, string>, method = "GET", url = "/api/status") => ({ method, url, headers })

describe("security", () => {
  it("makes a 32-byte base64url token and compares tokens whatever their length", () => {
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(makeToken()).not.toBe(token)
    expect(tokenMatches(token, token)).toBe(true)
    expect(tokenMatches(token.slice(0, -1) + (token.endsWith("A") ? "B" : "A"), token)).toBe(false)
    expect(tokenMatches("", token)).toBe(false)
    expect(tokenMatches(token + "x", token)).toBe(false)
  })

  it("takes only a Host naming the bound address and port", () => {
    expect(parseHost("[::1]:7420")).toEqual({ name: "::1", port: 7420 })
    expect(parseHost("Example.COM:80")).toEqual({ name: "example.com", port: 80 })
    expect(parseHost("example.com")).toEqual({ name: "example.com", port: undefined })
    expect(hostAllowed("127.0.0.1:7420", bound)).toBe(true)
    expect(hostAllowed("localhost:7420", bound)).toBe(true)
    expect(hostAllowed("[::1]:7420", bound)).toBe(true)
    expect(hostAllowed("127.0.0.1:7421", bound)).toBe(false)
    expect(hostAllowed("127.0.0.1", bound)).toBe(false)
    expect(hostAllowed("evil.example:7420", bound)).toBe(false)
    expect(hostAllowed(undefined, bound)).toBe(false)
    // A non-loopback bind: its own address only.
    expect(hostAllowed("192.168.1.5:7420", { host: "192.168.1.5", port: 7420 })).toBe(true)
    expect(hostAllowed("localhost:7420", { host: "192.168.1.5", port: 7420 })).toBe(false)
    // A wildcard bind: IP literals, localhost and this machine's name, never another name.
    const any = { host: "0.0.0.0", port: 7420 }
    expect(hostAllowed("10.1.2.3:7420", any)).toBe(true)
    expect(hostAllowed("[fe80::1]:7420", any)).toBe(true)
    expect(hostAllowed(`${os.hostname()}:7420`, any)).toBe(true)
    expect(hostAllowed("rebound.attacker.example:7420", any)).toBe(false)
    expect(pageUrl(any)).toBe("http://127.0.0.1:7420/")
    expect(pageUrl({ host: "::", port: 1 })).toBe("http://[::1]:1/")
    expect(pageUrl({ host: "::1", port: 1 })).toBe("http://[::1]:1/")
  })

  it("refuses in order: Host (421), token (401), a cross-site mutating request (403)", () => {
    const host = "127.0.0.1:7420"
    expect(refusal(head({ host: "evil:7420", authorization: `Bearer ${token}` }), bound, token)?.status).toBe(421)
    expect(refusal(head({ host }), bound, token)).toMatchObject({ status: 401, reason: expect.stringContaining("no token") })
    expect(refusal(head({ host, authorization: "Bearer nope" }), bound, token)).toMatchObject({ status: 401, reason: expect.stringContaining("wrong token") })
    expect(refusal(head({ host, authorization: `Bearer ${token}` }), bound, token)).toBeUndefined()
    expect(refusal(head({ host, cookie: `a=b; ${cookieName(7420)}=${token}` }), bound, token)).toBeUndefined()
    // Another dashboard's cookie (another port) is not this one's.
    expect(refusal(head({ host, cookie: `${cookieName(7421)}=${token}` }), bound, token)?.status).toBe(401)
    expect(refusal(head({ host }, "GET", `/events?token=${token}`), bound, token)).toBeUndefined()
    // A cookie left by an earlier daemon (its token) does not shut out the new address's token.
    expect(refusal(head({ host, cookie: `${cookieName(7420)}=stale` }, "GET", `/?token=${token}`), bound, token)).toBeUndefined()
    expect(refusal(head({ host, cookie: `${cookieName(7420)}=stale` }, "GET", "/"), bound, token)?.status).toBe(401)
    // ?token= only on GET: a POST must carry it in a header or the cookie.
    expect(refusal(head({ host }, "POST", `/api/triggers?token=${token}`), bound, token)?.status).toBe(401)
    const post = (headers: Record<string, string>) => refusal(head({ host, authorization: `Bearer ${token}`, ...headers }, "POST", "/api/triggers"), bound, token)
    expect(post({})).toBeUndefined()
    expect(post({ origin: "http://127.0.0.1:7420" })).toBeUndefined()
    expect(post({ origin: "http://evil.example" })).toMatchObject({ status: 403 })
    expect(post({ origin: "null" })).toMatchObject({ status: 403 })
    expect(post({ referer: "http://127.0.0.1:7420/" })).toBeUndefined()
    expect(post({ referer: "http://evil.example/page" })).toMatchObject({ status: 403 })
    // A GET is not checked for its origin (it changes nothing).
    expect(refusal(head({ host, authorization: `Bearer ${token}`, origin: "http://evil.example" }), bound, token)).toBeUndefined()
  })
})

describe("page files", () => {
  const dirs: Array<string> = []
  afterEach(() => {
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true })
  })

  it("serves plain names of regular files of known types, never through '..' or a symlink", () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-page-"))
    dirs.push(base)
    const dir = path.join(base, "page")
    expect(readPageFile(dir, "index.html")).toEqual({ _tag: "NoPage", directory: dir })
    fs.mkdirSync(path.join(dir, "icons"), { recursive: true })
    fs.writeFileSync(path.join(dir, "index.html"), "<!doctype html>")
    fs.writeFileSync(path.join(dir, "icons", "a.svg"), "<svg/>")
    fs.writeFileSync(path.join(base, "secret.js"), "secret")
    fs.writeFileSync(path.join(dir, "notes.bin"), "x")
    fs.symlinkSync(path.join(base, "secret.js"), path.join(dir, "link.js"))
    fs.symlinkSync(base, path.join(dir, "up"))
    const found = readPageFile(dir, "index.html")
    expect(found._tag).toBe("Found")
    expect(found._tag === "Found" && found.contentType).toBe("text/html; charset=utf-8")
    expect(readPageFile(dir, "icons/a.svg")).toMatchObject({ _tag: "Found", contentType: "image/svg+xml" })
    for (const bad of ["../secret.js", "icons/../../secret.js", "link.js", "up/secret.js", ".hidden.js", "notes.bin", "missing.js", "", "icons//a.svg"]) {
      expect(readPageFile(dir, bad), bad).toEqual({ _tag: "NotFound" })
    }
  })
})
