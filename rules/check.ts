// Checks rule and segment files before anything is compiled. Every problem is reported,
// each as file + JSONPath + a message a product owner can act on, so one pass over a rules
// folder tells its author everything that is wrong.
import path from 'node:path';
import { Value } from '@sinclair/typebox/value';
import type { TSchema } from '@sinclair/typebox';
import { CronExpressionParser } from 'cron-parser';
import type { Channel } from '../platform/contracts.ts';
import type { MessageTypes } from '../platform/message-types.ts';
import { isValidTimezone } from '../platform/time.ts';
import {
  DIGEST_DEFAULTS,
  DIGEST_LIMITS,
  EventTriggerSchema,
  FACTS,
  OPERATORS,
  RuleSchema,
  ScheduleTriggerSchema,
  SegmentSchema,
  SegmentTriggerSchema,
  SEGMENT_FACTS,
  type FactName,
  type RuleDefinition,
  type SegmentDefinition,
} from './schema.ts';
import { DURATION_HINT, DURATION_PATTERN, parseDuration, tryParseDuration } from './duration.ts';
import { parsePath } from './path.ts';
import { didYouMean } from './suggest.ts';
import type { RuleError } from './types.ts';

export function formatRuleError(error: RuleError): string {
  return `${error.file}:${error.path}: ${error.message}`;
}

/** `$.a.b[0]["Feature Used"]` from a base path and keys. */
export function jsonPathOf(base: string, keys: readonly (string | number)[]): string {
  let out = base;
  for (const key of keys) {
    if (typeof key === 'number' || /^[0-9]+$/.test(key)) out += `[${key}]`;
    else if (/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key)) out += `.${key}`;
    else out += `[${JSON.stringify(key)}]`;
  }
  return out;
}

function pointerKeys(pointer: string): string[] {
  if (pointer === '' || pointer === '/') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((k) => k.replaceAll('~1', '/').replaceAll('~0', '~'));
}

const list = (xs: readonly string[]) => xs.map((x) => `"${x}"`).join(', ');

interface Ctx {
  file: string;
  errors: RuleError[];
}

function push(ctx: Ctx, at: string, message: string): void {
  ctx.errors.push({ file: ctx.file, path: at, message });
}

/** Schema errors, one per location, in words; locations under `skip` are checked elsewhere. */
function schemaErrors(
  ctx: Ctx,
  schema: TSchema,
  value: unknown,
  base: string,
  skip: readonly string[] = [],
): void {
  const seen = new Set<string>();
  for (const error of Value.Errors(schema, value)) {
    if (skip.some((s) => error.path === s || error.path.startsWith(`${s}/`))) continue;
    const keys = pointerKeys(error.path);
    const where = jsonPathOf(base, keys);
    if (seen.has(where)) continue;
    seen.add(where);
    const errorSchema = error.schema as Record<string, unknown>;
    let message: string;
    if (error.message === 'Expected required property') message = 'is required';
    else if (error.message === 'Unexpected property') {
      const parentSchema = schemaAt(schema, keys.slice(0, -1));
      const known =
        parentSchema && typeof parentSchema.properties === 'object'
          ? Object.keys(parentSchema.properties as object)
          : [];
      const name = keys[keys.length - 1] ?? '';
      message = `unknown field "${name}"${didYouMean(name, known)}${known.length ? `; fields here: ${list(known.filter((k) => k !== '$schema'))}` : ''}`;
    } else if (errorSchema.pattern === DURATION_PATTERN && typeof error.value === 'string') {
      message = `invalid duration ${JSON.stringify(error.value)}: ${DURATION_HINT}`;
    } else if (
      typeof errorSchema.patternErrorMessage === 'string' &&
      typeof error.value === 'string' &&
      errorSchema.pattern &&
      !new RegExp(errorSchema.pattern as string).test(error.value)
    ) {
      message = `invalid value ${JSON.stringify(error.value)}: ${errorSchema.patternErrorMessage}`;
    } else if (
      Array.isArray(errorSchema.anyOf) &&
      errorSchema.anyOf.every((x: Record<string, unknown>) => 'const' in x)
    ) {
      const options = errorSchema.anyOf.map((x: Record<string, unknown>) => String(x.const));
      message = `${JSON.stringify(error.value)} is not allowed: use one of ${list(options)}${typeof error.value === 'string' ? didYouMean(error.value, options) : ''}`;
    } else {
      message = error.message.charAt(0).toLowerCase() + error.message.slice(1);
      if (typeof errorSchema.description === 'string' && Array.isArray(errorSchema.anyOf))
        message += ` (${errorSchema.description})`;
    }
    push(ctx, where, message);
  }
}

