// Bundles the CLI into one file, dist/cli.cjs: importing the `effect` packages module by module
// costs about two seconds per command; the bundle loads in a fraction of that. dist/bin.cjs (the
// `starforge` command, scripts/cli-loader.cjs) runs it through a V8 code cache. CommonJS because
// Node 20 can cache compiled code only for scripts (`vm.Script`), not for ES modules. The library
// (dist/index.js) stays the plain tsc output.
import { build } from "esbuild"
import { chmodSync, copyFileSync, cpSync, existsSync, rmSync } from "node:fs"

// The span exporter (src/observability/otlp.ts, with @effect/opentelemetry) is only loaded when
// OTEL_EXPORTER_OTLP_ENDPOINT is set: it is a bundle of its own, dist/otlp.cjs, required at that
// moment, so the commands never load it.
const otlpApart = {
  name: "otlp-apart",
  setup(build) {
    build.onResolve({ filter: /^\.\/otlp\.js$/ }, () => ({ path: "./otlp.cjs", external: true }))
  }
}

// The dashboard's server (src/dashboard/DashboardServer.ts, with the HTTP server of
// @effect/platform) likewise: dist/dashboard/server.cjs, required only when DASHBOARD_ADDRESS is
// set. Its page (src/dashboard/page/) is copied next to it, to dist/dashboard/page/, where the
// server looks for it relative to its own file.
const dashboardApart = {
  name: "dashboard-apart",
  setup(build) {
    build.onResolve({ filter: /^\.\/DashboardServer\.js$/ }, () => ({ path: "./dashboard/server.cjs", external: true }))
  }
}

// In a CommonJS bundle esbuild wraps a Node built-in module for each file that imports it with
// `import * as` (`__toESM`: an object with a getter per export, `node:fs` has about a hundred): 50
// wrappers, about 10 ms of every command's start. Each built-in is imported once, by a module of
// its own, and every file imports that module instead: one wrapper per built-in. Its default
// export is the module itself, as Node gives it to an ES module. `require()` calls (in CommonJS
// packages) are left as they are: they would get a copy of the wrapper, not the module.
const builtinsOnce = {
  name: "builtins-once",
  setup(build) {
    build.onResolve({ filter: /^node:/ }, (args) => {
      if (args.namespace === "builtin-once") return { path: args.path, external: true }
      return args.kind === "import-statement" ? { path: args.path, namespace: "builtin-once" } : undefined
    })
    build.onLoad({ filter: /.*/, namespace: "builtin-once" }, (args) => ({
      contents: `export * from ${JSON.stringify(args.path)}\nexport default require(${JSON.stringify(args.path)})\n`,
      loader: "js"
    }))
  }
}

/** What every bundle is: one CommonJS script for Node 20. */
const script = { bundle: true, platform: "node", format: "cjs", target: "node20", logLevel: "warning" }
/** Minified, names kept, ASCII only (see the CLI's bundle below). */
const compact = { minifyWhitespace: true, minifySyntax: true, charset: "ascii" }
/** `import.meta.url` in a CommonJS bundle: the bundle's own file. */
const ownUrl = {
  define: { "import.meta.url": "__starforge_url" },
  banner: { js: 'const __starforge_url = require("node:url").pathToFileURL(__filename).href;' }
}

await build({
  ...script,
  entryPoints: ["src/observability/otlp.ts"],
  outfile: "dist/otlp.cjs"
})

await build({
  ...script,
  ...compact,
  // src/dashboard/page.ts finds the page relative to its own file.
  ...ownUrl,
  entryPoints: ["src/dashboard/DashboardServer.ts"],
  outfile: "dist/dashboard/server.cjs"
})
rmSync("dist/dashboard/page", { recursive: true, force: true })
if (existsSync("src/dashboard/page")) cpSync("src/dashboard/page", "dist/dashboard/page", { recursive: true })

await build({
  entryPoints: ["src/bin.ts"],
  plugins: [otlpApart, dashboardApart, builtinsOnce],
  // `import("./otlp.js")` becomes `require("./otlp.cjs")` (and the dashboard's `require("./dashboard/server.cjs")`): the loader runs the bundle as a script.
  supported: { "dynamic-import": false },
  outfile: "dist/cli.cjs",
  ...script,
  // src/cli/daemon.ts falls back on import.meta.url for its own path.
  ...ownUrl,
  sourcemap: true,
  // Less source for every command to read and hold; names are kept. ASCII only: one non-ASCII
  // character makes V8 hold the whole source as a two-byte string.
  ...compact
})
// The spawn helper (src/process/spawnHelperMain.ts): a program of its own that the daemon starts
// with `node dist/spawn-helper.cjs`. Node built-ins, the frame codec and the line buffer only:
// every agent it spawns copies its page tables, so the less memory it has the better.
await build({
  ...script,
  ...compact,
  entryPoints: ["src/process/spawnHelperMain.ts"],
  outfile: "dist/spawn-helper.cjs"
})
copyFileSync("scripts/cli-loader.cjs", "dist/bin.cjs")
chmodSync("dist/bin.cjs", 0o755)
