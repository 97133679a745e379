// The delivery HTTP routes in-process (app.inject) over a small in-test preferences store and
// the in-memory bus: authentication, validation errors, signed links and the bounce webhook.
import { createHmac } from 'node:crypto';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { deliveryCodec, eventCodec } from '../../platform/avro.ts';
import { InMemoryBus } from '../../platform/bus.ts';
import type { Channel } from '../../platform/contracts.ts';
import { silentLogger } from '../../platform/logger.ts';
import type { SentIndex, SentRecord } from '../pipeline/pipeline.ts';
import { createEngagementRecorder } from '../tracking/engagement.ts';
import formbody from '../tracking/formbody.ts';
import { trackingRoutes } from '../tracking/routes.ts';
import { createTrackingLinks, tokenOf, type MessageRef } from '../tracking/signing.ts';
import { emptyPreferences, type Suppression, type SuppressionState, type UserPreferences } from './model.ts';
import { preferencesRoutes } from './routes.ts';
import type { PreferencesStore } from './store.ts';

const SECRET = 'route-test-secret-16+';
const NOW = Date.parse('2026-03-10T12:00:00Z');

function memoryStore(): PreferencesStore & { prefs: Map<string, UserPreferences>; supp: Map<string, SuppressionState> } {
  const prefs = new Map<string, UserPreferences>();
  const supp = new Map<string, SuppressionState>();
  const get = async (u: string) => structuredClone(prefs.get(u) ?? emptyPreferences(u));
  return {
    prefs,
    supp,
    get,
    async apply(u, change, meta) {
      const p = prefs.get(u) ?? emptyPreferences(u);
      if (change.unsubscribedAll === true) p.unsubscribedAll = { at: meta.at, source: meta.source };
      if (change.unsubscribedAll === false) p.unsubscribedAll = null;
      for (const r of change.records) (p.consents[r.category] ??= {})[r.channel] = r.record;
      prefs.set(u, p);
      return get(u);
    },
    history: async () => [],
    suppressions: async (u) => supp.get(u) ?? { deleted: null, channels: {} },
    async suppress(u, c: Channel, s: Suppression) {
      const st = supp.get(u) ?? { deleted: null, channels: {} };
      st.channels[c] = s;
      supp.set(u, st);
    },
    async unsuppress(u, c) {
      const st = supp.get(u);
      if (!st?.channels[c]) return false;
      delete st.channels[c];
      return true;
    },
    markDeleted: async () => {},
  };
}

async function app() {
  const store = memoryStore();
  const bus = new InMemoryBus(1);
  const links = createTrackingLinks({ publicBaseUrl: 'https://t.example.com', signingSecret: SECRET });
  const sent: SentRecord = { sendId: 'snd-1', userId: 'u1', ruleId: 'r1', channel: 'email', variant: 'b', category: 'marketing', holdout: false, address: 'u1@example.com' };
  const sentIndex: SentIndex = { remember: async () => {}, lookup: async (id) => (id === 'snd-1' ? [sent] : []) };
  const server = Fastify();
  await server.register(async (scope) => {
    await formbody(scope);
    await preferencesRoutes(scope, { store, links, adminToken: 'admin-token', now: () => NOW });
    await trackingRoutes(scope, {
      links,
      store,
      recorder: createEngagementRecorder({ publisher: bus.publisher(), topics: { events: 't.events', deliveries: 't.deliveries' }, now: () => NOW }),
      sentIndex,
      webhookSigningSecret: SECRET,
      now: () => NOW,
      logger: silentLogger(),
    });
  });
  const events = () => bus.messages('t.events').map((m) => eventCodec.decode(m.value!));
  const outcomes = () => bus.messages('t.deliveries').map((m) => deliveryCodec.decode(m.value!));
  return { server, store, links, events, outcomes };
}

const ref: MessageRef = { sendId: 'snd-1', userId: 'u1', ruleId: 'r1', channel: 'email', variant: 'b', category: 'marketing' };
const auth = { authorization: 'Bearer admin-token' };

describe('preferences API', () => {
  it('needs the admin token', async () => {
    const { server } = await app();
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: 'Basic admin-token' }]) {
      const res = await server.inject({ method: 'GET', url: '/v1/users/u1/preferences', headers });
      expect(res.statusCode).toBe(401);
      expect(res.json()).toMatchObject({ code: 'LC_ERR_UNAUTHORIZED' });
    }
  });

  it('records a marketing opt-in with its source and refuses one without', async () => {
    const { server } = await app();
    const bad = await server.inject({ method: 'PATCH', url: '/v1/users/u1/preferences', headers: auth, payload: { consents: { marketing: { email: true } } } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().message).toMatch(/source is required for a marketing opt-in/);
    const schema = await server.inject({ method: 'PATCH', url: '/v1/users/u1/preferences', headers: auth, payload: { colour: 'blue' } });
    expect(schema.statusCode).toBe(400);
    const ok = await server.inject({ method: 'PATCH', url: '/v1/users/u1/preferences', headers: auth, payload: { consents: { marketing: { email: { granted: true, source: 'checkout' } } } } });
    expect(ok.statusCode).toBe(200);
    expect(ok.json().consents.marketing.email).toEqual({ granted: true, at: NOW, source: 'checkout' });
    const got = await server.inject({ method: 'GET', url: '/v1/users/u1/preferences', headers: auth });
    expect(got.json()).toMatchObject({ userId: 'u1', consents: { marketing: { email: { granted: true } } }, suppressions: { deleted: null } });
  });

  it('hands out a signed preference link that opens the page; a forged one does not', async () => {
    const { server } = await app();
    const { url } = (await server.inject({ method: 'POST', url: '/v1/users/u1/preferences/link', headers: auth })).json() as { url: string };
    const page = await server.inject({ method: 'GET', url: url.replace('https://t.example.com', '') });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('Your message preferences');
    const forged = await server.inject({ method: 'GET', url: `/p?t=${tokenOf(url).slice(0, -3)}abc` });
    expect(forged.statusCode).toBe(400);
  });

  it('lifts a suppression', async () => {
    const { server, store } = await app();
    await store.suppress('u1', 'email', { reason: 'hard_bounce', at: 1 });
    expect((await server.inject({ method: 'DELETE', url: '/v1/users/u1/suppressions/email', headers: auth })).statusCode).toBe(204);
    expect((await server.inject({ method: 'DELETE', url: '/v1/users/u1/suppressions/email', headers: auth })).statusCode).toBe(404);
    expect((await server.inject({ method: 'DELETE', url: '/v1/users/u1/suppressions/fax', headers: auth })).statusCode).toBe(400);
  });
});

