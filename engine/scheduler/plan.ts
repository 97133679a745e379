// The scheduler's decisions, without I/O: what a batch of events changes in the user
// directory, and which occurrence of a schedule rule is due in a zone given the stored progress.
import type { NormalisedEvent } from '../../platform/contracts.ts';
import type { CompiledRule } from '../../rules/types.ts';
import { INTERNAL_EVENT_TYPES, USER_DELETED } from '../core/engine-core.ts';
import { isValidTimezone } from '../../platform/time.ts';
import {
  MAX_OCCURRENCES,
  TIMEZONE_TRAIT,
  nextOccurrence,
  scheduleOccurrences,
  scheduleTrigger,
} from '../core/schedule.ts';

/**
 * What one user's events do to the directory: `set` puts the user in a zone, `touch` adds a
 * user not yet known (in UTC) and leaves a known one where it is, `delete` removes the user.
 * `add` (seeding from the engine's state) files a user not yet known under a zone.
 */
export type DirectoryChange =
  { op: 'set'; zone: string } | { op: 'touch' } | { op: 'delete' } | { op: 'add'; zone: string };

export const DEFAULT_ZONE = 'UTC';

/** The change one event asks for, or null for events that do not make or touch a user. */
export function changeFor(event: NormalisedEvent): DirectoryChange | null {
  if (event.type === USER_DELETED) return { op: 'delete' };
  if (INTERNAL_EVENT_TYPES.has(event.type)) return null;
  // Group traits describe the group, not the user (the core stores them under user.group).
  if (event.type === 'group' || !event.traits || !(TIMEZONE_TRAIT in event.traits))
    return { op: 'touch' };
  const tz = event.traits[TIMEZONE_TRAIT];
  // Same rule as the core's timezoneFor: missing, removed (null) or unknown zones mean UTC.
  return { op: 'set', zone: typeof tz === 'string' && isValidTimezone(tz) ? tz : DEFAULT_ZONE };
}

/** `next` after `prev` for the same user, as one change with the same final effect. */
export function combine(prev: DirectoryChange | undefined, next: DirectoryChange): DirectoryChange {
  if ((next.op !== 'touch' && next.op !== 'add') || prev === undefined) return next;
  if (prev.op === 'delete')
    return { op: 'set', zone: next.op === 'add' ? next.zone : DEFAULT_ZONE }; // a new user under an erased id
  if (prev.op === 'touch' && next.op === 'add') return next;
  return prev;
}

/** The net change per user of events in order (one user's events are in order on its partition). */
export function directoryChanges(events: Iterable<NormalisedEvent>): Map<string, DirectoryChange> {
  const out = new Map<string, DirectoryChange>();
  for (const e of events) {
    const c = changeFor(e);
    if (c) out.set(e.userId, combine(out.get(e.userId), c));
  }
  return out;
}

/**
 * Progress of one rule or campaign in one zone. `w` (watermark): every occurrence at or before
 * it is done or skipped. While an occurrence is being fanned out, `at` is its instant, (`s`,
 * `c`) the audience shard and the last member published in it, `p` the users it was planned
 * for and `n` those published so far. Totals over the finished occurrences: `runs` done, `sk`
 * skipped, `tp` planned and `tn` published (campaigns report them as progress).
 */
export interface ZoneProgress {
  w: number;
  at?: number;
  s?: number;
  c?: string;
  p?: number;
  n?: number;
  runs?: number;
  sk?: number;
  tp?: number;
  tn?: number;
}

/** The totals of a zone's progress, carried from one occurrence to the next. */
export function totalsOf(p: ZoneProgress): Pick<ZoneProgress, 'runs' | 'sk' | 'tp' | 'tn'> {
  const out: Pick<ZoneProgress, 'runs' | 'sk' | 'tp' | 'tn'> = {};
  if (p.runs) out.runs = p.runs;
  if (p.sk) out.sk = p.sk;
  if (p.tp) out.tp = p.tp;
  if (p.tn) out.tn = p.tn;
  return out;
}

/** The progress once the current occurrence is over: done (fanned out) or skipped (given up half-done). */
export function closeOccurrence(
  p: ZoneProgress,
  w: number,
  outcome: 'done' | 'skipped',
): ZoneProgress {
  const t = totalsOf(p);
  const out: ZoneProgress = { ...t, w };
  if (outcome === 'done') out.runs = (t.runs ?? 0) + 1;
  else out.sk = (t.sk ?? 0) + 1;
  if (p.p) out.tp = (t.tp ?? 0) + p.p;
  if (p.n) out.tn = (t.tn ?? 0) + p.n;
  return out;
}

