// Bundles the CLI into one file: importing the `effect` packages module by module costs about
// two seconds per command; the bundle loads in a fraction of that. The library (dist/index.js)
// stays the plain tsc output. @parcel/watcher is native and stays external.
import { build } from "esbuild"
import { chmodSync } from "node:fs"

await build({
  entryPoints: ["src/bin.ts"],
  outfile: "dist/bin.js",
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  external: ["@parcel/watcher"],
  banner: { js: 'import { createRequire as __createRequire } from "node:module"; const require = __createRequire(import.meta.url);' },
  sourcemap: true,
  logLevel: "warning"
})
chmodSync("dist/bin.js", 0o755)
