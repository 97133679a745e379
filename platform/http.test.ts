// The HTTP kit on small servers: routes must declare their access, the declared credential
// is checked before anything of the route runs, refusals are coded, and the OpenAPI
// document shows each route's security as it was declared.
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCodes, LifecycleError } from './errors.ts';
import { createHash } from 'node:crypto';
import { loadConfig, proxyTrust } from './config.ts';
import {
  adminCredential,
  API_CONTENT_SECURITY_POLICY,
  CODED_ERROR_SCHEMA,
  bearerToken,
  httpServerOptions,
  inlineElements,
  operationalRoutes,
  pageSecurityPolicy,
  provideCredential,
  requireHttpKit,
  secretEquals,
  serveOperational,
  setupHttpKit,
  type AuditRecord,
  type Credential,
  type Role,
  type HttpKitOptions,
} from './http.ts';
import { createLogger } from './logger.ts';
import { createMetricsRegistry } from './metrics.ts';

const TOKEN = 'kit-admin-token-0123456789';
const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((a) => a.close()));
});

async function server(
  opts: HttpKitOptions = { credentials: { staff: adminCredential(TOKEN) } },
  fastifyOpts: FastifyServerOptions = {},
) {
  const app = Fastify(fastifyOpts);
  apps.push(app);
  await setupHttpKit(app, opts);
  return app;
}

/** A credential presented in the body, as ingest write keys may be. */
const bodyKey: Credential = {
  schemes: { bodyKey: { type: 'apiKey', in: 'header', name: 'x-key' } },
  readsBody: true,
  authenticate(req) {
    const key = (req.body as { key?: unknown } | undefined)?.key;
    if (key !== 'k1') throw new LifecycleError(ErrorCodes.Unauthorized, 'key required');
    return { id: 'k1-digest', name: 'source-1' };
  },
};

