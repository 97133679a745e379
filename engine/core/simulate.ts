// `lifecycle simulate`: the engine core over a file of events with in-memory state and a
// virtual clock that follows event timestamps. Before each event the clock moves to the
// event's time, firing the timers and schedule occurrences it passes, in time order.
import type { NormalisedEvent, SendCommand } from '../../platform/contracts.ts';
import type { CompiledRule, RuleSet } from '../../rules/types.ts';
import {
  createEngineCore,
  timerFiredEvent,
  type CoreResult,
  type EngineCore,
} from './engine-core.ts';
import {
  createMemoryStateStore,
  createTimerQueue,
  type MemoryStateStore,
  type TimerQueue,
} from './memory.ts';
import { parseInputLine } from './input.ts';
import { isValidTimezone } from '../../platform/time.ts';
import {
  MAX_OCCURRENCES,
  TIMEZONE_TRAIT,
  nextOccurrence,
  occurrenceEvent,
  scheduleTrigger,
  timezoneFor,
} from './schedule.ts';

export interface SimulationSummary {
  lines: number;
  events: number;
  duplicates: number;
  invalid: { line: number; reason: string }[];
  users: number;
  sends: number;
  holdouts: number;
  /** `skipped`: matches that did not send because the rule's digest had too few items. */
  byRule: Record<string, { sends: number; holdouts: number; skipped?: number }>;
  timersFired: number;
  timersPending: number;
  occurrences: number;
  segmentEntries: number;
  segmentExits: number;
  /** Virtual clock at the end (epoch ms), null when no event was read. */
  clock: number | null;
}

export interface Simulation {
  /** Feeds one input line (1-based `lineNo` for error reports); returns the sends it caused, timers and occurrences it passed included. */
  line(text: string, lineNo: number): SendCommand[];
  /** Feeds one normalised event. */
  event(event: NormalisedEvent): SendCommand[];
  /** Moves the clock to `time` (never backwards), firing what falls due. */
  advanceTo(time: number): SendCommand[];
  summary(): SimulationSummary;
  readonly store: MemoryStateStore;
  readonly timers: TimerQueue;
}

export interface SimulationOptions {
  ruleSet: () => RuleSet;
  /** Keep every event id seen, to skip repeats anywhere in the file (the core alone remembers a short window per user). */
  dedupeIds?: boolean;
}

/** A schedule occurrence waiting to be applied while the clock advances. */
interface Occurrence {
  at: number;
  rule: CompiledRule;
  userIds: string[];
}

