import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { splitShellWords } from "../../src/config/shellWords.js"

const words = (line: string): ReadonlyArray<string> => {
  const result = splitShellWords(line)
  if (Either.isLeft(result)) throw new Error(`expected words, got: ${result.left}`)
  return result.right
}

describe("splitShellWords", () => {
  it("plain words", () => {
    expect(words("claude --print --permission-mode bypassPermissions")).toEqual([
      "claude",
      "--print",
      "--permission-mode",
      "bypassPermissions"
    ])
  })

  it("the default agent command", () => {
    expect(words("claude --print --permission-mode bypassPermissions --output-format stream-json --verbose")).toEqual([
      "claude",
      "--print",
      "--permission-mode",
      "bypassPermissions",
      "--output-format",
      "stream-json",
      "--verbose"
    ])
  })

  it("collapses runs of whitespace, tabs and newlines", () => {
    expect(words("  a \t\t b\n c  ")).toEqual(["a", "b", "c"])
  })

  it("empty and blank strings give no words", () => {
    expect(words("")).toEqual([])
    expect(words("   \t\n ")).toEqual([])
  })

  it("single quotes keep spaces and everything else literally", () => {
    expect(words(`echo 'a b' 'c\\d' '$(id)' '"x"'`)).toEqual(["echo", "a b", "c\\d", "$(id)", '"x"'])
  })

  it("double quotes keep spaces", () => {
    expect(words(`node "my script.js" "--flag=a b"`)).toEqual(["node", "my script.js", "--flag=a b"])
  })

  it("backslash escapes inside double quotes apply only to \" \\ $ `", () => {
    expect(words(`"a\\"b" "c\\\\d" "e\\$f" "g\\\`h" "i\\nj"`)).toEqual(['a"b', "c\\d", "e$f", "g`h", "i\\nj"])
  })

  it("backslash escapes outside quotes", () => {
    expect(words(`a\\ b c\\"d e\\'f g\\\\h`)).toEqual(["a b", 'c"d', "e'f", "g\\h"])
  })

  it("adjacent quoted and unquoted parts form one word", () => {
    expect(words(`--opt='a b'"c d"e`)).toEqual(["--opt=a bc de"])
    expect(words(`a"b"'c'd`)).toEqual(["abcd"])
  })

  it("empty quotes make an empty word", () => {
    expect(words(`cmd '' ""`)).toEqual(["cmd", "", ""])
  })

  it("nothing is expanded or executed", () => {
    expect(words("$(touch pwned) `touch pwned` $HOME ~ * ; && | > <")).toEqual([
      "$(touch",
      "pwned)",
      "`touch",
      "pwned`",
      "$HOME",
      "~",
      "*",
      ";",
      "&&",
      "|",
      ">",
      "<"
    ])
  })

  it("commas are not separators", () => {
    expect(words("claude --allowed-tools Read,Write,Edit")).toEqual(["claude", "--allowed-tools", "Read,Write,Edit"])
  })

  it("non-ASCII text", () => {
    expect(words(`agent "héllo 世界" 🚀`)).toEqual(["agent", "héllo 世界", "🚀"])
  })

  it("an unterminated single quote is an error", () => {
    const result = splitShellWords("claude 'oops")
    expect(Either.isLeft(result)).toBe(true)
    if (Either.isLeft(result)) expect(result.left).toMatch(/single quote/)
  })

  it("an unterminated double quote is an error", () => {
    const result = splitShellWords(`claude "oops`)
    expect(Either.isLeft(result)).toBe(true)
    if (Either.isLeft(result)) expect(result.left).toMatch(/double quote/)
  })

  it("an escaped closing double quote leaves the quote unterminated", () => {
    expect(Either.isLeft(splitShellWords(`"abc\\"`))).toBe(true)
  })

  it("a lone quote character is an error", () => {
    expect(Either.isLeft(splitShellWords(`'`))).toBe(true)
    expect(Either.isLeft(splitShellWords(`"`))).toBe(true)
  })

  it("an escaped quote outside quotes is not an unterminated quote", () => {
    expect(words(`it\\'s`)).toEqual(["it's"])
  })
})
