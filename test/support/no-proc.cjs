// Loaded with `node --require` into the daemon and the CLI when the integration tests run the
// portable layer (STARFORGE_PLATFORM=posix): any read of /proc fails loudly. It throws, and since
// code may catch that, it also appends the path and the stack to STARFORGE_PROC_GUARD_LOG, which
// the tests check after each test.
"use strict"
const fs = require("node:fs")

const log = process.env.STARFORGE_PROC_GUARD_LOG
const append = fs.appendFileSync
const text = (p) => (typeof p === "string" ? p : Buffer.isBuffer(p) ? p.toString("utf8") : p instanceof URL ? p.pathname : "")
const isProc = (p) => {
  const s = text(p)
  return s === "/proc" || s.startsWith("/proc/")
}
const trip = (name, p) => {
  const error = new Error(`the portable layer read /proc: fs.${name}(${JSON.stringify(text(p))})`)
  if (log) {
    try {
      append(log, `pid ${process.pid} (${process.argv.slice(1).join(" ")}): ${error.stack}\n\n`)
    } catch {
      // The log is the test's; nothing else to do.
    }
  }
  process.stderr.write(`starforge-proc-guard: ${error.message}\n`)
  throw error
}
const guard = (target, names) => {
  for (const name of names) {
    const original = target[name]
    if (typeof original !== "function") continue
    target[name] = function (p, ...rest) {
      if (isProc(p)) trip(name, p)
      return original.call(this, p, ...rest)
    }
  }
}
const names = ["readFile", "readdir", "open", "stat", "lstat", "readlink", "access", "opendir", "realpath", "exists", "watch", "createReadStream"]
guard(fs, [...names, ...names.map((n) => `${n}Sync`)])
guard(fs.promises, names)