function schemaAt(schema: TSchema, keys: readonly string[]): Record<string, unknown> | null {
  let cur: Record<string, unknown> | undefined = schema as Record<string, unknown>;
  for (const key of keys) {
    if (!cur) return null;
    if (cur.properties && typeof cur.properties === 'object' && key in (cur.properties as object)) {
      cur = (cur.properties as Record<string, Record<string, unknown>>)[key];
    } else if (cur.items && /^[0-9]+$/.test(key)) cur = cur.items as Record<string, unknown>;
    else if (Array.isArray(cur.anyOf) && cur.anyOf.length === 1) {
      cur = schemaAt(cur.anyOf[0] as TSchema, [key]) ?? undefined;
    } else return null;
  }
  return cur ?? null;
}

const EVENT_FIELDS = [
  'id',
  'userId',
  'anonymousId',
  'type',
  'ts',
  'receivedAt',
  'source',
  'properties',
  'traits',
  'context',
];
const STATS_FIELDS = ['count', 'first', 'last'];
const RULE_FIELDS = ['fires', 'lastFiredAt'];
const BOOLEAN_KEYS = ['all', 'any', 'not'];
const LEAF_KEYS = ['fact', 'path', 'operator', 'value'];

interface ConditionScope {
  facts: readonly FactName[];
  /** Event types read through `stats`, for zero-filling. */
  eventTypes: Set<string>;
  /** Segments read through `segments`, checked once every segment is known. */
  segmentRefs: { id: string; at: string }[];
}

function isPrimitive(value: unknown): boolean {
  return (
    value === null ||
    typeof value === 'string' ||
    typeof value === 'number' ||
    typeof value === 'boolean'
  );
}

function checkFactPath(
  ctx: Ctx,
  scope: ConditionScope,
  fact: unknown,
  jsonPath: unknown,
  at: string,
): void {
  if (typeof fact !== 'string' || !(FACTS as readonly string[]).includes(fact)) {
    push(
      ctx,
      `${at}.fact`,
      `unknown fact ${JSON.stringify(fact)}: use one of ${list(scope.facts)}${typeof fact === 'string' ? didYouMean(fact, FACTS) : ''}`,
    );
    return;
  }
  if (!scope.facts.includes(fact as FactName)) {
    push(
      ctx,
      `${at}.fact`,
      `fact "${fact}" is not available here: use one of ${list(scope.facts)}`,
    );
    return;
  }
  if (jsonPath !== undefined && typeof jsonPath !== 'string') {
    push(ctx, `${at}.path`, 'path must be a string such as "$.plan"');
    return;
  }
  const parsed =
    jsonPath === undefined || jsonPath === ''
      ? { ok: true as const, segments: [] as readonly string[] }
      : parsePath(jsonPath);
  if (!parsed.ok) {
    push(ctx, `${at}.path`, parsed.message);
    return;
  }
  const segs = parsed.segments;
  const pathAt = `${at}.path`;
  switch (fact) {
    case 'stats': {
      if (segs.length === 0) {
        push(
          ctx,
          jsonPath === undefined ? at : pathAt,
          'stats needs a path naming an event type and a field, e.g. "$.export_done.count" or "$[\\"Feature Used\\"].last"',
        );
        return;
      }
      scope.eventTypes.add(segs[0]!);
      if (segs.length >= 2 && !STATS_FIELDS.includes(segs[1]!)) {
        push(
          ctx,
          pathAt,
          `stats of an event type have only ${list(STATS_FIELDS)}, not "${segs[1]}"${didYouMean(segs[1]!, STATS_FIELDS)}`,
        );
      } else if (segs.length > 2)
        push(ctx, pathAt, `stats fields are numbers or null; nothing follows "${segs[1]}"`);
      return;
    }
    case 'segments':
      if (segs.length !== 1) {
        push(
          ctx,
          jsonPath === undefined ? at : pathAt,
          'segments needs a path naming one segment, e.g. "$.inactive_30d" (true when the user is a member)',
        );
        return;
      }
      scope.segmentRefs.push({ id: segs[0]!, at: pathAt });
      return;
    case 'rule':
      if (segs.length > 0 && !RULE_FIELDS.includes(segs[0]!))
        push(
          ctx,
          pathAt,
          `rule has only ${list(RULE_FIELDS)}, not "${segs[0]}"${didYouMean(segs[0]!, RULE_FIELDS)}`,
        );
      else if (segs.length > 1)
        push(ctx, pathAt, `rule.${segs[0]} is a number; nothing follows it`);
      return;
    case 'now':
      if (segs.length > 0)
        push(ctx, pathAt, 'now is a number (epoch ms) and has no fields; leave out "path"');
      return;
    case 'event':
      if (segs.length > 0 && !EVENT_FIELDS.includes(segs[0]!)) {
        push(
          ctx,
          pathAt,
          `an event has ${list(EVENT_FIELDS)}, not "${segs[0]}"${didYouMean(segs[0]!, EVENT_FIELDS)}; event data is under "$.properties"`,
        );
      }
      return;
  }
}

