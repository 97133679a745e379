// Compiles a checked rule set into what the engine runs: frozen definitions, conditions as
// plain functions, rules indexed by trigger in priority order, and a content version.
import { createHash } from 'node:crypto';
import type { Conditions } from './schema.ts';
import { parseDuration } from './duration.ts';
import { compileConditions, ConditionCompileError } from './evaluator.ts';
import { byFile, checkRuleSet } from './check.ts';
import type {
  CompiledRule,
  CompiledSegment,
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

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === 'object') {
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
    );
  }
  return v;
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
  } catch (e) {
    // Validation accepts only what compiles; this reports any gap instead of crashing.
    if (e instanceof ConditionCompileError)
      errors.push({
        file,
        path: at + e.path.slice(1),
        message: e.message.slice(e.path.length + 2),
      });
    else errors.push({ file, path: at, message: String(e) });
    return null;
  }
}

/**
 * Checks and compiles rule files (one rule or a list per file) and segment files (in a
 * `segments` folder). All errors are returned; a set is produced only when there are none.
 */
export function compileRuleSet(
  files: { file: string; content: unknown }[],
  opts: { templates?: Set<string> } = {},
): RuleSetResult {
  const check = checkRuleSet(files, opts);
  if (!check.ok) return check;
  const { rules, segments, eventTypes } = check.checked;
  const errors: RuleError[] = [];
  const compiledSegments: CompiledSegment[] = [];
  for (const s of segments) {
    const test = compilePredicate(errors, s.file, s.def.conditions, `${s.at}.conditions`);
    if (test) compiledSegments.push({ def: deepFreeze(withoutSchemaKey(s.def)), test });
  }
  const compiledRules: CompiledRule[] = [];
  for (const r of rules) {
    const def = deepFreeze({
      ...withoutSchemaKey(r.def),
      enabled: r.def.enabled ?? true,
      priority: r.def.priority ?? 0,
    });
    const t = def.trigger;
    const conditions =
      compilePredicate(errors, r.file, def.conditions, `${r.at}.conditions`) ?? (() => true);
    const where =
      'event' in t && t.where
        ? compilePredicate(errors, r.file, t.where, `${r.at}.trigger.where`)
        : null;
    compiledRules.push({
      def,
      conditions,
      where,
      delayMs: 'event' in t && t.delay ? parseDuration(t.delay) : null,
      cooldownMs: def.limits?.cooldown ? parseDuration(def.limits.cooldown) : null,
      goalWithinMs: def.goal ? parseDuration(def.goal.within) : null,
      expiresAfterMs: def.expiresAfter ? parseDuration(def.expiresAfter) : null,
    });
  }
  if (errors.length > 0) return { ok: false, errors: byFile(errors) };

  compiledRules.sort(byPriorityThenId);
  compiledSegments.sort((a, b) => (a.def.id < b.def.id ? -1 : 1));
  const byEvent = new Map<string, CompiledRule[]>();
  const bySegment = new Map<string, CompiledRule[]>();
  const scheduled: CompiledRule[] = [];
  for (const r of compiledRules) {
    if (!r.def.enabled) continue;
    const t = r.def.trigger;
    if ('schedule' in t) scheduled.push(r);
    else if ('event' in t) byEvent.set(t.event, [...(byEvent.get(t.event) ?? []), r]);
    else
      bySegment.set(`${t.segment}:${t.on}`, [...(bySegment.get(`${t.segment}:${t.on}`) ?? []), r]);
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
  };
  return { ok: true, ruleSet };
}

function withoutSchemaKey<T extends { $schema?: string }>(def: T): T {
  const copy = structuredClone(def);
  delete copy.$schema;
  return copy;
}
