// The Redis stores behind the policy chain, against the real Redis of the local stack.
import { afterAll } from 'vitest';
import { createKeySpace } from '../../platform/keys.ts';
import { Redis } from '../../platform/redis.ts';
import { createRedisDelayQueue } from '../pipeline/delay-queue.ts';
import { createPreferencesStore } from '../preferences/store.ts';
import { createRedisCapStore } from './caps-store.ts';
import { createRedisClaimStore } from './claims.ts';
import { storesContract } from './stores.contract.ts';
import { isolate } from '../../test/helpers/isolation.ts';

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
