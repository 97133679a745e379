// Credentials of the push services, minted by the product instead of pasted in as tokens that
// die within the hour:
// - FCM HTTP v1 takes an OAuth2 access token of the project's service account. It is obtained
//   with the JWT bearer grant (RFC 7523): an RS256 assertion signed with the service account's
//   private key, posted to its `token_uri`; the token is cached until shortly before it expires.
// - APNs takes a provider token: an ES256 JWT (`kid` = key id, `iss` = team id, `iat`) signed
//   with the team's .p8 key. APNs refuses tokens older than an hour and answers
//   TooManyProviderTokenUpdates when they change more often than every 20 minutes, so one token
//   serves 40 minutes (and is renewed early only when APNs says ExpiredProviderToken).
import { readFileSync } from 'node:fs';
import { importPKCS8, SignJWT } from 'jose';

export interface ServiceAccountKey {
  client_email: string;
  private_key: string;
  token_uri: string;
  project_id?: string;
}

/** The scope FCM HTTP v1 sends need. */
export const FCM_SCOPE = 'https://www.googleapis.com/auth/firebase.messaging';
/** Renew an access token this long before its expiry, so no request carries one that expires in flight. */
export const ACCESS_TOKEN_MARGIN_MS = 5 * 60_000;
/** How long one APNs provider token is used: within APNs' 20-to-60-minute window, with room both ways. */
export const APNS_TOKEN_LIFETIME_MS = 40 * 60_000;
/** A token renewed sooner than this after the last one would be TooManyProviderTokenUpdates. */
export const APNS_MIN_REFRESH_MS = 20 * 60_000;

/** A value given inline, or the path of a file holding it (`{`/`-----BEGIN` start an inline value). */
export function inlineOrFile(value: string, what: string): string {
  const v = value.trim();
  if (v.startsWith('{') || v.startsWith('-----BEGIN')) return v;
  try {
    return readFileSync(v, 'utf8');
  } catch (err) {
    throw new Error(
      `${what}: not an inline key and no readable file at that path (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
}

export function parseServiceAccount(json: string): ServiceAccountKey {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    throw new Error('LC_FCM_SERVICE_ACCOUNT is not JSON: give the service-account key file');
  }
  const k = (v ?? {}) as Partial<Record<keyof ServiceAccountKey, unknown>>;
  for (const field of ['client_email', 'private_key', 'token_uri'] as const)
    if (typeof k[field] !== 'string' || !k[field])
      throw new Error(`LC_FCM_SERVICE_ACCOUNT lacks "${field}": give the service-account key file`);
  return {
    client_email: k.client_email as string,
    private_key: k.private_key as string,
    token_uri: k.token_uri as string,
    ...(typeof k.project_id === 'string' ? { project_id: k.project_id } : {}),
  };
}

export interface TokenSource {
  /** A valid token, minted or renewed when the cached one is (nearly) expired. */
  token(): Promise<string>;
  /** Drops the cached token: the service refused it, the next call mints a new one. */
  invalidate(): void;
}

/**
 * FCM access tokens from a service-account key. Concurrent callers share one mint; a failed
 * mint is not cached (the next call tries again).
 */
export function createFcmTokenSource(
  key: ServiceAccountKey,
  deps: { fetch?: typeof fetch; now?: () => number; timeoutMs?: number } = {},
): TokenSource {
  const doFetch = deps.fetch ?? fetch;
  const now = deps.now ?? Date.now;
  let cached: { token: string; renewAt: number } | undefined;
  let minting: Promise<string> | undefined;
  const privateKey = importPKCS8(key.private_key, 'RS256');

  async function mint(): Promise<string> {
    const iat = Math.floor(now() / 1000);
    const assertion = await new SignJWT({ scope: FCM_SCOPE })
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT' })
      .setIssuer(key.client_email)
      .setSubject(key.client_email)
      .setAudience(key.token_uri)
      .setIssuedAt(iat)
      .setExpirationTime(iat + 3600)
      .sign(await privateKey);
    const res = await doFetch(key.token_uri, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
        assertion,
      }).toString(),
      redirect: 'error',
      signal: AbortSignal.timeout(deps.timeoutMs ?? 10_000),
    });
    const text = await res.text();
    let body: { access_token?: unknown; expires_in?: unknown; error?: unknown } = {};
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      // Reported below with the status.
    }
    if (!res.ok || typeof body.access_token !== 'string')
      throw new Error(
        `FCM token endpoint answered ${res.status}${typeof body.error === 'string' ? ` ${body.error}` : ''}: no access token`,
      );
    const ttlMs = (typeof body.expires_in === 'number' ? body.expires_in : 3600) * 1000;
    cached = {
      token: body.access_token,
      renewAt: iat * 1000 + Math.max(ttlMs - ACCESS_TOKEN_MARGIN_MS, ttlMs / 2),
    };
    return body.access_token;
  }

  return {
    async token() {
      if (cached && now() < cached.renewAt) return cached.token;
      minting ??= mint().finally(() => {
        minting = undefined;
      });
      return minting;
    },
    invalidate() {
      cached = undefined;
    },
  };
}

/** APNs provider tokens from the team's .p8 key. */
export function createApnsTokenSource(
  opts: { key: string; keyId: string; teamId: string },
  deps: { now?: () => number } = {},
): TokenSource {
  const now = deps.now ?? Date.now;
  const privateKey = importPKCS8(opts.key, 'ES256');
  let cached: { token: string; issuedAt: number } | undefined;
  let minting: Promise<string> | undefined;

  async function mint(): Promise<string> {
    const issuedAt = now();
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: opts.keyId })
      .setIssuer(opts.teamId)
      .setIssuedAt(Math.floor(issuedAt / 1000))
      .sign(await privateKey);
    cached = { token, issuedAt };
    return token;
  }

  return {
    async token() {
      if (cached && now() - cached.issuedAt < APNS_TOKEN_LIFETIME_MS) return cached.token;
      minting ??= mint().finally(() => {
        minting = undefined;
      });
      return minting;
    },
    invalidate() {
      // APNs said the token expired: renew, but never faster than it allows.
      if (cached && now() - cached.issuedAt >= APNS_MIN_REFRESH_MS) cached = undefined;
    },
  };
}
