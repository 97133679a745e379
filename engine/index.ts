// The engine room: a pure core that turns each user event into state, send commands and timers; the runtime that runs it on Kafka + Redis (one fenced writer per partition) or in memory; campaigns and the rules they compile to; and the scheduler that fans recurring rules and campaign runs out per user.
export {
  createEngineCore,
  timerFiredEvent,
  TIMER_EVENT,
  SEGMENT_ENTERED,
  SEGMENT_EXITED,
  SEGMENT_RECHECK,
  USER_DELETED,
  INTERNAL_EVENT_TYPES,
  type Timer,
  type ApplyStatus,
  type CoreResult,
  type EngineCore,
  type EngineCoreDeps,
} from './core/engine-core.ts';
export {
  serializeState,
  deserializeState,
  cloneState,
  emptyState,
  StateFormatError,
  type UserState,
  type RuleHistory,
} from './core/state.ts';
export {
  createMemoryStateStore,
  createTimerQueue,
  type MemoryStateStore,
  type TimerQueue,
} from './core/memory.ts';
export { deterministicId, sendIdFor, timerIdFor } from './core/ids.ts';
export {
  SCHEDULE_EVENT,
  scheduleOccurrences,
  nextOccurrence,
  occurrenceEvent,
  timezoneFor,
} from './core/schedule.ts';
export { parseInputLine, type ParsedLine } from './core/input.ts';
export {
  createSimulation,
  formatSummary,
  toOutputRecord,
  type Simulation,
  type SimulationOptions,
  type SimulationSummary,
} from './core/simulate.ts';

export {
  createEngineService,
  type EngineService,
  type EngineServiceConfig,
  type EngineServiceDeps,
  type EngineCorePort,
  type StateCodecPort,
} from './runtime/engine-service.ts';
export { createRedisStateStore, partitionKeys, userKeys } from './runtime/redis-state.ts';
export { createRedisTimerStore, startTimerPoller, type TimerPoller } from './runtime/timers.ts';
export {
  MemoryStores,
  TOMBSTONE_TTL_MS,
  type StateStore,
  type TimerStore,
  type StoredUser,
  type UserWrite,
  type WriteResult,
  type ContactChange,
  type ContactIndex,
} from './runtime/stores.ts';
export { createMemoryEngine, wireCore, type CoreWiring } from './runtime/wiring.ts';
export {
  createUserDirectory,
  createRedisUserDirectory,
  profileOf,
  pendingTimerOf,
  type UserViewStores,
} from './runtime/user-view.ts';
export {
  createRedisContactIndex,
  contactTerms,
  normaliseEmail,
  normalisePhone,
  queryTerms,
} from './runtime/contacts.ts';
export { runEngine, type RunningEngine } from './runtime/main.ts';
export * from './scheduler/index.ts';
export * from './campaigns/index.ts';
export {
  CAMPAIGN_EVENT,
  campaignRuleId,
  campaignIdOfRule,
  campaignMemberEvent,
  campaignRunId,
} from './core/campaign.ts';
