// The engine's side of platform/users.ts: a user's stored state, read without taking part in
// the partition fencing (reads never write), turned into the staff API's profile.
import type { UserDirectory, UserProfile } from '../../platform/users.ts';
import { deserializeState, type UserState } from '../core/state.ts';
import type { StateStore } from './stores.ts';

export function profileOf(userId: string, state: UserState): UserProfile {
  const stats: UserProfile['stats'] = {};
  for (const [type, st] of Object.entries(state.stats))
    if (st.count > 0) stats[type] = { count: st.count, first: st.first, last: st.last };
  const rules: UserProfile['rules'] = {};
  for (const [id, h] of Object.entries(state.rules))
    rules[id] = { fires: h.fires, lastFiredAt: h.lastFiredAt };
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

/** Profiles from the engine's state store (Redis in production, memory in the demo). */
export function createUserDirectory(store: Pick<StateStore, 'load'>): UserDirectory {
  return {
    async profile(userId) {
      const stored = (await store.load([userId])).get(userId);
      if (!stored?.state) return null;
      return profileOf(userId, deserializeState(stored.state));
    },
  };
}
