/**
 * The dashboard and HTTP API (`DASHBOARD_ADDRESS`), as the daemon sees it: a layer that loads the
 * server (`DashboardServer.ts`, with `@effect/platform`'s HTTP server) only when an address is
 * configured, and the files through which `starforge dashboard` finds it. Nothing here imports
 * the server, so a daemon without a dashboard, and every command, never load it.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect, Layer, Schema } from "effect"
import { DaemonConfig } from "../config/DaemonConfig.js"
import { ConfigInvalid } from "../domain/errors.js"
import type { ProjectPaths } from "../domain/ProjectPaths.js"

/** `C/dashboard.token`: the token every request needs (mode 0600, while the daemon serves). */
export const tokenFile = (paths: ProjectPaths) => path.join(paths.claude, "dashboard.token")

/** `C/daemon/dashboard.json`: where the running daemon's dashboard listens. */
export const infoFile = (paths: ProjectPaths) => path.join(paths.daemonDir, "dashboard.json")

/** What `dashboard.json` holds. */
export interface DashboardInfo {
  /** `http://127.0.0.1:7420/`: the page, without the token. */
  readonly url: string
  /** The daemon serving it. */
  readonly pid: number
  readonly host: string
  /** The real port (also when `DASHBOARD_ADDRESS` asked for port 0). */
  readonly port: number
}

const Info = Schema.Struct({ url: Schema.String, pid: Schema.Number, host: Schema.String, port: Schema.Number })

/** The dashboard file and the token, as the daemon left them; undefined when either is missing or unreadable. */
export const readDashboard = (paths: ProjectPaths): { readonly info: DashboardInfo; readonly token: string } | undefined => {
  try {
    const info = Schema.decodeUnknownSync(Schema.parseJson(Info))(fs.readFileSync(infoFile(paths), "utf8"))
    const token = fs.readFileSync(tokenFile(paths), "utf8").trim()
    return token === "" ? undefined : { info, token }
  } catch {
    return undefined
  }
}

/**
 * The dashboard server when `DASHBOARD_ADDRESS` is set, nothing otherwise. The server's module is
 * imported at that moment (a bundle of its own, `dist/dashboard/server.cjs`, for the command).
 */
export const layer = Layer.unwrapEffect(
  Effect.gen(function*() {
    const { settings } = yield* DaemonConfig
    const address = settings.dashboardAddress
    if (address === null) return Layer.empty
    const server = yield* Effect.tryPromise({
      try: () => import("./DashboardServer.js"),
      catch: (cause) => new ConfigInvalid({ message: `DASHBOARD_ADDRESS is set but the dashboard cannot be loaded (${String(cause)}): reinstall starforge, or unset it` })
    })
    return server.layer(address)
  })
)
