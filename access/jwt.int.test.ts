// JWT bearer tokens against a JWKS served over HTTP by a local server, with keys made by
// jose: the issuer, audience, algorithms, expiry and role claim decide, and a token
// signed with a key outside the set, or with an HMAC, is refused.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryDeliveryStores } from '../delivery/index.ts';
import { createMemoryInbox, createMemoryLiveChannel } from '../delivery/inapp/index.ts';
import { InMemoryBus } from '../platform/bus.ts';
import { loadConfig } from '../platform/config.ts';
import { silentLogger } from '../platform/logger.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import { createApiServer } from '../bin/api.ts';
import { createJwtVerifier, type JwtVerifier } from './jwt.ts';

const ISSUER = 'https://id.example.test/';
const AUDIENCE = 'lifecycle-api';

describe('JWT bearer tokens', () => {
  let jwks: Server;
  let jwksUrl: string;
  let rsa: CryptoKey;
  let ec: CryptoKey;
  let stranger: CryptoKey;
  let verify: JwtVerifier;
  let app: FastifyInstance;

  const token = (
    key: CryptoKey,
    claims: Record<string, unknown> = { role: 'analyst' },
    o: { alg?: string; kid?: string; iss?: string; aud?: string; exp?: string | number } = {},
  ) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: o.alg ?? 'RS256', kid: o.kid ?? 'rsa-1' })
      .setSubject('ana')
      .setIssuer(o.iss ?? ISSUER)
      .setAudience(o.aud ?? AUDIENCE)
      .setIssuedAt()
      .setExpirationTime(o.exp ?? '5m')
      .sign(key);

  beforeAll(async () => {
    const r = await generateKeyPair('RS256');
    const e = await generateKeyPair('ES256');
    const s = await generateKeyPair('RS256');
    rsa = r.privateKey;
    ec = e.privateKey;
    stranger = s.privateKey;
    const keys = [
      { ...(await exportJWK(r.publicKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' },
      { ...(await exportJWK(e.publicKey)), kid: 'ec-1', alg: 'ES256', use: 'sig' },
    ];
    jwks = createServer((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys }));
    });
    await new Promise<void>((done) => jwks.listen(0, '127.0.0.1', done));
    jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/.well-known/jwks.json`;
    verify = createJwtVerifier({ jwksUrl, issuer: ISSUER, audience: AUDIENCE, roleClaim: 'role' });
    const config = loadConfig(
      {},
      {
        'auth.jwtJwksUrl': jwksUrl,
        'auth.jwtIssuer': ISSUER,
        'auth.jwtAudience': AUDIENCE,
        'auth.jwtRoleClaim': 'https://lifecycle/roles',
      },
    );
    app = await createApiServer(config, {
      memory: {
        stores: createMemoryDeliveryStores(),
        inbox: createMemoryInbox(),
        live: createMemoryLiveChannel(),
      },
      publisher: new InMemoryBus(1).publisher(),
      logger: silentLogger(),
      metrics: createMetricsRegistry({ defaults: false }),
    });
  });
  afterAll(async () => {
    await app?.close();
    await new Promise((done) => jwks?.close(done));
  });

  it('accepts RS256 and ES256 tokens of the issuer for the audience, with the role of the claim', async () => {
    const exp = Math.floor(Date.now() / 1000) + 300;
    expect(await verify(await token(rsa, { role: 'analyst' }, { exp }))).toEqual({
      id: 'jwt:ana',
      name: 'ana',
      role: 'analyst',
      via: 'jwt',
      expiresAt: new Date(exp * 1000).toISOString(),
    });
    expect(
      await verify(
        await token(
          ec,
          { role: ['unknown', 'support'], email: 'ana@example.com' },
          { alg: 'ES256', kid: 'ec-1' },
        ),
      ),
    ).toMatchObject({ id: 'jwt:ana', name: 'ana@example.com', role: 'support', via: 'jwt' });
  });

  it('GET /v1/me says who a JWT is, its role and when it expires (the admin pages log in with it)', async () => {
    const exp = Math.floor(Date.now() / 1000) + 600;
    const res = await app.inject({
      url: '/v1/me',
      headers: {
        authorization: `Bearer ${await token(rsa, { 'https://lifecycle/roles': 'support', email: 'ana@example.com' }, { exp })}`,
      },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      actor: 'jwt:ana',
      name: 'ana@example.com',
      role: 'support',
      via: 'jwt',
      expiresAt: new Date(exp * 1000).toISOString(),
    });
  });

  it('refuses another issuer, another audience, an expired token and a key outside the set (401)', async () => {
    for (const [what, jwt] of [
      ['issuer', await token(rsa, { role: 'admin' }, { iss: 'https://evil.example/' })],
      ['audience', await token(rsa, { role: 'admin' }, { aud: 'another-app' })],
      ['expiry', await token(rsa, { role: 'admin' }, { exp: Math.floor(Date.now() / 1000) - 120 })],
      ['key', await token(stranger, { role: 'admin' })],
    ] as const) {
      const refusal = await verify(jwt).then(
        () => null,
        (e: unknown) => e,
      );
      expect(refusal, what).toMatchObject({ code: 'LC_ERR_UNAUTHORIZED', status: 401 });
    }
  });

  it('refuses an HMAC token and an unsigned one whatever they claim', async () => {
    const hmac = await new SignJWT({ role: 'admin' })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('mallory')
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode('x'.repeat(32)));
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const none = `${b64({ alg: 'none' })}.${b64({ sub: 'm', role: 'admin', iss: ISSUER, aud: AUDIENCE, exp: 9e9 })}.`;
    for (const jwt of [hmac, none])
      await expect(verify(jwt)).rejects.toMatchObject({ code: 'LC_ERR_UNAUTHORIZED' });
  });

  it('refuses a valid token without a staff role (403)', async () => {
    await expect(verify(await token(rsa, { role: 'owner' }))).rejects.toMatchObject({
      code: 'LC_ERR_FORBIDDEN',
      status: 403,
    });
  });

  it('serves staff routes to a JWT by the role of LC_JWT_ROLE_CLAIM, and refuses other roles', async () => {
    const as = async (role: string) =>
      app.inject({
        url: '/v1/templates',
        headers: {
          authorization: `Bearer ${await token(rsa, { 'https://lifecycle/roles': [role] })}`,
        },
      });
    expect((await as('marketer')).statusCode).toBe(200);
    const analyst = await as('analyst');
    expect(analyst.statusCode).toBe(403);
    expect(analyst.json().code).toBe('LC_ERR_ROLE_FORBIDDEN');
  });
});
