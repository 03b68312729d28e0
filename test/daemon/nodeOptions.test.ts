import { describe, expect, it } from "vitest"
import { DAEMON_NODE_OPTIONS, daemonExecArgv } from "../../src/daemon/nodeOptions.js"

describe("daemonExecArgv", () => {
  it("adds the daemon's Node options to the caller's, once", () => {
    expect(daemonExecArgv([])).toEqual([...DAEMON_NODE_OPTIONS])
    expect(daemonExecArgv(["--inspect", ...DAEMON_NODE_OPTIONS])).toEqual(["--inspect", ...DAEMON_NODE_OPTIONS])
  })

  it("leaves an option the caller set to its own value alone", () => {
    expect(daemonExecArgv(["--max-semi-space-size=16"])).toEqual(["--max-semi-space-size=16", "--no-memory-reducer"])
  })
})
