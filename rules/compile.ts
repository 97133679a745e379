// Compiles a checked rule set into what the engine runs: frozen definitions, conditions as
// plain functions, rules indexed by trigger in priority order, and a content version.
import { createHash } from 'node:crypto';
import { DIGEST_DEFAULTS, type Conditions, type DigestDefinition } from './schema.ts';
import { parseDuration } from './duration.ts';
import { compileConditions, ConditionCompileError } from './evaluator.ts';
import { byFile, checkRuleSet, type CheckOptions } from './check.ts';
import type {
  CompiledDigest,
  CompiledRule,
  CompiledSegment,
  DigestKeep,
  Predicate,
  RuleError,
  RuleSet,
  RuleSetResult,
} from './types.ts';

function byPriorityThenId(a: CompiledRule, b: CompiledRule): number {
  return (
    (b.def.priority ?? 0) - (a.def.priority ?? 0) ||
    (a.def.id < b.def.id ? -1 : a.def.id > b.def.id ? 1 : 0)
  );
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, canonical((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}

function compilePredicate(
  errors: RuleError[],
  file: string,
  conditions: Conditions | undefined,
  at: string,
): Predicate | null {
  if (conditions === undefined) return null;
  try {
    return compileConditions(conditions);
  } catch (err) {
    // Validation accepts only what compiles; this reports any gap instead of crashing.
    if (err instanceof ConditionCompileError)
      errors.push({
        file,
        path: at + err.path.slice(1),
        message: err.message.slice(err.path.length + 2),
      });
    else errors.push({ file, path: at, message: String(err) });
    return null;
  }
}

/**
 * Checks and compiles rule files (one rule or a list per file) and segment files (in a
 * `segments` folder). All errors are returned; a set is produced only when there are none.
 */
export function compileRuleSet(
  files: { file: string; content: unknown }[],
  opts: CheckOptions = {},
): RuleSetResult {
  const check = checkRuleSet(files, opts);
  if (!check.ok) return check;
  const { rules, segments, eventTypes } = check.checked;
  const errors: RuleError[] = [];
  const compiledSegments: CompiledSegment[] = [];
  for (const segment of segments) {
    const test = compilePredicate(
      errors,
      segment.file,
      segment.def.conditions,
      `${segment.at}.conditions`,
    );
    if (test) compiledSegments.push({ def: deepFreeze(withoutSchemaKey(segment.def)), test });
  }
  const compiledRules: CompiledRule[] = [];
  for (const rule of rules) {
    const def = deepFreeze({
      ...withoutSchemaKey(rule.def),
      enabled: rule.def.enabled ?? true,
      priority: rule.def.priority ?? 0,
    });
    const trigger = def.trigger;
    const conditions =
      compilePredicate(errors, rule.file, def.conditions, `${rule.at}.conditions`) ?? (() => true);
    const where =
      'event' in trigger && trigger.where
        ? compilePredicate(errors, rule.file, trigger.where, `${rule.at}.trigger.where`)
        : null;
    compiledRules.push({
      def,
      file: rule.file,
      conditions,
      where,
      delayMs: 'event' in trigger && trigger.delay ? parseDuration(trigger.delay) : null,
      cooldownMs: def.limits?.cooldown ? parseDuration(def.limits.cooldown) : null,
      goalWithinMs: def.goal ? parseDuration(def.goal.within) : null,
      expiresAfterMs: def.expiresAfter ? parseDuration(def.expiresAfter) : null,
      digest: def.action.send.digest ? compileDigest(def.action.send.digest) : null,
    });
  }
  if (errors.length > 0) return { ok: false, errors: byFile(errors) };

  compiledRules.sort(byPriorityThenId);
  compiledSegments.sort((a, b) => (a.def.id < b.def.id ? -1 : 1));
  const byEvent = new Map<string, CompiledRule[]>();
  const bySegment = new Map<string, CompiledRule[]>();
  const scheduled: CompiledRule[] = [];
  for (const rule of compiledRules) {
    if (!rule.def.enabled) continue;
    const trigger = rule.def.trigger;
    if ('schedule' in trigger) scheduled.push(rule);
    else if ('event' in trigger)
      byEvent.set(trigger.event, [...(byEvent.get(trigger.event) ?? []), rule]);
    else
      bySegment.set(`${trigger.segment}:${trigger.on}`, [
        ...(bySegment.get(`${trigger.segment}:${trigger.on}`) ?? []),
        rule,
      ]);
  }
  const version = createHash('sha256')
    .update(
      JSON.stringify(
        canonical({
          rules: compiledRules.map((r) => r.def),
          segments: compiledSegments.map((s) => s.def),
        }),
      ),
    )
    .digest('hex')
    .slice(0, 16);
  const ruleSet: RuleSet = {
    version,
    rules: compiledRules,
    segments: compiledSegments,
    byEvent,
    bySegment,
    scheduled,
    eventTypes,
    digestKeep: digestKeepOf(compiledRules),
  };
  return { ok: true, ruleSet };
}

function compileDigest(def: DigestDefinition): CompiledDigest {
  return {
    events: def.events,
    window: def.window,
    windowMs: parseDuration(def.window),
    maxItems: def.maxItems ?? DIGEST_DEFAULTS.maxItems,
    minItems: def.minItems ?? DIGEST_DEFAULTS.minItems,
    properties: def.properties ?? [],
  };
}

/** Per event type, the widest window, count and property list any loaded rule's digest asks for (disabled rules too: enabling one finds its items). */
function digestKeepOf(rules: readonly CompiledRule[]): Map<string, DigestKeep> {
  const keep = new Map<string, DigestKeep>();
  for (const rule of rules) {
    const digest = rule.digest;
    if (!digest) continue;
    for (const type of digest.events) {
      const prev = keep.get(type);
      keep.set(
        type,
        prev
          ? {
              maxAgeMs: Math.max(prev.maxAgeMs, digest.windowMs),
              maxItems: Math.max(prev.maxItems, digest.maxItems),
              properties: [...new Set([...prev.properties, ...digest.properties])],
            }
          : {
              maxAgeMs: digest.windowMs,
              maxItems: digest.maxItems,
              properties: [...digest.properties],
            },
      );
    }
  }
  return keep;
}

function withoutSchemaKey<T extends { $schema?: string }>(def: T): T {
  const copy = structuredClone(def);
  delete copy.$schema;
  return copy;
}

/**
 * A compiled set with more rules added (the rules campaigns compile to): the base set's
 * definitions are checked and compiled again together with `extra`, so the result is indexed
 * and versioned as one set. Errors can only come from `extra` (the base passed already).
 */
export function extendRuleSet(
  base: RuleSet,
  extra: { file: string; content: unknown }[],
  opts: Omit<CheckOptions, 'campaignRules'> = {},
): RuleSetResult {
  if (extra.length === 0) return { ok: true, ruleSet: base };
  const files = [
    ...filesOfRules(base.rules),
    ...(base.segments.length > 0
      ? [{ file: '<rules>/segments/segments.json', content: base.segments.map((s) => s.def) }]
      : []),
    ...extra,
  ].filter((f) => !Array.isArray(f.content) || f.content.length > 0);
  return compileRuleSet(files, { ...opts, campaignRules: true });
}

/** The rules as files again, each in the file it came from (so errors and listings still name it). */
function filesOfRules(rules: readonly CompiledRule[]): { file: string; content: unknown[] }[] {
  const byFileName = new Map<string, unknown[]>();
  for (const r of rules) {
    const file = r.file ?? '<rules>/rules.json';
    byFileName.set(file, [...(byFileName.get(file) ?? []), r.def]);
  }
  return [...byFileName].map(([file, content]) => ({ file, content }));
}

/** The file name a draft rule's errors name (`draft:$.trigger.delay: ...`). */
export const DRAFT_FILE = 'draft';

/**
 * A set to try one rule in before it is saved (simulate, backtest): `draft` checked by the
 * same checker as the rule files (errors name `draft` and a JSON path), compiled as enabled
 * whatever it says, with the base set's segments and no other rule, so only its own sends
 * come out. Templates are checked when `opts.templates` is given, as the loader does.
 */
export function draftRuleSet(
  base: RuleSet,
  draft: unknown,
  opts: Omit<CheckOptions, 'campaignRules'> = {},
): RuleSetResult {
  const enabled =
    draft !== null && typeof draft === 'object' && !Array.isArray(draft)
      ? { ...(draft as object), enabled: true }
      : draft;
  const files = [
    ...(base.segments.length > 0
      ? [{ file: '<rules>/segments/segments.json', content: base.segments.map((s) => s.def) }]
      : []),
    { file: DRAFT_FILE, content: enabled },
  ];
  return compileRuleSet(files, opts);
}
