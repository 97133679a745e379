// User state in Redis, fenced per partition owner. Layout (see engine/README.md, "Runtime"):
//   {p<N>} epoch key      INCR on every assignment: the partition owner's epoch
//   {userId}:state hash   s = serialised core state, p/e = partition and epoch it was
//                         written under, o = offset of the last applied event, c = the
//                         contact terms the user is filed under (./contacts.ts)
//   {userId}:timers set   ids of the user's pending timers (so an erase can remove them)
// A user's write checks the epoch stored in the user's own record; the partition epoch key
// is checked by the timer script on the {p<N>} slot, which runs just before the state writes
// of a batch. On one Redis server a script call writes many users; on Redis Cluster (a
// script may touch one slot only) there is one call per user.
import type { Redis } from 'ioredis';
import type { KeySpace } from '../../platform/keys.ts';
import { ErrorCodes, LifecycleError } from '../../platform/errors.ts';
import {
  TOMBSTONE_TTL_MS,
  type StateStore,
  type StoredUser,
  type UserWrite,
  type WriteResult,
} from './stores.ts';

/** Keys of one partition of the events topic. */
export function partitionKeys(keys: KeySpace, eventsTopic: string, partition: number) {
  return {
    epoch: keys.partition(eventsTopic, partition, 'epoch'),
    timers: keys.partition(eventsTopic, partition, 'timers'),
    timerPayloads: keys.partition(eventsTopic, partition, 'timer-payloads'),
  };
}

export function userKeys(keys: KeySpace, userId: string) {
  return { state: keys.user(userId, 'state'), timers: keys.user(userId, 'timers') };
}

// The contact terms argument when the write leaves the stored ones as they are.
const KEEP_CONTACTS = '~';

// KEYS: state hash, timer index. ARGV: partition, epoch, offset, mode (put|erase), state,
// tombstone ttl ms, contact terms (or ~ to keep), timer ids scheduled in this batch...
// Returns {0} when refused, {1} on put, {1, timerIds...} on erase.
const WRITE_USER = `
local p = redis.call('HGET', KEYS[1], 'p')
local e = redis.call('HGET', KEYS[1], 'e')
if p == ARGV[1] and e and tonumber(e) > tonumber(ARGV[2]) then return {0} end
if ARGV[4] == 'erase' then
  local out = {1}
  for _, t in ipairs(redis.call('SMEMBERS', KEYS[2])) do out[#out + 1] = t end
  for i = 8, #ARGV do out[#out + 1] = ARGV[i] end
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[1], 'p', ARGV[1], 'e', ARGV[2], 'o', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  return out
end
redis.call('HSET', KEYS[1], 's', ARGV[5], 'p', ARGV[1], 'e', ARGV[2], 'o', ARGV[3])
if ARGV[7] ~= '${KEEP_CONTACTS}' then redis.call('HSET', KEYS[1], 'c', ARGV[7]) end
redis.call('PERSIST', KEYS[1])
if #ARGV >= 8 then redis.call('SADD', KEYS[2], unpack(ARGV, 8)) end
return {1}
`;

// The same write for many users in one call, in order (a user may appear twice: erased,
// then written again). KEYS: state hash, timer index of each user. ARGV: partition, epoch,
// tombstone ttl ms, then per user: offset, mode (put|erase), state, contact terms (or ~),
// n, n timer ids. Returns one reply per user, as WRITE_USER's.
const WRITE_USERS = `
local out = {}
local a = 4
for i = 1, #KEYS, 2 do
  local sk, tk = KEYS[i], KEYS[i + 1]
  local offset, mode, state, contacts = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local first = a + 5
  a = first + tonumber(ARGV[a + 4])
  local pe = redis.call('HMGET', sk, 'p', 'e')
  if pe[1] == ARGV[1] and pe[2] and tonumber(pe[2]) > tonumber(ARGV[2]) then
    out[#out + 1] = {0}
  elseif mode == 'erase' then
    local r = {1}
    for _, t in ipairs(redis.call('SMEMBERS', tk)) do r[#r + 1] = t end
    for j = first, a - 1 do r[#r + 1] = ARGV[j] end
    redis.call('DEL', sk, tk)
    redis.call('HSET', sk, 'p', ARGV[1], 'e', ARGV[2], 'o', offset)
    redis.call('PEXPIRE', sk, ARGV[3])
    out[#out + 1] = r
  else
    redis.call('HSET', sk, 's', state, 'p', ARGV[1], 'e', ARGV[2], 'o', offset)
    if contacts ~= '${KEEP_CONTACTS}' then redis.call('HSET', sk, 'c', contacts) end
    redis.call('PERSIST', sk)
    for j = first, a - 1 do redis.call('SADD', tk, ARGV[j]) end
    out[#out + 1] = {1}
  end
end
return out
`;

// KEYS: state hashes. Returns {s, p, o, c} of each (nils for a user without a record).
const READ_USERS = `
local out = {}
for i, k in ipairs(KEYS) do out[i] = redis.call('HMGET', k, 's', 'p', 'o', 'c') end
return out
`;

/** Users per WRITE_USERS call: each call blocks the server while it runs, so a batch goes in several. */
const USERS_PER_CALL = 250;

interface ScriptPipeline {
  lcWriteUser(...args: (string | number)[]): ScriptPipeline;
  lcWriteUsers(numberOfKeys: number, ...args: string[]): ScriptPipeline;
  lcReadUsers(numberOfKeys: number, ...keys: string[]): ScriptPipeline;
}

