// Named locks in the real Redis: writers in two processes (two clients) take turns, a writer
// that cannot get the lock in time is refused with a retriable coded error, and a holder whose
// lock expired and was taken by another does not release the other's.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes } from './errors.ts';
import { createRedisLocks } from './locks.ts';
import { silentLogger } from './logger.ts';
import { createRedis, type RedisDeps } from './redis.ts';
import { isolate } from '../test/support/isolation.ts';

describe('Redis locks', () => {
  const iso = isolate('locks');
  const config = iso.config();
  let one: RedisDeps;
  let two: RedisDeps;

  beforeAll(() => {
    one = createRedis(config.redis, silentLogger());
    two = createRedis(config.redis, silentLogger());
  });

  afterAll(async () => {
    const keys = await one.redis.keys(`${iso.redisKeyPrefix}*`);
    if (keys.length > 0) await one.redis.del(...keys);
    one.redis.disconnect();
    two.redis.disconnect();
  });

  it('makes writers in two processes take turns on a name', async () => {
    const a = createRedisLocks(one, { prefix: 'lock:', what: 'thing' });
    const b = createRedisLocks(two, { prefix: 'lock:', what: 'thing' });
    let inside = 0;
    let most = 0;
    let counter = 0;
    await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        (i % 2 ? a : b).withLock('x', async () => {
          inside++;
          most = Math.max(most, inside);
          const read = counter;
          await new Promise((r) => setTimeout(r, 5));
          counter = read + 1;
          inside--;
        }),
      ),
    );
    expect(most).toBe(1);
    expect(counter).toBe(10);
    expect(await one.redis.exists(one.keys.global('lock:x'))).toBe(0);
  });

  it('refuses a writer that waited too long, retriably, naming what is locked', async () => {
    const holder = createRedisLocks(one, { prefix: 'lock:', what: 'template' });
    const waiter = createRedisLocks(two, { prefix: 'lock:', what: 'template', waitMs: 100 });
    let release!: () => void;
    const held = holder.withLock('promo', () => new Promise<void>((r) => (release = r)));
    await new Promise((r) => setTimeout(r, 20));
    await expect(waiter.withLock('promo', async () => 'never')).rejects.toMatchObject({
      code: ErrorCodes.Unavailable,
      retriable: true,
      message: expect.stringContaining('another change of template "promo" is still in progress'),
    });
    release();
    await held;
    await expect(waiter.withLock('promo', async () => 'now')).resolves.toBe('now');
  });

  it('does not release a lock that expired and was taken by another writer', async () => {
    const slow = createRedisLocks(one, { prefix: 'lock:', what: 'thing', lockMs: 50 });
    const next = createRedisLocks(two, { prefix: 'lock:', what: 'thing' });
    let releaseNext!: () => void;
    let nextHolds!: () => void;
    const nextIn = new Promise<void>((r) => (nextHolds = r));
    let nextRun: Promise<void> | undefined;
    await slow.withLock('y', async () => {
      // The slow holder outlives its lock; the next writer takes it meanwhile.
      nextRun = next.withLock('y', async () => {
        nextHolds();
        await new Promise<void>((r) => (releaseNext = r));
      });
      await nextIn;
    });
    // The slow holder finished: the next writer's lock is still there.
    expect(await one.redis.exists(one.keys.global('lock:y'))).toBe(1);
    releaseNext();
    await nextRun;
    expect(await one.redis.exists(one.keys.global('lock:y'))).toBe(0);
  });
});
