/**
 * The folders of `src/` are layers: a module imports only from its own layer or the ones below.
 * The order is the architecture's (pure domain first, the command line last).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"

const SRC = path.resolve(__dirname, "../../src")

/** Lowest first; folders on one line form one layer. */
const LAYERS: ReadonlyArray<ReadonlyArray<string>> = [
  ["domain", "version.ts"],
  ["config", "io", "logs", "stream"],
  ["observability"],
  ["platform"],
  ["process", "queue", "slots", "notify", "state", "resources", "workspace"],
  ["scheduler"],
  ["monitor"],
  ["daemon"],
  // Front ends: the command line and the dashboard (served with the daemon `daemon start` runs).
  ["cli", "dashboard"],
  ["bin.ts", "index.ts"]
]

const layerOf = (file: string): number => {
  const top = path.relative(SRC, file).split(path.sep)[0]!
  const at = LAYERS.findIndex((layer) => layer.includes(top))
  if (at < 0) throw new Error(`${path.relative(SRC, file)} is in no layer: add its folder to LAYERS`)
  return at
}

const sources = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(path.join(dir, e.name)) : e.name.endsWith(".ts") ? [path.join(dir, e.name)] : []
  )

/** The project modules a file imports (static and dynamic imports of relative paths). */
export const importsOf = (file: string): Array<string> =>
  Array.from(fs.readFileSync(file, "utf8").matchAll(/(?:from|import\()\s*"(\.{1,2}\/[^"]+)"/g), (m) =>
    path.resolve(path.dirname(file), m[1]!).replace(/\.js$/, ".ts"))

describe("layers", () => {
  it("no module imports from a layer above its own", () => {
    const upward = sources(SRC).flatMap((file) =>
      importsOf(file)
        .filter((target) => layerOf(target) > layerOf(file))
        .map((target) => `${path.relative(SRC, file)} imports ${path.relative(SRC, target)}`)
    )
    expect(upward).toEqual([])
  })
})
