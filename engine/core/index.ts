// The engine core: pure per-user evaluation of rules over events (state, segments, timers, schedules) shared by simulate, the demo and the distributed engine.
export {
  createEngineCore,
  timerFiredEvent,
  TIMER_EVENT,
  SEGMENT_ENTERED,
  SEGMENT_EXITED,
  SEGMENT_RECHECK,
  USER_DELETED,
  INTERNAL_EVENT_TYPES,
  type EngineCore,
  type EngineCoreDeps,
  type CoreResult,
  type ApplyStatus,
  type Timer,
} from './engine-core.ts';
export { emptyState, serializeState, deserializeState, cloneState, toStored, fromStored, StateFormatError, RECENT_IDS, MAX_TRACKED_TYPES, type UserState, type RuleHistory } from './state.ts';
export { deterministicId, sendIdFor, timerIdFor, segmentEventIdFor, occurrenceEventIdFor } from './ids.ts';
export { SCHEDULE_EVENT, TIMEZONE_TRAIT, scheduleOccurrences, nextOccurrence, occurrenceEvent, scheduleTrigger, timezoneFor, isValidTimezone } from './schedule.ts';
export { createMemoryStateStore, createTimerQueue, type MemoryStateStore, type TimerQueue } from './memory.ts';
export { parseInputLine, type ParsedLine } from './input.ts';
export { createSimulation, formatSummary, toOutputRecord, type Simulation, type SimulationOptions, type SimulationSummary } from './simulate.ts';
