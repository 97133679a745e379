// The API process's surface: every admin route demands the token, public tracking and
// in-app routes do not take it but refuse unsigned input, and the OpenAPI document lists
// what is served.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { InMemoryBus } from '../../platform/bus.ts';
import { Writable } from 'node:stream';
import { createLogger, silentLogger } from '../../platform/logger.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import { createRedis, type RedisDeps } from '../../platform/redis.ts';
import { createApiServer } from '../../bin/api.ts';
import { isolate } from '../support/isolation.ts';

describe('API process', () => {
  let app: FastifyInstance;
  let redis: RedisDeps;
  const logLines: string[] = [];
  const logSink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logLines.push(chunk.toString());
      done();
    },
  });
  const iso = isolate('api');
  const config = iso.config();
  const admin = { authorization: `Bearer ${config.auth.adminToken}` };

  beforeAll(async () => {
    redis = createRedis(config.redis, silentLogger());
    app = await createApiServer(config, {
      redis,
      publisher: new InMemoryBus(2).publisher(),
      logger: createLogger({ level: 'info' }, logSink),
      metrics: createMetricsRegistry({ defaults: false }),
    });
    await app.ready();
  });
  afterAll(async () => {
    await app?.close();
    redis?.redis.disconnect();
  });

  it('refuses admin routes without the admin token and serves them with it', async () => {
    for (const url of ['/v1/users/u1/preferences', '/v1/templates']) {
      const anonymous = await app.inject({ method: 'GET', url });
      expect(anonymous.statusCode, url).toBe(401);
      expect(anonymous.json()).toMatchObject({ code: 'LC_ERR_UNAUTHORIZED' });
      const wrong = await app.inject({
        method: 'GET',
        url,
        headers: { authorization: 'Bearer nope' },
      });
      expect(wrong.statusCode, url).toBe(401);
      const ok = await app.inject({ method: 'GET', url, headers: admin });
      expect(ok.statusCode, url).toBe(200);
    }
  });

  it('refuses unsigned or tampered tracking links instead of redirecting', async () => {
    const click = await app.inject({ method: 'GET', url: '/t/c?t=forged' });
    expect(click.statusCode).toBe(400);
    expect(click.headers.location).toBeUndefined();
    const unsubscribe = await app.inject({ method: 'POST', url: '/t/u?t=forged' });
    expect(unsubscribe.statusCode).toBe(400);
  });

  it('logs and answers a missed route by its path, never the signed token in its query', async () => {
    const secret = 'eyJzIjoic2VjcmV0LXJlc2V0LXRva2VuIn0.c2lnbmF0dXJl';
    for (const [method, url] of [
      ['POST', `/t/c?t=${secret}`],
      ['GET', `/t/c/?t=${secret}`],
      ['GET', `/nowhere?t=${secret}`],
    ] as const) {
      const res = await app.inject({ method, url });
      expect(res.statusCode, url).toBe(404);
      expect(res.body, url).not.toContain(secret);
    }
    expect(logLines.join('')).toContain('route not found');
    expect(logLines.join('')).not.toContain(secret);
  });

  it('refuses in-app inbox reads without a valid client token', async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/inapp/inbox?token=forged' });
    expect(res.statusCode).toBe(401);
  });

  it('publishes an OpenAPI document of its routes, health and metrics', async () => {
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json() as {
      openapi: string;
      paths: Record<string, unknown>;
    };
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(['/v1/users/{userId}/preferences', '/v1/templates']),
    );
    expect((await app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
    // No LC_METRICS_TOKEN in the test's config: a server facing the internet keeps them.
    const refused = await app.inject({ method: 'GET', url: '/metrics' });
    expect(refused.statusCode).toBe(401);
    expect(refused.json().message).toContain('LC_METRICS_PORT');
  });
});
