// Double opt-in without services: the service over the in-memory stores, the policy stage that
// holds the reminder and drops what is no longer wanted, the identify trait, and the routes in
// process (app.inject): the confirmation page, the preference API and page, the consent export.
import { NO_MESSAGE_TYPES } from '../../platform/message-types.ts';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { sendCodec } from '../../platform/avro.ts';
import type { OutgoingMessage } from '../../platform/bus.ts';
import type { NormalisedEvent, SendCommand } from '../../platform/contracts.ts';
import { adminCredential, setupHttpKit, type AuditRecord } from '../../platform/http.ts';
import { testContext } from '../../test/support/delivery-context.ts';
import formbody from '../formbody.ts';
import { createLinkUseLimiter } from '../link-limits.ts';
import { createTrackingLinks, tokenOf } from '../links.ts';
import { createMemoryPreferencesStore } from '../pipeline/memory-stores.ts';
import { createOptInStage } from '../policy/opt-in.ts';
import { preferencesRoutes } from '../preferences/routes.ts';
import { createIdentifyOptIns } from './identify.ts';
import { CONFIRMATION_RULE, optInTimes, REMINDER_RULE, statusAt } from './model.ts';
import { optInRoutes } from './routes.ts';
import { createOptInService, optInGate } from './service.ts';
import { createMemoryOptInStore } from './store.ts';

const SECRET = 'optin-test-secret-16+';
const T0 = Date.parse('2026-03-10T12:00:00Z');
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const times = optInTimes({ optInLinkTtl: '7d', optInReminderAfter: '2d', optInExpiresAfter: '5d' });

function world() {
  const clock = { now: T0 };
  const now = () => clock.now;
  const preferences = createMemoryPreferencesStore();
  const store = createMemoryOptInStore();
  const links = createTrackingLinks({
    publicBaseUrl: 'https://t.example.com',
    signingSecret: SECRET,
  });
  const published: SendCommand[] = [];
  const publisher = {
    async publish(topic: string, messages: OutgoingMessage[]) {
      expect(topic).toBe('lc.sends');
      for (const m of messages) published.push(sendCodec.decode(m.value as Buffer));
    },
  };
  const users = {
    profile: async (userId: string) => ({
      userId,
      traits: { email: `${userId}@example.com`, firstName: 'Ada' },
      stats: {},
      segments: [],
      rules: {},
    }),
  };
  const service = createOptInService({
    store,
    preferences,
    links,
    publisher,
    sendsTopic: 'lc.sends',
    times,
    users,
    now,
  });
  return { clock, now, preferences, store, links, published, service };
}

const ask = (userId = 'ada', at = T0) => ({
  userId,
  category: 'marketing',
  channel: 'email' as const,
  source: 'signup_form',
  via: 'admin_api',
  at,
});

const confirmToken = (send: SendCommand) =>
  tokenOf(((send.data as Record<string, unknown>).optIn as { confirmUrl: string }).confirmUrl);

