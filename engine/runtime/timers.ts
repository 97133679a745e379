// Delayed triggers: a sorted set per partition of the events topic (member = timer id,
// score = dueAt) with the timer payloads in a hash beside it, both under the `{p<N>}` hash
// tag together with the partition's owner epoch, so every script stays in one slot and
// refuses writes from an owner that lost the partition. The partition's current owner
// polls due timers and publishes each as a `timer.fired` event with a deterministic id;
// a new owner picks up whatever the previous one left.
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { KeySpace } from '../../platform/keys.ts';
import type { Publisher } from '../../platform/bus.ts';
import { encodeWithHeader, eventCodec } from '../../platform/avro.ts';
import { errorMessage } from '../../platform/errors.ts';
import { timerFiredEvent } from '../core/engine-core.ts';
import { partitionKeys, userKeys } from './redis-state.ts';
import type { Timer, TimerStore } from './stores.ts';

// KEYS: epoch, zset, payload hash. ARGV: epoch, then (id, dueAt, payload) triples.
const SCHEDULE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 3 do
  redis.call('ZADD', KEYS[2], ARGV[i + 1], ARGV[i])
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 2])
end
return 1
`;

// KEYS: zset, payload hash. ARGV: now, limit. Returns id, payload pairs.
const DUE = `
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #ids == 0 then return {} end
local payloads = redis.call('HMGET', KEYS[2], unpack(ids))
local out = {}
for i, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = payloads[i] or ''
end
return out
`;

// KEYS: epoch, zset, payload hash. ARGV: epoch, ids...
const REMOVE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if #ARGV > 1 then
  redis.call('ZREM', KEYS[2], unpack(ARGV, 2))
  redis.call('HDEL', KEYS[3], unpack(ARGV, 2))
end
return 1
`;

// Lua's unpack() is limited to a few thousand values; write in chunks below that.
const CHUNK = 500;

interface TimerPipeline {
  lcTimerSchedule(k1: string, k2: string, k3: string, ...args: string[]): TimerPipeline;
  exec(): Promise<[Error | null, unknown][] | null>;
}

interface TimerScripts {
  lcTimerSchedule(k1: string, k2: string, k3: string, ...args: string[]): Promise<number>;
  lcTimerDue(k1: string, k2: string, ...args: string[]): Promise<string[]>;
  lcTimerRemove(k1: string, k2: string, k3: string, ...args: string[]): Promise<number>;
}

