/**
 * Prints one plain closing line, `tests: N passed, N failed, N skipped`, that any CI can read
 * whatever it knows about vitest.
 */
import type { RunnerTask, RunnerTestFile } from "vitest"
import type { Reporter } from "vitest/reporters"

const count = (tasks: ReadonlyArray<RunnerTask>, totals: { passed: number; failed: number; skipped: number }) => {
  for (const task of tasks) {
    if (task.type === "suite") count(task.tasks, totals)
    else if (task.mode === "skip" || task.mode === "todo" || task.result?.state === "skip") totals.skipped++
    else if (task.result?.state === "pass") totals.passed++
    else if (task.result?.state === "fail") totals.failed++
  }
}

export default class SummaryReporter implements Reporter {
  onFinished(files: ReadonlyArray<RunnerTestFile> = [], errors: ReadonlyArray<unknown> = []) {
    const totals = { passed: 0, failed: 0, skipped: 0 }
    count(files, totals)
    // A file that failed to load has no tests but is a failure.
    const broken = files.filter((f) => f.result?.state === "fail" && f.tasks.length === 0).length + errors.length
    process.stdout.write(`\ntests: ${totals.passed} passed, ${totals.failed + broken} failed, ${totals.skipped} skipped\n`)
  }
}
