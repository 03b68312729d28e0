import { describe, expect, it } from "vitest"
import { formatLine } from "../../src/daemon/DaemonLog.js"

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