function checkValue(
  ctx: Ctx,
  scope: ConditionScope,
  operator: string,
  value: unknown,
  at: string,
): void {
  const vAt = `${at}.value`;
  if (
    value !== null &&
    typeof value === 'object' &&
    !Array.isArray(value) &&
    Object.hasOwn(value, 'fact')
  ) {
    if (operator === 'in' || operator === 'notIn') {
      push(ctx, vAt, `${operator} needs a list of values, not a fact reference`);
      return;
    }
    for (const key of Object.keys(value))
      if (key !== 'fact' && key !== 'path')
        push(
          ctx,
          jsonPathOf(vAt, [key]),
          `unknown field "${key}" in a fact reference; use "fact" and "path"`,
        );
    const ref = value as { fact: unknown; path?: unknown };
    checkFactPath(ctx, scope, ref.fact, ref.path, vAt);
    return;
  }
  const shown = JSON.stringify(value);
  switch (operator) {
    case 'equal':
    case 'notEqual':
    case 'contains':
    case 'doesNotContain':
      if (!isPrimitive(value)) {
        push(
          ctx,
          vAt,
          `${operator} compares with one value (text, number, true/false or null), not ${shown}${operator.endsWith('qual') ? '; use "in" / "notIn" for a list' : ''}`,
        );
      }
      return;
    case 'in':
    case 'notIn':
      if (!Array.isArray(value))
        push(ctx, vAt, `${operator} needs a list of values, e.g. ["trial", "basic"], not ${shown}`);
      else
        value.forEach(
          (item, index) =>
            isPrimitive(item) ||
            push(ctx, `${vAt}[${index}]`, 'list items must be text, numbers, true/false or null'),
        );
      return;
    case 'lessThan':
    case 'lessThanInclusive':
    case 'greaterThan':
    case 'greaterThanInclusive':
      if (typeof value !== 'number') push(ctx, vAt, `${operator} needs a number, not ${shown}`);
      return;
    case 'exists':
    case 'notExists':
      if (typeof value !== 'boolean')
        push(ctx, vAt, `${operator} takes true (or false to invert), not ${shown}`);
      return;
    case 'withinLast':
    case 'olderThan':
    case 'withinNext':
      if (tryParseDuration(value) === null)
        push(ctx, vAt, `invalid duration ${shown}: ${DURATION_HINT}`);
      return;
    case 'startsWith':
    case 'endsWith':
      if (typeof value !== 'string') push(ctx, vAt, `${operator} needs text, not ${shown}`);
      return;
  }
}