describe('an opt-in request', () => {
  it('grants nothing, and publishes the confirmation email and its reminder once', async () => {
    const w = world();
    const first = await w.service.ask(ask());
    expect(first.kind).toBe('started');
    expect((await w.preferences.get('ada')).consents).toEqual({});
    expect(w.published.map((s) => [s.ruleId, s.category, s.template, s.channels])).toEqual([
      [CONFIRMATION_RULE, 'transactional', 'confirm_subscription', ['email']],
      [REMINDER_RULE, 'transactional', 'confirm_subscription', ['email']],
    ]);
    const [confirmation, reminder] = w.published;
    expect((confirmation!.data.user as Record<string, unknown>).email).toBe('ada@example.com');
    expect(confirmation!.data.optIn).toMatchObject({ reminder: false, notBefore: T0 });
    expect(reminder!.data.optIn).toMatchObject({ reminder: true, notBefore: T0 + 2 * DAY });
    expect(confirmation!.expiresAt).toBe(T0 + 5 * DAY);
    expect(confirmToken(confirmation!)).toBe(confirmToken(reminder!));

    // Asked again while pending (a double click, a retried call): the same request and the
    // same sendIds, which delivery sends once.
    w.clock.now += HOUR;
    const again = await w.service.ask(ask('ada', w.clock.now));
    expect(again).toMatchObject({
      kind: 'pending',
      request: { id: first.kind !== 'already_granted' && first.request.id },
    });
    expect(w.published.slice(2).map((s) => s.sendId)).toEqual(
      w.published.slice(0, 2).map((s) => s.sendId),
    );
  });

  it('leaves out the reminder when it would fall after the expiry', async () => {
    const w = world();
    const service = createOptInService({
      store: w.store,
      preferences: w.preferences,
      links: w.links,
      publisher: {
        publish: async (_t, m) =>
          void w.published.push(...m.map((x) => sendCodec.decode(x.value as Buffer))),
      },
      sendsTopic: 'lc.sends',
      times: optInTimes({ optInLinkTtl: '7d', optInReminderAfter: '3d', optInExpiresAfter: '3d' }),
      now: w.now,
    });
    const r = await service.ask(ask());
    expect(r.kind === 'started' && r.request.remindAt).toBe(null);
    expect(w.published.map((s) => s.ruleId)).toEqual([CONFIRMATION_RULE]);
  });

  it('is confirmed only by the POST, with time, IP and user agent, once; never undoes a later opt-out', async () => {
    const w = world();
    await w.service.ask(ask());
    const token = confirmToken(w.published[0]!);
    w.clock.now = T0 + DAY;
    expect(await w.service.read(token, w.now())).toMatchObject({ kind: 'pending' });
    expect((await w.preferences.get('ada')).consents).toEqual({});

    const done = await w.service.confirm(token, {
      at: w.now(),
      ip: '203.0.113.9',
      userAgent: 'Mail/1.0',
    });
    expect(done).toMatchObject({ kind: 'confirmed', granted: true });
    expect((await w.preferences.get('ada')).consents.marketing?.email).toEqual({
      granted: true,
      at: T0 + DAY,
      source: 'double_opt_in',
    });
    const [stored] = await w.store.list('ada');
    expect(stored!.confirmed).toEqual({ at: T0 + DAY, ip: '203.0.113.9', userAgent: 'Mail/1.0' });

    // The second POST changes nothing, not even the evidence.
    w.clock.now += HOUR;
    expect(
      await w.service.confirm(token, { at: w.now(), ip: '198.51.100.1', userAgent: 'Other' }),
    ).toMatchObject({ kind: 'confirmed' });
    expect((await w.store.list('ada'))[0]!.confirmed!.ip).toBe('203.0.113.9');

    // An opt-out since stays: the old link does not subscribe the person again.
    await w.preferences.apply(
      'ada',
      {
        records: [
          {
            category: 'marketing',
            channel: 'email',
            record: { granted: false, at: w.now(), source: 'one_click_unsubscribe' },
          },
        ],
      },
      { source: 'one_click_unsubscribe', at: w.now() },
    );
    w.clock.now += HOUR;
    expect(
      await w.service.confirm(token, { at: w.now(), ip: '203.0.113.9', userAgent: 'Mail/1.0' }),
    ).toMatchObject({ kind: 'confirmed', granted: false });
    expect((await w.preferences.get('ada')).consents.marketing?.email?.granted).toBe(false);
    // Once granted, a new ask sends nothing.
    await w.preferences.apply(
      'ada',
      {
        records: [
          {
            category: 'marketing',
            channel: 'email',
            record: { granted: true, at: w.now(), source: 'double_opt_in' },
          },
        ],
      },
      { source: 'double_opt_in', at: w.now() },
    );
    const before = w.published.length;
    expect(await w.service.ask(ask('ada', w.now()))).toEqual({ kind: 'already_granted' });
    expect(w.published.length).toBe(before);
  });

  it("expires unconfirmed; a forged or another purpose's token confirms nothing", async () => {
    const w = world();
    await w.service.ask(ask());
    const token = confirmToken(w.published[0]!);
    w.clock.now = T0 + 5 * DAY;
    expect(
      await w.service.confirm(token, { at: w.now(), ip: '203.0.113.9', userAgent: 'x' }),
    ).toEqual({ kind: 'expired' });
    expect((await w.preferences.get('ada')).consents).toEqual({});
    expect(statusAt((await w.store.list('ada'))[0]!, w.now())).toBe('expired');

    const [body, mac] = token.split('.') as [string, string];
    const forged = Buffer.from(
      JSON.stringify({ ...JSON.parse(Buffer.from(body, 'base64url').toString()), u: 'eve' }),
    ).toString('base64url');
    expect(
      await w.service.confirm(`${forged}.${mac}`, { at: T0, ip: 'x', userAgent: 'x' }),
    ).toEqual({ kind: 'invalid' });
    const preferencesToken = tokenOf(w.links.preferences('ada', T0));
    expect(await w.service.confirm(preferencesToken, { at: T0, ip: 'x', userAgent: 'x' })).toEqual({
      kind: 'invalid',
    });
    // After expiry a new ask is a new request with new emails.
    const next = await w.service.ask(ask('ada', w.now()));
    expect(next.kind).toBe('started');
  });

  it('ends unconfirmed when the person opts out meanwhile', async () => {
    const w = world();
    await w.service.ask(ask());
    await w.store.withdraw('ada', 'marketing', 'email', T0 + HOUR);
    expect(
      await w.service.confirm(confirmToken(w.published[0]!), {
        at: T0 + 2 * HOUR,
        ip: 'x',
        userAgent: 'x',
      }),
    ).toMatchObject({ kind: 'withdrawn' });
    expect((await w.preferences.get('ada')).consents).toEqual({});
  });
});

