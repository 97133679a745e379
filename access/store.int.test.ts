// Keys and the audit log in the real Redis: no secret anywhere in the store, the audit
// stream queryable right after the change with filters and a cursor across its read
// chunks, and `lifecycle keys` (the installed binary) making a key the API server accepts.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiServer } from '../bin/api.ts';
import { InMemoryBus } from '../platform/bus.ts';
import { silentLogger } from '../platform/logger.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import { createRedis, type RedisDeps } from '../platform/redis.ts';
import { isolate } from '../test/support/isolation.ts';
import { createRedisAuditLog } from './audit-log.ts';

describe('keys and audit in Redis', () => {
  const iso = isolate('access');
  const config = iso.config();
  let redis: RedisDeps;
  let app: FastifyInstance;
  const admin = { authorization: `Bearer ${config.auth.adminToken}` };

  /** Every value stored under this test's prefix, as text. */
  async function everythingStored(): Promise<string> {
    const keys = await redis.redis.keys(`${iso.redisKeyPrefix}*`);
    const parts: string[] = [];
    for (const key of keys) {
      const type = await redis.redis.type(key);
      if (type === 'string') parts.push(key, (await redis.redis.get(key)) ?? '');
      else if (type === 'zset') parts.push(key, ...(await redis.redis.zrange(key, 0, -1)));
      else if (type === 'stream')
        parts.push(key, JSON.stringify(await redis.redis.xrange(key, '-', '+')));
      else parts.push(key, `<${type}>`);
    }
    return parts.join('\n');
  }

  beforeAll(async () => {
    redis = createRedis(config.redis, silentLogger());
    app = await createApiServer(config, {
      redis,
      publisher: new InMemoryBus(2).publisher(),
      logger: silentLogger(),
      metrics: createMetricsRegistry({ defaults: false }),
    });
    await app.ready();
  });
  afterAll(async () => {
    await app?.close();
    if (redis) {
      const own = await redis.redis.keys(`${iso.redisKeyPrefix}*`);
      if (own.length > 0) await redis.redis.del(...own);
      redis.redis.disconnect();
    }
  });

  it('stores only the digest of a key, audits its creation at once, and never the secret', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/keys',
      headers: admin,
      payload: { name: 'backend', role: 'service', expires: '30d' },
    });
    expect(res.statusCode).toBe(201);
    const { key, secret } = res.json<{ key: { id: string }; secret: string }>();
    const audit = await app.inject({
      url: `/v1/audit?target=key:${key.id}`,
      headers: admin,
    });
    expect(audit.json().entries).toMatchObject([
      { action: 'key.create', actor: 'admin-token', after: { id: key.id, role: 'service' } },
    ]);
    const stored = await everythingStored();
    expect(stored).toContain(key.id);
    expect(stored).not.toContain(secret);
    expect(stored).not.toContain(secret.slice(10));
    expect(
      (
        await app.inject({
          url: '/v1/users/u1/preferences',
          headers: { authorization: `Bearer ${secret}` },
        })
      ).statusCode,
    ).toBe(200);
  });

  it('pages the audit stream newest first with filters, across more entries than one read', async () => {
    const log = createRedisAuditLog(redis);
    const before = Date.now();
    for (let i = 0; i < 1_200; i++)
      await log.append({
        actor: i % 3 === 0 ? 'key_pager' : 'key_other',
        actorName: 'n',
        role: 'admin',
        action: 'thing.touch',
        target: `thing:${i}`,
        before: null,
        after: { i },
        requestId: null,
        at: new Date().toISOString(),
      });
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await log.query({
        actor: 'key_pager',
        action: 'thing.touch',
        since: before,
        limit: 150,
        ...(cursor ? { cursor } : {}),
      });
      seen.push(...page.entries.map((e) => e.target));
      cursor = page.next ?? undefined;
      pages += 1;
    } while (cursor && pages < 10);
    const expected = Array.from({ length: 400 }, (_, k) => `thing:${1_197 - 3 * k}`);
    expect(seen).toEqual(expected);
    const over = await app.inject({
      url: `/v1/audit?actor=key_pager&limit=2&until=${before - 1}`,
      headers: admin,
    });
    expect(over.json()).toEqual({ entries: [], next: null });
    const bad = await app.inject({ url: '/v1/audit?cursor=abc', headers: admin });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ code: 'LC_ERR_BAD_REQUEST', field: 'cursor' });
  });

  it('`lifecycle keys create` prints a key the API accepts; `list` shows no secret; `revoke` stops it', async () => {
    const bin = join(import.meta.dirname, '..', 'bin', 'lifecycle');
    const env = { ...process.env, ...iso.env };
    const run = (...args: string[]) => promisify(execFile)(bin, ['keys', ...args], { env });
    const created = await run('create', '--role', 'analyst', '--name', 'Ana', '--json');
    const { key, secret } = JSON.parse(created.stdout) as { key: { id: string }; secret: string };
    const bearer = { authorization: `Bearer ${secret}` };
    expect((await app.inject({ url: '/v1/dashboards', headers: bearer })).statusCode).not.toBe(401);
    expect((await app.inject({ url: '/v1/templates', headers: bearer })).statusCode).toBe(403);
    const listed = await run('list');
    expect(listed.stdout).toContain(key.id);
    expect(listed.stdout).not.toContain(secret);
    await run('revoke', key.id);
    const after = await app.inject({ url: '/v1/dashboards', headers: bearer });
    expect(after.json().code).toBe('LC_ERR_KEY_REVOKED');
    const audit = await app.inject({ url: `/v1/audit?target=key:${key.id}`, headers: admin });
    expect(audit.json().entries.map((e: { action: string }) => e.action)).toEqual([
      'key.revoke',
      'key.create',
    ]);
    expect(audit.json().entries[0].actor).toMatch(/^cli:/);
  });
});