function checkCondition(
  ctx: Ctx,
  scope: ConditionScope,
  node: unknown,
  at: string,
  root: boolean,
): void {
  if (node === null || typeof node !== 'object' || Array.isArray(node)) {
    push(
      ctx,
      at,
      root
        ? 'conditions must be an object starting with "all", "any" or "not"'
        : 'a condition must be an object: {"fact", "path", "operator", "value"} or {"all"|"any"|"not": ...}',
    );
    return;
  }
  const keys = Object.keys(node);
  const fields = node as Record<string, unknown>;
  const bool = BOOLEAN_KEYS.filter((k) => keys.includes(k));
  if (bool.length > 1) {
    push(
      ctx,
      at,
      `use one of "all", "any", "not" per object, not ${list(bool)}; nest them instead`,
    );
    return;
  }
  if (bool.length === 1) {
    const kind = bool[0]!;
    for (const key of keys) {
      if (key !== kind)
        push(
          ctx,
          jsonPathOf(at, [key]),
          `unknown field "${key}" next to "${kind}"${LEAF_KEYS.includes(key) ? `; put the comparison inside "${kind}"` : ''}`,
        );
    }
    const inner = fields[kind];
    if (kind === 'not') {
      if (Array.isArray(inner))
        push(
          ctx,
          `${at}.not`,
          '"not" takes one condition, not a list; wrap several in {"all": [...]}',
        );
      else checkCondition(ctx, scope, inner, `${at}.not`, false);
    } else if (!Array.isArray(inner))
      push(ctx, `${at}.${kind}`, `"${kind}" must be a list of conditions`);
    else inner.forEach((c, i) => checkCondition(ctx, scope, c, `${at}.${kind}[${i}]`, false));
    return;
  }
  if (root) {
    push(
      ctx,
      at,
      'conditions must start with "all", "any" or "not", e.g. {"all": [{"fact": "user", "path": "$.plan", "operator": "equal", "value": "trial"}]}',
    );
    return;
  }
  for (const key of keys)
    if (!LEAF_KEYS.includes(key))
      push(
        ctx,
        jsonPathOf(at, [key]),
        `unknown field "${key}"${didYouMean(key, LEAF_KEYS)}; a condition has ${list(LEAF_KEYS)}`,
      );
  for (const key of ['fact', 'operator', 'value'])
    if (!keys.includes(key)) push(ctx, jsonPathOf(at, [key]), 'is required');
  if (keys.includes('fact')) checkFactPath(ctx, scope, fields.fact, fields.path, at);
  if (!keys.includes('operator')) return;
  const operator = fields.operator;
  if (typeof operator !== 'string' || !(OPERATORS as readonly string[]).includes(operator)) {
    push(
      ctx,
      `${at}.operator`,
      `unknown operator ${JSON.stringify(operator)}${typeof operator === 'string' ? didYouMean(operator, OPERATORS) : ''}: use one of ${list(OPERATORS)}`,
    );
    return;
  }
  if (keys.includes('value')) checkValue(ctx, scope, operator, fields.value, at);
}

/** What the schema's pattern cannot say about a duration: zero, or too long to count in ms. */
function checkDuration(ctx: Ctx, value: unknown, at: string, label: string): void {
  if (typeof value !== 'string' || !new RegExp(DURATION_PATTERN).test(value)) return; // reported by the schema
  const ms = tryParseDuration(value);
  if (ms === null) push(ctx, at, `duration ${JSON.stringify(value)} is too long`);
  else if (ms === 0) push(ctx, at, `${label} must be longer than zero`);
}

/** Events the engine makes or acts on without counting them: none of them ever reaches a digest. */
const INTERNAL_DIGEST_TYPES: ReadonlySet<string> = new Set([
  'timer.fired',
  'schedule.occurrence',
  'campaign.member',
  'segment.entered',
  'segment.exited',
  'user_deleted',
]);

