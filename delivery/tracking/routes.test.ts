// The public tracking endpoints and the mail provider's webhook in-process (app.inject), wired
// by deliveryRoutes from a loaded config over the in-memory stores and bus.
import { createHmac } from 'node:crypto';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { deliveryCodec, eventCodec } from '../../platform/avro.ts';
import { InMemoryBus } from '../../platform/bus.ts';
import { loadConfig } from '../../platform/config.ts';
import type { SendCommand } from '../../platform/contracts.ts';
import { adminCredential, setupHttpKit } from '../../platform/http.ts';
import { silentLogger } from '../../platform/logger.ts';
import { deliveryRoutes } from '../index.ts';
import { createMemoryDeliveryStores } from '../pipeline/memory-stores.ts';
import { signWebhook } from '../providers/webhook.ts';
import { linkTarget } from './engagement.ts';
import { createSigner, createTrackingLinks, tokenOf, type MessageRef } from '../links.ts';
import { createShortener } from './short-links.ts';

const SIGNING_SECRET = 'route-test-signing-secret';
const EVENTS_SECRET = 'route-test-email-events-secret';
const NOW = Date.parse('2026-03-10T12:00:00Z');
const NOW_S = NOW / 1000;

async function app(auth: Record<string, unknown> = { 'auth.emailEventsSecret': EVENTS_SECRET }) {
  const config = loadConfig(
    {},
    {
      'auth.signingSecret': SIGNING_SECRET,
      'http.publicBaseUrl': 'https://t.example.com',
      'kafka.topicPrefix': 't',
      ...auth,
    },
  );
  const stores = createMemoryDeliveryStores();
  const send = {
    sendId: 'snd-1',
    userId: 'u1',
    ruleId: 'r1',
    variant: 'b',
    category: 'marketing',
    holdout: false,
  } as SendCommand;
  await stores.sentIndex.remember(send, 'email', 'u1@example.com');
  const bus = new InMemoryBus(1);
  const server = Fastify();
  await setupHttpKit(server, { credentials: { staff: adminCredential(config.auth.adminToken) } });
  // Moved forward by tests of expired links.
  const clock = { now: NOW };
  await server.register(deliveryRoutes, {
    config,
    stores,
    publisher: bus.publisher(),
    logger: silentLogger(),
    now: () => clock.now,
  });
  const links = createTrackingLinks({
    publicBaseUrl: 'https://t.example.com',
    signingSecret: SIGNING_SECRET,
  });
  const events = () => bus.messages('t.events').map((m) => eventCodec.decode(m.value!));
  const outcomes = () => bus.messages('t.deliveries').map((m) => deliveryCodec.decode(m.value!));
  const published = () =>
    [...bus.messages('t.events'), ...bus.messages('t.deliveries')]
      .map((m) => Buffer.from(m.value!).toString('latin1'))
      .join('\n');
  return { server, store: stores.preferences, stores, links, events, outcomes, published, clock };
}

const ref: MessageRef = {
  sendId: 'snd-1',
  userId: 'u1',
  ruleId: 'r1',
  channel: 'email',
  variant: 'b',
  category: 'marketing',
};

