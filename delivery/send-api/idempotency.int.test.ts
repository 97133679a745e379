// The Idempotency-Key store on the real Redis: the same contract as the in-memory one.
import { afterAll, describe } from 'vitest';
import { silentLogger } from '../../platform/logger.ts';
import { createRedis } from '../../platform/redis.ts';
import { idempotencyStoreContract } from '../../test/support/idempotency-store.contract.ts';
import { isolate } from '../../test/support/isolation.ts';
import { createRedisIdempotencyStore } from './idempotency.ts';

const iso = isolate('idem');
const redis = createRedis(iso.config().redis, silentLogger());

afterAll(async () => {
  const own = await redis.redis.keys(`${iso.redisKeyPrefix}*`);
  if (own.length > 0) await redis.redis.del(...own);
  redis.redis.disconnect();
});

describe('the Redis Idempotency-Key store', () => {
  idempotencyStoreContract(() => createRedisIdempotencyStore(redis));
});
