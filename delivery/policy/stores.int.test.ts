// The Redis stores behind the policy chain, against the real Redis of the local stack.
import { afterAll, describe, expect, it } from 'vitest';
import { createKeySpace } from '../../platform/keys.ts';
import { Redis } from '../../platform/redis.ts';
import { createRedisDelayQueue } from '../pipeline/delay-queue.ts';
import { createPreferencesStore } from '../preferences/store.ts';
import { createRedisCapStore } from './caps-store.ts';
import { createRedisClaimStore } from './claims.ts';
import { storesContract } from '../../test/support/delivery-stores.contract.ts';
import { isolate } from '../../test/support/isolation.ts';

const iso = isolate('dlv-stores');
const config = iso.config();
const redis = new Redis(config.redis.url);
const deps = { redis, keys: createKeySpace(iso.redisKeyPrefix) };

afterAll(async () => {
  const keys = await redis.keys(`${iso.redisKeyPrefix}*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
});

storesContract({
  claims: createRedisClaimStore(deps),
  caps: createRedisCapStore(deps),
  delayQueue: createRedisDelayQueue(deps),
  preferences: createPreferencesStore(deps),
  runId: iso.id,
});

describe('Redis cap keys', () => {
  it("keeps one rolling window per user and channel, under the user's hash tag", async () => {
    const caps = createRedisCapStore(deps);
    const holder = (sendId: string) => ({
      sendId,
      ruleId: 'r',
      priority: 10,
      variant: null,
      category: 'marketing',
    });
    const now = Date.now();
    await caps.reserve('k1', 'sms', holder('k-sms'), now, { perDay: 1, perWeek: 3 });
    await caps.reserve('k1', 'push', holder('k-push'), now, { perDay: 5, perWeek: 20 });
    expect(await redis.zrange(deps.keys.user('k1', 'dlv:cap:sms'), 0, -1)).toEqual(['k-sms']);
    expect(await redis.zrange(deps.keys.user('k1', 'dlv:cap:push'), 0, -1)).toEqual(['k-push']);
    expect(await redis.exists(deps.keys.user('k1', 'dlv:cap:email'))).toBe(0);
    expect(deps.keys.user('k1', 'dlv:cap:sms')).toBe(`${iso.redisKeyPrefix}{k1}:dlv:cap:sms`);
  });
});
