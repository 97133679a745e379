// The durable delay queue: sends parked until the end of quiet hours or their next retry.
// One Redis sorted set (score = due time) plus a hash of the parked sends, both under one
// hash tag so the scripts stay legal on Redis Cluster. Taking due entries leases them
// (their score moves forward by the lease) instead of removing them: an entry leaves the
// queue only once its send has been handled, so a worker killed mid-way loses nothing.
import type { Redis } from 'ioredis';
import type { Channel, SendCommand } from '../../platform/contracts.ts';
import type { KeySpace } from '../../platform/keys.ts';
import { script } from '../lua.ts';

export interface DelayedSend {
  send: SendCommand;
  channel: Channel;
  /** Claim generation this entry resumes. */
  gen: number;
  reason: string;
  dueAt: number;
}

export interface DelayQueue {
  /** Parks (or re-parks) the send for this channel; one entry per (sendId, channel). */
  add(entry: DelayedSend): Promise<void>;
  /** Due entries, leased to the caller for `leaseMs`. */
  takeDue(now: number, limit: number, leaseMs: number): Promise<DelayedSend[]>;
  /** Removes the entry if it is still the given generation (a newer park keeps its entry). */
  remove(entry: Pick<DelayedSend, 'send' | 'channel' | 'gen'>): Promise<void>;
  size(): Promise<number>;
}

const member = (sendId: string, channel: Channel) => `${channel}|${sendId}`;

const TAKE_DUE = script(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, m in ipairs(due) do
  local data = redis.call('HGET', KEYS[2], m)
  if data then
    redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[3]), m)
    table.insert(out, data)
  else
    redis.call('ZREM', KEYS[1], m)
  end
end
return out
`);

const REMOVE = script(`
local data = redis.call('HGET', KEYS[2], ARGV[1])
if not data then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
if tonumber(cjson.decode(data).gen) ~= tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
`);

export function createRedisDelayQueue(deps: { redis: Redis; keys: KeySpace }): DelayQueue {
  const { redis, keys } = deps;
  const dueKey = keys.global('{dlv-delay}:due');
  const dataKey = keys.global('{dlv-delay}:sends');
  return {
    async add(entry) {
      const m = member(entry.send.sendId, entry.channel);
      await redis
        .multi()
        .hset(dataKey, m, JSON.stringify(entry))
        .zadd(dueKey, entry.dueAt, m)
        .exec();
    },
    async takeDue(now, limit, leaseMs) {
      const rows = (await TAKE_DUE(redis, [dueKey, dataKey], [now, limit, leaseMs])) as string[];
      return rows.map((r) => JSON.parse(r) as DelayedSend);
    },
    async remove(entry) {
      await REMOVE(redis, [dueKey, dataKey], [member(entry.send.sendId, entry.channel), entry.gen]);
    },
    size: () => redis.zcard(dueKey),
  };
}
