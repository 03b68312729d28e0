/**
 * Agent slots: the in-memory table with a recording save function, then the file layer on a real
 * temporary project (`C/daemon/agent-slots.json`).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Either, Exit, Fiber, Layer, Schema, Scope } from "effect"
import { DaemonConfig } from "../../src/config/DaemonConfig.js"
import { projectPaths } from "../../src/domain/ProjectPaths.js"
import { type BusyInfo, idleSlot, SlotTable } from "../../src/domain/Slot.js"
import { AgentSlots, loadTable, make, readTable } from "../../src/slots/AgentSlots.js"

const info = (ticket: string | null, extra: Partial<BusyInfo> = {}): BusyInfo => ({
  ticket,
  trigger: "t.trigger",
  attempt: 1,
  traceId: "TRACE-1-000001",
  startedAt: "2025-10-25T05:00:00Z",
  ...extra
})

/** `make` with a save function that records every snapshot it is given (written behind: `persist` waits for it). */
const recording = (initial: SlotTable = {}) =>
  Effect.gen(function*() {
    const saves: Array<SlotTable> = []
    const slots = yield* make(initial, (table) => Effect.sync(() => void saves.push(table)))
    /** The last table saved, once every change so far is. */
    const saved = Effect.map(slots.persist, () => saves[saves.length - 1])
    return { slots, saves, saved }
  })

const tempProject = Effect.acquireRelease(
  Effect.sync(() => projectPaths(fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "starforge-slots-"))))),
  (paths) => Effect.sync(() => fs.rmSync(paths.root, { recursive: true, force: true }))
)

const decodeFile = Schema.decodeUnknownEither(Schema.parseJson(SlotTable))

/** Reads the slot file and checks it against the schema of contract §4. */
const readSlots = (file: string): SlotTable => {
  const decoded = decodeFile(fs.readFileSync(file, "utf8"))
  if (Either.isLeft(decoded)) throw new Error(`the slot file is not a valid slot table: ${decoded.left.message}`)
  return decoded.right
}

/** One turn of the event loop. */
const turn = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

const fileLayer = (root: string) => AgentSlots.layer.pipe(Layer.provide(DaemonConfig.layerSettings(root, {})))

