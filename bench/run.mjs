#!/usr/bin/env node
// Benchmarks of the real daemon (issue 4), before and after (issue 20): measure, never assert.
// Run `npm run bench -- --help` for the options.
//
// Every workload runs the daemon of each variant (lib/variants.mjs: this checkout's build on the
// linux and the posix platform layer, and a baseline build of an earlier commit) in the same run,
// interleaved where it repeats. Every figure is compared with a baseline measured in the same run
// (or a bound computed from the workload), and printed with its target and whether it was met,
// per variant. A run of every workload writes bench/RESULTS.md, the variants side by side. Whatever
// happens (failure, Ctrl-C), every process the run started is stopped and every temporary
// directory removed: the processes after each workload, the directories when the run ends (why:
// `cleanupAll` in lib/harness.mjs).
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { BIN, fileCreateMs, installCleanup, machine, settleFileCreation, stopAll } from "./lib/harness.mjs"
import { fmt, markdownTable } from "./lib/stats.mjs"
import { defaultBaselineRef, loadVariants, VARIANT_NAMES } from "./lib/variants.mjs"
import { B10 } from "./dashboard.mjs"
import { WORKLOADS } from "./workloads.mjs"

const HERE = path.dirname(fileURLToPath(import.meta.url))
const RESULTS = path.join(HERE, "RESULTS.md")

const usage = `usage: npm run bench -- [options] [B1 ... B10]

  (no option)          quick mode, every workload, every variant; writes bench/RESULTS.md
  --full               the large sizes and more repetitions
  B3 B7 ...            only these workloads (bench/RESULTS.md is left alone); B10 is bench/dashboard.mjs
  --runs N             override the repetitions of the workloads that repeat
  --variants LIST      comma-separated, of: ${VARIANT_NAMES.join(", ")}
                         after        this checkout's dist/, STARFORGE_PLATFORM=linux  (after/linux)
                         after-posix  the same build, STARFORGE_PLATFORM=posix        (after/posix)
                         before       a baseline build of --before REF, linux         (before/linux)
                       default: all three when a baseline is known, else the after ones
  --before REF         the baseline commit (default: bench/BASELINE${defaultBaselineRef() === undefined ? ", now empty" : `, now ${defaultBaselineRef()}`});
                       built once into bench/.cache/build-<commit>/ and reused
  --no-before          no baseline (the after variants only)
  --out FILE           also write the results file to FILE (even for a selection)

The machine floors (shell loops, xargs, bare Node) are measured once per repetition, not per variant.`

const args = process.argv.slice(2)
let mode = "quick"
let runsOverride
let variantNames
let beforeRef = defaultBaselineRef()
let beforeGiven = false
let out
const selected = []
const fail = (message) => {
  console.error(`bench: ${message}\n\n${usage}`)
  process.exit(2)
}
for (let i = 0; i < args.length; i++) {
  const a = args[i]
  if (a === "--full") mode = "full"
  else if (a === "--quick") mode = "quick"
  else if (a === "--runs") runsOverride = Number(args[++i])
  else if (a === "--variants") variantNames = (args[++i] ?? "").split(",").filter((v) => v !== "")
  else if (a === "--before") {
    beforeRef = args[++i]
    beforeGiven = true
    if (beforeRef === undefined) fail("--before needs a commit")
  } else if (a === "--no-before") beforeRef = undefined
  else if (a === "--out") out = args[++i] ?? fail("--out needs a file")
  else if (a === "--help" || a === "-h") {
    console.log(usage)
    process.exit(0)
  } else if (/^b(?:[1-9]|10)$/i.test(a)) selected.push(a.toUpperCase())
  else fail(`unknown argument ${a}`)
}
if (runsOverride !== undefined && !(Number.isInteger(runsOverride) && runsOverride > 0)) fail("--runs needs a positive integer")
variantNames ??= beforeRef === undefined ? ["after", "after-posix"] : VARIANT_NAMES
if (variantNames.length === 0) fail("--variants needs at least one variant")
for (const v of variantNames) if (!VARIANT_NAMES.includes(v)) fail(`unknown variant ${v}`)
if (variantNames.includes("before") && beforeRef === undefined) fail("the before variant needs --before REF (or a commit in bench/BASELINE)")
if (beforeGiven && !variantNames.includes("before")) console.error("bench: warning: --before given but the before variant is not among --variants")

if (!fs.existsSync(BIN)) {
  console.error(`bench: ${BIN} is missing: run 'npm run build' first`)
  process.exit(1)
}
const srcDir = path.join(HERE, "..", "src")
const newestSource = Math.max(...fs.readdirSync(srcDir, { recursive: true }).map((f) => fs.statSync(path.join(srcDir, f)).mtimeMs))
if (newestSource > fs.statSync(BIN).mtimeMs) console.error("bench: warning: src/ is newer than dist/bin.cjs; run 'npm run build' to measure the current code")

