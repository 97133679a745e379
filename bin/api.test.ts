// The API process as it is composed from its configuration, in-process over the in-memory
// stores (the demo's wiring): which secret each credential is checked with.
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { createMemoryDeliveryStores } from '../delivery/index.ts';
import {
  createMemoryInbox,
  createMemoryLiveChannel,
  signInappToken,
} from '../delivery/inapp/index.ts';
import { createTrackingLinks, type MessageRef } from '../delivery/links.ts';
import { InMemoryBus } from '../platform/bus.ts';
import { topics } from '../platform/contracts.ts';
import { API_CONTENT_SECURITY_POLICY, inlineElements } from '../platform/http.ts';
import { createHash } from 'node:crypto';
import { loadConfig, type Config } from '../platform/config.ts';
import { silentLogger } from '../platform/logger.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import { createApiServer } from './api.ts';
import { createUserDirectory, MemoryStores } from '../engine/index.ts';
import { emptyState, serializeState } from '../engine/core/state.ts';

const SIGNING_SECRET = 'api-test-signing-secret';
const INAPP_SECRET = 'api-test-inapp-secret-0';

const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((a) => a.close()));
});

async function api(
  overrides: Record<string, unknown> = {},
  engineStores = new MemoryStores(),
  bus = new InMemoryBus(1),
): Promise<{ app: FastifyInstance; config: Readonly<Config> }> {
  const config = loadConfig(
    {},
    { 'auth.signingSecret': SIGNING_SECRET, 'auth.inappSecret': INAPP_SECRET, ...overrides },
  );
  const app = await createApiServer(config, {
    memory: {
      stores: createMemoryDeliveryStores(),
      inbox: createMemoryInbox(),
      live: createMemoryLiveChannel(),
    },
    users: createUserDirectory(engineStores),
    publisher: bus.publisher(),
    logger: silentLogger(),
    metrics: createMetricsRegistry({ defaults: false }),
  });
  apps.push(app);
  return { app, config };
}

describe('in-app client tokens', () => {
  it('are checked with LC_INAPP_SECRET: a token signed with the link signing secret is refused', async () => {
    const { app } = await api();
    const inbox = (token: string) =>
      app.inject({ method: 'GET', url: `/v1/inapp/inbox?token=${encodeURIComponent(token)}` });
    const withLinkSecret = await inbox(signInappToken(SIGNING_SECRET, 'ada', { ttlMs: 60_000 }));
    expect(withLinkSecret.statusCode).toBe(401);
    expect(withLinkSecret.json()).toMatchObject({ code: 'LC_ERR_UNAUTHORIZED' });
    const withInappSecret = await inbox(signInappToken(INAPP_SECRET, 'ada', { ttlMs: 60_000 }));
    expect(withInappSecret.statusCode).toBe(200);
    expect(withInappSecret.json()).toMatchObject({ messages: [], unread: 0 });
  });
});

const BASELINE = {
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
};
const hashOf = (text: string) => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;

/** What a page's policy lets it run: the hashes of script-src and style-src, and the rest. */
function policyOf(csp: string): Record<string, string[]> {
  return Object.fromEntries(
    csp.split(';').map((d) => {
      const [name = '', ...values] = d.trim().split(/\s+/);
      return [name, values];
    }),
  );
}

/** A served HTML page is allowed exactly its own inline code, no inline style attribute, nothing from elsewhere. */
function expectPagePolicy(
  body: string,
  csp: string,
  expect_: { forms: boolean; connect: boolean },
) {
  const policy = policyOf(csp);
  const inline = inlineElements(body);
  expect(policy['default-src']).toEqual(["'none'"]);
  expect(policy['script-src']).toEqual(
    inline.scripts.length > 0 ? inline.scripts.map(hashOf) : ["'none'"],
  );
  expect(policy['style-src']).toEqual(inline.styles.map(hashOf));
  expect(policy['frame-ancestors']).toEqual(["'none'"]);
  expect(policy['form-action']).toEqual([expect_.forms ? "'self'" : "'none'"]);
  expect(policy['connect-src']).toEqual([expect_.connect ? "'self'" : "'none'"]);
  expect(csp).not.toMatch(/unsafe-|\*/);
  // Style attributes would be refused by the policy, and so would event handler attributes.
  expect(body).not.toMatch(/\sstyle=|\son[a-z]+=/i);
}

