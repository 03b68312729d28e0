/**
 * `KEY=VALUE` files (`.env`, `daemon.conf`): comments, blank lines, optional quotes, optional
 * `export`. Parsed, never executed: `$(…)`, backticks and `$VAR` stay literal text.
 */

export interface EnvFile {
  readonly values: ReadonlyMap<string, string>
  /** One line per ignored line: `<file> line N ignored: <why>`. */
  readonly warnings: ReadonlyArray<string>
}

const KEY = /^[A-Za-z_][A-Za-z0-9_]*$/

export const parseEnvFile = (text: string, label: string): EnvFile => {
  const values = new Map<string, string>()
  const warnings: Array<string> = []
  const lines = text.split(/\r?\n/)
  lines.forEach((raw, index) => {
    const line = raw.trim()
    if (line === "" || line.startsWith("#")) return
    const body = line.startsWith("export ") ? line.slice(7).trimStart() : line
    const eq = body.indexOf("=")
    const key = eq > 0 ? body.slice(0, eq).trim() : ""
    if (eq <= 0 || !KEY.test(key)) {
      warnings.push(`${label} line ${index + 1} ignored: expected KEY=VALUE`)
      return
    }
    const value = parseValue(body.slice(eq + 1).trim())
    if (value === undefined) {
      warnings.push(`${label} line ${index + 1} ignored: unterminated quote in the value of ${key}`)
      return
    }
    values.set(key, value)
  })
  return { values, warnings }
}

function parseValue(rest: string): string | undefined {
  const quote = rest[0]
  if (quote === `'`) {
    const end = rest.indexOf(quote, 1)
    return end < 0 ? undefined : rest.slice(1, end)
  }
  if (quote === `"`) {
    let value = ""
    for (let i = 1; i < rest.length; i++) {
      const c = rest[i]!
      if (c === `"`) return value
      if (c === "\\" && i + 1 < rest.length) {
        const next = rest[++i]!
        value += next === "n" ? "\n" : next === `"` || next === "\\" ? next : "\\" + next
      } else value += c
    }
    return undefined
  }
  // An unquoted value ends at an inline comment (` #`), like in shells and dotenv.
  const comment = rest.search(/\s#/)
  return (comment >= 0 ? rest.slice(0, comment) : rest).trim()
}
