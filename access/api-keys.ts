// Staff API keys: random bearer tokens, each with a role, a name and an optional expiry.
// Only the SHA-256 digest of a token is stored: a token is 256 random bits, so a fast digest
// is as good as a slow password hash (nobody can enumerate 2^256 inputs), and a stolen copy
// of the store authenticates nobody. The token is shown once, when it is made.
//
// Where: Redis, under the configured key prefix, because it is already the product's
// durable shared store (platform/redis.ts: every write fsynced before its reply, no
// eviction), every API instance reaches it, and a revocation there is seen by the next
// request of every instance (nothing is cached). All keys share the hash tag `{auth}`,
// so a key's record, its digest index and the list stay in one Redis Cluster slot and are
// written in one MULTI.
import { createHash, randomBytes } from 'node:crypto';
import { ErrorCodes, LifecycleError } from '../platform/errors.ts';
import { ROLES, type Role } from '../platform/http.ts';
import type { RedisDeps } from '../platform/redis.ts';

/** A key as it is listed: everything but the secret, which is never stored. */
export interface ApiKey {
  /** `key_<hex>`: the handle to revoke it by, never a secret. */
  id: string;
  name: string;
  role: Role;
  /** The first characters of the token, to tell keys apart (`lc_3fZk9q`). */
  prefix: string;
  createdAt: string;
  /** ISO time after which the key is refused; null: never. */
  expiresAt: string | null;
  revokedAt: string | null;
  /** Who made it (the audit actor id). */
  createdBy: string;
}

export interface NewApiKey {
  name: string;
  role: Role;
  expiresAt: string | null;
  createdBy: string;
}

/** Where keys live: Redis in production, memory in the demo and unit tests. */
export interface ApiKeyStore {
  /** Stores a key for `token` (made by `generateToken`, or the bootstrap value). */
  put(token: string, key: NewApiKey, now: number, id?: string): Promise<ApiKey>;
  /** The key of a presented token, revoked and expired ones included; null if unknown. */
  byToken(token: string): Promise<ApiKey | null>;
  get(id: string): Promise<ApiKey | null>;
  /** Every key, newest first. */
  list(): Promise<ApiKey[]>;
  /** Marks the key revoked; the key as it was before, or null if unknown. */
  revoke(id: string, now: number): Promise<{ before: ApiKey; after: ApiKey } | null>;
}

const TOKEN_PREFIX = 'lc_';

/** A new token: `lc_` and 32 random bytes in base64url (43 characters). */
export function generateToken(): string {
  return TOKEN_PREFIX + randomBytes(32).toString('base64url');
}

export const digestOf = (token: string) => createHash('sha256').update(token).digest('hex');
const newId = () => `key_${randomBytes(8).toString('hex')}`;
const displayPrefix = (token: string) => token.slice(0, TOKEN_PREFIX.length + 6);

/** Why a known key cannot be used now, or null when it can. */
export function keyRefusal(key: ApiKey, now: number): LifecycleError | null {
  if (key.revokedAt !== null)
    return new LifecycleError(
      ErrorCodes.KeyRevoked,
      `API key ${key.id} (${key.name}) was revoked at ${key.revokedAt}; ask an admin for a new key`,
    );
  if (key.expiresAt !== null && Date.parse(key.expiresAt) <= now)
    return new LifecycleError(
      ErrorCodes.KeyExpired,
      `API key ${key.id} (${key.name}) expired at ${key.expiresAt}; ask an admin for a new key`,
    );
  return null;
}

/** `30d`, `12h`, `90m`, or an ISO time: when a key made now expires. Throws a coded 400. */
export function expiryFrom(text: string, now: number): string {
  const m = /^(\d+)\s*(m|h|d|w)$/.exec(text.trim());
  const unit = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
  const at = m ? now + Number(m[1]) * unit[m[2] as keyof typeof unit] : Date.parse(text);
  if (!Number.isFinite(at) || at <= now)
    throw new LifecycleError(
      ErrorCodes.BadRequest,
      `expires "${text}" is not a duration (30d, 12h, 90m, 2w) or a future ISO time`,
      { details: { field: 'expires' } },
    );
  return new Date(at).toISOString();
}