describe('click, open and unsubscribe endpoints', () => {
  it('redirects a signed click to the full URL and records only its scheme, host and path', async () => {
    const { server, links, events, outcomes, published } = await app();
    const target =
      'https://ada:pa55word@shop.example.com:8443/reset/password?token=r3set-s3cret&u=7#frag-s3cret';
    const token = tokenOf(links.click(ref, target, NOW));
    const res = await server.inject({ method: 'GET', url: `/t/c?t=${token}` });
    expect(res.statusCode).toBe(302);
    expect(res.headers.location).toBe(target);
    expect(events()).toMatchObject([
      {
        type: 'message_clicked',
        userId: 'u1',
        properties: { url: 'https://shop.example.com:8443/reset/password', variant: 'b' },
      },
    ]);
    expect(outcomes()).toMatchObject([
      {
        status: 'clicked',
        sendId: 'snd-1',
        variant: 'b',
        reason: 'https://shop.example.com:8443/reset/password',
      },
    ]);
    for (const secret of ['r3set-s3cret', 'frag-s3cret', 'pa55word', 'ada:', 'token='])
      expect(published()).not.toContain(secret);
  });

  it('refuses a tampered click without redirecting or recording it', async () => {
    const { server, links, events } = await app();
    const token = tokenOf(links.click(ref, 'https://shop.example.com/x?y=1', NOW));
    for (const t of [`${token}x`, token.replace(/^./, 'A'), '', 'a.b']) {
      const bad = await server.inject({ method: 'GET', url: `/t/c?t=${encodeURIComponent(t)}` });
      expect(bad.statusCode).toBe(400);
      expect(bad.headers.location).toBeUndefined();
    }
    expect(events()).toHaveLength(0);
  });

  it('serves the open pixel and counts only signed opens', async () => {
    const { server, links, events } = await app();
    const ok = await server.inject({
      method: 'GET',
      url: `/t/o.gif?t=${tokenOf(links.openPixel(ref, NOW))}`,
    });
    expect(ok.statusCode).toBe(200);
    expect(ok.headers['content-type']).toBe('image/gif');
    expect((await server.inject({ method: 'GET', url: '/t/o.gif?t=forged' })).statusCode).toBe(400);
    expect(events().map((e) => e.type)).toEqual(['message_opened']);
  });

  it('one-click unsubscribe (RFC 8058) opts out of the category on the channel; GET only asks', async () => {
    const { server, links, store, events } = await app();
    const url = `/t/u?t=${tokenOf(links.unsubscribe(ref, NOW))}`;
    const ask = await server.inject({ method: 'GET', url });
    expect(ask.statusCode).toBe(200);
    expect(ask.body).toContain('Unsubscribe?');
    expect((await store.get('u1')).consents.marketing).toBeUndefined();
    const res = await server.inject({
      method: 'POST',
      url,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'List-Unsubscribe=One-Click',
    });
    expect(res.statusCode).toBe(200);
    expect((await store.get('u1')).consents.marketing!.email).toEqual({
      granted: false,
      at: NOW,
      source: 'one_click_unsubscribe',
    });
    expect(events()).toMatchObject([
      { id: 'tracker:unsubscribed:snd-1:email', type: 'message_unsubscribed' },
    ]);
    expect((await server.inject({ method: 'POST', url: '/t/u?t=forged' })).statusCode).toBe(400);
  });
});