describe('security headers on the API server', () => {
  const REF: MessageRef = {
    sendId: 's-1',
    userId: 'ada',
    ruleId: 'welcome',
    channel: 'email',
    variant: null,
    category: 'marketing',
  };

  it('are on every answer: admin API, health, metrics, OpenAPI, in-app, tracking, the open pixel, a miss', async () => {
    const { app, config } = await api();
    const links = createTrackingLinks({
      publicBaseUrl: config.http.publicBaseUrl,
      signingSecret: SIGNING_SECRET,
    });
    const path = (url: string) => url.slice(config.http.publicBaseUrl.length);
    const now = Date.now();
    const answers = {
      admin: await app.inject({ method: 'GET', url: '/v1/users/ada/preferences' }),
      adminOk: await app.inject({
        method: 'GET',
        url: '/v1/users/ada/preferences',
        headers: { authorization: `Bearer ${config.auth.adminToken}` },
      }),
      dashboardsData: await app.inject({ method: 'GET', url: '/v1/dashboards' }),
      health: await app.inject({ method: 'GET', url: '/health' }),
      metrics: await app.inject({ method: 'GET', url: '/metrics' }),
      openapi: await app.inject({ method: 'GET', url: '/openapi.json' }),
      inbox: await app.inject({
        method: 'GET',
        url: `/v1/inapp/inbox?token=${encodeURIComponent(signInappToken(INAPP_SECRET, 'ada', { ttlMs: 60_000 }))}`,
      }),
      inboxRefused: await app.inject({ method: 'GET', url: '/v1/inapp/inbox?token=x' }),
      click: await app.inject({
        method: 'GET',
        url: path(links.click(REF, 'https://example.com/x', now)),
      }),
      pixel: await app.inject({ method: 'GET', url: path(links.openPixel(REF, now)) }),
      miss: await app.inject({ method: 'GET', url: '/nowhere' }),
      badUrl: await app.inject({ method: 'GET', url: '/t/%E0%A4%A' }),
    };
    expect(Object.fromEntries(Object.entries(answers).map(([k, r]) => [k, r.statusCode]))).toEqual({
      admin: 401,
      adminOk: 200,
      dashboardsData: 401,
      health: 200,
      metrics: 200,
      openapi: 200,
      inbox: 200,
      inboxRefused: 401,
      click: 302,
      pixel: 200,
      miss: 404,
      badUrl: 400,
    });
    for (const [name, res] of Object.entries(answers))
      expect(res.headers, name).toMatchObject({
        ...BASELINE,
        'content-security-policy': API_CONTENT_SECURITY_POLICY,
      });
  });

  it('pages run only their own inline code: the dashboards page, the preference page, the unsubscribe pages, an expired link', async () => {
    const { app, config } = await api({ 'auth.unsubscribeTtlDays': 30 });
    const links = createTrackingLinks({
      publicBaseUrl: config.http.publicBaseUrl,
      signingSecret: SIGNING_SECRET,
    });
    const path = (url: string) => url.slice(config.http.publicBaseUrl.length);
    const now = Date.now();
    const long = now - 400 * 24 * 3600 * 1000;
    const pages = {
      preferences: await app.inject({ method: 'GET', url: path(links.preferences('ada', now)) }),
      preferencesSaved: await app.inject({
        method: 'POST',
        url: path(links.preferences('ada', now)),
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: 'shown=marketing%3Aemail',
      }),
      unsubscribe: await app.inject({ method: 'GET', url: path(links.unsubscribe(REF, now)) }),
      unsubscribed: await app.inject({
        method: 'POST',
        url: path(links.unsubscribe(REF, now)),
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: 'confirm=1',
      }),
      invalid: await app.inject({ method: 'GET', url: '/p?t=forged' }),
      expiredClick: await app.inject({
        method: 'GET',
        url: path(links.click(REF, 'https://example.com/x', long)),
      }),
    };
    expect(Object.fromEntries(Object.entries(pages).map(([k, r]) => [k, r.statusCode]))).toEqual({
      preferences: 200,
      preferencesSaved: 200,
      unsubscribe: 200,
      unsubscribed: 200,
      invalid: 400,
      expiredClick: 410,
    });
    for (const [name, res] of Object.entries(pages)) {
      expect(res.headers, name).toMatchObject(BASELINE);
      expect(res.headers['content-type'], name).toMatch(/^text\/html/);
      expectPagePolicy(res.body, String(res.headers['content-security-policy']), {
        forms: true,
        connect: false,
      });
    }

    const dashboards = await app.inject({ method: 'GET', url: '/dashboards' });
    expect(dashboards.statusCode).toBe(200);
    expect(dashboards.headers).toMatchObject(BASELINE);
    expect(inlineElements(dashboards.body).scripts).toHaveLength(1);
    expectPagePolicy(dashboards.body, String(dashboards.headers['content-security-policy']), {
      forms: false,
      connect: true,
    });
  });
});

