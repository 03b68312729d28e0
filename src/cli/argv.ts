/**
 * `--help` anywhere asks for help. @effect/cli only honours it right after the command words
 * (`starforge daemon status --help`), so `starforge daemon status --json --help` would be an
 * "unknown argument" error; this moves it into place first. `--opt=--help` stays a value.
 */
const TREE: Readonly<Record<string, ReadonlyArray<string>>> = {
  daemon: ["start", "stop", "restart", "status", "logs"],
  trigger: ["create"],
  slots: ["list", "show", "cleanup"],
  dlq: ["list", "show", "retry", "purge"],
  history: [],
  config: ["show"],
  worktrees: ["list", "prune"]
}

export const helpFirst = (argv: ReadonlyArray<string>): ReadonlyArray<string> => {
  const [node, script, ...args] = argv
  const helpAt = args.findIndex((a) => a === "--help" || a === "-h")
  if (helpAt < 0) return argv
  const words: Array<string> = []
  const group = args[0]
  if (group !== undefined && group in TREE) {
    words.push(group)
    const sub = args[1]
    if (sub !== undefined && TREE[group]!.includes(sub)) words.push(sub)
  }
  if (helpAt === words.length) return argv
  return [node!, script!, ...words, "--help"]
}
