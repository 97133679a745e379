// The engine core: one pure function from (user state, event, now) to (new state, send
// commands, timers, emitted events). No I/O and no clock of its own, so `lifecycle simulate`,
// the embedded demo and the distributed engine produce the same sends from the same events.
import type { NormalisedEvent, SendCommand, Channel } from '../../platform/contracts.ts';
import type { CompiledRule, EventStats, Facts, RuleSet } from '../../rules/types.ts';
import { assignExperiment } from '../../rules/index.ts';
import {
  RECENT_IDS,
  MAX_TRACKED_TYPES,
  dict,
  emptyState,
  type RuleHistory,
  type UserState,
} from './state.ts';
import { deterministicId, eventIdHash, segmentEventIdFor, sendIdFor, timerIdFor } from './ids.ts';
import { SCHEDULE_EVENT, scheduleTrigger } from './schedule.ts';
import { CAMPAIGN_EVENT, campaignRuleId } from './campaign.ts';
import { nextSegmentChange, timedSegments, type TimedSegment } from './segment-clock.ts';
import { digestData, fitDigestToRuleSet, keepDigestItem, type DigestData } from './digest.ts';

export const TIMER_EVENT = 'timer.fired';
export const SEGMENT_ENTERED = 'segment.entered';
export const SEGMENT_EXITED = 'segment.exited';
/** Erases the user's state (right to be forgotten); never sends. */
export const USER_DELETED = 'user_deleted';
/** `ruleId` of the timers that re-evaluate time-based segments (rule ids cannot start with "@"). */
export const SEGMENT_RECHECK = '@segments';
/** Events the engine itself produces; they never count in `stats`. */
export const INTERNAL_EVENT_TYPES: ReadonlySet<string> = new Set([
  TIMER_EVENT,
  SCHEDULE_EVENT,
  CAMPAIGN_EVENT,
  SEGMENT_ENTERED,
  SEGMENT_EXITED,
]);

/** A delayed trigger waiting to fire: at `dueAt` the caller applies `timerFiredEvent(timer)`. */
export interface Timer {
  /** Deterministic: (ruleId, userId, trigger event id); storing it twice is harmless. */
  id: string;
  userId: string;
  ruleId: string;
  dueAt: number;
  trigger: NormalisedEvent;
}

export type ApplyStatus =
  /** The event changed state and/or produced effects. */
  | 'applied'
  /** The event id was applied recently: state unchanged, no effects. */
  | 'duplicate'
  /** `user_deleted`: the caller must erase the stored state. */
  | 'erased'
  /** A timer, schedule occurrence or campaign member for a user with no state (never seen, or erased): nothing to do. */
  | 'no-user'
  /** An engine-emitted event coming back (segment.entered/exited), or a member of a campaign that is not running: nothing to do. */
  | 'ignored'
  /** An internal event that cannot be understood (see `reason`); state unchanged. */
  | 'invalid';

export interface CoreResult {
  /** The state to store; null means erase. Unchanged states are returned as-is (same object). */
  state: UserState | null;
  sends: SendCommand[];
  timers: Timer[];
  /** Events the engine emits (segment.entered / segment.exited), with deterministic ids. */
  emitted: NormalisedEvent[];
  status: ApplyStatus;
  reason?: string;
  /** Rules that matched but did not send because their digest had fewer than `minItems` items. */
  skipped?: { ruleId: string; reason: 'digest-below-min-items' }[];
}

export interface EngineCore {
  /**
   * Applies one event. The given state object is updated in place and returned (clone it
   * first with cloneState if the previous value must survive). `now` feeds the `now` fact;
   * send times come from the event (its `ts`, a timer's due time, an occurrence's time).
   */
  apply(state: UserState | null, event: NormalisedEvent, now: number): CoreResult;
}

export interface EngineCoreDeps {
  /** The current rule set; read once per event, so a hot reload takes effect at the next event. */
  ruleSet: () => RuleSet;
}

