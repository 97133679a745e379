// The Redis state and timer stores against a real Redis: single-writer fencing per
// partition, the replay fence, erasure, and timers that survive a change of owner.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { isolate } from '../../test/support/isolation.ts';
import { createKeySpace } from '../../platform/keys.ts';
import { createRedisStateStore } from './redis-state.ts';
import { createRedisTimerStore } from './timers.ts';
import { createRedisContactIndex } from './contacts.ts';
import { createRedisUserDirectory } from './user-view.ts';
import type { Timer } from './stores.ts';

const iso = isolate('engine-state');
const config = iso.config();
let redis: Redis;
const prefix = iso.redisKeyPrefix;
const keys = createKeySpace(prefix);
const opts = { eventsTopic: 'lc-test.events' };

const timer = (id: string, userId: string, dueAt: number): Timer => ({
  id,
  userId,
  ruleId: 'r1',
  dueAt,
  trigger: {
    id: `e-${id}`,
    userId,
    type: 'user_registered',
    ts: dueAt - 1000,
    receivedAt: dueAt - 1000,
    source: 'test',
    properties: {},
  },
});

beforeAll(() => {
  redis = new Redis(config.redis.url, { maxRetriesPerRequest: 2 });
});
afterAll(async () => {
  const found = await redis.keys(`${prefix}*`);
  if (found.length) await redis.del(...found);
  redis.disconnect();
});

