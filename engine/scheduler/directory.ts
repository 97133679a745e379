// The scheduler's user directory in Redis: every known user with the zone their schedules run
// in, sharded over DIRECTORY_SHARDS hash tags `{sdir<N>}` so no key holds everyone and the
// shards spread over a Redis Cluster. Each shard is a sorted set of `<zone>\n<userId>`
// members (all score 0), so one zone's users are a lexicographic range that a fan-out pages
// through with a stable cursor (the last member), and a hash userId -> zone to move a user
// when their timezone changes. Zones ever seen are kept in one small hash, with when each
// was first seen (a zone's schedule starts there, not in the past).
import type { Redis } from 'ioredis';
import { partitionFor } from '../../platform/bus.ts';
import type { KeySpace } from '../../platform/keys.ts';
import type { DirectoryChange } from './plan.ts';

/** Fixed: changing it would need the directory rebuilt (a new scheduler group). */
export const DIRECTORY_SHARDS = 64;

const SEP = '\n';
/** The character after SEP: `(<zone>\x0b` ends a zone's lexicographic range. */
const AFTER_SEP = '\x0b';

// KEYS: members zset, zone hash (one shard, one slot). ARGV: triples op, userId, zone.
// `set` files the user under the zone; `touch`/`add` only a user not yet filed; `delete` removes.
const UPDATE_SCRIPT = `
local n = 0
for i = 1, #ARGV, 3 do
  local op, u, z = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local old = redis.call('HGET', KEYS[2], u)
  if op == 'delete' then
    if old then
      redis.call('ZREM', KEYS[1], old .. '\\n' .. u)
      redis.call('HDEL', KEYS[2], u)
      n = n + 1
    end
  elseif (op == 'set' or not old) and old ~= z then
    if old then redis.call('ZREM', KEYS[1], old .. '\\n' .. u) end
    redis.call('ZADD', KEYS[1], 0, z .. '\\n' .. u)
    redis.call('HSET', KEYS[2], u, z)
    n = n + 1
  end
end
return n
`;

export interface DirectoryPage {
  userIds: string[];
  /** Cursor for the next page of the same shard (the last member), or null when the shard is done. */
  cursor: string | null;
}

export interface UserDirectory {
  /**
   * Applies net changes per user; returns how many entries changed. `seenAt` (epoch ms, the
   * batch's earliest receive time; 0 for users known from before) is recorded for zones seen
   * for the first time.
   */
  apply(changes: Map<string, DirectoryChange>, seenAt?: number): Promise<number>;
  /** Every zone a user was ever filed under, with when it was first seen, in zone order. */
  zones(): Promise<Map<string, number>>;
  /** Up to `limit` users of `shard` after `cursor`: of one zone, or of all zones when `zone` is null. */
  page(
    shard: number,
    zone: string | null,
    cursor: string | null,
    limit: number,
  ): Promise<DirectoryPage>;
  /** The zone a user is filed under, or null when the user is not in the directory. */
  zoneOf(userId: string): Promise<string | null>;
  /** zoneOf for many users at once (one round trip). */
  zonesOf(userIds: readonly string[]): Promise<(string | null)[]>;
  /** Users in the directory (sums the shards; for health and tests). */
  size(): Promise<number>;
  /** Users filed under `zone` (sums the shards' ranges), or every user for null. */
  count(zone: string | null): Promise<number>;
}

export function shardOf(userId: string): number {
  return partitionFor(userId, DIRECTORY_SHARDS);
}

export function createRedisDirectory(redis: Redis, keys: KeySpace): UserDirectory {
  const members = (shard: number) => keys.global(`{sdir${shard}}:members`);
  const zoneHash = (shard: number) => keys.global(`{sdir${shard}}:zone`);
  const zonesKey = keys.global('sched:zones-first-seen');
  const known = new Set<string>();
  if (!('lcDirectoryUpdate' in redis))
    redis.defineCommand('lcDirectoryUpdate', { numberOfKeys: 2, lua: UPDATE_SCRIPT });
  const update = (
    redis as unknown as {
      lcDirectoryUpdate(k1: string, k2: string, ...args: string[]): Promise<number>;
    }
  ).lcDirectoryUpdate.bind(redis);

  return {
    async apply(changes, seenAt = 0) {
      const byShard = new Map<number, string[]>();
      const newZones = new Set<string>();
      for (const [userId, c] of changes) {
        const zone = c.op === 'set' || c.op === 'add' ? c.zone : 'UTC';
        if (c.op !== 'delete' && !known.has(zone)) newZones.add(zone);
        const s = shardOf(userId);
        let args = byShard.get(s);
        if (!args) byShard.set(s, (args = []));
        args.push(c.op, userId, zone);
      }
      // The zone is listed before any user is filed under it, so a fan-out never misses a zone.
      if (newZones.size > 0) {
        const pipeline = redis.pipeline();
        for (const z of newZones) pipeline.hsetnx(zonesKey, z, String(seenAt));
        await pipeline.exec();
        for (const z of newZones) known.add(z);
      }
      const counts = await Promise.all(
        [...byShard].map(([s, args]) => update(members(s), zoneHash(s), ...args)),
      );
      return counts.reduce((a, b) => a + Number(b), 0);
    },
    async zones() {
      const all = await redis.hgetall(zonesKey);
      return new Map(
        Object.keys(all)
          .sort()
          .map((z) => [z, Number(all[z])]),
      );
    },
    async page(shard, zone, cursor, limit) {
      const min = cursor !== null ? `(${cursor}` : zone === null ? '-' : `[${zone}${SEP}`;
      const max = zone === null ? '+' : `(${zone}${AFTER_SEP}`;
      const found = await redis.zrangebylex(members(shard), min, max, 'LIMIT', 0, limit);
      return {
        userIds: found.map((m) => m.slice(m.indexOf(SEP) + 1)),
        cursor: found.length < limit ? null : found[found.length - 1]!,
      };
    },
    async zoneOf(userId) {
      return redis.hget(zoneHash(shardOf(userId)), userId);
    },
    async zonesOf(userIds) {
      if (userIds.length === 0) return [];
      const pipeline = redis.pipeline();
      for (const u of userIds) pipeline.hget(zoneHash(shardOf(u)), u);
      const replies = (await pipeline.exec()) ?? [];
      return userIds.map((_, i) => {
        const [err, zone] = replies[i] ?? [null, null];
        if (err) throw err;
        return typeof zone === 'string' ? zone : null;
      });
    },
    async size() {
      const counts = await Promise.all(
        Array.from({ length: DIRECTORY_SHARDS }, (_, s) => redis.zcard(members(s))),
      );
      return counts.reduce((a, b) => a + b, 0);
    },
    async count(zone) {
      if (zone === null) return this.size();
      const counts = await Promise.all(
        Array.from({ length: DIRECTORY_SHARDS }, (_, s) =>
          redis.zlexcount(members(s), `[${zone}${SEP}`, `(${zone}${AFTER_SEP}`),
        ),
      );
      return counts.reduce((a, b) => a + b, 0);
    },
  };
}
