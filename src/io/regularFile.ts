/**
 * Reading a file that someone else controls (a trigger, `.env`, `daemon.conf`) without blocking
 * on a FIFO or device, without following a symlink when asked not to, and without reading more
 * than a size limit.
 */
import * as fs from "node:fs"

export type RegularFileRead =
  | { readonly _tag: "Gone" }
  | { readonly _tag: "NotRegular"; readonly kind: string }
  | { readonly _tag: "TooLarge"; readonly size: number }
  | { readonly _tag: "Read"; readonly bytes: Uint8Array; readonly stat: fs.BigIntStats }

const kindOf = (stat: fs.Stats | fs.BigIntStats): string =>
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
 * Reads `file` if it is a regular file of at most `maxBytes`. Opening is non-blocking and the
 * type and size are checked on the open descriptor, so a file swapped for a FIFO or a larger
 * file between the checks changes nothing. Errors other than "gone" are thrown.
 *
 * `listedAsRegular`: the caller has just seen the file listed as a regular file (the directory
 * entry's type), so the costly check before opening is skipped. The descriptor's checks still hold
 * for a file swapped since; the check before opening only keeps devices and FIFOs from being opened.
 */
export const readRegularFile = (
  file: string,
  options: { readonly maxBytes: number; readonly followSymlinks: boolean; readonly listedAsRegular?: boolean }
): RegularFileRead => {
  if (options.listedAsRegular !== true) {
    const stat = options.followSymlinks
      ? fs.statSync(file, { throwIfNoEntry: false })
      : fs.lstatSync(file, { throwIfNoEntry: false })
    if (stat === undefined) return { _tag: "Gone" }
    if (!stat.isFile()) return { _tag: "NotRegular", kind: kindOf(stat) }
    if (stat.size > options.maxBytes) return { _tag: "TooLarge", size: stat.size }
  }
  let fd: number
  try {
    fd = fs.openSync(
      file,
      fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | (options.followSymlinks ? 0 : fs.constants.O_NOFOLLOW)
    )
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === "ENOENT") return { _tag: "Gone" }
    if (code === "ELOOP" && !options.followSymlinks) return { _tag: "NotRegular", kind: "a symbolic link (never followed)" }
    throw e
  }
  try {
    const opened = fs.fstatSync(fd, { bigint: true })
    if (!opened.isFile()) return { _tag: "NotRegular", kind: kindOf(opened) }
    if (opened.size > BigInt(options.maxBytes)) return { _tag: "TooLarge", size: Number(opened.size) }
    const buffer = Buffer.alloc(Number(opened.size))
    let read = 0
    while (read < buffer.length) {
      const n = fs.readSync(fd, buffer, read, buffer.length - read, read)
      if (n === 0) break
      read += n
    }
    return { _tag: "Read", bytes: buffer.subarray(0, read), stat: opened }
  } finally {
    fs.closeSync(fd)
  }
}
