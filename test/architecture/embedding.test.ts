/**
 * Embedded in a user's program, the daemon reports through Effect's logger only: no module below
 * the command line writes to the terminal itself. Two exceptions are by design: the daemon log's
 * echo (asked for by the foreground daemon of the CLI) and the spawn helper's own program.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"

const SRC = path.resolve(__dirname, "../../src")
const ALLOWED = new Set(["observability/DaemonLog.ts", "process/spawnHelperMain.ts"])

const sources = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(path.join(dir, e.name)) : e.name.endsWith(".ts") ? [path.join(dir, e.name)] : []
  )

const WRITES_TO_TERMINAL = /process\.std(err|out)\.write|console\.(log|error|warn|info)/

describe("embedding", () => {
  it("no module below the command line writes to the terminal behind the embedder's logger", () => {
    const writers = sources(SRC)
      .map((file) => path.relative(SRC, file))
      .filter((file) => !file.startsWith("cli" + path.sep) && file !== "bin.ts" && !ALLOWED.has(file))
      .filter((file) => WRITES_TO_TERMINAL.test(fs.readFileSync(path.join(SRC, file), "utf8")))
    expect(writers).toEqual([])
  })
})
