// Where opt-in requests are kept: one Redis hash per user under the user's `{userId}` hash tag
// (`req:<id>` -> the request, `cur:<category>:<channel>` -> the id of the latest), so an
// erasure takes them with the rest of the user. Starting and confirming are scripts: two
// signups at once start one request, and a request is confirmed once.
import type { Channel } from '../../platform/contracts.ts';
import type { RedisDeps } from '../../platform/redis.ts';
import { script } from '../lua.ts';
import { statusAt, type ConfirmationEvidence, type OptInRequest } from './model.ts';

export type StartResult =
  /** `request` was stored; its emails are to be sent. */
  | { kind: 'started'; request: OptInRequest }
  /** A request of the same category and channel is pending (or this one was started before): nothing new is sent. */
  | { kind: 'pending'; request: OptInRequest };

export type ConfirmResult =
  | { kind: 'confirmed'; request: OptInRequest }
  | { kind: 'already_confirmed'; request: OptInRequest }
  | { kind: 'expired' | 'withdrawn'; request: OptInRequest }
  | { kind: 'unknown' };

export interface OptInStore {
  /** Stores `request` unless one of its category and channel is still pending at `now`. */
  start(request: OptInRequest, now: number): Promise<StartResult>;
  get(userId: string, requestId: string): Promise<OptInRequest | null>;
  /** Every request of the user, newest first. */
  list(userId: string): Promise<OptInRequest[]>;
  /** Confirms a pending request that has not expired at `evidence.at`. */
  confirm(
    userId: string,
    requestId: string,
    evidence: ConfirmationEvidence,
  ): Promise<ConfirmResult>;
  /** The person opted out: a pending request of that category and channel ends unconfirmed. */
  withdraw(userId: string, category: string, channel: Channel, at: number): Promise<void>;
  /** Right to be forgotten. */
  erase(userId: string): Promise<void>;
}