describe('expired links', () => {
  const DAY = 24 * 3600 * 1000;
  const form = { 'content-type': 'application/x-www-form-urlencoded' };

  it('an expired click shows its destination as text, never redirects and records nothing', async () => {
    const { server, links, events, clock } = await app();
    const target = 'https://shop.example.com/x?a=1&b=<2>';
    const token = tokenOf(links.click(ref, target, NOW));
    clock.now = NOW + 91 * DAY;
    const res = await server.inject({ method: 'GET', url: `/t/c?t=${token}` });
    expect(res.statusCode).toBe(410);
    expect(res.headers.location).toBeUndefined();
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.body).toContain('This link has expired');
    expect(res.body).toContain('https://shop.example.com/x?a=1&amp;b=&lt;2&gt;');
    expect(res.body).not.toMatch(/href="https:\/\/shop/);
    expect(events()).toHaveLength(0);
  });

  it('a click link from before expiries existed counts as expired', async () => {
    const { server, events } = await app();
    const legacy = createSigner(SIGNING_SECRET).sign('click', {
      s: 'snd-1',
      u: 'u1',
      r: 'r1',
      c: 'email',
      v: 'b',
      k: 'marketing',
      l: 'https://evil.example/',
    });
    const res = await server.inject({ method: 'GET', url: `/t/c?t=${legacy}` });
    expect(res.statusCode).toBe(410);
    expect(res.headers.location).toBeUndefined();
    expect(events()).toHaveLength(0);
  });

  it('an expired open pixel is still an image, and is not counted', async () => {
    const { server, links, events, clock } = await app();
    const token = tokenOf(links.openPixel(ref, NOW));
    clock.now = NOW + 91 * DAY;
    const res = await server.inject({ method: 'GET', url: `/t/o.gif?t=${token}` });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('image/gif');
    expect(events()).toHaveLength(0);
  });

  it('an expired unsubscribe link unsubscribes nobody; its page points to the ways that still work', async () => {
    const { server, links, store, events, clock } = await app();
    const url = `/t/u?t=${tokenOf(links.unsubscribe(ref, NOW))}`;
    clock.now = NOW + 366 * DAY;
    const ask = await server.inject({ method: 'GET', url });
    expect(ask.statusCode).toBe(410);
    expect(ask.body).toContain('This link has expired');
    expect(ask.body).toContain('a recent message');
    expect(ask.body).not.toContain('<form');
    const oneClick = await server.inject({
      method: 'POST',
      url,
      headers: form,
      payload: 'List-Unsubscribe=One-Click',
    });
    expect(oneClick.statusCode).toBe(410);
    const confirmed = await server.inject({
      method: 'POST',
      url,
      headers: form,
      payload: 'confirm=1',
    });
    expect(confirmed.statusCode).toBe(410);
    expect(confirmed.body).toContain('This link has expired');
    expect((await store.get('u1')).consents.marketing).toBeUndefined();
    expect(events()).toHaveLength(0);
  });

  it('unsubscribe links from the API live LC_UNSUBSCRIBE_TTL_DAYS; the preference link on the confirmation page too', async () => {
    const { server, links, clock } = await app({
      'auth.emailEventsSecret': EVENTS_SECRET,
      'auth.unsubscribeTtlDays': 30,
    });
    const ask = await server.inject({
      method: 'GET',
      url: `/t/u?t=${tokenOf(links.unsubscribe(ref, NOW))}`,
    });
    const preferencesUrl = /href="([^"]+\/p\?t=[^"]+)"/.exec(ask.body)![1]!.replace(/&amp;/g, '&');
    clock.now = NOW + 29 * DAY;
    expect(
      (await server.inject({ method: 'GET', url: `/p?t=${tokenOf(preferencesUrl)}` })).statusCode,
    ).toBe(200);
    clock.now = NOW + 31 * DAY;
    const expired = await server.inject({ method: 'GET', url: `/p?t=${tokenOf(preferencesUrl)}` });
    expect(expired.statusCode).toBe(410);
    expect(expired.body).toContain('This link has expired');
  });
});

describe('uses of one link per minute (LC_LINK_RATE_LIMIT)', () => {
  const limited = { 'auth.emailEventsSecret': EVENTS_SECRET, 'http.linkRateLimit': 3 };
  const form = { 'content-type': 'application/x-www-form-urlencoded' };

  it('a click over the limit answers 429 with Retry-After and records nothing more; other links and the next minute are not affected', async () => {
    const { server, links, events, clock } = await app(limited);
    const url = `/t/c?t=${tokenOf(links.click(ref, 'https://shop.example.com/x', NOW))}`;
    const statuses = [];
    for (let i = 0; i < 5; i++)
      statuses.push((await server.inject({ method: 'GET', url })).statusCode);
    expect(statuses).toEqual([302, 302, 302, 429, 429]);
    const refused = await server.inject({ method: 'GET', url });
    expect(refused.headers['retry-after']).toBe('60');
    expect(refused.headers.location).toBeUndefined();
    expect(events()).toHaveLength(3);
    const other = `/t/c?t=${tokenOf(links.click(ref, 'https://shop.example.com/y', NOW))}`;
    expect((await server.inject({ method: 'GET', url: other })).statusCode).toBe(302);
    clock.now = NOW + 61_000;
    expect((await server.inject({ method: 'GET', url })).statusCode).toBe(302);
  });

  it('the open pixel over the limit is still served, but not counted', async () => {
    const { server, links, events } = await app(limited);
    const url = `/t/o.gif?t=${tokenOf(links.openPixel(ref, NOW))}`;
    for (let i = 0; i < 5; i++) {
      const res = await server.inject({ method: 'GET', url });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toBe('image/gif');
    }
    expect(events()).toHaveLength(3);
  });

  it('unsubscribe requests over the limit answer 429 and change nothing more', async () => {
    const { server, links, events } = await app(limited);
    const url = `/t/u?t=${tokenOf(links.unsubscribe(ref, NOW))}`;
    const statuses = [];
    for (let i = 0; i < 4; i++)
      statuses.push(
        (
          await server.inject({
            method: 'POST',
            url,
            headers: form,
            payload: 'List-Unsubscribe=One-Click',
          })
        ).statusCode,
      );
    expect(statuses).toEqual([200, 200, 200, 429]);
    expect((await server.inject({ method: 'GET', url })).statusCode).toBe(429);
    expect(events()).toHaveLength(3);
  });

  it('the preference page over the limit answers 429; a forged token is refused without being counted', async () => {
    const { server, links } = await app(limited);
    const url = `/p?t=${tokenOf(links.preferences('u1', NOW))}`;
    for (let i = 0; i < 5; i++)
      expect((await server.inject({ method: 'GET', url: '/p?t=forged.mac' })).statusCode).toBe(400);
    const statuses = [];
    for (let i = 0; i < 4; i++)
      statuses.push((await server.inject({ method: 'GET', url })).statusCode);
    expect(statuses).toEqual([200, 200, 200, 429]);
  });
});

