/**
 * Chooses the platform layer at start: Linux reads `/proc`; every other system (macOS) gets the
 * portable POSIX layer, which asks `ps`. `STARFORGE_PLATFORM=linux|posix` forces one (tests run
 * the portable layer on Linux this way).
 */
import { Effect, Layer } from "effect"
import { ConfigInvalid } from "../domain/errors.js"
import type { InstanceLock } from "./InstanceLock.js"
import type { MachineState } from "./MachineState.js"
import type { ProcessTable } from "./ProcessTable.js"
import * as Linux from "./linux.js"
import * as Posix from "./posix.js"

export type PlatformName = "linux" | "posix"

/** The layer `env` asks for, or the one this system needs. */
export const platformName = (env: Readonly<Record<string, string | undefined>> = process.env): Effect.Effect<PlatformName, ConfigInvalid> => {
  const forced = env["STARFORGE_PLATFORM"]?.trim().toLowerCase()
  if (forced === undefined || forced === "") return Effect.succeed(process.platform === "linux" ? "linux" : "posix")
  if (forced === "posix") return Effect.succeed("posix")
  if (forced === "linux") {
    return process.platform === "linux"
      ? Effect.succeed("linux")
      : Effect.fail(new ConfigInvalid({ message: `STARFORGE_PLATFORM=linux needs Linux (this is ${process.platform}): unset it or use posix` }))
  }
  return Effect.fail(new ConfigInvalid({ message: `STARFORGE_PLATFORM=${JSON.stringify(env["STARFORGE_PLATFORM"])} is not valid: expected linux or posix` }))
}

/** The process table and the single-instance lock of this system. */
export const layer: Layer.Layer<ProcessTable | InstanceLock, ConfigInvalid> = Layer.unwrapEffect(
  Effect.map(platformName(), (name) => (name === "linux" ? Linux.layer : Posix.layer))
)

/** The machine's load and memory, read the way this system allows. */
export const machine: Layer.Layer<MachineState, ConfigInvalid> = Layer.unwrapEffect(
  Effect.map(platformName(), (name) => (name === "linux" ? Linux.machineLayer : Posix.machineLayer))
)
