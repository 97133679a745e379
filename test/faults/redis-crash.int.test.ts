// Invariant 1 across a Redis crash: the engine and delivery run as their own processes on a
// private redis-server with the stack's durability settings (AOF, `appendfsync always`,
// `noeviction`), over a stream with once-per-user rules, delayed sends (timers in Redis), a
// holdout and unsubscribes. Redis is SIGKILLed several times mid-stream (some right after an
// unsubscribe was acknowledged) and restarted on the same folder. After the run drains,
// every expected email is in the SMTP sink exactly once (by Message-ID), none is missing and
// none unexpected: a write the engine or delivery was told had happened (state, rule
// history, timers, claims, the delay queue, unsubscribes) survived each crash.
//
// The sibling case runs the same with a Redis that keeps nothing on disk: the same crashes
// then lose acknowledged writes, and the same check fails, so it is not a check that cannot.
// (`appendfsync everysec` survives a SIGKILL of the process: Redis write()s the AOF before
// it replies and only its fsync is deferred, so a killed process loses nothing the kernel
// holds; what everysec risks is the last second on a machine crash or power loss, which a
// test on a shared machine cannot cause. Measured in docs/architecture.md.)
import { afterEach, describe, expect, it } from 'vitest';
import { startPrivateRedis, type PrivateRedis } from '../support/private-redis.ts';
import { createFaultRun, type FaultRun } from '../support/fault-run.ts';
import { sleep } from '../support/engine-harness.ts';

let redis: PrivateRedis | undefined;
let run: FaultRun | undefined;

afterEach(async () => {
  await run?.close();
  run = undefined;
  await redis?.stop();
  redis = undefined;
});

async function crashRedisMidStream(opts: {
  label: string;
  persistence: 'always' | 'none';
  kills: number;
  settleMs: number;
}) {
  redis = await startPrivateRedis(
    opts.persistence === 'always' ? { appendfsync: 'always' } : { appendonly: false },
  );
  const r = (run = await createFaultRun({
    label: opts.label,
    redisUrl: redis.url,
    env: opts.persistence === 'none' ? { LC_REDIS_DURABILITY: 'none' } : {},
  }));
  r.startEngine();
  r.startDelivery();
  let unsubscribes = 0;
  let killNow: (() => void) | null = null;
  const producing = r.produce({
    onUnsubscribed: () => {
      unsubscribes++;
      killNow?.();
    },
  });
  // Awaited after the kills; a failure is reported then, not as an unhandled rejection.
  producing.catch(() => undefined);
  const t0 = Date.now();
  const kills: string[] = [];
  // The stream lasts about 20 s; the kills spread over it.
  await sleep(3000);
  for (let k = 0; k < opts.kills; k++) {
    let mode: string;
    if (k % 2 === 0) {
      mode = 'right after an acknowledged unsubscribe';
      await new Promise<void>((resolve) => {
        killNow = resolve;
        setTimeout(resolve, 4000).unref();
      });
      killNow = null;
    } else {
      mode = 'random';
      await sleep(1000 + Math.floor(Math.random() * 3000));
    }
    await redis.kill();
    kills.push(`${mode} at ${Date.now() - t0} ms`);
    await sleep(200 + Math.floor(Math.random() * 800));
    await redis.restart();
  }
  await producing;
  const stuck = await r.settle(opts.settleMs);
  const v = await r.verdict();
  console.info(
    `redis crash (${opts.persistence}): ${r.events.length} events, ${opts.kills} SIGKILLs of Redis (${kills.join('; ')}), ` +
      `${v.expected} expected emails (${v.holdouts} holdouts and ${v.unsubscribed} users unsubscribed get none), ${v.received} received, ` +
      `${v.distinct} distinct; missing ${v.missing.length}, unexpected ${v.unexpected.length}, duplicated ${v.duplicated.length}; ` +
      `sends topic: missing ${v.sends.missing.length}, unexpected ${v.sends.unexpected.length}, differing ${v.sends.differing.length}, duplicate records ${v.sends.duplicateRecords}; ` +
      `${stuck ?? 'engine drained'} (logs in ${r.logDir})`,
  );
  return { v, unsubscribes, stuck };
}

describe('Redis SIGKILLed mid-stream', () => {
  it('with appendfsync always: every expected email exactly once, nothing lost, nothing unexpected', async () => {
    const { v, unsubscribes, stuck } = await crashRedisMidStream({
      label: 'redis-crash',
      persistence: 'always',
      kills: 4,
      settleMs: 180_000,
    });
    expect(stuck).toBeNull();
    expect(unsubscribes).toBeGreaterThan(10);
    expect(v.expected).toBeGreaterThan(200);
    expect(v.missing, 'expected emails that never arrived').toEqual([]);
    expect(v.unexpected, 'emails the reference does not have (holdout, unsubscribed)').toEqual([]);
    expect(v.duplicated, 'emails that arrived more than once').toEqual([]);
    expect(v.sends.missing).toEqual([]);
    expect(v.sends.unexpected).toEqual([]);
  }, 400_000);

  it('without persistence the same crashes lose acknowledged writes, and the check sees it', async () => {
    const { v, stuck } = await crashRedisMidStream({
      label: 'redis-crash-none',
      persistence: 'none',
      kills: 2,
      settleMs: 45_000,
    });
    // What is lost shows as emails missing or unexpected (an opt-in, an unsubscribe, a timer
    // gone), or as an engine that no longer drains (its partitions' epochs gone with the rest).
    const wrong = v.missing.length + v.unexpected.length + v.duplicated.length;
    expect(wrong > 0 || stuck !== null).toBe(true);
  }, 400_000);
});
