// An unsubscribe or preference change is answered only once Redis has it on disk: the
// answer is a promise to the person, and a Redis crash after it must not take it back.
import Fastify from 'fastify';
import { afterAll, describe, expect, it } from 'vitest';
import { InMemoryBus } from '../../platform/bus.ts';
import { adminCredential, setupHttpKit } from '../../platform/http.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createRedis } from '../../platform/redis.ts';
import { deliveryRoutes } from '../index.ts';
import { createTrackingLinks } from '../links.ts';
import { createPreferencesStore } from './store.ts';
import { isolate } from '../../test/support/isolation.ts';

const iso = isolate('dlv-prefs-durable');
const config = iso.config();
const redis = createRedis(config.redis, silentLogger());

afterAll(async () => {
  const keys = await redis.redis.keys(`${iso.redisKeyPrefix}*`);
  if (keys.length) await redis.redis.del(...keys);
  redis.redis.disconnect();
});

/** durable() held open by the test. */
function held() {
  const waiting: (() => void)[] = [];
  return {
    durable: () => new Promise<void>((r) => waiting.push(r)),
    release: () => waiting.splice(0).forEach((r) => r()),
    pending: () => waiting.length,
  };
}

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(cond()).toBe(true);
}

describe('preference changes and durability', () => {
  it('answers a one-click unsubscribe only after the change is durable', async () => {
    const h = held();
    const app = Fastify();
    await setupHttpKit(app, {
      credentials: { staff: adminCredential(config.auth.adminToken) },
      // Staff changes are audited; what they record is tested in routes.test.ts.
      audit: { append: async () => 'audit-entry' },
    });
    await app.register(deliveryRoutes, {
      config,
      redis: { ...redis, durable: h.durable },
      publisher: new InMemoryBus(1).publisher(),
      logger: silentLogger(),
    });
    const links = createTrackingLinks({
      publicBaseUrl: config.http.publicBaseUrl,
      signingSecret: config.auth.signingSecret,
    });
    const userId = `u-${iso.id}`;
    const url = new URL(
      links.unsubscribe(
        {
          sendId: `s-${iso.id}`,
          userId,
          ruleId: 'r',
          channel: 'email',
          variant: null,
          category: 'marketing',
        },
        Date.now(),
      ),
    );
    let answered = false;
    const answer = app
      .inject({
        method: 'POST',
        url: `${url.pathname}${url.search}`,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: 'List-Unsubscribe=One-Click',
      })
      .then((r) => ((answered = true), r));
    await until(() => h.pending() > 0);
    await new Promise((r) => setTimeout(r, 50));
    expect(answered).toBe(false);
    // Written already, not yet answered: the answer waits for the disk, not for the write.
    const store = createPreferencesStore(redis);
    expect((await store.get(userId)).consents.marketing?.email?.granted).toBe(false);
    h.release();
    expect((await answer).statusCode).toBe(200);
    await app.close();
  });

  it('resolves every kind of change only after it is durable', async () => {
    const h = held();
    const store = createPreferencesStore({ ...redis, durable: h.durable });
    const userId = `v-${iso.id}`;
    const changes: [string, () => Promise<unknown>][] = [
      [
        'apply',
        () =>
          store.apply(userId, { unsubscribedAll: true, records: [] }, { source: 'test', at: 1 }),
      ],
      ['suppress', () => store.suppress(userId, 'email', { reason: 'hard_bounce', at: 1 })],
      ['unsuppress', () => store.unsuppress(userId, 'email')],
      ['markDeleted', () => store.markDeleted(userId, 1)],
    ];
    for (const [name, change] of changes) {
      let done = false;
      const p = change().then(() => (done = true));
      await until(() => h.pending() > 0);
      await new Promise((r) => setTimeout(r, 20));
      expect(done, name).toBe(false);
      h.release();
      await p;
    }
  });

  it('keeps message type switches beside consents in the same hash and history, and reads hashes written before types', async () => {
    const store = createPreferencesStore(redis);
    const userId = `w-${iso.id}`;
    // A hash as the product wrote it before message types: consents and the global flag only.
    const key = redis.keys.user(userId, 'dlv:prefs');
    await redis.redis.hset(
      key,
      'c:marketing:email',
      JSON.stringify({ granted: true, at: 5, source: 'signup_form' }),
    );
    expect(await store.get(userId)).toEqual({
      userId,
      unsubscribedAll: null,
      consents: { marketing: { email: { granted: true, at: 5, source: 'signup_form' } } },
      types: {},
    });
    const after = await store.apply(
      userId,
      {
        records: [],
        types: [
          {
            messageType: 'tips',
            channel: 'email',
            record: { granted: false, at: 7, source: 'preference_page' },
          },
          {
            messageType: 'product_news',
            channel: 'push',
            record: { granted: true, at: 7, source: 'preference_page' },
          },
        ],
      },
      { source: 'preference_page', at: 8 },
    );
    expect(after.consents.marketing?.email?.granted).toBe(true);
    expect(after.types).toEqual({
      tips: { email: { granted: false, at: 7, source: 'preference_page' } },
      product_news: { push: { granted: true, at: 7, source: 'preference_page' } },
    });
    expect(await store.get(userId)).toEqual(after);
    expect(
      (await store.history(userId)).map((e) => [
        e.kind,
        'messageType' in e ? e.messageType : null,
        e.via,
      ]),
    ).toEqual([
      ['message_type', 'product_news', 'preference_page'],
      ['message_type', 'tips', 'preference_page'],
    ]);
    // An erasure takes the switches with the rest.
    await store.markDeleted(userId, 9);
    expect((await store.get(userId)).types).toEqual({});
  });
});
