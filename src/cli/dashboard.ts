/**
 * `starforge dashboard [--open] [--json]`: the running daemon's dashboard address with its token
 * (from `C/daemon/dashboard.json` and `C/dashboard.token`), opened in the browser with `--open`.
 * Says so, with exit code 1, when no daemon runs or the daemon serves no dashboard.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { Command, Options } from "@effect/cli"
import { Console, Duration, Effect } from "effect"
import { probe } from "../daemon/DaemonInstance.js"
import { readDashboard } from "../dashboard/Dashboard.js"
import { UsageError } from "../domain/errors.js"
import type { ProjectPaths } from "../domain/ProjectPaths.js"
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

/**
 * `C/dashboard-open.html` (mode 0600, like the token file): a page that sends the browser on to
 * `url`. The opener and the browser are given its path, so the token is on no command line
 * (which every user of the machine can read). Its URL as a `file://` address.
 */
const redirectPage = (paths: ProjectPaths, url: string) =>
  Effect.try({
    try: () => {
      const file = path.join(paths.claude, "dashboard-open.html")
      const tmp = `${file}.${process.pid}.tmp`
      const html = `<!doctype html><meta charset="utf-8"><meta name="referrer" content="no-referrer">` +
        `<meta http-equiv="refresh" content="0;url=${url.replace(/&/g, "&amp;").replace(/"/g, "&quot;")}">` +
        `<title>starforge dashboard</title>\n`
      fs.writeFileSync(tmp, html, { mode: 0o600 })
      fs.renameSync(tmp, file)
      return pathToFileURL(file).href
    },
    catch: (e) => new UsageError({ message: `Cannot write the page that opens the dashboard (${(e as Error).message}): open the address above yourself` })
  })

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
      if (open) yield* openUrl(yield* redirectPage(paths, url))
    })
).pipe(Command.withDescription("Print the running daemon's dashboard address with its token; --open opens it in the browser."))
