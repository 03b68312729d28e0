/** Names that never overwrite an existing file. */
import * as fs from "node:fs"
import * as path from "node:path"

const exists = (file: string) => fs.lstatSync(file, { throwIfNoEntry: false }) !== undefined

/**
 * `name` in `dir`, or `stem-2.ext`, `stem-3.ext`… when taken. A name is only free when its
 * `companions` (suffixes such as `.meta.json`) are free too.
 */
export const freeName = (dir: string, name: string, companions: ReadonlyArray<string> = []): string => {
  const free = (candidate: string) => !exists(candidate) && companions.every((c) => !exists(candidate + c))
  if (free(path.join(dir, name))) return path.join(dir, name)
  const dot = name.lastIndexOf(".") > 0 ? name.lastIndexOf(".") : name.length
  for (let n = 2; ; n++) {
    const candidate = path.join(dir, `${name.slice(0, dot)}-${n}${name.slice(dot)}`)
    if (free(candidate)) return candidate
  }
}