const NO_HISTORY: RuleHistory = Object.freeze({ fires: 0, lastFiredAt: null }) as RuleHistory;

/** The event that fires a timer: carries the original trigger in `properties.trigger`. */
export function timerFiredEvent(timer: Timer, receivedAt: number = timer.dueAt): NormalisedEvent {
  return {
    id: `${timer.id}:fired`,
    userId: timer.userId,
    type: TIMER_EVENT,
    ts: timer.dueAt,
    receivedAt,
    source: 'engine',
    properties: { timerId: timer.id, ruleId: timer.ruleId, trigger: timer.trigger },
  };
}

export function createEngineCore(deps: EngineCoreDeps): EngineCore {
  const filledFor = new WeakMap<UserState, RuleSet>();
  const rulesById = new WeakMap<RuleSet, Map<string, CompiledRule>>();
  const segmentIds = new WeakMap<RuleSet, Set<string>>();
  const timedByRuleSet = new WeakMap<RuleSet, TimedSegment[]>();

  function timed(rs: RuleSet): TimedSegment[] {
    let t = timedByRuleSet.get(rs);
    if (!t) {
      t = timedSegments(rs.segments);
      timedByRuleSet.set(rs, t);
    }
    return t;
  }

  function ruleById(rs: RuleSet, id: string): CompiledRule | undefined {
    let m = rulesById.get(rs);
    if (!m) {
      m = new Map(rs.rules.map((r) => [r.def.id, r]));
      rulesById.set(rs, m);
    }
    return m.get(id);
  }

  /**
   * Every type the rule set mentions is present in memory, so "never did X" reads count 0;
   * memberships of segments no longer loaded are forgotten. Done once per (state, rule set).
   */
  function fitToRuleSet(state: UserState, rs: RuleSet): void {
    if (filledFor.get(state) === rs) return;
    for (const type of rs.eventTypes)
      if (!(type in state.stats)) state.stats[type] = { count: 0, first: null, last: null };
    let ids = segmentIds.get(rs);
    if (!ids) {
      ids = new Set(rs.segments.map((s) => s.def.id));
      segmentIds.set(rs, ids);
    }
    for (const id in state.segments) if (!ids.has(id)) delete state.segments[id];
    fitDigestToRuleSet(state, rs.digestKeep);
    filledFor.set(state, rs);
  }

  function apply(prior: UserState | null, event: NormalisedEvent, now: number): CoreResult {
    const type = event.type;
    if (type === USER_DELETED) return result(null, 'erased');
    if (type === SEGMENT_ENTERED || type === SEGMENT_EXITED) return result(prior, 'ignored');
    const isTimer = type === TIMER_EVENT;
    const isOccurrence = type === SCHEDULE_EVENT;
    const isCampaign = type === CAMPAIGN_EVENT;
    if (prior === null && (isTimer || isOccurrence || isCampaign)) return result(null, 'no-user');

    let timerTrigger: NormalisedEvent | null = null;
    let timerRuleId = '';
    if (isTimer) {
      const p = event.properties;
      timerTrigger = asEvent(p.trigger);
      timerRuleId = typeof p.ruleId === 'string' ? p.ruleId : '';
      if (!timerTrigger || !timerRuleId)
        return {
          ...result(prior, 'invalid'),
          reason: 'timer.fired without a valid properties.trigger event and properties.ruleId',
        };
    }
    const occurrenceRuleId =
      isOccurrence && typeof event.properties.ruleId === 'string' ? event.properties.ruleId : '';
    if (isOccurrence && !occurrenceRuleId)
      return {
        ...result(prior, 'invalid'),
        reason: 'schedule.occurrence without properties.ruleId',
      };

    const rs = deps.ruleSet();
    let campaignRule: CompiledRule | undefined;
    let campaignId = '';
    if (isCampaign) {
      campaignId =
        typeof event.properties.campaignId === 'string' ? event.properties.campaignId : '';
      if (!campaignId)
        return {
          ...result(prior, 'invalid'),
          reason: 'campaign.member without properties.campaignId',
        };
      // A stopped, finished or unknown campaign's members match nothing: its rule is not in
      // the set, and the user's state is left as it was.
      campaignRule = ruleById(rs, campaignRuleId(campaignId));
      if (!campaignRule || eventTriggerType(campaignRule) !== CAMPAIGN_EVENT)
        return result(prior, 'ignored');
    }

    const state = prior ?? emptyState();
    const idHash = eventIdHash(event.id);
    if (state.recent.includes(idHash)) return result(state, 'duplicate');
    state.recent.push(idHash);
    if (state.recent.length > RECENT_IDS) state.recent.splice(0, state.recent.length - RECENT_IDS);

    fitToRuleSet(state, rs);
    if (!isTimer && !isOccurrence && !isCampaign) reduce(state, event, rs);

    const out: CoreResult = { state, sends: [], timers: [], emitted: [], status: 'applied' };
    const userId = event.userId;
    const facts: Facts = {
      event: null,
      user: state.traits,
      stats: state.stats,
      segments: state.segments,
      rule: NO_HISTORY,
      now,
    };
    // A timer or occurrence speaks for its own moment; a real event for its timestamp.
    const at = event.ts;

    // Segments first: every membership is updated before any segment-triggered rule runs.
    const transitions: { segmentId: string; enter: boolean; event: NormalisedEvent }[] = [];
    for (const seg of rs.segments) {
      const id = seg.def.id;
      const was = state.segments[id] === true;
      const is = seg.test(facts);
      state.segments[id] = is;
      if (was === is) continue;
      const transition = is ? 'enter' : 'exit';
      const segEvent: NormalisedEvent = {
        id: segmentEventIdFor(id, transition, userId, event.id),
        userId,
        type: is ? SEGMENT_ENTERED : SEGMENT_EXITED,
        ts: at,
        receivedAt: now,
        source: 'engine',
        properties: { segment: id, causeEventId: event.id, causeEventType: type },
      };
      out.emitted.push(segEvent);
      transitions.push({ segmentId: id, enter: is, event: segEvent });
    }
    for (const t of transitions) {
      const rules = rs.bySegment.get(`${t.segmentId}:${t.enter ? 'enter' : 'exit'}`);
      if (rules) for (const rule of rules) consider(rule, t.event, t.event, at);
    }

    if (isTimer && timerRuleId === SEGMENT_RECHECK) {
      // Nothing more: the segments were re-evaluated above.
    } else if (isTimer) {
      const rule = ruleById(rs, timerRuleId);
      // A rule removed, disabled or changed to another trigger since the timer was set does not fire.
      if (rule && rule.delayMs !== null && eventTriggerType(rule) === timerTrigger!.type)
        consider(rule, timerTrigger!, timerTrigger!, at);
    } else if (isCampaign) {
      consider(campaignRule!, event, event, at, campaignId);
    } else if (isOccurrence) {
      const rule = ruleById(rs, occurrenceRuleId);
      const trigger = rule ? scheduleTrigger(rule.def) : null;
      if (
        rule &&
        trigger &&
        (trigger.segment === undefined || state.segments[trigger.segment] === true)
      )
        consider(rule, null, event, at);
    } else {
      const rules = rs.byEvent.get(type);
      if (rules) {
        for (const rule of rules) {
          if (rule.def.enabled === false) continue;
          if (rule.where) {
            facts.event = event;
            facts.rule = state.rules[rule.def.id] ?? NO_HISTORY;
            if (!rule.where(facts)) continue;
          }
          if (rule.delayMs !== null) {
            if (rule.def.limits?.oncePerUser === true && (state.rules[rule.def.id]?.fires ?? 0) > 0)
              continue;
            out.timers.push({
              id: timerIdFor(rule.def.id, userId, event.id),
              userId,
              ruleId: rule.def.id,
              dueAt: event.ts + rule.delayMs,
              trigger: event,
            });
          } else {
            consider(rule, event, event, at);
          }
        }
      }
    }

    // One pending recheck per user, at the next instant a time-based segment may flip.
    const timedSegs = timed(rs);
    if (timedSegs.length > 0) {
      if (state.recheckAt !== undefined && state.recheckAt <= now) delete state.recheckAt;
      facts.event = null;
      const next = nextSegmentChange(timedSegs, facts, state.segments);
      if (next !== null && (state.recheckAt === undefined || next < state.recheckAt)) {
        state.recheckAt = next;
        out.timers.push(recheckTimer(userId, next, now));
      }
    } else if (state.recheckAt !== undefined) {
      delete state.recheckAt;
    }
    return out;

    /**
     * Limits, then conditions, then a send. `factEvent` is what conditions see as `event`
     * (null for schedules); `trigger` is what the send is attributed to.
     */
    function consider(
      rule: CompiledRule,
      factEvent: NormalisedEvent | null,
      trigger: NormalisedEvent,
      createdAt: number,
      campaignId?: string,
    ): void {
      const def = rule.def;
      if (def.enabled === false) return;
      const history = state.rules[def.id] ?? NO_HISTORY;
      if (def.limits?.oncePerUser === true && history.fires > 0) return;
      if (
        rule.cooldownMs !== null &&
        history.lastFiredAt !== null &&
        createdAt - history.lastFiredAt < rule.cooldownMs
      )
        return;
      facts.event = factEvent;
      facts.rule = history;
      if (!rule.conditions(facts)) return;
      let digest: DigestData | undefined;
      if (rule.digest) {
        digest = digestData(state, rule.digest, createdAt);
        if (digest.total < rule.digest.minItems) {
          // Too little to tell: no send, and the cooldown does not start (next time may have more).
          state.rules[def.id] = {
            ...history,
            skipped: (history.skipped ?? 0) + 1,
            lastSkippedAt: Math.max(history.lastSkippedAt ?? createdAt, createdAt),
          };
          (out.skipped ??= []).push({ ruleId: def.id, reason: 'digest-below-min-items' });
          return;
        }
      }
      out.sends.push(buildSend(rule, userId, trigger, createdAt, state.traits, campaignId, digest));
      state.rules[def.id] = {
        ...history,
        fires: history.fires + 1,
        lastFiredAt:
          history.lastFiredAt === null ? createdAt : Math.max(history.lastFiredAt, createdAt),
      };
    }
  }

  return { apply };
}