describe('the opt-in stage', () => {
  it('holds the reminder until it is due, and drops the emails of a request no longer pending', async () => {
    const w = world();
    await w.service.ask(ask());
    const [confirmation, reminder] = w.published as [SendCommand, SendCommand];
    const stage = createOptInStage({ optIns: w.store });
    const run = (send: SendCommand, now: number) => stage.run(testContext({ send, now }));

    expect(await run(confirmation, T0)).toEqual({ kind: 'continue' });
    expect(await run(reminder, T0)).toMatchObject({
      kind: 'defer',
      until: T0 + 2 * DAY,
      retry: false,
    });
    expect(await run(reminder, T0 + 2 * DAY)).toEqual({ kind: 'continue' });
    expect(await run(reminder, T0 + 5 * DAY)).toEqual({
      kind: 'suppressed',
      reason: 'opt_in_expired',
    });

    await w.service.confirm(confirmToken(confirmation), { at: T0 + DAY, ip: 'x', userAgent: 'x' });
    expect(await run(reminder, T0 + 2 * DAY)).toEqual({
      kind: 'suppressed',
      reason: 'opt_in_confirmed',
    });
    // Any other send passes untouched.
    expect(await run({ ...reminder, ruleId: 'welcome' }, T0)).toEqual({ kind: 'continue' });
  });

  it('drops the emails of an erased user', async () => {
    const w = world();
    await w.service.ask(ask());
    await w.store.erase('ada');
    const stage = createOptInStage({ optIns: w.store });
    expect(await stage.run(testContext({ send: w.published[0]!, now: T0 }))).toEqual({
      kind: 'suppressed',
      reason: 'opt_in_unknown',
    });
  });
});