describe('redis state store', () => {
  it('refuses a write from a stale owner of the partition', async () => {
    const store = createRedisStateStore({ redis, keys }, opts);
    const timers = createRedisTimerStore({ redis, keys }, opts);
    const oldOwner = await store.acquire(3);
    expect(
      (
        await store.write(3, oldOwner, [
          { userId: 'u1', state: '{"v":1}', offset: '10', timerIds: [] },
        ])
      ).refused,
    ).toEqual([]);

    const newOwner = await store.acquire(3);
    expect(newOwner).toBeGreaterThan(oldOwner);
    expect(await store.currentEpoch(3)).toBe(newOwner);
    expect(
      (
        await store.write(3, newOwner, [
          { userId: 'u1', state: '{"v":2}', offset: '11', timerIds: [] },
        ])
      ).refused,
    ).toEqual([]);

    // The old owner wakes up: its user write and its timer schedule (the partition fence) are refused.
    const stale = await store.write(3, oldOwner, [
      { userId: 'u1', state: '{"v":"stale"}', offset: '12', timerIds: [] },
    ]);
    expect(stale.refused).toEqual(['u1']);
    expect(await timers.schedule(3, oldOwner, [timer('t1', 'u1', Date.now())])).toBe(false);
    expect(await timers.schedule(3, oldOwner, [])).toBe(false);
    expect(await timers.remove(3, oldOwner, [{ userId: 'u1', timerId: 't1' }])).toBe(false);
    expect(await timers.pending(3)).toBe(0);

    const loaded = await store.load(['u1', 'nobody']);
    expect(loaded.get('u1')).toEqual({
      state: '{"v":2}',
      partition: 3,
      offset: '11',
      contacts: null,
    });
    expect(loaded.has('nobody')).toBe(false);
  });

  it("erases a user but keeps the replay fence, and hands back the user's timers", async () => {
    const store = createRedisStateStore({ redis, keys }, opts);
    const timers = createRedisTimerStore({ redis, keys }, opts);
    const epoch = await store.acquire(5);
    const now = Date.now();
    expect(
      await timers.schedule(5, epoch, [
        timer('ta', 'u2', now + 60_000),
        timer('tb', 'u2', now + 120_000),
      ]),
    ).toBe(true);
    await store.write(5, epoch, [
      {
        userId: 'u2',
        state: '{"v":1,"u":{"email":"x@example.com"}}',
        offset: '4',
        timerIds: ['ta', 'tb'],
      },
    ]);

    const res = await store.write(5, epoch, [
      { userId: 'u2', state: null, offset: '9', timerIds: [] },
    ]);
    expect(res.erasedTimers.map((t) => t.timerId).sort()).toEqual(['ta', 'tb']);
    expect(await timers.remove(5, epoch, res.erasedTimers)).toBe(true);
    expect(await timers.pending(5)).toBe(0);

    expect((await store.load(['u2'])).get('u2')).toEqual({
      state: null,
      partition: 5,
      offset: '9',
      contacts: null,
    });
    const raw = await redis.hgetall(`${prefix}{u2}:state`);
    expect(raw.s).toBeUndefined();
    expect(JSON.stringify(raw)).not.toContain('example.com');
    expect(await redis.pttl(`${prefix}{u2}:state`)).toBeGreaterThan(0);
    expect(await redis.exists(`${prefix}{u2}:timers`)).toBe(0);
  });

  it('writes a batch of many users in order: stale-owner refusals, an erase and a re-creation of one user, timers indexed', async () => {
    const store = createRedisStateStore({ redis, keys }, opts);
    const old = await store.acquire(7);
    // Written by the old owner, then by the new one: the old owner's later write of them is refused.
    const taken = Array.from({ length: 40 }, (_, i) => `b-taken-${i}`);
    await store.write(
      7,
      old,
      taken.map((userId) => ({ userId, state: '{"v":1}', offset: '1', timerIds: [] })),
    );
    const epoch = await store.acquire(7);
    await store.write(
      7,
      epoch,
      taken.map((userId) => ({ userId, state: '{"v":1,"k":2}', offset: '2', timerIds: [] })),
    );
    await store.write(7, epoch, [
      { userId: 'b-again', state: '{"v":1}', offset: '3', timerIds: ['old-t'] },
    ]);

    const fresh = Array.from({ length: 700 }, (_, i) => `b-fresh-${i}`);
    const writes = [
      ...fresh.map((userId, i) => ({
        userId,
        state: `{"v":1,"n":${i}}`,
        offset: String(100 + i),
        timerIds: i % 2 ? [`t-${i}`] : [],
      })),
      { userId: 'b-again', state: null, offset: '900', timerIds: [] },
      { userId: 'b-again', state: '{"v":1,"new":true}', offset: '900', timerIds: ['new-t'] },
    ];
    expect((await store.write(7, epoch, writes)).refused).toEqual([]);
    const stale = await store.write(
      7,
      old,
      taken.map((userId) => ({ userId, state: '{"v":"stale"}', offset: '3', timerIds: [] })),
    );
    expect(stale.refused).toEqual(taken);

    const loaded = await store.load([...fresh, 'b-again', ...taken]);
    fresh.forEach((userId, i) =>
      expect(loaded.get(userId)).toEqual({
        state: `{"v":1,"n":${i}}`,
        partition: 7,
        offset: String(100 + i),
        contacts: null,
      }),
    );
    expect(loaded.get('b-again')).toEqual({
      state: '{"v":1,"new":true}',
      partition: 7,
      offset: '900',
      contacts: null,
    });
    for (const userId of taken) expect(loaded.get(userId)?.state).toBe('{"v":1,"k":2}');
    expect(await redis.smembers(`${prefix}{b-fresh-1}:timers`)).toEqual(['t-1']);
    expect(await redis.exists(`${prefix}{b-fresh-0}:timers`)).toBe(0);
    // The erase dropped the old timer index; the re-created user has only its new timer, and no expiry.
    expect(await redis.smembers(`${prefix}{b-again}:timers`)).toEqual(['new-t']);
    expect(await redis.pttl(`${prefix}{b-again}:state`)).toBe(-1);
  });

  it('returns due timers in due order to whoever owns the partition now', async () => {
    const store = createRedisStateStore({ redis, keys }, opts);
    const timers = createRedisTimerStore({ redis, keys }, opts);
    const first = await store.acquire(7);
    const now = Date.now();
    await timers.schedule(7, first, [
      timer('late', 'u3', now + 3_600_000),
      timer('b', 'u3', now - 10),
      timer('a', 'u4', now - 20),
    ]);
    // Scheduling again (a replayed batch) changes nothing.
    await timers.schedule(7, first, [timer('b', 'u3', now - 10)]);
    expect(await timers.pending(7)).toBe(3);

    const second = await store.acquire(7);
    const due = await timers.due(7, now, 10);
    expect(due.map((t) => t.id)).toEqual(['a', 'b']);
    expect(due[0]!.trigger.type).toBe('user_registered');
    expect(
      await timers.remove(
        7,
        first,
        due.map((t) => ({ userId: t.userId, timerId: t.id })),
      ),
    ).toBe(false);
    expect(
      await timers.remove(
        7,
        second,
        due.map((t) => ({ userId: t.userId, timerId: t.id })),
      ),
    ).toBe(true);
    expect(await timers.pending(7)).toBe(1);
  });
});