describe("AgentSlots.make", { timeout: 15_000 }, () => {
  it.scoped("markBusy, setProcess and markIdle change the table, and the saved table follows", () =>
    Effect.gen(function*() {
      const { slots, saved } = yield* recording()
      expect(yield* slots.isBusy("dev-a")).toBe(false)
      expect(yield* slots.pidOf("dev-a")).toBeNull()
      expect(yield* slots.ticketOf("dev-a")).toBeNull()

      yield* slots.markBusy("dev-a", info("52"))
      expect((yield* saved)!["dev-a"]).toEqual({
        status: "busy",
        pid: null,
        ticket: "52",
        started_at: "2025-10-25T05:00:00Z",
        trigger: "t.trigger",
        log: null,
        attempt: 1,
        pid_start_time: null,
        trace_id: "TRACE-1-000001"
      })
      expect(yield* slots.isBusy("dev-a")).toBe(true)
      expect(yield* slots.ticketOf("dev-a")).toBe("52")
      expect(yield* slots.pidOf("dev-a")).toBeNull()

      yield* slots.setProcess("dev-a", { pid: 4242, startTime: "987654", log: "/logs/dev-a-1.log" })
      expect(yield* slots.pidOf("dev-a")).toBe("4242")
      const busy = (yield* slots.snapshot)["dev-a"]!
      expect(busy.pid).toBe("4242")
      expect(typeof busy.pid).toBe("string")
      expect(busy.pid_start_time).toBe("987654")
      expect(busy.log).toBe("/logs/dev-a-1.log")
      expect(yield* saved).toEqual(yield* slots.snapshot)

      yield* slots.markIdle("dev-a")
      expect(yield* saved).toEqual({ "dev-a": idleSlot })
      expect(yield* slots.isBusy("dev-a")).toBe(false)
      expect(yield* slots.pidOf("dev-a")).toBeNull()
      expect(yield* slots.ticketOf("dev-a")).toBeNull()
      // The agent keeps its (idle) key.
      expect(Object.keys(yield* slots.snapshot)).toEqual(["dev-a"])
    }))

  it.scoped("setProcess on an idle or unknown agent changes nothing", () =>
    Effect.gen(function*() {
      const { slots, saves } = yield* recording({ "dev-a": idleSlot })
      yield* slots.setProcess("dev-a", { pid: 1, startTime: null, log: "x" })
      yield* slots.setProcess("ghost", { pid: 2, startTime: null, log: "y" })
      yield* slots.persist
      expect(yield* slots.snapshot).toEqual({ "dev-a": idleSlot })
      expect(yield* slots.pidOf("dev-a")).toBeNull()
      expect(saves.every((t) => JSON.stringify(t) === JSON.stringify({ "dev-a": idleSlot }))).toBe(true)
    }))

  it.scoped("listBusy and countBusy", () =>
    Effect.gen(function*() {
      const { slots } = yield* recording()
      expect(yield* slots.listBusy).toEqual([])
      expect(yield* slots.countBusy).toBe(0)
      yield* slots.markBusy("a", info(null))
      yield* slots.markBusy("b", info("7"))
      yield* slots.markBusy("c", info(null))
      yield* slots.markIdle("b")
      expect([...(yield* slots.listBusy)].sort()).toEqual(["a", "c"])
      expect(yield* slots.countBusy).toBe(2)
      expect(Object.keys(yield* slots.snapshot).sort()).toEqual(["a", "b", "c"])
    }))

  it.scoped("a snapshot, and a table handed to the writer, stay as they were when the table changes later", () =>
    Effect.gen(function*() {
      const { slots, saves, saved } = yield* recording()
      yield* slots.markBusy("a", info("1"))
      yield* saved
      const written = saves[saves.length - 1]!
      const taken = yield* slots.snapshot
      yield* slots.setProcess("a", { pid: 10, startTime: "5", log: "a.log" })
      yield* slots.markBusy("b", info(null))
      yield* slots.markIdle("a")
      expect(Object.keys(taken)).toEqual(["a"])
      expect(taken["a"]!.status).toBe("busy")
      expect(taken["a"]!.pid).toBeNull()
      expect(written).toEqual(taken)
      expect((yield* slots.snapshot)["a"]).toEqual(idleSlot)
    }))

  it.scoped("cleanupOrphans releases the busy slots the predicate names, and only those", () =>
    Effect.gen(function*() {
      const { slots, saved } = yield* recording()
      yield* slots.markBusy("alive", info("1"))
      yield* slots.setProcess("alive", { pid: 100, startTime: "1", log: "a.log" })
      yield* slots.markBusy("dead", info("2"))
      yield* slots.setProcess("dead", { pid: 200, startTime: "2", log: "d.log" })
      yield* slots.markBusy("idle-later", info(null))
      yield* slots.markIdle("idle-later")
      const asked: Array<string> = []
      const released = yield* slots.cleanupOrphans((agent, slot) =>
        Effect.sync(() => {
          asked.push(agent)
          return slot.pid === "200"
        })
      )
      expect(asked.sort()).toEqual(["alive", "dead"])
      expect(released).toHaveLength(1)
      expect(released[0]!.agent).toBe("dead")
      expect(released[0]!.slot.pid).toBe("200")
      expect(released[0]!.slot.ticket).toBe("2")
      expect(yield* slots.isBusy("dead")).toBe(false)
      expect(yield* slots.isBusy("alive")).toBe(true)
      expect(yield* slots.pidOf("alive")).toBe("100")
      expect((yield* saved)!["dead"]).toEqual(idleSlot)

      // Nothing to release: nothing changes.
      const before = yield* slots.snapshot
      const none = yield* slots.cleanupOrphans(() => Effect.succeed(false))
      expect(none).toEqual([])
      expect(yield* slots.snapshot).toEqual(before)
    }))

  it.scoped("cleanupOrphans passes the predicate's failure through", () =>
    Effect.gen(function*() {
      const { slots } = yield* recording()
      yield* slots.markBusy("a", info(null))
      const error = yield* Effect.flip(slots.cleanupOrphans(() => Effect.fail("boom" as const)))
      expect(error).toBe("boom")
      expect(yield* slots.isBusy("a")).toBe(true)
    }))
})

