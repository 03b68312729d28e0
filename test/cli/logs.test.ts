import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { newestAgentLog } from "../../src/cli/logs.js"

let dir: string | undefined
afterEach(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true })
  dir = undefined
})

describe("newestAgentLog", () => {
  it("picks the newest log of exactly that agent", () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-logs-"))
    for (const name of ["dev-1795843201.log", "dev-1795843201-2.log", "dev-2-1795843999.log", "dev.x-1795849999.log", "daemon.log"]) {
      fs.writeFileSync(path.join(dir, name), name)
    }
    expect(newestAgentLog(dir, "dev")).toBe(path.join(dir, "dev-1795843201-2.log"))
    expect(newestAgentLog(dir, "dev-2")).toBe(path.join(dir, "dev-2-1795843999.log"))
    expect(newestAgentLog(dir, "nobody")).toBeUndefined()
  })
})
