/**
 * `starforge dashboard [--open] [--json]`: the running daemon's dashboard address with its token
 * (from `C/daemon/dashboard.json` and `C/dashboard.token`), opened in the browser with `--open`.
 * Says so, with exit code 1, when no daemon runs or the daemon serves no dashboard.
 */
import { spawn } from "node:child_process"
import { Command, Options } from "@effect/cli"
import { Console, Duration, Effect } from "effect"
import { probe } from "../daemon/DaemonInstance.js"
import { readDashboard } from "../dashboard/Dashboard.js"
import { UsageError } from "../domain/errors.js"
import { jsonOption, printJson, projectOption, resolveProject } from "./shared.js"

/** The program that opens a URL in the user's browser here. */
const opener = process.platform === "darwin" ? "open" : "xdg-open"

/**
 * Runs the opener on `url`; fails with a message when it cannot be started or exits non-zero. One
 * that is still running after a few seconds (a browser kept in the foreground) counts as opened.
 */
const openUrl = (url: string) =>
  Effect.async<void, UsageError>((resume) => {
    const failed = (why: string) =>
      resume(Effect.fail(new UsageError({ message: `Cannot open a browser (${opener} ${why}): open the address above yourself` })))
    const child = spawn(opener, [url], { stdio: "ignore", detached: true })
    child.once("error", (e) => failed(e.message.replace(/^spawn \S+ /, "")))
    child.once("exit", (code, signal) => (code === 0 ? resume(Effect.void) : failed(signal ? `was killed by ${signal}` : `exited with code ${code}`)))
    child.unref()
  }).pipe(Effect.timeoutTo({ duration: Duration.seconds(5), onSuccess: () => undefined, onTimeout: () => undefined }))

export const dashboardCommand = Command.make(
  "dashboard",
  {
    project: projectOption,
    json: jsonOption,
    open: Options.boolean("open").pipe(Options.withDescription(`Also open it in the browser (${opener}).`))
  },
  ({ json, open, project }) =>
    Effect.gen(function*() {
      const paths = yield* resolveProject(project)
      const daemon = yield* probe(paths)
      if (daemon === undefined) {
        return yield* new UsageError({ message: `No daemon is running for ${paths.root}: start one with DASHBOARD_ADDRESS set (e.g. 127.0.0.1:7420)` })
      }
      const found = readDashboard(paths)
      // A file left by a daemon that was killed names another process.
      if (found === undefined || found.info.pid !== daemon.pid) {
        return yield* new UsageError({
          message: `The daemon (PID: ${daemon.pid}) serves no dashboard: set DASHBOARD_ADDRESS (e.g. 127.0.0.1:7420) in .env or ` +
            ".claude/config/daemon.conf, then 'starforge daemon restart'"
        })
      }
      const url = `${found.info.url}?token=${encodeURIComponent(found.token)}`
      if (json) yield* printJson({ url, address: found.info.url, token: found.token, host: found.info.host, port: found.info.port, pid: daemon.pid })
      else yield* Console.log(url)
      if (open) yield* openUrl(url)
    })
).pipe(Command.withDescription("Print the running daemon's dashboard address with its token; --open opens it in the browser."))
