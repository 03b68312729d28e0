/**
 * One daemon per project: the abstract-socket lock of `DaemonInstance.layer`, its `probe` and
 * the pid file, on a real temporary project.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import { DaemonConfig } from "../../src/config/DaemonConfig.js"
import { type ProjectPaths, projectPaths } from "../../src/domain/ProjectPaths.js"
import { DaemonInstance, probe, probeEffect, socketName } from "../../src/daemon/DaemonInstance.js"

const tempProject = Effect.acquireRelease(
  Effect.sync(() => projectPaths(fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "starforge-instance-"))))),
  (paths) => Effect.sync(() => fs.rmSync(paths.root, { recursive: true, force: true }))
)

const instanceLayer = (paths: ProjectPaths) =>
  DaemonInstance.layer.pipe(Layer.provide(DaemonConfig.layerSettings(paths.root, {})))

/** Acquires the lock in a scope of its own; the test's scope closes it if the test fails. */
const acquire = (paths: ProjectPaths) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const context = yield* Layer.buildWithScope(instanceLayer(paths), scope)
    return { hello: Context.get(context, DaemonInstance), release: Scope.close(scope, Exit.void) }
  })

describe("DaemonInstance", { timeout: 15_000 }, () => {
  it.scopedLive("holds the lock, writes the pid file and answers probe; all undone when the scope closes", () =>
    Effect.gen(function*() {
      const paths = yield* tempProject
      expect(yield* probeEffect(paths)).toBeUndefined()
      const before = Date.now()
      const { hello, release } = yield* acquire(paths)
      expect(hello.pid).toBe(process.pid)
      expect(hello.project).toBe(paths.root)
      expect(Date.parse(hello.started)).toBeGreaterThanOrEqual(before - 1)

      expect(fs.readFileSync(paths.pidFile, "utf8")).toBe(`${process.pid}\n`)
      expect(yield* probeEffect(paths)).toEqual(hello)

      yield* release
      expect(fs.existsSync(paths.pidFile)).toBe(false)
      expect(yield* probeEffect(paths)).toBeUndefined()
    }))

  it.scopedLive("a second acquisition for the same project fails with DaemonAlreadyRunning and the holder's pid", () =>
    Effect.gen(function*() {
      const paths = yield* tempProject
      const { hello, release } = yield* acquire(paths)
      const error = yield* Effect.flip(acquire(paths))
      if (error._tag !== "DaemonAlreadyRunning") throw new Error(`unexpected ${error._tag}`)
      expect(error.pid).toBe(hello.pid)
      expect(error.pid).toBe(process.pid)
      expect(error.message).toBe(`Daemon already running (PID: ${process.pid})`)
      // The loser leaves the holder's lock and pid file alone.
      expect(yield* probeEffect(paths)).toEqual(hello)
      expect(fs.readFileSync(paths.pidFile, "utf8")).toBe(`${process.pid}\n`)

      // Once released, the project can be locked again.
      yield* release
      const again = yield* acquire(paths)
      expect(yield* probeEffect(paths)).toEqual(again.hello)
      yield* again.release
    }))

  it.scopedLive("different projects have different locks", () =>
    Effect.gen(function*() {
      const one = yield* tempProject
      const two = yield* tempProject
      expect(socketName(one)).not.toBe(socketName(two))
      const a = yield* acquire(one)
      const b = yield* acquire(two)
      expect((yield* probeEffect(one))?.project).toBe(one.root)
      expect((yield* probeEffect(two))?.project).toBe(two.root)
      yield* a.release
      expect(yield* probeEffect(one)).toBeUndefined()
      expect((yield* probeEffect(two))?.project).toBe(two.root)
      yield* b.release
    }))

  it.scopedLive("the pid file is left alone at release when it names another process", () =>
    Effect.gen(function*() {
      const paths = yield* tempProject
      const { release } = yield* acquire(paths)
      fs.writeFileSync(paths.pidFile, "1\n")
      yield* release
      expect(fs.readFileSync(paths.pidFile, "utf8")).toBe("1\n")
    }))

  it.live("probe of a project without a daemon answers undefined quickly", () =>
    Effect.gen(function*() {
      const paths = projectPaths(path.join(os.tmpdir(), `starforge-no-daemon-${process.pid}-${Date.now()}`))
      const started = Date.now()
      expect(yield* Effect.promise(() => probe(paths, 2_000))).toBeUndefined()
      expect(Date.now() - started).toBeLessThan(1_000)
    }))
})
