/**
 * The output watch, fed in memory under the TestClock: the fold of pushed bytes, the coalesced
 * progress callback, the stall detection and the final partial line. No file is involved.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, TestClock } from "effect"
import { watchOutput } from "../../src/stream/AgentOutput.js"
import type { Progress } from "../../src/stream/StreamJson.js"

const tool = (name: string, id: string) =>
  JSON.stringify({ type: "assistant", message: { id, content: [{ type: "tool_use", name, input: {} }] } }) + "\n"
const bytes = (text: string) => Buffer.from(text, "utf8")

describe("watchOutput", () => {
  it.scoped("publishes the first change at once, then at most every spacing with the newest state, and the last partial line at the end", () =>
    Effect.gen(function*() {
      const published: Array<Progress> = []
      const watch = yield* watchOutput({ publishSpacingMs: 1_000, onProgress: (p) => Effect.sync(() => published.push(p)) })
      yield* watch.push(bytes(tool("Bash", "m1") + tool("Edit", "m2") + "not json\n"))
      expect((yield* watch.state).progress.tool_uses).toBe(2)
      yield* TestClock.adjust("1 millis")
      expect(published.map((p) => p.tool_uses)).toEqual([2])
      // Three changes within the spacing: one call, with the last of them.
      yield* watch.push(bytes(tool("Read", "m3")))
      yield* watch.push(bytes(tool("Grep", "m4")))
      yield* TestClock.adjust("500 millis")
      yield* watch.push(bytes(tool("Glob", "m5")))
      yield* TestClock.adjust("400 millis")
      expect(published).toHaveLength(1)
      yield* TestClock.adjust("100 millis")
      expect(published.map((p) => p.last_tool)).toEqual(["Edit", "Glob"])
      // Nothing new, or only text (no progress): nothing published.
      yield* TestClock.adjust("5 seconds")
      yield* watch.push(bytes("plain text\n"))
      yield* TestClock.adjust("5 seconds")
      expect(published).toHaveLength(2)
      yield* watch.push(bytes(tool("Write", "m6").trimEnd())) // no newline: the agent died mid-line
      expect((yield* watch.state).progress.tool_uses).toBe(5)
      const final = yield* watch.finish
      expect(final.progress).toMatchObject({ tool_uses: 6, last_tool: "Write", turns: 6 })
      expect(published.at(-1)!.tool_uses).toBe(6)
    }))

  it.scoped("a slow consumer gets the newest state once it is done, not a backlog", () =>
    Effect.gen(function*() {
      const published: Array<number> = []
      const release = yield* Deferred.make<void>()
      const watch = yield* watchOutput({
        publishSpacingMs: 0,
        // The first call blocks until released.
        onProgress: (p) => (published.push(p.tool_uses) === 1 ? Deferred.await(release) : Effect.void)
      })
      yield* watch.push(bytes(tool("Bash", "m1")))
      yield* TestClock.adjust("1 millis")
      for (let i = 2; i <= 20; i++) yield* watch.push(bytes(tool("Read", `m${i}`)))
      yield* TestClock.adjust("1 millis")
      expect(published).toEqual([1])
      yield* Deferred.succeed(release, undefined)
      yield* TestClock.adjust("1 millis")
      expect(published).toEqual([1, 20])
    }))

  it.scoped("lines and characters cut anywhere between pushes are put together again", () =>
    Effect.gen(function*() {
      const watch = yield* watchOutput()
      const all = bytes(tool("Bash", "m1") + "héllo wörld\n" + tool("Edit", "m2"))
      for (let i = 0; i < all.length; i += 7) yield* watch.push(all.subarray(i, i + 7))
      const final = yield* watch.finish
      expect(final).toMatchObject({ jsonLines: 2, textLines: 1, progress: { tool_uses: 2, last_tool: "Edit" } })
    }))

  it.scoped("a huge line is dropped while the lines around it are kept", () =>
    Effect.gen(function*() {
      const watch = yield* watchOutput({ maxLineBytes: 1024 })
      yield* watch.push(bytes(tool("Bash", "m1")))
      yield* watch.push(Buffer.alloc(3 * 1024, 120))
      yield* watch.push(bytes("\n" + tool("Edit", "m2")))
      const final = yield* watch.finish
      expect(final).toMatchObject({ oversizedLines: 1, jsonLines: 2, progress: { tool_uses: 2 } })
    }))

  it.scoped("lastActivityMs is the watch's start, then the time of the last bytes, partial lines included", () =>
    Effect.gen(function*() {
      const watch = yield* watchOutput()
      expect((yield* watch.lastActivityMs)).toBe(0)
      yield* TestClock.adjust("6 seconds")
      yield* watch.push(bytes("still working, no newline yet"))
      yield* TestClock.adjust("3 seconds")
      expect((yield* watch.lastActivityMs)).toBe(6_000)
      yield* watch.push(bytes(""))
      expect((yield* watch.lastActivityMs)).toBe(6_000)
    }))

  it.scoped("plain text output, or none, publishes no progress (the slot is not written for nothing)", () =>
    Effect.gen(function*() {
      const published: Array<Progress> = []
      const onProgress = (p: Progress) => Effect.sync(() => published.push(p))
      const quiet = yield* watchOutput({ onProgress })
      yield* TestClock.adjust("1 second")
      expect(yield* quiet.finish).toMatchObject({ jsonLines: 0, textLines: 0 })
      const text = yield* watchOutput({ onProgress })
      yield* text.push(bytes("agent running\nwarning: something\nno newline"))
      yield* TestClock.adjust("1 second")
      expect(yield* text.finish).toMatchObject({ jsonLines: 0, textLines: 3 })
      yield* text.push(bytes(tool("Bash", "m1")))
      yield* TestClock.adjust("1 second")
      expect(published.map((p) => p.tool_uses)).toEqual([1])
    }))
})