describe('route access declarations', () => {
  it('refuses a route that declares no access when it is registered, in a plugin as at the root', async () => {
    const app = await server();
    expect(() => app.get('/open', async () => 'served')).toThrow(
      /route GET \/open declares no access/,
    );
    const other = await server();
    await expect(
      other.register(async (scope) => {
        scope.post('/v1/things', async () => 'served');
      }),
    ).rejects.toThrow(/route POST \/v1\/things declares no access/);
  });

  it('refuses an unknown access word, and a credential the server does not check', async () => {
    const app = await server();
    expect(() => app.get('/x', { config: { auth: 'root' as never } }, async () => 'x')).toThrow(
      /unknown access "root"/,
    );
    expect(() => app.get('/y', { config: { auth: 'writeKey' } }, async () => 'y')).toThrow(
      /requires writeKey, which this server does not check/,
    );
  });

  it('makes route plugins refuse a server without the kit rather than serve their routes unchecked', () => {
    expect(() => requireHttpKit(Fastify())).toThrow(/need the HTTP kit/);
  });

  it('an admin route refuses no token, a wrong token and a wrong token of the right length with a coded 401', async () => {
    const app = await server();
    let ran = 0;
    app.get('/v1/secret', { config: { auth: 'admin' } }, async (req) => {
      ran++;
      return { principal: req.principal };
    });
    const sameLength = 'x'.repeat(TOKEN.length);
    for (const authorization of [
      undefined,
      'Bearer wrong',
      `Bearer ${sameLength}`,
      TOKEN,
      `Basic ${TOKEN}`,
      'Bearer ',
    ]) {
      const res = await app.inject({
        method: 'GET',
        url: '/v1/secret',
        headers: authorization === undefined ? {} : { authorization },
      });
      expect(res.statusCode, authorization).toBe(401);
      expect(res.json()).toEqual({
        code: 'LC_ERR_UNAUTHORIZED',
        message: 'send the admin token as `Authorization: Bearer <LC_ADMIN_TOKEN>`',
      });
      expect(res.headers['www-authenticate']).toBe('Bearer');
    }
    // fastify adds HEAD to every GET route; it is refused the same way.
    expect((await app.inject({ method: 'HEAD', url: '/v1/secret' })).statusCode).toBe(401);
    expect(ran).toBe(0);
    const ok = await app.inject({
      method: 'GET',
      url: '/v1/secret',
      headers: { authorization: `bearer  ${TOKEN}` },
    });
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toEqual({
      principal: { id: 'admin-token', name: 'LC_ADMIN_TOKEN', role: 'admin', via: 'token' },
    });
  });

  it('public routes take no credential; an empty admin token opens nothing', async () => {
    const app = await server({ credentials: { staff: adminCredential('') } });
    app.get('/page', { config: { auth: 'public' } }, async (req) => ({ principal: req.principal }));
    app.get('/v1/secret', { config: { auth: 'admin' } }, async () => 'never');
    expect((await app.inject({ method: 'GET', url: '/page' })).json()).toEqual({ principal: null });
    expect(
      (
        await app.inject({
          method: 'GET',
          url: '/v1/secret',
          headers: { authorization: 'Bearer ' },
        })
      ).statusCode,
    ).toBe(401);
    expect(
      (
        await app.inject({
          method: 'GET',
          url: '/v1/secret',
          headers: { authorization: 'Bearer x' },
        })
      ).statusCode,
    ).toBe(401);
  });

  it('a credential carried in the body is checked after parsing and before validation', async () => {
    const app = await server({ credentials: { writeKey: bodyKey } });
    const schema = {
      body: {
        type: 'object',
        required: ['key', 'event'],
        properties: { key: { type: 'string' }, event: { type: 'string' } },
      },
    };
    app.post('/v1/track', { config: { auth: 'writeKey' }, schema }, async (req) => ({
      source: req.principal?.name,
    }));
    const stranger = await app.inject({
      method: 'POST',
      url: '/v1/track',
      payload: { key: 'nope' },
    });
    expect(stranger.statusCode).toBe(401);
    expect(stranger.headers['www-authenticate']).toBeUndefined();
    const invalid = await app.inject({ method: 'POST', url: '/v1/track', payload: { key: 'k1' } });
    expect(invalid.statusCode).toBe(400);
    expect(invalid.json()).toEqual({
      code: 'LC_ERR_BAD_REQUEST',
      message: 'event is required',
      field: 'event',
    });
    expect(
      (
        await app.inject({ method: 'POST', url: '/v1/track', payload: { key: 'k1', event: 'A' } })
      ).json(),
    ).toEqual({ source: 'source-1' });
  });

  it('a room provides its own credential before its routes, once', async () => {
    const app = await server();
    await app.register(async (scope) => {
      provideCredential(scope, 'writeKey', bodyKey);
      scope.post('/v1/track', { config: { auth: 'writeKey' } }, async () => 'ok');
    });
    await app.ready();
    expect(
      (await app.inject({ method: 'POST', url: '/v1/track', payload: { key: 'k1' } })).statusCode,
    ).toBe(200);
    expect(() => provideCredential(app, 'writeKey', bodyKey)).toThrow(/already checks writeKey/);
  });
});

