/**
 * The Node options of the daemon process: `starforge daemon start` launches the background daemon
 * with them (a foreground daemon runs with whatever options its `node` was given).
 *
 * `--optimize-for-size`: V8 grows its heap more reluctantly and collects sooner. A daemon spends
 * its life waiting, so speed of JavaScript hardly matters, while its memory is held for days and
 * copied (page tables) by every `fork` of an agent: with 500 running agents the peak RSS went from
 * 162 to 127 MiB (bench B5), with no measurable change in how fast they started.
 *
 * `--no-memory-reducer`: V8's memory reducer (made for background browser tabs) waits until a
 * burst of allocation is over, then runs up to three extra full collections to shrink the heap.
 * After 200 agents started, those three marked the whole heap for 0.35-0.8 s of CPU while every
 * agent slept, the only work the daemon did then (bench B5: 3.5% of a core, 0.1% without it).
 * The heap is still collected as usual whenever the daemon allocates; the peak RSS is the same.
 */
export const DAEMON_NODE_OPTIONS: ReadonlyArray<string> = ["--optimize-for-size", "--no-memory-reducer"]

/** `execArgv` plus the daemon's options it does not already have. */
export const daemonExecArgv = (execArgv: ReadonlyArray<string>): Array<string> => [
  ...execArgv,
  ...DAEMON_NODE_OPTIONS.filter((option) => !execArgv.includes(option))
]
