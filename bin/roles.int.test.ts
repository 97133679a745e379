// Every non-public operation of the API server, as its OpenAPI document lists it, refuses
// callers without a credential, with a wrong one, with an expired or a revoked key, and with
// every role it does not admit, and admits each role it does; keys live in the real Redis.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { generateToken, createRedisApiKeyStore } from '../access/index.ts';
import { InMemoryBus } from '../platform/bus.ts';
import { ROLES, type Role } from '../platform/http.ts';
import { silentLogger } from '../platform/logger.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import { createRedis, type RedisDeps } from '../platform/redis.ts';
import { isolate } from '../test/support/isolation.ts';
import { operationProblems, type OpenApiDocument } from '../test/support/openapi.ts';
import { createApiServer } from './api.ts';

interface Operation {
  method: string;
  path: string;
  url: string;
  roles: Role[] | null;
}

const PATH_VALUES: Record<string, string> = { channel: 'email', userId: 'u-roles' };

describe('roles of every API operation', () => {
  let app: FastifyInstance;
  let redis: RedisDeps;
  const iso = isolate('roles');
  const config = iso.config();
  const tokens = {} as Record<Role | 'expired' | 'revoked' | 'wrong', string>;
  let operations: Operation[] = [];
  let problems: string[] = [];

  beforeAll(async () => {
    redis = createRedis(config.redis, silentLogger());
    const keys = createRedisApiKeyStore(redis);
    const now = Date.now();
    for (const role of ROLES) {
      tokens[role] = generateToken();
      await keys.put(tokens[role], { name: role, role, expiresAt: null, createdBy: 'test' }, now);
    }
    tokens.expired = generateToken();
    await keys.put(
      tokens.expired,
      {
        name: 'expired',
        role: 'admin',
        expiresAt: new Date(now - 1).toISOString(),
        createdBy: 'test',
      },
      now - 60_000,
    );
    tokens.revoked = generateToken();
    const revoked = await keys.put(
      tokens.revoked,
      { name: 'revoked', role: 'admin', expiresAt: null, createdBy: 'test' },
      now,
    );
    await keys.revoke(revoked.id, now);
    tokens.wrong = generateToken();

    app = await createApiServer(config, {
      redis,
      publisher: new InMemoryBus(2).publisher(),
      logger: silentLogger(),
      metrics: createMetricsRegistry({ defaults: false }),
    });
    await app.ready();
    const doc = (await app.inject({ url: '/openapi.json' })).json<{
      paths: Record<string, Record<string, { security?: unknown[]; 'x-roles'?: Role[] }>>;
    }>();
    problems = operationProblems(doc as unknown as OpenApiDocument);
    operations = Object.entries(doc.paths).flatMap(([path, methods]) =>
      Object.entries(methods)
        .filter(([, op]) => op.security !== undefined && op.security.length > 0)
        .map(([method, op]) => ({
          method: method.toUpperCase(),
          path,
          url: path.replace(/\{(\w+)\}/g, (_m, name: string) => PATH_VALUES[name] ?? 'x'),
          roles: op['x-roles'] ?? null,
        })),
    );
  });
  afterAll(async () => {
    await app?.close();
    if (redis) {
      const own = await redis.redis.keys(`${iso.redisKeyPrefix}*`);
      if (own.length > 0) await redis.redis.del(...own);
      redis.redis.disconnect();
    }
  });

  const call = (op: Operation, token?: string) =>
    app.inject({
      method: op.method as 'GET',
      url: op.url,
      headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
      ...(op.method === 'GET' || op.method === 'DELETE' ? {} : { payload: {} }),
    });

  it('documents every operation of the production wiring (push devices included), as the unit test does the demo wiring', () => {
    expect(problems).toEqual([]);
    expect(operations.map((o) => `${o.method} ${o.path}`)).toEqual(
      expect.arrayContaining(['POST /v1/inapp/devices', 'DELETE /v1/inapp/devices/{deviceToken}']),
    );
  });

  it('lists the staff operations with their roles, and every staff route of the server', () => {
    const staff = operations.filter((o) => o.roles !== null).map((o) => `${o.method} ${o.path}`);
    for (const expected of [
      'POST /v1/keys',
      'GET /v1/keys',
      'DELETE /v1/keys/{id}',
      'GET /v1/audit',
      'GET /v1/me',
      'GET /v1/templates',
      'POST /v1/templates/{name}/versions',
      'POST /v1/templates/{name}/publish',
      'POST /v1/templates/{name}/rollback',
      'POST /v1/templates/{name}/test-send',
      'PATCH /v1/users/{userId}/preferences',
      'DELETE /v1/users/{userId}/suppressions/{channel}',
      'GET /v1/dashboards',
      'GET /v1/messages',
      'GET /v1/messages/{sendId}',
      'POST /v1/messages/{sendId}/resend',
      'GET /v1/users',
      'GET /v1/users/{userId}',
      'GET /v1/rules',
      'GET /v1/rules/{id}',
      'POST /v1/rules/simulate',
      'POST /v1/rules/backtest',
    ])
      expect(staff).toContain(expected);
    for (const op of operations.filter((o) => o.roles)) expect(op.roles![0]).toBe('admin');
  });

  it('refuses no credential and a wrong credential of the right shape with 401 everywhere', async () => {
    expect(operations.length).toBeGreaterThan(10);
    for (const op of operations) {
      const where = `${op.method} ${op.url}`;
      const none = await call(op);
      expect(none.statusCode, where).toBe(401);
      const wrong = await call(op, tokens.wrong);
      expect(wrong.statusCode, where).toBe(401);
      expect(wrong.body, where).not.toContain(tokens.wrong);
    }
  });

  it('refuses an expired and a revoked admin key on every staff operation, each with its code', async () => {
    for (const op of operations.filter((o) => o.roles)) {
      const where = `${op.method} ${op.url}`;
      const expired = await call(op, tokens.expired);
      expect([expired.statusCode, expired.json().code], where).toEqual([401, 'LC_ERR_KEY_EXPIRED']);
      const revoked = await call(op, tokens.revoked);
      expect([revoked.statusCode, revoked.json().code], where).toEqual([401, 'LC_ERR_KEY_REVOKED']);
    }
  });

  it('refuses every role an operation does not admit with 403, and admits the roles it does', async () => {
    const table: string[] = [];
    for (const op of operations.filter((o) => o.roles)) {
      const where = `${op.method} ${op.url}`;
      for (const role of ROLES) {
        const res = await call(op, tokens[role]);
        if (op.roles!.includes(role)) {
          expect([401, 403], `${where} as ${role}: ${res.body}`).not.toContain(res.statusCode);
        } else {
          expect(res.statusCode, `${where} as ${role}`).toBe(403);
          expect(res.json().code, where).toBe('LC_ERR_ROLE_FORBIDDEN');
        }
      }
      table.push(`${where}: ${op.roles!.join(', ')}`);
    }
    expect(table.length).toBeGreaterThanOrEqual(12);
  });

  it('keeps LC_ADMIN_TOKEN working as the break-glass admin on every staff operation', async () => {
    for (const op of operations.filter((o) => o.roles)) {
      const res = await call(op, config.auth.adminToken);
      expect([401, 403], `${op.method} ${op.url}: ${res.body}`).not.toContain(res.statusCode);
    }
  });
});
