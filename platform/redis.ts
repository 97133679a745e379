// Redis client for the state store, timers and delivery bookkeeping (ioredis). Keys come
// from the KeySpace so every key of one user shares the `{userId}` hash tag.
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from './config.ts';
import { createKeySpace, type KeySpace } from './keys.ts';

export { Redis };

export interface RedisDeps {
  redis: Redis;
  keys: KeySpace;
}

export function createRedis(config: Pick<Config['redis'], 'url' | 'keyPrefix'>, logger: Logger): RedisDeps {
  const redis = new Redis(config.url, {
    lazyConnect: false,
    maxRetriesPerRequest: 5,
    enableAutoPipelining: true,
    retryStrategy: (times) => Math.min(times * 100, 2000),
  });
  redis.on('error', (err: Error) => logger.warn({ component: 'redis', err: err.message }, 'redis connection error'));
  return { redis, keys: createKeySpace(config.keyPrefix) };
}
