/**
 * The services below the scheduler that tests building it from its layers do not fake: the real
 * sampler, effective cap and sweep of what attempts leave, on a process table with no processes and a machine that reads `machine`
 * (a quiet one by default), and where agents run (`Worktrees`, as configured).
 */
import { Effect, Layer } from "effect"
import { idleMachine, MachineState } from "../../src/platform/MachineState.js"
import { ProcessTable } from "../../src/platform/ProcessTable.js"
import * as Leftovers from "../../src/process/Leftovers.js"
import * as Capacity from "../../src/resources/Capacity.js"
import * as ResourceMonitor from "../../src/resources/ResourceMonitor.js"
import { Worktrees } from "../../src/workspace/Worktrees.js"

export const quietMachine: Layer.Layer<MachineState> = Layer.succeed(MachineState, { read: Effect.succeed(idleMachine) })

export const resourceLayers = (machine: Layer.Layer<MachineState> = quietMachine) =>
  Layer.mergeAll(ResourceMonitor.layer, Capacity.layer, Leftovers.layer, Worktrees.layer).pipe(Layer.provide(Layer.merge(ProcessTable.empty, machine)))