describe('coded refusals', () => {
  async function failing() {
    const app = await server({ credentials: {}, mediaTypeHint: 'send JSON' }, { bodyLimit: 100 });
    const route = { config: { auth: 'public' as const } };
    app.get('/lifecycle', route, async () => {
      throw new LifecycleError(ErrorCodes.RateLimited, 'slow down', {
        details: { field: 'batch[0]', retryAfterSeconds: 2 },
      });
    });
    app.get('/unexpected', route, async () => {
      throw new Error('connect ECONNREFUSED 10.0.0.7:6379 password=hunter2');
    });
    app.post(
      '/body',
      { ...route, schema: { body: { type: 'object', properties: { n: { type: 'integer' } } } } },
      async () => 'ok',
    );
    app.post('/small', { ...route, bodyLimit: 10 }, async () => 'ok');
    return app;
  }

  it('answers a LifecycleError with its status, code, message and field', async () => {
    const res = await (await failing()).inject({ method: 'GET', url: '/lifecycle' });
    expect(res.statusCode).toBe(429);
    expect(res.json()).toEqual({
      code: 'LC_ERR_RATE_LIMITED',
      message: 'slow down',
      field: 'batch[0]',
    });
  });

  it('maps fastify validation, body size, media type and JSON errors to coded ones', async () => {
    const app = await failing();
    const invalid = await app.inject({ method: 'POST', url: '/body', payload: { n: 'one' } });
    expect([invalid.statusCode, invalid.json()]).toEqual([
      400,
      { code: 'LC_ERR_BAD_REQUEST', message: 'n must be integer', field: 'n' },
    ]);
    const big = await app.inject({
      method: 'POST',
      url: '/body',
      payload: { n: 1, pad: 'x'.repeat(200) },
    });
    expect([big.statusCode, big.json()]).toEqual([
      413,
      { code: 'LC_ERR_PAYLOAD_TOO_LARGE', message: 'request body is larger than 100 bytes' },
    ]);
    const routeLimit = await app.inject({
      method: 'POST',
      url: '/small',
      payload: { pad: 'xxxxxxxxxx' },
    });
    expect(routeLimit.json()).toEqual({
      code: 'LC_ERR_PAYLOAD_TOO_LARGE',
      message: 'request body is larger than 10 bytes',
    });
    const xml = await app.inject({
      method: 'POST',
      url: '/body',
      payload: '<n/>',
      headers: { 'content-type': 'application/xml' },
    });
    expect([xml.statusCode, xml.json()]).toEqual([
      415,
      { code: 'LC_ERR_UNSUPPORTED_MEDIA_TYPE', message: 'send JSON' },
    ]);
    const broken = await app.inject({
      method: 'POST',
      url: '/body',
      payload: '{"n":',
      headers: { 'content-type': 'application/json' },
    });
    expect([broken.statusCode, broken.json()]).toEqual([
      400,
      { code: 'LC_ERR_BAD_REQUEST', message: 'body is not valid JSON' },
    ]);
  });

  it('answers an unexpected error as internal, keeping its message in the log only', async () => {
    const res = await (await failing()).inject({ method: 'GET', url: '/unexpected' });
    expect(res.statusCode).toBe(500);
    expect(res.json()).toEqual({ code: 'LC_ERR_INTERNAL', message: 'internal error' });
    expect(res.body).not.toContain('hunter2');
  });

  it('lets a server shape the refusal body and see each refusal', async () => {
    const seen: string[] = [];
    const app = await server({
      failureBody: (f) => ({ success: false, code: f.code, message: f.message }),
      failureSchema: {
        ...CODED_ERROR_SCHEMA,
        properties: { success: { type: 'boolean' }, ...CODED_ERROR_SCHEMA.properties },
      },
      onFailure: (f, _req, reply) => {
        seen.push(f.code);
        void reply.header('retry-after', String(f.details?.retryAfterSeconds ?? 1));
      },
    });
    app.get('/limited', { config: { auth: 'public' } }, async () => {
      throw new LifecycleError(ErrorCodes.RateLimited, 'slow down', {
        details: { retryAfterSeconds: 2 },
      });
    });
    const res = await app.inject({ method: 'GET', url: '/limited' });
    expect(res.json()).toEqual({
      success: false,
      code: 'LC_ERR_RATE_LIMITED',
      message: 'slow down',
    });
    expect(res.headers['retry-after']).toBe('2');
    expect((await app.inject({ method: 'GET', url: '/nowhere' })).json()).toEqual({
      success: false,
      code: 'LC_ERR_NOT_FOUND',
      message: 'Route GET:/nowhere not found',
    });
    expect(seen).toEqual(['LC_ERR_RATE_LIMITED']);
  });

  it('logs and answers a missed route by its path, never its query', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const app = await server(undefined, {
      loggerInstance: createLogger({ level: 'info' }, sink),
      logController: new LogController({ disableRequestLogging: true }),
    });
    const res = await app.inject({ method: 'GET', url: '/t/c/?t=signed-secret-token' });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({ code: 'LC_ERR_NOT_FOUND', message: 'Route GET:/t/c/ not found' });
    expect(lines.join('')).toContain('route not found');
    expect(lines.join('')).not.toContain('signed-secret-token');
  });
});

