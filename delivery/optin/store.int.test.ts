// The opt-in request store on the real Redis (its scripts) and in memory (the demo, unit
// tests), held to the same behaviour: one pending request per category and channel, a replay
// finds its own request, a confirmation happens once even when two race, an opt-out ends a
// pending request, an erasure takes everything.
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../platform/logger.ts';
import { createRedis } from '../../platform/redis.ts';
import { isolate } from '../../test/support/isolation.ts';
import { newRequest, optInTimes, statusAt } from './model.ts';
import { createMemoryOptInStore, createRedisOptInStore, type OptInStore } from './store.ts';

const iso = isolate('dlv-optin-store');
const redis = createRedis(iso.config().redis, silentLogger());

afterAll(async () => {
  const keys = await redis.redis.keys(`${iso.redisKeyPrefix}*`);
  if (keys.length) await redis.redis.del(...keys);
  redis.redis.disconnect();
});

const T0 = Date.parse('2026-03-10T12:00:00Z');
const DAY = 86_400_000;
const times = optInTimes({ optInLinkTtl: '7d', optInReminderAfter: '2d', optInExpiresAfter: '5d' });
const request = (userId: string, trigger: string, at = T0) =>
  newRequest(
    { userId, category: 'marketing', channel: 'email', source: 'signup_form', via: 'admin_api' },
    trigger,
    at,
    times,
  );

describe.each([
  ['redis', () => createRedisOptInStore(redis)],
  ['memory', () => createMemoryOptInStore()],
] as [string, () => OptInStore][])('the opt-in store (%s)', (_name, make) => {
  it('keeps one pending request per category and channel; a replay finds its own', async () => {
    const store = make();
    const u = `u1-${_name}-${iso.id}`;
    const first = request(u, 'a');
    expect(await store.start(first, T0)).toEqual({ kind: 'started', request: first });
    expect(await store.start(request(u, 'b', T0 + 1000), T0 + 1000)).toEqual({
      kind: 'pending',
      request: first,
    });
    expect(await store.start(first, T0 + 6 * DAY)).toEqual({ kind: 'pending', request: first });
    // Past its expiry a new request starts.
    const later = request(u, 'c', T0 + 6 * DAY);
    expect((await store.start(later, T0 + 6 * DAY)).kind).toBe('started');
    expect((await store.list(u)).map((r) => r.id)).toEqual([later.id, first.id]);
    expect(await store.get(u, first.id)).toEqual(first);
  });

  it('confirms once, even when two confirmations race; not after expiry or withdrawal', async () => {
    const store = make();
    const u = `u2-${_name}-${iso.id}`;
    const r = request(u, 'a');
    await store.start(r, T0);
    const results = await Promise.all([
      store.confirm(u, r.id, { at: T0 + 1000, ip: '203.0.113.1', userAgent: 'A' }),
      store.confirm(u, r.id, { at: T0 + 1000, ip: '203.0.113.2', userAgent: 'B' }),
    ]);
    expect(results.map((x) => x.kind).sort()).toEqual(['already_confirmed', 'confirmed']);
    const stored = await store.get(u, r.id);
    expect(stored!.status).toBe('confirmed');
    const winner = results.find((x) => x.kind === 'confirmed')!;
    expect(winner.kind === 'confirmed' && winner.request.confirmed).toEqual(stored!.confirmed);

    const v = `u3-${_name}-${iso.id}`;
    const expiring = request(v, 'a');
    await store.start(expiring, T0);
    expect(
      (await store.confirm(v, expiring.id, { at: T0 + 5 * DAY, ip: 'x', userAgent: 'x' })).kind,
    ).toBe('expired');
    const w = `u4-${_name}-${iso.id}`;
    const withdrawn = request(w, 'a');
    await store.start(withdrawn, T0);
    await store.withdraw(w, 'marketing', 'email', T0 + 1000);
    expect(statusAt((await store.get(w, withdrawn.id))!, T0 + 2000)).toBe('withdrawn');
    expect(
      (await store.confirm(w, withdrawn.id, { at: T0 + 2000, ip: 'x', userAgent: 'x' })).kind,
    ).toBe('withdrawn');
    expect(
      (await store.confirm(w, 'no-such-request', { at: T0, ip: 'x', userAgent: 'x' })).kind,
    ).toBe('unknown');
  });

  it('erases everything of the user', async () => {
    const store = make();
    const u = `u5-${_name}-${iso.id}`;
    const r = request(u, 'a');
    await store.start(r, T0);
    await store.confirm(u, r.id, { at: T0 + 1000, ip: '203.0.113.1', userAgent: 'A' });
    await store.erase(u);
    expect(await store.list(u)).toEqual([]);
    expect(await store.get(u, r.id)).toBeNull();
    expect((await store.start(request(u, 'b'), T0)).kind).toBe('started');
  });
});
