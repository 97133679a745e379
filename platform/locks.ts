// Locks by name for writers that take turns on one thing (a template's publication, a
// campaign): a read-modify-write of a compacted topic's record runs under its lock, after the
// writer's view caught up, so it is made on the latest state. Redis for every instance of a
// deployment, one process's memory for the demo and unit tests.
import { randomUUID } from 'node:crypto';
import { ErrorCodes, LifecycleError } from './errors.ts';
import type { RedisDeps } from './redis.ts';

export interface NamedLocks {
  /** Runs `fn` while no other holder of this name's lock runs; callers take turns in order. */
  withLock<T>(name: string, fn: () => Promise<T>): Promise<T>;
}

/** One process's locks: the embedded demo and unit tests. */
export function createMemoryLocks(): NamedLocks {
  const locks = new Map<string, Promise<unknown>>();
  return {
    async withLock(name, fn) {
      const prev = locks.get(name) ?? Promise.resolve();
      const run = prev.catch(() => undefined).then(fn);
      locks.set(name, run);
      try {
        return await run;
      } finally {
        if (locks.get(name) === run) locks.delete(name);
      }
    },
  };
}

// KEYS: lock. ARGV: token. Only the holder releases: a lock that expired and was taken by
// another writer is not released by the first.
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

export interface RedisLocksOptions {
  /** The lock keys are `<key prefix><prefix><name>` (e.g. `tpl:lock:`). */
  prefix: string;
  /** What a name is, for the refusal when the lock stays taken (e.g. `template`). */
  what: string;
  /** How long a lock holds if its holder dies (default 30 s). */
  lockMs?: number;
  /** How long a caller waits for the lock before it is refused, retriably (default 20 s). */
  waitMs?: number;
  /** Pause between attempts to take it (default 25 ms). */
  pollMs?: number;
}

/** Locks through the product's Redis, shared by every instance. */
export function createRedisLocks(
  { redis, keys }: Pick<RedisDeps, 'redis' | 'keys'>,
  opts: RedisLocksOptions,
): NamedLocks {
  const lockMs = opts.lockMs ?? 30_000;
  const waitMs = opts.waitMs ?? 20_000;
  const pollMs = opts.pollMs ?? 25;
  return {
    async withLock(name, fn) {
      const key = keys.global(`${opts.prefix}${name}`);
      const token = randomUUID();
      const deadline = Date.now() + waitMs;
      while ((await redis.set(key, token, 'PX', lockMs, 'NX')) !== 'OK') {
        if (Date.now() > deadline)
          throw new LifecycleError(
            ErrorCodes.Unavailable,
            `another change of ${opts.what} "${name}" is still in progress; retry in a moment`,
            { retriable: true },
          );
        await new Promise((r) => setTimeout(r, pollMs));
      }
      try {
        return await fn();
      } finally {
        await redis.eval(RELEASE, 1, key, token).catch(() => undefined);
      }
    },
  };
}