function recheckTimer(userId: string, dueAt: number, now: number): Timer {
  const id = deterministicId('segment-recheck', userId, String(dueAt));
  return {
    id,
    userId,
    ruleId: SEGMENT_RECHECK,
    dueAt,
    trigger: {
      id: `${id}:trigger`,
      userId,
      type: 'segment.recheck',
      ts: dueAt,
      receivedAt: now,
      source: 'engine',
      properties: {},
    },
  };
}

function result(state: UserState | null, status: ApplyStatus): CoreResult {
  return { state, sends: [], timers: [], emitted: [], status };
}

function eventTriggerType(rule: CompiledRule): string | null {
  const t = rule.def.trigger as { event?: unknown };
  return typeof t.event === 'string' ? t.event : null;
}

function buildSend(
  rule: CompiledRule,
  userId: string,
  trigger: NormalisedEvent,
  createdAt: number,
  traits: Record<string, unknown>,
  campaignId?: string,
  digest?: DigestData,
): SendCommand {
  const def = rule.def;
  const exp = assignExperiment(def, userId);
  const send: SendCommand = {
    sendId: sendIdFor(def.id, userId, trigger.id),
    ruleId: def.id,
    userId,
    category: def.category,
    priority: def.priority ?? 0,
    template: exp.template,
    channels: def.action.send.channels.slice() as Channel[],
    variant: exp.variant,
    holdout: exp.holdout,
    triggeredBy: { eventId: trigger.id, eventType: trigger.type },
    createdAt,
    expiresAt: rule.expiresAfterMs === null ? null : createdAt + rule.expiresAfterMs,
    data: {
      user: { ...traits },
      event: { type: trigger.type, properties: trigger.properties },
      rule: { id: def.id },
      ...(digest ? { digest } : {}),
    },
  };
  if (def.goal && rule.goalWithinMs !== null)
    send.goal = { event: def.goal.event, withinMs: rule.goalWithinMs };
  if (campaignId) send.campaignId = campaignId;
  if (def.messageType !== undefined) send.messageType = def.messageType;
  return send;
}

