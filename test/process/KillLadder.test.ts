/**
 * The kill ladder: over a fake target under the TestClock, and over real processes (orphans left
 * by an earlier daemon) on both platform layers (`/proc` and `ps`).
 *
 * Every process a test starts is recorded and SIGKILLed (with its group) in `afterEach`, which
 * then waits until they are gone, so a failing test leaves nothing behind.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Option, Ref, TestClock } from "effect"
import { ProcessTable } from "../../src/platform/ProcessTable.js"
import * as Linux from "../../src/platform/linux.js"
import * as Posix from "../../src/platform/posix.js"
import { ladder, type StopSignal, stopOrphan, stopProcess, type Target } from "../../src/process/KillLadder.js"
import { groupMembers, isAlive, useProcessCleanup, waitUntil } from "../support/processes.js"

const GRACE_MS = 1_000

// ---------------------------------------------------------------------------------------------
// Bookkeeping
// ---------------------------------------------------------------------------------------------

const { started: startedPids } = useProcessCleanup("starforge-ladder-")

/**
 * Starts a detached `sh -c script` of our own (its own group, like an agent), recorded for
 * clean-up; its start time as the process table has it.
 */
const startDetached = (script: string) =>
  Effect.gen(function*() {
    const child: ChildProcess = spawn("sh", ["-c", script], { detached: true, stdio: "ignore" })
    const pid = child.pid
    if (pid === undefined) return yield* Effect.die(new Error("could not start sh"))
    startedPids.add(pid)
    child.unref()
    const table = yield* ProcessTable
    let startTime: string | undefined
    const deadline = Date.now() + 5_000
    while ((startTime = yield* table.startTimeOf(pid)) === undefined) {
      if (Date.now() > deadline) return yield* Effect.die(new Error(`process ${pid} never showed in the table`))
      yield* Effect.sleep("20 millis")
    }
    return { child, pid, startTime }
  })

// ---------------------------------------------------------------------------------------------
// The ladder over a fake target (no processes, TestClock)
// ---------------------------------------------------------------------------------------------

/** A target that goes on the signals in `diesOn`; `answers: false` means nothing receives signals. */
const fakeTarget = (options: { readonly diesOn: ReadonlyArray<StopSignal>; readonly goneAtFirst?: boolean; readonly answers?: boolean }) =>
  Effect.gen(function*() {
    const gone = yield* Ref.make(options.goneAtFirst ?? false)
    const sent = yield* Ref.make<ReadonlyArray<StopSignal>>([])
    const target: Target = {
      signal: (signal) =>
        Effect.gen(function*() {
          yield* Ref.update(sent, (all) => [...all, signal])
          if (options.answers === false) return false
          if (options.diesOn.includes(signal)) yield* Ref.set(gone, true)
          return true
        }),
      gone: Ref.get(gone)
    }
    return { target, sent: Ref.get(sent) }
  })

describe("ladder (fake target, TestClock)", () => {
  it.effect("a target that goes on SIGTERM gets nothing else: SIGTERM", () =>
    Effect.gen(function*() {
      const { target, sent } = yield* fakeTarget({ diesOn: ["SIGTERM"] })
      const fiber = yield* Effect.fork(ladder(target, `${GRACE_MS} millis`))
      // Seen gone at the first look after the signal (one poll), long before the grace.
      yield* TestClock.adjust("50 millis")
      expect(yield* Fiber.join(fiber)).toBe("SIGTERM")
      expect(yield* sent).toEqual(["SIGTERM"])
    }))

  it.effect("a target that ignores SIGTERM gets SIGKILL once the grace is over, not before", () =>
    Effect.gen(function*() {
      const { target, sent } = yield* fakeTarget({ diesOn: ["SIGKILL"] })
      const fiber = yield* Effect.fork(ladder(target, `${GRACE_MS} millis`))
      yield* TestClock.adjust(`${GRACE_MS - 1} millis`)
      expect(yield* sent).toEqual(["SIGTERM"])
      expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
      yield* TestClock.adjust("1 millis")
      expect(yield* sent).toEqual(["SIGTERM", "SIGKILL"])
      yield* TestClock.adjust("50 millis")
      expect(yield* Fiber.join(fiber)).toBe("SIGKILL")
      expect(yield* sent).toEqual(["SIGTERM", "SIGKILL"])
    }))

  it.effect("a target that survives SIGKILL too is given up after the kill wait: SIGKILL", () =>
    Effect.gen(function*() {
      const { target, sent } = yield* fakeTarget({ diesOn: [] })
      const fiber = yield* Effect.fork(ladder(target, `${GRACE_MS} millis`))
      yield* TestClock.adjust(`${GRACE_MS} millis`)
      yield* TestClock.adjust("2 seconds")
      expect(yield* Fiber.join(fiber)).toBe("SIGKILL")
      expect(yield* sent).toEqual(["SIGTERM", "SIGKILL"])
    }))

  it.effect("a target already gone is not signalled: undefined", () =>
    Effect.gen(function*() {
      const { target, sent } = yield* fakeTarget({ diesOn: ["SIGTERM"], goneAtFirst: true })
      expect(yield* ladder(target, `${GRACE_MS} millis`)).toBeUndefined()
      expect(yield* sent).toEqual([])
    }))

  it.effect("a target that nothing receives the SIGTERM of (gone in between): undefined, no SIGKILL", () =>
    Effect.gen(function*() {
      const { target, sent } = yield* fakeTarget({ diesOn: [], answers: false })
      expect(yield* ladder(target, `${GRACE_MS} millis`)).toBeUndefined()
      expect(yield* sent).toEqual(["SIGTERM"])
    }))

  it.effect("a grace of 0 goes to SIGKILL at once", () =>
    Effect.gen(function*() {
      const { target, sent } = yield* fakeTarget({ diesOn: ["SIGKILL"] })
      const fiber = yield* Effect.fork(ladder(target, 0))
      yield* TestClock.adjust("50 millis")
      expect(yield* Fiber.join(fiber)).toBe("SIGKILL")
      expect(yield* sent).toEqual(["SIGTERM", "SIGKILL"])
    }))
})

