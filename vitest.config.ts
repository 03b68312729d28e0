import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    reporters: ["default", "./test/support/summary-reporter.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests start real daemons and agents; two cores are shared between files.
    fileParallelism: true,
    maxWorkers: 2,
    minWorkers: 1,
    projects: [
      { extends: true, test: { name: "linux", include: ["test/**/*.test.ts"] } }
    ]
  }
})
