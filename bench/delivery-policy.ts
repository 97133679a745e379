// Benchmark: policy-chain decisions/s with Redis. Each decision runs the real chain against
// the real Redis of the stack: claim (Lua) -> expiry -> holdout -> suppression -> consent ->
// frequency cap (Lua) -> quiet hours, then records the send as sent (claim + bounce index),
// i.e. everything delivery does for a send except rendering and the provider call. The mix:
// 50% opted-in marketing, 30% transactional, 20% marketing without opt-in (suppressed).
// Baseline in the same run: the same number of bare Redis round trips (PING) per decision at
// the same concurrency, the floor any Redis-backed chain pays.
// Run alone: npx tsx bench/delivery-policy.ts (or npm run bench -- delivery-policy).
import { randomUUID } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { NO_MESSAGE_TYPES } from '../platform/message-types.ts';
import { loadConfig } from '../platform/config.ts';
import type { SendCommand } from '../platform/contracts.ts';
import { silentLogger } from '../platform/logger.ts';
import { createRedis } from '../platform/redis.ts';
import { createPolicyChain } from '../delivery/pipeline/chain.ts';
import { createRedisDelayQueue } from '../delivery/pipeline/delay-queue.ts';
import { createSendPipeline } from '../delivery/pipeline/pipeline.ts';
import { createSentIndex } from '../delivery/sent-index.ts';
import { createBreakerRegistry } from '../delivery/pipeline/provider-stage.ts';
import type { Stage } from '../delivery/stage.ts';
import { createRedisCapStore } from '../delivery/policy/caps-store.ts';
import { createRedisClaimStore } from '../delivery/policy/claims.ts';
import { createRedisOptInStore } from '../delivery/optin/store.ts';
import { createPreferencesStore } from '../delivery/preferences/store.ts';
import { createTrackingLinks } from '../delivery/links.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const MS = 5_000;
const CONCURRENCY = 64;
const USERS = 5_000;
/** Redis round trips of one decision through the chain (claim, suppression, preferences, cap, sent). */
const ROUND_TRIPS = 5;

async function loop(
  ms: number,
  concurrency: number,
  fn: (i: number) => Promise<void>,
): Promise<{ ops: number; perSec: number; p50Ms: number; p99Ms: number }> {
  let i = 0;
  const lat: number[] = [];
  const start = performance.now();
  const deadline = start + ms;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        const t = performance.now();
        await fn(i++);
        lat.push(performance.now() - t);
      }
    }),
  );
  const secs = (performance.now() - start) / 1000;
  lat.sort((a, b) => a - b);
  const q = (p: number) =>
    Math.round((lat[Math.min(lat.length - 1, Math.floor(lat.length * p))] ?? 0) * 100) / 100;
  return { ops: lat.length, perSec: Math.round(lat.length / secs), p50Ms: q(0.5), p99Ms: q(0.99) };
}