/** Folds an event into the state: traits merged, stats counted. */
function reduce(state: UserState, event: NormalisedEvent, rs: RuleSet): void {
  const type = event.type;
  if (type === 'group') {
    // Segment `group`: the traits describe the group (company), not the user.
    const groupId = event.properties.groupId;
    if (typeof groupId === 'string' || typeof groupId === 'number')
      state.traits.groupId = String(groupId);
    if (event.traits) {
      const prev = state.traits.group;
      const group = dict<unknown>();
      if (prev !== null && typeof prev === 'object' && !Array.isArray(prev))
        Object.assign(group, prev);
      mergeTraits(group, event.traits);
      state.traits.group = group;
    }
  } else if (event.traits) {
    mergeTraits(state.traits, event.traits);
  }

  keepDigestItem(state, event, rs.digestKeep);

  const ts = event.ts;
  let st: EventStats | undefined = state.stats[type];
  if (st === undefined) {
    st = { count: 0, first: null, last: null };
    state.stats[type] = st;
  }
  if (st.count === 0) boundTrackedTypes(state, rs, type);
  st.count += 1;
  st.first = st.first === null ? ts : Math.min(st.first, ts);
  st.last = st.last === null ? ts : Math.max(st.last, ts);
}

/**
 * null removes a trait (Segment clients send null to clear one). A `__proto__` key is
 * skipped: JSON.parse makes it an own key of the traits, but assigning it to an ordinary
 * object replaces that object's prototype, and the traits are copied into ordinary objects
 * further on (a state handed in by an adapter, the send's `data.user`, templates).
 */