export function createSimulation(opts: SimulationOptions): Simulation {
  const core: EngineCore = createEngineCore({ ruleSet: opts.ruleSet });
  const store = createMemoryStateStore();
  const timers = createTimerQueue();
  const seen = opts.dedupeIds === false ? null : new Set<string>();
  let clock: number | null = null;
  const s: SimulationSummary = {
    lines: 0,
    events: 0,
    duplicates: 0,
    invalid: [],
    users: 0,
    sends: 0,
    holdouts: 0,
    byRule: {},
    timersFired: 0,
    timersPending: 0,
    occurrences: 0,
    segmentEntries: 0,
    segmentExits: 0,
    clock: null,
  };

  function handle(userId: string, res: CoreResult, out: SendCommand[]): void {
    if (res.status === 'duplicate') s.duplicates++;
    if (res.state === null) store.delete(userId);
    else {
      store.set(userId, res.state);
      const tz = res.state.traits[TIMEZONE_TRAIT];
      if (typeof tz === 'string' && !knownZones.has(tz) && isValidTimezone(tz)) knownZones.add(tz);
    }
    for (const t of res.timers) timers.add(t);
    for (const e of res.emitted) {
      if (e.type === 'segment.entered') s.segmentEntries++;
      else s.segmentExits++;
    }
    for (const send of res.sends) {
      s.sends++;
      const r = (s.byRule[send.ruleId] ??= { sends: 0, holdouts: 0 });
      r.sends++;
      if (send.holdout) {
        s.holdouts++;
        r.holdouts++;
      }
      out.push(send);
    }
    for (const skip of res.skipped ?? []) {
      const r = (s.byRule[skip.ruleId] ??= { sends: 0, holdouts: 0 });
      r.skipped = (r.skipped ?? 0) + 1;
    }
  }

  function applyTo(event: NormalisedEvent, now: number, out: SendCommand[]): void {
    handle(event.userId, core.apply(store.get(event.userId), event, now), out);
  }

  // Per schedule rule and zone, the next occurrence, computed only when the clock passes the
  // previous one (cron evaluation is slow; most clock steps cross no occurrence).
  const zoneNext = new WeakMap<CompiledRule, Map<string, { after: number; next: number | null }>>();
  /** Every zone a stored user's `timezone` trait resolves to (a superset after deletions). */
  const knownZones = new Set<string>(['UTC']);

  /** Occurrences of every schedule rule in (from, to], grouped per instant, ascending. */
  function occurrencesBetween(from: number, to: number): Occurrence[] {
    const rs = opts.ruleSet();
    if (rs.scheduled.length === 0 || store.size === 0) return [];
    const found: Occurrence[] = [];
    for (const rule of rs.scheduled) {
      const trigger = scheduleTrigger(rule.def);
      if (!trigger || rule.def.enabled === false) continue;
      const local = trigger.timezone === 'user';
      let zones = zoneNext.get(rule);
      if (!zones) zoneNext.set(rule, (zones = new Map()));
      const crossed = new Map<string, number[]>();
      for (const zone of local ? knownZones : [trigger.timezone]) {
        let z = zones.get(zone);
        // Occurrences at or before `from` were handled by an earlier step (or had no users).
        if (!z || from < z.after || (z.next !== null && z.next <= from))
          z = { after: from, next: nextOccurrence(rule, from, zone) };
        const times: number[] = [];
        while (z.next !== null && z.next <= to && times.length < MAX_OCCURRENCES) {
          times.push(z.next);
          z = { after: z.next, next: nextOccurrence(rule, z.next, zone) };
        }
        zones.set(zone, z);
        if (times.length > 0) crossed.set(zone, times);
      }
      if (crossed.size === 0) continue;
      if (!local) {
        const users = [...store.userIds()];
        for (const at of crossed.get(trigger.timezone)!) found.push({ at, rule, userIds: users });
        continue;
      }
      const byZone = new Map<string, string[]>([...crossed.keys()].map((z) => [z, []]));
      for (const userId of store.userIds())
        byZone.get(timezoneFor(trigger, store.get(userId)!.traits))?.push(userId);
      for (const [zone, userIds] of byZone)
        for (const at of crossed.get(zone)!) found.push({ at, rule, userIds });
    }
    return found.sort(
      (a, b) =>
        a.at - b.at ||
        (b.rule.def.priority ?? 0) - (a.rule.def.priority ?? 0) ||
        (a.rule.def.id < b.rule.def.id ? -1 : 1),
    );
  }

  function advanceTo(time: number): SendCommand[] {
    const out: SendCommand[] = [];
    if (clock === null) {
      clock = time;
      return out;
    }
    if (time <= clock) {
      fireTimers(clock, out);
      return out;
    }
    const occurrences = occurrencesBetween(clock, time);
    let i = 0;
    for (;;) {
      const next = timers.peek();
      const occ = occurrences[i];
      const timerDue = next !== undefined && next.dueAt <= time ? next.dueAt : Infinity;
      const occAt = occ ? occ.at : Infinity;
      if (timerDue === Infinity && occAt === Infinity) break;
      // At equal instants, timers (set earlier) go before occurrences.
      if (timerDue <= occAt) {
        const timer = timers.popDue(timerDue)!;
        clock = Math.max(clock, timer.dueAt);
        s.timersFired++;
        applyTo(timerFiredEvent(timer, clock), clock, out);
      } else {
        clock = Math.max(clock, occAt);
        for (const userId of occ!.userIds) {
          if (store.get(userId) === null) continue;
          s.occurrences++;
          applyTo(occurrenceEvent(occ!.rule.def.id, userId, occAt, clock), clock, out);
        }
        i++;
      }
    }
    clock = Math.max(clock, time);
    return out;
  }

  /** Timers already due at the current instant (e.g. set by an event for its own past). */
  function fireTimers(now: number, out: SendCommand[]): void {
    for (let t = timers.popDue(now); t; t = timers.popDue(now)) {
      s.timersFired++;
      applyTo(timerFiredEvent(t, now), now, out);
    }
  }

  function event(ev: NormalisedEvent): SendCommand[] {
    if (seen) {
      if (seen.has(ev.id)) {
        s.duplicates++;
        return [];
      }
      seen.add(ev.id);
    }
    s.events++;
    const out = advanceTo(ev.ts);
    // An event older than the clock (out of order in the file) is applied at the current time.
    applyTo(ev, clock!, out);
    // Timers that are already due (a delay shorter than the event's lateness) fire now.
    fireTimers(clock!, out);
    return out;
  }

  return {
    line(text, lineNo) {
      s.lines++;
      if (text.trim() === '') return [];
      const parsed = parseInputLine(text);
      if (!parsed.ok) {
        s.invalid.push({ line: lineNo, reason: parsed.reason });
        return [];
      }
      return event(parsed.event);
    },
    event,
    advanceTo,
    summary() {
      return {
        ...s,
        users: store.size,
        timersPending: timers.size,
        clock,
        invalid: s.invalid.slice(),
        byRule: structuredClone(s.byRule),
      };
    },
    store,
    timers,
  };
}

