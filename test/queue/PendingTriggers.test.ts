/**
 * The pending set's run order, kept from one read to the next: after any sequence of changes a
 * read gives exactly what a full sort of the current entries gives.
 */
import { describe, expect, it } from "vitest"
import type { Priority } from "../../src/domain/Trigger.js"
import { PendingTriggers, type QueuedTrigger, sortPending } from "../../src/queue/TriggerQueue.js"

const PRIORITIES: ReadonlyArray<Priority> = ["high", "normal", "low"]

const entry = (name: string, priority: Priority, createdNs: bigint): QueuedTrigger => ({
  name,
  agent: "dev-a",
  trigger: { to_agent: "dev-a" },
  priority,
  createdNs
})

/** A small deterministic generator (mulberry32), so a failure can be replayed. */
const random = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

describe("PendingTriggers", () => {
  it("reads in run order after any mix of additions, replacements and removals, read or not in between", () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const next = random(seed)
      const pending = new PendingTriggers()
      const reference = new Map<string, QueuedTrigger>()
      /** Entries taken out, to be set again as the same object (a requeue does that). */
      const removedEntries: Array<QueuedTrigger> = []
      for (let step = 0; step < 3_000; step++) {
        const roll = next()
        // Few names and few timestamps: replacements and order ties (broken by name) are common.
        const name = `t${Math.floor(next() * 60)}`
        if (roll < 0.45) {
          const e = entry(name, PRIORITIES[Math.floor(next() * 3)]!, BigInt(Math.floor(next() * 20)))
          pending.set(e)
          reference.set(name, e)
        } else if (roll < 0.55 && removedEntries.length > 0) {
          const e = removedEntries.splice(Math.floor(next() * removedEntries.length), 1)[0]!
          pending.set(e)
          reference.set(e.name, e)
        } else if (roll < 0.85) {
          const gone = reference.get(name)
          if (gone !== undefined) removedEntries.push(gone)
          pending.delete(name)
          reference.delete(name)
        }
        expect(pending.has(name)).toBe(reference.has(name))
        if (next() < 0.3) expect(pending.inOrder()).toEqual(sortPending(reference.values()))
      }
      expect(pending.inOrder()).toEqual(sortPending(reference.values()))
      expect(pending.names().sort()).toEqual(Array.from(reference.keys()).sort())
    }
  })

  it("an unchanged set reads as the same array; a change gives a new one and leaves the old one as it was", () => {
    const pending = new PendingTriggers()
    pending.set(entry("b", "normal", 2n))
    pending.set(entry("a", "normal", 1n))
    const first = pending.inOrder()
    expect(first.map((t) => t.name)).toEqual(["a", "b"])
    expect(pending.inOrder()).toBe(first)
    pending.delete("a")
    pending.set(entry("c", "high", 3n))
    expect(pending.inOrder().map((t) => t.name)).toEqual(["c", "b"])
    expect(first.map((t) => t.name)).toEqual(["a", "b"])
  })
})
