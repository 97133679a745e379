// Idempotency-Key records of the send API, kept 24 hours from the first request (as Knock
// keeps them). A record binds a key, scoped to the credential that sent it, to one request
// (its fingerprint: route and body) and, once answered, to its answer:
//
//   (none) --begin--> pending (lease) --complete--> done (answer, replayed to every retry)
//                        |   \--abandon (the request failed: nothing stored)--> (none)
//                        \-- lease ran out (the process died mid-request): the next retry takes it over
//
// While pending, a concurrent request with the same key is told so (409) instead of
// publishing a second time. A takeover after a crash may publish what the dead request had
// published already: the sendIds are derived from (credential, key, index), so the copies
// are the same sends and delivery's claims send each once.
//
// Expiry is decided on the caller's clock (`now`), so tests can move it; Redis's own TTL
// only removes records some time after that.
import { createHash, randomUUID } from 'node:crypto';
import type { RedisDeps } from '../../platform/redis.ts';
import { ErrorCodes, LifecycleError } from '../../platform/errors.ts';

/** How long a key binds its request and answer. */
export const IDEMPOTENCY_RETENTION_MS = 24 * 60 * 60 * 1000;
/**
 * How long a pending request holds its key: longer than a request can take (the publish
 * deadline is 10 s), short enough that a key whose request died is usable again soon.
 */
export const IDEMPOTENCY_LEASE_MS = 60_000;

/** An answer as it is replayed: status and body. */
export interface StoredAnswer {
  status: number;
  body: unknown;
}

export type Begun =
  | { state: 'started'; token: string }
  | { state: 'replay'; answer: StoredAnswer }
  | { state: 'mismatch' }
  | { state: 'in_progress' };

export interface IdempotencyStore {
  /** Starts the request under (scope, key), or says what the key already holds. */
  begin(scope: string, key: string, fingerprint: string, now: number): Promise<Begun>;
  /** Stores the answer of a started request (a no-op when another request took the key over). */
  complete(scope: string, key: string, token: string, answer: StoredAnswer): Promise<void>;
  /** Forgets a started request that failed, so a retry starts afresh. */
  abandon(scope: string, key: string, token: string): Promise<void>;
}

/** Keys are stored by digest: bounded length, and a key that is a secret to its sender stays one. */
const recordId = (scope: string, key: string) =>
  createHash('sha256').update(`${scope.length}:${scope}${key.length}:${key}`).digest('hex');

interface MemoryRecord {
  fingerprint: string;
  token: string;
  leaseUntil: number;
  expiresAt: number;
  answer: StoredAnswer | null;
}

/** The embedded demo's store (one process): the same semantics as the Redis one. */
export function createMemoryIdempotencyStore(
  opts: { retentionMs?: number; leaseMs?: number } = {},
): IdempotencyStore {
  const retention = opts.retentionMs ?? IDEMPOTENCY_RETENTION_MS;
  const lease = opts.leaseMs ?? IDEMPOTENCY_LEASE_MS;
  const records = new Map<string, MemoryRecord>();
  return {
    async begin(scope, key, fingerprint, now) {
      const id = recordId(scope, key);
      const r = records.get(id);
      if (r && r.expiresAt > now) {
        if (r.fingerprint !== fingerprint) return { state: 'mismatch' };
        if (r.answer) return { state: 'replay', answer: r.answer };
        if (r.leaseUntil > now) return { state: 'in_progress' };
        r.token = randomUUID();
        r.leaseUntil = now + lease;
        return { state: 'started', token: r.token };
      }
      // Expired records go when their key is used again; the rest are swept now and then.
      if (records.size > 10_000)
        for (const [k, v] of records) if (v.expiresAt <= now) records.delete(k);
      const token = randomUUID();
      records.set(id, {
        fingerprint,
        token,
        leaseUntil: now + lease,
        expiresAt: now + retention,
        answer: null,
      });
      return { state: 'started', token };
    },
    async complete(scope, key, token, answer) {
      const r = records.get(recordId(scope, key));
      if (r && r.token === token) r.answer = structuredClone(answer);
    },
    async abandon(scope, key, token) {
      const id = recordId(scope, key);
      const r = records.get(id);
      if (r && r.token === token && !r.answer) records.delete(id);
    },
  };
}

