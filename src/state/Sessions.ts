/**
 * The agent sessions of unfinished triggers: `C/daemon/sessions.json`, by trigger file name, the
 * session its last attempt ran in. The next attempt of that trigger resumes it
 * (`AGENT_RESUME_COMMAND`), whether it follows a failure, a usage-limit pause, a daemon stop or a
 * crash. A trigger that is archived or dead-lettered is forgotten.
 *
 * Written behind the changes (temp file + rename, one writer: the daemon), and at shutdown.
 */
import * as path from "node:path"
import { Clock, Context, Effect, Layer, Ref, Schema } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { isoSeconds } from "../domain/time.js"
import { readStateFile, writeBehind, writeFileAtomic } from "../io/stateFile.js"

export const SessionRecord = Schema.Struct({
  agent: Schema.String,
  session_id: Schema.String,
  /** The attempt that ran in it. */
  attempt: Schema.Number,
  updated_at: Schema.String
})
export type SessionRecord = typeof SessionRecord.Type

const SessionsFile = Schema.Record({ key: Schema.String, value: SessionRecord })
type SessionsFile = typeof SessionsFile.Type

/** A record older than this belongs to a trigger that is long gone (deleted by hand while queued). */
const KEEP_MS = 30 * 86_400_000

/** At most one write of `sessions.json` per this many ms. */
const WRITE_SPACING_MS = 200

export interface SessionsShape {
  /** The session the trigger's last attempt ran in, if it had one. */
  readonly get: (trigger: string) => Effect.Effect<SessionRecord | undefined>
  /** Records the session an attempt runs in. */
  readonly set: (trigger: string, record: Omit<SessionRecord, "updated_at">) => Effect.Effect<void>
  /** The trigger is done with (archived or dead-lettered). */
  readonly forget: (trigger: string) => Effect.Effect<void>
}

export class Sessions extends Context.Tag("starforge/Sessions")<Sessions, SessionsShape>() {
  /** The project's `C/daemon/sessions.json`; a missing or corrupt file starts empty. */
  static readonly layer = Layer.scoped(
    Sessions,
    Effect.gen(function*() {
      const { paths } = yield* DaemonConfig
      const file = path.join(paths.daemonDir, "sessions.json")
      const read = readStateFile(file, Schema.decodeUnknownEither(Schema.parseJson(SessionsFile)))
      return yield* make(read._tag === "Valid" ? read.value : {}, (records) =>
        writeFileAtomic(file, JSON.stringify(records, null, 2) + "\n").pipe(Effect.catchAll((error) => Effect.logWarning(error.message))))
    })
  )

  /** In memory only, for tests. */
  static readonly memory = (initial: SessionsFile = {}) => Layer.scoped(Sessions, make(initial, () => Effect.void))
}

export const make = (initial: SessionsFile, save: (records: SessionsFile) => Effect.Effect<void>) =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const records = yield* Ref.make<SessionsFile>(
      Object.fromEntries(Object.entries(initial).filter(([, r]) => now - Date.parse(r.updated_at) < KEEP_MS))
    )
    const file = yield* writeBehind(Ref.get(records), save, WRITE_SPACING_MS)
    const change = (f: (all: SessionsFile) => SessionsFile) => Effect.zipRight(Ref.update(records, f), file.changed)
    return {
      get: (trigger) => Effect.map(Ref.get(records), (all) => all[trigger]),
      set: (trigger, record) =>
        Effect.flatMap(Clock.currentTimeMillis, (at) => change((all) => ({ ...all, [trigger]: { ...record, updated_at: isoSeconds(at) } }))),
      forget: (trigger) =>
        Effect.flatMap(Ref.get(records), (all) =>
          trigger in all
            ? change(({ [trigger]: _gone, ...rest }) => rest)
            : Effect.void)
    } satisfies SessionsShape
  })
