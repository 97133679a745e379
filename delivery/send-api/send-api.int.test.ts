// The send API end to end on the real stack: a backend's service key sends through the API
// process (Redis keys and Idempotency-Key records, Kafka with acks) to users the engine
// learned from an identify event; delivery's policy chain decides and the email lands in an
// SMTP sink; the analytics sink stores the sends. Retries, a reused key, concurrent requests,
// a bounced raw address and a marketing send without consent are each checked at the end of
// that path: what arrived in the sink, what went out on the topics, what is in ClickHouse.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeWithHeader, eventCodec, sendCodec } from '../../platform/avro.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import type { UserDirectory } from '../../platform/users.ts';
import type { SmtpSink } from '../../devtools/smtp-sink.ts';
import { createRedisUserDirectory, runEngine } from '../../engine/index.ts';
import { createAnalyticsSink, ensureSchema, sinkConfig } from '../../analytics/index.ts';
import { createTestDatabase, type TestDatabase } from '../../test/support/clickhouse.ts';
import {
  createHarness,
  logger,
  startSink,
  stopSink,
  waitFor,
  type Harness,
} from '../../test/support/delivery-harness.ts';
import { readTopic } from '../../test/support/engine-harness.ts';
import { startSendApi, type SendApi } from '../../test/support/send-api.ts';
import { runDelivery, type DeliveryHandle } from '../pipeline/run.ts';
import { signWebhook } from '../providers/webhook.ts';
import { recipientIdOf } from './request.ts';

const EMAIL_EVENTS_SECRET = 'send-api-test-email-events-secret';

let h: Harness;
let smtp: SmtpSink & { dir: string };
let rulesDir: string;
let delivery: DeliveryHandle;
let engine: Awaited<ReturnType<typeof runEngine>>;
let db: TestDatabase;
let analytics: ReturnType<typeof createAnalyticsSink>;
let api: SendApi;
let users: UserDirectory;
let service: { id: string; headers: Record<string, string> };

beforeAll(async () => {
  smtp = await startSink();
  // No rules: every message of this test comes from the send API.
  rulesDir = await mkdtemp(join(tmpdir(), 'lc-send-api-rules-'));
  h = await createHarness('send-api', {
    'delivery.smtpUrls': [`smtp://127.0.0.1:${smtp.port}`],
    'delivery.emailFrom': 'Example <hello@example.com>',
    'auth.emailEventsSecret': EMAIL_EVENTS_SECRET,
    'engine.rulesDir': rulesDir,
  });
  db = await createTestDatabase(h.config);
  await ensureSchema(db.store, db.database, { payloadTtlDays: 30 });
  analytics = createAnalyticsSink(
    { ...sinkConfig(h.config), flushIntervalMs: 200 },
    { bus: h.bus, store: db.store, logger, metrics: createMetricsRegistry({ defaults: false }) },
  );
  await analytics.start();
  engine = await runEngine(h.config, logger, {
    registry: createMetricsRegistry({ defaults: false }),
  });
  delivery = await runDelivery(h.config, logger, { redis: h.redis, bus: h.bus });
  api = await startSendApi(h.config, { redis: h.redis, publisher: h.bus.publisher() });
  service = await api.serviceKey('backend');
  users = createRedisUserDirectory(h.redis, {
    eventsTopic: h.topics.events,
    partitions: h.config.kafka.partitions,
  });
});

afterAll(async () => {
  await api?.close();
  await delivery?.stop();
  await engine?.stop();
  await analytics?.stop();
  await db?.drop();
  await h?.close();
  if (smtp) await stopSink(smtp);
  if (rulesDir) await rm(rulesDir, { recursive: true, force: true });
});

/** What the product's backend does when a user signs up: an identify with their traits, then waits until the engine has it. */
async function identify(userId: string, traits: Record<string, unknown>): Promise<void> {
  const now = Date.now();
  await h.bus.publisher().publish(h.topics.events, [
    {
      key: userId,
      ...encodeWithHeader(eventCodec, {
        id: `identify-${userId}`,
        userId,
        type: 'identify',
        ts: now,
        receivedAt: now,
        source: 'http:backend:server',
        properties: {},
        traits,
      }),
    },
  ]);
  await waitFor(`the engine to know ${userId}`, async () => (await users.profile(userId)) ?? false);
}