const MAX_DIGEST_WINDOW_MS = parseDuration(DIGEST_LIMITS.window);

/** What the schema cannot say about a digest: its window's bounds, minItems against maxItems. */
function checkDigest(
  ctx: Ctx,
  digest: Record<string, unknown>,
  at: string,
  eventTypes: Set<string>,
): void {
  checkDuration(ctx, digest.window, `${at}.window`, 'digest.window');
  const windowMs = tryParseDuration(digest.window);
  if (windowMs !== null && windowMs > MAX_DIGEST_WINDOW_MS)
    push(
      ctx,
      `${at}.window`,
      `a digest looks back at most ${DIGEST_LIMITS.window} (the engine keeps no older items), not ${JSON.stringify(digest.window)}`,
    );
  const maxItems = typeof digest.maxItems === 'number' ? digest.maxItems : DIGEST_DEFAULTS.maxItems;
  if (typeof digest.minItems === 'number' && digest.minItems > maxItems)
    push(
      ctx,
      `${at}.minItems`,
      `minItems (${digest.minItems}) is more than maxItems (${maxItems}): such a digest could never be sent`,
    );
  if (Array.isArray(digest.events))
    digest.events.forEach((type, index) => {
      if (typeof type !== 'string' || !type) return;
      if (INTERNAL_DIGEST_TYPES.has(type))
        push(
          ctx,
          `${at}.events[${index}]`,
          `"${type}" is made by the engine itself and is never kept for a digest; name events your app or database sends`,
        );
      eventTypes.add(type);
    });
}

const CRON_ALIASES = ['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@hourly'];

function checkCron(ctx: Ctx, expr: string, at: string): void {
  const problem = cronProblem(expr);
  if (problem !== null) push(ctx, at, problem);
}

/** What is wrong with a schedule expression (5-field cron or an alias), or null when it is valid. */
export function cronProblem(expr: string): string | null {
  const trimmed = expr.trim();
  if (trimmed.startsWith('@')) {
    return CRON_ALIASES.includes(trimmed)
      ? null
      : `unknown schedule ${JSON.stringify(expr)}: use a 5-field cron such as "0 9 * * 1" or one of ${list(CRON_ALIASES)}`;
  }
  const fields = trimmed.split(/\s+/);
  if (fields.length !== 5)
    return `invalid cron ${JSON.stringify(expr)}: expected 5 fields (minute hour day-of-month month day-of-week), found ${fields.length}`;
  try {
    CronExpressionParser.parse(trimmed, { tz: 'UTC' });
    return null;
  } catch (err) {
    return `invalid cron ${JSON.stringify(expr)}: ${err instanceof Error ? err.message : String(err)}`;
  }
}

export { isValidTimezone };

export interface Located<T> {
  file: string;
  at: string;
  def: T;
}

interface Pending {
  segmentRefs: { file: string; id: string; at: string }[];
  templateRefs: { file: string; name: string; at: string }[];
  typeRefs: {
    file: string;
    name: string;
    at: string;
    ruleAt: string;
    category: unknown;
    channels: unknown;
  }[];
}

