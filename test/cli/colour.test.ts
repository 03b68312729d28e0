import { Console, Effect } from "effect"
import { describe, expect, it } from "vitest"
import { colourFor, plainConsole, stripAnsi } from "../../src/cli/colour.js"

const BOLD = "\x1b[0;1mUSAGE\x1b[0m"

describe("colour", () => {
  it("stripAnsi removes colour and other CSI sequences, nothing else", () => {
    expect(stripAnsi(BOLD)).toBe("USAGE")
    expect(stripAnsi("\x1b[0;37;1ma\x1b[31mb\x1b[Kc\x1b[?25l")).toBe("abc")
    expect(stripAnsi("plain [text] 50%")).toBe("plain [text] 50%")
  })

  it("colour only for a terminal without NO_COLOR (any non-empty value)", () => {
    expect(colourFor({ isTTY: true }, {})).toBe(true)
    expect(colourFor({ isTTY: true }, { NO_COLOR: "" })).toBe(true)
    expect(colourFor({ isTTY: true }, { NO_COLOR: "1" })).toBe(false)
    expect(colourFor({ isTTY: true }, { NO_COLOR: "0" })).toBe(false)
    expect(colourFor({}, {})).toBe(false)
    expect(colourFor({ isTTY: false }, {})).toBe(false)
  })

  it("plainConsole strips the stdout methods and the stderr methods independently", () => {
    const seen: Array<[string, ReadonlyArray<unknown>]> = []
    const record = (name: string) => (...args: ReadonlyArray<unknown>) => Effect.sync(() => void seen.push([name, args]))
    const base = Effect.runSync(Console.consoleWith(Effect.succeed))
    const fake: Console.Console = { ...base, log: record("log"), info: record("info"), error: record("error"), warn: record("warn") }
    const run = (c: Console.Console) =>
      Effect.runSync(Effect.all([Console.log(BOLD, 1), Console.info(BOLD), Console.error(BOLD), Console.warn(BOLD)]).pipe(Effect.withConsole(c)))
    run(plainConsole(fake, { stdout: false, stderr: true }))
    expect(seen.splice(0)).toEqual([["log", ["USAGE", 1]], ["info", ["USAGE"]], ["error", [BOLD]], ["warn", [BOLD]]])
    run(plainConsole(fake, { stdout: true, stderr: false }))
    expect(seen.splice(0)).toEqual([["log", [BOLD, 1]], ["info", [BOLD]], ["error", ["USAGE"]], ["warn", ["USAGE"]]])
  })
})