function check<T>(entry: [Error | null, unknown] | undefined): T {
  if (!entry)
    throw new LifecycleError(ErrorCodes.Redis, 'missing pipeline reply', { retriable: true });
  if (entry[0])
    throw new LifecycleError(ErrorCodes.Redis, `redis: ${entry[0].message}`, {
      retriable: true,
      cause: entry[0],
    });
  return entry[1] as T;
}

export function createRedisStateStore(
  deps: { redis: Redis; keys: KeySpace },
  opts: { eventsTopic: string },
): StateStore {
  const { redis, keys } = deps;
  if (!('lcWriteUser' in redis)) {
    redis.defineCommand('lcWriteUser', { numberOfKeys: 2, lua: WRITE_USER });
    redis.defineCommand('lcWriteUsers', { lua: WRITE_USERS });
    redis.defineCommand('lcReadUsers', { lua: READ_USERS });
  }

  return {
    async acquire(partition) {
      return await redis.incr(partitionKeys(keys, opts.eventsTopic, partition).epoch);
    },

    async currentEpoch(partition) {
      const v = await redis.get(partitionKeys(keys, opts.eventsTopic, partition).epoch);
      return v === null ? null : Number(v);
    },

    async load(userIds) {
      const out = new Map<string, StoredUser>();
      if (userIds.length === 0) return out;
      const found = (id: string, [s, p, o, c]: (string | null)[]) => {
        if (p === null || p === undefined) return;
        out.set(id, {
          state: s ?? null,
          partition: Number(p),
          offset: o ?? null,
          contacts: c ?? null,
        });
      };
      if (!redis.isCluster) {
        // As for writes: one server, so a read call covers many users.
        const pipe = redis.pipeline() as unknown as ScriptPipeline & {
          exec(): Promise<[Error | null, unknown][] | null>;
        };
        for (let i = 0; i < userIds.length; i += USERS_PER_CALL) {
          const ks = userIds.slice(i, i + USERS_PER_CALL).map((id) => userKeys(keys, id).state);
          pipe.lcReadUsers(ks.length, ...ks);
        }
        let n = 0;
        for (const call of (await pipe.exec()) ?? [])
          for (const reply of check<(string | null)[][]>(call)) found(userIds[n++]!, reply);
        if (n !== userIds.length)
          throw new LifecycleError(
            ErrorCodes.Redis,
            `expected ${userIds.length} read replies, got ${n}`,
            { retriable: true },
          );
        return out;
      }
      const pipe = redis.pipeline();
      for (const id of userIds) pipe.hmget(userKeys(keys, id).state, 's', 'p', 'o', 'c');
      const replies = (await pipe.exec()) ?? [];
      userIds.forEach((id, i) => found(id, check<(string | null)[]>(replies[i])));
      return out;
    },

    async write(partition, epoch, writes: UserWrite[]): Promise<WriteResult> {
      const result: WriteResult = { refused: [], erasedTimers: [] };
      if (writes.length === 0) return result;
      const settle = (w: UserWrite, reply: (number | string)[]) => {
        if (reply[0] === 0) {
          result.refused.push(w.userId);
          return;
        }
        if (w.state === null) {
          for (const timerId of new Set(reply.slice(1).map(String)))
            result.erasedTimers.push({ userId: w.userId, timerId });
        }
      };
      const pipe = redis.pipeline() as unknown as ScriptPipeline & {
        exec(): Promise<[Error | null, unknown][] | null>;
      };
      if (!redis.isCluster) {
        // One server holds every slot: a call writes many users (far fewer commands for the
        // client to build and the server to parse than a call per user).
        for (let i = 0; i < writes.length; i += USERS_PER_CALL) {
          const chunk = writes.slice(i, i + USERS_PER_CALL);
          const ks: string[] = [];
          const args: string[] = [String(partition), String(epoch), String(TOMBSTONE_TTL_MS)];
          for (const w of chunk) {
            const k = userKeys(keys, w.userId);
            ks.push(k.state, k.timers);
            args.push(
              w.offset,
              w.state === null ? 'erase' : 'put',
              w.state ?? '',
              w.contacts ?? KEEP_CONTACTS,
              String(w.timerIds.length),
            );
            for (const t of w.timerIds) args.push(t);
          }
          pipe.lcWriteUsers(ks.length, ...ks, ...args);
        }
        const calls = (await pipe.exec()) ?? [];
        let n = 0;
        for (const call of calls) {
          for (const reply of check<(number | string)[][]>(call)) settle(writes[n++]!, reply);
        }
        if (n !== writes.length)
          throw new LifecycleError(
            ErrorCodes.Redis,
            `expected ${writes.length} write replies, got ${n}`,
            { retriable: true },
          );
        return result;
      }
      // Redis Cluster: a script may only touch keys of one slot, so one call per user.
      for (const w of writes) {
        const k = userKeys(keys, w.userId);
        pipe.lcWriteUser(
          k.state,
          k.timers,
          String(partition),
          String(epoch),
          w.offset,
          w.state === null ? 'erase' : 'put',
          w.state ?? '',
          String(TOMBSTONE_TTL_MS),
          w.contacts ?? KEEP_CONTACTS,
          ...w.timerIds,
        );
      }
      const replies = (await pipe.exec()) ?? [];
      writes.forEach((w, i) => settle(w, check<(number | string)[]>(replies[i])));
      return result;
    },
  };
}