function checkRule(
  ctx: Ctx,
  item: unknown,
  at: string,
  eventTypes: Set<string>,
  pending: Pending,
): boolean {
  const before = ctx.errors.length;
  if (item === null || typeof item !== 'object' || Array.isArray(item)) {
    push(ctx, at, 'a rule must be an object (or a file may hold a list of rule objects)');
    return false;
  }
  const rule = item as Record<string, unknown>;
  schemaErrors(ctx, RuleSchema, item, at, ['/trigger', '/conditions']);
  const scope: ConditionScope = { facts: FACTS, eventTypes, segmentRefs: [] };
  const refSegment = (id: unknown, p: string) => {
    if (typeof id === 'string') scope.segmentRefs.push({ id, at: p });
  };
  // Trigger: pick the variant by its key so errors speak about that kind of trigger.
  const trigger = rule.trigger;
  const triggerAt = `${at}.trigger`;
  if (trigger === undefined) push(ctx, triggerAt, 'is required');
  else if (trigger === null || typeof trigger !== 'object' || Array.isArray(trigger))
    push(
      ctx,
      triggerAt,
      'trigger must be an object: {"event": ...}, {"segment": ..., "on": ...} or {"schedule": ..., "timezone": ...}',
    );
  else {
    const triggerFields = trigger as Record<string, unknown>;
    if ('schedule' in triggerFields) {
      schemaErrors(ctx, ScheduleTriggerSchema, trigger, triggerAt);
      if (typeof triggerFields.schedule === 'string')
        checkCron(ctx, triggerFields.schedule, `${triggerAt}.schedule`);
      if (
        typeof triggerFields.timezone === 'string' &&
        triggerFields.timezone !== 'user' &&
        !isValidTimezone(triggerFields.timezone)
      ) {
        push(
          ctx,
          `${triggerAt}.timezone`,
          `unknown timezone ${JSON.stringify(triggerFields.timezone)}: use "user" or an IANA name such as "Europe/Berlin" or "UTC"`,
        );
      }
      refSegment(triggerFields.segment, `${triggerAt}.segment`);
    } else if ('event' in triggerFields) {
      schemaErrors(ctx, EventTriggerSchema, trigger, triggerAt, ['/where']);
      if (typeof triggerFields.event === 'string' && triggerFields.event)
        eventTypes.add(triggerFields.event);
      checkDuration(ctx, triggerFields.delay, `${triggerAt}.delay`, 'delay');
      if (triggerFields.where !== undefined)
        checkCondition(ctx, scope, triggerFields.where, `${triggerAt}.where`, true);
    } else if ('segment' in triggerFields) {
      schemaErrors(ctx, SegmentTriggerSchema, trigger, triggerAt);
      refSegment(triggerFields.segment, `${triggerAt}.segment`);
    } else {
      push(
        ctx,
        triggerAt,
        'trigger needs "event" (an event type), "segment" with "on" ("enter" or "exit"), or "schedule" (cron) with "timezone"',
      );
    }
  }
  if (rule.conditions !== undefined)
    checkCondition(ctx, scope, rule.conditions, `${at}.conditions`, true);
  const limits = rule.limits as Record<string, unknown> | undefined;
  if (limits && typeof limits === 'object')
    checkDuration(ctx, limits.cooldown, `${at}.limits.cooldown`, 'cooldown');
  const goal = rule.goal as Record<string, unknown> | undefined;
  if (goal && typeof goal === 'object') {
    checkDuration(ctx, goal.within, `${at}.goal.within`, 'goal.within');
    if (typeof goal.event === 'string' && goal.event) eventTypes.add(goal.event);
  }
  checkDuration(ctx, rule.expiresAfter, `${at}.expiresAfter`, 'expiresAfter');
  const send = (rule.action as { send?: Record<string, unknown> } | undefined)?.send;
  if (send && send.digest !== null && typeof send.digest === 'object')
    checkDigest(
      ctx,
      send.digest as Record<string, unknown>,
      `${at}.action.send.digest`,
      eventTypes,
    );
  if (typeof rule.messageType === 'string')
    pending.typeRefs.push({
      file: ctx.file,
      name: rule.messageType,
      at: `${at}.messageType`,
      ruleAt: at,
      category: rule.category,
      channels: send?.channels,
    });
  if (send && typeof send.template === 'string')
    pending.templateRefs.push({
      file: ctx.file,
      name: send.template,
      at: `${at}.action.send.template`,
    });
  const experiment = rule.experiment as { variants?: unknown } | undefined;
  if (experiment && Array.isArray(experiment.variants)) {
    const ids = new Map<string, number>();
    experiment.variants.forEach((entry: unknown, index) => {
      if (!entry || typeof entry !== 'object') return;
      const variant = entry as Record<string, unknown>;
      if (typeof variant.id === 'string') {
        const prev = ids.get(variant.id);
        if (prev !== undefined)
          push(
            ctx,
            `${at}.experiment.variants[${index}].id`,
            `duplicate variant id "${variant.id}" (also at ${at}.experiment.variants[${prev}])`,
          );
        else ids.set(variant.id, index);
      }
      if (typeof variant.template === 'string')
        pending.templateRefs.push({
          file: ctx.file,
          name: variant.template,
          at: `${at}.experiment.variants[${index}].template`,
        });
    });
  }
  for (const ref of scope.segmentRefs) pending.segmentRefs.push({ file: ctx.file, ...ref });
  return ctx.errors.length === before;
}