describe('OpenAPI document, health and metrics', () => {
  it("marks each route's security from its declaration, with the schemes of the credentials provided", async () => {
    const app = await server({
      credentials: { staff: adminCredential(TOKEN) },
      openapi: { info: { title: 'kit', version: '1' } },
    });
    operationalRoutes(app, {
      metrics: createMetricsRegistry({ defaults: false }),
      health: () => ({ ok: true }),
    });
    app.get(
      '/v1/users',
      { config: { auth: 'admin' }, schema: { summary: 'users' } },
      async () => [],
    );
    app.delete('/v1/users/:id', { config: { auth: 'admin' } }, async () => null);
    app.get('/page', { config: { auth: 'public' } }, async () => 'page');
    await app.register(async (scope) => {
      provideCredential(scope, 'writeKey', bodyKey);
      scope.post('/v1/track', { config: { auth: 'writeKey' } }, async () => 'ok');
    });
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json() as {
      paths: Record<string, Record<string, { security?: unknown; summary?: string }>>;
      components: { securitySchemes: Record<string, unknown> };
    };
    expect(Object.keys(doc.paths).sort()).toEqual([
      '/health',
      '/metrics',
      '/openapi.json',
      '/page',
      '/v1/track',
      '/v1/users',
      '/v1/users/{id}',
    ]);
    expect(doc.paths['/v1/users']!.get).toMatchObject({
      summary: 'users',
      security: [{ adminToken: [] }],
    });
    expect(doc.paths['/v1/users/{id}']!.delete!.security).toEqual([{ adminToken: [] }]);
    expect(doc.paths['/v1/track']!.post!.security).toEqual([{ bodyKey: [] }]);
    // Public says so: no credential, rather than nothing said.
    expect(doc.paths['/page']!.get!.security).toEqual([]);
    expect(doc.paths['/health']!.get!.security).toEqual([]);
    expect(Object.keys(doc.components.securitySchemes).sort()).toEqual(['adminToken', 'bodyKey']);
  });

  it('serves /health with the report (503 when not ok) and /metrics in Prometheus text', async () => {
    const app = await server();
    const metrics = createMetricsRegistry({ defaults: false });
    let ok = true;
    operationalRoutes(app, { metrics, health: () => ({ ok, kafka: { inFlightEvents: 0 } }) });
    expect((await app.inject({ method: 'GET', url: '/health' })).json()).toEqual({
      ok: true,
      kafka: { inFlightEvents: 0 },
    });
    ok = false;
    expect((await app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(503);
    const res = await app.inject({ method: 'GET', url: '/metrics' });
    expect(res.headers['content-type']).toBe(metrics.contentType);
  });
});

describe('request metrics', () => {
  it('times every answer by method, route pattern and status, never by the URL it was asked with', async () => {
    const metrics = createMetricsRegistry({ defaults: false });
    const app = await server({ credentials: { staff: adminCredential(TOKEN) }, metrics });
    app.get('/v1/users/:id', { config: { auth: 'admin' } }, async (req) => req.params);
    const auth = { authorization: `Bearer ${TOKEN}` };
    await app.inject({ method: 'GET', url: '/v1/users/alice?t=signed-token', headers: auth });
    await app.inject({ method: 'GET', url: '/v1/users/bob', headers: auth });
    await app.inject({ method: 'GET', url: '/v1/users/carol' });
    await app.inject({ method: 'GET', url: '/v1/nothing/here/42' });
    const text = await metrics.metrics();
    const counts = Object.fromEntries(
      [...text.matchAll(/^lifecycle_http_request_seconds_count\{([^}]*)\} (\d+)$/gm)].map((m) => [
        m[1],
        Number(m[2]),
      ]),
    );
    expect(counts).toEqual({
      'method="GET",route="/v1/users/:id",status_code="200"': 2,
      'method="GET",route="/v1/users/:id",status_code="401"': 1,
      'method="GET",route="unmatched",status_code="404"': 1,
    });
    expect(text).not.toMatch(/alice|bob|signed-token|nothing/);
  });

  it('shares one histogram between the servers of one process', async () => {
    const metrics = createMetricsRegistry({ defaults: false });
    const a = await server({ metrics });
    const b = await server({ metrics });
    a.get('/a', { config: { auth: 'public' } }, async () => 'a');
    b.get('/b', { config: { auth: 'public' } }, async () => 'b');
    await a.inject({ method: 'GET', url: '/a' });
    await b.inject({ method: 'GET', url: '/b' });
    const text = await metrics.metrics();
    expect(text).toContain('lifecycle_http_request_seconds_count{method="GET",route="/a"');
    expect(text).toContain('lifecycle_http_request_seconds_count{method="GET",route="/b"');
  });
});

describe('credential helpers', () => {
  it('reads a bearer token and compares secrets of any length', () => {
    expect(bearerToken('Bearer  abc ')).toBe('abc');
    expect(bearerToken('bearer abc')).toBe('abc');
    expect(bearerToken('Basic abc')).toBeUndefined();
    expect(bearerToken('Bearer ')).toBeUndefined();
    expect(bearerToken(undefined)).toBeUndefined();
    expect(secretEquals('abc', 'abc')).toBe(true);
    expect(secretEquals('abd', 'abc')).toBe(false);
    expect(secretEquals('abcd', 'abc')).toBe(false);
  });
});

const BASELINE = {
  'content-security-policy': API_CONTENT_SECURITY_POLICY,
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
};

describe('security headers', () => {
  it('are on every answer: a route, a refusal, an error, a miss, a bad URL and a bad body', async () => {
    const app = await server(undefined, httpServerOptions({ trustProxy: 'false' }));
    app.get('/open', { config: { auth: 'public' } }, async () => ({ ok: true }));
    app.get('/admin', { config: { auth: 'admin' } }, async () => ({ ok: true }));
    app.get('/boom', { config: { auth: 'public' } }, async () => {
      throw new Error('boom');
    });
    app.post('/echo', { config: { auth: 'public' } }, async (req) => req.body);
    const answers = await Promise.all([
      app.inject({ method: 'GET', url: '/open' }),
      app.inject({ method: 'GET', url: '/admin' }),
      app.inject({ method: 'GET', url: '/boom' }),
      app.inject({ method: 'GET', url: '/nowhere?t=x' }),
      app.inject({ method: 'GET', url: '/open/%E0%A4%A' }),
      app.inject({
        method: 'POST',
        url: '/echo',
        headers: { 'content-type': 'application/json' },
        payload: '{"a":',
      }),
    ]);
    expect(answers.map((r) => r.statusCode)).toEqual([200, 401, 500, 404, 400, 400]);
    expect(answers[4]!.json()).toEqual({
      code: 'LC_ERR_BAD_REQUEST',
      message: 'the URL path is not valid (malformed percent-encoding)',
    });
    for (const res of answers) expect(res.headers).toMatchObject(BASELINE);
    expect(API_CONTENT_SECURITY_POLICY).toMatch(/default-src 'none'/);
    expect(API_CONTENT_SECURITY_POLICY).toMatch(/frame-ancestors 'none'/);
  });

  it("a page's policy admits its own inline code by hash, and nothing inline besides", async () => {
    const html = `<!doctype html><html><head><style>p{color:red}</style></head><body><p>x</p>
<script src="/lib.js"></script><script>console.log("page")</script></body></html>`;
    const inline = inlineElements(html);
    expect(inline).toEqual({ scripts: ['console.log("page")'], styles: ['p{color:red}'] });
    const hash = (t: string) => `'sha256-${createHash('sha256').update(t).digest('base64')}'`;
    const policy = pageSecurityPolicy({ ...inline, connectSelf: true, formsSelf: true });
    expect(policy).toContain(`script-src ${hash('console.log("page")')}`);
    expect(policy).toContain(`style-src ${hash('p{color:red}')}`);
    expect(policy).toContain("connect-src 'self'");
    expect(policy).toContain("form-action 'self'");
    expect(policy).toContain("frame-ancestors 'none'");
    expect(policy).toContain("default-src 'none'");
    expect(policy).not.toMatch(/unsafe-inline|unsafe-eval|\*/);
    expect(pageSecurityPolicy({})).toMatch(
      /script-src 'none'; style-src 'none'.*connect-src 'none'; form-action 'none'/,
    );

    // A route that serves a page replaces the baseline policy; the other headers stay.
    const app = await server();
    app.get('/page', { config: { auth: 'public' } }, async (_req, reply) =>
      reply.type('text/html; charset=utf-8').header('content-security-policy', policy).send(html),
    );
    const res = await app.inject({ method: 'GET', url: '/page' });
    expect(res.headers).toMatchObject({ ...BASELINE, 'content-security-policy': policy });
  });
});

describe('proxy trust (LC_TRUST_PROXY)', () => {
  it('reads false, true, a hop count and lists of addresses, CIDRs and named ranges, and refuses the rest', () => {
    expect(proxyTrust('false')).toBe(false);
    expect(proxyTrust('')).toBe(false);
    expect(proxyTrust('0')).toBe(false);
    expect(proxyTrust('TRUE')).toBe(true);
    expect(proxyTrust('2')).toBe(2);
    expect(proxyTrust('10.0.0.0/8, 192.0.2.7,loopback,::1,fd00::/8')).toEqual([
      '10.0.0.0/8',
      '192.0.2.7',
      'loopback',
      '::1',
      'fd00::/8',
    ]);
    for (const bad of [
      'yes',
      '10.0.0.0/33',
      '10.0.0/8',
      'proxy.internal',
      '1.2.3.4/8/1',
      '::1/129',
    ])
      expect(() => proxyTrust(bad), bad).toThrow(/is not an address, a CIDR/);
    expect(loadConfig({}).http.trustProxy).toBe('false');
    expect(() => loadConfig({ LC_TRUST_PROXY: '10.0.0.0/40' })).toThrow(
      /LC_TRUST_PROXY="10.0.0.0\/40"/,
    );
  });

  async function whoIs(trustProxy: string, remoteAddress: string, forwardedFor?: string) {
    const app = await server(undefined, httpServerOptions({ trustProxy }));
    app.get('/who', { config: { auth: 'public' } }, async (req) => ({ ip: req.ip }));
    const res = await app.inject({
      method: 'GET',
      url: '/who',
      remoteAddress,
      headers: forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor },
    });
    return (res.json() as { ip: string }).ip;
  }

  it('by default a spoofed X-Forwarded-For does not change request.ip; a trusted proxy does', async () => {
    expect(await whoIs('false', '198.51.100.7', '203.0.113.9')).toBe('198.51.100.7');
    expect(await whoIs('true', '198.51.100.7', '203.0.113.9')).toBe('203.0.113.9');
    // Trusted by address: only that peer may name the client.
    expect(await whoIs('198.51.100.0/24', '198.51.100.7', '203.0.113.9')).toBe('203.0.113.9');
    expect(await whoIs('198.51.100.0/24', '192.0.2.1', '203.0.113.9')).toBe('192.0.2.1');
    // One hop: the address the proxy appended, not what the client wrote before it.
    expect(await whoIs('1', '198.51.100.7', '10.6.6.6, 203.0.113.9')).toBe('203.0.113.9');
  });
});

