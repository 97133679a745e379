// The admin pages' server side on the API server's own wiring: the page and its files carry
// the pages' Content-Security-Policy, only the listed files are served (never a path taken
// from the URL), and GET /v1/me says who a credential is for the login.
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { createMemoryDeliveryStores } from '../delivery/index.ts';
import { createMemoryInbox, createMemoryLiveChannel } from '../delivery/inapp/index.ts';
import { createMemoryApiKeyStore, createMemoryAuditLog } from '../access/index.ts';
import { InMemoryBus } from '../platform/bus.ts';
import { loadConfig } from '../platform/config.ts';
import { silentLogger } from '../platform/logger.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import { ROLES } from '../platform/http.ts';
import { createApiServer } from '../bin/api.ts';
import { ADMIN_PAGE_POLICY } from './pages.ts';

const ADMIN_TOKEN = 'pages-test-admin-token-0123456789';
const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((a) => a.close()));
});

async function server() {
  let clock = Date.parse('2026-03-01T00:00:00Z');
  const keys = createMemoryApiKeyStore();
  const app = await createApiServer(loadConfig({}, { 'auth.adminToken': ADMIN_TOKEN }), {
    memory: {
      stores: createMemoryDeliveryStores(),
      inbox: createMemoryInbox(),
      live: createMemoryLiveChannel(),
    },
    access: { keys, audit: createMemoryAuditLog(() => clock) },
    now: () => clock,
    publisher: new InMemoryBus(1).publisher(),
    logger: silentLogger(),
    metrics: createMetricsRegistry({ defaults: false }),
  });
  apps.push(app);
  const as = (token: string) => ({ authorization: `Bearer ${token}` });
  const key = async (role: string, expires?: string) => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/keys',
      headers: as(ADMIN_TOKEN),
      payload: { name: `${role} key`, role, ...(expires ? { expires } : {}) },
    });
    expect(res.statusCode).toBe(201);
    return res.json<{ key: { id: string; expiresAt: string | null }; secret: string }>();
  };
  return { app, as, key, advance: (ms: number) => (clock += ms) };
}