describe('the marketing_opt_in trait of an identify', () => {
  const identify = (id: string, ts: number, wants: boolean): NormalisedEvent => ({
    id,
    userId: 'ada',
    type: 'identify',
    ts,
    receivedAt: ts,
    source: 'http:web:server',
    properties: {},
    traits: { email: 'ada@mail.example', marketing_opt_in: wants },
  });

  it('asks once, to the address of the event; a replay or a stale trait after expiry mails nobody again', async () => {
    const w = world();
    const onTrait = createIdentifyOptIns({
      doubleOptIn: true,
      service: w.service,
      store: w.store,
      preferences: w.preferences,
    });
    // Without an address (a client key cannot set one) nothing is asked yet.
    await onTrait({ ...identify('e0', T0, true), traits: { marketing_opt_in: true } });
    expect(w.published).toEqual([]);
    await onTrait(identify('e1', T0, true));
    expect(w.published.map((s) => s.ruleId)).toEqual([CONFIRMATION_RULE, REMINDER_RULE]);
    expect((w.published[0]!.data.user as Record<string, unknown>).email).toBe('ada@mail.example');
    expect((await w.preferences.get('ada')).consents).toEqual({});

    // The same event again (a replay): the same sends, delivered once by their sendIds.
    await onTrait(identify('e1', T0, true));
    expect(new Set(w.published.map((s) => s.sendId)).size).toBe(2);

    w.clock.now = T0 + 6 * DAY;
    await onTrait(identify('e2', w.now(), true));
    expect(new Set(w.published.map((s) => s.sendId)).size).toBe(2);
  });

  it('false withdraws a pending request and a granted consent; without double opt-in true grants', async () => {
    const w = world();
    const onTrait = createIdentifyOptIns({
      doubleOptIn: true,
      service: w.service,
      store: w.store,
      preferences: w.preferences,
    });
    await onTrait(identify('e1', T0, true));
    await onTrait(identify('e2', T0 + HOUR, false));
    expect(statusAt((await w.store.list('ada'))[0]!, T0 + HOUR)).toBe('withdrawn');

    const other = world();
    const off = createIdentifyOptIns({
      doubleOptIn: false,
      service: other.service,
      store: other.store,
      preferences: other.preferences,
    });
    await off(identify('e3', T0, true));
    expect((await other.preferences.get('ada')).consents.marketing?.email).toMatchObject({
      granted: true,
      source: 'identify',
    });
    await off(identify('e4', T0 + HOUR, false));
    expect((await other.preferences.get('ada')).consents.marketing?.email).toMatchObject({
      granted: false,
      source: 'identify',
    });
    expect(other.published).toEqual([]);
  });
});

async function server(w: ReturnType<typeof world>) {
  const app = Fastify();
  const audited: AuditRecord[] = [];
  await setupHttpKit(app, {
    credentials: { staff: adminCredential('admin-token') },
    audit: { append: async (r) => String(audited.push(r)) },
  });
  const limiter = createLinkUseLimiter({ perMinute: 30 });
  await app.register(async (scope) => {
    await formbody(scope);
    await preferencesRoutes(scope, {
      store: w.preferences,
      links: w.links,
      limiter,
      messageTypes: NO_MESSAGE_TYPES,
      now: w.now,
      optIn: optInGate(w.service, w.store),
    });
    await optInRoutes(scope, {
      service: w.service,
      links: w.links,
      store: w.store,
      preferences: w.preferences,
      limiter,
      now: w.now,
    });
  });
  return { app, audited };
}
const auth = { authorization: 'Bearer admin-token' };