/** A staff credential whose bearer token is the role it proves (`Bearer analyst`). */
const roleIsToken: Credential = {
  schemes: { staffKey: { type: 'http', scheme: 'bearer' } },
  challenge: 'Bearer',
  authenticate(req) {
    const token = bearerToken(req.headers.authorization);
    if (token === undefined) throw new LifecycleError(ErrorCodes.Unauthorized, 'no token');
    if (token === 'norole') return { id: 'x', name: 'x' };
    return { id: `key_${token}`, name: token, role: token as Role };
  },
};

describe('staff roles', () => {
  it('admit the declared roles and admin, refuse every other role with a coded 403 before the route runs', async () => {
    const app = await server({ credentials: { staff: roleIsToken } });
    let ran = 0;
    app.get('/v1/panel', { config: { auth: { roles: ['analyst'] } } }, async () => {
      ran++;
      return { ok: true };
    });
    const call = (token?: string) =>
      app.inject({
        method: 'GET',
        url: '/v1/panel',
        headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
      });
    expect((await call('analyst')).statusCode).toBe(200);
    expect((await call('admin')).statusCode).toBe(200);
    expect(ran).toBe(2);
    for (const role of ['marketer', 'support', 'service', 'norole']) {
      const res = await call(role);
      expect(res.statusCode, role).toBe(403);
      expect(res.json()).toMatchObject({ code: 'LC_ERR_ROLE_FORBIDDEN' });
      expect(res.json().message).toContain('admin, analyst');
    }
    expect((await call()).statusCode).toBe(401);
    expect(ran).toBe(2);
  });

  it("'admin' is short for { roles: ['admin'] }", async () => {
    const app = await server({ credentials: { staff: roleIsToken } });
    app.get('/v1/admin-only', { config: { auth: 'admin' } }, async () => 'ok');
    const as = (t: string) =>
      app.inject({ url: '/v1/admin-only', headers: { authorization: `Bearer ${t}` } });
    expect((await as('admin')).statusCode).toBe(200);
    expect((await as('service')).statusCode).toBe(403);
  });

  it('refuses at registration an empty or unknown role, and roles on a server without a staff credential', async () => {
    const app = await server({ credentials: { staff: roleIsToken } });
    expect(() => app.get('/a', { config: { auth: { roles: [] } } }, async () => 'x')).toThrow(
      /without any role/,
    );
    expect(() =>
      app.get('/b', { config: { auth: { roles: ['auditor' as Role] } } }, async () => 'x'),
    ).toThrow(/unknown role\(s\) auditor/);
    const bare = await server({ credentials: {} });
    expect(() =>
      bare.get('/c', { config: { auth: { roles: ['support'] } } }, async () => 'x'),
    ).toThrow(/does not check: provide its staff credential/);
  });

  it('shows each staff route its roles (x-roles) and security in the OpenAPI document', async () => {
    const app = await server({
      credentials: { staff: roleIsToken },
      openapi: { info: { title: 't', version: '1' } },
    });
    app.get('/v1/x', { config: { auth: { roles: ['support', 'service'] } } }, async () => 'x');
    app.get('/v1/y', { config: { auth: 'public' } }, async () => 'y');
    await app.ready();
    const doc = app.swagger() as unknown as {
      paths: Record<string, Record<string, Record<string, unknown>>>;
    };
    expect(doc.paths['/v1/x']!.get).toMatchObject({
      'x-roles': ['admin', 'support', 'service'],
      security: [{ staffKey: [] }],
    });
    expect(doc.paths['/v1/y']!.get!['x-roles']).toBeUndefined();
  });
});

