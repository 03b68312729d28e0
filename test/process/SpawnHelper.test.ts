/**
 * The spawn helper process: what happens to it under signals, its death and its closing. The
 * agents it starts are tested like the direct ones in AgentProcess.test.ts.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import * as procfs from "../../src/platform/linux.js"
import { spawnDirect, type SpawnedAgent, type SpawnFailure, type SpawnHelper, startSpawnHelper } from "../../src/process/SpawnHelper.js"

const helpers: Array<SpawnHelper> = []
const pids = new Set<number>()
afterEach(async () => {
  for (const helper of helpers.splice(0)) {
    const pid = helper.pid()
    helper.close()
    if (pid !== undefined) pids.add(pid)
  }
  for (const pid of pids) procfs.signalGroup(pid, "SIGKILL")
  await until(() => [...pids].every((pid) => !procfs.isAlive(pid)), "every process of the test to be gone")
  pids.clear()
})

const until = async (check: () => boolean, what: string, ms = 10_000) => {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

const started = (result: SpawnedAgent | SpawnFailure): SpawnedAgent => {
  if ("failed" in result) throw new Error(`could not start: ${result.failed.message}`)
  pids.add(result.pid)
  return result
}

const run = (helper: SpawnHelper, script: string) =>
  helper.spawn({ command: "/bin/sh", args: ["-c", script], cwd: os.tmpdir(), env: { PATH: process.env["PATH"]! } }).then(started)

/** Everything a pipe gives until its end (which may have come already: a handed-over pipe). */
const readAll = (stream: NodeJS.ReadableStream & { readableEnded: boolean }) =>
  new Promise<string>((resolve) => {
    let out = ""
    if (stream.readableEnded) return resolve(out)
    stream.on("data", (d) => (out += d))
    stream.once("end", () => resolve(out))
  })

/** Everything the agent wrote on stdout, and its exit. */
const outcome = (agent: SpawnedAgent) =>
  Promise.all([
    readAll(agent.stdout),
    new Promise<[number | null, string | null]>((resolve) => agent.onExit((code, signal) => resolve([code, signal]))),
    readAll(agent.stderr)
  ])

/**
 * Blocks this process's event loop (nothing is read from the helper meanwhile) until `check()`,
 * then a little longer: time for the helper to report what it saw.
 */
const blockUntil = (check: () => boolean, what: string, ms = 10_000) => {
  const deadline = Date.now() + ms
  const pause = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    pause(5)
  }
  pause(100)
}

/** The agent that wrote its pid to `dir/pid` has exited and been reaped by its parent, the helper. */
const exitedAgent = (dir: string) => {
  const text = fs.existsSync(path.join(dir, "pid")) ? fs.readFileSync(path.join(dir, "pid"), "utf8") : ""
  return text.endsWith("\n") && !fs.existsSync(`/proc/${text.trim()}`)
}

const newHelper = (options?: Parameters<typeof startSpawnHelper>[1]) => {
  const helper = startSpawnHelper(procfs.isAlive, options)
  helpers.push(helper)
  // Killed after the test whatever happened to it (a helper a test stopped cannot exit by itself).
  const pid = helper.pid()
  if (pid !== undefined) pids.add(pid)
  return helper
}

