// Campaigns on the real stack (Kafka, Redis, SMTP): the API writes the campaigns topic, the
// scheduler fans runs out onto the events topic, the engine matches them against the users'
// state and delivery sends. A list of three users gets the email once each, through consent
// and the policy chain; a throttled campaign stopped half-way publishes nothing more, and a
// member published after the stop matches nothing.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeWithHeader, eventCodec, sendCodec } from '../platform/avro.ts';
import { internalTopicSpecs } from '../platform/bus.ts';
import type { Config } from '../platform/config.ts';
import {
  SCHEMA_ID_HEADER,
  topics,
  type NormalisedEvent,
  type SendCommand,
} from '../platform/contracts.ts';
import { KafkaBus } from '../platform/kafka.ts';
import { silentLogger } from '../platform/logger.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import { createRedis, type RedisDeps } from '../platform/redis.ts';
import { runEngine, type RunningEngine } from '../engine/runtime/main.ts';
import { runScheduler, type RunningScheduler } from '../engine/scheduler/main.ts';
import { campaignMemberEvent } from '../engine/core/campaign.ts';
import { runDelivery, type DeliveryHandle } from '../delivery/pipeline/run.ts';
import { createApiServer } from '../bin/api.ts';
import { isolate } from '../test/support/isolation.ts';
import { waitFor } from '../test/support/wait.ts';
import { readTopic } from '../test/support/engine-harness.ts';
import { startSink, stopSink } from '../test/support/delivery-harness.ts';
import type { SmtpSink } from '../devtools/smtp-sink.ts';

const logger = silentLogger();
const rulesDir = mkdtempSync(path.join(tmpdir(), 'lc-campaign-rules-'));
mkdirSync(path.join(rulesDir, 'segments'));
writeFileSync(
  path.join(rulesDir, 'segments', 'pro.json'),
  JSON.stringify({
    id: 'pro',
    conditions: { all: [{ fact: 'user', path: '$.plan', operator: 'equal', value: 'pro' }] },
  }),
);

const iso = isolate('campaigns');
let config: Readonly<Config>;
let sink: SmtpSink & { dir: string };
let bus: KafkaBus;
let redis: RedisDeps;
let app: FastifyInstance;
const running: { stop(): Promise<void> }[] = [];

beforeAll(async () => {
  sink = await startSink();
  config = iso.config({
    LC_RULES_DIR: rulesDir,
    LC_KAFKA_PARTITIONS: '3',
    LC_QUIET_HOURS: '',
    LC_SMTP_URLS: `smtp://127.0.0.1:${sink.port}`,
    LC_SCHEDULER_TICK_MS: '200',
    LC_TIMER_POLL_MS: '200',
  });
  bus = KafkaBus.fromConfig(config, logger);
  redis = createRedis(config.redis, logger);
  const t = topics(config.kafka.topicPrefix);
  // Topics created while other test files create theirs sometimes miss a leader at first: try again.
  await waitFor(() => bus.ensureTopics(internalTopicSpecs(t, 3)).then(() => true), {
    timeout: 60_000,
    interval: 1000,
    message: 'cannot create the topics',
  });
  const registry = () => createMetricsRegistry({ defaults: false });
  const engine: RunningEngine = await runEngine(config, logger, { registry: registry() });
  running.push(engine);
  const scheduler: RunningScheduler = await runScheduler(config, logger, { registry: registry() });
  running.push(scheduler);
  const delivery: DeliveryHandle = await runDelivery(config, logger, { metrics: registry() });
  running.push(delivery);
  app = await createApiServer(config, {
    redis,
    bus,
    publisher: bus.publisher(),
    logger,
    metrics: registry(),
  });
  await app.ready();
}, 180_000);

afterAll(async () => {
  await app?.close();
  for (const r of running.reverse()) await r.stop().catch(() => undefined);
  await bus?.close();
  if (redis) {
    const own = await redis.redis.keys(`${iso.redisKeyPrefix}*`);
    if (own.length > 0) await redis.redis.del(...own);
    redis.redis.disconnect();
  }
  if (sink) await stopSink(sink);
  rmSync(rulesDir, { recursive: true, force: true });
});

