/**
 * The real processes a test starts, seen through `/proc` (the tests' own view, apart from the
 * platform layers under test), and cleaned up: every pid a test records is SIGKILLed with its
 * group after the test, which fails if any of them survived.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach } from "@effect/vitest"
import { Effect } from "effect"

/** Fields after the command name of `/proc/<pid>/stat`; index 0 is field 3 (state). */
export const statFields = (pid: number): Array<string> | undefined => {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return text.slice(text.lastIndexOf(")") + 2).trim().split(" ")
  } catch {
    return undefined
  }
}

/** Live means present and not a zombie (a zombie holds nothing and may linger unreaped). */
export const isAlive = (pid: number): boolean => {
  const state = statFields(pid)?.[0]
  return state !== undefined && state !== "Z" && state !== "X"
}

export const allPids = (): Array<number> => fs.readdirSync("/proc").filter((e) => /^\d+$/.test(e)).map(Number)

/** Live processes whose process group is `pgid`. */
export const groupMembers = (pgid: number): Array<number> =>
  allPids().filter((pid) => isAlive(pid) && Number(statFields(pid)?.[2]) === pgid)

const killQuietly = (target: number) => {
  try {
    process.kill(target, "SIGKILL")
  } catch {
    // Already gone.
  }
}

/**
 * Registers the clean-up after each test of the file: `track` records a pid (a group leader),
 * `tempDir` makes a directory removed afterwards.
 */
export const useProcessCleanup = (prefix: string) => {
  const started = new Set<number>()
  const dirs: Array<string> = []
  afterEach(async () => {
    const pids = Array.from(started)
    started.clear()
    for (const pid of pids) {
      killQuietly(-pid)
      killQuietly(pid)
    }
    const survivors = () => pids.filter((pid) => isAlive(pid) || groupMembers(pid).length > 0)
    const deadline = Date.now() + 5_000
    while (survivors().length > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25))
    for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
    const left = survivors()
    if (left.length > 0) throw new Error(`processes survived the test: ${left.join(", ")}`)
  })
  return {
    /** The pids recorded during the current test. */
    started,
    track: (pid: number) => void started.add(pid),
    tempDir: () => {
      const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), prefix)))
      dirs.push(dir)
      return dir
    }
  }
}

/** Polls a condition on the real clock; dies after the deadline. */
export const waitUntil = (what: string, condition: (() => boolean) | Effect.Effect<boolean>, timeoutMs = 5_000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    const holds = () => (Effect.isEffect(condition) ? condition : Effect.sync(condition))
    while (!(yield* holds())) {
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`))
      yield* Effect.sleep("20 millis")
    }
  })

/** Fails the test instead of hanging it when `effect` takes longer than `ms`. */
export const within = (ms: number, what: string) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.timeoutFail(effect, { duration: ms, onTimeout: () => new Error(`${what} took more than ${ms} ms`) })
