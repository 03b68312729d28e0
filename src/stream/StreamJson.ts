/**
 * What an agent writes with `claude --output-format stream-json --verbose`: one JSON object per
 * line (see the reference notes). Pure functions only: splitting bytes into bounded lines
 * (`LineSplitter.ts`), decoding one line into an event (`AgentEvent.ts`), folding events into the
 * job's progress (`OutputState.ts`), recognising a provider's usage limit with its reset time
 * (`UsageLimit.ts`) and describing progress (`describeProgress.ts`). This module gathers them for
 * the modules that read an agent's output.
 */
export { type AgentEvent, parseLine, type Usage } from "./AgentEvent.js"
export { describeProgress, formatCost } from "./describeProgress.js"
export { type Line, LineSplitter, MAX_LINE_BYTES } from "./LineSplitter.js"
export {
  applyEvent,
  applyLine,
  emptyOutput,
  emptyProgress,
  type OutputState,
  type Progress,
  reportedError,
  type ResultInfo
} from "./OutputState.js"
export { isLimitMessage, type LimitSignal, limitSignalOf, mentionsLimit, parseResetTime } from "./UsageLimit.js"
