// The preference routes in-process (app.inject) over a small in-test preferences store:
// authentication, validation errors and signed preference links. The tracking endpoints and
// the bounce webhook are tested in ../tracking/routes.test.ts.
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import type { Channel } from '../../platform/contracts.ts';
import { adminCredential, setupHttpKit, type AuditRecord } from '../../platform/http.ts';
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
});
