/**
 * Colour only for a person at a terminal. @effect/cli renders help, usage errors and suggestions
 * with ANSI styles whatever the output is; `plainConsole` removes them from what goes to a stream
 * that is not a terminal, and from everything when `NO_COLOR` is set (any non-empty value, see
 * https://no-color.org). Screen control written straight to the terminal (`status --watch`) is
 * not colour and does not go through the Console.
 */
import { Console } from "effect"

/** CSI escape sequences (`ESC [ … final byte`): colours, bold, underline, cursor movement. */
const ESCAPES = /\x1b\[[0-?]*[ -/]*[@-~]/g

export const stripAnsi = (text: string): string => text.replace(ESCAPES, "")

/** Whether text written to `stream` may keep its colours. */
export const colourFor = (
  stream: { readonly isTTY?: boolean },
  env: Readonly<Record<string, string | undefined>> = process.env
): boolean => stream.isTTY === true && (env["NO_COLOR"] ?? "") === ""

const strip = (args: ReadonlyArray<unknown>): Array<unknown> => args.map((a) => (typeof a === "string" ? stripAnsi(a) : a))

/**
 * `base` with the escapes removed from `log`/`info`/`debug` (stdout) unless `stdout` is true,
 * and from `error`/`warn`/`trace` (stderr) unless `stderr` is true.
 */
export const plainConsole = (
  base: Console.Console,
  colour: { readonly stdout: boolean; readonly stderr: boolean }
): Console.Console => {
  const out = colour.stdout ? undefined : strip
  const err = colour.stderr ? undefined : strip
  return {
    ...base,
    log: (...args) => base.log(...(out?.(args) ?? args)),
    info: (...args) => base.info(...(out?.(args) ?? args)),
    debug: (...args) => base.debug(...(out?.(args) ?? args)),
    error: (...args) => base.error(...(err?.(args) ?? args)),
    warn: (...args) => base.warn(...(err?.(args) ?? args)),
    trace: (...args) => base.trace(...(err?.(args) ?? args))
  }
}

/** The Console for this process's stdout and stderr. */
export const terminalConsole = (base: Console.Console): Console.Console =>
  plainConsole(base, { stdout: colourFor(process.stdout), stderr: colourFor(process.stderr) })
