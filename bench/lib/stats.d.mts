// Types of the benchmark's pure helpers (stats.mjs), for the unit tests.
export interface Job {
  readonly agent: string
  readonly seconds: number
}
export interface AgentRecord {
  readonly kind: string
  readonly ns: bigint
  readonly pid: number
  readonly agent: string
}
export interface AgentRun {
  readonly agent: string
  readonly pid: number
  readonly start: bigint
  readonly end: bigint
}
export declare const median: (values: ReadonlyArray<number>) => number
export declare const percentile: (values: ReadonlyArray<number>, p: number) => number
export declare const seededRandom: (seed: number) => () => number
export declare const seededJobs: (options: {
  readonly agents: number
  readonly perAgent: number
  readonly minSeconds: number
  readonly maxSeconds: number
  readonly seed: number
}) => Array<Job>
export declare const makespanLowerBound: (jobs: ReadonlyArray<Job>, cap: number) => number
export declare const policyMakespan: (jobs: ReadonlyArray<Job>, cap: number) => number
export declare const dealLanes: (jobs: ReadonlyArray<Job>, lanes: number) => Array<Array<number>>
export declare const laneCosts: (
  lanes: ReadonlyArray<ReadonlyArray<number>>,
  runs: ReadonlyArray<AgentRun>
) => { readonly ownSeconds: number; readonly gapSeconds: number }
export declare const floorMakespan: (
  jobs: ReadonlyArray<Job>,
  cap: number,
  costs: { readonly ownSeconds: number; readonly gapSeconds: number }
) => number
export declare const makespanSeconds: (runs: ReadonlyArray<AgentRun>) => number
export declare const slowestChain: (runs: ReadonlyArray<AgentRun>, jobSeconds: number) => {
  readonly agent: string
  readonly firstStart: number
  readonly own: number
  readonly gaps: number
  readonly jobs: number
}
export declare const pairRuns: (records: ReadonlyArray<AgentRecord>) => Array<AgentRun>
export declare const parseRecords: (text: string) => Array<AgentRecord>
export declare const agentsNeverOverlap: (runs: ReadonlyArray<AgentRun>) => boolean
export declare const cpuPercentOfCore: (ticks: number, ticksPerSecond: number, wallSeconds: number) => number
export declare const daemonCpuBudget: (options: {
  readonly targetJobsPerSecond: number
  readonly cores: number
  readonly othersMsPerJob: number
}) => { readonly wallMsPerJob: number; readonly capacityMsPerJob: number; readonly daemonMsPerJob: number }
export declare const verdict: (value: number, target: number, kind: "max" | "min") => "met" | "missed"
export declare const fmt: (value: number, digits?: number) => string
export declare const fmtAgainst: (value: number, target: number | undefined, digits?: number) => string
export declare const markdownTable: (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<unknown>>) => string
