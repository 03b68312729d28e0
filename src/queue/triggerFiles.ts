/**
 * File operations on the queue directories shared by the daemon and the CLI: writing a new
 * trigger atomically, moving files without ever overwriting one, reading a trigger safely.
 */
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import type { ProjectPaths } from "../domain/ProjectPaths.js"
import { fileSafe, MAX_TRIGGER_BYTES } from "../domain/Trigger.js"

const exists = (file: string) => fs.lstatSync(file, { throwIfNoEntry: false }) !== undefined

/**
 * `name` in `dir`, or `stem-2.ext`, `stem-3.ext`… when taken. A name is only free when its
 * `companions` (suffixes such as `.meta.json`) are free too.
 */
export const freeName = (dir: string, name: string, companions: ReadonlyArray<string> = []): string => {
  const free = (candidate: string) => !exists(candidate) && companions.every((c) => !exists(candidate + c))
  if (free(path.join(dir, name))) return path.join(dir, name)
  const dot = name.lastIndexOf(".") > 0 ? name.lastIndexOf(".") : name.length
  for (let n = 2; ; n++) {
    const candidate = path.join(dir, `${name.slice(0, dot)}-${n}${name.slice(dot)}`)
    if (free(candidate)) return candidate
  }
}

/** Moves `from` into `dir` as `name` (or a free variant); never overwrites. Returns the new path. */
export const moveNoClobber = (from: string, dir: string, name: string, companions: ReadonlyArray<string> = []): string => {
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

const kindOf = (stat: fs.BigIntStats): string =>
  stat.isSymbolicLink()
    ? "a symbolic link (never followed)"
    : stat.isDirectory()
    ? "a directory"
    : stat.isFIFO()
    ? "a FIFO"
    : stat.isSocket()
    ? "a socket"
    : "a device file"

/**
 * Reads a trigger file without following a symlink, without blocking on a FIFO and without
 * reading more than the size limit.
 */
export const readTriggerFile = (file: string): ReadResult => {
  const stat = fs.lstatSync(file, { bigint: true, throwIfNoEntry: false })
  if (stat === undefined) return { _tag: "Gone" }
  if (!stat.isFile()) return { _tag: "NotRegular", kind: kindOf(stat) }
  if (stat.size > BigInt(MAX_TRIGGER_BYTES)) return { _tag: "TooLarge", size: Number(stat.size) }
  let fd: number
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === "ENOENT") return { _tag: "Gone" }
    if (code === "ELOOP") return { _tag: "NotRegular", kind: "a symbolic link (never followed)" }
    throw e
  }
  try {
    const opened = fs.fstatSync(fd, { bigint: true })
    if (!opened.isFile()) return { _tag: "NotRegular", kind: kindOf(opened) }
    if (opened.size > BigInt(MAX_TRIGGER_BYTES)) return { _tag: "TooLarge", size: Number(opened.size) }
    const buffer = Buffer.alloc(Number(opened.size))
    let read = 0
    while (read < buffer.length) {
      const n = fs.readSync(fd, buffer, read, buffer.length - read, read)
      if (n === 0) break
      read += n
    }
    const createdNs = opened.birthtimeNs > 0n ? opened.birthtimeNs : opened.mtimeNs
    return { _tag: "Read", bytes: buffer.subarray(0, read), createdNs, modifiedMs: Number(opened.mtimeMs) }
  } finally {
    fs.closeSync(fd)
  }
}