describe('audit through the kit', () => {
  it('records who did what, with role, request id and time, and never a field named like a secret', async () => {
    const records: AuditRecord[] = [];
    const app = Fastify(httpServerOptions({ trustProxy: 'false' }));
    apps.push(app);
    await setupHttpKit(app, {
      credentials: { staff: roleIsToken },
      audit: { append: async (r) => (records.push(r), String(records.length)) },
      now: () => Date.parse('2026-01-02T03:04:05Z'),
    });
    app.post('/v1/things', { config: { auth: { roles: ['marketer'] } } }, async (req) => {
      await req.audit({
        action: 'thing.create',
        target: 'thing:1',
        after: { name: 'n', secret: 's3cr3t', nested: [{ apiKey: 'k', token: 't', ok: 1 }] },
      });
      return { ok: true };
    });
    const res = await app.inject({
      method: 'POST',
      url: '/v1/things',
      headers: { authorization: 'Bearer marketer' },
    });
    expect(res.statusCode).toBe(200);
    expect(records).toEqual([
      {
        actor: 'key_marketer',
        actorName: 'marketer',
        role: 'marketer',
        action: 'thing.create',
        target: 'thing:1',
        before: null,
        after: {
          name: 'n',
          secret: '[redacted]',
          nested: [{ apiKey: '[redacted]', token: '[redacted]', ok: 1 }],
        },
        requestId: res.headers['x-request-id'],
        at: '2026-01-02T03:04:05.000Z',
      },
    ]);
    expect(String(res.headers['x-request-id'])).toMatch(/^[0-9a-f-]{36}$/);
    expect(JSON.stringify(records)).not.toContain('s3cr3t');
  });

  it('answers 500 when a route audits on a server without an audit log', async () => {
    const app = await server({ credentials: { staff: roleIsToken } });
    app.post('/v1/things', { config: { auth: { roles: ['marketer'] } } }, async (req) => {
      await req.audit({ action: 'thing.create', target: 'thing:1' });
      return { ok: true };
    });
    const res = await app.inject({
      method: 'POST',
      url: '/v1/things',
      headers: { authorization: 'Bearer admin' },
    });
    expect(res.statusCode).toBe(500);
  });
});

