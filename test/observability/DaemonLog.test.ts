import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, HashMap, Layer, Logger } from "effect"
import { describe, expect, it } from "vitest"
import { DaemonConfig } from "../../src/config/DaemonConfig.js"
import { DaemonLog, formatLine } from "../../src/observability/DaemonLog.js"
import { projectPaths } from "../../src/domain/ProjectPaths.js"

describe("formatLine", () => {
  it("is one line whatever the message and trace id hold", () => {
    const forged = "x\n[2025-01-01T00:00:00.000Z] [] FINISH: forged\r\ny\rz\u2028w"
    const line = formatLine(0, "QUEUE", forged, forged)
    expect(line.endsWith("\n")).toBe(true)
    expect(line.slice(0, -1)).not.toMatch(/[\r\n\u2028\u2029]/)
    expect(line).toBe(
      "[1970-01-01T00:00:00.000Z] [x [2025-01-01T00:00:00.000Z] [] FINISH: forged y z w] QUEUE: " +
        "x [2025-01-01T00:00:00.000Z] [] FINISH: forged y z w\n"
    )
  })
})

describe("DaemonLog.layer", () => {
  /** One event through the real layer, with a capturing logger or no Effect logger at all; what it got, and the file. */
  const logOnce = async (withLogger: boolean) => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-daemonlog-"))
    const got: Array<{ message: unknown; level: string; annotations: Record<string, unknown> }> = []
    const capture = Logger.make(({ annotations, logLevel, message }) =>
      void got.push({ message, level: logLevel.label, annotations: Object.fromEntries(HashMap.toEntries(annotations)) }))
    try {
      await Effect.runPromise(
        Effect.flatMap(DaemonLog, (log) => log.event("SPAWNED", "alpha started", { agent: "alpha", trigger: "t1", traceId: "T", pid: 42, attempt: 1 })).pipe(
          Effect.provide(DaemonLog.layer({ echo: false }).pipe(Layer.provide(DaemonConfig.layerSettings(root)))),
          Effect.provide(withLogger ? Logger.replace(Logger.defaultLogger, capture) : Logger.remove(Logger.defaultLogger))
        )
      )
      return { got, file: fs.readFileSync(projectPaths(root).daemonLog, "utf8") }
    } finally {
      fs.rmSync(root, { recursive: true, force: true })
    }
  }

  it("hands each event to Effect's loggers, with its context as annotations (an embedding program's own logger)", async () => {
    const { got, file } = await logOnce(true)
    expect(got).toEqual([{
      message: ["alpha started"],
      level: "INFO",
      annotations: { event: "SPAWNED", agent: "alpha", trigger: "t1", trace_id: "T", pid: 42, attempt: 1 }
    }])
    expect(file).toMatch(/\] \[T\] SPAWNED: alpha started\n$/)
  })

  it("still writes the file when Effect has no logger at all (the starforge command removes them)", async () => {
    const { file } = await logOnce(false)
    expect(file).toMatch(/\] \[T\] SPAWNED: alpha started\n$/)
  })
})