describe("AgentSlots.layer (the slot file)", { timeout: 15_000 }, () => {
  it.scopedLive("the file follows every change, written behind it; valid JSON, pid a string", () =>
    Effect.gen(function*() {
      const paths = yield* tempProject
      const slots = Context.get(yield* Layer.build(fileLayer(paths.root)), AgentSlots)
      // Written at start, even when empty.
      expect(readSlots(paths.slotsFile)).toEqual({})
      /** Waits (deadline 5 s) until the file, read as a valid table, satisfies `check`. */
      const fileShows = (check: (table: SlotTable) => boolean) =>
        Effect.gen(function*() {
          const deadline = Date.now() + 5_000
          while (!check(readSlots(paths.slotsFile))) {
            if (Date.now() > deadline) throw new Error(`the slot file never showed the change: ${fs.readFileSync(paths.slotsFile, "utf8")}`)
            yield* Effect.sleep("5 millis")
          }
        })

      // No `persist`: the writer saves each change by itself, soon after it.
      yield* slots.markBusy("dev-a", info("52"))
      yield* fileShows((t) => t["dev-a"]?.status === "busy" && t["dev-a"].pid === null && t["dev-a"].ticket === "52")

      yield* slots.setProcess("dev-a", { pid: 12345, startTime: "42", log: "/l.log" })
      yield* fileShows((t) => t["dev-a"]?.pid === "12345")
      const raw = JSON.parse(fs.readFileSync(paths.slotsFile, "utf8")) as Record<string, Record<string, unknown>>
      expect(raw["dev-a"]!["pid"]).toBe("12345")
      expect(raw["dev-a"]!["started_at"]).toBe("2025-10-25T05:00:00Z")
      expect(raw["dev-a"]!["pid_start_time"]).toBe("42")

      yield* slots.markBusy("dev-b", info(null))
      yield* slots.markIdle("dev-a")
      yield* fileShows((t) => t["dev-b"]?.status === "busy" && t["dev-a"]?.status === "idle")
      expect(readSlots(paths.slotsFile)["dev-a"]).toEqual(idleSlot)

      // No temporary file is left next to it.
      expect(fs.readdirSync(paths.daemonDir)).toEqual(["agent-slots.json"])

      // `persist` writes the table again after the file was deleted under the daemon.
      fs.rmSync(paths.slotsFile)
      yield* slots.persist
      expect(readSlots(paths.slotsFile)).toEqual(yield* slots.snapshot)
    }))

  it.scopedLive("a burst of changes costs a few writes, and closing the layer saves the last table", () =>
    Effect.gen(function*() {
      const paths = yield* tempProject
      const scope = yield* Scope.make()
      const slots = Context.get(yield* Layer.buildWithScope(fileLayer(paths.root), scope), AgentSlots)
      let writes = 0
      const watcher = fs.watch(paths.daemonDir, (_event, name) => {
        if (name === "agent-slots.json") writes++
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => watcher.close()))
      for (let i = 0; i < 200; i++) {
        yield* slots.markBusy(`agent-${i}`, info(String(i)))
        yield* slots.markIdle(`agent-${i}`)
      }
      yield* slots.markBusy("last", info("9"))
      yield* Scope.close(scope, Exit.void)
      const table = readSlots(paths.slotsFile)
      expect(Object.keys(table)).toHaveLength(201)
      expect(table["last"]).toMatchObject({ status: "busy", ticket: "9" })
      // 401 changes, a handful of renames (each shows up as an event or two).
      expect(writes).toBeLessThan(40)
    }))

  it.scopedLive("a table found at start is kept, busy slots included", () =>
    Effect.gen(function*() {
      const paths = yield* tempProject
      const previous: SlotTable = {
        "dev-a": { status: "busy", pid: "999", ticket: "3", started_at: "2025-10-25T05:00:00Z", pid_start_time: "77" },
        "dev-b": idleSlot
      }
      fs.mkdirSync(paths.daemonDir, { recursive: true })
      fs.writeFileSync(paths.slotsFile, JSON.stringify(previous))
      const slots = Context.get(yield* Layer.build(fileLayer(paths.root)), AgentSlots)
      expect(yield* slots.snapshot).toEqual(previous)
      expect(yield* slots.pidOf("dev-a")).toBe("999")
      expect(readSlots(paths.slotsFile)).toEqual(previous)
    }))

  it.scopedLive("loadTable keeps a .corrupt- copy of a corrupt file and returns an empty table", () =>
    Effect.gen(function*() {
      const paths = yield* tempProject
      fs.mkdirSync(paths.daemonDir, { recursive: true })
      fs.writeFileSync(paths.slotsFile, "{\"dev-a\": {\"status\": \"busy\", ")
      const now = Date.UTC(2025, 9, 25, 5, 0, 0)
      const loaded = loadTable(paths.slotsFile, now)
      expect(loaded.table).toEqual({})
      expect(loaded.corruptCopy).toBe(`${paths.slotsFile}.corrupt-20251025-050000`)
      expect(fs.readFileSync(loaded.corruptCopy!, "utf8")).toBe("{\"dev-a\": {\"status\": \"busy\", ")

      // Valid JSON of the wrong shape is corrupt too.
      fs.writeFileSync(paths.slotsFile, JSON.stringify({ "dev-a": { status: "running", pid: 12 } }))
      const wrong = loadTable(paths.slotsFile, now + 1_000)
      expect(wrong.table).toEqual({})
      expect(wrong.corruptCopy).toBe(`${paths.slotsFile}.corrupt-20251025-050001`)
      expect(fs.existsSync(wrong.corruptCopy!)).toBe(true)

      expect(loaded.note).toBe(
        "agent-slots.json was not valid JSON; kept a copy as agent-slots.json.corrupt-20251025-050000; rebuilt with every agent idle"
      )
      expect(wrong.note).toMatch(/^agent-slots\.json was valid JSON of the wrong shape \(.+\); kept a copy as agent-slots\.json\.corrupt-20251025-050001;/)

      // A missing file is an empty table, without a copy.
      const missing = loadTable(path.join(paths.daemonDir, "nope.json"), now)
      expect(missing).toEqual({ table: {}, note: "nope.json was not found; every agent starts idle" })
      // The CLI's view never copies anything.
      fs.writeFileSync(paths.slotsFile, "{")
      const copies = fs.readdirSync(paths.daemonDir).length
      expect(readTable(paths.slotsFile)).toEqual({ table: {} })
      expect(fs.readdirSync(paths.daemonDir).length).toBe(copies)

      // The layer starts from an empty table and replaces the corrupt file with valid JSON.
      fs.writeFileSync(paths.slotsFile, "garbage")
      const slots = Context.get(yield* Layer.build(fileLayer(paths.root)), AgentSlots)
      expect(yield* slots.snapshot).toEqual({})
      expect(readSlots(paths.slotsFile)).toEqual({})
      expect(fs.readdirSync(paths.daemonDir).filter((n) => n.includes(".corrupt-")).length).toBeGreaterThanOrEqual(2)
    }))

  it.scopedLive("20 concurrent markBusy leave 20 entries and the file always parses", () =>
    Effect.gen(function*() {
      const paths = yield* tempProject
      const slots = Context.get(yield* Layer.build(fileLayer(paths.root)), AgentSlots)
      const agents = Array.from({ length: 20 }, (_, i) => `agent-${String(i).padStart(2, "0")}`)
      let done = false
      let reads = 0
      // Reads through the libuv thread pool, truly concurrently with the writes.
      const reader = yield* Effect.promise(async () => {
        do {
          const text = await fs.promises.readFile(paths.slotsFile, "utf8")
          const decoded = decodeFile(text)
          if (Either.isLeft(decoded)) throw new Error(`read a corrupt slot file: ${JSON.stringify(text)}`)
          reads++
        } while (!done)
      }).pipe(Effect.fork)
      yield* Effect.forEach(
        agents,
        (agent, i) =>
          Effect.gen(function*() {
            // Let the event loop (and the reader's pending reads) run between writes.
            yield* turn
            yield* slots.markBusy(agent, info(String(i)))
            yield* turn
            yield* slots.setProcess(agent, { pid: 1000 + i, startTime: String(i), log: `${agent}.log` })
          }),
        { concurrency: "unbounded" }
      )
      yield* slots.persist
      done = true
      yield* Fiber.join(reader)
      expect(reads).toBeGreaterThan(0)
      const table = readSlots(paths.slotsFile)
      expect(Object.keys(table).sort()).toEqual(agents)
      agents.forEach((agent, i) => {
        expect(table[agent]).toMatchObject({ status: "busy", pid: String(1000 + i), ticket: String(i) })
      })
      expect(yield* slots.countBusy).toBe(20)
      expect(fs.readdirSync(paths.daemonDir)).toEqual(["agent-slots.json"])
    }))
})