describe('the confirmation page', () => {
  it('asks on GET without granting, grants on POST, and says so again on a second POST', async () => {
    const w = world();
    const { app } = await server(w);
    await w.service.ask(ask());
    const url = new URL((w.published[0]!.data.optIn as { confirmUrl: string }).confirmUrl);
    expect(url.origin).toBe('https://t.example.com');
    expect(url.pathname).toBe('/c');

    const page = await app.inject({ method: 'GET', url: `${url.pathname}${url.search}` });
    expect(page.statusCode).toBe(200);
    expect(page.headers['cache-control']).toBe('no-store');
    expect(page.body).toContain('<form method="post"');
    expect((await w.preferences.get('ada')).consents).toEqual({});

    const post = await app.inject({
      method: 'POST',
      url: `${url.pathname}${url.search}`,
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'user-agent': 'Firefox/130' },
      payload: 'confirm=1',
      remoteAddress: '203.0.113.7',
    });
    expect(post.statusCode).toBe(200);
    expect(post.body).toContain('You confirmed');
    expect((await w.preferences.get('ada')).consents.marketing?.email?.source).toBe(
      'double_opt_in',
    );
    expect((await w.store.list('ada'))[0]!.confirmed).toMatchObject({
      ip: '203.0.113.7',
      userAgent: 'Firefox/130',
    });

    const again = await app.inject({
      method: 'POST',
      url: `${url.pathname}${url.search}`,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'confirm=1',
    });
    expect(again.statusCode).toBe(200);
    expect(again.body).toContain('You confirmed');
  });

  it('refuses an expired link (410) and a forged one (400) with a page that echoes nothing', async () => {
    const w = world();
    const { app } = await server(w);
    await w.service.ask(ask());
    const url = new URL((w.published[0]!.data.optIn as { confirmUrl: string }).confirmUrl);
    const attack = '/c?t=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E';
    for (const method of ['GET', 'POST'] as const) {
      const res = await app.inject({
        method,
        url: attack,
        ...(method === 'POST'
          ? {
              headers: { 'content-type': 'application/x-www-form-urlencoded' },
              payload: 'confirm=1',
            }
          : {}),
      });
      expect(res.statusCode).toBe(400);
      expect(res.body).toContain('not valid');
      expect(res.body).not.toContain('<script>alert');
      expect(res.headers['content-security-policy']).toContain("script-src 'none'");
    }
    w.clock.now = T0 + 5 * DAY;
    const expired = await app.inject({
      method: 'POST',
      url: `${url.pathname}${url.search}`,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'confirm=1',
    });
    expect(expired.statusCode).toBe(410);
    expect(expired.body).toContain('expired');
    expect((await w.preferences.get('ada')).consents).toEqual({});
  });
});

describe('the confirmation link, used too often', () => {
  it('answers 429 past LC_LINK_RATE_LIMIT uses a minute; made-up tokens are not counted', async () => {
    const w = world();
    const { app } = await server(w);
    await w.service.ask(ask());
    const url = new URL((w.published[0]!.data.optIn as { confirmUrl: string }).confirmUrl);
    for (let i = 0; i < 40; i++)
      expect((await app.inject({ method: 'GET', url: `/c?t=made-up-${i}` })).statusCode).toBe(400);
    for (let i = 0; i < 30; i++)
      expect(
        (await app.inject({ method: 'GET', url: `${url.pathname}${url.search}` })).statusCode,
      ).toBe(200);
    const over = await app.inject({
      method: 'POST',
      url: `${url.pathname}${url.search}`,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'confirm=1',
    });
    expect(over.statusCode).toBe(429);
    expect(over.headers['retry-after']).toBeDefined();
    expect((await w.preferences.get('ada')).consents).toEqual({});
  });
});