export function createRedisTimerStore(
  deps: { redis: Redis; keys: KeySpace },
  opts: { eventsTopic: string },
): TimerStore {
  const { redis, keys } = deps;
  if (!('lcTimerSchedule' in redis)) {
    redis.defineCommand('lcTimerSchedule', { numberOfKeys: 3, lua: SCHEDULE });
    redis.defineCommand('lcTimerDue', { numberOfKeys: 2, lua: DUE });
    redis.defineCommand('lcTimerRemove', { numberOfKeys: 3, lua: REMOVE });
  }
  const scripts = redis as unknown as TimerScripts;
  const pk = (p: number) => partitionKeys(keys, opts.eventsTopic, p);

  return {
    async schedule(partition, epoch, timers) {
      const k = pk(partition);
      if (timers.length === 0) {
        // Still a fence check: the caller relies on it before writing state.
        return (await redis.get(k.epoch)) === String(epoch);
      }
      // All chunks in one round trip: each checks the epoch, and an epoch only grows, so
      // once one chunk is refused every later one is too.
      const pipe = redis.pipeline() as unknown as TimerPipeline;
      for (let i = 0; i < timers.length; i += CHUNK) {
        const args: string[] = [];
        for (const t of timers.slice(i, i + CHUNK))
          args.push(t.id, String(t.dueAt), JSON.stringify(t));
        pipe.lcTimerSchedule(k.epoch, k.timers, k.timerPayloads, String(epoch), ...args);
      }
      const replies = (await pipe.exec()) ?? [];
      for (const [err, ok] of replies) {
        if (err) throw err;
        if (ok !== 1) return false;
      }
      return replies.length > 0;
    },

    async due(partition, now, limit) {
      const k = pk(partition);
      const flat = await scripts.lcTimerDue(k.timers, k.timerPayloads, String(now), String(limit));
      const out: Timer[] = [];
      for (let i = 0; i + 1 < flat.length; i += 2) {
        const payload = flat[i + 1]!;
        // A member without payload cannot fire; it is removed with the next batch of fired timers.
        out.push(
          payload
            ? (JSON.parse(payload) as Timer)
            : { id: flat[i]!, userId: '', ruleId: '', dueAt: 0, trigger: null as never },
        );
      }
      return out;
    },

    async remove(partition, epoch, timers) {
      const k = pk(partition);
      for (let i = 0; i < timers.length; i += CHUNK) {
        const chunk = timers.slice(i, i + CHUNK);
        const ok = await scripts.lcTimerRemove(
          k.epoch,
          k.timers,
          k.timerPayloads,
          String(epoch),
          ...chunk.map((t) => t.timerId),
        );
        if (ok !== 1) return false;
        const pipe = redis.pipeline();
        for (const t of chunk) if (t.userId) pipe.srem(userKeys(keys, t.userId).timers, t.timerId);
        await pipe.exec();
      }
      return true;
    },

    async pending(partition) {
      return await redis.zcard(pk(partition).timers);
    },

    async userTimers(partition, userId) {
      const ids = await redis.smembers(userKeys(keys, userId).timers);
      if (ids.length === 0) return [];
      // An id without payload has just fired (its payload goes first, the user's id after).
      const payloads = await redis.hmget(pk(partition).timerPayloads, ...ids);
      return payloads
        .flatMap((p) => (p ? [JSON.parse(p) as Timer] : []))
        .sort((a, b) => a.dueAt - b.dueAt || (a.id < b.id ? -1 : 1));
    },
  };
}

export interface TimerPoller {
  stop(): Promise<void>;
}

/**
 * Fires a partition's due timers every `pollMs` while this process owns the partition:
 * publish the `timer.fired` events (acked), then remove the timers. A crash in between
 * publishes them again with the same ids, which the engine deduplicates per user.
 */
export function startTimerPoller(opts: {
  partition: number;
  epoch: number;
  store: TimerStore;
  publisher: Publisher;
  eventsTopic: string;
  pollMs: number;
  batchSize?: number;
  clock?: () => number;
  logger: Logger;
  onFired?(count: number): void;
  onFenced?(): void;
}): TimerPoller {
  const clock = opts.clock ?? Date.now;
  const batchSize = opts.batchSize ?? 500;
  let running = true;
  let wake: (() => void) | null = null;
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });

  const fireOnce = async (): Promise<number> => {
    const now = clock();
    const due = await opts.store.due(opts.partition, now, batchSize);
    if (due.length === 0 || !running) return 0;
    const valid = due.filter((t) => t.userId && t.trigger);
    await opts.publisher.publish(
      opts.eventsTopic,
      valid.map((t) => ({
        key: t.userId,
        ...encodeWithHeader(eventCodec, timerFiredEvent(t, now)),
      })),
    );
    const ok = await opts.store.remove(
      opts.partition,
      opts.epoch,
      due.map((t) => ({ userId: t.userId, timerId: t.id })),
    );
    if (!ok) {
      running = false;
      opts.logger.warn(
        { partition: opts.partition, epoch: opts.epoch },
        'partition has a newer owner; timer poller stops',
      );
      opts.onFenced?.();
      return 0;
    }
    opts.onFired?.(valid.length);
    return due.length;
  };

  const loop = (async () => {
    while (running) {
      let fired = 0;
      try {
        fired = await fireOnce();
      } catch (err) {
        opts.logger.warn(
          { partition: opts.partition, err: errorMessage(err) },
          'timer poll failed; retrying',
        );
      }
      if (running && fired < batchSize) await sleep(opts.pollMs);
    }
  })();

  return {
    async stop() {
      running = false;
      const w = wake as (() => void) | null;
      w?.();
      await loop;
    },
  };
}
