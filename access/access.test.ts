// Staff keys and the audit log over the API server's own wiring, on the in-memory stores:
// a key's secret is shown once and never stored or audited, expiry and revocation take
// effect on the next request, and the audit log filters and pages.
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { createMemoryDeliveryStores } from '../delivery/index.ts';
import { createMemoryInbox, createMemoryLiveChannel } from '../delivery/inapp/index.ts';
import { InMemoryBus } from '../platform/bus.ts';
import { loadConfig } from '../platform/config.ts';
import { silentLogger } from '../platform/logger.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import { createApiServer } from '../bin/api.ts';
import { createKeyCommand, listKeysCommand, revokeKeyCommand } from './cli.ts';
import {
  createMemoryApiKeyStore,
  createMemoryAuditLog,
  expiryFrom,
  type ApiKeyStore,
  type AuditLog,
} from './index.ts';

const ADMIN_TOKEN = 'access-test-admin-token-0123456789';
const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((a) => a.close()));
});

async function api(opts: { bootstrap?: string } = {}) {
  let clock = Date.parse('2026-03-01T00:00:00Z');
  const keys = createMemoryApiKeyStore();
  const audit = createMemoryAuditLog(() => clock);
  const config = loadConfig(
    {},
    {
      'auth.adminToken': ADMIN_TOKEN,
      ...(opts.bootstrap ? { 'auth.bootstrapAdminKey': opts.bootstrap } : {}),
    },
  );
  const app = await createApiServer(config, {
    memory: {
      stores: createMemoryDeliveryStores(),
      inbox: createMemoryInbox(),
      live: createMemoryLiveChannel(),
    },
    access: { keys, audit },
    now: () => clock,
    publisher: new InMemoryBus(1).publisher(),
    logger: silentLogger(),
    metrics: createMetricsRegistry({ defaults: false }),
  });
  apps.push(app);
  const as = (token: string) => ({ authorization: `Bearer ${token}` });
  return {
    app,
    keys,
    audit,
    as,
    advance: (ms: number) => (clock += ms),
    async create(body: Record<string, unknown>, token = ADMIN_TOKEN) {
      return app.inject({ method: 'POST', url: '/v1/keys', headers: as(token), payload: body });
    },
  };
}