/** When a job's occurrences fall: a cron expression, or a single instant. */
export interface OccurrenceSource {
  /** Instants in (from, to] in zone `tz`, ascending; a list of MAX_OCCURRENCES may be cut short. */
  between(from: number, to: number, tz: string): number[];
  /** The first instant strictly after `after` in zone `tz`, or null when there are no more. */
  next(after: number, tz: string): number | null;
}

/** A schedule rule's occurrences. */
export function ruleOccurrences(rule: CompiledRule): OccurrenceSource {
  return {
    between: (from, to, tz) => scheduleOccurrences(rule, from, to, tz),
    next: (after, tz) => nextOccurrence(rule, after, tz),
  };
}

export interface ZonePlan {
  /** Progress to store before acting (the watermark moved past skipped occurrences). */
  progress: ZoneProgress;
  /** The occurrence to fan out now, where to continue it, or null when nothing is due. */
  due: { at: number; shard: number; cursor: string | null; resumed: boolean } | null;
  /** Occurrences given up because they were older than the catch-up window. */
  skipped: { count: number; first: number; last: number; truncated: boolean } | null;
  /** The next occurrence after the (new) watermark, due or not. */
  next: number | null;
}

/** The instant a schedule runs in for a directory zone: the rule's own zone, or the users' zone. */
export function scheduleZone(rule: CompiledRule, directoryZone: string): string {
  const t = scheduleTrigger(rule.def);
  if (!t) throw new Error(`rule ${rule.def.id} has no schedule trigger`);
  return t.timezone === 'user' ? directoryZone : t.timezone;
}

/**
 * Decides what to do for `rule` in `zone` at `now`. Without stored progress the zone starts
 * at `since` (when the scheduler first saw the rule). Occurrences older than
 * `now - catchUpMs`, or at or before `disabledAt` (they fell while the rule was disabled),
 * including a half-done one, are skipped.
 */
export function planZone(
  rule: CompiledRule,
  zone: string,
  stored: ZoneProgress | null,
  since: number,
  now: number,
  catchUpMs: number,
  disabledAt: number | null = null,
): ZonePlan {
  return planOccurrences(ruleOccurrences(rule), zone, stored, since, now, catchUpMs, disabledAt);
}

/** planZone for any source of occurrences (a campaign's cron, or its one instant). */
export function planOccurrences(
  occurrences: OccurrenceSource,
  zone: string,
  stored: ZoneProgress | null,
  since: number,
  now: number,
  catchUpMs: number,
  disabledAt: number | null = null,
): ZonePlan {
  const horizon = Math.max(now - catchUpMs, disabledAt ?? -Infinity);
  let progress: ZoneProgress = stored ? { ...stored } : { w: since };
  let skipped: ZonePlan['skipped'] = null;
  const skip = (first: number, last: number, count: number, truncated = false) => {
    skipped = skipped
      ? {
          count: skipped.count + count,
          first: Math.min(skipped.first, first),
          last: Math.max(skipped.last, last),
          truncated: skipped.truncated || truncated,
        }
      : { count, first, last, truncated };
  };
  if (progress.at !== undefined) {
    const tooOld =
      progress.at < now - catchUpMs || (disabledAt !== null && progress.at <= disabledAt);
    if (!tooOld) {
      return {
        progress,
        due: { at: progress.at, shard: progress.s ?? 0, cursor: progress.c ?? null, resumed: true },
        skipped: null,
        next: progress.at,
      };
    }
    skip(progress.at, progress.at, 1);
    progress = closeOccurrence(progress, progress.at, 'skipped');
  }
  if (progress.w < horizon) {
    const old = occurrences.between(progress.w, horizon, zone);
    if (old.length > 0) {
      skip(old[0]!, old[old.length - 1]!, old.length, old.length >= MAX_OCCURRENCES);
      const t = totalsOf(progress);
      progress = { ...t, w: horizon, sk: (t.sk ?? 0) + old.length };
    } else progress = { ...totalsOf(progress), w: horizon };
  }
  const next = occurrences.next(progress.w, zone);
  const due =
    next !== null && next <= now ? { at: next, shard: 0, cursor: null, resumed: false } : null;
  return { progress, due, skipped, next };
}