const send = (body: unknown, headers: Record<string, string> = {}, path = '/v1/send') =>
  fetch(`${api.baseUrl}${path}`, {
    method: 'POST',
    headers: { ...service.headers, ...headers },
    body: JSON.stringify(body),
  });

type Queued = { sendId: string; userId: string; channels: string[]; status: string };

const messageIdOf = (sendId: string) => `${sendId}@example.com`;

/** Records of a sendId on a sends topic: the retries must not have added any. */
async function recordsOf(topic: string, sendId: string): Promise<number> {
  const records = await readTopic(h.bus.kafka, topic);
  return records.filter((r) => sendCodec.decode(r.value!).sendId === sendId).length;
}

const outcome = (sendId: string, status: string) =>
  waitFor(`${status} for ${sendId}`, () =>
    h.outcomes.find((o) => o.sendId === sendId && o.status === status),
  );

describe('the send API on the real stack', () => {
  it("sends a service key's message to a user once: the retry sends nothing more, another body with the key is refused", async () => {
    const userId = `ada-${h.id}`;
    await identify(userId, { email: `${userId}@example.com`, firstName: 'Ada', locale: 'en' });
    const body = {
      template: 'welcome',
      userId,
      category: 'transactional',
      channels: ['email'],
      data: { user: { firstName: 'Ada L.' } },
    };
    const key = { 'idempotency-key': `welcome:${userId}` };
    const first = await send(body, key);
    expect(first.status).toBe(202);
    const answer = (await first.json()) as { sends: Queued[] };
    const [queued] = answer.sends;
    expect(queued).toEqual({
      sendId: expect.any(String),
      userId,
      channels: ['email'],
      status: 'queued',
    });

    const mail = await waitFor(
      'the email in the sink',
      () => smtp.list({ messageId: messageIdOf(queued!.sendId) })[0],
    );
    expect(mail.to).toEqual([`${userId}@example.com`]);
    expect(mail.subject).toBe('Welcome to Example, Ada L.!');
    await outcome(queued!.sendId, 'sent');

    const retry = await send(body, key);
    expect(retry.status).toBe(202);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(await retry.json()).toEqual(answer);

    const other = await send({ ...body, template: 'trial_ending' }, key);
    expect(other.status).toBe(422);
    expect(await other.json()).toMatchObject({ code: 'LC_ERR_IDEMPOTENCY_MISMATCH' });

    // Whatever delivery would have done with a second record, there is none, and one email.
    expect(await recordsOf(h.topics.sends, queued!.sendId)).toBe(1);
    await new Promise((r) => setTimeout(r, 1000));
    expect(smtp.list({ to: `${userId}@example.com` })).toHaveLength(1);
  });

  it('answers one of two concurrent requests with a key and the other 409, publishing once', async () => {
    const userId = `cy-${h.id}`;
    await identify(userId, { email: `${userId}@example.com`, firstName: 'Cy' });
    const body = { template: 'welcome', userId, category: 'transactional', channels: ['email'] };
    const key = { 'idempotency-key': `concurrent:${userId}` };
    const both = await Promise.all([send(body, key), send(body, key)]);
    expect(both.map((r) => r.status).sort()).toEqual([202, 409]);
    const winner = both.find((r) => r.status === 202)!;
    const { sends } = (await winner.json()) as { sends: Queued[] };
    const loser = both.find((r) => r.status === 409)!;
    expect(await loser.json()).toMatchObject({ code: 'LC_ERR_IDEMPOTENCY_IN_PROGRESS' });
    await waitFor('the email', () => smtp.list({ messageId: messageIdOf(sends[0]!.sendId) })[0]);
    expect(await recordsOf(h.topics.sends, sends[0]!.sendId)).toBe(1);
  });

  it('keeps a raw address suppressed after it bounced: the next send to it, however spelt, is not sent', async () => {
    const address = `guest-${h.id}@example.com`;
    const first = await send({
      template: 'welcome',
      to: { email: address },
      category: 'transactional',
      priority: 'high',
      data: { user: { firstName: 'Guest' } },
    });
    expect(first.status).toBe(202);
    const [queued] = ((await first.json()) as { sends: Queued[] }).sends;
    expect(queued!.userId).toBe(recipientIdOf({ kind: 'email', normalised: address }));
    await waitFor('the email', () => smtp.list({ messageId: messageIdOf(queued!.sendId) })[0]);

    // The mail provider reports a hard bounce of that message.
    const events = JSON.stringify({
      events: [
        {
          type: 'bounce',
          bounceType: 'hard',
          messageId: `<${messageIdOf(queued!.sendId)}>`,
          recipient: address,
          reason: '550 5.1.1 user unknown',
        },
      ],
    });
    const bounced = await fetch(`${h.baseUrl}/v1/webhooks/email`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-lc-signature': signWebhook(EMAIL_EVENTS_SECRET, events, Math.floor(Date.now() / 1000)),
      },
      body: events,
    });
    expect(await bounced.json()).toEqual({ applied: 1, unknown: [] });

    const again = await send({
      template: 'welcome',
      to: { email: address.toUpperCase() },
      category: 'transactional',
    });
    expect(again.status).toBe(202);
    const [second] = ((await again.json()) as { sends: Queued[] }).sends;
    expect(second!.userId).toBe(queued!.userId);
    const suppressed = await outcome(second!.sendId, 'suppressed');
    expect(suppressed.reason).toBe('hard_bounce');
    expect(smtp.list({ messageId: messageIdOf(second!.sendId) })).toEqual([]);
  });

  it('lets the chain refuse a marketing send to a user who never opted in', async () => {
    const userId = `bo-${h.id}`;
    await identify(userId, { email: `${userId}@example.com`, firstName: 'Bo' });
    const res = await send({
      template: 'winback',
      userId,
      category: 'marketing',
      channels: ['email'],
    });
    expect(res.status).toBe(202);
    const [queued] = ((await res.json()) as { sends: Queued[] }).sends;
    const suppressed = await outcome(queued!.sendId, 'suppressed');
    expect(suppressed.reason).toBe('no_opt_in:marketing:email');
    expect(smtp.list({ to: `${userId}@example.com` })).toEqual([]);
  });

  it('sends a batch, one result per message, and stores every send in analytics as an api send with its origin', async () => {
    const userId = `di-${h.id}`;
    await identify(userId, { email: `${userId}@example.com`, firstName: 'Di', plan: 'pro' });
    const res = await send(
      {
        messages: [
          {
            template: 'payment_failed',
            userId,
            category: 'transactional',
            channels: ['email'],
            data: { event: { properties: { amount: 49, currency: 'EUR' } } },
          },
          { template: 'welcom', userId, category: 'transactional' },
          {
            template: 'welcome',
            to: { email: `batch-${h.id}@example.com` },
            category: 'transactional',
            priority: 'high',
          },
        ],
      },
      { 'idempotency-key': `batch:${userId}` },
      '/v1/send/batch',
    );
    expect(res.status).toBe(202);
    const { sends } = (await res.json()) as {
      sends: (Queued & { index: number; code?: string })[];
    };
    expect(sends.map((s) => [s.index, s.status, s.code ?? null])).toEqual([
      [0, 'queued', null],
      [1, 'rejected', 'LC_ERR_UNKNOWN_TEMPLATE'],
      [2, 'queued', null],
    ]);
    const ids = [sends[0]!.sendId, sends[2]!.sendId];
    for (const id of ids)
      await waitFor('the email', () => smtp.list({ messageId: messageIdOf(id) })[0]);

    const rows = await waitFor('the sends rows in ClickHouse', async () => {
      const found = await db.store.query<{
        send_id: string;
        rule_id: string;
        origin: string;
        priority: number;
        triggered_by_event_type: string;
      }>(
        `SELECT send_id, rule_id, origin, priority, triggered_by_event_type FROM ${db.database}.sends WHERE has({ids:Array(String)}, send_id) ORDER BY priority`,
        { ids },
      );
      return found.length === 2 ? found : false;
    });
    expect(rows).toEqual([
      {
        send_id: ids[0],
        rule_id: 'api',
        origin: `api:${service.id}`,
        priority: 500,
        triggered_by_event_type: 'api.send',
      },
      {
        send_id: ids[1],
        rule_id: 'api',
        origin: `api:${service.id}`,
        priority: 1000,
        triggered_by_event_type: 'api.send',
      },
    ]);
  });
});
