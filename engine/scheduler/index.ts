// The scheduler: recurring (`{schedule}`) rules fanned out as one `schedule.occurrence` event per user onto the events topic, from a sharded Redis user directory, resumable and leased per rule.
export { runScheduler, type RunningScheduler } from './main.ts';
export {
  createSchedulerService,
  schedulerConfigFrom,
  DIRECTORY_WAIT_MS,
  type SchedulerService,
  type SchedulerServiceConfig,
  type SchedulerServiceDeps,
  type SchedulerHealth,
} from './scheduler-service.ts';
export {
  createRedisDirectory,
  shardOf,
  DIRECTORY_SHARDS,
  type UserDirectory,
  type DirectoryPage,
} from './directory.ts';
export { createRedisProgressStore, type ProgressStore, type RuleProgress } from './progress.ts';
export {
  createMemoryDirectory,
  createMemoryProgressStore,
  createMemoryScheduler,
} from './memory.ts';
export {
  changeFor,
  combine,
  directoryChanges,
  planZone,
  scheduleZone,
  type DirectoryChange,
  type ZonePlan,
  type ZoneProgress,
} from './plan.ts';
