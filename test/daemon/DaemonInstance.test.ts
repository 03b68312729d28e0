/**
 * One daemon per project: the lock of `DaemonInstance.layer`, its `probe` and the pid file, on a
 * real temporary project, with each platform layer's lock (Linux: an abstract socket; POSIX: a
 * socket file, taken over when its holder died).
 */
import { spawn } from "node:child_process"
import { once } from "node:events"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import * as Linux from "../../src/platform/linux.js"
import * as Posix from "../../src/platform/posix.js"
import { DaemonConfig } from "../../src/config/DaemonConfig.js"
import { type ProjectPaths, projectPaths } from "../../src/domain/ProjectPaths.js"
import { DaemonInstance, probe } from "../../src/daemon/DaemonInstance.js"

const tempProject = Effect.acquireRelease(
  Effect.sync(() => projectPaths(fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "starforge-instance-"))))),
  (paths) => Effect.sync(() => fs.rmSync(paths.root, { recursive: true, force: true }))
)

const PLATFORMS = [["linux", Linux], ["posix", Posix]] as const

describe.each(PLATFORMS)("DaemonInstance on the %s layer", (_name, platform) => {
const instanceLayer = (paths: ProjectPaths) =>
  DaemonInstance.layer.pipe(Layer.provide(Layer.merge(DaemonConfig.layerSettings(paths.root, {}), platform.layer)))
const probeEffect = (paths: ProjectPaths, timeoutMs?: number) => Effect.provide(probe(paths, timeoutMs), platform.layer)

/** Acquires the lock in a scope of its own; the test's scope closes it if the test fails. */
const acquire = (paths: ProjectPaths) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const context = yield* Layer.buildWithScope(instanceLayer(paths), scope)
    return { hello: Context.get(context, DaemonInstance), release: Scope.close(scope, Exit.void) }
  })

describe("the lock", { timeout: 15_000 }, () => {
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
      expect(platform.lockAddress(one.root)).not.toBe(platform.lockAddress(two.root))
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
      expect(yield* probeEffect(paths, 2_000)).toBeUndefined()
      expect(Date.now() - started).toBeLessThan(1_000)
    }))
})
})

describe("the POSIX lock's socket file", { timeout: 15_000 }, () => {
  const instanceLayer = (paths: ProjectPaths) =>
    DaemonInstance.layer.pipe(Layer.provide(Layer.merge(DaemonConfig.layerSettings(paths.root, {}), Posix.layer)))

  it.scopedLive("a socket file left by a holder that was killed is taken over", () =>
    Effect.gen(function*() {
      const paths = yield* tempProject
      const address = Posix.lockAddress(paths.root)
      fs.mkdirSync(path.dirname(address), { recursive: true })
      // A holder in another process, SIGKILLed: its socket file stays, nobody listens on it.
      const holder = spawn(process.execPath, ["-e", `require("net").createServer().listen(${JSON.stringify(address)}, () => console.log("up"))`], { stdio: ["ignore", "pipe", "inherit"] })
      yield* Effect.promise(() => once(holder.stdout!, "data"))
      holder.kill("SIGKILL")
      yield* Effect.promise(() => once(holder, "exit"))
      expect(fs.statSync(address).isSocket()).toBe(true)
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(instanceLayer(paths), scope)
      expect((yield* Effect.provide(probe(paths), Posix.layer))?.pid).toBe(Context.get(context, DaemonInstance).pid)
      yield* Scope.close(scope, Exit.void)
      // The file goes with the lock.
      expect(fs.existsSync(address)).toBe(false)
    }))

  it("a project path too long for a socket address gets a short one outside the project", () => {
    const root = "/" + "deep-directory/".repeat(8) + "project"
    expect(Buffer.byteLength(Posix.lockAddress(root))).toBeLessThanOrEqual(Posix.MAX_SOCKET_PATH_BYTES)
    expect(Posix.lockAddress(root)).toMatch(/^\/tmp\/starforge-\d+\/[0-9a-f]{40}\.sock$/)
    expect(Posix.lockAddress("/home/me/project")).toBe("/home/me/project/.claude/daemon/daemon.sock")
  })
})
