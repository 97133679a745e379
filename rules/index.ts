// The rules room: validates, compiles, indexes and hot-reloads product owners' rule and segment files, and evaluates their conditions fast.
export type {
  RuleDefinition,
  SegmentDefinition,
  Conditions,
  ConditionNode,
  Trigger,
  EventTrigger,
  SegmentTrigger,
  ScheduleTrigger,
  OperatorName,
  FactName,
} from './schema.ts';
export {
  RuleSchema,
  SegmentSchema,
  OPERATORS,
  FACTS,
  DIGEST_LIMITS,
  DIGEST_DEFAULTS,
  type DigestDefinition,
} from './schema.ts';
export type {
  EventStats,
  Facts,
  Predicate,
  CompiledRule,
  CompiledSegment,
  CompiledDigest,
  DigestKeep,
  RuleSet,
  RuleError,
  RuleSetResult,
} from './types.ts';
export {
  formatRuleError,
  isValidTimezone,
  cronProblem,
  CAMPAIGN_RULE_ID_PREFIX,
  type CheckOptions,
} from './check.ts';
export { compileRuleSet, extendRuleSet, draftRuleSet, DRAFT_FILE } from './compile.ts';
export {
  loadRuleSet,
  watchRuleSet,
  openRuleSet,
  listTemplates,
  type LiveRuleSet,
  type RejectedReload,
  type LoadOptions,
  type WatchOptions,
  type RuleSetHandlers,
} from './loader.ts';
export { parseDuration } from './duration.ts';
export { assignExperiment, type ExperimentAssignment } from './experiment.ts';
export { compileConditions, ConditionCompileError } from './evaluator.ts';
export { referenceEvaluate } from './reference.ts';
export { completeStats } from './facts.ts';