function checkSegment(ctx: Ctx, item: unknown, at: string, eventTypes: Set<string>): boolean {
  const before = ctx.errors.length;
  if (item === null || typeof item !== 'object' || Array.isArray(item)) {
    push(ctx, at, 'a segment must be an object (or a file may hold a list of segment objects)');
    return false;
  }
  schemaErrors(ctx, SegmentSchema, item, at, ['/conditions']);
  const conditions = (item as Record<string, unknown>).conditions;
  if (conditions !== undefined)
    checkCondition(
      ctx,
      { facts: SEGMENT_FACTS, eventTypes, segmentRefs: [] },
      conditions,
      `${at}.conditions`,
      true,
    );
  return ctx.errors.length === before;
}

/** A file holds a segment when it sits in a folder named `segments`. */
export function isSegmentFile(file: string): boolean {
  return path.basename(path.dirname(file)) === 'segments';
}

/** Definitions that passed every check, each with the file and JSONPath it was written at. */
export interface CheckedRuleSet {
  rules: Located<RuleDefinition>[];
  segments: Located<SegmentDefinition>[];
  /** Every event type a rule, segment or goal mentions (stats zero-fill). */
  eventTypes: Set<string>;
}

export type RuleSetCheck =
  { ok: true; checked: CheckedRuleSet } | { ok: false; errors: RuleError[] };

/** Rule ids of campaigns (engine/core/campaign.ts): the product makes those rules, rule files may not. */
export const CAMPAIGN_RULE_ID_PREFIX = 'campaign.';

export interface CheckOptions {
  /** When given, every template a rule names must be one of these. */
  templates?: Set<string>;
  /** The set includes the rules campaigns compile to, whose ids are `campaign.<id>` (the engine merges them in). */
  campaignRules?: boolean;
  /** When given, every `messageType` a rule names must be declared there, with the rule's category and channels. */
  messageTypes?: MessageTypes;
}

/**
 * Checks rule files (one rule or a list per file) and segment files (in a `segments`
 * folder), each alone and then together (unique ids, known segments and templates).
 * All errors are returned, grouped by file; definitions only when there are none.
 */