describe('opt-ins through the preference API and page', () => {
  it('a signup form opt-in waits for its confirmation; an opt-out is recorded at once', async () => {
    const w = world();
    const { app, audited } = await server(w);
    const res = await app.inject({
      method: 'PATCH',
      url: '/v1/users/ada/preferences',
      headers: auth,
      payload: {
        consents: {
          marketing: {
            email: { granted: true, source: 'signup_form' },
            inapp: { granted: true, source: 'signup_form' },
          },
        },
      },
    });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.consents.marketing.email).toBeUndefined();
    // In-app is not confirmed by email: recorded as given.
    expect(body.consents.marketing.inapp).toMatchObject({ granted: true, source: 'signup_form' });
    expect(body.pendingConfirmations).toEqual([
      expect.objectContaining({ category: 'marketing', channel: 'email', expiresAt: T0 + 5 * DAY }),
    ]);
    expect(audited.at(-1)).toMatchObject({
      action: 'preferences.update',
      after: { pendingConfirmations: [expect.any(Object)] },
    });
    expect((await w.store.list('ada'))[0]).toMatchObject({
      source: 'signup_form',
      via: 'admin_api',
      status: 'pending',
    });

    const out = await app.inject({
      method: 'PATCH',
      url: '/v1/users/ada/preferences',
      headers: auth,
      payload: { consents: { marketing: { email: false } } },
    });
    expect(out.json().consents.marketing.email).toMatchObject({ granted: false });
    expect(statusAt((await w.store.list('ada'))[0]!, w.now())).toBe('withdrawn');
  });

  it('ticking marketing email on the preference page sends a confirmation instead of subscribing', async () => {
    const w = world();
    const { app } = await server(w);
    const url = new URL(w.links.preferences('ada', T0));
    const res = await app.inject({
      method: 'POST',
      url: `${url.pathname}${url.search}`,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'shown=marketing%3Aemail&c%3Amarketing%3Aemail=on',
    });
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain('We sent you an email');
    expect((await w.preferences.get('ada')).consents).toEqual({});
    expect((await w.store.list('ada'))[0]).toMatchObject({
      source: 'preference_page',
      via: 'preference_page',
    });
  });
});

describe('the consent export', () => {
  it('lists every consent with how it was given, the evidence of a confirmation and the pending requests; support may read it, and it is audited', async () => {
    const w = world();
    const { app, audited } = await server(w);
    await w.service.ask(ask());
    const token = confirmToken(w.published[0]!);
    w.clock.now = T0 + HOUR;
    await w.service.confirm(token, { at: w.now(), ip: '203.0.113.7', userAgent: 'Firefox/130' });
    await w.preferences.apply(
      'ada',
      {
        records: [
          {
            category: 'marketing',
            channel: 'sms',
            record: { granted: false, at: w.now(), source: 'admin_api' },
          },
        ],
      },
      { source: 'admin_api', at: w.now() },
    );
    w.clock.now = T0 + 2 * HOUR;

    const unauthenticated = await app.inject({
      method: 'GET',
      url: '/v1/users/ada/consent-export',
    });
    expect(unauthenticated.statusCode).toBe(401);
    const res = await app.inject({
      method: 'GET',
      url: '/v1/users/ada/consent-export',
      headers: auth,
    });
    expect(res.statusCode).toBe(200);
    const out = res.json();
    expect(out.current.marketing.email).toMatchObject({ granted: true, source: 'double_opt_in' });
    expect(out.records).toEqual([
      expect.objectContaining({
        kind: 'consent',
        category: 'marketing',
        channel: 'email',
        granted: true,
        at: T0 + HOUR,
        source: 'double_opt_in',
        confirmation: expect.objectContaining({
          requestSource: 'signup_form',
          requestedAt: T0,
          ip: '203.0.113.7',
          userAgent: 'Firefox/130',
          sendIds: { confirmation: w.published[0]!.sendId, reminder: w.published[1]!.sendId },
        }),
      }),
      expect.objectContaining({
        kind: 'consent',
        channel: 'sms',
        granted: false,
        source: 'admin_api',
      }),
    ]);
    expect(out.requests).toEqual([
      expect.objectContaining({ status: 'confirmed', source: 'signup_form' }),
    ]);
    expect(audited.at(-1)).toMatchObject({
      action: 'consent.export',
      target: 'user:ada',
      after: { records: 2, requests: 1 },
    });
    expect(JSON.stringify(audited.at(-1))).not.toContain('203.0.113.7');
  });
});