describe('tracking endpoints', () => {
  it('redirects a signed click and records it; refuses a tampered one without redirecting', async () => {
    const { server, links, events, outcomes } = await app();
    const token = tokenOf(links.click(ref, 'https://shop.example.com/x?y=1'));
    const res = await server.inject({ method: 'GET', url: `/t/c?t=${token}` });
    expect(res.statusCode).toBe(302);
    expect(res.headers.location).toBe('https://shop.example.com/x?y=1');
    expect(events()).toMatchObject([{ type: 'message_clicked', userId: 'u1', properties: { url: 'https://shop.example.com/x?y=1', variant: 'b' } }]);
    expect(outcomes()).toMatchObject([{ status: 'clicked', sendId: 'snd-1', variant: 'b' }]);
    for (const t of [`${token}x`, token.replace(/^./, 'A'), '', 'a.b']) {
      const bad = await server.inject({ method: 'GET', url: `/t/c?t=${encodeURIComponent(t)}` });
      expect(bad.statusCode).toBe(400);
      expect(bad.headers.location).toBeUndefined();
    }
    expect(events()).toHaveLength(1);
  });

  it('serves the open pixel and counts only signed opens', async () => {
    const { server, links, events } = await app();
    const ok = await server.inject({ method: 'GET', url: `/t/o.gif?t=${tokenOf(links.openPixel(ref))}` });
    expect(ok.statusCode).toBe(200);
    expect(ok.headers['content-type']).toBe('image/gif');
    expect((await server.inject({ method: 'GET', url: '/t/o.gif?t=forged' })).statusCode).toBe(400);
    expect(events().map((e) => e.type)).toEqual(['message_opened']);
  });

  it('one-click unsubscribe (RFC 8058) opts out of the category on the channel; GET only asks', async () => {
    const { server, links, store, events } = await app();
    const url = `/t/u?t=${tokenOf(links.unsubscribe(ref))}`;
    const ask = await server.inject({ method: 'GET', url });
    expect(ask.statusCode).toBe(200);
    expect(ask.body).toContain('Unsubscribe?');
    expect(store.prefs.get('u1')).toBeUndefined();
    const res = await server.inject({ method: 'POST', url, headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'List-Unsubscribe=One-Click' });
    expect(res.statusCode).toBe(200);
    expect(store.prefs.get('u1')!.consents.marketing!.email).toEqual({ granted: false, at: NOW, source: 'one_click_unsubscribe' });
    expect(events()).toMatchObject([{ id: 'tracker:unsubscribed:snd-1:email', type: 'message_unsubscribed' }]);
    expect((await server.inject({ method: 'POST', url: '/t/u?t=forged' })).statusCode).toBe(400);
  });

  it('the bounce webhook needs a valid signature; a hard bounce suppresses the address, a soft one does not', async () => {
    const { server, store, events } = await app();
    const post = (body: object, sign = true) => {
      const raw = JSON.stringify(body);
      const sig = createHmac('sha256', SECRET).update(raw).digest('hex');
      return server.inject({ method: 'POST', url: '/v1/webhooks/email', headers: { 'content-type': 'application/json', ...(sign ? { 'x-lc-signature': `sha256=${sig}` } : { 'x-lc-signature': `sha256=${'0'.repeat(64)}` }) }, payload: raw });
    };
    expect((await post({ type: 'bounce', messageId: '<snd-1@example.com>' }, false)).statusCode).toBe(401);
    expect((await post({ type: 'nonsense', messageId: 'x' })).statusCode).toBe(400);
    expect((await post({ type: 'bounce', bounceType: 'soft', messageId: '<snd-1@example.com>' })).json()).toEqual({ applied: 1, unknown: [] });
    expect(store.supp.get('u1')).toBeUndefined();
    const res = await post({ events: [{ type: 'bounce', bounceType: 'hard', messageId: '<snd-1@example.com>', reason: '5.1.1' }, { type: 'complaint', messageId: '<other@example.com>' }] });
    expect(res.json()).toEqual({ applied: 1, unknown: ['<other@example.com>'] });
    expect(store.supp.get('u1')!.channels.email).toEqual({ reason: 'hard_bounce', at: NOW, address: 'u1@example.com' });
    expect(events().map((e) => [e.type, e.properties.reason])).toEqual([
      ['message_bounced', 'soft'],
      ['message_bounced', 'hard: 5.1.1'],
    ]);
  });
});
