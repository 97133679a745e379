// Push credentials on a moved clock: FCM access tokens are minted with a verifiable RS256
// assertion, cached until shortly before they expire and minted once for concurrent callers;
// APNs provider tokens are ES256, carry kid/iss/iat, and are renewed within APNs' window.
import { generateKeyPairSync } from 'node:crypto';
import { decodeProtectedHeader, importSPKI, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import {
  ACCESS_TOKEN_MARGIN_MS,
  APNS_MIN_REFRESH_MS,
  APNS_TOKEN_LIFETIME_MS,
  createApnsTokenSource,
  createFcmTokenSource,
  FCM_SCOPE,
  parseServiceAccount,
} from './push-auth.ts';

const TOKEN_URI = 'https://oauth2.example.test/token';

function rsaAccount() {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    key: parseServiceAccount(
      JSON.stringify({
        client_email: 'svc@demo.iam.gserviceaccount.com',
        private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
        token_uri: TOKEN_URI,
        project_id: 'demo',
      }),
    ),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** A token endpoint that verifies the assertion like Google's and issues numbered tokens. */
function tokenEndpoint(publicPem: string, clock: { now: number }, expiresIn = 3600) {
  const calls: { iat: number; form: URLSearchParams }[] = [];
  const fetchFn = (async (url: string | URL | Request, init?: RequestInit) => {
    expect(String(url)).toBe(TOKEN_URI);
    const form = new URLSearchParams(String(init?.body));
    const { payload } = await jwtVerify(
      form.get('assertion') ?? '',
      await importSPKI(publicPem, 'RS256'),
      {
        issuer: 'svc@demo.iam.gserviceaccount.com',
        audience: TOKEN_URI,
        currentDate: new Date(clock.now),
      },
    );
    calls.push({ iat: payload.iat!, form });
    return new Response(
      JSON.stringify({ access_token: `at-${calls.length}`, expires_in: expiresIn }),
      { status: 200, headers: { 'content-type': 'application/json' } },
    );
  }) as typeof globalThis.fetch;
  return { fetch: fetchFn, calls };
}

describe('FCM access tokens', () => {
  it('mints with a verified RS256 assertion and reuses the token until shortly before it expires', async () => {
    const { key, publicPem } = rsaAccount();
    const clock = { now: Date.UTC(2026, 11, 1, 10) };
    const endpoint = tokenEndpoint(publicPem, clock);
    const source = createFcmTokenSource(key, { fetch: endpoint.fetch, now: () => clock.now });

    expect(await source.token()).toBe('at-1');
    const first = endpoint.calls[0]!;
    expect(first.form.get('grant_type')).toBe('urn:ietf:params:oauth:grant-type:jwt-bearer');
    expect(first.iat).toBe(clock.now / 1000);
    const { payload } = await jwtVerify(
      first.form.get('assertion')!,
      await importSPKI(publicPem, 'RS256'),
      { currentDate: new Date(clock.now) },
    );
    expect(payload).toMatchObject({
      scope: FCM_SCOPE,
      sub: key.client_email,
      exp: payload.iat! + 3600,
    });

    clock.now += 3600_000 - ACCESS_TOKEN_MARGIN_MS - 1;
    expect(await source.token()).toBe('at-1');
    expect(endpoint.calls).toHaveLength(1);
    clock.now += 1;
    expect(await source.token()).toBe('at-2');
    expect(endpoint.calls).toHaveLength(2);
  });

  it('mints once for concurrent callers, again after invalidate, and does not cache a failure', async () => {
    const { key, publicPem } = rsaAccount();
    const clock = { now: Date.UTC(2026, 11, 1, 10) };
    const endpoint = tokenEndpoint(publicPem, clock);
    let fail = true;
    const source = createFcmTokenSource(key, {
      fetch: (async (url: string, init?: RequestInit) =>
        fail
          ? new Response('{"error":"invalid_grant"}', { status: 400 })
          : endpoint.fetch(url, init)) as typeof fetch,
      now: () => clock.now,
    });
    await expect(source.token()).rejects.toThrow(/answered 400 invalid_grant/);
    fail = false;
    expect(await Promise.all([source.token(), source.token(), source.token()])).toEqual([
      'at-1',
      'at-1',
      'at-1',
    ]);
    expect(endpoint.calls).toHaveLength(1);
    source.invalidate();
    expect(await source.token()).toBe('at-2');
  });

  it('renews a short-lived token at half its life when the margin would exceed it', async () => {
    const { key, publicPem } = rsaAccount();
    const clock = { now: Date.UTC(2026, 11, 1, 10) };
    const endpoint = tokenEndpoint(publicPem, clock, 120);
    const source = createFcmTokenSource(key, { fetch: endpoint.fetch, now: () => clock.now });
    expect(await source.token()).toBe('at-1');
    clock.now += 59_000;
    expect(await source.token()).toBe('at-1');
    clock.now += 1_000;
    expect(await source.token()).toBe('at-2');
  });

  it('names what a key file lacks', () => {
    expect(() => parseServiceAccount('{"client_email":"a"}')).toThrow(/lacks "private_key"/);
    expect(() => parseServiceAccount('not json')).toThrow(/not JSON/);
  });
});

describe('APNs provider tokens', () => {
  it('signs ES256 with kid, iss and iat, and rotates after 40 minutes, not before', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const clock = { now: Date.UTC(2026, 11, 1, 10) };
    const source = createApnsTokenSource(
      {
        key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
        keyId: 'KEY1234567',
        teamId: 'TEAM123456',
      },
      { now: () => clock.now },
    );
    const start = clock.now;
    const first = await source.token();
    expect(decodeProtectedHeader(first)).toEqual({ alg: 'ES256', kid: 'KEY1234567' });
    const { payload } = await jwtVerify(
      first,
      await importSPKI(publicKey.export({ type: 'spki', format: 'pem' }).toString(), 'ES256'),
      { issuer: 'TEAM123456', currentDate: new Date(clock.now) },
    );
    expect(payload.iat).toBe(clock.now / 1000);

    // APNs refuses updates more often than every 20 minutes: an early "expired" keeps the token.
    clock.now += APNS_MIN_REFRESH_MS - 1000;
    source.invalidate();
    expect(await source.token()).toBe(first);
    clock.now = start + APNS_TOKEN_LIFETIME_MS - 1;
    expect(await source.token()).toBe(first);
    clock.now = start + APNS_TOKEN_LIFETIME_MS;
    const second = await source.token();
    expect(second).not.toBe(first);
    expect(decodeProtectedHeader(second).kid).toBe('KEY1234567');
    // After 20 minutes an "expired" answer renews it.
    clock.now += APNS_MIN_REFRESH_MS;
    source.invalidate();
    expect(await source.token()).not.toBe(second);
    // Never older than the hour APNs accepts.
    expect(APNS_TOKEN_LIFETIME_MS).toBeLessThan(60 * 60_000);
    expect(APNS_TOKEN_LIFETIME_MS).toBeGreaterThanOrEqual(20 * 60_000);
  });
});
