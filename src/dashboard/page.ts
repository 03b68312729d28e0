/**
 * The page's files, served from the package: `src/dashboard/page/` in the source, copied to
 * `dist/dashboard/page/` by the build (scripts/bundle.mjs), found next to the running module in
 * both. Only plain names of regular files in that directory (or its subdirectories) are served:
 * no `..`, no hidden files, no symlinks, only the types listed here.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

/** The page directory next to this module (the source's, or the build's). */
export const pageDirectory = (): string => fileURLToPath(new URL("./page/", import.meta.url))

const TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".webp": "image/webp",
  ".ico": "image/x-icon",
  ".woff2": "font/woff2"
}

const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/

export type PageFile =
  | { readonly _tag: "Found"; readonly body: Uint8Array; readonly contentType: string }
  | { readonly _tag: "NotFound" }
  /** The page directory itself is missing (a build without the page). */
  | { readonly _tag: "NoPage"; readonly directory: string }

/** The file `name` (`index.html`, `icons/a.svg`) of the page directory `dir`. */
export const readPageFile = (dir: string, name: string): PageFile => {
  if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) return { _tag: "NoPage", directory: dir }
  const segments = name.split("/")
  const contentType = TYPES[path.extname(name).toLowerCase()]
  if (contentType === undefined || !segments.every((s) => SEGMENT.test(s))) return { _tag: "NotFound" }
  const file = path.join(dir, ...segments)
  try {
    // Every level is checked: a symlink anywhere on the way could lead out of the directory.
    let at = dir
    for (const segment of segments) {
      at = path.join(at, segment)
      if (fs.lstatSync(at).isSymbolicLink()) return { _tag: "NotFound" }
    }
    if (!fs.lstatSync(file).isFile()) return { _tag: "NotFound" }
    return { _tag: "Found", body: fs.readFileSync(file), contentType }
  } catch {
    return { _tag: "NotFound" }
  }
}
