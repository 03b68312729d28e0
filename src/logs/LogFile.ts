/**
 * Log files the daemon writes itself (the daemon log and every agent log), their rotated parts
 * and reading them back.
 *
 * Rotation never loses a byte because the daemon is the only writer: agents write into a pipe
 * the daemon drains (see `AgentRun`), and the daemon writes each chunk whole. When a write
 * takes the file to `LOG_MAX_SIZE_MB`, the file is closed, renamed to the next part and a new
 * file is opened under the same name, all between two writes. Parts are numbered upwards, so
 * no part is ever renamed again: `x.log.1` is the oldest, then `x.log.2`, …, then `x.log`, the
 * newest. Maintenance may later gzip a part (`x.log.1.gz`) or a finished log (`x.log.gz`).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as zlib from "node:zlib"

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/** `x.log.N` or `x.log.N.gz` of `base` (a file name), with N; undefined for anything else. */
export const partNumber = (base: string, name: string): number | undefined => {
  const m = new RegExp(`^${escapeRegExp(base)}\\.(\\d+)(?:\\.gz)?$`).exec(name)
  return m ? Number(m[1]) : undefined
}

/**
 * Every file of one log, oldest first: its rotated parts in order, then the log itself
 * (`x.log`, or `x.log.gz` once a finished log was compressed).
 */
export const logParts = (file: string): ReadonlyArray<string> => {
  const dir = path.dirname(file)
  const base = path.basename(file)
  let names: ReadonlyArray<string>
  try {
    names = fs.readdirSync(dir)
  } catch {
    return []
  }
  const parts = names
    .map((name) => ({ name, n: partNumber(base, name) }))
    .filter((p): p is { name: string; n: number } => p.n !== undefined)
    .sort((a, b) => a.n - b.n || a.name.length - b.name.length)
    .map((p) => path.join(dir, p.name))
  const current = names.includes(base) ? [file] : names.includes(`${base}.gz`) ? [`${file}.gz`] : []
  return [...parts, ...current]
}

/** The content of one log file, gunzipped when it ends in `.gz`. */
export const readLogFile = (file: string): Buffer => {
  const content = fs.readFileSync(file)
  return file.endsWith(".gz") ? zlib.gunzipSync(content) : content
}

/** The next free part number of `file` (one above the highest existing part). */
export const nextPart = (file: string): number => {
  const base = path.basename(file)
  let highest = 0
  try {
    for (const name of fs.readdirSync(path.dirname(file))) highest = Math.max(highest, partNumber(base, name) ?? 0)
  } catch {
    // No directory yet: the first part is 1.
  }
  return highest + 1
}

/** The log files this process has open for writing; maintenance leaves them alone. */
const openForWriting = new Map<string, number>()

export const isOpenForWriting = (file: string): boolean => openForWriting.has(file)

/**
 * An append-only log file with size-based rotation. Writes are synchronous and whole, so a
 * rotation (between two writes) can neither split nor lose one.
 */
export class RotatingLogFile {
  private fd: number
  private size: number
  private closed = false

  /** Opens (creating or appending to) `file`; `maxBytes` 0 never rotates. Throws when it cannot. */
  constructor(readonly file: string, private readonly maxBytes: number) {
    this.fd = fs.openSync(file, "a", 0o644)
    this.size = fs.fstatSync(this.fd).size
    openForWriting.set(file, (openForWriting.get(file) ?? 0) + 1)
  }

  /** Appends `data` whole; rotates once the file has reached the size limit. Throws on I/O errors. */
  write(data: string | Uint8Array): void {
    if (this.closed) throw new Error(`${this.file} is closed`)
    const buffer = typeof data === "string" ? Buffer.from(data) : data
    let offset = 0
    while (offset < buffer.length) offset += fs.writeSync(this.fd, buffer, offset, buffer.length - offset)
    this.size += buffer.length
    if (this.maxBytes > 0 && this.size >= this.maxBytes) this.rotate()
  }

  /** Moves the current content to the next part and starts an empty file under the same name. */
  rotate(): void {
    if (this.closed || this.size === 0) return
    // Renamed while still open: if the rename or the new open fails, writing goes on as before.
    const part = `${this.file}.${nextPart(this.file)}`
    fs.renameSync(this.file, part)
    let fresh: number
    try {
      fresh = fs.openSync(this.file, "a", 0o644)
    } catch (e) {
      fs.renameSync(part, this.file)
      throw e
    }
    fs.closeSync(this.fd)
    this.fd = fresh
    this.size = 0
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    const writers = (openForWriting.get(this.file) ?? 1) - 1
    if (writers > 0) openForWriting.set(this.file, writers)
    else openForWriting.delete(this.file)
    fs.closeSync(this.fd)
  }
}
