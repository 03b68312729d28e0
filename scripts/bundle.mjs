// Bundles the CLI into one file, dist/cli.cjs: importing the `effect` packages module by module
// costs about two seconds per command; the bundle loads in a fraction of that. dist/bin.js (the
// `starforge` command, scripts/cli-loader.mjs) runs it through a V8 code cache. CommonJS because
// Node 20 can cache compiled code only for scripts (`vm.Script`), not for ES modules. The library
// (dist/index.js) stays the plain tsc output.
import { build } from "esbuild"
import { chmodSync, copyFileSync } from "node:fs"

await build({
  entryPoints: ["src/bin.ts"],
  outfile: "dist/cli.cjs",
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  // src/cli/daemon.ts falls back on import.meta.url for its own path.
  define: { "import.meta.url": "__starforge_url" },
  banner: { js: 'const __starforge_url = require("node:url").pathToFileURL(__filename).href;' },
  sourcemap: true,
  logLevel: "warning"
})
copyFileSync("scripts/cli-loader.mjs", "dist/bin.js")
chmodSync("dist/bin.js", 0o755)
