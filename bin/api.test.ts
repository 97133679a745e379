// The API process as it is composed from its configuration, in-process over the in-memory
// stores (the demo's wiring): which secret each credential is checked with.
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { createMemoryDeliveryStores } from '../delivery/index.ts';
import {
  createMemoryInbox,
  createMemoryLiveChannel,
  signInappToken,
  type Inbox,
} from '../delivery/inapp/index.ts';
import { createMemoryApiKeyStore, createMemoryAuditLog, generateToken } from '../access/index.ts';
import type { UserLookup } from '../platform/users.ts';
import { createTrackingLinks, type MessageRef } from '../delivery/links.ts';
import { InMemoryBus } from '../platform/bus.ts';
import { topics } from '../platform/contracts.ts';
import { API_CONTENT_SECURITY_POLICY, inlineElements } from '../platform/http.ts';
import { createHash } from 'node:crypto';
import { loadConfig, type Config } from '../platform/config.ts';
import { ERROR_CODES, type ErrorCode } from '../platform/errors.ts';
import { CHANNELS } from '../platform/contracts.ts';
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

describe('/metrics of the API server (it faces the internet)', () => {
  it("answers only the scraper's LC_METRICS_TOKEN, and says where the metrics are without one", async () => {
    const unset = (await api()).app;
    for (const authorization of [undefined, 'Bearer ', 'Bearer dev-admin-token']) {
      const res = await unset.inject({
        method: 'GET',
        url: '/metrics',
        ...(authorization ? { headers: { authorization } } : {}),
      });
      expect(res.statusCode, String(authorization)).toBe(401);
      expect(res.json()).toMatchObject({ code: 'LC_ERR_UNAUTHORIZED' });
      expect(res.json().message).toContain('LC_METRICS_PORT');
    }
    const { app } = await api({ 'metrics.token': 'scrape-me-7f3a' });
    const wrong = await app.inject({
      method: 'GET',
      url: '/metrics',
      headers: { authorization: 'Bearer scrape-me-7f3b' },
    });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.headers['www-authenticate']).toBe('Bearer');
    // A staff key is not the scraper's token, whatever its role.
    const staff = await app.inject({
      method: 'GET',
      url: '/metrics',
      headers: { authorization: 'Bearer dev-admin-token' },
    });
    expect(staff.statusCode).toBe(401);
    const ok = await app.inject({
      method: 'GET',
      url: '/metrics',
      headers: { authorization: 'Bearer scrape-me-7f3a' },
    });
    expect(ok.statusCode).toBe(200);
    expect(ok.body).toContain('# HELP');
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json();
    expect(doc.paths['/metrics'].get.security).toEqual([{ metricsToken: [] }]);
  });
});

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
      metrics: 401,
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
  /** Ada as the engine stores her (traits, a pending timer, filed under her contacts) and as delivery does. */
  async function ada() {
    const engineStores = new MemoryStores();
    const epoch = await engineStores.acquire(0);
    const state = emptyState();
    state.traits = { email: 'Ada@Example.com', phone: '+44 20 7946 0018', plan: 'trial' };
    state.stats['Feature Used'] = { count: 2, first: 1, last: 2 };
    state.segments = { trial: true };
    state.rules = {
      welcome: { fires: 1, lastFiredAt: 1 },
      'weekly-digest': { fires: 0, lastFiredAt: null, skipped: 1, lastSkippedAt: 3 },
    };
    const timer = {
      id: 't-nudge',
      userId: 'ada',
      ruleId: 'trial-nudge',
      dueAt: 5000,
      trigger: {
        id: 'ev-reg',
        userId: 'ada',
        type: 'user_registered',
        ts: 3000,
        receivedAt: 3000,
        source: 'test',
        properties: {},
      },
    };
    await engineStores.schedule(0, epoch, [timer]);
    await engineStores.update(0, epoch, [
      { userId: 'ada', add: ['e:ada@example.com', 'p:+442079460018'], remove: [] },
    ]);
    await engineStores.write(0, epoch, [
      {
        userId: 'ada',
        state: serializeState(state),
        offset: '1',
        timerIds: [timer.id],
        contacts: 'e:ada@example.com\np:+442079460018',
      },
    ]);
    const stores = createMemoryDeliveryStores();
    await stores.preferences.suppress('ada', 'sms', {
      reason: 'invalid_address',
      at: 4000,
      address: '+442079460018',
    });
    const inbox = createMemoryInbox();
    await inbox.add('ada', {
      id: 'send-1',
      ruleId: 'trial-ending',
      category: 'marketing',
      title: 'Your trial ends soon',
      body: 'Three days left',
      createdAt: 4500,
    });
    return { engineStores, stores, inbox };
  }

  async function lookupApi(
    from: Awaited<ReturnType<typeof ada>>,
    overrides: { inbox?: Inbox; users?: UserLookup } = {},
  ) {
    // The lookup shows consents as support recorded them (double opt-in has its own tests).
    const config = loadConfig(
      {},
      {
        'auth.signingSecret': SIGNING_SECRET,
        'auth.inappSecret': INAPP_SECRET,
        'delivery.doubleOptIn': false,
      },
    );
    const keys = createMemoryApiKeyStore();
    const tokens = { support: generateToken(), analyst: generateToken() };
    for (const role of ['support', 'analyst'] as const)
      await keys.put(tokens[role], { name: role, role, expiresAt: null, createdBy: 'test' }, 0);
    const app = await createApiServer(config, {
      memory: {
        stores: from.stores,
        inbox: overrides.inbox ?? from.inbox,
        live: createMemoryLiveChannel(),
      },
      users: overrides.users ?? createUserDirectory(from.engineStores),
      access: { keys, audit: createMemoryAuditLog() },
      publisher: new InMemoryBus(1).publisher(),
      logger: silentLogger(),
      metrics: createMetricsRegistry({ defaults: false }),
      now: () => 6000,
    });
    apps.push(app);
    const as = (role: keyof typeof tokens) => ({ authorization: `Bearer ${tokens[role]}` });
    return { app, as };
  }

  it('shows support staff every section of a user: profile, timers, preferences and their history, suppressions, inbox, and where the messages are', async () => {
    const { app, as } = await lookupApi(await ada());
    // A support person changes a preference first: the history says they did.
    const patched = await app.inject({
      method: 'PATCH',
      url: '/v1/users/ada/preferences',
      headers: as('support'),
      payload: { consents: { marketing: { email: { granted: true, source: 'phone_call' } } } },
    });
    expect(patched.statusCode).toBe(200);

    const found = await app.inject({ url: '/v1/users/ada', headers: as('support') });
    expect(found.statusCode).toBe(200);
    const body = found.json();
    expect(body).toEqual({
      profile: {
        userId: 'ada',
        traits: { email: 'Ada@Example.com', phone: '+44 20 7946 0018', plan: 'trial' },
        stats: { 'Feature Used': { count: 2, first: 1, last: 2 } },
        segments: ['trial'],
        rules: {
          welcome: { fires: 1, lastFiredAt: 1 },
          'weekly-digest': { fires: 0, lastFiredAt: null, skipped: 1, lastSkippedAt: 3 },
        },
      },
      timers: {
        pending: [
          {
            id: 't-nudge',
            ruleId: 'trial-nudge',
            fires: 'rule',
            dueAt: 5000,
            trigger: { id: 'ev-reg', type: 'user_registered', ts: 3000 },
          },
        ],
      },
      preferences: {
        unsubscribedAll: null,
        consents: {
          marketing: { email: { granted: true, at: expect.any(Number), source: 'phone_call' } },
        },
        types: {},
        history: [
          {
            kind: 'consent',
            category: 'marketing',
            channel: 'email',
            granted: true,
            at: expect.any(Number),
            source: 'phone_call',
            via: 'admin_api',
            recordedAt: expect.any(Number),
            by: { actor: expect.stringMatching(/^key_/), role: 'support' },
          },
        ],
      },
      suppressions: {
        deleted: null,
        channels: { sms: { reason: 'invalid_address', at: 4000, address: '+442079460018' } },
      },
      inbox: {
        unread: 1,
        messages: [
          {
            id: 'send-1',
            ruleId: 'trial-ending',
            category: 'marketing',
            title: 'Your trial ends soon',
            body: 'Three days left',
            createdAt: 4500,
            readAt: null,
          },
        ],
      },
      links: {
        messages: '/v1/messages?userId=ada',
        preferences: '/v1/users/ada/preferences',
      },
    });

    const missing = await app.inject({ url: '/v1/users/nobody', headers: as('support') });
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({
      code: 'LC_ERR_NOT_FOUND',
      message: /never seen, or erased/,
    });
    expect((await app.inject({ url: '/v1/users/ada' })).statusCode).toBe(401);
    const analyst = await app.inject({ url: '/v1/users/ada', headers: as('analyst') });
    expect([analyst.statusCode, analyst.json().code]).toEqual([403, 'LC_ERR_ROLE_FORBIDDEN']);
  });

  it('finds a user by exact userId, by email whatever its case, and by phone whatever its punctuation', async () => {
    const { app, as } = await lookupApi(await ada());
    const search = async (q: string) => {
      const res = await app.inject({
        url: `/v1/users?q=${encodeURIComponent(q)}`,
        headers: as('support'),
      });
      expect(res.statusCode, res.body).toBe(200);
      return (res.json() as { users: { userId: string; matched: string[]; url: string }[] }).users;
    };
    expect(await search('ada')).toEqual([
      expect.objectContaining({ userId: 'ada', matched: ['userId'], url: '/v1/users/ada' }),
    ]);
    expect(await search(' ADA@example.COM ')).toEqual([
      expect.objectContaining({
        userId: 'ada',
        matched: ['email'],
        traits: expect.objectContaining({ plan: 'trial' }),
      }),
    ]);
    expect((await search('0044 20 7946-0018')).map((u) => [u.userId, u.matched])).toEqual([
      ['ada', ['phone']],
    ]);
    expect(await search('ada@example.org')).toEqual([]);
    const blank = await app.inject({ url: '/v1/users?q=%20', headers: as('support') });
    expect([blank.statusCode, blank.json().code]).toEqual([400, 'LC_ERR_BAD_REQUEST']);
    const none = await app.inject({ url: '/v1/users', headers: as('support') });
    expect(none.statusCode).toBe(400);
    expect((await app.inject({ url: '/v1/users?q=ada', headers: as('analyst') })).statusCode).toBe(
      403,
    );
  });

  it('answers the sections it can read when one room cannot be read, each failure coded', async () => {
    const from = await ada();
    const broken = (what: string) => () => Promise.reject(new Error(`${what}: connection lost`));
    const inbox: Inbox = { ...from.inbox, page: broken('inbox') };
    const engine = createUserDirectory(from.engineStores);
    const users: UserLookup = { ...engine, pendingTimers: broken('timers') };
    const { app, as } = await lookupApi(from, { inbox, users });
    const res = await app.inject({ url: '/v1/users/ada', headers: as('support') });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.inbox).toEqual({
      error: {
        code: 'LC_ERR_UNAVAILABLE',
        message: expect.stringMatching(
          /^inbox could not be read from the in-app inbox \(inbox: connection lost\)/,
        ),
      },
    });
    expect(body.timers).toEqual({
      error: {
        code: 'LC_ERR_UNAVAILABLE',
        message: expect.stringMatching(/^timers could not be read/),
      },
    });
    expect(body.profile).toMatchObject({ userId: 'ada', segments: ['trial'] });
    expect(body.suppressions.channels.sms).toMatchObject({ reason: 'invalid_address' });
    expect(body.preferences).toMatchObject({ history: [] });

    // Without the engine's profile the lookup still answers the rest, and says why.
    const noProfile = await lookupApi(from, {
      users: { ...engine, profile: broken('engine state') },
    });
    const partial = await noProfile.app.inject({
      url: '/v1/users/ada',
      headers: noProfile.as('support'),
    });
    expect(partial.statusCode).toBe(200);
    expect(partial.json().profile).toEqual({
      error: {
        code: 'LC_ERR_UNAVAILABLE',
        message: expect.stringMatching(/^profile could not be read/),
      },
    });
    expect(partial.json().inbox.unread).toBe(1);

    // A search the engine's store cannot answer says so, and how to go on.
    const noSearch = await lookupApi(from, { users: { ...engine, find: broken('index') } });
    const failed = await noSearch.app.inject({
      url: '/v1/users?q=ada%40example.com',
      headers: noSearch.as('support'),
    });
    expect(failed.statusCode).toBe(503);
    expect(failed.json()).toEqual({
      code: 'LC_ERR_UNAVAILABLE',
      message: expect.stringMatching(/could not be searched \(index: connection lost\); retry/),
    });
  });
});