const call = (
  method: 'GET' | 'POST' | 'PUT' | 'PATCH',
  url: string,
  body?: unknown,
  type?: string,
) =>
  app.inject({
    method,
    url,
    headers: {
      authorization: `Bearer ${config.auth.adminToken}`,
      ...(type ? { 'content-type': type } : {}),
    },
    ...(body === undefined ? {} : { payload: body as string }),
  });

async function publish(events: NormalisedEvent[]): Promise<void> {
  const records = events.map((e) => ({ key: e.userId, ...encodeWithHeader(eventCodec, e) }));
  // A topic just created may not be known to every broker connection yet: retry until it is.
  await waitFor(
    () =>
      bus
        .publisher()
        .publish(topics(config.kafka.topicPrefix).events, records)
        .then(() => true),
    { timeout: 30_000, interval: 500, message: 'cannot publish the events' },
  );
}

function identify(userId: string, traits: Record<string, unknown>): NormalisedEvent {
  const ts = Date.now() - 60_000;
  return {
    id: `${iso.id}-${userId}-identify`,
    userId,
    type: 'identify',
    ts,
    receivedAt: ts,
    source: 'http:backend:server',
    properties: {},
    traits,
  };
}

async function sendsOf(campaignId: string): Promise<SendCommand[]> {
  const t = topics(config.kafka.topicPrefix).sends;
  if ((await bus.endOffsets(t)).size === 0) return [];
  return (await readTopic(bus.kafka, t))
    .map((r) => sendCodec.decode(r.value!, r.headers[SCHEMA_ID_HEADER]))
    .filter((s) => s.campaignId === campaignId);
}

async function progress(id: string) {
  const res = await call('GET', `/v1/campaigns/${id}`);
  expect(res.statusCode, res.body).toBe(200);
  return res.json<{
    campaign: { state: string };
    progress: { planned: number; fannedOut: number; runs: number };
  }>();
}

