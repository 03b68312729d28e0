/**
 * `C/daemon-state.json` (contract §6): the service with a recording save function under the
 * TestClock, then the file layer on a real temporary project.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Scope, TestClock } from "effect"
import { DaemonConfig } from "../../src/config/DaemonConfig.js"
import { type ProjectPaths, projectPaths } from "../../src/domain/ProjectPaths.js"
import { DaemonState, loadState, make, type StateFile } from "../../src/state/DaemonState.js"

const T0 = Date.UTC(2025, 9, 25, 5, 0, 0)

const tempProject = Effect.acquireRelease(
  Effect.sync(() => projectPaths(fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "starforge-state-"))))),
  (paths) => Effect.sync(() => fs.rmSync(paths.root, { recursive: true, force: true }))
)

const readState = (paths: ProjectPaths): StateFile => JSON.parse(fs.readFileSync(paths.stateFile, "utf8")) as StateFile

/** Builds the file layer in its own scope, so a test can stop and start "the daemon". */
const openState = (paths: ProjectPaths) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(
      DaemonState.layer.pipe(Layer.provide(DaemonConfig.layerSettings(paths.root, {}))),
      scope
    )
    return { state: Context.get(context, DaemonState), close: Scope.close(scope, Exit.void) }
  })

describe("DaemonState.make", { timeout: 15_000 }, () => {
  it.scoped("starts with the contract's fields and saves them at once", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const saves: Array<StateFile> = []
      const state = yield* make(5, (s) => Effect.sync(() => void saves.push(s)))
      const expected: StateFile = {
        daemon_started: "2025-10-25T05:00:00Z",
        last_trigger_processed: null,
        total_triggers_processed: 5,
        current_trigger: "none"
      }
      expect(yield* state.current).toEqual(expected)
      expect(saves).toEqual([expected])
    }))

  it.scoped("tracks the current trigger, the last processed time and the total of successes", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const saves: Array<StateFile> = []
      const state = yield* make(0, (s) => Effect.sync(() => void saves.push(s)))

      yield* state.started("a-1.trigger")
      expect((yield* state.current).current_trigger).toBe("a-1.trigger")
      yield* TestClock.adjust("1 second")
      yield* state.started("b-1.trigger")
      expect((yield* state.current).current_trigger).toBe("b-1.trigger")

      // The most recent start still running stays current.
      yield* TestClock.adjust("1 second")
      yield* state.finished("b-1.trigger", true)
      expect(yield* state.current).toEqual({
        daemon_started: "2025-10-25T05:00:00Z",
        last_trigger_processed: "2025-10-25T05:00:02Z",
        total_triggers_processed: 1,
        current_trigger: "a-1.trigger"
      })

      // A failure is processed but not counted.
      yield* TestClock.adjust("3 seconds")
      yield* state.finished("a-1.trigger", false)
      expect(yield* state.current).toEqual({
        daemon_started: "2025-10-25T05:00:00Z",
        last_trigger_processed: "2025-10-25T05:00:05Z",
        total_triggers_processed: 1,
        current_trigger: "none"
      })
      // Written behind the changes: once flushed, the latest state is the last saved.
      yield* state.persist
      expect(saves[saves.length - 1]).toEqual(yield* state.current)
    }))

  it.effect("closing the scope saves current_trigger none", () =>
    Effect.gen(function*() {
      const saves: Array<StateFile> = []
      const scope = yield* Scope.make()
      const state = yield* make(2, (s) => Effect.sync(() => void saves.push(s))).pipe(Scope.extend(scope))
      yield* state.started("x.trigger")
      yield* state.persist
      expect(saves[saves.length - 1]!.current_trigger).toBe("x.trigger")
      yield* Scope.close(scope, Exit.void)
      expect(saves[saves.length - 1]).toMatchObject({ current_trigger: "none", total_triggers_processed: 2 })
    }))
})

