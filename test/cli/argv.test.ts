import { describe, expect, it } from "vitest"
import { helpFirst } from "../../src/cli/argv.js"

const argv = (...args: Array<string>) => ["node", "starforge", ...args]

describe("helpFirst", () => {
  it("leaves argv without --help alone", () => {
    expect(helpFirst(argv("daemon", "status", "--json"))).toEqual(argv("daemon", "status", "--json"))
  })
  it("leaves --help right after the command words alone", () => {
    expect(helpFirst(argv("daemon", "status", "--help"))).toEqual(argv("daemon", "status", "--help"))
    expect(helpFirst(argv("--help"))).toEqual(argv("--help"))
  })
  it("moves a later --help or -h right after the command words", () => {
    expect(helpFirst(argv("daemon", "status", "--json", "--help"))).toEqual(argv("daemon", "status", "--help"))
    expect(helpFirst(argv("trigger", "create", "--to", "a", "-h"))).toEqual(argv("trigger", "create", "--help"))
    expect(helpFirst(argv("daemon", "stop", "--project", "/p", "--help"))).toEqual(argv("daemon", "stop", "--help"))
    expect(helpFirst(argv("daemon", "logs", "junior-dev-a", "--help"))).toEqual(argv("daemon", "logs", "--help"))
    expect(helpFirst(argv("dlq", "--json", "--help"))).toEqual(argv("dlq", "--help"))
  })
  it("keeps --opt=--help as a value", () => {
    expect(helpFirst(argv("trigger", "create", "--message=--help"))).toEqual(argv("trigger", "create", "--message=--help"))
  })
})