export async function run() {
  const prefix = `bench:dlv-policy:${randomUUID().slice(0, 8)}:`;
  const config = loadConfig(process.env, {
    'redis.keyPrefix': prefix,
    'delivery.quietHours': '',
    'delivery.capPerDay': 50,
    'delivery.capPerWeek': 200,
  });
  const logger = silentLogger();
  const deps = createRedis(config.redis, logger);
  try {
    const preferences = createPreferencesStore(deps);
    for (let u = 0; u < USERS; u += 500) {
      await Promise.all(
        Array.from({ length: 500 }, (_, k) =>
          preferences.apply(
            `u${u + k}`,
            {
              records: [
                {
                  category: 'marketing',
                  channel: 'email',
                  record: { granted: (u + k) % 5 !== 0, at: Date.now(), source: 'bench' },
                },
              ],
            },
            { source: 'bench', at: Date.now() },
          ),
        ),
      );
    }
    const claims = createRedisClaimStore(deps);
    const caps = createRedisCapStore(deps);
    const chain = createPolicyChain(
      { ...config.delivery, publicBaseUrl: config.http.publicBaseUrl },
      {
        owner: 'bench',
        claims,
        caps,
        preferences,
        optIns: createRedisOptInStore(deps),
        messageTypes: NO_MESSAGE_TYPES,
        renderer: { render: () => ({}), versionFor: () => null, isTemplateLink: () => true },
        links: createTrackingLinks({
          publicBaseUrl: config.http.publicBaseUrl,
          signingSecret: config.auth.signingSecret,
        }),
        providers: new Map(),
        breakers: createBreakerRegistry({ threshold: 5, cooldownMs: 1000 }),
        logger,
      },
    );
    // Everything before rendering, then the send is recorded as sent.
    const sent: Stage = { name: 'sent', run: async () => ({ kind: 'sent', provider: 'bench' }) };
    const stages = [...chain.filter((s) => s.name !== 'render' && s.name !== 'provider'), sent];
    const pipeline = createSendPipeline({
      stages,
      claims,
      caps,
      delayQueue: createRedisDelayQueue(deps),
      sentIndex: createSentIndex(deps),
      owner: 'bench',
      logger,
      defaults: { timezone: 'UTC', locale: 'en' },
    });
    const results: Record<string, number> = {};
    const send = (i: number): SendCommand => {
      const u = (i * 7919) % USERS;
      return {
        sendId: `bench-${i}`,
        ruleId: `rule-${i % 20}`,
        userId: `u${u}`,
        category: i % 10 < 3 ? 'transactional' : 'marketing',
        priority: i % 100,
        template: 'welcome',
        channels: ['email'],
        variant: null,
        holdout: false,
        triggeredBy: { eventId: `e${i}`, eventType: 'bench' },
        createdAt: Date.now(),
        expiresAt: null,
        data: { user: { email: `u${u}@example.com`, timezone: 'Europe/Berlin', locale: 'en' } },
      };
    };
    const chainRun = await loop(MS, CONCURRENCY, async (i) => {
      const r = await pipeline.process(send(i), 'email', null);
      const k =
        r.result.kind === 'suppressed'
          ? `suppressed:${r.result.reason.split(':')[0]}`
          : r.result.kind;
      results[k] = (results[k] ?? 0) + 1;
    });
    const baseline = await loop(MS, CONCURRENCY, async () => {
      for (let k = 0; k < ROUND_TRIPS; k++) await deps.redis.ping();
    });
    const out = {
      at: new Date().toISOString(),
      concurrency: CONCURRENCY,
      users: USERS,
      decisionsPerSec: chainRun.perSec,
      decisionLatencyMs: { p50: chainRun.p50Ms, p99: chainRun.p99Ms },
      decisions: chainRun.ops,
      outcomes: results,
      baseline: {
        what: `${ROUND_TRIPS} sequential Redis PINGs per decision`,
        perSec: baseline.perSec,
        p50Ms: baseline.p50Ms,
        p99Ms: baseline.p99Ms,
      },
      ratioToBaseline: Math.round((chainRun.perSec / baseline.perSec) * 100) / 100,
    };
    await mkdir(path.join(here, 'results'), { recursive: true });
    await writeFile(
      path.join(here, 'results', 'delivery-policy.json'),
      JSON.stringify(out, null, 2),
    );
    console.log(
      `policy chain: ${out.decisionsPerSec} decisions/s (p50 ${out.decisionLatencyMs.p50} ms, p99 ${out.decisionLatencyMs.p99} ms, ${CONCURRENCY} in flight); ` +
        `baseline ${out.baseline.perSec}/s (${out.baseline.what}); ratio ${out.ratioToBaseline}; outcomes ${JSON.stringify(results)}`,
    );
    return out;
  } finally {
    let cursor = '0';
    do {
      const [next, keys] = await deps.redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await deps.redis.del(...keys);
    } while (cursor !== '0');
    deps.redis.disconnect();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
