#!/usr/bin/env node
// The soak: the real daemon (foreground, parallel) runs for `--minutes` (30 by default) while
// triggers arrive continuously and agents succeed, fail, fail once, time out and leave background
// processes behind, at random (seeded). It samples the daemon's RSS and open file descriptors,
// then checks that every trigger ended exactly once where its kind says (nothing lost), that no
// process is left, and writes the figures to bench/SOAK.md.
//
//   npm run soak                       # 30 minutes
//   npm run soak -- --minutes 3 --seed 7
//
// Not part of CI (it runs for half an hour); the figures it wrote last are in bench/SOAK.md.
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { cleanupAll, installCleanup, machine, makeProject, memory, ourProcesses, sleep, startDaemon, waitFor } from "./lib/harness.mjs"
import { median, seededRandom } from "./lib/stats.mjs"

const { values: options } = parseArgs({
  options: {
    minutes: { type: "string", default: "30" },
    seed: { type: "string", default: String(Date.now() % 100_000) },
    rate: { type: "string", default: "2" },
    out: { type: "string", default: fileURLPath("SOAK.md") }
  }
})

function fileURLPath(name) {
  return new URL(name, import.meta.url).pathname
}

const MINUTES = Number(options.minutes)
const SEED = Number(options.seed)
/** Triggers per second, on average (exponential gaps). */
const RATE = Number(options.rate)
const AGENTS = 20
const CAP = 12
const SAMPLE_MS = 15_000
const random = seededRandom(SEED)

/**
 * The agent does what its trigger's action says: `ok-S` sleeps S s and succeeds, `fail-S` fails
 * every attempt, `flaky-S` fails its first attempt only, `hang` outlives AGENT_TIMEOUT, `bg-S`
 * leaves a background process in its group (the daemon must sweep it). Each writes some output.
 */
const AGENT = `#!/bin/sh
echo "agent $STARFORGE_AGENT_ID attempt $STARFORGE_ATTEMPT: $STARFORGE_ACTION"
case "$STARFORGE_ACTION" in
  ok-*) sleep "\${STARFORGE_ACTION#ok-}" ;;
  fail-*) sleep "\${STARFORGE_ACTION#fail-}"; echo "failing" >&2; exit 3 ;;
  flaky-*) [ "$STARFORGE_ATTEMPT" = 1 ] && exit 2; sleep "\${STARFORGE_ACTION#flaky-}" ;;
  hang) sleep 600 ;;
  bg-*) sleep 900 & sleep "\${STARFORGE_ACTION#bg-}" ;;
esac
echo "agent done"
`

/** Kinds of trigger, their share, and where each must end. */
const KINDS = [
  { kind: "ok", share: 0.7, ends: "done" },
  { kind: "fail", share: 0.08, ends: "dead-letter" },
  { kind: "flaky", share: 0.08, ends: "done" },
  { kind: "hang", share: 0.06, ends: "dead-letter" },
  { kind: "bg", share: 0.08, ends: "done" }
]

const pickKind = () => {
  let r = random()
  for (const k of KINDS) {
    if (r < k.share) return k
    r -= k.share
  }
  return KINDS[0]
}

const seconds = () => (0.1 + random() * 2.9).toFixed(1)

const openFds = (pid) => fs.readdirSync(`/proc/${pid}/fd`).length

const list = (dir, suffix = ".trigger") => {
  try {
    return fs.readdirSync(dir).filter((f) => f.endsWith(suffix))
  } catch {
    return []
  }
}
/** `20261128-071531-soak-000042.trigger` (done), `soak-000042.trigger` (dead letter), or either with `-2` after a name clash → `soak-000042`. */
const nameOf = (archived) => /^(?:\d{8}-\d{6}-)?(soak-\d{6})(-\d+)?\.trigger$/.exec(archived)?.[1] ?? archived

