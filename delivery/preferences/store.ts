// Redis storage of preferences, consent records (with an audit trail) and suppressions.
// Every key lives under the user's `{userId}` hash tag. A change resolves only once it is
// durable (`RedisDeps.durable`): an unsubscribe answered "done" must survive a Redis crash.
import type { Redis } from 'ioredis';
import type { Channel } from '../../platform/contracts.ts';
import { CHANNELS } from '../../platform/contracts.ts';
import type { KeySpace } from '../../platform/keys.ts';
import type { RedisDeps } from '../../platform/redis.ts';
import {
  emptyPreferences,
  historyEntry,
  type ChangeMeta,
  type ConsentRecord,
  type PreferenceChange,
  type Suppression,
  type SuppressionState,
  type TypeRecord,
  type UserPreferences,
} from './model.ts';

export interface PreferencesStore {
  get(userId: string): Promise<UserPreferences>;
  /**
   * Writes consent records, message type switches and the global flag; each change is appended
   * to the history with the door it came through, when, and (staff API) who made it.
   */
  apply(userId: string, change: PreferencesChange, meta: ChangeMeta): Promise<UserPreferences>;
  /** The latest changes, newest first (the store keeps the last 500; an erasure removes them). */
  history(userId: string, limit?: number): Promise<PreferenceChange[]>;
  suppressions(userId: string): Promise<SuppressionState>;
  suppress(userId: string, channel: Channel, s: Suppression): Promise<void>;
  unsuppress(userId: string, channel: Channel): Promise<boolean>;
  /** Right to be forgotten: preferences are erased, a deletion marker keeps every future send away. */
  markDeleted(userId: string, at: number): Promise<void>;
}

/** What one request changes: consents per category, switches per message type, the global flag. */
export interface PreferencesChange {
  unsubscribedAll?: boolean;
  records: { category: string; channel: Channel; record: ConsentRecord }[];
  types?: TypeRecord[];
}

const AUDIT_KEEP = 500;

export function createPreferencesStore(deps: {
  redis: Redis;
  keys: KeySpace;
  durable?: RedisDeps['durable'];
}): PreferencesStore {
  const { redis, keys } = deps;
  const durable = deps.durable ?? (async () => {});
  const prefsKey = (u: string) => keys.user(u, 'dlv:prefs');
  const auditKey = (u: string) => keys.user(u, 'dlv:consent-log');
  const suppressKey = (u: string) => keys.user(u, 'dlv:suppress');

  async function get(userId: string): Promise<UserPreferences> {
    const h = await redis.hgetall(prefsKey(userId));
    const prefs = emptyPreferences(userId);
    for (const [field, raw] of Object.entries(h)) {
      if (field === 'all') {
        prefs.unsubscribedAll = JSON.parse(raw) as { at: number; source: string };
        continue;
      }
      // `c:<category>:<channel>` consents; `t:<type>:<channel>` message type switches (added later:
      // hashes written before have none, and read as "no choice made").
      const m = /^([ct]):(.+):([a-z]+)$/.exec(field);
      if (!m) continue;
      const [, kind, name, channel] = m as unknown as [string, 'c' | 't', string, Channel];
      const into = kind === 'c' ? prefs.consents : prefs.types;
      (into[name] ??= {})[channel] = JSON.parse(raw) as ConsentRecord;
    }
    return prefs;
  }

  return {
    get,
    async apply(userId, change, meta) {
      const tx = redis.multi();
      const audit: string[] = [];
      if (change.unsubscribedAll === true) {
        tx.hset(prefsKey(userId), 'all', JSON.stringify({ at: meta.at, source: meta.source }));
        audit.push(JSON.stringify(historyEntry({ kind: 'unsubscribe_all' }, meta)));
      } else if (change.unsubscribedAll === false) {
        tx.hdel(prefsKey(userId), 'all');
        audit.push(JSON.stringify(historyEntry({ kind: 'resubscribe_all' }, meta)));
      }
      for (const r of change.records) {
        tx.hset(prefsKey(userId), `c:${r.category}:${r.channel}`, JSON.stringify(r.record));
        audit.push(
          JSON.stringify(
            historyEntry(
              { kind: 'consent', category: r.category, channel: r.channel, ...r.record },
              meta,
            ),
          ),
        );
      }
      for (const r of change.types ?? []) {
        tx.hset(prefsKey(userId), `t:${r.messageType}:${r.channel}`, JSON.stringify(r.record));
        audit.push(
          JSON.stringify(
            historyEntry(
              { kind: 'message_type', messageType: r.messageType, channel: r.channel, ...r.record },
              meta,
            ),
          ),
        );
      }
      if (audit.length > 0) {
        tx.lpush(auditKey(userId), ...audit);
        tx.ltrim(auditKey(userId), 0, AUDIT_KEEP - 1);
      }
      await tx.exec();
      await durable();
      return get(userId);
    },
    async history(userId, limit = 50) {
      const rows = await redis.lrange(auditKey(userId), 0, limit - 1);
      return rows.map((r) => JSON.parse(r) as PreferenceChange);
    },
    async suppressions(userId) {
      const h = await redis.hgetall(suppressKey(userId));
      const state: SuppressionState = { deleted: null, channels: {} };
      for (const [field, raw] of Object.entries(h)) {
        const s = JSON.parse(raw) as Suppression;
        if (field === 'user') state.deleted = s;
        else if ((CHANNELS as readonly string[]).includes(field))
          state.channels[field as Channel] = s;
      }
      return state;
    },
    async suppress(userId, channel, s) {
      await redis.hset(suppressKey(userId), channel, JSON.stringify(s));
      await durable();
    },
    async unsuppress(userId, channel) {
      const removed = (await redis.hdel(suppressKey(userId), channel)) > 0;
      await durable();
      return removed;
    },
    async markDeleted(userId, at) {
      await redis
        .multi()
        .del(prefsKey(userId), auditKey(userId))
        .hset(
          suppressKey(userId),
          'user',
          JSON.stringify({ reason: 'user_deleted', at } satisfies Suppression),
        )
        .exec();
      await durable();
    },
  };
}