describe('API keys over the API', () => {
  it('shows the secret once, stores and audits no trace of it, and the key works with its role', async () => {
    const t = await api();
    const res = await t.create({ name: 'Ana (support)', role: 'support' });
    expect(res.statusCode).toBe(201);
    const { key, secret } = res.json<{ key: { id: string; prefix: string }; secret: string }>();
    expect(secret).toMatch(/^lc_[\w-]{43}$/);
    expect(secret.startsWith(key.prefix)).toBe(true);
    const listed = await t.app.inject({ url: '/v1/keys', headers: t.as(ADMIN_TOKEN) });
    expect(listed.json().keys).toEqual([key]);
    expect(listed.body).not.toContain(secret);
    const log = await t.app.inject({ url: '/v1/audit', headers: t.as(ADMIN_TOKEN) });
    expect(log.json().entries).toMatchObject([
      {
        actor: 'admin-token',
        role: 'admin',
        action: 'key.create',
        target: `key:${key.id}`,
        after: key,
        requestId: res.headers['x-request-id'],
      },
    ]);
    expect(log.body).not.toContain(secret.slice(key.prefix.length));
    // The support key reads preferences, and may not manage keys.
    expect(
      (await t.app.inject({ url: '/v1/users/u1/preferences', headers: t.as(secret) })).statusCode,
    ).toBe(200);
    const denied = await t.app.inject({ url: '/v1/keys', headers: t.as(secret) });
    expect(denied.statusCode).toBe(403);
    expect(denied.json().code).toBe('LC_ERR_ROLE_FORBIDDEN');
  });

  it('creates no working key when the audit log cannot record it: 503, and the key is revoked', async () => {
    const t = await api();
    const append = t.audit.append.bind(t.audit);
    t.audit.append = () =>
      Promise.reject(new Error("READONLY You can't write against a read only replica."));
    const res = await t.create({ name: 'unaudited', role: 'admin' });
    expect(res.statusCode).toBe(503);
    expect(res.json()).toMatchObject({ code: 'LC_ERR_UNAVAILABLE', message: /audit log/ });
    expect(res.body).not.toMatch(/lc_/);
    const [stored] = await t.keys.list();
    expect(stored).toMatchObject({ name: 'unaudited', revokedAt: expect.any(String) });
    t.audit.append = append;
    const again = await t.create({ name: 'audited', role: 'admin' });
    expect(again.statusCode).toBe(201);
  });

  it('refuses an expired key and a revoked key from the next request on, each with its own code', async () => {
    const t = await api();
    const short = (await t.create({ name: 'ci', role: 'admin', expires: '1h' })).json<{
      secret: string;
    }>();
    const other = (await t.create({ name: 'ops', role: 'admin' })).json<{
      key: { id: string };
      secret: string;
    }>();
    expect((await t.app.inject({ url: '/v1/keys', headers: t.as(short.secret) })).statusCode).toBe(
      200,
    );
    t.advance(3_600_000);
    const expired = await t.app.inject({ url: '/v1/keys', headers: t.as(short.secret) });
    expect(expired.statusCode).toBe(401);
    expect(expired.json().code).toBe('LC_ERR_KEY_EXPIRED');

    const revoke = await t.app.inject({
      method: 'DELETE',
      url: `/v1/keys/${other.key.id}`,
      headers: t.as(other.secret),
    });
    expect(revoke.statusCode).toBe(200);
    expect(revoke.json().key.revokedAt).not.toBeNull();
    const revoked = await t.app.inject({ url: '/v1/keys', headers: t.as(other.secret) });
    expect(revoked.statusCode).toBe(401);
    expect(revoked.json().code).toBe('LC_ERR_KEY_REVOKED');
    const log = await t.app.inject({
      url: '/v1/audit?action=key.revoke',
      headers: t.as(ADMIN_TOKEN),
    });
    expect(log.json().entries).toMatchObject([
      {
        actor: other.key.id,
        target: `key:${other.key.id}`,
        before: { revokedAt: null },
        after: { revokedAt: expect.any(String) },
      },
    ]);
  });

  it('refuses a bad role, an unknown field and a bad expiry with the field at fault', async () => {
    const t = await api();
    for (const [body, field] of [
      [{ name: 'x', role: 'root' }, 'role'],
      [{ name: 'x', role: 'admin', expiry: '30d' }, 'expiry'],
      [{ name: 'x', role: 'admin', expires: 'soon' }, 'expires'],
      [{ name: 'x', role: 'admin', expires: '2020-01-01T00:00:00Z' }, 'expires'],
    ] as const) {
      const res = await t.create(body);
      expect(res.statusCode, JSON.stringify(body)).toBe(400);
      expect(res.json(), res.body).toMatchObject({ code: 'LC_ERR_BAD_REQUEST' });
      expect(res.json().field, res.body).toBe(field);
    }
    expect(
      (
        await t.app.inject({
          method: 'DELETE',
          url: '/v1/keys/key_nope',
          headers: t.as(ADMIN_TOKEN),
        })
      ).statusCode,
    ).toBe(404);
  });

  it('stores LC_BOOTSTRAP_ADMIN_KEY as an admin key once; revoked, it stays revoked', async () => {
    const bootstrap = 'b'.repeat(40);
    const t = await api({ bootstrap });
    const listed = await t.app.inject({ url: '/v1/keys', headers: t.as(bootstrap) });
    expect(listed.statusCode).toBe(200);
    const [key] = listed.json().keys as { id: string; name: string; role: string }[];
    expect(key).toMatchObject({ name: 'bootstrap', role: 'admin' });
    await t.app.inject({ method: 'DELETE', url: `/v1/keys/${key!.id}`, headers: t.as(bootstrap) });
    const { ensureBootstrapKey } = await import('./api-keys.ts');
    expect(await ensureBootstrapKey(t.keys, bootstrap, Date.now())).toBeNull();
    expect((await t.app.inject({ url: '/v1/keys', headers: t.as(bootstrap) })).statusCode).toBe(
      401,
    );
  });
});