describe('client addresses behind proxies (LC_TRUST_PROXY)', () => {
  async function whoIs(trustProxy: string | undefined, remoteAddress: string) {
    const { app } = await api(trustProxy === undefined ? {} : { 'http.trustProxy': trustProxy });
    app.get('/test/who', { config: { auth: 'public' } }, async (req) => ({ ip: req.ip }));
    const res = await app.inject({
      method: 'GET',
      url: '/test/who',
      remoteAddress,
      headers: { 'x-forwarded-for': '203.0.113.9' },
    });
    return (res.json() as { ip: string }).ip;
  }

  it('a spoofed X-Forwarded-For does not change request.ip by default; it does from a trusted proxy', async () => {
    expect(await whoIs(undefined, '198.51.100.7')).toBe('198.51.100.7');
    expect(await whoIs('10.0.0.0/8', '198.51.100.7')).toBe('198.51.100.7');
    expect(await whoIs('10.0.0.0/8', '10.1.2.3')).toBe('203.0.113.9');
    expect(await whoIs('true', '198.51.100.7')).toBe('203.0.113.9');
  });
});

describe('user lookup', () => {
  it("shows support staff a user's traits, segments, stats and rule history from the engine's state; 404 names why", async () => {
    const engineStores = new MemoryStores();
    const epoch = await engineStores.acquire(0);
    const state = emptyState();
    state.traits = { email: 'ada@example.com', plan: 'trial' };
    state.stats['Feature Used'] = { count: 2, first: 1, last: 2 };
    state.segments = { trial: true };
    state.rules = { welcome: { fires: 1, lastFiredAt: 1 } };
    await engineStores.write(0, epoch, [
      { userId: 'ada', state: serializeState(state), offset: '1', timerIds: [] },
    ]);
    const { app, config } = await api({}, engineStores);
    const auth = { authorization: `Bearer ${config.auth.adminToken}` };
    const found = await app.inject({ url: '/v1/users/ada', headers: auth });
    expect(found.statusCode).toBe(200);
    expect(found.json()).toEqual({
      profile: {
        userId: 'ada',
        traits: { email: 'ada@example.com', plan: 'trial' },
        stats: { 'Feature Used': { count: 2, first: 1, last: 2 } },
        segments: ['trial'],
        rules: { welcome: { fires: 1, lastFiredAt: 1 } },
      },
    });
    const missing = await app.inject({ url: '/v1/users/nobody', headers: auth });
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({
      code: 'LC_ERR_NOT_FOUND',
      message: /never seen, or erased/,
    });
    expect((await app.inject({ url: '/v1/users/ada' })).statusCode).toBe(401);
  });
});

describe('the send API in the demo wiring', () => {
  it('sends to a user of the engine state with the in-memory Idempotency-Key store, and refuses the key for another body', async () => {
    const engineStores = new MemoryStores();
    const epoch = await engineStores.acquire(0);
    const state = emptyState();
    state.traits = { email: 'ada@example.com', firstName: 'Ada' };
    await engineStores.write(0, epoch, [
      { userId: 'ada', state: serializeState(state), offset: '1', timerIds: [] },
    ]);
    const bus = new InMemoryBus(1);
    const { app, config } = await api({}, engineStores, bus);
    const send = (template: string) =>
      app.inject({
        method: 'POST',
        url: '/v1/send',
        headers: { authorization: `Bearer ${config.auth.adminToken}`, 'idempotency-key': 'k1' },
        payload: { template, userId: 'ada', category: 'transactional', channels: ['email'] },
      });
    const first = await send('welcome');
    expect(first.statusCode).toBe(202);
    expect((await send('welcome')).headers['idempotent-replayed']).toBe('true');
    expect((await send('trial_ending')).statusCode).toBe(422);
    expect(bus.messages(topics(config.kafka.topicPrefix).sends)).toHaveLength(1);
  });
});
