/**
 * What only Linux has (the `/proc` file system, abstract unix sockets) is used by the Linux
 * platform layer alone: every other module goes through the platform services, so the portable
 * layer (macOS) never reaches it.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"

const SRC = path.resolve(__dirname, "../../src")

const sources = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(path.join(dir, e.name)) : e.name.endsWith(".ts") ? [path.join(dir, e.name)] : []
  )

/** The code of a module without its comments (a comment may name `/proc` to say it is not read). */
const codeOf = (file: string): string =>
  fs.readFileSync(file, "utf8").replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "")

/** A string or template literal that starts with `/proc`, or an abstract socket address (a NUL, then a name). */
const LINUX_ONLY = /["'`]\/proc\b|["'`]\\0[A-Za-z]/

describe("Linux-only features", () => {
  it("are reached only from the Linux platform layer", () => {
    const users = sources(SRC).filter((file) => LINUX_ONLY.test(codeOf(file))).map((file) => path.relative(SRC, file))
    expect(users).toEqual([path.join("platform", "linux.ts")])
  })

  it("the check itself finds a /proc read and an abstract socket", () => {
    expect(LINUX_ONLY.test('fs.readFileSync(`/proc/${pid}/stat`)')).toBe(true)
    expect(LINUX_ONLY.test('const address = "\\0starforge-" + hash')).toBe(true)
    expect(LINUX_ONLY.test('import { x } from "../process/x.js"')).toBe(false)
    expect(LINUX_ONLY.test('if (text.includes("\\0")) return invalid')).toBe(false)
  })
})