describe('linkTarget', () => {
  it.each([
    ['https://example.com/reset?token=abc#x', 'https://example.com/reset'],
    ['https://user:pw@example.com/a/b/', 'https://example.com/a/b/'],
    ['http://EXAMPLE.com:8080', 'http://example.com:8080/'],
    ['https://example.com:443/x', 'https://example.com/x'],
    ['not a url', ''],
  ])('%s -> %s', (url, expected) => expect(linkTarget(url)).toBe(expected));
});

describe('the mail provider webhook', () => {
  const bounce = {
    events: [
      { type: 'bounce', bounceType: 'hard', messageId: '<snd-1@example.com>', reason: '5.1.1' },
    ],
  };
  const post = (
    server: Awaited<ReturnType<typeof app>>['server'],
    raw: string,
    signature?: string,
  ) =>
    server.inject({
      method: 'POST',
      url: '/v1/webhooks/email',
      headers: {
        'content-type': 'application/json',
        ...(signature === undefined ? {} : { 'x-lc-signature': signature }),
      },
      payload: raw,
    });

  it('accepts a fresh signature made with LC_EMAIL_EVENTS_SECRET; a hard bounce suppresses the address, a soft one does not', async () => {
    const { server, store, events } = await app();
    const send = (body: object) => {
      const raw = JSON.stringify(body);
      return post(server, raw, signWebhook(EVENTS_SECRET, raw, NOW_S - 10));
    };
    expect((await send({ type: 'nonsense', messageId: 'x' })).statusCode).toBe(400);
    expect(
      (await send({ type: 'bounce', bounceType: 'soft', messageId: '<snd-1@example.com>' })).json(),
    ).toEqual({ applied: 1, unknown: [] });
    expect((await store.suppressions('u1')).channels.email).toBeUndefined();
    const res = await send({
      events: [...bounce.events, { type: 'complaint', messageId: '<other@example.com>' }],
    });
    expect(res.json()).toEqual({ applied: 1, unknown: ['<other@example.com>'] });
    expect((await store.suppressions('u1')).channels.email).toEqual({
      reason: 'hard_bounce',
      at: NOW,
      address: 'u1@example.com',
    });
    expect(events().map((e) => [e.type, e.properties.reason])).toEqual([
      ['message_bounced', 'soft'],
      ['message_bounced', 'hard: 5.1.1'],
    ]);
  });

  it.each([
    ['no header', undefined],
    [
      'the old untimestamped form',
      `sha256=${createHmac('sha256', EVENTS_SECRET).update(JSON.stringify(bounce)).digest('hex')}`,
    ],
    ['the link signing secret', signWebhook(SIGNING_SECRET, JSON.stringify(bounce), NOW_S)],
    ['another body', signWebhook(EVENTS_SECRET, JSON.stringify({ events: [] }), NOW_S)],
    [
      'a replay older than 5 minutes',
      signWebhook(EVENTS_SECRET, JSON.stringify(bounce), NOW_S - 301),
    ],
    [
      'a timestamp more than 5 minutes ahead',
      signWebhook(EVENTS_SECRET, JSON.stringify(bounce), NOW_S + 301),
    ],
    [
      'a timestamp that is not whole seconds',
      `t=${NOW_S}.0,v1=${createHmac('sha256', EVENTS_SECRET)
        .update(`${NOW_S}.0.${JSON.stringify(bounce)}`)
        .digest('hex')}`,
    ],
    ['garbage', 't=x,v1=zz'],
  ])('refuses %s with 401 and applies nothing', async (_name, signature) => {
    const { server, store, events } = await app();
    const res = await post(server, JSON.stringify(bounce), signature);
    expect(res.statusCode).toBe(401);
    expect(res.json()).toMatchObject({
      code: 'LC_ERR_INVALID_SIGNATURE',
      message: expect.stringContaining('t=<unix seconds>,v1='),
    });
    expect((await store.suppressions('u1')).channels.email).toBeUndefined();
    expect(events()).toHaveLength(0);
  });

  it('takes its replay window from LC_EMAIL_EVENTS_TOLERANCE_MS', async () => {
    const { server } = await app({
      'auth.emailEventsSecret': EVENTS_SECRET,
      'auth.emailEventsToleranceMs': 60_000,
    });
    const raw = JSON.stringify(bounce);
    expect((await post(server, raw, signWebhook(EVENTS_SECRET, raw, NOW_S - 61))).statusCode).toBe(
      401,
    );
    expect((await post(server, raw, signWebhook(EVENTS_SECRET, raw, NOW_S - 59))).statusCode).toBe(
      200,
    );
  });

  it('is off (503) while LC_EMAIL_EVENTS_SECRET is not set, whatever the request is signed with', async () => {
    const { server, store } = await app({});
    const raw = JSON.stringify(bounce);
    for (const signature of [
      signWebhook(SIGNING_SECRET, raw, NOW_S),
      `sha256=${createHmac('sha256', SIGNING_SECRET).update(raw).digest('hex')}`,
      signWebhook('', raw, NOW_S),
    ]) {
      const res = await post(server, raw, signature);
      expect(res.statusCode).toBe(503);
      expect(res.json()).toMatchObject({
        code: 'LC_ERR_UNAVAILABLE',
        message: expect.stringContaining('set LC_EMAIL_EVENTS_SECRET'),
      });
    }
    expect((await store.suppressions('u1')).channels.email).toBeUndefined();
  });

  it('refuses to start when LC_EMAIL_EVENTS_SECRET is LC_SIGNING_SECRET', async () => {
    await expect(app({ 'auth.emailEventsSecret': SIGNING_SECRET })).rejects.toThrow(
      /LC_EMAIL_EVENTS_SECRET must differ from LC_SIGNING_SECRET/,
    );
  });
});