describe("a worker's operational endpoint", () => {
  it('serves health, metrics and its document on the kit, and answers a miss with a coded 404 and the security headers', async () => {
    const metrics = createMetricsRegistry({ defaults: false });
    const app = await serveOperational(
      { port: 0, host: '127.0.0.1' },
      { metrics, health: () => ({ ok: false, kafka: 'down' }) },
    );
    apps.push(app);
    const { port } = app.server.address() as AddressInfo;
    const get = (path: string) => fetch(`http://127.0.0.1:${port}${path}`);
    const miss = await get('/nowhere?t=token');
    expect([miss.status, await miss.json()]).toEqual([
      404,
      { code: 'LC_ERR_NOT_FOUND', message: 'Route GET:/nowhere not found' },
    ]);
    expect(miss.headers.get('x-content-type-options')).toBe('nosniff');
    expect(miss.headers.get('content-security-policy')).toBe(API_CONTENT_SECURITY_POLICY);
    const health = await get('/health');
    expect([health.status, await health.json()]).toEqual([503, { ok: false, kafka: 'down' }]);
    expect((await get('/metrics')).headers.get('content-type')).toBe(metrics.contentType);
    const doc = (await (await get('/openapi.json')).json()) as { paths: Record<string, unknown> };
    expect(Object.keys(doc.paths).sort()).toEqual(['/health', '/metrics', '/openapi.json']);
  });
});
