/**
 * The output watch over a real file, under the TestClock: polling, the progress callback, the
 * stall detection and the final drain.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Stream, TestClock } from "effect"
import { splitLines, watchOutput } from "../../src/stream/AgentOutput.js"
import type { OutputState } from "../../src/stream/StreamJson.js"

const dirs: Array<string> = []
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })))
const tempFile = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-output-"))
  dirs.push(dir)
  return path.join(dir, "agent.log")
}
const tool = (name: string, id: string) =>
  JSON.stringify({ type: "assistant", message: { id, content: [{ type: "tool_use", name, input: {} }] } }) + "\n"

describe("watchOutput", () => {
  it.scoped("reads only the agent's part, publishes once per poll, and drains the last partial line at the end", () =>
    Effect.gen(function*() {
      const file = tempFile()
      fs.writeFileSync(file, "Agent: a\nStarted: x\n\n")
      const from = fs.statSync(file).size
      const published: Array<OutputState> = []
      const watch = yield* watchOutput(file, { from, pollMs: 500, onChange: (s) => Effect.sync(() => published.push(s)) })
      fs.appendFileSync(file, tool("Bash", "m1") + tool("Edit", "m2") + "not json\n")
      yield* TestClock.adjust("500 millis")
      expect((yield* watch.state).progress.tool_uses).toBe(2)
      yield* TestClock.adjust("500 millis")
      expect(published.length).toBe(1)
      expect(published[0]!.textLines).toBe(1) // the header was skipped
      // Nothing new: nothing published.
      yield* TestClock.adjust("2 seconds")
      expect(published.length).toBe(1)
      fs.appendFileSync(file, tool("Read", "m3").trimEnd()) // no newline: the agent died mid-line
      const final = yield* watch.finish
      expect(final.progress).toMatchObject({ tool_uses: 3, last_tool: "Read", turns: 3 })
      expect(published.at(-1)!.progress.tool_uses).toBe(3)
    }))

  it.scoped("stalled completes only after the given silence; any output restarts the count", () =>
    Effect.gen(function*() {
      const file = tempFile()
      fs.writeFileSync(file, "")
      const watch = yield* watchOutput(file, { from: 0, pollMs: 1_000 })
      const stalled = yield* Effect.fork(watch.stalled(10_000))
      yield* TestClock.adjust("6 seconds")
      fs.appendFileSync(file, "still working\n")
      yield* TestClock.adjust("6 seconds")
      expect(stalled.unsafePoll()).toBeNull()
      yield* TestClock.adjust("4 seconds")
      expect(stalled.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(stalled)).toBeGreaterThanOrEqual(10_000)
    }))

  it.scoped("follows a rotation: the rest of the renamed file, then the new file from its start", () =>
    Effect.gen(function*() {
      const file = tempFile()
      fs.writeFileSync(file, "")
      const watch = yield* watchOutput(file, { from: 0, pollMs: 100 })
      fs.appendFileSync(file, tool("Bash", "m1"))
      yield* TestClock.adjust("100 millis")
      // Written after the last read, then the file is rotated away.
      fs.appendFileSync(file, tool("Edit", "m2"))
      fs.renameSync(file, `${file}.1`)
      fs.writeFileSync(file, tool("Read", "m3"))
      yield* TestClock.adjust("100 millis")
      const final = yield* watch.finish
      expect(final.progress).toMatchObject({ tool_uses: 3, last_tool: "Read" })
    }))

  it.scoped("a file that never appears is no output, not an error", () =>
    Effect.gen(function*() {
      const watch = yield* watchOutput("/nonexistent/dir/agent.log", { from: 0, pollMs: 100 })
      yield* TestClock.adjust("1 second")
      expect((yield* watch.finish).jsonLines).toBe(0)
    }))

  it.effect("a huge line is dropped while the lines around it are kept", () =>
    Effect.gen(function*() {
      const chunks = [Buffer.from("a\n"), Buffer.alloc(3 * 1024 * 1024, 120), Buffer.from("\nb\n")]
      const lines = yield* Stream.fromIterable(chunks).pipe(splitLines(), Stream.runCollect)
      expect(Array.from(lines).map((l) => (l._tag === "Line" ? l.text : "dropped"))).toEqual(["a", "dropped", "b"])
    }))
})
