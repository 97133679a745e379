// Frequency-cap bookkeeping per user and channel: a sorted set of the sends holding a slot
// (score = when the slot was taken) and their priority/state. A slot is `pending` until the
// provider call starts (`sent` afterwards). When a channel is full, a new send may take the
// slot of the lowest-priority pending send of lower priority (one deferred by quiet hours or
// waiting for a retry); otherwise it is capped.
import type { Redis } from 'ioredis';
import type { Channel } from '../../platform/contracts.ts';
import type { KeySpace } from '../../platform/keys.ts';
import { script } from '../lua.ts';

export interface CapHolder {
  sendId: string;
  ruleId: string;
  priority: number;
  variant: string | null;
  category: string;
}

export interface CapLimits {
  perDay: number;
  perWeek: number;
}

export type CapResult =
  | { kind: 'ok' }
  /** This send already holds a slot (resumed after quiet hours or a retry). */
  | { kind: 'held' }
  | { kind: 'preempted'; victim: CapHolder }
  | { kind: 'capped'; window: 'day' | 'week' };

export interface CapStore {
  reserve(
    userId: string,
    channel: Channel,
    holder: CapHolder,
    now: number,
    limits: CapLimits,
  ): Promise<CapResult>;
  /** The provider call starts: the slot can no longer be taken by a higher-priority send. */
  commit(userId: string, channel: Channel, sendId: string): Promise<void>;
  /** The send ended without being sent: its slot is free again. */
  release(userId: string, channel: Channel, sendId: string): Promise<void>;
}

export const DAY_MS = 24 * 3600 * 1000;
export const WEEK_MS = 7 * DAY_MS;

const RESERVE = script(`
local now = tonumber(ARGV[1])
local capDay = tonumber(ARGV[2])
local capWeek = tonumber(ARGV[3])
local priority = tonumber(ARGV[5])
local dayStart = now - ${DAY_MS}
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - ${WEEK_MS}))
if #old > 0 then
  redis.call('ZREM', KEYS[1], unpack(old))
  redis.call('HDEL', KEYS[2], unpack(old))
end
if redis.call('ZSCORE', KEYS[1], ARGV[4]) then return {'held'} end
local day = redis.call('ZCOUNT', KEYS[1], dayStart, '+inf')
local week = redis.call('ZCARD', KEYS[1])
local dayFull = capDay > 0 and day >= capDay
local weekFull = capWeek > 0 and week >= capWeek
local function take()
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('HSET', KEYS[2], ARGV[4], ARGV[6])
  redis.call('PEXPIRE', KEYS[1], ${WEEK_MS + DAY_MS})
  redis.call('PEXPIRE', KEYS[2], ${WEEK_MS + DAY_MS})
end
if not dayFull and not weekFull then
  take()
  return {'ok'}
end
local lo = '-inf'
if dayFull then lo = dayStart end
local members = redis.call('ZRANGEBYSCORE', KEYS[1], lo, '+inf')
local victim = nil
local victimInfo = nil
local victimPriority = priority
for _, m in ipairs(members) do
  local raw = redis.call('HGET', KEYS[2], m)
  if raw then
    local info = cjson.decode(raw)
    if info.state == 'pending' and tonumber(info.priority) < priority and tonumber(info.priority) <= victimPriority then
      victim = m
      victimInfo = raw
      victimPriority = tonumber(info.priority)
    end
  end
end
if victim then
  redis.call('ZREM', KEYS[1], victim)
  redis.call('HDEL', KEYS[2], victim)
  take()
  return {'preempted', victimInfo}
end
if dayFull then return {'capped', 'day'} end
return {'capped', 'week'}
`);

const COMMIT = script(`
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local info = cjson.decode(raw)
info.state = 'sent'
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(info))
return 1
`);

export function createRedisCapStore(deps: { redis: Redis; keys: KeySpace }): CapStore {
  const { redis, keys } = deps;
  const setKey = (u: string, c: Channel) => keys.user(u, `dlv:cap:${c}`);
  const infoKey = (u: string, c: Channel) => keys.user(u, `dlv:capinfo:${c}`);
  return {
    async reserve(userId, channel, holder, now, limits) {
      const info = JSON.stringify({ ...holder, state: 'pending' });
      const r = (await RESERVE(
        redis,
        [setKey(userId, channel), infoKey(userId, channel)],
        [now, limits.perDay, limits.perWeek, holder.sendId, holder.priority, info],
      )) as string[];
      if (r[0] === 'preempted') {
        const v = JSON.parse(r[1]!) as CapHolder & { state: string };
        return {
          kind: 'preempted',
          victim: {
            sendId: v.sendId,
            ruleId: v.ruleId,
            priority: v.priority,
            variant: v.variant,
            category: v.category,
          },
        };
      }
      if (r[0] === 'capped') return { kind: 'capped', window: r[1] === 'day' ? 'day' : 'week' };
      return { kind: r[0] === 'held' ? 'held' : 'ok' };
    },
    async commit(userId, channel, sendId) {
      await COMMIT(redis, [infoKey(userId, channel)], [sendId]);
    },
    async release(userId, channel, sendId) {
      await redis
        .multi()
        .zrem(setKey(userId, channel), sendId)
        .hdel(infoKey(userId, channel), sendId)
        .exec();
    },
  };
}
