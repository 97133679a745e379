// The engine's side of platform/users.ts: a user's stored state, pending timers and the
// contact index, read without taking part in the partition fencing (reads never write),
// turned into what the staff API shows.
import type { Redis } from 'ioredis';
import type { KeySpace } from '../../platform/keys.ts';
import type { PendingTimer, UserLookup, UserMatch, UserProfile } from '../../platform/users.ts';
import { SEGMENT_RECHECK } from '../core/engine-core.ts';
import { deserializeState, type UserState } from '../core/state.ts';
import { contactTerms, createRedisContactIndex, queryTerms, splitTerms } from './contacts.ts';
import { createRedisStateStore } from './redis-state.ts';
import {
  MemoryStores,
  type ContactIndex,
  type StateStore,
  type Timer,
  type TimerStore,
} from './stores.ts';
import { createRedisTimerStore } from './timers.ts';

export function profileOf(userId: string, state: UserState): UserProfile {
  const stats: UserProfile['stats'] = {};
  for (const [type, st] of Object.entries(state.stats))
    if (st.count > 0) stats[type] = { count: st.count, first: st.first, last: st.last };
  const rules: UserProfile['rules'] = {};
  for (const [id, h] of Object.entries(state.rules))
    rules[id] =
      h.skipped !== undefined && h.lastSkippedAt !== undefined
        ? {
            fires: h.fires,
            lastFiredAt: h.lastFiredAt,
            skipped: h.skipped,
            lastSkippedAt: h.lastSkippedAt,
          }
        : { fires: h.fires, lastFiredAt: h.lastFiredAt };
  return {
    userId,
    traits: { ...state.traits },
    stats,
    segments: Object.keys(state.segments)
      .filter((id) => state.segments[id] === true)
      .sort(),
    rules,
  };
}

export function pendingTimerOf(timer: Timer): PendingTimer {
  const t = timer.trigger as Partial<Timer['trigger']> | null;
  return {
    id: timer.id,
    ruleId: timer.ruleId,
    fires: timer.ruleId === SEGMENT_RECHECK ? 'segments' : 'rule',
    dueAt: timer.dueAt,
    trigger:
      t && typeof t.id === 'string' && typeof t.type === 'string'
        ? { id: t.id, type: t.type, ts: typeof t.ts === 'number' ? t.ts : timer.dueAt }
        : null,
  };
}

/** The stores the lookup reads: the engine's state, its timers and the contact index. */
export interface UserViewStores {
  state: Pick<StateStore, 'load'>;
  timers: Pick<TimerStore, 'userTimers'>;
  contacts: Pick<ContactIndex, 'find'>;
}

/**
 * The lookup over the engine's stores: the in-memory engine's (the demo), or Redis in
 * production (createRedisUserDirectory).
 */
export function createUserDirectory(stores: UserViewStores | MemoryStores): UserLookup {
  const { state, timers, contacts } =
    stores instanceof MemoryStores ? { state: stores, timers: stores, contacts: stores } : stores;

  const load = async (userId: string) => {
    const stored = (await state.load([userId])).get(userId);
    return stored?.state ? { ...stored, state: stored.state } : null;
  };

  return {
    async profile(userId) {
      const stored = await load(userId);
      return stored ? profileOf(userId, deserializeState(stored.state)) : null;
    },

    async pendingTimers(userId) {
      const stored = await load(userId);
      if (!stored) return null;
      // The engine schedules a user's timers on the partition it writes the user's state
      // under (both in the batch of the triggering event), recorded in the state record.
      if (stored.partition === null) return [];
      return (await timers.userTimers(stored.partition, userId)).map(pendingTimerOf);
    },

    async find(text, limit) {
      const byTerm = queryTerms(text);
      const candidates = new Map<string, Set<UserMatch['matched'][number]>>();
      const note = (userId: string, what: UserMatch['matched'][number]) => {
        let m = candidates.get(userId);
        if (!m) candidates.set(userId, (m = new Set()));
        m.add(what);
      };
      note(text, 'userId');
      const found = await Promise.all(byTerm.map(({ term }) => contacts.find(term, limit)));
      byTerm.forEach(({ kind }, i) => {
        for (const userId of found[i]!) note(userId, kind);
      });
      // The index may still name a user whose contact changed a moment ago, or who was
      // erased: only users whose stored traits carry the term now are answered.
      const records = await state.load([...candidates.keys()]);
      const matches: UserMatch[] = [];
      for (const [userId, what] of candidates) {
        const stored = records.get(userId)?.state;
        if (!stored) continue;
        const traits = deserializeState(stored).traits;
        const terms = splitTerms(contactTerms(traits));
        const matched = [...what].filter(
          (w) => w === 'userId' || terms.includes(byTerm.find((q) => q.kind === w)!.term),
        );
        if (matched.length > 0) matches.push({ userId, matched, traits: { ...traits } });
      }
      return matches.slice(0, limit);
    },
  };
}

/** The lookup over the engine's Redis; `partitions`: how many partitions the events topic has. */
export function createRedisUserDirectory(
  deps: { redis: Redis; keys: KeySpace },
  opts: { eventsTopic: string; partitions: number | (() => Promise<number> | number) },
): UserLookup {
  return createUserDirectory({
    state: createRedisStateStore(deps, { eventsTopic: opts.eventsTopic }),
    timers: createRedisTimerStore(deps, { eventsTopic: opts.eventsTopic }),
    contacts: createRedisContactIndex(deps, opts),
  });
}