// KEYS[1] record; ARGV fingerprint, token, now, lease ms, retention ms.
// Returns {state} or {'replay', answer}.
const BEGIN = `
local now = tonumber(ARGV[3])
local r = redis.call('HMGET', KEYS[1], 'fp', 'state', 'lease', 'expires', 'answer')
if r[1] and tonumber(r[4]) > now then
  if r[1] ~= ARGV[1] then return {'mismatch'} end
  if r[2] == 'done' then return {'replay', r[5]} end
  if tonumber(r[3]) > now then return {'in_progress'} end
  redis.call('HSET', KEYS[1], 'token', ARGV[2], 'lease', tostring(now + tonumber(ARGV[4])))
  return {'started'}
end
redis.call('DEL', KEYS[1])
local expires = now + tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'state', 'pending', 'token', ARGV[2],
  'lease', tostring(now + tonumber(ARGV[4])), 'expires', tostring(expires))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
return {'started'}
`;

// KEYS[1] record; ARGV token, answer.
const COMPLETE = `
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'answer', ARGV[2])
return 1
`;

// KEYS[1] record; ARGV token.
const ABANDON = `
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'state') ~= 'pending' then return 0 end
return redis.call('DEL', KEYS[1])
`;

type IdempotencyRedis = RedisDeps['redis'] & {
  lcIdemBegin(key: string, ...args: string[]): Promise<string[]>;
  lcIdemComplete(key: string, token: string, answer: string): Promise<number>;
  lcIdemAbandon(key: string, token: string): Promise<number>;
};

/**
 * Records in Redis (`<prefix>send-api:idem:<digest>`), shared by every API instance; each
 * change is made by one script, so two instances cannot both start a key. Answers are
 * stored durably before they are sent (`RedisDeps.durable`).
 */
export function createRedisIdempotencyStore(
  deps: RedisDeps,
  opts: { retentionMs?: number; leaseMs?: number } = {},
): IdempotencyStore {
  const retention = opts.retentionMs ?? IDEMPOTENCY_RETENTION_MS;
  const lease = opts.leaseMs ?? IDEMPOTENCY_LEASE_MS;
  if (!('lcIdemBegin' in deps.redis)) {
    deps.redis.defineCommand('lcIdemBegin', { numberOfKeys: 1, lua: BEGIN });
    deps.redis.defineCommand('lcIdemComplete', { numberOfKeys: 1, lua: COMPLETE });
    deps.redis.defineCommand('lcIdemAbandon', { numberOfKeys: 1, lua: ABANDON });
  }
  const redis = deps.redis as IdempotencyRedis;
  const keyOf = (scope: string, key: string) =>
    deps.keys.global(`send-api:idem:${recordId(scope, key)}`);
  const durable = deps.durable ?? (async () => {});
  return {
    async begin(scope, key, fingerprint, now) {
      const token = randomUUID();
      const [state, answer] = await redis.lcIdemBegin(
        keyOf(scope, key),
        fingerprint,
        token,
        String(now),
        String(lease),
        String(retention),
      );
      switch (state) {
        case 'started':
          await durable();
          return { state, token };
        case 'replay':
          return { state, answer: JSON.parse(answer!) as StoredAnswer };
        case 'mismatch':
        case 'in_progress':
          return { state };
        default:
          throw new LifecycleError(
            ErrorCodes.Redis,
            `idempotency script answered ${String(state)}`,
          );
      }
    },
    async complete(scope, key, token, answer) {
      await redis.lcIdemComplete(keyOf(scope, key), token, JSON.stringify(answer));
      await durable();
    },
    async abandon(scope, key, token) {
      await redis.lcIdemAbandon(keyOf(scope, key), token);
    },
  };
}
