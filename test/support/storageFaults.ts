/**
 * Making a directory unwritable for the daemon, for the storage fault tests: `chmod` when the
 * tests do not run as root, a read-only bind mount when they do (root ignores the mode), or
 * nothing where root may not mount (such tests are skipped).
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { expect } from "vitest"

export const isRoot = process.getuid?.() === 0

export const run = (command: string, args: ReadonlyArray<string>) => spawnSync(command, args, { stdio: "ignore" }).status === 0

/** Whether this process may mount (root in a container may not). */
export const canMount = (() => {
  if (!isRoot) return false
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-mount-"))
  try {
    return run("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir]) && run("umount", [dir])
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})()

export const canMakeUnwritable = !isRoot || canMount

/** Makes `dir` unwritable for the daemon; returns how to undo it, or undefined when it cannot. */
export const unwritable = (dir: string): (() => void) | undefined => {
  if (!isRoot) {
    fs.chmodSync(dir, 0o555)
    return () => fs.chmodSync(dir, 0o755)
  }
  if (!canMount) return undefined
  expect(run("mount", ["--bind", dir, dir])).toBe(true)
  expect(run("mount", ["-o", "remount,bind,ro", dir])).toBe(true)
  return () => void run("umount", ["-l", dir])
}