installCleanup()

const workloads = [...WORKLOADS, B10].filter((w) => selected.length === 0 || selected.includes(w.id))
const plans = workloads.map((w) => {
  const plan = w.plan(mode)
  if (runsOverride !== undefined && "runs" in plan) plan.runs = runsOverride
  return plan
})
const expected = plans.reduce((sum, plan, i) => sum + workloads[i].estimateSeconds(plan, variantNames.length), 0)
const m = machine()
const loadText = (l) => l.map((x) => x.toFixed(2)).join(", ")
console.log(`starforge benchmarks, ${mode} mode: ${workloads.map((w) => w.id).join(" ")}; variants ${variantNames.join(", ")}`)
console.log(`expected duration: about ${Math.ceil(expected / 60)} min (${Math.round(expected)} s on an idle machine)` +
  (variantNames.includes("before") ? ", plus the baseline build (about a minute) if it is not cached yet" : ""))
console.log(`machine: ${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB, Node ${m.node}; load average ${loadText(m.load)}`)

let variants
try {
  variants = await loadVariants(variantNames, beforeRef, (line) => console.log(line))
} catch (error) {
  console.error(`bench: ${error instanceof Error ? error.message : String(error)}`)
  process.exit(1)
}
const short = (v) => `${v.commit.slice(0, 7)}${v.dirty ? "+changes" : ""}`
for (const v of variants) console.log(`${v.label}: ${short(v)}, ${v.build}, STARFORGE_PLATFORM=${v.env.STARFORGE_PLATFORM}`)

const settled = await settleFileCreation((line) => console.log(line))
const createBefore = settled.createMs
console.log(
  `creating one file (median of 100, as the daemon creates each job's log): ${fmt(createBefore, 3)} ms` +
    (settled.waitedSeconds > 0 ? ` after waiting ${fmt(settled.waitedSeconds, 0)} s` : "")
)

const started = Date.now()
const results = []
let failed = false
for (const [i, workload] of workloads.entries()) {
  const t0 = Date.now()
  console.log(`\n${workload.id}: ${workload.title}`)
  try {
    const result = await workload.run(plans[i], (line) => console.log(`  ${line}`), variants)
    results.push({ workload, ...result, seconds: (Date.now() - t0) / 1000 })
    for (const r of result.rows) console.log(`  ${r.variant ?? "machine"}: ${r.figure}: ${r.measured} (target ${r.target}: ${r.verdict}) [${r.baseline}]`)
    for (const n of result.notes) console.log(`  ${n}`)
  } catch (error) {
    failed = true
    console.error(`  ${workload.id} failed: ${error instanceof Error ? error.stack : String(error)}`)
    results.push({ workload, rows: [{ figure: "(failed)", variant: undefined, measured: "—", baseline: String(error?.message ?? error).split("\n")[0], target: "—", verdict: "failed" }], notes: [], seconds: (Date.now() - t0) / 1000 })
  }
  console.log(`  (${workload.id} took ${fmt((Date.now() - t0) / 1000, 0)} s; estimated ${Math.round(workload.estimateSeconds(plans[i], variants.length))} s)`)
  stopAll()
}
const loadAfter = os.loadavg()
const createAfter = fileCreateMs()
const took = (Date.now() - started) / 1000

// The table: one row per (workload, figure), a column per variant, and one for the machine floors.
const columns = variants.map((v) => v.label)
const header = ["#", "figure", "target", ...columns, "machine floor"]
const grouped = []
for (const { workload, rows } of results) {
  for (const r of rows) {
    let g = grouped.find((x) => x.id === workload.id && x.figure === r.figure)
    if (g === undefined) grouped.push((g = { id: workload.id, figure: r.figure, target: r.target, cells: {} }))
    g.cells[r.variant ?? "floor"] = r.verdict === "—" ? r.measured : `${r.measured} (${r.verdict})`
  }
}
const tableRows = grouped.map((g) => [g.id, g.figure, g.target, ...columns.map((c) => g.cells[c] ?? "—"), g.cells.floor ?? "—"])
const table = markdownTable(header, tableRows)
console.log(`\n${table}`)
const missed = results.flatMap(({ workload, rows }) => rows.filter((r) => r.verdict === "missed" || r.verdict === "failed").map((r) => `${workload.id} ${r.variant ?? "floor"}: ${r.figure}`))
console.log(missed.length === 0 ? "\nevery target met" : `\nmissed: ${missed.length}\n${missed.map((x) => `  ${x}`).join("\n")}`)
console.log(`\ntook ${fmt(took, 0)} s (estimated ${Math.round(expected)} s); load average before ${loadText(m.load)}, after ${loadText(loadAfter)}; creating one file ${fmt(createBefore, 3)} ms before, ${fmt(createAfter, 3)} ms after`)

