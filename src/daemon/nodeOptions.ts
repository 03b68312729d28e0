/**
 * The Node options of the daemon process: `starforge daemon start` launches the background daemon
 * with them (a foreground daemon runs with whatever options its `node` was given).
 *
 * `--max-semi-space-size=4`: a young generation of 2 × 4 MiB. A job's bookkeeping (its fibers,
 * spans, log lines) is short-lived garbage, and the daemon allocates it fast when many jobs end
 * and start (about 0.8 MB per job, 60-90 jobs a second with 100 agents). With the 1 MiB young
 * generation of `--optimize-for-size` (used before the spawn helper took the forks out of the
 * daemon), much of it lived long enough to be copied and promoted, and the old generation was
 * marked again and again: 15.6 ms of CPU per job against 10-11 ms now (bench B4 shape, 1,000 jobs
 * for 100 agents), for about the same peak RSS with 500 running agents (bench B5).
 *
 * `--no-memory-reducer`: V8's memory reducer (made for background browser tabs) waits until a
 * burst of allocation is over, then runs up to three extra full collections to shrink the heap.
 * After 200 agents started, those three marked the whole heap for 0.35-0.8 s of CPU while every
 * agent slept, the only work the daemon did then (bench B5: 3.5% of a core, 0.1% without it).
 * The heap is still collected as usual whenever the daemon allocates; the peak RSS is the same.
 */
export const DAEMON_NODE_OPTIONS: ReadonlyArray<string> = ["--max-semi-space-size=4", "--no-memory-reducer"]

const optionName = (option: string): string => option.split("=")[0]!

/** `execArgv` plus the daemon's options it does not already set (a value of the caller's stays). */
export const daemonExecArgv = (execArgv: ReadonlyArray<string>): Array<string> => [
  ...execArgv,
  ...DAEMON_NODE_OPTIONS.filter((option) => !execArgv.some((given) => optionName(given) === optionName(option)))
]
