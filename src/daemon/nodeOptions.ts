/**
 * The Node options of the daemon process: `starforge daemon start` launches the background daemon
 * with them (a foreground daemon runs with whatever options its `node` was given).
 *
 * `--max-semi-space-size=4`: a young generation of 2 × 4 MiB, so a job's short-lived bookkeeping
 * (fibers, spans, log lines) dies young instead of being promoted and marked again and again.
 *
 * `--no-memory-reducer`: V8's memory reducer runs extra full collections once a burst of
 * allocation is over, costing CPU while every agent sleeps and shrinking nothing that matters;
 * the heap is still collected whenever the daemon allocates.
 */
export const DAEMON_NODE_OPTIONS: ReadonlyArray<string> = ["--max-semi-space-size=4", "--no-memory-reducer"]

const optionName = (option: string): string => option.split("=")[0]!

/** `execArgv` plus the daemon's options it does not already set (a value of the caller's stays). */
export const daemonExecArgv = (execArgv: ReadonlyArray<string>): Array<string> => [
  ...execArgv,
  ...DAEMON_NODE_OPTIONS.filter((option) => !execArgv.some((given) => optionName(given) === optionName(option)))
]