const PREVIOUS = "## Previous runs"
/**
 * The "Previous runs" section of the file being replaced, with that file's own run added at its
 * top (its "Written by", "Builds" and "Machine" lines and its table, not its details): one `###` entry per
 * run, the newest first, at most 8 (entries whose heading says "kept" always stay).
 */
const previousRuns = (old) => {
  if (old === undefined) return []
  const at = old.indexOf(`\n${PREVIOUS}\n`)
  const section = at < 0 ? "" : old.slice(at + PREVIOUS.length + 2)
  const current = at < 0 ? old : old.slice(0, at)
  const firstEntry = section.search(/^### /m)
  const intro = (firstEntry < 0 ? section : section.slice(0, firstEntry)).trim()
  const entries = firstEntry < 0 ? [] : section.slice(firstEntry).split(/^(?=### )/m).map((e) => e.trim())
  const lines = current.split("\n")
  const written = lines.find((l) => l.startsWith("Written by"))
  const table = lines.filter((l) => l.startsWith("|"))
  if (written !== undefined && table.length > 0) {
    const date = /on (\d{4}-\d\d-\d\d)T/.exec(written)?.[1] ?? "an earlier run"
    const facts = ["Builds:", "Machine:"].map((start) => lines.find((l) => l.startsWith(start))).filter((l) => l !== undefined)
    entries.unshift([`### ${date}`, "", written, ...facts.flatMap((l) => ["", l]), "", ...table].join("\n"))
  }
  const kept = []
  for (const [i, e] of entries.entries()) if (i < 8 || /^### .*kept/.test(e)) kept.push(e)
  return [PREVIOUS, "", ...(intro === "" ? [] : [intro, ""]), ...kept.flatMap((e) => [e, ""])]
}

const write = (file) => {
  const old = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : undefined
  const details = results.flatMap(({ workload, rows }) => rows.filter((r) => r.baseline !== "—").map((r) => `- ${workload.id} ${r.variant ?? "floor"}, ${r.figure}: ${r.baseline}`))
  const notes = results.flatMap((r) => r.notes)
  const text = [
    "# Benchmark results",
    "",
    `Written by \`npm run bench${mode === "full" ? " -- --full" : ""}${selected.length > 0 ? ` -- ${selected.join(" ")}` : ""}\` on ${new Date().toISOString()} ` +
      `(${mode} mode${runsOverride === undefined ? "" : `, --runs ${runsOverride}`}${selected.length > 0 ? ", a selection of workloads" : ""}).`,
    "",
    `Builds: ${variants.map((v) => `${v.label} ${short(v)} (${v.name === "before" ? "the baseline" : "this checkout"}, STARFORGE_PLATFORM=${v.env.STARFORGE_PLATFORM})`).join("; ")}. ` +
      "Measured in the same run, interleaved where a workload repeats; the machine floors once per repetition, for every variant.",
    "",
    `Machine: ${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB memory, Node ${m.node}. ` +
      `Load average (1, 5, 15 min) before the run: ${loadText(m.load)}; after: ${loadText(loadAfter)}. Run time ${fmt(took, 0)} s. ` +
      `Creating one empty file (median of 100), as the daemon creates each job's log: ${fmt(createBefore, 3)} ms before the run` +
      (settled.waitedSeconds > 0 ? ` (after waiting ${fmt(settled.waitedSeconds, 0)} s for it to settle)` : "") +
      `, ${fmt(createAfter, 3)} ms after ` +
      "(on ext4 without a journal it grows with the files deleted in the last minutes; see `cleanupAll` in `bench/lib/harness.mjs`).",
    "",
    table,
    "",
    "Details (the baselines and the runs behind each figure):",
    "",
    ...details,
    "",
    ...(notes.length > 0 ? ["Notes:", "", ...notes.map((n) => `- ${n}`), ""] : []),
    "How to read it: every figure is a median of several runs or a ratio against a baseline measured in the same run,",
    "because absolute times on a shared machine are noise. The workloads are described in `bench/workloads.mjs` and issue 4;",
    "the variants in `bench/lib/variants.mjs`.",
    "",
    ...previousRuns(old)
  ].join("\n")
  fs.writeFileSync(file, text)
  console.log(`wrote ${path.relative(process.cwd(), file)}`)
}

if (selected.length === 0) write(RESULTS)
else console.log("(a selection of workloads: bench/RESULTS.md is left alone)")
if (out !== undefined && path.resolve(out) !== RESULTS) write(path.resolve(out))
process.exitCode = failed ? 1 : 0
