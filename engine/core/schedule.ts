// Recurring (`{schedule}`) rules: when their cron occurrences fall, and the per-user event an
// occurrence becomes. The scheduler (or simulate's virtual clock) turns each occurrence into
// one `schedule.occurrence` event per audience user; the engine core decides who gets a send.
import { CronExpressionParser } from 'cron-parser';
import type { NormalisedEvent } from '../../platform/contracts.ts';
import { isValidTimezone } from '../../platform/time.ts';
import type { CompiledRule } from '../../rules/types.ts';
import type { RuleDefinition, ScheduleTrigger } from '../../rules/schema.ts';
import { occurrenceEventIdFor } from './ids.ts';

export const SCHEDULE_EVENT = 'schedule.occurrence';
/** Trait holding a user's IANA timezone, used by `timezone: "user"` schedules. */
export const TIMEZONE_TRAIT = 'timezone';
/** A runaway cron (every minute over a year) is cut here; the caller sees the truncation. */
export const MAX_OCCURRENCES = 100_000;

export function scheduleTrigger(rule: RuleDefinition): ScheduleTrigger | null {
  const t = rule.trigger as Partial<ScheduleTrigger>;
  return typeof t.schedule === 'string' && typeof t.timezone === 'string'
    ? (t as ScheduleTrigger)
    : null;
}

/** The zone a schedule runs in for one user: the rule's zone, or for "user" the user's `timezone` trait (UTC when missing or invalid). */
export function timezoneFor(
  trigger: ScheduleTrigger,
  traits: Record<string, unknown> | null,
): string {
  if (trigger.timezone !== 'user') return trigger.timezone;
  const tz = traits?.[TIMEZONE_TRAIT];
  return typeof tz === 'string' && isValidTimezone(tz) ? tz : 'UTC';
}

/**
 * Occurrence times (epoch ms) of a schedule rule in (from, to], in zone `tz`, ascending.
 * Throws on an invalid cron expression or zone (the rule loader rejects those first).
 */
export function scheduleOccurrences(
  rule: CompiledRule | RuleDefinition,
  from: number,
  to: number,
  tz: string,
): number[] {
  return cronOccurrences(triggerOf(rule).schedule, from, to, tz);
}

/** The first occurrence strictly after `after` in zone `tz`, or null when the expression has no more. */
export function nextOccurrence(
  rule: CompiledRule | RuleDefinition,
  after: number,
  tz: string,
): number | null {
  return nextCronOccurrence(triggerOf(rule).schedule, after, tz);
}

function triggerOf(rule: CompiledRule | RuleDefinition): ScheduleTrigger {
  const def = 'def' in rule ? rule.def : rule;
  const trigger = scheduleTrigger(def);
  if (!trigger) throw new Error(`rule ${def.id} has no schedule trigger`);
  return trigger;
}

/** Instants (epoch ms) of a cron expression in (from, to] in zone `tz`, ascending, at most MAX_OCCURRENCES. */
export function cronOccurrences(cron: string, from: number, to: number, tz: string): number[] {
  if (!(to > from)) return [];
  const zone = tz === 'user' ? 'UTC' : tz;
  if (!isValidTimezone(zone)) throw new Error(`unknown timezone ${JSON.stringify(zone)}`);
  const expr = CronExpressionParser.parse(cron, {
    currentDate: new Date(from),
    endDate: new Date(to),
    tz: zone,
  });
  const out: number[] = [];
  while (out.length < MAX_OCCURRENCES && expr.hasNext()) out.push(expr.next().getTime());
  return out;
}

/** The first instant of a cron expression strictly after `after` in zone `tz`, or null. */
export function nextCronOccurrence(cron: string, after: number, tz: string): number | null {
  const expr = CronExpressionParser.parse(cron, {
    currentDate: new Date(after),
    tz: tz === 'user' ? 'UTC' : tz,
  });
  return expr.hasNext() ? expr.next().getTime() : null;
}

/** The event that asks the engine to evaluate one occurrence of a schedule rule for one user. */
export function occurrenceEvent(
  ruleId: string,
  userId: string,
  at: number,
  receivedAt: number = at,
): NormalisedEvent {
  const occurrence = new Date(at).toISOString();
  return {
    id: occurrenceEventIdFor(ruleId, userId, occurrence),
    userId,
    type: SCHEDULE_EVENT,
    ts: at,
    receivedAt,
    source: 'scheduler',
    properties: { ruleId, occurrence },
  };
}