export function isRole(value: unknown): value is Role {
  return (ROLES as readonly unknown[]).includes(value);
}

function record(token: string, key: NewApiKey, now: number, id: string): ApiKey {
  return {
    id,
    name: key.name,
    role: key.role,
    prefix: displayPrefix(token),
    createdAt: new Date(now).toISOString(),
    expiresAt: key.expiresAt,
    revokedAt: null,
    createdBy: key.createdBy,
  };
}

export function createMemoryApiKeyStore(): ApiKeyStore {
  const byId = new Map<string, ApiKey>();
  const byDigest = new Map<string, string>();
  return {
    async put(token, key, now, id = newId()) {
      const stored = record(token, key, now, id);
      byId.set(id, stored);
      byDigest.set(digestOf(token), id);
      return { ...stored };
    },
    async byToken(token) {
      const id = byDigest.get(digestOf(token));
      const key = id === undefined ? undefined : byId.get(id);
      return key ? { ...key } : null;
    },
    async get(id) {
      const key = byId.get(id);
      return key ? { ...key } : null;
    },
    async list() {
      return [...byId.values()].reverse().map((k) => ({ ...k }));
    },
    async revoke(id, now) {
      const before = byId.get(id);
      if (!before) return null;
      const after = { ...before, revokedAt: before.revokedAt ?? new Date(now).toISOString() };
      byId.set(id, after);
      return { before: { ...before }, after: { ...after } };
    },
  };
}

export function createRedisApiKeyStore({ redis, keys, durable }: RedisDeps): ApiKeyStore {
  const keyOf = (id: string) => keys.global(`{auth}:key:${id}`);
  const digestKey = (token: string) => keys.global(`{auth}:key-digest:${digestOf(token)}`);
  const listKey = keys.global('{auth}:keys');
  const parse = (raw: string | null): ApiKey | null => (raw ? (JSON.parse(raw) as ApiKey) : null);
  const store: ApiKeyStore = {
    async put(token, key, now, id = newId()) {
      const stored = record(token, key, now, id);
      await redis
        .multi()
        .set(keyOf(id), JSON.stringify(stored))
        .set(digestKey(token), id)
        .zadd(listKey, now, id)
        .exec();
      // Under WAITAOF durability: on disk before the secret is handed out.
      await durable?.();
      return stored;
    },
    async byToken(token) {
      const id = await redis.get(digestKey(token));
      return id === null ? null : store.get(id);
    },
    async get(id) {
      return parse(await redis.get(keyOf(id)));
    },
    async list() {
      const ids = await redis.zrevrange(listKey, 0, -1);
      if (ids.length === 0) return [];
      const raws = await redis.mget(ids.map(keyOf));
      return raws.map(parse).filter((k): k is ApiKey => k !== null);
    },
    async revoke(id, now) {
      const before = await store.get(id);
      if (!before) return null;
      const after = { ...before, revokedAt: before.revokedAt ?? new Date(now).toISOString() };
      await redis.set(keyOf(id), JSON.stringify(after));
      await durable?.();
      return { before, after };
    },
  };
  return store;
}

/**
 * Stores LC_BOOTSTRAP_ADMIN_KEY as the admin key `bootstrap` unless a key with that value
 * already exists (revoked included, so a revoked bootstrap key stays revoked across
 * restarts). The key created, or null.
 */
export async function ensureBootstrapKey(
  store: ApiKeyStore,
  token: string,
  now: number,
): Promise<ApiKey | null> {
  if (token === '' || (await store.byToken(token))) return null;
  // One id per value: instances starting together write the same record, not two keys.
  return store.put(
    token,
    { name: 'bootstrap', role: 'admin', expiresAt: null, createdBy: 'bootstrap' },
    now,
    `key_boot_${digestOf(token).slice(0, 12)}`,
  );
}
