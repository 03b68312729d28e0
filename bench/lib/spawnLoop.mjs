// The floor of B4: a bare Node process (no Effect, no trigger files, no logs) that starts the
// agent `count` times, `concurrency` at a time, the way the daemon starts agents (own process
// group, stdin closed, stdout and stderr pipes drained). Node's child_process forks (libuv 1.46
// on Linux), and a fork copies the page tables of the parent's anonymous memory, so its cost grows
// with the parent's resident size: `ballastMiB` of touched memory makes this process as large as
// the daemon was. Prints one JSON line: { rssMiB, spawnMs } (its resident size while spawning,
// and the median time of one synchronous spawn() call: the fork, and the wait for the child's exec).
//
// With an <output> file, the agents' stdout and stderr are that one file, opened once, instead of
// pipes: what the pipes cost is the difference.
//
//   node spawnLoop.mjs <count> <concurrency> <ballastMiB> <agent> [<output>]
import { spawn } from "node:child_process"
import * as fs from "node:fs"

const [count, concurrency, ballastMiB] = process.argv.slice(2, 5).map(Number)
const agent = process.argv[5]
const output = process.argv[6] === undefined ? undefined : fs.openSync(process.argv[6], "a")
const stdio = output === undefined ? ["ignore", "pipe", "pipe"] : ["ignore", output, output]
const ballast = []
for (let i = 0; i < ballastMiB; i++) ballast.push(Buffer.alloc(1 << 20, 1))
let started = 0
let ended = 0
let rss = 0
const spawnMs = []
await new Promise((resolve, reject) => {
  const next = () => {
    if (started >= count) return
    started++
    const t0 = performance.now()
    const child = spawn(agent, [], { detached: true, stdio })
    spawnMs.push(performance.now() - t0)
    child.stdout?.on("data", () => {})
    child.stderr?.on("data", () => {})
    child.once("error", reject)
    child.once("exit", () => {
      rss = Math.max(rss, process.memoryUsage.rss())
      if (++ended === count) resolve()
      else next()
    })
  }
  for (let i = 0; i < concurrency; i++) next()
})
spawnMs.sort((a, b) => a - b)
console.log(JSON.stringify({ rssMiB: rss / 2 ** 20, spawnMs: spawnMs[Math.floor(spawnMs.length / 2)], ballastMiB: ballast.length }))