describe('coded refusals of the API server', () => {
  it('answers validation, unknown routes, too large and wrongly typed bodies with a code of platform/errors.ts and a message that says what to fix', async () => {
    const { app, config } = await api();
    const auth = { authorization: `Bearer ${config.auth.adminToken}` };
    const answers = {
      query: await app.inject({ method: 'GET', url: '/v1/audit?limit=0', headers: auth }),
      body: await app.inject({
        method: 'POST',
        url: '/v1/templates/welcome/preview',
        headers: auth,
        payload: { channel: 'fax' },
      }),
      missing: await app.inject({
        method: 'POST',
        url: '/v1/keys',
        headers: auth,
        payload: { role: 'analyst' },
      }),
      unknown: await app.inject({
        method: 'GET',
        url: '/v1/nothing?t=signed-token',
        headers: auth,
      }),
      large: await app.inject({
        method: 'PATCH',
        url: '/v1/users/ada/preferences',
        headers: { ...auth, 'content-type': 'application/json' },
        payload: JSON.stringify({
          consents: { x: { email: { granted: true, source: 'x'.repeat(1_100_000) } } },
        }),
      }),
      mediaType: await app.inject({
        method: 'PATCH',
        url: '/v1/users/ada/preferences',
        headers: { ...auth, 'content-type': 'application/xml' },
        payload: '<unsubscribedAll>true</unsubscribedAll>',
      }),
    };
    const seen = Object.fromEntries(
      Object.entries(answers).map(([k, r]) => [k, [r.statusCode, r.json()]]),
    );
    expect(seen).toEqual({
      query: [400, { code: 'LC_ERR_BAD_REQUEST', message: 'limit must be >= 1', field: 'limit' }],
      body: [
        400,
        {
          code: 'LC_ERR_BAD_REQUEST',
          message: `channel must be one of ${CHANNELS.join(', ')}`,
          field: 'channel',
        },
      ],
      missing: [400, { code: 'LC_ERR_BAD_REQUEST', message: 'name is required', field: 'name' }],
      unknown: [404, { code: 'LC_ERR_NOT_FOUND', message: 'Route GET:/v1/nothing not found' }],
      large: [
        413,
        { code: 'LC_ERR_PAYLOAD_TOO_LARGE', message: 'request body is larger than 1048576 bytes' },
      ],
      mediaType: [
        415,
        { code: 'LC_ERR_UNSUPPORTED_MEDIA_TYPE', message: 'send the body as application/json' },
      ],
    });
    for (const [name, r] of Object.entries(answers))
      expect(ERROR_CODES[r.json<{ code: ErrorCode }>().code]?.status, name).toBe(r.statusCode);
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
