/**
 * Reading and validating one top-level `C/triggers/X.trigger`: what the queue should do with it
 * (queue it, archive it as invalid, read it again once it has settled, or report it unreadable).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Either } from "effect"
import { parseTrigger, priorityOf, promptProblem } from "../domain/Trigger.js"
import type { QueuedTrigger } from "./TriggerQueue.js"
import { SUFFIX } from "./claimFiles.js"
import { MAX_TRIGGER_NAME_BYTES, type ReadResult, readTriggerFile } from "./triggerFiles.js"

/** A file that is not complete JSON yet is read again if it changed this recently. */
export const SETTLE_MS = 2_000

/**
 * What one top-level `X.trigger` holds. Reading and validating is plain synchronous code: the
 * start-up scan does it for every file in the queue, and an effect per file would dominate it.
 */
export type Finding =
  | { readonly _tag: "Gone" }
  | { readonly _tag: "Queued"; readonly entry: QueuedTrigger }
  | { readonly _tag: "Invalid"; readonly reason: string }
  | { readonly _tag: "Incomplete"; readonly modifiedMs: number }
  | { readonly _tag: "Unreadable"; readonly error: unknown }

/**
 * Reads `<triggers>/<name>.trigger`. `listedAsRegular`: see `readRegularFile`. Paths are built by
 * plain concatenation (the name has no separator), cheaper than `path.join`, which normalises.
 */
export const inspect = (triggers: string, name: string, listedAsRegular: boolean): Finding => {
  const file = triggers + path.sep + name + SUFFIX
  let read: ReadResult
  try {
    const nameBytes = Buffer.byteLength(name)
    if (nameBytes > MAX_TRIGGER_NAME_BYTES) {
      // `X.processing` and the archive names would not fit in a directory entry.
      if (fs.lstatSync(file, { throwIfNoEntry: false }) === undefined) return { _tag: "Gone" }
      return { _tag: "Invalid", reason: `the file name is ${nameBytes} bytes long before .trigger, over the ${MAX_TRIGGER_NAME_BYTES} byte limit` }
    }
    read = readTriggerFile(file, listedAsRegular)
  } catch (error) {
    return { _tag: "Unreadable", error }
  }
  switch (read._tag) {
    case "Gone":
      return read
    case "NotRegular":
      return { _tag: "Invalid", reason: `not a regular file: it is ${read.kind}` }
    case "TooLarge":
      return { _tag: "Invalid", reason: `the file is ${read.size} bytes, over the 1048576 byte (1 MiB) limit` }
  }
  const parsed = parseTrigger(read.bytes)
  if (Either.isLeft(parsed)) {
    return parsed.left.incomplete && Date.now() - read.modifiedMs < SETTLE_MS
      ? { _tag: "Incomplete", modifiedMs: read.modifiedMs }
      : { _tag: "Invalid", reason: parsed.left.reason }
  }
  const trigger = parsed.right
  const tooLong = promptProblem(trigger, triggers + path.sep + name + ".processing")
  if (tooLong !== undefined) return { _tag: "Invalid", reason: tooLong }
  return {
    _tag: "Queued",
    entry: { name, agent: trigger.to_agent, trigger, priority: priorityOf(trigger), createdNs: read.createdNs }
  }
}