describe("spawn helper", { timeout: 20_000 }, () => {
  it("starts agents in groups of their own and reports their exit; a missing command is a failure with its errno code", async () => {
    const helper = newHelper()
    const agent = await run(helper, "echo $$; exit 7")
    const [out, exit] = await outcome(agent)
    expect(out.trim()).toBe(String(agent.pid))
    expect(exit).toEqual([7, null])
    const missing = await helper.spawn({ command: "/nonexistent/agent", args: [], cwd: os.tmpdir(), env: {} })
    expect("failed" in missing && missing.failed.code).toBe("ENOENT")
  })

  it("ignores SIGINT, SIGTERM and SIGHUP (a Ctrl-C in the daemon's terminal) and keeps working", async () => {
    const helper = newHelper()
    await outcome(await run(helper, "true"))
    const pid = helper.pid()!
    for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.kill(pid, signal)
    const [out] = await outcome(await run(helper, "echo still here"))
    expect(out).toBe("still here\n")
    expect(helper.pid()).toBe(pid)
  })

  it("dies: a running agent loses the rest of its output (its next write fails) and its end is still reported (status unknown); the next agent gets a new helper", async () => {
    const helper = newHelper()
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-helper-"))
    // The agent notes its write failing (SIGPIPE ignored, so the write fails with EPIPE instead of killing it).
    const agent = await run(helper, `trap '' PIPE; echo started; while [ ! -e ${dir}/go ]; do sleep 0.05; done; echo done || echo lost > ${dir}/lost`)
    let out = ""
    agent.stdout.on("data", (d) => (out += d))
    const ended = new Promise<[number | null, string | null]>((resolve) => agent.onExit((code, signal) => resolve([code, signal])))
    await until(() => out !== "", "the first line to arrive")
    const first = helper.pid()!
    process.kill(first, "SIGKILL")
    await until(() => !procfs.isAlive(first), "the helper to die")
    // The agent still runs until it writes again: only the helper read its pipes.
    expect(procfs.isAlive(agent.pid)).toBe(true)
    fs.writeFileSync(path.join(dir, "go"), "")
    const exit = await ended
    expect(out).toBe("started\n")
    expect(exit).toEqual([null, "unknown (the spawn helper process died)"])
    expect(fs.readFileSync(path.join(dir, "lost"), "utf8")).toBe("lost\n")
    const [again] = await outcome(await run(helper, "echo again"))
    expect(again).toBe("again\n")
    expect(helper.pid()).not.toBe(first)
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it("a daemon that reads nothing for a while still gets the agent's output, its pipes' ends and its exit", async () => {
    const helper = newHelper()
    await outcome(await run(helper, "true"))
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-helper-"))
    const request = run(helper, `echo $$ > ${dir}/pid; echo out; echo err >&2; exit 5`)
    // This process reads nothing meanwhile: the agent starts, writes, exits and is reaped, and
    // everything the helper forwards waits for us.
    blockUntil(() => exitedAgent(dir), "the agent to start and be reaped")
    const agent = await request
    const [out, exit, err] = await outcome(agent)
    expect([out, exit, err]).toEqual(["out\n", [5, null], "err\n"])
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it("dies after reporting an exit: the exit stands and the agent is not started again", async () => {
    const helper = newHelper()
    await outcome(await run(helper, "true"))
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-helper-"))
    const request = run(helper, `echo $$ >> ${dir}/pid; exit 4`)
    blockUntil(() => exitedAgent(dir), "the agent to start and be reaped")
    const pid = helper.pid()!
    process.kill(pid, "SIGKILL")
    const [, exit] = await outcome(await request)
    expect(exit).toEqual([4, null])
    expect(fs.readFileSync(path.join(dir, "pid"), "utf8").trim().split("\n")).toHaveLength(1)
    await until(() => helper.pid() === undefined, "the helper's death to be seen")
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it("forwards a large output whole and in order, whatever the reads split", async () => {
    const helper = newHelper()
    // 20,000 numbered lines on each stream, interleaved by the agent.
    const agent = await run(helper, `i=0; while [ $i -lt 20000 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done`)
    const [out, exit, err] = await outcome(agent)
    const expected = (name: string) => Array.from({ length: 20_000 }, (_, i) => `${name} ${i}\n`).join("")
    expect(exit).toEqual([0, null])
    expect(out).toBe(expected("out"))
    expect(err).toBe(expected("err"))
  })

  it("a daemon that reads nothing holds the agent back on its full pipe: the helper does not pile its output up", async () => {
    const helper = newHelper()
    await outcome(await run(helper, "true"))
    const helperPid = helper.pid()!
    const rssMiB = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${helperPid}/status`, "utf8"))![1]) / 1024
    const before = rssMiB()
    // 64 MiB, as fast as the pipe takes it.
    const agent = await run(helper, "head -c 67108864 /dev/zero")
    // This process reads nothing until the agent has been asleep (blocked writing) for 10 looks in a row.
    let asleep = 0
    blockUntil(() => {
      asleep = procfs.readStat(agent.pid)?.state === "S" ? asleep + 1 : 0
      return asleep >= 10
    }, "the agent to block on its full pipe")
    expect(rssMiB() - before).toBeLessThan(32)
    let received = 0
    agent.stdout.on("data", (d: Buffer) => (received += d.length))
    const [, exit] = await outcome(agent)
    expect(exit).toEqual([0, null])
    expect(received).toBe(64 * 1024 * 1024)
  })

  it("a pipe the daemon stops reading before its end (an escaped process holds it) is closed: its writer's next write fails", async () => {
    const helper = newHelper()
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-helper-"))
    // The agent exits at once; its background child keeps writing to the inherited stdout.
    const agent = await run(helper, `(trap '' PIPE; while echo tick; do sleep 0.05; done; echo closed > ${dir}/closed) & echo $! > ${dir}/child`)
    await until(() => agent.stdout.readableLength > 0, "the first tick")
    pids.add(Number(fs.readFileSync(path.join(dir, "child"), "utf8")))
    agent.stdout.destroy()
    agent.stderr.destroy()
    await until(() => fs.existsSync(path.join(dir, "closed")), "the background writer to see its pipe closed")
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it("dies with a request unanswered: the agent is started directly instead, once", async () => {
    const helper = newHelper()
    await outcome(await run(helper, "true"))
    const pid = helper.pid()!
    // Stopped, it cannot take the request; then it dies.
    process.kill(pid, "SIGSTOP")
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-helper-"))
    // Whether the request is still being sent or waits in the channel, the answer is the same.
    const request = run(helper, `echo once >> ${dir}/runs; echo direct`)
    process.kill(pid, "SIGKILL")
    const [out, exit] = await outcome(await request)
    expect(out).toBe("direct\n")
    expect(exit).toEqual([0, null])
    expect(fs.readFileSync(path.join(dir, "runs"), "utf8")).toBe("once\n")
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it("close: the helper has exited when close() resolves, and agents still running are left alone", async () => {
    const helper = newHelper()
    const agent = await run(helper, "sleep 30")
    const pid = helper.pid()!
    await helper.close()
    // Not a moment later: a daemon that has stopped leaves no helper behind.
    expect(procfs.isAlive(pid)).toBe(false)
    expect(procfs.isAlive(agent.pid)).toBe(true)
    await helper.close()
  })

  it("close: a helper that does not exit (stopped) is killed", async () => {
    const helper = newHelper()
    await outcome(await run(helper, "true"))
    const pid = helper.pid()!
    process.kill(pid, "SIGSTOP")
    await helper.close()
    expect(procfs.isAlive(pid)).toBe(false)
  })
})

/** The pids of the helper's children that are standbys (not yet an agent). */
const standbyPids = (helperPid: number): Array<number> =>
  fs.readdirSync("/proc").filter((entry) => /^\d+$/.test(entry)).map(Number).filter((pid) => {
    const stat = procfs.readStat(pid)
    if (stat === undefined || stat.ppid !== helperPid) return false
    try {
      return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").startsWith("starforge-agent-standby\0")
    } catch {
      return false
    }
  })

/**
 * An agent that reports, as JSON on stdout, what it was started with: its arguments (with the
 * name it was given), environment, directory, stdin, process group and session, the signals it
 * blocks and ignores, and its umask.
 */
const REPORTER = `
const fs = require("node:fs")
const stat = fs.readFileSync("/proc/self/stat", "utf8")
const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
const status = Object.fromEntries(fs.readFileSync("/proc/self/status", "utf8").split("\\n").map((line) => line.split(":\\t")))
process.stdout.write(JSON.stringify({
  signals: { blocked: status.SigBlk, ignored: status.SigIgn }, umask: status.Umask,
  argv0: process.argv0, args: process.argv.slice(1), env: process.env, cwd: process.cwd(),
  stdin: fs.readFileSync(0, "utf8"), stdinIsDevice: fs.fstatSync(0).isCharacterDevice(), pgid: Number(fields[2]), sid: Number(fields[3])
}))
`

/** Starts the reporter and returns what it reported, with its pid. */
const report = async (spawnAgent: SpawnHelper["spawn"], request: { env: Record<string, string>; args?: Array<string>; cwd?: string }) => {
  const agent = started(await spawnAgent({ command: process.execPath, args: ["-e", REPORTER, ...(request.args ?? [])], cwd: request.cwd ?? os.tmpdir(), env: request.env }))
  const [out, exit, err] = await outcome(agent)
  expect([exit, err]).toEqual([[0, null], ""])
  return { pid: agent.pid, seen: JSON.parse(out) as { signals: { blocked: string; ignored: string }; umask: string; argv0: string; args: Array<string>; env: Record<string, string>; cwd: string; stdin: string; stdinIsDevice: boolean; pgid: number; sid: number } }
}

describe("spawn helper: standbys", { timeout: 20_000 }, () => {
  /**
   * Waits for `count` standbys; each is killed after the test whatever happens (one stopped by a
   * test that fails would not see its helper's end).
   */
  const ready = async (helper: SpawnHelper, count: number) => {
    await until(() => helper.standbys().works === true && helper.standbys().ready === count && standbyPids(helper.pid()!).length === count, `${count} standbys`)
    for (const pid of standbyPids(helper.pid()!)) pids.add(pid)
  }

  it("keeps as many standbys as asked, each leading a session of its own, and starts an agent from one exactly as a spawn would", async () => {
    const helper = newHelper({ standbys: 2 })
    await ready(helper, 2)
    const before = standbyPids(helper.pid()!)
    for (const pid of before) expect(procfs.readStat(pid)).toMatchObject({ pgid: pid, sid: pid })
    // Values a shell would change if it did not quote them, names it sets itself, an empty value.
    const env = {
      PATH: process.env["PATH"]!,
      QUOTES: `it's "here" \`date\` $HOME \\ *`,
      LINES: "one\ntwo\n",
      EMPTY: "",
      PWD: "/not/the/directory",
      OLDPWD: "/before",
      IFS: ":"
    }
    const args = ["it's", "two\nlines", "", "$(date)", "*", "-"]
    const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "starforge-standby-")))
    const fromStandby = await report(helper.spawn, { env, args, cwd: dir })
    expect(before).toContain(fromStandby.pid)
    const spawned = await report(spawnDirect, { env, args, cwd: dir })
    expect(fromStandby.seen).toEqual({ ...spawned.seen, pgid: fromStandby.pid, sid: fromStandby.pid })
    expect(spawned.seen).toMatchObject({ args, env, cwd: dir, stdin: "", stdinIsDevice: true, pgid: spawned.pid, sid: spawned.pid })
    expect(spawned.seen.signals.ignored).toMatch(/^[0-9a-f]{16}$/)
    expect(spawned.seen.umask).toMatch(/^[0-7]{4}$/)
    // The pool is made whole again.
    await until(() => helper.standbys().ready === 2 && standbyPids(helper.pid()!).filter((pid) => !before.includes(pid)).length === 1, "a new standby")
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it("spawns directly where a standby would not do the same: a missing or non-executable command, a missing directory, a name a shell cannot export, OPTIND", async () => {
    const helper = newHelper({ standbys: 1 })
    await ready(helper, 1)
    const [standby] = standbyPids(helper.pid()!)
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "starforge-standby-"))
    const notExecutable = path.join(dir, "agent")
    fs.writeFileSync(notExecutable, "#!/bin/sh\n")
    const failure = async (request: Parameters<SpawnHelper["spawn"]>[0]) => {
      const result = await helper.spawn(request)
      if (!("failed" in result)) throw new Error(`started: ${request.command}`)
      return result.failed.code
    }
    const PATH = process.env["PATH"]!
    expect(await failure({ command: "/nonexistent/agent", args: [], cwd: dir, env: { PATH } })).toBe("ENOENT")
    expect(await failure({ command: "starforge-no-such-agent", args: [], cwd: dir, env: { PATH } })).toBe("ENOENT")
    expect(await failure({ command: notExecutable, args: [], cwd: dir, env: { PATH } })).toBe("EACCES")
    expect(await failure({ command: process.execPath, args: [], cwd: path.join(dir, "missing"), env: { PATH } })).toBe("ENOENT")
    for (const env of [{ PATH, "NOT-A-NAME": "x" }, { PATH, OPTIND: "not a number" }] as Array<Record<string, string>>) {
      const { pid, seen } = await report(helper.spawn, { env })
      expect(pid).not.toBe(standby)
      expect(seen.env).toEqual(env)
    }
    // The standby was left for the next agent that it can start.
    expect(standbyPids(helper.pid()!)).toEqual([standby])
    expect((await report(helper.spawn, { env: { PATH } })).pid).toBe(standby)
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it.skipIf(!fs.existsSync("/bin/bash"))("a shell that adds to the environment (bash adds SHLVL) fails the self-test: no standby, every agent is spawned", async () => {
    const helper = newHelper({ standbys: 2, shell: "/bin/bash" })
    await until(() => helper.standbys().works === false, "the self-test to fail")
    const { seen } = await report(helper.spawn, { env: { PATH: process.env["PATH"]! } })
    expect(seen.env).toEqual({ PATH: process.env["PATH"] })
    expect(helper.standbys().ready).toBe(0)
    expect(standbyPids(helper.pid()!)).toEqual([])
  })

  it("a standby stopped or killed while it waits is not given an agent, and is replaced", async () => {
    const helper = newHelper({ standbys: 2 })
    const PATH = process.env["PATH"]!
    await ready(helper, 2)
    // Stopped: it would never run the agent. The helper passes over it (and kills it).
    const stopped = standbyPids(helper.pid()!)
    for (const pid of stopped) process.kill(pid, "SIGSTOP")
    await until(() => stopped.every((pid) => procfs.readStat(pid)?.state === "T"), "the standbys to stop")
    expect(stopped).not.toContain((await report(helper.spawn, { env: { PATH } })).pid)
    await until(() => stopped.every((pid) => !procfs.isAlive(pid)), "the stopped standbys to be killed")
    await ready(helper, 2)
    // Killed: once they are dead, the next agent starts, whether the helper has reaped them yet
    // or not (one killed as it is given an agent is not told apart: that agent ends killed).
    const killed = standbyPids(helper.pid()!)
    for (const pid of killed) process.kill(pid, "SIGKILL")
    await until(() => killed.every((pid) => !procfs.isAlive(pid)), "the killed standbys to be dead")
    expect(killed).not.toContain((await report(helper.spawn, { env: { PATH } })).pid)
    await ready(helper, 2)
    expect(standbyPids(helper.pid()!).filter((pid) => [...stopped, ...killed].includes(pid))).toEqual([])
  })

  it("close: the standbys are gone when close() resolves; a helper killed leaves none either (their script ends)", async () => {
    const closed = newHelper({ standbys: 3 })
    await ready(closed, 3)
    const closedStandbys = standbyPids(closed.pid()!)
    await closed.close()
    for (const pid of closedStandbys) expect(procfs.isAlive(pid)).toBe(false)
    const killed = newHelper({ standbys: 3 })
    await ready(killed, 3)
    const killedStandbys = standbyPids(killed.pid()!)
    process.kill(killed.pid()!, "SIGKILL")
    await until(() => killedStandbys.every((pid) => !procfs.isAlive(pid)), "the killed helper's standbys to end")
  })

  it("standbys: 0 keeps none", async () => {
    const helper = newHelper({ standbys: 0 })
    const [out] = await outcome(await run(helper, "echo spawned"))
    expect(out).toBe("spawned\n")
    expect(helper.standbys()).toEqual({ ready: 0, works: null })
    expect(standbyPids(helper.pid()!)).toEqual([])
  })
})