/** A send command as simulate writes it: times as ISO strings. */
export function toOutputRecord(send: SendCommand): Record<string, unknown> {
  return {
    ...send,
    createdAt: new Date(send.createdAt).toISOString(),
    expiresAt: send.expiresAt === null ? null : new Date(send.expiresAt).toISOString(),
  };
}

/** A human summary, one fact per line. */
export function formatSummary(s: SimulationSummary, maxInvalid = 20): string {
  const lines: string[] = [];
  lines.push(`lines read: ${s.lines}`);
  lines.push(`events applied: ${s.events}`);
  lines.push(`duplicates skipped: ${s.duplicates}`);
  lines.push(`invalid lines: ${s.invalid.length}`);
  for (const inv of s.invalid.slice(0, maxInvalid)) lines.push(`  line ${inv.line}: ${inv.reason}`);
  if (s.invalid.length > maxInvalid) lines.push(`  ... and ${s.invalid.length - maxInvalid} more`);
  lines.push(`users: ${s.users}`);
  lines.push(`timers fired: ${s.timersFired} (still pending at the end: ${s.timersPending})`);
  lines.push(`schedule occurrences evaluated: ${s.occurrences}`);
  lines.push(`segment entries: ${s.segmentEntries}, exits: ${s.segmentExits}`);
  lines.push(`sends: ${s.sends} (holdout: ${s.holdouts})`);
  const ids = Object.keys(s.byRule).sort();
  if (ids.length > 0) {
    const width = Math.max(...ids.map((id) => id.length));
    for (const id of ids) {
      const r = s.byRule[id]!;
      lines.push(
        `  ${id.padEnd(width)}  ${String(r.sends).padStart(7)} sends  ${String(r.holdouts).padStart(6)} holdout${r.skipped ? `  ${r.skipped} skipped (digest below minItems)` : ''}`,
      );
    }
  }
  lines.push(`virtual clock at end: ${s.clock === null ? '-' : new Date(s.clock).toISOString()}`);
  return lines.join('\n');
}