// ---------------------------------------------------------------------------------------------
// Real processes, on both platform layers
// ---------------------------------------------------------------------------------------------

const platforms = [["linux", Linux.layer], ["posix", Posix.layer]] as const

for (const [name, platform] of platforms) describe(`stopOrphan and stopProcess on real processes (${name} process table)`, { timeout: 15_000 }, () => {
  it.live("stopOrphan on a live process with its recorded start time stops it and its group", () =>
    Effect.gen(function*() {
      const { pid, startTime } = yield* startDetached("sleep 30 & wait")
      yield* waitUntil("the group to have its sleep", () => groupMembers(pid).length >= 2)
      const members = groupMembers(pid)
      members.forEach((p) => startedPids.add(p))
      const started = Date.now()
      expect(yield* stopOrphan(pid, startTime, `${GRACE_MS} millis`)).toBe("stopped")
      // SIGTERM did it: no wait for the grace.
      expect(Date.now() - started).toBeLessThan(GRACE_MS)
      expect(isAlive(pid)).toBe(false)
      for (const p of members) expect(isAlive(p)).toBe(false)
      expect(groupMembers(pid)).toEqual([])
    }).pipe(Effect.provide(platform)))

  it.live("stopOrphan on a group that ignores SIGTERM SIGKILLs it after the grace", () =>
    Effect.gen(function*() {
      const { pid, startTime } = yield* startDetached("trap '' TERM; sleep 30 & echo; wait")
      yield* waitUntil("the group to have its sleep", () => groupMembers(pid).length >= 2)
      const members = groupMembers(pid)
      members.forEach((p) => startedPids.add(p))
      const started = Date.now()
      expect(yield* stopOrphan(pid, startTime, `${GRACE_MS} millis`)).toBe("stopped")
      const elapsed = Date.now() - started
      expect(elapsed).toBeGreaterThanOrEqual(GRACE_MS - 50)
      expect(elapsed).toBeLessThan(GRACE_MS + 2_000)
      for (const p of members) expect(isAlive(p)).toBe(false)
      expect(groupMembers(pid)).toEqual([])
    }).pipe(Effect.provide(platform)))

  it.live("stopOrphan on a live process with a different start time leaves it alone", () =>
    Effect.gen(function*() {
      const { pid, startTime } = yield* startDetached("sleep 30")
      expect(yield* stopOrphan(pid, `not-${startTime}`, `${GRACE_MS} millis`)).toBe("different")
      expect(isAlive(pid)).toBe(true)
      // Without a recorded start time a pid cannot be verified, so it is never signalled either.
      expect(yield* stopOrphan(pid, null, `${GRACE_MS} millis`)).toBe("different")
      expect(isAlive(pid)).toBe(true)
      const table = yield* ProcessTable
      expect(yield* table.identify(pid, startTime)).toBe("same")
    }).pipe(Effect.provide(platform)))

  it.live("stopOrphan on a dead pid is gone", () =>
    Effect.gen(function*() {
      const { pid, startTime, child } = yield* startDetached("exec sleep 30")
      const exited = new Promise((resolve) => child.once("exit", resolve))
      process.kill(pid, "SIGKILL")
      yield* Effect.promise(() => exited)
      yield* waitUntil(`process ${pid} to die`, () => !isAlive(pid))
      expect(yield* stopOrphan(pid, startTime, `${GRACE_MS} millis`)).toBe("gone")
      // A pid above the kernel's maximum can never exist.
      expect(yield* stopOrphan(2 ** 22 + 12345, "1", `${GRACE_MS} millis`)).toBe("gone")
    }).pipe(Effect.provide(platform)))

  it.live("stopOrphan on a gone leader still stops what is left of its group", () =>
    Effect.gen(function*() {
      const { pid, startTime, child } = yield* startDetached("sleep 30 & echo; wait")
      yield* waitUntil("the group to have its sleep", () => groupMembers(pid).length >= 2)
      const rest = groupMembers(pid).filter((p) => p !== pid)
      rest.forEach((p) => startedPids.add(p))
      const exited = new Promise((resolve) => child.once("exit", resolve))
      process.kill(pid, "SIGKILL")
      yield* Effect.promise(() => exited)
      yield* waitUntil(`process ${pid} to die`, () => !isAlive(pid))
      expect(rest.every(isAlive)).toBe(true)
      expect(yield* stopOrphan(pid, startTime, `${GRACE_MS} millis`)).toBe("gone")
      for (const p of rest) expect(isAlive(p)).toBe(false)
      expect(groupMembers(pid)).toEqual([])
    }).pipe(Effect.provide(platform)))

  it.live("stopProcess stops the one process, not its group", () =>
    Effect.gen(function*() {
      const { pid } = yield* startDetached("sleep 30 & echo; wait")
      yield* waitUntil("the group to have its sleep", () => groupMembers(pid).length >= 2)
      const rest = groupMembers(pid).filter((p) => p !== pid)
      rest.forEach((p) => startedPids.add(p))
      expect(yield* stopProcess(pid, `${GRACE_MS} millis`)).toBe("SIGTERM")
      expect(isAlive(pid)).toBe(false)
      expect(rest.every(isAlive)).toBe(true)
      // Nothing left to stop: undefined.
      expect(yield* stopProcess(pid, `${GRACE_MS} millis`)).toBeUndefined()
    }).pipe(Effect.provide(platform)))
})