describe('the staff lookup over Redis', () => {
  it('keeps the contact terms beside the state: set, kept when a write leaves them, gone with an erasure', async () => {
    const store = createRedisStateStore({ redis, keys }, opts);
    const epoch = await store.acquire(9);
    await store.write(9, epoch, [
      { userId: 'c1', state: '{"v":1}', offset: '1', timerIds: [], contacts: 'e:c1@x.io' },
      { userId: 'c2', state: '{"v":1}', offset: '1', timerIds: [], contacts: '' },
    ]);
    await store.write(9, epoch, [{ userId: 'c1', state: '{"v":1}', offset: '2', timerIds: [] }]);
    let loaded = await store.load(['c1', 'c2']);
    expect(loaded.get('c1')?.contacts).toBe('e:c1@x.io');
    expect(loaded.get('c2')?.contacts).toBe('');
    await store.write(9, epoch, [{ userId: 'c1', state: null, offset: '3', timerIds: [] }]);
    loaded = await store.load(['c1']);
    expect(loaded.get('c1')).toEqual({ state: null, partition: 9, offset: '3', contacts: null });
  });

  it('files users per partition, fenced by the owner epoch, and finds a term exactly on every partition', async () => {
    const store = createRedisStateStore({ redis, keys }, opts);
    const index = createRedisContactIndex({ redis, keys }, { ...opts, partitions: 12 });
    const stale = await store.acquire(10);
    const e10 = await store.acquire(10);
    const e11 = await store.acquire(11);
    expect(
      await index.update(10, e10, [
        { userId: 'x1', add: ['e:same@x.io', 'p:+4912345'], remove: [] },
        { userId: 'x2', add: ['e:same@x.io.evil'], remove: [] },
      ]),
    ).toBe(true);
    expect(await index.update(11, e11, [{ userId: 'x3', add: ['e:same@x.io'], remove: [] }])).toBe(
      true,
    );
    expect(
      await index.update(10, stale, [{ userId: 'x9', add: ['e:same@x.io'], remove: [] }]),
    ).toBe(false);
    expect((await index.find('e:same@x.io', 10)).sort()).toEqual(['x1', 'x3']);
    expect(await index.find('p:+4912345', 10)).toEqual(['x1']);
    expect(await index.update(10, e10, [{ userId: 'x1', add: [], remove: ['e:same@x.io'] }])).toBe(
      true,
    );
    expect(await index.find('e:same@x.io', 10)).toEqual(['x3']);
    // More than a script call takes at once.
    const many = Array.from({ length: 1200 }, (_, i) => ({
      userId: `m${i}`,
      add: ['e:shared@x.io'],
      remove: [],
    }));
    expect(await index.update(11, e11, many)).toBe(true);
    expect(await index.find('e:shared@x.io', 2000)).toHaveLength(1200);
    expect(await index.find('e:shared@x.io', 5)).toHaveLength(5);
  });

  it("reads a user's pending timers from the partition the state was written under", async () => {
    const store = createRedisStateStore({ redis, keys }, opts);
    const timers = createRedisTimerStore({ redis, keys }, opts);
    const epoch = await store.acquire(4);
    const now = Date.now();
    await timers.schedule(4, epoch, [
      timer('later', 'tu', now + 120_000),
      timer('sooner', 'tu', now + 60_000),
      timer('other', 'someone-else', now + 1000),
    ]);
    await store.write(4, epoch, [
      {
        userId: 'tu',
        state: '{"v":1,"u":{"email":"tu@x.io"}}',
        offset: '1',
        timerIds: ['later', 'sooner'],
        contacts: 'e:tu@x.io',
      },
    ]);
    const directory = createRedisUserDirectory({ redis, keys }, { ...opts, partitions: 12 });
    expect(await directory.pendingTimers('tu')).toEqual([
      {
        id: 'sooner',
        ruleId: 'r1',
        fires: 'rule',
        dueAt: now + 60_000,
        trigger: { id: 'e-sooner', type: 'user_registered', ts: now + 59_000 },
      },
      {
        id: 'later',
        ruleId: 'r1',
        fires: 'rule',
        dueAt: now + 120_000,
        trigger: { id: 'e-later', type: 'user_registered', ts: now + 119_000 },
      },
    ]);
    // Fired: its payload goes, and the lookup stops showing it.
    await timers.remove(4, epoch, [{ userId: 'tu', timerId: 'sooner' }]);
    expect((await directory.pendingTimers('tu'))?.map((t) => t.id)).toEqual(['later']);
    expect(await directory.pendingTimers('nobody')).toBeNull();
  });
});
