// The preference routes in-process (app.inject) over a small in-test preferences store:
// authentication, validation errors and signed preference links. The tracking endpoints and
// the bounce webhook are tested in ../tracking/routes.test.ts.
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import type { Channel } from '../../platform/contracts.ts';
import { adminCredential, setupHttpKit, type AuditRecord } from '../../platform/http.ts';
import {
  loadMessageTypes,
  messageTypesOf,
  type MessageTypes,
} from '../../platform/message-types.ts';
import formbody from '../formbody.ts';
import { createLinkUseLimiter } from '../link-limits.ts';
import { createTrackingLinks, tokenOf } from '../links.ts';
import {
  emptyPreferences,
  type ChangeMeta,
  type Suppression,
  type SuppressionState,
  type UserPreferences,
} from './model.ts';
import { preferencesRoutes } from './routes.ts';
import type { PreferencesStore } from './store.ts';

const SECRET = 'route-test-secret-16+';
const NOW = Date.parse('2026-03-10T12:00:00Z');

function memoryStore(): PreferencesStore & {
  prefs: Map<string, UserPreferences>;
  supp: Map<string, SuppressionState>;
  /** How each change came, as the routes described it. */
  metas: ChangeMeta[];
} {
  const prefs = new Map<string, UserPreferences>();
  const supp = new Map<string, SuppressionState>();
  const metas: ChangeMeta[] = [];
  const get = async (u: string) => structuredClone(prefs.get(u) ?? emptyPreferences(u));
  return {
    prefs,
    supp,
    metas,
    get,
    async apply(u, change, meta) {
      metas.push(meta);
      const p = prefs.get(u) ?? emptyPreferences(u);
      if (change.unsubscribedAll === true) p.unsubscribedAll = { at: meta.at, source: meta.source };
      if (change.unsubscribedAll === false) p.unsubscribedAll = null;
      for (const r of change.records) (p.consents[r.category] ??= {})[r.channel] = r.record;
      for (const r of change.types ?? []) (p.types[r.messageType] ??= {})[r.channel] = r.record;
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

const TYPES = loadMessageTypes('rules/message-types.json');

async function app(messageTypes: MessageTypes = TYPES) {
  const store = memoryStore();
  const links = createTrackingLinks({
    publicBaseUrl: 'https://t.example.com',
    signingSecret: SECRET,
  });
  const server = Fastify();
  const audited: AuditRecord[] = [];
  await setupHttpKit(server, {
    credentials: { staff: adminCredential('admin-token') },
    audit: { append: async (r) => String(audited.push(r)) },
  });
  await server.register(async (scope) => {
    await formbody(scope);
    await preferencesRoutes(scope, {
      store,
      links,
      limiter: createLinkUseLimiter({ perMinute: 30 }),
      messageTypes,
      now: () => NOW,
    });
  });
  return { server, store, links, audited };
}
const auth = { authorization: 'Bearer admin-token' };

describe('preferences API', () => {
  it('needs the admin token', async () => {
    const { server } = await app();
    for (const headers of [
      {},
      { authorization: 'Bearer wrong' },
      { authorization: 'Basic admin-token' },
    ]) {
      const res = await server.inject({ method: 'GET', url: '/v1/users/u1/preferences', headers });
      expect(res.statusCode).toBe(401);
      expect(res.json()).toMatchObject({ code: 'LC_ERR_UNAUTHORIZED' });
    }
  });

  it('records a marketing opt-in with its source and refuses one without', async () => {
    const { server, audited, store } = await app();
    const bad = await server.inject({
      method: 'PATCH',
      url: '/v1/users/u1/preferences',
      headers: auth,
      payload: { consents: { marketing: { email: true } } },
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().message).toMatch(/source is required for a marketing opt-in/);
    const schema = await server.inject({
      method: 'PATCH',
      url: '/v1/users/u1/preferences',
      headers: auth,
      payload: { colour: 'blue' },
    });
    expect(schema.statusCode).toBe(400);
    const ok = await server.inject({
      method: 'PATCH',
      url: '/v1/users/u1/preferences',
      headers: auth,
      payload: { consents: { marketing: { email: { granted: true, source: 'checkout' } } } },
    });
    expect(ok.statusCode).toBe(200);
    expect(ok.json().consents.marketing.email).toEqual({
      granted: true,
      at: NOW,
      source: 'checkout',
    });
    const got = await server.inject({
      method: 'GET',
      url: '/v1/users/u1/preferences',
      headers: auth,
    });
    expect(got.json()).toMatchObject({
      userId: 'u1',
      consents: { marketing: { email: { granted: true } } },
      suppressions: { deleted: null },
    });
    // The one change made (the refused ones changed nothing) is in the audit log, with who
    // made it and the preferences before and after.
    expect(audited).toHaveLength(1);
    expect(audited[0]).toMatchObject({
      actor: 'admin-token',
      role: 'admin',
      action: 'preferences.update',
      target: 'user:u1',
      after: { consents: { marketing: { email: { granted: true, source: 'checkout' } } } },
    });
    expect(
      (audited[0]!.before as { consents?: { marketing?: { email?: unknown } } }).consents?.marketing
        ?.email,
    ).toBeUndefined();
    // The user's own preference history says the same: through the staff API, by whom.
    expect(store.metas).toEqual([
      { source: 'admin_api', at: NOW, by: { actor: 'admin-token', role: 'admin' } },
    ]);
  });

  it('hands out a signed preference link that opens the page; a forged one does not', async () => {
    const { server } = await app();
    const { url } = (
      await server.inject({ method: 'POST', url: '/v1/users/u1/preferences/link', headers: auth })
    ).json() as { url: string };
    const page = await server.inject({
      method: 'GET',
      url: url.replace('https://t.example.com', ''),
    });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('Your message preferences');
    const forged = await server.inject({
      method: 'GET',
      url: `/p?t=${tokenOf(url).slice(0, -3)}abc`,
    });
    expect(forged.statusCode).toBe(400);
  });

  it('lifts a suppression, and audits it', async () => {
    const { server, store, audited } = await app();
    await store.suppress('u1', 'email', { reason: 'hard_bounce', at: 1 });
    expect(
      (
        await server.inject({
          method: 'DELETE',
          url: '/v1/users/u1/suppressions/email',
          headers: auth,
        })
      ).statusCode,
    ).toBe(204);
    expect(
      (
        await server.inject({
          method: 'DELETE',
          url: '/v1/users/u1/suppressions/email',
          headers: auth,
        })
      ).statusCode,
    ).toBe(404);
    expect(
      (
        await server.inject({
          method: 'DELETE',
          url: '/v1/users/u1/suppressions/fax',
          headers: auth,
        })
      ).statusCode,
    ).toBe(400);
    // Only the suppression that was lifted is a change.
    expect(audited.map((r) => [r.action, r.target, r.after])).toEqual([
      ['suppression.remove', 'user:u1', { channel: 'email', suppressed: false }],
    ]);
  });

  it('shows and changes message types per channel, audited; refuses types users cannot switch', async () => {
    const { server, store, audited } = await app();
    const patch = (payload: Record<string, unknown>) =>
      server.inject({ method: 'PATCH', url: '/v1/users/u1/preferences', headers: auth, payload });

    const noSource = await patch({ types: { tips: { email: true } } });
    expect(noSource.statusCode).toBe(400);
    expect(noSource.json()).toMatchObject({ code: 'LC_ERR_BAD_REQUEST' });
    expect(noSource.json().message).toContain('types.tips.email.source is required');
    for (const [payload, message] of [
      [{ types: { tipps: { email: false } } }, 'unknown message type "tipps"'],
      [{ types: { billing: { email: false } } }, 'cannot be switched: users always get it'],
      [{ types: { digest: { sms: true } } }, '"digest" is not sent on sms'],
    ] as const) {
      const res = await patch(payload);
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ code: 'LC_ERR_UNKNOWN_MESSAGE_TYPE' });
      expect(res.json().message).toContain(message);
    }
    expect(audited).toHaveLength(0);

    // A signup that ticked "send me tips", then switched tips off but kept product news.
    const ok = await patch({
      types: { tips: { email: { granted: true, source: 'signup_form' } } },
    });
    expect(ok.statusCode).toBe(200);
    expect(ok.json().types.tips.email).toEqual({ granted: true, at: NOW, source: 'signup_form' });
    expect((await patch({ types: { tips: { email: false } } })).statusCode).toBe(200);
    expect(store.prefs.get('u1')!.types.tips!.email).toEqual({
      granted: false,
      at: NOW,
      source: 'admin_api',
    });
    expect(audited.map((a) => [a.action, a.target])).toEqual([
      ['preferences.update', 'user:u1'],
      ['preferences.update', 'user:u1'],
    ]);
    expect(audited[1]).toMatchObject({
      before: { types: { tips: { email: { granted: true } } } },
      after: { types: { tips: { email: { granted: false } } } },
    });

    const got = (
      await server.inject({ method: 'GET', url: '/v1/users/u1/preferences', headers: auth })
    ).json() as { messageTypes: { id: string; channels: Record<string, boolean> }[] };
    const view = Object.fromEntries(got.messageTypes.map((t) => [t.id, t.channels]));
    expect(view.tips).toEqual({ email: false, inapp: false, push: false });
    expect(view.product_news).toEqual({ email: true, inapp: true, push: false });
    expect(view.billing).toEqual({ email: true, inapp: true, sms: true, push: true });
  });
});

describe('preference page: message types', () => {
  const pageUrl = (links: ReturnType<typeof createTrackingLinks>, userId = 'u1') =>
    links.preferences(userId, NOW).replace('https://t.example.com', '');

  it('lists the types a user may switch per channel, with their labels, and saves the changes only', async () => {
    const { server, store, links } = await app();
    const url = pageUrl(links);
    const page = await server.inject({ method: 'GET', url });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('Tips and tutorials');
    expect(page.body).toContain('Short how-tos to get more out of the product.');
    expect(page.body).toContain(
      'name="t:product_news:email" aria-label="Product news by Email" checked',
    );
    expect(page.body).toContain('name="t:tips:email" aria-label="Tips and tutorials by Email">');
    // Users cannot switch off billing or security: the page does not offer them.
    expect(page.body).not.toContain('t:billing:');
    expect(page.body).not.toContain('Security');
    // digest goes by email only: no box for the other channels.
    expect(page.body).not.toContain('t:digest:sms');
    const shownTypes = /name="shownTypes" value="([^"]+)"/.exec(page.body)![1]!;
    expect(shownTypes.split(',')).toContain('tips:inapp');

    // Tick tips by email, untick product news by email; everything else left as shown. A
    // forged cell for billing is ignored.
    const form = new URLSearchParams({
      shown: 'marketing:email',
      shownTypes: `${shownTypes},billing:email`,
      't:tips:email': 'on',
      't:product_news:inapp': 'on',
      't:digest:email': 'on',
      't:offers:email': 'on',
    });
    const saved = await server.inject({
      method: 'POST',
      url,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: form.toString(),
    });
    expect(saved.statusCode).toBe(200);
    expect(saved.body).toContain('Your preferences were saved.');
    expect(saved.body).toContain(
      'name="t:tips:email" aria-label="Tips and tutorials by Email" checked',
    );
    expect(store.prefs.get('u1')!.types).toEqual({
      tips: { email: { granted: true, at: NOW, source: 'preference_page' } },
      product_news: { email: { granted: false, at: NOW, source: 'preference_page' } },
    });
    expect(store.metas.at(-1)).toEqual({ source: 'preference_page', at: NOW });
  });

  it('escapes the labels and descriptions of the declared types', async () => {
    const hostile = messageTypesOf([
      {
        id: 'news',
        label: '<script>alert(1)</script>',
        description: '"><img src=x onerror=alert(2)>',
        category: 'marketing',
        optIn: false,
        switchable: true,
        channels: { email: true },
      },
    ]);
    const { server, links } = await app(hostile);
    const page = await server.inject({ method: 'GET', url: pageUrl(links) });
    expect(page.body).not.toContain('<script>alert');
    expect(page.body).not.toContain('<img src=x');
    expect(page.body).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(page.body).toContain('&quot;&gt;&lt;img src=x onerror=alert(2)&gt;');
  });
});