describe('campaigns on the real stack', () => {
  it('sends a list campaign to each of three users once, through consent and delivery', async () => {
    const users = ['ada', 'bert', 'chen'].map((n) => `${n}-${iso.id}`);
    const emailOf = (u: string) => `${u}@example.com`;
    await publish([
      ...users.map((u, i) =>
        identify(u, { email: emailOf(u), firstName: ['Ada', 'Bert', 'Chen'][i], plan: 'trial' }),
      ),
      // In the directory and the engine, but not on the list.
      identify(`dora-${iso.id}`, { email: emailOf(`dora-${iso.id}`), plan: 'trial' }),
    ]);
    for (const u of [...users, `dora-${iso.id}`]) {
      const res = await call(
        'PATCH',
        `/v1/users/${u}/preferences`,
        JSON.stringify({
          consents: { marketing: { email: { granted: true, source: 'signup_form' } } },
        }),
        'application/json',
      );
      expect(res.statusCode, res.body).toBe(200);
    }
    const created = await call(
      'POST',
      '/v1/campaigns',
      JSON.stringify({
        name: 'Come back',
        audience: { type: 'list' },
        message: { template: 'winback', channels: ['email'] },
        schedule: { type: 'now' },
      }),
      'application/json',
    );
    expect(created.statusCode, created.body).toBe(201);
    const id = created.json<{ campaign: { id: string } }>().campaign.id;
    const csv = `userId\n${users.join('\n')}\n${users[0]}\n`;
    const upload = await call('PUT', `/v1/campaigns/${id}/audience`, csv, 'text/csv');
    expect(upload.json()).toMatchObject({ report: { accepted: 3, duplicates: 1, rejected: 0 } });
    const scheduled = await call('POST', `/v1/campaigns/${id}/schedule`);
    expect(scheduled.statusCode, scheduled.body).toBe(200);

    for (const u of users)
      await waitFor(() => sink.list({ to: emailOf(u) }).length > 0, {
        timeout: 60_000,
        message: `no email for ${u}`,
      });
    await waitFor(async () => (await progress(id)).campaign.state === 'completed', {
      timeout: 30_000,
    });
    // Anything extra under way arrives meanwhile.
    await new Promise((r) => setTimeout(r, 3000));
    const sends = await sendsOf(id);
    expect(sends.map((s) => s.userId).sort()).toEqual([...users].sort());
    for (const u of users) {
      const mails = sink.list({ to: emailOf(u) });
      expect(mails, u).toHaveLength(1);
      const send = sends.find((s) => s.userId === u)!;
      expect(mails[0]!.headers['x-lifecycle-send-id']).toBe(send.sendId);
      expect(mails[0]!.subject).toMatch(/We miss you/);
      expect(mails[0]!.headers['list-unsubscribe-post']).toBe('List-Unsubscribe=One-Click');
    }
    expect(sink.list({ to: emailOf(`dora-${iso.id}`) })).toEqual([]);
    expect((await progress(id)).progress).toMatchObject({ runs: 1, planned: 3, fannedOut: 3 });
  });

  it('stops a throttled campaign half-way: no more members go out, and those out after the stop match nothing', async () => {
    const users = Array.from(
      { length: 150 },
      (_, i) => `pro-${String(i).padStart(3, '0')}-${iso.id}`,
    );
    await publish(users.map((u) => identify(u, { plan: 'pro', email: `${u}@example.com` })));
    const created = await call(
      'POST',
      '/v1/campaigns',
      JSON.stringify({
        name: 'Slowly',
        audience: { type: 'segment', segment: 'pro' },
        message: { template: 'winback', channels: ['email'] },
        schedule: { type: 'now' },
        throttle: { perSecond: 20 },
      }),
      'application/json',
    );
    const id = created.json<{ campaign: { id: string } }>().campaign.id;
    // The directory must know the users before the run starts (the scheduler waits for it).
    expect((await call('POST', `/v1/campaigns/${id}/schedule`)).statusCode).toBe(200);
    await waitFor(async () => (await progress(id)).progress.fannedOut >= 30, {
      timeout: 60_000,
      interval: 200,
      message: 'the run did not get going',
    });
    const stop = await call('POST', `/v1/campaigns/${id}/stop`);
    expect(stop.statusCode, stop.body).toBe(200);
    const atStop = (await progress(id)).progress.fannedOut;
    await new Promise((r) => setTimeout(r, 3000));
    const after = (await progress(id)).progress.fannedOut;
    // The scheduler reads the stop within a fetch or two; a second of the rate at most.
    expect(after - atStop).toBeLessThanOrEqual(20);
    expect(after).toBeLessThan(users.length);
    await new Promise((r) => setTimeout(r, 2000));
    expect((await progress(id)).progress.fannedOut).toBe(after);
    expect((await progress(id)).campaign.state).toBe('stopped');

    // A member out when the stop came (published as the scheduler would have) matches nothing.
    // A user of the audience that no page can have reached: the fan-out follows the
    // directory's order, not this list's, so any listed user may already be out.
    const late = `pro-late-${iso.id}`;
    await publish([identify(late, { plan: 'pro', email: `${late}@example.com` })]);
    const lateAt = Date.now();
    await publish([campaignMemberEvent(id, new Date(lateAt).toISOString(), late, lateAt)]);
    const sent = await waitFor(async () => {
      const s = await sendsOf(id);
      return s.length > 0 ? s : undefined;
    });
    await new Promise((r) => setTimeout(r, 3000));
    const sends = await sendsOf(id);
    expect(sends.length).toBeGreaterThanOrEqual(sent.length);
    expect(sends.length).toBeLessThanOrEqual(after);
    expect(sends.some((s) => s.userId === late)).toBe(false);
  });
});
