#!/usr/bin/env node
// Benchmarks of the real daemon (issue 4): measure, never assert.
//
//   npm run bench                 quick mode, every workload (under 5 minutes)
//   npm run bench -- --full       the large sizes and more repetitions
//   npm run bench -- B3 B7        only these workloads (for profiling); RESULTS.md is left alone
//   npm run bench -- --runs 1     override the repetitions of the workloads that repeat
//
// Every figure is compared with a baseline measured in the same run (or a bound computed from
// the workload), and printed with its target and whether it was met. A full run of every
// workload writes bench/RESULTS.md. Whatever happens (failure, Ctrl-C), every process the run
// started is stopped and every temporary directory removed: the processes after each workload,
// the directories when the run ends (why: `cleanupAll` in lib/harness.mjs).
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { BIN, fileCreateMs, installCleanup, machine, settleFileCreation, stopAll } from "./lib/harness.mjs"
import { fmt, markdownTable } from "./lib/stats.mjs"
import { WORKLOADS } from "./workloads.mjs"

const usage = "usage: npm run bench -- [--full] [--runs N] [B1 ... B8]"
const args = process.argv.slice(2)
let mode = "quick"
let runsOverride
const selected = []
for (let i = 0; i < args.length; i++) {
  const a = args[i]
  if (a === "--full") mode = "full"
  else if (a === "--quick") mode = "quick"
  else if (a === "--runs") runsOverride = Number(args[++i])
  else if (a === "--help" || a === "-h") {
    console.log(usage)
    process.exit(0)
  } else if (/^b[1-8]$/i.test(a)) selected.push(a.toUpperCase())
  else {
    console.error(`bench: unknown argument ${a}\n${usage}`)
    process.exit(2)
  }
}
if (runsOverride !== undefined && !(Number.isInteger(runsOverride) && runsOverride > 0)) {
  console.error(`bench: --runs needs a positive integer\n${usage}`)
  process.exit(2)
}

if (!fs.existsSync(BIN)) {
  console.error(`bench: ${BIN} is missing: run 'npm run build' first`)
  process.exit(1)
}
const srcDir = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "src")
const newestSource = Math.max(...fs.readdirSync(srcDir, { recursive: true }).map((f) => fs.statSync(path.join(srcDir, f)).mtimeMs))
if (newestSource > fs.statSync(BIN).mtimeMs) console.error("bench: warning: src/ is newer than dist/bin.cjs; run 'npm run build' to measure the current code")

installCleanup()

const workloads = WORKLOADS.filter((w) => selected.length === 0 || selected.includes(w.id))
const plans = workloads.map((w) => {
  const plan = w.plan(mode)
  if (runsOverride !== undefined && "runs" in plan) plan.runs = runsOverride
  return plan
})
const expected = plans.reduce((sum, plan, i) => sum + workloads[i].estimateSeconds(plan), 0)
const m = machine()
const loadText = (l) => l.map((x) => x.toFixed(2)).join(", ")
console.log(`starforge benchmarks, ${mode} mode: ${workloads.map((w) => w.id).join(" ")}`)
console.log(`machine: ${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB, Node ${m.node}; load average ${loadText(m.load)}`)
const settled = await settleFileCreation((line) => console.log(line))
const createBefore = settled.createMs
console.log(
  `creating one file (median of 100, as the daemon creates each job's log): ${fmt(createBefore, 3)} ms` +
    (settled.waitedSeconds > 0 ? ` after waiting ${fmt(settled.waitedSeconds, 0)} s` : "")
)
console.log(`expected duration: about ${Math.ceil(expected / 60)} min (${Math.round(expected)} s on an idle machine)`)

const started = Date.now()
const results = []
let failed = false
for (const [i, workload] of workloads.entries()) {
  const t0 = Date.now()
  console.log(`\n${workload.id}: ${workload.title}`)
  try {
    const result = await workload.run(plans[i], (line) => console.log(`  ${line}`))
    results.push({ workload, ...result, seconds: (Date.now() - t0) / 1000 })
    for (const r of result.rows) console.log(`  ${r.figure}: ${r.measured} (target ${r.target}: ${r.verdict}) [${r.baseline}]`)
    for (const n of result.notes) console.log(`  ${n}`)
  } catch (error) {
    failed = true
    console.error(`  ${workload.id} failed: ${error instanceof Error ? error.stack : String(error)}`)
    results.push({ workload, rows: [{ figure: "(failed)", measured: "—", baseline: String(error?.message ?? error).split("\n")[0], target: "—", verdict: "failed" }], notes: [], seconds: (Date.now() - t0) / 1000 })
  }
  stopAll()
}
const loadAfter = os.loadavg()
const createAfter = fileCreateMs()
const took = (Date.now() - started) / 1000

const header = ["#", "figure", "measured", "baseline / details", "target", "result"]
const rows = results.flatMap(({ workload, rows: rs }) => rs.map((r) => [workload.id, r.figure, r.measured, r.baseline, r.target, r.verdict]))
console.log(`\n${markdownTable(header, rows)}`)
console.log(`\ntook ${fmt(took, 0)} s; load average before ${loadText(m.load)}, after ${loadText(loadAfter)}; creating one file ${fmt(createBefore, 3)} ms before, ${fmt(createAfter, 3)} ms after`)

if (selected.length === 0) {
  const notes = results.flatMap((r) => r.notes)
  const text = [
    "# Benchmark results",
    "",
    `Written by \`npm run bench${mode === "full" ? " -- --full" : ""}\` on ${new Date().toISOString()}.`,
    "",
    `Machine: ${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB memory, Node ${m.node}. ` +
      `Load average (1, 5, 15 min) before the run: ${loadText(m.load)}; after: ${loadText(loadAfter)}. Run time ${fmt(took, 0)} s. ` +
      `Creating one empty file (median of 100), as the daemon creates each job's log: ${fmt(createBefore, 3)} ms before the run` +
      (settled.waitedSeconds > 0 ? ` (after waiting ${fmt(settled.waitedSeconds, 0)} s for it to settle)` : "") +
      `, ${fmt(createAfter, 3)} ms after ` +
      "(on ext4 without a journal it grows with the files deleted in the last minutes; see `cleanupAll` in `bench/lib/harness.mjs`).",
    "",
    markdownTable(header, rows),
    "",
    ...(notes.length > 0 ? ["Notes:", "", ...notes.map((n) => `- ${n}`), ""] : []),
    "How to read it: every figure is a median of several runs or a ratio against a baseline measured in the same run,",
    "because absolute times on a shared machine are noise. The workloads are described in `bench/workloads.mjs` and issue 4.",
    ""
  ].join("\n")
  fs.writeFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), "RESULTS.md"), text)
  console.log("wrote bench/RESULTS.md")
} else {
  console.log("(a selection of workloads: bench/RESULTS.md is left alone)")
}
process.exitCode = failed ? 1 : 0
