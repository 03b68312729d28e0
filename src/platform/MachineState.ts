/**
 * The machine's state, as dynamic scaling needs it: how loaded its cores are and how much memory
 * is still available. Linux reads `/proc/meminfo` (`MemAvailable`, `linux.ts`); macOS asks
 * `sysctl` (`posix.ts`), because its free-page count leaves out the memory it would hand back.
 */
import { Context, Effect, Layer, Ref } from "effect"

export interface MachineReading {
  /** Logical cores. */
  readonly cores: number
  /** The one-minute load average (of the whole machine, not per core). */
  readonly loadAverage: number
  /** Memory a new process could get without the machine swapping. */
  readonly availableMemoryBytes: number
  readonly totalMemoryBytes: number
}

export interface MachineStateShape {
  readonly read: Effect.Effect<MachineReading>
}

export class MachineState extends Context.Tag("starforge/MachineState")<MachineState, MachineStateShape>() {
  /** Test double: the machine reads whatever the returned `Ref` holds. */
  static readonly fake = (initial: MachineReading) =>
    Effect.map(Ref.make(initial), (reading) => ({
      reading,
      layer: Layer.succeed(MachineState, { read: Ref.get(reading) })
    }))
}

/** A quiet machine with plenty of memory, for tests that do not look at it. */
export const idleMachine: MachineReading = {
  cores: 4,
  loadAverage: 0,
  availableMemoryBytes: 16 * 1024 ** 3,
  totalMemoryBytes: 16 * 1024 ** 3
}
