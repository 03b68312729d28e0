/** `starforge daemon logs`: the daemon log or an agent's newest log, rotated parts first, optionally followed. */
import * as fs from "node:fs"
import * as path from "node:path"
import { Args, Command, Options } from "@effect/cli"
import { Effect, Option } from "effect"
import { UsageError } from "../domain/errors.js"
import { isValidAgentName } from "../domain/Trigger.js"
import { logParts, readLogFile } from "../logs/LogFile.js"
import { projectOption, resolveProject } from "./shared.js"

/**
 * The newest `C/logs/<agent>-<epoch>[-n].log` (also when maintenance has gzipped it to
 * `….log.gz`); the name without `.gz`, as `logParts` takes it.
 */
export const newestAgentLog = (logs: string, agent: string): string | undefined => {
  // The epoch has at least 10 digits, so agent `dev` never matches `dev-2-<epoch>.log`.
  const pattern = new RegExp(`^${agent.replace(/[.]/g, "\\.")}-(\\d{10,})(?:-(\\d+))?\\.log(?:\\.gz)?$`)
  let best: { file: string; key: [number, number] } | undefined
  let names: Array<string>
  try {
    names = fs.readdirSync(logs)
  } catch {
    return undefined
  }
  for (const name of names) {
    const m = pattern.exec(name)
    if (!m) continue
    const key: [number, number] = [Number(m[1]), Number(m[2] ?? 1)]
    if (!best || key[0] > best.key[0] || (key[0] === best.key[0] && key[1] > best.key[1])) {
      best = { file: path.join(logs, name.replace(/\.gz$/, "")), key }
    }
  }
  return best?.file
}

/**
 * Prints what is appended to `file` from `from` on. Holds the file open, so a rotation (a
 * rename) is followed: the rest of the old file is read first, then the new one from its start.
 */
const follow = (file: string, from: number) =>
  Effect.async<never>(() => {
    let fd: number | undefined
    let position = from
    const open = () => {
      try {
        fd = fs.openSync(file, "r")
      } catch {
        fd = undefined
      }
    }
    const readRest = () => {
      if (fd === undefined) return
      const buffer = Buffer.alloc(64 * 1024)
      for (;;) {
        const n = fs.readSync(fd, buffer, 0, buffer.length, position)
        if (n === 0) return
        position += n
        process.stdout.write(Buffer.from(buffer.subarray(0, n)))
      }
    }
    open()
    const timer = setInterval(() => {
      try {
        if (fd === undefined) {
          open()
          position = 0
        }
        if (fd === undefined) return
        if (fs.fstatSync(fd).size < position) position = 0
        readRest()
        const now = fs.statSync(file, { throwIfNoEntry: false })
        if (now !== undefined && now.ino !== fs.fstatSync(fd).ino) {
          // Rotated: what was written before the rename is in the old file, read above.
          readRest()
          fs.closeSync(fd)
          open()
          position = 0
          readRest()
        }
      } catch {
        // The file may be replaced; keep trying.
      }
    }, 200)
    return Effect.sync(() => {
      clearInterval(timer)
      if (fd !== undefined) fs.closeSync(fd)
    })
  })

export const logs = Command.make(
  "logs",
  {
    project: projectOption,
    agent: Args.text({ name: "AGENT" }).pipe(Args.optional, Args.withDescription("Show the newest log of this agent.")),
    follow: Options.boolean("follow").pipe(Options.withAlias("F"), Options.withDescription("Keep printing what is appended."))
  },
  ({ agent, follow: keepFollowing, project }) =>
    Effect.gen(function*() {
      const paths = yield* resolveProject(project)
      let file = paths.daemonLog
      if (Option.isSome(agent)) {
        if (!isValidAgentName(agent.value)) {
          return yield* new UsageError({ message: `${JSON.stringify(agent.value)} is not a valid agent name` })
        }
        const found = newestAgentLog(paths.logs, agent.value)
        if (!found) return yield* new UsageError({ message: `No log of ${agent.value} in ${paths.logs} yet` })
        file = found
      }
      // Rotated parts first, oldest first, gzipped ones unpacked.
      const parts = logParts(file)
      if (parts.length === 0) {
        return yield* new UsageError({ message: `No daemon log at ${file} yet: start the daemon with 'starforge daemon start'` })
      }
      let printedOfCurrent = 0
      for (const part of parts) {
        const content = yield* Effect.try({
          try: () => readLogFile(part),
          catch: (e) => new UsageError({ message: `Cannot read ${part}: ${(e as Error).message}` })
        })
        process.stdout.write(content)
        if (part === file) printedOfCurrent = content.length
      }
      if (keepFollowing) yield* follow(file, printedOfCurrent)
    })
).pipe(Command.withDescription("Print the daemon log, or the newest log of AGENT (rotated and gzipped parts included, oldest first); --follow keeps tailing."))