const START = script(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local raw = redis.call('HGET', KEYS[1], 'req:' .. cur)
  if raw then
    local r = cjson.decode(raw)
    if cur == ARGV[2] or (r.status == 'pending' and tonumber(ARGV[4]) < r.expiresAt) then
      return {'pending', raw}
    end
  end
end
if redis.call('HEXISTS', KEYS[1], 'req:' .. ARGV[2]) == 1 then
  return {'pending', redis.call('HGET', KEYS[1], 'req:' .. ARGV[2])}
end
redis.call('HSET', KEYS[1], 'req:' .. ARGV[2], ARGV[3], ARGV[1], ARGV[2])
return {'started', ARGV[3]}
`);

// The request is rewritten from the caller's copy only when the stored one is what the
// caller read (pending and unconfirmed): the script compares, so two confirmations race safely.
const CONFIRM = script(`
local raw = redis.call('HGET', KEYS[1], 'req:' .. ARGV[1])
if not raw then return {'unknown'} end
if raw ~= ARGV[2] then return {'changed', raw} end
redis.call('HSET', KEYS[1], 'req:' .. ARGV[1], ARGV[3])
return {'ok', ARGV[3]}
`);

export function createRedisOptInStore(deps: RedisDeps): OptInStore {
  const { redis, keys } = deps;
  const durable = deps.durable ?? (async () => {});
  const key = (u: string) => keys.user(u, 'dlv:optin');
  const get = async (userId: string, id: string) => {
    const raw = await redis.hget(key(userId), `req:${id}`);
    return raw === null ? null : (JSON.parse(raw) as OptInRequest);
  };
  return {
    async start(request, now) {
      const [kind, raw] = (await START(
        redis,
        [key(request.userId)],
        [`cur:${request.category}:${request.channel}`, request.id, JSON.stringify(request), now],
      )) as [string, string];
      await durable();
      return {
        kind: kind === 'started' ? 'started' : 'pending',
        request: JSON.parse(raw) as OptInRequest,
      };
    },
    get,
    async list(userId) {
      const h = await redis.hgetall(key(userId));
      return Object.entries(h)
        .filter(([f]) => f.startsWith('req:'))
        .map(([, raw]) => JSON.parse(raw) as OptInRequest)
        .sort((a, b) => b.requestedAt - a.requestedAt);
    },
    async confirm(userId, requestId, evidence) {
      for (;;) {
        const raw = await redis.hget(key(userId), `req:${requestId}`);
        if (raw === null) return { kind: 'unknown' };
        const r = JSON.parse(raw) as OptInRequest;
        const decided = decideConfirm(r, evidence);
        if (decided.kind !== 'confirmed') return decided;
        const [outcome] = (await CONFIRM(
          redis,
          [key(userId)],
          [requestId, raw, JSON.stringify(decided.request)],
        )) as [string, string?];
        if (outcome === 'unknown') return { kind: 'unknown' };
        if (outcome === 'changed') continue;
        await durable();
        return decided;
      }
    },
    async withdraw(userId, category, channel, at) {
      for (;;) {
        const id = await redis.hget(key(userId), `cur:${category}:${channel}`);
        if (id === null) return;
        const raw = await redis.hget(key(userId), `req:${id}`);
        if (raw === null) return;
        const r = JSON.parse(raw) as OptInRequest;
        if (statusAt(r, at) !== 'pending') return;
        const [outcome] = (await CONFIRM(
          redis,
          [key(userId)],
          [id, raw, JSON.stringify({ ...r, status: 'withdrawn', withdrawnAt: at })],
        )) as [string];
        if (outcome === 'changed') continue;
        await durable();
        return;
      }
    },
    async erase(userId) {
      await redis.del(key(userId));
      await durable();
    },
  };
}

/** What confirming `r` with `evidence` comes to, and the request after it. */
export function decideConfirm(r: OptInRequest, evidence: ConfirmationEvidence): ConfirmResult {
  if (r.status === 'confirmed') return { kind: 'already_confirmed', request: r };
  const status = statusAt(r, evidence.at);
  if (status === 'withdrawn' || status === 'expired') return { kind: status, request: r };
  return {
    kind: 'confirmed',
    request: {
      ...r,
      status: 'confirmed',
      confirmed: { at: evidence.at, ip: evidence.ip, userAgent: evidence.userAgent },
    },
  };
}

/** The same store in memory: unit tests and the embedded demo. */
export function createMemoryOptInStore(): OptInStore {
  const users = new Map<string, Map<string, OptInRequest>>();
  const current = new Map<string, string>();
  const of = (u: string) => {
    let m = users.get(u);
    if (!m) users.set(u, (m = new Map()));
    return m;
  };
  const copy = (r: OptInRequest): OptInRequest => structuredClone(r);
  return {
    async start(request, now) {
      const curKey = `${request.userId}\u0000${request.category}:${request.channel}`;
      const curId = current.get(curKey);
      const cur = curId === undefined ? undefined : of(request.userId).get(curId);
      if (cur && (cur.id === request.id || statusAt(cur, now) === 'pending'))
        return { kind: 'pending', request: copy(cur) };
      const again = of(request.userId).get(request.id);
      if (again) return { kind: 'pending', request: copy(again) };
      of(request.userId).set(request.id, copy(request));
      current.set(curKey, request.id);
      return { kind: 'started', request: copy(request) };
    },
    async get(userId, id) {
      const r = users.get(userId)?.get(id);
      return r ? copy(r) : null;
    },
    async list(userId) {
      return [...(users.get(userId)?.values() ?? [])]
        .map(copy)
        .sort((a, b) => b.requestedAt - a.requestedAt);
    },
    async confirm(userId, requestId, evidence) {
      const r = users.get(userId)?.get(requestId);
      if (!r) return { kind: 'unknown' };
      const decided = decideConfirm(copy(r), evidence);
      if (decided.kind === 'confirmed') of(userId).set(requestId, copy(decided.request));
      return decided;
    },
    async withdraw(userId, category, channel, at) {
      const id = current.get(`${userId}\u0000${category}:${channel}`);
      const r = id === undefined ? undefined : users.get(userId)?.get(id);
      if (r && statusAt(r, at) === 'pending')
        of(userId).set(r.id, { ...r, status: 'withdrawn', withdrawnAt: at });
    },
    async erase(userId) {
      users.delete(userId);
      for (const k of [...current.keys()]) if (k.startsWith(`${userId}\u0000`)) current.delete(k);
    },
  };
}