describe('the admin pages', () => {
  it('/ is the page, with the strict policy: own scripts and styles only, API calls to this server', async () => {
    const { app } = await server();
    const res = await app.inject({ url: '/' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.headers['content-security-policy']).toBe(ADMIN_PAGE_POLICY);
    const policy = Object.fromEntries(
      ADMIN_PAGE_POLICY.split('; ').map((d) => [d.split(' ')[0], d.split(' ').slice(1).join(' ')]),
    );
    expect(policy).toMatchObject({
      'default-src': "'none'",
      'script-src': "'self'",
      'style-src': "'self'",
      'connect-src': "'self'",
      'img-src': "'self' data:",
      'frame-ancestors': "'none'",
    });
    expect(res.headers['x-frame-options']).toBe('DENY');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    // No inline script or style: the policy would refuse it.
    expect(res.body).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(res.body).not.toMatch(/<style|style=/);
    expect(res.body).toContain('<script type="module" src="/app/app.js">');
  });

  it('serves the app and the vendored modules with their types; the hooks import the served preact', async () => {
    const { app } = await server();
    for (const [url, type] of [
      ['/app/app.js', 'text/javascript; charset=utf-8'],
      ['/app/lib.js', 'text/javascript; charset=utf-8'],
      ['/app/pages/index.js', 'text/javascript; charset=utf-8'],
      ['/app/pages/users.js', 'text/javascript; charset=utf-8'],
      ['/app/style.css', 'text/css; charset=utf-8'],
      ['/app/vendor/preact.mjs', 'text/javascript; charset=utf-8'],
      ['/app/vendor/hooks.mjs', 'text/javascript; charset=utf-8'],
      ['/app/vendor/htm.mjs', 'text/javascript; charset=utf-8'],
      ['/app/vendor/uPlot.mjs', 'text/javascript; charset=utf-8'],
      ['/app/vendor/uPlot.css', 'text/css; charset=utf-8'],
    ]) {
      const res = await app.inject({ url: url! });
      expect(res.statusCode, url).toBe(200);
      expect(res.headers['content-type'], url).toBe(type);
      expect(res.headers['content-security-policy'], url).toBe(ADMIN_PAGE_POLICY);
    }
    const hooks = (await app.inject({ url: '/app/vendor/hooks.mjs' })).body;
    expect(hooks).toContain('from"./preact.mjs"');
    expect(hooks).not.toMatch(/from\s*"preact"/);
    // What runs under script-src 'self' must not need eval.
    for (const url of ['/app/vendor/preact.mjs', '/app/vendor/hooks.mjs', '/app/vendor/htm.mjs'])
      expect((await app.inject({ url })).body, url).not.toMatch(/\beval\(|new Function\(/);
  });

  it('refuses every path that is not a listed file, traversals and encodings included', async () => {
    const { app } = await server();
    for (const url of [
      '/app/vendor/../../package.json',
      '/app/..%2f..%2fpackage.json',
      '/app/%2e%2e/%2e%2e/package.json',
      '/app/vendor/preact.js',
      '/app/../admin/pages.ts',
      '/app/index.html',
      '/app/pages/../../pages.ts',
      '/app//etc/passwd',
      '/app/',
      '/app/vendor/',
      '/app/lib.js/',
      '/app/LIB.JS',
      '/app/lib.js%00.css',
      '/package.json',
      '/node_modules/preact/package.json',
    ]) {
      const res = await app.inject({ url });
      expect([400, 404], url).toContain(res.statusCode);
      expect(res.body, url).not.toContain('"dependencies"');
      if (res.statusCode === 404) {
        expect(res.json(), url).toMatchObject({ code: 'LC_ERR_NOT_FOUND' });
      }
    }
  });
});

describe('GET /v1/me', () => {
  it('says who each staff role is, with the kind of credential and its expiry, and never the secret', async () => {
    const { app, as, key } = await server();
    for (const role of ROLES) {
      const { key: made, secret } = await key(role, role === 'support' ? '30d' : undefined);
      const res = await app.inject({ url: '/v1/me', headers: as(secret) });
      expect(res.statusCode, role).toBe(200);
      expect(res.json(), role).toEqual({
        actor: made.id,
        name: `${role} key`,
        role,
        via: 'key',
        ...(made.expiresAt ? { expiresAt: made.expiresAt } : {}),
      });
      expect(res.body).not.toContain(secret);
    }
    const admin = await app.inject({ url: '/v1/me', headers: as(ADMIN_TOKEN) });
    expect(admin.json()).toEqual({
      actor: 'admin-token',
      name: 'LC_ADMIN_TOKEN',
      role: 'admin',
      via: 'token',
    });
    expect(admin.body).not.toContain(ADMIN_TOKEN);
  });

  it('refuses no credential and a wrong one (401), an expired key and a revoked one with their codes', async () => {
    const { app, as, key, advance } = await server();
    const none = await app.inject({ url: '/v1/me' });
    expect(none.statusCode).toBe(401);
    expect(none.json()).toMatchObject({ code: 'LC_ERR_UNAUTHORIZED' });
    const wrong = await app.inject({ url: '/v1/me', headers: as('lc_not-a-key') });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json().message).toMatch(/not a known API key/);

    const { secret } = await key('support', '1h');
    expect((await app.inject({ url: '/v1/me', headers: as(secret) })).statusCode).toBe(200);
    advance(3_600_001);
    const expired = await app.inject({ url: '/v1/me', headers: as(secret) });
    expect(expired.statusCode).toBe(401);
    expect(expired.json()).toMatchObject({ code: 'LC_ERR_KEY_EXPIRED' });

    const other = await key('analyst');
    await app.inject({
      method: 'DELETE',
      url: `/v1/keys/${other.key.id}`,
      headers: as(ADMIN_TOKEN),
    });
    const revoked = await app.inject({ url: '/v1/me', headers: as(other.secret) });
    expect(revoked.statusCode).toBe(401);
    expect(revoked.json()).toMatchObject({ code: 'LC_ERR_KEY_REVOKED' });
  });
});