describe('short links of SMS and push', () => {
  it('redirects a stored code to its target, records the click like an email click, and refuses unknown, malformed and expired codes', async () => {
    const { server, stores, links, events, clock } = await app();
    const shortener = createShortener({
      store: stores.shortLinks,
      links,
      signingSecret: SIGNING_SECRET,
      publicBaseUrl: 'https://t.example.com',
      ttlS: 3600,
    });
    const target = 'https://app.example.com/billing?session=secret#card';
    const short = await shortener.shorten({ ...ref, channel: 'sms' }, target, NOW);
    expect(short).toMatch(/^https:\/\/t\.example\.com\/s\/[0-9A-Za-z]{10}$/);
    const path = new URL(short).pathname;

    const res = await server.inject({ method: 'GET', url: `${path}?url=https://evil.example` });
    expect(res.statusCode).toBe(302);
    expect(res.headers.location).toBe(target);
    const click = events().find((e) => e.type === 'message_clicked')!;
    expect(click.properties).toMatchObject({
      sendId: 'snd-1',
      channel: 'sms',
      url: 'https://app.example.com/billing',
    });

    for (const url of ['/s/AAAAAAAAAA', '/s/short', `/s/${encodeURIComponent('../t/c')}`]) {
      const r = await server.inject({ method: 'GET', url });
      expect(r.statusCode, url).toBe(404);
      expect(r.headers['content-type']).toMatch(/text\/html/);
      expect(r.body).toContain('does not exist or has expired');
    }

    clock.now = NOW + 3600_000;
    const expired = await server.inject({ method: 'GET', url: path });
    expect(expired.statusCode).toBe(404);
    expect(events().filter((e) => e.type === 'message_clicked')).toHaveLength(1);
  });
});
