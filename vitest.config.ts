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
      { extends: true, test: { name: "linux", include: ["test/**/*.test.ts"] } },
      // The daemon and the CLI on the portable layer (as on macOS), with every read of /proc
      // failing: the lifecycle, recovery, pid-reuse, shutdown and group-kill tests again.
      {
        extends: true,
        test: {
          name: "posix",
          include: ["test/integration/**/*.test.ts", "test/reliability/faults-*.test.ts", "test/monitor/*.test.ts"],
          env: { STARFORGE_PLATFORM: "posix" }
        }
      }
    ]
  }
})