function mergeTraits(target: Record<string, unknown>, traits: Record<string, unknown>): void {
  for (const key of Object.keys(traits)) {
    if (key === '__proto__') continue;
    const v = traits[key];
    if (v === null || v === undefined) delete target[key];
    else target[key] = v;
  }
}

/** Keeps at most MAX_TRACKED_TYPES counted types: evicts the least recently seen type no rule mentions. */
function boundTrackedTypes(state: UserState, rs: RuleSet, adding: string): void {
  let tracked = 0;
  let victim: string | null = null;
  let victimLast = Infinity;
  for (const t in state.stats) {
    const s = state.stats[t]!;
    if (s.count === 0) continue;
    tracked++;
    if (t !== adding && !rs.eventTypes.has(t) && (s.last ?? -Infinity) < victimLast) {
      victim = t;
      victimLast = s.last ?? -Infinity;
    }
  }
  if (tracked >= MAX_TRACKED_TYPES && victim !== null) delete state.stats[victim];
}

function asEvent(v: unknown): NormalisedEvent | null {
  if (v === null || typeof v !== 'object') return null;
  const e = v as Record<string, unknown>;
  if (
    typeof e.id !== 'string' ||
    typeof e.userId !== 'string' ||
    typeof e.type !== 'string' ||
    typeof e.ts !== 'number'
  )
    return null;
  if (e.properties === null || typeof e.properties !== 'object') return null;
  return v as NormalisedEvent;
}
