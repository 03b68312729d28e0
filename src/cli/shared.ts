/** What every command shares: `--project`, `--json`, output, and how errors end a command. */
import * as fs from "node:fs"
import { Options } from "@effect/cli"
import { Console, Data, Effect } from "effect"
import { UsageError } from "../domain/errors.js"
import { projectPaths, type ProjectPaths } from "../domain/ProjectPaths.js"

export const projectOption = Options.text("project").pipe(
  Options.withDefault("."),
  Options.withDescription("The project root P (the daemon uses P/.claude). Default: the current directory.")
)

export const jsonOption = Options.boolean("json").pipe(Options.withDescription("Print JSON instead of text."))

/** Ends a command with an exit code and nothing more to say (e.g. `status` when not running). */
export class ExitWith extends Data.TaggedError("ExitWith")<{ readonly code: number }> {}

/** The project's paths; the directory must exist. */
export const resolveProject = (project: string): Effect.Effect<ProjectPaths, UsageError> => {
  const paths = projectPaths(project)
  return fs.statSync(paths.root, { throwIfNoEntry: false })?.isDirectory()
    ? Effect.succeed(paths)
    : Effect.fail(new UsageError({ message: `Project directory ${paths.root} does not exist: pass an existing directory to --project` }))
}

export const printJson = (value: unknown) => Console.log(JSON.stringify(value, null, 2))

/** Left-aligned columns. */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()
  return [line(header), ...rows.map(line)].join("\n")
}

/** Counts `*.trigger` entries of a directory (0 when it does not exist). */
export const countTriggers = (dir: string, suffix = ".trigger"): number => countBySuffix(dir, [suffix])[0]!

/** How many names in `dir` end with each of `suffixes`, in one read of the directory (0s when it cannot be read). */
export const countBySuffix = (dir: string, suffixes: ReadonlyArray<string>): Array<number> => {
  const counts = suffixes.map(() => 0)
  try {
    for (const name of fs.readdirSync(dir)) {
      const i = suffixes.findIndex((suffix) => name.endsWith(suffix))
      if (i >= 0) counts[i]!++
    }
  } catch {
    // No directory: nothing of either kind.
  }
  return counts
}

/** The last `n` lines of a text file. */
export const tailLines = (file: string, n: number): ReadonlyArray<string> => {
  try {
    const size = fs.statSync(file).size
    const fd = fs.openSync(file, "r")
    try {
      const length = Math.min(size, 64 * 1024)
      const buffer = Buffer.alloc(length)
      fs.readSync(fd, buffer, 0, length, size - length)
      return buffer.toString("utf8").split("\n").filter((l) => l !== "").slice(-n)
    } finally {
      fs.closeSync(fd)
    }
  } catch {
    return []
  }
}
