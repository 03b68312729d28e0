/** `/api/logs/AGENT`: the tail of an agent's newest log, also when that log has been gzipped. */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as zlib from "node:zlib"
import { Effect } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { logTail } from "../../src/dashboard/api.js"
import { projectPaths } from "../../src/domain/ProjectPaths.js"

describe("logTail", () => {
  let dir: string | undefined
  afterEach(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
    dir = undefined
  })

  it("reads the last lines of a gzipped log larger than the tail it keeps, and of a plain one", async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-logtail-"))
    const paths = projectPaths(dir)
    fs.mkdirSync(paths.logs, { recursive: true })
    // About 3 MB: more than the tail kept in memory.
    const text = Array.from({ length: 60_000 }, (_, i) => `line ${i} ${"x".repeat(40)}`).join("\n") + "\n"
    fs.writeFileSync(path.join(paths.logs, "qa-1700000000.log.gz"), zlib.gzipSync(text))
    const gz = await Effect.runPromise(logTail(paths, "qa", new URLSearchParams("lines=3")))
    expect(gz).toEqual({
      agent: "qa",
      file: path.join(".claude", "logs", "qa-1700000000.log.gz"),
      lines: [59_997, 59_998, 59_999].map((i) => `line ${i} ${"x".repeat(40)}`)
    })
    fs.writeFileSync(path.join(paths.logs, "qa-1700000100.log"), "Agent: qa\n\nfirst\nsecond\n")
    const plain = await Effect.runPromise(logTail(paths, "qa", new URLSearchParams("lines=2")))
    expect(plain.lines).toEqual(["first", "second"])
  })
})
