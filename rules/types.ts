// Types shared by the rule loader, the evaluators and the engine that consumes a rule set.
import type { NormalisedEvent } from '../platform/contracts.ts';
import type { RuleDefinition, SegmentDefinition } from './schema.ts';

/** How often and when a user did one event type; epoch ms. */
export interface EventStats {
  count: number;
  first: number | null;
  last: number | null;
}

/** Everything a condition can look at, for one user at one moment. */
export interface Facts {
  /** The triggering event; null when evaluating segments and schedules. */
  event: NormalisedEvent | null;
  /** Merged traits. */
  user: Record<string, unknown>;
  /** Keyed by exact event type; every type in ruleSet.eventTypes is present (count 0, first/last null). */
  stats: Record<string, EventStats>;
  /** Segment id -> member. */
  segments: Record<string, boolean>;
  /** This rule's history for this user. */
  rule: { fires: number; lastFiredAt: number | null };
  /** Epoch ms (the virtual clock in simulate). */
  now: number;
}

export type Predicate = (facts: Facts) => boolean;

export interface CompiledRule {
  def: RuleDefinition;
  /** The file the rule was written in (as the loader named it), for the people who edit it. */
  file?: string;
  conditions: Predicate;
  where: Predicate | null;
  delayMs: number | null;
  cooldownMs: number | null;
  goalWithinMs: number | null;
  expiresAfterMs: number | null;
  /** `action.send.digest` with its defaults applied; null when the send carries no digest. */
  digest: CompiledDigest | null;
}

export interface CompiledDigest {
  /** Event types listed, in the rule's order. */
  events: readonly string[];
  /** As written ("7d"), for the send's data. */
  window: string;
  windowMs: number;
  maxItems: number;
  minItems: number;
  /** Event properties each item keeps. */
  properties: readonly string[];
}

/** What a user's state keeps of one event type for the digests of the loaded rules: the widest need of any of them. */
export interface DigestKeep {
  /** Items older than this (against the newest event applied) are dropped. */
  maxAgeMs: number;
  /** The newest this many items of the type keep their properties (older ones only count). */
  maxItems: number;
  properties: readonly string[];
}

export interface CompiledSegment {
  def: SegmentDefinition;
  test: Predicate;
}

export interface RuleSet {
  /** Content hash of the set. */
  version: string;
  rules: CompiledRule[];
  segments: CompiledSegment[];
  /** trigger.event -> enabled rules, by priority desc then id. */
  byEvent: Map<string, CompiledRule[]>;
  /** `${segmentId}:enter|exit` -> enabled rules, by priority desc then id. */
  bySegment: Map<string, CompiledRule[]>;
  /** Enabled trigger.schedule rules, by priority desc then id. */
  scheduled: CompiledRule[];
  /** Every event type any rule, segment or goal mentions (stats zero-fill). */
  eventTypes: Set<string>;
  /** Event type -> what to keep of it, for every type a loaded rule's digest names (only those). */
  digestKeep: Map<string, DigestKeep>;
}

/** One problem in one rule file; `path` is a JSONPath into the file such as `$.conditions.all[1].operator`. */
export interface RuleError {
  file: string;
  path: string;
  message: string;
}

export type RuleSetResult = { ok: true; ruleSet: RuleSet } | { ok: false; errors: RuleError[] };
