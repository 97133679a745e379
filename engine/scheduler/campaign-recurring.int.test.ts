// A marketer's recurring "Friday 10:00 in each user's own zone" campaign on the real Kafka and
// Redis, with the scheduler as its own process on a moved clock: it runs on Thursday night
// and is SIGKILLed, is down across Berlin's Friday 10:00, starts again on Friday morning
// within the catch-up window and is SIGKILLed in the middle of Berlin's run, then starts again
// after New York's 10:00. Every pro user in Berlin and New York gets the Friday run once (one
// send each, the run named by its local time); Auckland's Friday 10:00 fell longer than the
// catch-up window before the scheduler was back, so it is skipped, as documented.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeWithHeader, eventCodec, sendCodec } from '../../platform/avro.ts';
import { internalTopicSpecs } from '../../platform/bus.ts';
import { SCHEMA_ID_HEADER, topics, type NormalisedEvent } from '../../platform/contracts.ts';
import { KafkaBus } from '../../platform/kafka.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import { createRedis, type RedisDeps } from '../../platform/redis.ts';
import { createApiServer } from '../../bin/api.ts';
import { isolate } from '../../test/support/isolation.ts';
import { waitFor } from '../../test/support/wait.ts';
import { readTopic } from '../../test/support/engine-harness.ts';
import { CAMPAIGN_EVENT, campaignRuleId } from '../core/campaign.ts';
import { cronOccurrences } from '../core/schedule.ts';
import { runEngine, type RunningEngine } from '../runtime/main.ts';
import { createRedisProgressStore, fanOutSummary } from './progress.ts';
import { PAGES_IN_FLIGHT } from './scheduler-service.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const H = 3_600_000;
const DAY = 24 * H;
const ZONES = {
  berlin: 'Europe/Berlin',
  newYork: 'America/New_York',
  auckland: 'Pacific/Auckland',
};
const CATCH_UP = 8 * H;
const RATE = 10;

const iso = isolate('campaign-recurring');
const rulesDir = mkdtempSync(path.join(tmpdir(), 'lc-campaign-recurring-'));
mkdirSync(path.join(rulesDir, 'segments'));
writeFileSync(
  path.join(rulesDir, 'segments', 'pro.json'),
  JSON.stringify({
    id: 'pro',
    conditions: { all: [{ fact: 'user', path: '$.plan', operator: 'equal', value: 'pro' }] },
  }),
);
const env = {
  ...iso.env,
  LC_RULES_DIR: rulesDir,
  LC_KAFKA_PARTITIONS: '3',
  LC_SCHEDULER_TICK_MS: '200',
  LC_SCHEDULER_LEASE_MS: '2000',
  LC_SCHEDULER_CATCHUP_MS: String(CATCH_UP),
  LC_LOG_LEVEL: 'info',
};
const config = iso.config(env);
const logger = silentLogger();
const children: ChildProcess[] = [];
let bus: KafkaBus | null = null;
let redis: RedisDeps | null = null;
let engine: RunningEngine | null = null;
let app: FastifyInstance | null = null;

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await app?.close();
  await engine?.stop();
  await bus?.close();
  if (redis) {
    const own = await redis.redis.keys(`${iso.redisKeyPrefix}*`);
    if (own.length > 0) await redis.redis.del(...own);
    redis.redis.disconnect();
  }
  rmSync(rulesDir, { recursive: true, force: true });
});

