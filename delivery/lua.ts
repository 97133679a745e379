// Lua scripts run by SHA (EVALSHA), loaded on first use and again after a Redis restart.
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

export type Script = (redis: Redis, keys: string[], args: (string | number)[]) => Promise<unknown>;

export function script(source: string): Script {
  const sha = createHash('sha1').update(source).digest('hex');
  return async (redis, keys, args) => {
    try {
      return await redis.evalsha(sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.includes('NOSCRIPT')) throw err;
      return redis.eval(source, keys.length, ...keys, ...args);
    }
  };
}
