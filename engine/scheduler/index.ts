// The scheduler: recurring (`{schedule}`) rules and campaign runs fanned out as one event per user onto the events topic, from a sharded Redis user directory or an uploaded list, resumable, throttled and leased per rule or campaign.
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
export {
  createRedisProgressStore,
  fanOutSummary,
  type FanOutSummary,
  type ProgressStore,
  type RuleProgress,
} from './progress.ts';
export { directoryAudience, ruleJob, type AudienceSource, type FanOutJob } from './jobs.ts';
export { campaignJobs, campaignTiming, listAudience, onceAt, cronUntil } from './campaign-jobs.ts';
export { createThrottle, throttledPageSize, type Throttle } from './throttle.ts';
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
  planOccurrences,
  scheduleZone,
  type DirectoryChange,
  type ZonePlan,
  type ZoneProgress,
} from './plan.ts';