/** The scheduler as a process whose clock reads `at` now. */
function schedulerAt(at: number) {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx/esm',
      path.join(ROOT, 'test/support/scheduler-at.ts'),
      String(at - Date.now()),
    ],
    { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.push(child);
  let out = '';
  const keep = (b: Buffer) => {
    out = (out + b.toString()).slice(-200_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    output: () => out,
    async kill(signal: NodeJS.Signals) {
      child.kill(signal);
      await exited;
    },
  };
}

describe('a recurring local-time campaign across scheduler outages', () => {
  it('reaches every user once per Friday 10:00 in their zone, the run missed beyond the window skipped', async () => {
    // The first Friday a week or more ahead: all the campaign's time is on moved clocks.
    const cron = '0 10 * * 5';
    const from = Date.now() + 7 * DAY;
    const [berlin] = cronOccurrences(cron, from, from + 7 * DAY, ZONES.berlin);
    const friday = berlin!;
    const occurrence = (zone: string) =>
      cronOccurrences(cron, friday - DAY, friday + DAY, zone)[0]!;
    const A = occurrence(ZONES.auckland);
    const B = friday;
    const N = occurrence(ZONES.newYork);
    // Auckland's run is older than the window on Friday morning, Berlin's not yet in New York's late morning.
    expect(A < B - CATCH_UP && B < N && N + H - B < CATCH_UP).toBe(true);

    bus = KafkaBus.fromConfig(config, logger);
    redis = createRedis(config.redis, logger);
    const t = topics(config.kafka.topicPrefix);
    await waitFor(() => bus!.ensureTopics(internalTopicSpecs(t, 3)).then(() => true), {
      timeout: 60_000,
      interval: 1000,
      message: 'cannot create the topics',
    });

    // 20 pro users in each of Berlin and New York, 10 in Auckland, 5 on the free plan in Berlin.
    const users = new Map<string, { zone: string; plan: string }>();
    for (const [name, zone] of Object.entries(ZONES))
      for (let i = 0; i < (name === 'auckland' ? 10 : 20); i++)
        users.set(`${name}-${i}`, { zone, plan: 'pro' });
    for (let i = 0; i < 5; i++) users.set(`berlin-free-${i}`, { zone: ZONES.berlin, plan: 'free' });
    const now = Date.now();
    const events: NormalisedEvent[] = [...users].map(([userId, u]) => ({
      id: `${iso.id}-${userId}`,
      userId,
      type: 'identify',
      ts: now - DAY,
      receivedAt: now - DAY,
      source: 'http:backend:server',
      properties: {},
      traits: { timezone: u.zone, plan: u.plan, email: `${userId}@example.com` },
    }));
    const records = events.map((e) => ({ key: e.userId, ...encodeWithHeader(eventCodec, e) }));
    await waitFor(
      () =>
        bus!
          .publisher()
          .publish(t.events, records)
          .then(() => true),
      {
        timeout: 30_000,
        interval: 500,
        message: 'cannot publish the users',
      },
    );
    engine = await runEngine(config, logger, {
      registry: createMetricsRegistry({ defaults: false }),
    });

    // Wednesday: a marketer schedules the campaign.
    const wednesday = B - 2 * DAY;
    app = await createApiServer(config, {
      redis,
      bus,
      publisher: bus.publisher(),
      logger,
      metrics: createMetricsRegistry({ defaults: false }),
      now: () => wednesday,
    });
    const call = (method: 'GET' | 'POST', url: string, body?: unknown) =>
      app!.inject({
        method,
        url,
        headers: { authorization: `Bearer ${config.auth.adminToken}` },
        ...(body === undefined ? {} : { payload: body as object }),
      });
    const created = await call('POST', '/v1/campaigns', {
      name: 'Friday news',
      audience: { type: 'segment', segment: 'pro' },
      message: { template: 'winback', channels: ['email'] },
      schedule: { type: 'recurring', cron, timezone: 'user' },
      throttle: { perSecond: RATE },
    });
    expect(created.statusCode, created.body).toBe(201);
    const id = created.json<{ campaign: { id: string } }>().campaign.id;
    expect((await call('POST', `/v1/campaigns/${id}/schedule`)).statusCode).toBe(200);
    const progress = createRedisProgressStore(redis.redis, redis.keys);
    const zoneProgress = async (zone: string) =>
      (await progress.load(campaignRuleId(id))).zones.get(`z:${zone}`);

    // Thursday night, an hour before Auckland's Friday 10:00: nothing is due; then the scheduler dies.
    const thursday = schedulerAt(A - H);
    await waitFor(() => /scheduler started/.test(thursday.output()), {
      timeout: 60_000,
      message: `the Thursday scheduler did not start:\n${thursday.output().slice(-3000)}`,
    });
    await new Promise((r) => setTimeout(r, 3000));
    await thursday.kill('SIGKILL');
    const members = async () =>
      (await bus!.endOffsets(t.events)).size === 0
        ? []
        : (await readTopic(bus!.kafka, t.events))
            .map((r) => eventCodec.decode(r.value!, r.headers[SCHEMA_ID_HEADER]))
            .filter((e) => e.type === CAMPAIGN_EVENT);
    expect(await members()).toEqual([]);

    // Friday 10:30 in Berlin: Berlin's run is due (within the window), Auckland's is 10+ hours
    // old and skipped; killed in the middle of Berlin's run.
    const morning = schedulerAt(B + 30 * 60_000);
    await waitFor(
      async () => {
        const z = await zoneProgress(ZONES.berlin);
        return z?.at !== undefined && (z.n ?? 0) >= 6;
      },
      {
        timeout: 90_000,
        interval: 20,
        message: `Berlin's run did not get going:\n${morning.output().slice(-3000)}`,
      },
    );
    await morning.kill('SIGKILL');
    expect(morning.output()).toContain(
      'skipping schedule occurrences older than the catch-up window',
    );
    expect((await zoneProgress(ZONES.berlin))?.at).toBe(B);

    // Friday 11:00 in New York: Berlin's run (7.5 h old) resumes from its position, New York's runs.
    const afternoon = schedulerAt(N + H);
    await waitFor(
      async () => {
        const [b, n] = [await zoneProgress(ZONES.berlin), await zoneProgress(ZONES.newYork)];
        return (
          b?.at === undefined && (b?.runs ?? 0) === 1 && n?.at === undefined && (n?.runs ?? 0) === 1
        );
      },
      {
        timeout: 90_000,
        interval: 200,
        message: `the runs did not finish:\n${afternoon.output().slice(-3000)}`,
      },
    );
    await afternoon.kill('SIGTERM');

    const expected = [...users].filter(([u, x]) => x.plan === 'pro' && !u.startsWith('auckland'));
    const asked = [...users].filter(([u]) => !u.startsWith('auckland'));
    const runId = '10:00';
    const got = await members();
    const distinct = new Map(got.map((e) => [e.id, e]));
    expect([...distinct.values()].map((e) => e.userId).sort()).toEqual(
      asked.map(([u]) => u).sort(),
    );
    for (const e of distinct.values()) {
      expect(String(e.properties.runId).endsWith(`T${runId}`), JSON.stringify(e)).toBe(true);
      expect(e.ts).toBe(users.get(e.userId)!.zone === ZONES.berlin ? B : N);
    }
    // The kill repeats at most the pages in flight (the same event ids).
    expect(got.length - distinct.size).toBeLessThanOrEqual(PAGES_IN_FLIGHT * 2);

    // The engine sends once per pro user of Berlin and New York, and to nobody else.
    const sendsBy = async () =>
      (await readTopic(bus!.kafka, t.sends))
        .map((r) => sendCodec.decode(r.value!, r.headers[SCHEMA_ID_HEADER]))
        .filter((s) => s.campaignId === id);
    await waitFor(
      async () => new Set((await sendsBy()).map((s) => s.sendId)).size >= expected.length,
      {
        timeout: 60_000,
        message: 'the sends did not arrive',
      },
    );
    await new Promise((r) => setTimeout(r, 3000));
    const sends = await sendsBy();
    const perUser = new Map<string, Set<string>>();
    for (const s of sends)
      perUser.set(s.userId, (perUser.get(s.userId) ?? new Set()).add(s.sendId));
    expect([...perUser.keys()].sort()).toEqual(expected.map(([u]) => u).sort());
    for (const [u, ids] of perUser) expect(ids.size, u).toBe(1);

    const summary = fanOutSummary(await progress.load(campaignRuleId(id)));
    expect(summary).toMatchObject({ runs: 2, skippedRuns: 1, inProgress: [] });
    // Counted from the stored positions: pages published again after the kill are not counted twice.
    expect(summary.fannedOut).toBe(asked.length);
    const state = await call('GET', `/v1/campaigns/${id}`);
    expect(state.json()).toMatchObject({
      campaign: { state: 'running' },
      progress: { runs: 2, skippedRuns: 1, planned: asked.length },
    });
  });
});
