import { describe, expect, it } from "@effect/vitest"
import { parseEnvFile } from "../../src/config/envFile.js"

const parse = (text: string) => parseEnvFile(text, ".env")
const valuesOf = (text: string) => Object.fromEntries(parse(text).values)

describe("parseEnvFile", () => {
  it("reads KEY=VALUE lines", () => {
    const result = parse("A=1\nB=two\nC_3=x y z\n")
    expect(Object.fromEntries(result.values)).toEqual({ A: "1", B: "two", C_3: "x y z" })
    expect(result.warnings).toEqual([])
  })

  it("an empty file has no values and no warnings", () => {
    expect(parse("").values.size).toBe(0)
    expect(parse("").warnings).toEqual([])
  })

  it("skips comments and blank lines without warnings", () => {
    const result = parse("# a comment\n\n   \n\t\n  # indented comment\nA=1\n#B=2\n")
    expect(Object.fromEntries(result.values)).toEqual({ A: "1" })
    expect(result.warnings).toEqual([])
  })

  it("accepts CRLF line endings", () => {
    expect(valuesOf("A=1\r\nB=2\r\n")).toEqual({ A: "1", B: "2" })
  })

  it("strips an export prefix", () => {
    expect(valuesOf("export A=1\nexport   B='two'\n  export C=\"three\"")).toEqual({ A: "1", B: "two", C: "three" })
  })

  it("a variable named like export is still a variable", () => {
    expect(valuesOf("export=1\nexporter=2")).toEqual({ export: "1", exporter: "2" })
  })

  it("trims spaces around the key, the equals sign and the value", () => {
    expect(valuesOf("  A =  1  \nB= two words ")).toEqual({ A: "1", B: "two words" })
  })

  it("an empty value", () => {
    expect(valuesOf("A=\nB=''\nC=\"\"")).toEqual({ A: "", B: "", C: "" })
  })

  it("only the first '=' separates key and value", () => {
    expect(valuesOf("A=b=c==d")).toEqual({ A: "b=c==d" })
  })

  it("single quotes keep everything literally", () => {
    expect(valuesOf(`A='claude --print "x y"'\nB='a # not a comment'\nC='\\n stays'`)).toEqual({
      A: 'claude --print "x y"',
      B: "a # not a comment",
      C: "\\n stays"
    })
  })

  it("double quotes", () => {
    expect(valuesOf(`A="hello world"\nB="it's"\nC="a # not a comment"`)).toEqual({
      A: "hello world",
      B: "it's",
      C: "a # not a comment"
    })
  })

  it("\\n in double quotes is a newline", () => {
    expect(valuesOf(`A="line1\\nline2"`)).toEqual({ A: "line1\nline2" })
  })

  it("ignores what follows the closing quote", () => {
    expect(valuesOf(`A="quoted" # comment\nB='single' # comment`)).toEqual({ A: "quoted", B: "single" })
  })

  it("strips inline comments from unquoted values", () => {
    expect(valuesOf("A=1 # one\nB=two\t# two\nC=x   #y")).toEqual({ A: "1", B: "two", C: "x" })
  })

  it("a '#' without a space before it is part of the value", () => {
    expect(valuesOf("A=abc#def\nB=http://host/#frag")).toEqual({ A: "abc#def", B: "http://host/#frag" })
  })

  it("the last assignment of a key wins", () => {
    expect(valuesOf("A=1\nA=2")).toEqual({ A: "2" })
  })

  it("keeps command substitution, backticks and variables literally", () => {
    const result = parse(
      [
        "AGENT_COMMAND=$(touch pwned)",
        "B=`touch pwned`",
        'C="$(touch pwned) `id`"',
        "D='$(id)'",
        "E=$HOME/${USER}",
        "F=a; rm -rf /",
        "G=a && b | c > d"
      ].join("\n")
    )
    expect(Object.fromEntries(result.values)).toEqual({
      AGENT_COMMAND: "$(touch pwned)",
      B: "`touch pwned`",
      C: "$(touch pwned) `id`",
      D: "$(id)",
      E: "$HOME/${USER}",
      F: "a; rm -rf /",
      G: "a && b | c > d"
    })
    expect(result.warnings).toEqual([])
  })

  it("garbage lines give a warning naming the file and the line number", () => {
    const result = parse("A=1\nthis is garbage\n\n=novalue\n1BAD=x\nBAD-KEY=x\nB=2\nexport\n")
    expect(Object.fromEntries(result.values)).toEqual({ A: "1", B: "2" })
    expect(result.warnings).toHaveLength(5)
    expect(result.warnings[0]).toMatch(/^\.env line 2 ignored/)
    expect(result.warnings[1]).toMatch(/^\.env line 4 ignored/)
    expect(result.warnings[2]).toMatch(/^\.env line 5 ignored/)
    expect(result.warnings[3]).toMatch(/^\.env line 6 ignored/)
    expect(result.warnings[4]).toMatch(/^\.env line 8 ignored/)
    for (const warning of result.warnings) expect(warning).not.toContain("\n")
  })

  it("counts lines with CRLF endings and comments", () => {
    const result = parse("# c\r\n\r\nA=1\r\ngarbage\r\n")
    expect(result.warnings).toEqual([expect.stringMatching(/line 4 ignored/)])
  })

  it("uses the label it is given", () => {
    const result = parseEnvFile("oops\n", ".claude/config/daemon.conf")
    expect(result.warnings).toEqual([expect.stringMatching(/^\.claude\/config\/daemon\.conf line 1 ignored/)])
  })

  it("an unterminated quote gives a warning naming the line and the key", () => {
    const result = parse(`A=1\nB="never closed\nC='also never\nD=4`)
    expect(Object.fromEntries(result.values)).toEqual({ A: "1", D: "4" })
    expect(result.warnings).toHaveLength(2)
    expect(result.warnings[0]).toMatch(/line 2 ignored/)
    expect(result.warnings[0]).toMatch(/unterminated quote/)
    expect(result.warnings[0]).toContain("B")
    expect(result.warnings[1]).toMatch(/line 3 ignored/)
    expect(result.warnings[1]).toContain("C")
  })

  it("a quote does not span lines", () => {
    const result = parse(`A="first\nsecond"\nB=ok`)
    expect(result.values.has("A")).toBe(false)
    expect(result.values.get("B")).toBe("ok")
    expect(result.warnings[0]).toMatch(/line 1 ignored/)
  })

  it("a quote inside an unquoted value is literal", () => {
    expect(valuesOf(`A=it's\nB=say "hi"`)).toEqual({ A: "it's", B: 'say "hi"' })
  })

  it("a double quote inside single quotes and vice versa", () => {
    expect(valuesOf(`A='say "hi"'\nB="it's"`)).toEqual({ A: 'say "hi"', B: "it's" })
  })

  // Bug: the closing double quote is the first '"' after the opening one, even when escaped,
  // so `\"` inside double quotes truncates the value (the unescaping of `\"` can never apply).
  it("an escaped double quote inside double quotes", () => {
    expect(valuesOf(`A="say \\"hi\\" now"`)).toEqual({ A: 'say "hi" now' })
  })
})
