/**
 * The Node options of the daemon process: `starforge daemon start` launches the background daemon
 * with them (a foreground daemon runs with whatever options its `node` was given).
 *
 * `--optimize-for-size`: V8 grows its heap more reluctantly and collects sooner. A daemon spends
 * its life waiting, so speed of JavaScript hardly matters, while its memory is held for days and
 * copied (page tables) by every `fork` of an agent: with 500 running agents the peak RSS went from
 * 162 to 127 MiB (bench B5), with no measurable change in how fast they started.
 */
export const DAEMON_NODE_OPTIONS: ReadonlyArray<string> = ["--optimize-for-size"]

/** `execArgv` plus the daemon's options it does not already have. */
export const daemonExecArgv = (execArgv: ReadonlyArray<string>): Array<string> => [
  ...execArgv,
  ...DAEMON_NODE_OPTIONS.filter((option) => !execArgv.includes(option))
]
