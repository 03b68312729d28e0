/**
 * File operations on the queue directories shared by the daemon and the CLI: writing a new
 * trigger atomically, moving files without ever overwriting one, reading a trigger safely.
 */
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import type { ProjectPaths } from "../domain/ProjectPaths.js"
import { fileSafe, MAX_TRIGGER_BYTES } from "../domain/Trigger.js"
import { freeName } from "../io/freeName.js"
import { readRegularFile } from "../io/regularFile.js"


/**
 * The longest trigger name (before `.trigger`), in bytes: with the archive stamp, `.trigger`,
 * `.reason.txt` or `.meta.json` and a `-N` variant, every name the daemon derives from it stays
 * within a directory entry's 255 bytes.
 */
export const MAX_TRIGGER_NAME_BYTES = 200

/** `name` cut to `MAX_TRIGGER_NAME_BYTES` at a character boundary (for archiving an over-long one). */
export const fitName = (name: string): string => {
  if (Buffer.byteLength(name) <= MAX_TRIGGER_NAME_BYTES) return name
  let cut = ""
  for (const c of name) {
    if (Buffer.byteLength(cut + c) > MAX_TRIGGER_NAME_BYTES) break
    cut += c
  }
  return cut
}

/** Moves `from` into `dir` as `name` (or a free variant); never overwrites. Returns the new path. */
export const moveNoClobber = (from: fs.PathLike, dir: string, name: string, companions: ReadonlyArray<string> = []): string => {
  fs.mkdirSync(dir, { recursive: true })
  const to = freeName(dir, name, companions)
  fs.renameSync(from, to)
  return to
}

/**
 * Writes a new trigger as `<agent>-<action>-<epoch ms>-<random>.trigger`: JSON to `staging/`,
 * then a hard link into place, which fails rather than overwrite an existing file.
 */
export const writeNewTrigger = (paths: ProjectPaths, content: Record<string, unknown>, nowMs: number): string => {
  fs.mkdirSync(paths.staging, { recursive: true })
  const agent = String(content["to_agent"])
  const action = fileSafe(String(content["action"] ?? "task"))
  for (;;) {
    const name = `${agent}-${action}-${nowMs}-${crypto.randomBytes(4).toString("hex")}.trigger`
    const staged = path.join(paths.staging, `${name}.tmp`)
    fs.writeFileSync(staged, JSON.stringify(content, null, 2) + "\n", { mode: 0o644, flag: "wx" })
    const target = path.join(paths.triggers, name)
    try {
      fs.linkSync(staged, target)
      return target
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e
    } finally {
      fs.rmSync(staged, { force: true })
    }
  }
}

export type ReadResult =
  | { readonly _tag: "Gone" }
  | { readonly _tag: "NotRegular"; readonly kind: string }
  | { readonly _tag: "TooLarge"; readonly size: number }
  | {
    readonly _tag: "Read"
    readonly bytes: Uint8Array
    readonly createdNs: bigint
    readonly modifiedMs: number
  }

/**
 * Reads a trigger file without following a symlink, without blocking on a FIFO and without
 * reading more than the size limit. `listedAsRegular`: see `readRegularFile`.
 */
export const readTriggerFile = (file: string, listedAsRegular = false): ReadResult => {
  const read = readRegularFile(file, { maxBytes: MAX_TRIGGER_BYTES, followSymlinks: false, listedAsRegular })
  if (read._tag !== "Read") return read
  const { bytes, stat } = read
  const createdNs = stat.birthtimeNs > 0n ? stat.birthtimeNs : stat.mtimeNs
  return { _tag: "Read", bytes, createdNs, modifiedMs: Number(stat.mtimeMs) }
}
