/**
 * Splits a command line into words like a POSIX shell would (quotes and backslashes honoured),
 * without expanding or executing anything.
 */
import { Either } from "effect"

export const splitShellWords = (line: string): Either.Either<ReadonlyArray<string>, string> => {
  const words: Array<string> = []
  let word = ""
  let inWord = false
  let i = 0
  while (i < line.length) {
    const c = line[i]!
    if (c === "'") {
      const end = line.indexOf("'", i + 1)
      if (end < 0) return Either.left("it has an unterminated single quote")
      word += line.slice(i + 1, end)
      inWord = true
      i = end + 1
    } else if (c === '"') {
      i++
      let closed = false
      while (i < line.length) {
        const d = line[i]!
        if (d === '"') {
          closed = true
          i++
          break
        }
        if (d === "\\" && i + 1 < line.length && `"\\$\``.includes(line[i + 1]!)) {
          word += line[i + 1]
          i += 2
        } else {
          word += d
          i++
        }
      }
      if (!closed) return Either.left("it has an unterminated double quote")
      inWord = true
    } else if (c === "\\") {
      if (i + 1 < line.length) word += line[i + 1]
      inWord = true
      i += 2
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word)
      word = ""
      inWord = false
      i++
    } else {
      word += c
      inWord = true
      i++
    }
  }
  if (inWord) words.push(word)
  return Either.right(words)
}