const main = async () => {
  installCleanup()
  const project = makeProject({
    MAX_CONCURRENT_AGENTS: String(CAP),
    AGENT_TIMEOUT: "5",
    AGENT_KILL_GRACE: "1",
    MAX_RETRIES: "3",
    INITIAL_RETRY_DELAY: "1",
    PROCESS_MONITOR_INTERVAL: "5",
    // Small, so logs rotate during the soak and a leak of rotated files would show.
    LOG_MAX_SIZE_MB: "1"
  })
  // The soak's own agent in place of the benchmark's.
  fs.writeFileSync(project.agent, AGENT)
  const { root, triggers } = project
  console.log(`soak: ${MINUTES} min, seed ${SEED}, ~${RATE} triggers/s for ${AGENTS} agents (cap ${CAP}), project ${root}`)
  const daemon = await startDaemon(project)
  const pid = daemon.pid
  // Descriptors while nothing runs, to compare with the same moment after the drain.
  const fdsIdleStart = openFds(pid)

  const expected = new Map()
  let counter = 0
  const produce = (name, action) =>
    project.drop(name, { to_agent: `agent-${Math.floor(random() * AGENTS)}`, action, message: `soak ${name}` })

  const samples = []
  const started = Date.now()
  const endAt = started + MINUTES * 60_000
  let nextSample = started
  let nextTrigger = started
  while (Date.now() < endAt) {
    const now = Date.now()
    if (now >= nextTrigger) {
      const k = pickKind()
      const name = `soak-${String(counter++).padStart(6, "0")}`
      produce(name, k.kind === "hang" ? "hang" : `${k.kind}-${seconds()}`)
      expected.set(name, k.ends)
      nextTrigger += (-Math.log(1 - random()) / RATE) * 1000
    }
    if (now >= nextSample) {
      const s = { t: (now - started) / 1000, ...memory(pid), fds: openFds(pid) }
      samples.push(s)
      console.log(`  ${s.t.toFixed(0).padStart(5)} s  rss ${s.rssMiB.toFixed(1)} MiB  fds ${s.fds}  triggers ${counter}`)
      nextSample += SAMPLE_MS
    }
    await sleep(Math.max(1, Math.min(nextTrigger, nextSample) - Date.now()))
  }

  // Drain: every trigger must reach its end.
  const processed = path.join(triggers, "processed")
  const deadLetter = path.join(triggers, "dead-letter")
  const archivedCount = () => list(processed).length + list(deadLetter).length + list(path.join(processed, "invalid")).length
  await waitFor(() => archivedCount() >= expected.size, { timeoutMs: 300_000, intervalMs: 500, what: "the queue to drain" })
  const last = { t: (Date.now() - started) / 1000, ...memory(pid), fds: openFds(pid) }
  samples.push(last)
  const exit = await daemon.stop()
  await waitFor(() => ourProcesses().length === 0, { timeoutMs: 10_000, what: "every agent process to be gone" }).catch(() => {})
  const leftover = ourProcesses()

  // Where each trigger ended.
  const ended = new Map()
  const seen = (file, where) => {
    const name = nameOf(file)
    ended.set(name, [...(ended.get(name) ?? []), where])
  }
  for (const f of list(processed)) seen(f, "done")
  for (const f of list(deadLetter)) seen(f, "dead-letter")
  for (const f of list(path.join(processed, "invalid"))) seen(f, "invalid")
  const outcomes = { done: 0, "dead-letter": 0, invalid: 0 }
  const problems = []
  for (const [name, want] of expected) {
    const got = ended.get(name) ?? []
    if (got.length !== 1) problems.push(`${name}: archived ${got.length} times (${got.join(", ") || "lost"})`)
    else if (got[0] !== want) problems.push(`${name}: ended as ${got[0]}, expected ${want}`)
    for (const g of got) outcomes[g]++
  }
  const stray = [...ended.keys()].filter((n) => !expected.has(n))
  if (stray.length > 0) problems.push(`archived but never produced: ${stray.join(", ")}`)
  const queued = list(triggers).length + list(triggers, ".processing").length
  if (queued > 0) problems.push(`${queued} files left in the queue`)
  if (leftover.length > 0) problems.push(`processes left: ${leftover.join(", ")}`)
  if (last.fds > fdsIdleStart) problems.push(`open descriptors grew from ${fdsIdleStart} to ${last.fds}`)
  if (exit.code !== 0) problems.push(`the daemon exited with ${exit.code ?? exit.signal}`)

  // Attempts, from the daemon log (every part: it rotates at 1 MiB).
  const logs = path.join(root, ".claude", "logs")
  const logText = fs
    .readdirSync(logs)
    .filter((f) => f.startsWith("daemon.log") && !f.endsWith(".gz"))
    .map((f) => fs.readFileSync(path.join(logs, f), "utf8"))
    .join("")
  const count = (re) => (logText.match(re) ?? []).length
  const attempts = {
    succeeded: count(/\] FINISH: \S+ completed \S+ successfully/g),
    failed: count(/\] FINISH: \S+ (exited with code [1-9]|was killed)/g),
    timedOut: count(/\] TIMEOUT: /g),
    retried: count(/\] RETRY: /g),
    deadLettered: count(/\] DLQ: /g)
  }
  const gzipped = fs.readdirSync(logs).filter((f) => f.endsWith(".gz")).length

  // Memory and descriptors: after a 2-minute warm-up (or the first fifth of a short run) against the end.
  const warm = samples.filter((s) => s.t >= Math.min(120, (MINUTES * 60) / 5))
  const window = Math.max(1, Math.floor(warm.length / 5))
  const early = warm.slice(0, window)
  const late = warm.slice(-window)
  const rssEarly = median(early.map((s) => s.rssMiB))
  const rssLate = median(late.map((s) => s.rssMiB))
  const peak = Math.max(...samples.map((s) => s.peakMiB))

  const { cores: cpu, memoryGiB: mem } = machine()
  const commit = spawnSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).stdout?.trim() || "unknown"
  const verdict = problems.length === 0 ? "PASS" : "FAIL"
  const report = `# Soak results

Written by \`npm run soak\` (bench/soak.mjs) at commit ${commit} on ${new Date().toISOString()}: ${cpu} cores, ${mem} GiB,
Node ${process.versions.node}, load average at the end ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}.

The real daemon ran for ${MINUTES} min (seed ${SEED}) with triggers arriving at ~${RATE}/s for ${AGENTS} agents
(cap ${CAP}, \`AGENT_TIMEOUT=5\`, 3 attempts, \`LOG_MAX_SIZE_MB=1\`). Mix: ${KINDS.map((k) => `${Math.round(k.share * 100)}% ${k.kind}`).join(", ")}.

| figure | value |
|---|---|
| verdict | **${verdict}** |
| triggers produced | ${expected.size} |
| ended done / dead-letter / invalid | ${outcomes.done} / ${outcomes["dead-letter"]} / ${outcomes.invalid} |
| each where its kind says, exactly once | ${problems.length === 0 ? "yes" : `no: ${problems.length} problems`} |
| attempts succeeded / failed / timed out | ${attempts.succeeded} / ${attempts.failed} / ${attempts.timedOut} |
| retries / dead-lettered | ${attempts.retried} / ${attempts.deadLettered} |
| daemon RSS after warm-up → at the end (medians of ${window} samples) | ${rssEarly.toFixed(1)} MiB → ${rssLate.toFixed(1)} MiB (${(rssLate - rssEarly >= 0 ? "+" : "") + (rssLate - rssEarly).toFixed(1)} MiB) |
| daemon peak RSS | ${peak.toFixed(1)} MiB |
| daemon open fds while idle: at start → after the drain | ${fdsIdleStart} → ${last.fds} |
| daemon open fds during the run (min–max) | ${Math.min(...samples.map((s) => s.fds))}–${Math.max(...samples.map((s) => s.fds))} |
| gzipped log parts | ${gzipped} |
| processes left after stop | ${leftover.length} |
| daemon exit | ${exit.code ?? exit.signal} |

${problems.length > 0 ? `Problems:\n\n${problems.slice(0, 50).map((p) => `- ${p}`).join("\n")}\n` : ""}
Samples (every ${SAMPLE_MS / 1000} s): seconds, RSS MiB, open fds

\`\`\`
${samples.map((s) => `${s.t.toFixed(0).padStart(6)} ${s.rssMiB.toFixed(1).padStart(7)} ${String(s.fds).padStart(4)}`).join("\n")}
\`\`\`
`
  fs.writeFileSync(options.out, report)
  console.log(report.split("\n").slice(0, 24).join("\n"))
  console.log(`written to ${options.out}`)
  cleanupAll()
  process.exit(verdict === "PASS" ? 0 : 1)
}

main().catch((error) => {
  console.error(`soak: ${error instanceof Error ? error.message : String(error)}`)
  process.exit(1)
})