describe("loadState", { timeout: 15_000 }, () => {
  it.scoped("reads the total of a previous state file; a missing or unusable one is rebuilt from processed/, a copy kept", () =>
    Effect.gen(function*() {
      const paths = yield* tempProject
      fs.mkdirSync(paths.processed, { recursive: true })
      const now = Date.UTC(2025, 9, 25, 5, 0, 0)
      const file = paths.stateFile
      expect(loadState(file, paths.processed, now)).toEqual({
        total: 0,
        note: "daemon-state.json was not found; total_triggers_processed rebuilt from processed/ (0)"
      })
      // Two successful triggers in the archive (and one invalid, which does not count).
      fs.writeFileSync(path.join(paths.processed, "20251025-040000-a.trigger"), "{}")
      fs.writeFileSync(path.join(paths.processed, "20251025-040001-b.trigger"), "{}")
      fs.mkdirSync(paths.invalid, { recursive: true })
      fs.writeFileSync(path.join(paths.invalid, "20251025-040002-c.trigger"), "{}")
      const valid = { daemon_started: "2025-10-25T04:00:00Z", last_trigger_processed: null, current_trigger: "none" }
      fs.writeFileSync(file, JSON.stringify({ ...valid, total_triggers_processed: 41 }))
      expect(loadState(file, paths.processed, now)).toEqual({ total: 41 })
      const cases: Array<[string, string]> = [
        [JSON.stringify({ ...valid, total_triggers_processed: -3 }), "valid JSON of the wrong shape"],
        [JSON.stringify({ ...valid, total_triggers_processed: 2.5 }), "valid JSON of the wrong shape"],
        [JSON.stringify({ ...valid, total_triggers_processed: "12" }), "valid JSON of the wrong shape"],
        [JSON.stringify({}), "valid JSON of the wrong shape"],
        ["null", "valid JSON of the wrong shape"],
        ["{ corrupt", "not valid JSON"],
        ["", "empty"]
      ]
      for (const [text, problem] of cases) {
        for (const n of fs.readdirSync(paths.claude)) if (n.includes(".corrupt-")) fs.rmSync(path.join(paths.claude, n))
        fs.writeFileSync(file, text)
        const loaded = loadState(file, paths.processed, now)
        expect(loaded.total, text).toBe(2)
        expect(loaded.note, text).toContain(`daemon-state.json was ${problem}`)
        expect(loaded.note, text).toContain("kept a copy as daemon-state.json.corrupt-20251025-050000")
        expect(loaded.note, text).toContain("total_triggers_processed rebuilt from processed/ (2)")
        expect(fs.readFileSync(path.join(paths.claude, "daemon-state.json.corrupt-20251025-050000"), "utf8"), text).toBe(text)
      }
    }))
})

describe("DaemonState.layer (the state file)", { timeout: 15_000 }, () => {
  it.scopedLive("writes the state file with the contract's fields", () =>
    Effect.gen(function*() {
      const paths = yield* tempProject
      const before = Date.now()
      const { state, close } = yield* openState(paths)
      const initial = readState(paths)
      expect(Object.keys(initial).sort()).toEqual([
        "current_trigger",
        "daemon_started",
        "last_trigger_processed",
        "total_triggers_processed"
      ])
      expect(initial.daemon_started).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/)
      expect(Date.parse(initial.daemon_started)).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000)
      expect(initial).toMatchObject({ last_trigger_processed: null, total_triggers_processed: 0, current_trigger: "none" })

      yield* state.started("dev-a-x.trigger")
      yield* state.persist
      expect(readState(paths).current_trigger).toBe("dev-a-x.trigger")
      yield* state.finished("dev-a-x.trigger", true)
      yield* state.persist
      const after = readState(paths)
      expect(after.total_triggers_processed).toBe(1)
      expect(after.current_trigger).toBe("none")
      expect(after.last_trigger_processed).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/)

      yield* state.started("dev-b-y.trigger")
      yield* close
      // At shutdown nothing runs.
      expect(readState(paths)).toMatchObject({ current_trigger: "none", total_triggers_processed: 1 })
      // Only the state file: no temporary file left next to it.
      expect(fs.readdirSync(paths.claude)).toEqual(["daemon-state.json"])
    }))

  it.scopedLive("the total is carried over to the next start through loadState", () =>
    Effect.gen(function*() {
      const paths = yield* tempProject
      const first = yield* openState(paths)
      yield* first.state.started("a.trigger")
      yield* first.state.finished("a.trigger", true)
      yield* first.state.started("b.trigger")
      yield* first.state.finished("b.trigger", true)
      yield* first.state.started("c.trigger")
      yield* first.state.finished("c.trigger", false)
      yield* first.close
      expect(readState(paths).total_triggers_processed).toBe(2)
      expect(loadState(paths.stateFile, paths.processed, Date.now())).toEqual({ total: 2 })

      const second = yield* openState(paths)
      expect(readState(paths)).toMatchObject({ total_triggers_processed: 2, last_trigger_processed: null, current_trigger: "none" })
      yield* second.state.started("d.trigger")
      yield* second.state.finished("d.trigger", true)
      yield* second.state.persist
      expect(readState(paths).total_triggers_processed).toBe(3)
      yield* second.close

      // A corrupt file starts again from the archive (empty here).
      fs.writeFileSync(paths.stateFile, "{ not json")
      const third = yield* openState(paths)
      expect(readState(paths).total_triggers_processed).toBe(0)
      expect(third.state.startNote).toMatch(/^daemon-state\.json was not valid JSON; kept a copy as daemon-state\.json\.corrupt-/)
      yield* third.close
    }))
})
