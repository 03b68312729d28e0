/**
 * Checks shared by the reliability tests of bad input: where an invalid trigger ended up, its
 * one-line reason, and that the daemon went on.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { expect } from "vitest"
import { archivedTriggers, invalidEntries } from "./daemonHelpers.js"
import { daemonLog, type TestProject, waitFor } from "./project.js"

const ARCHIVED = /^\d{8}-\d{6}-/

/** The path of `processed/invalid/<stamp>-<name>.trigger`, or undefined while it is not there. */
export const invalidArchive = (p: TestProject, name: string): string | undefined => {
  const found = invalidEntries(p).find((n) => n.endsWith(`-${name}.trigger`) && n.replace(ARCHIVED, "") === `${name}.trigger`)
  return found === undefined ? undefined : path.join(p.triggers, "processed", "invalid", found)
}

/** The path of `processed/<stamp>-<name>.trigger` (a success), or undefined. */
export const doneArchive = (p: TestProject, name: string): string | undefined => {
  const found = archivedTriggers(p).find((n) => n.replace(ARCHIVED, "") === `${name}.trigger`)
  return found === undefined ? undefined : path.join(p.triggers, "processed", found)
}

/**
 * The reason of an invalid trigger, checked to be one specific line: it matches `expected`, is
 * short, and is the reason the daemon log gives in its `INVALID` line for the same file (named
 * `original` there when the archive shortened it).
 */
export const expectReason = (p: TestProject, name: string, expected: RegExp, original = name): string => {
  const archived = invalidArchive(p, name)
  expect(archived, `${JSON.stringify(name)} in processed/invalid/`).toBeDefined()
  const text = fs.readFileSync(`${archived}.reason.txt`, "utf8")
  expect(text, `the reason of ${JSON.stringify(name)} is one line`).toMatch(/^[^\n]+\n$/)
  const reason = text.trimEnd()
  expect(reason, `the reason of ${JSON.stringify(name)}`).toMatch(expected)
  expect(reason.length, `the reason of ${JSON.stringify(name)} is short: ${reason}`).toBeLessThan(400)
  const logged = daemonLog(p).split("\n").some((l) => l.includes(` INVALID: ${original.replace(/\r?\n/g, " ")}.trigger: ${reason} (moved to `))
  expect(logged, `daemon.log has the INVALID line of ${JSON.stringify(name)}`).toBe(true)
  return reason
}

/**
 * Waits until every name in `done` is archived as a success and every name in `invalid` as
 * invalid; on timeout, says which are missing and where they are.
 */
export const waitForOutcomes = async (
  p: TestProject,
  expected: { readonly done?: ReadonlyArray<string>; readonly invalid?: ReadonlyArray<string> },
  timeoutMs = 30_000
) => {
  const missing = () => [
    ...(expected.done ?? []).filter((n) => doneArchive(p, n) === undefined).map((n) => `done ${JSON.stringify(n)}`),
    ...(expected.invalid ?? []).filter((n) => invalidArchive(p, n) === undefined).map((n) => `invalid ${JSON.stringify(n)}`)
  ]
  try {
    await waitFor(() => missing().length === 0, { timeoutMs, what: "the outcomes" })
  } catch {
    const log = daemonLog(p).split("\n").slice(-30).join("\n")
    throw new Error(`timed out waiting for: ${missing().join(", ")}\nqueue: ${JSON.stringify(fs.readdirSync(p.triggers))}\ndaemon.log (end):\n${log}`)
  }
}