export function checkRuleSet(
  files: { file: string; content: unknown }[],
  opts: CheckOptions = {},
): RuleSetCheck {
  const errors: RuleError[] = [];
  const eventTypes = new Set<string>();
  const pending: Pending = { segmentRefs: [], templateRefs: [], typeRefs: [] };
  const rules: Located<RuleDefinition>[] = [];
  const segments: Located<SegmentDefinition>[] = [];
  // Every item that names an id, valid or not: duplicates and references are checked
  // against what the author wrote, so one broken file does not hide or invent errors.
  const ruleIds: Located<{ id: string }>[] = [];
  const segmentIds: Located<{ id: string }>[] = [];
  const sorted = [...files].sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
  for (const { file, content } of sorted) {
    const ctx: Ctx = { file, errors };
    const segmentFile = isSegmentFile(file);
    const items = Array.isArray(content)
      ? content.map((c, i) => [c, `$[${i}]`] as const)
      : [[content, '$'] as const];
    if (Array.isArray(content) && content.length === 0)
      push(
        ctx,
        '$',
        `the file holds an empty list; put one ${segmentFile ? 'segment' : 'rule'} object or a list of them`,
      );
    for (const [item, at] of items) {
      const id =
        item !== null && typeof item === 'object' ? (item as { id?: unknown }).id : undefined;
      if (typeof id === 'string')
        (segmentFile ? segmentIds : ruleIds).push({ file, at, def: { id } });
      if (segmentFile) {
        if (checkSegment(ctx, item, at, eventTypes))
          segments.push({ file, at, def: item as SegmentDefinition });
      } else if (checkRule(ctx, item, at, eventTypes, pending))
        rules.push({ file, at, def: item as RuleDefinition });
    }
  }
  if (!opts.campaignRules)
    for (const named of ruleIds)
      if (named.def.id.startsWith(CAMPAIGN_RULE_ID_PREFIX))
        errors.push({
          file: named.file,
          path: `${named.at}.id`,
          message: `rule ids starting with "${CAMPAIGN_RULE_ID_PREFIX}" are the rules of campaigns made through the API (/v1/campaigns); give this rule another id`,
        });
  // Ids are unique across files (a rule and a segment may share one: different namespaces).
  for (const [kind, group] of [
    ['rule', ruleIds],
    ['segment', segmentIds],
  ] as const) {
    const seen = new Map<string, Located<{ id: string }>>();
    for (const named of group) {
      const prev = seen.get(named.def.id);
      if (prev)
        errors.push({
          file: named.file,
          path: `${named.at}.id`,
          message: `duplicate ${kind} id "${named.def.id}" (also in ${prev.file} at ${prev.at}.id)`,
        });
      else seen.set(named.def.id, named);
    }
  }
  const knownSegments = [...new Set(segmentIds.map((s) => s.def.id))];
  for (const ref of pending.segmentRefs) {
    if (!knownSegments.includes(ref.id)) {
      errors.push({
        file: ref.file,
        path: ref.at,
        message: `unknown segment "${ref.id}"${didYouMean(ref.id, knownSegments)}: segments are defined in the segments/ folder${knownSegments.length ? ` (${list(knownSegments)})` : ''}`,
      });
    }
  }
  if (opts.templates) {
    const names = [...opts.templates];
    for (const ref of pending.templateRefs) {
      if (!opts.templates.has(ref.name))
        errors.push({
          file: ref.file,
          path: ref.at,
          message: `unknown template "${ref.name}"${didYouMean(ref.name, names)}: no folder or file of that name in the templates folder`,
        });
    }
  }
  if (opts.messageTypes) checkTypeRefs(errors, pending.typeRefs, opts.messageTypes);
  if (errors.length > 0) return { ok: false, errors: byFile(errors) };
  return { ok: true, checked: { rules, segments, eventTypes } };
}

/** A rule's message type is declared, of the rule's category, and sent on channels it declares. */
function checkTypeRefs(errors: RuleError[], refs: Pending['typeRefs'], types: MessageTypes): void {
  const names = types.list.map((t) => t.id);
  for (const ref of refs) {
    const type = types.get(ref.name);
    if (!type) {
      errors.push({
        file: ref.file,
        path: ref.at,
        message: `unknown message type "${ref.name}"${didYouMean(ref.name, names)}: types are declared in the message types file${names.length ? ` (${list(names)})` : ''}`,
      });
      continue;
    }
    if (typeof ref.category === 'string' && ref.category !== type.category)
      errors.push({
        file: ref.file,
        path: `${ref.ruleAt}.category`,
        message: `message type "${type.id}" is ${type.category}: set "category": "${type.category}" or name a ${ref.category} type`,
      });
    if (type.switchable && Array.isArray(ref.channels))
      ref.channels.forEach((channel: unknown, i) => {
        if (typeof channel === 'string' && type.channels[channel as Channel] === undefined)
          errors.push({
            file: ref.file,
            path: `${ref.ruleAt}.action.send.channels[${i}]`,
            message: `message type "${type.id}" is not sent on ${channel} (it declares ${list(Object.keys(type.channels))}): users could not choose it there, so it would never be sent`,
          });
      });
  }
}

/** Errors grouped by file (stable: within a file, in the order they were found). */
export function byFile(errors: RuleError[]): RuleError[] {
  return errors
    .map((e, i) => [e, i] as const)
    .sort(([a, i], [b, j]) => (a.file < b.file ? -1 : a.file > b.file ? 1 : i - j))
    .map(([e]) => e);
}