describe('the audit log query', () => {
  it('filters by actor, action, target and time, and pages with a cursor, newest first', async () => {
    let clock = 1_000;
    const log = createMemoryAuditLog(() => clock);
    for (let i = 0; i < 7; i++) {
      clock += 1_000;
      await log.append({
        actor: i % 2 ? 'key_a' : 'key_b',
        actorName: 'n',
        role: 'admin',
        action: i < 5 ? 'key.create' : 'key.revoke',
        target: `key:${i}`,
        before: null,
        after: null,
        requestId: null,
        at: new Date(clock).toISOString(),
      });
    }
    const first = await log.query({ limit: 2, action: 'key.create' });
    expect(first.entries.map((e) => e.target)).toEqual(['key:4', 'key:3']);
    const second = await log.query({ limit: 2, action: 'key.create', cursor: first.next! });
    expect(second.entries.map((e) => e.target)).toEqual(['key:2', 'key:1']);
    const third = await log.query({ limit: 2, action: 'key.create', cursor: second.next! });
    expect(third).toEqual({ entries: [expect.objectContaining({ target: 'key:0' })], next: null });
    expect((await log.query({ limit: 10, actor: 'key_a' })).entries).toHaveLength(3);
    expect((await log.query({ limit: 10, target: 'key:6' })).entries).toHaveLength(1);
    const window = await log.query({ limit: 10, since: 3_000, until: 5_000 });
    expect(window.entries.map((e) => e.target)).toEqual(['key:3', 'key:2', 'key:1']);
    await expect(log.query({ limit: 1, cursor: 'garbage' })).rejects.toThrow(/cursor/);
  });
});

describe('expiries', () => {
  it('read durations and ISO times, and refuse the past and nonsense', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(expiryFrom('30d', now)).toBe('2026-01-31T00:00:00.000Z');
    expect(expiryFrom('12h', now)).toBe('2026-01-01T12:00:00.000Z');
    expect(expiryFrom('2026-02-01T00:00:00Z', now)).toBe('2026-02-01T00:00:00.000Z');
    expect(() => expiryFrom('0d', now)).toThrow(/not a duration/);
    expect(() => expiryFrom('tomorrow', now)).toThrow(/not a duration/);
  });
});

class Sink extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: string, done: () => void) {
    this.text += chunk.toString();
    done();
  }
}

function cliDeps(keys: ApiKeyStore, audit: AuditLog) {
  return { keys, audit, out: new Sink(), err: new Sink(), now: Date.now, actor: 'cli:ops' };
}

describe('lifecycle keys', () => {
  it('create prints the secret once and audits the key without it; list and revoke by id', async () => {
    const keys = createMemoryApiKeyStore();
    const audit = createMemoryAuditLog();
    const deps = cliDeps(keys, audit);
    expect(await createKeyCommand(deps, { role: 'admin', name: 'first admin' })).toBe(0);
    const secret = deps.out.text.split('\n')[0]!;
    expect(secret).toMatch(/^lc_/);
    const key = (await keys.byToken(secret))!;
    expect(key).toMatchObject({ role: 'admin', name: 'first admin', createdBy: 'cli:ops' });
    const entries = (await audit.query({ limit: 10 })).entries;
    expect(entries).toMatchObject([{ actor: 'cli:ops', action: 'key.create', role: 'admin' }]);
    expect(JSON.stringify(entries)).not.toContain(secret);

    const list = cliDeps(keys, audit);
    await listKeysCommand(list, {});
    expect(list.out.text).toContain(key.id);
    expect(list.out.text).not.toContain(secret);

    const revoke = cliDeps(keys, audit);
    expect(await revokeKeyCommand(revoke, key.id)).toBe(0);
    expect((await keys.get(key.id))!.revokedAt).not.toBeNull();
    expect(await revokeKeyCommand(cliDeps(keys, audit), 'key_missing')).toBe(1);

    const bad = cliDeps(keys, audit);
    expect(await createKeyCommand(bad, { role: 'root', name: 'x' })).toBe(2);
    expect(bad.err.text).toContain('admin, marketer, analyst, support, service');
  });
});
