// The Segment promise, for real: the official analytics-node client, changed only in host
// and write key, sends over a socket; the events are on Kafka with the right ids, types,
// traits and timestamps. And when Kafka is unreachable the API answers 503 quickly.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Analytics } from '@segment/analytics-node';
import type { FastifyInstance } from 'fastify';
import { isolate } from '../../test/support/isolation.ts';
import { waitFor } from '../../test/support/wait.ts';
import { KafkaBus } from '../../platform/kafka.ts';
import { eventCodec } from '../../platform/avro.ts';
import { SCHEMA_ID_HEADER, topics, type NormalisedEvent } from '../../platform/contracts.ts';
import type { BusConsumer } from '../../platform/bus.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import { createIngestServer } from './server.ts';

const iso = isolate('ingest_http');
const config = iso.config();
const run = iso.topicPrefix;
const WRITE_KEY = `wk-${iso.id}`;
const logger = silentLogger();

describe('Segment SDK against the ingest API and Kafka', () => {
  let bus: KafkaBus;
  let app: FastifyInstance;
  let url: string;
  let consumer: BusConsumer;
  const received: { key: string | null; event: NormalisedEvent }[] = [];

  beforeAll(async () => {
    bus = KafkaBus.fromConfig(config, logger);
    const t = topics(run);
    await bus.ensureTopics([{ topic: t.events, partitions: 3 }]);
    app = await createIngestServer(
      {
        ingest: config.ingest,
        // analytics-node runs on a backend: a server key, whose identify may set email and plan.
        auth: { writeKeys: [`backend:${WRITE_KEY}:server`] },
        kafka: { topicPrefix: run },
      },
      { bus, logger, metrics: createMetricsRegistry({ defaults: false }) },
    );
    url = await app.listen({ host: '127.0.0.1', port: 0 });
    consumer = bus.consumer({
      groupId: iso.group('reader'),
      topics: [t.events],
      fromBeginning: true,
      eachBatch: async (batch, control) => {
        for (const m of batch.messages)
          received.push({
            key: m.key,
            event: eventCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]),
          });
        await control.commit((BigInt(batch.messages.at(-1)!.offset) + 1n).toString());
      },
    });
    await consumer.start();
  });

  afterAll(async () => {
    await consumer?.stop();
    await app?.close();
    await bus?.close();
  });

  it('identify, track and page from @segment/analytics-node arrive with the SDK message ids, types, traits and timestamps', async () => {
    const sent: { messageId: string; type: string }[] = [];
    const analytics = new Analytics({
      writeKey: WRITE_KEY,
      host: url,
      flushAt: 3,
      flushInterval: 200,
      maxRetries: 1,
    });
    analytics.on('http_request', (req) => {
      for (const e of (JSON.parse(req.body) as { batch: { messageId: string; type: string }[] })
        .batch)
        sent.push(e);
    });
    const failures: unknown[] = [];
    analytics.on('error', (err) => failures.push(err));
    const signup = new Date(Date.now() - 60_000);
    analytics.identify({ userId: 'user-1', traits: { email: 'ann@example.com', plan: 'trial' } });
    analytics.track({
      userId: 'user-1',
      event: 'Signed Up',
      properties: { referrer: 'ads' },
      timestamp: signup,
    });
    analytics.page({ anonymousId: 'anon-7', name: 'Pricing', properties: { path: '/pricing' } });
    await analytics.closeAndFlush({ timeout: 10_000 });
    expect(failures).toEqual([]);
    expect(sent).toHaveLength(3);

    await waitFor(() => received.length >= 3, {
      timeout: 30_000,
      message: 'three events on Kafka',
    });
    expect(received).toHaveLength(3);
    const byType = new Map(received.map((r) => [r.event.type, r]));
    const identify = byType.get('identify')!;
    const track = byType.get('Signed Up')!;
    const page = byType.get('page')!;
    expect(new Set(received.map((r) => r.event.id))).toEqual(new Set(sent.map((s) => s.messageId)));
    expect(identify.event.id).toBe(sent.find((s) => s.type === 'identify')!.messageId);
    expect(identify.key).toBe('user-1');
    expect(identify.event).toMatchObject({
      userId: 'user-1',
      source: 'http:backend:server',
      traits: { email: 'ann@example.com', plan: 'trial' },
    });
    expect(track.event).toMatchObject({ userId: 'user-1', properties: { referrer: 'ads' } });
    // Same clock on both sides: skew correction leaves the client's timestamp (within the request's transit time).
    expect(Math.abs(track.event.ts - signup.getTime())).toBeLessThan(2000);
    expect(track.event.receivedAt - track.event.ts).toBeGreaterThanOrEqual(58_000);
    expect(page.key).toBe('anon-7');
    expect(page.event).toMatchObject({
      userId: 'anon-7',
      anonymousId: 'anon-7',
      properties: { name: 'Pricing', path: '/pricing' },
    });
    expect((page.event.context as { library?: { name?: string } }).library?.name).toBe(
      '@segment/analytics-node',
    );
  });

  it('a wrong write key is refused over the socket and nothing is written', async () => {
    const before = received.length;
    const res = await fetch(`${url}/v1/track`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Basic ${Buffer.from('nope:').toString('base64')}`,
      },
      body: JSON.stringify({ userId: 'x', event: 'Nope' }),
    });
    expect(res.status).toBe(403);
    await new Promise((r) => setTimeout(r, 500));
    expect(received.length).toBe(before);
  });
});

describe('ingest API when Kafka is unreachable', () => {
  it.each([1, 3])(
    'answers 503 with Retry-After within the acknowledgement timeout, then at once, without queueing (%i producers)',
    async (producers) => {
      const dead = KafkaBus.fromConfig(
        { kafka: { ...config.kafka, brokers: ['127.0.0.1:1'] } },
        logger,
        { producers },
      );
      const app = await createIngestServer(
        {
          ingest: config.ingest,
          auth: { writeKeys: [`web:${WRITE_KEY}`] },
          kafka: { topicPrefix: run },
          writer: { timeoutMs: 1500, probeTimeoutMs: 200 },
        },
        { bus: dead, logger, metrics: createMetricsRegistry({ defaults: false }) },
      );
      const url = await app.listen({ host: '127.0.0.1', port: 0 });
      try {
        const send = async () => {
          const started = Date.now();
          const res = await fetch(`${url}/v1/track`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${WRITE_KEY}` },
            body: JSON.stringify({ userId: 'u', event: 'A' }),
          });
          return {
            status: res.status,
            retryAfter: res.headers.get('retry-after'),
            ms: Date.now() - started,
          };
        };
        const first = await send();
        expect(first.status).toBe(503);
        expect(first.retryAfter).toBe('1');
        expect(first.ms).toBeLessThan(3000);
        const second = await send();
        expect(second.status).toBe(503);
        // Fail-fast: answered without waiting for the 1.5 s acknowledgement timeout again (the
        // bound leaves room for a loaded test machine; waiting would take the whole timeout).
        expect(second.ms).toBeLessThan(750);
        const health = await fetch(`${url}/health`);
        expect(health.status).toBe(503);
        // Still down after the probe interval: one request at a time probes (answered within its
        // short probe timeout), the others are refused at once; none waits the full timeout again.
        await new Promise((r) => setTimeout(r, 1200));
        const later = await Promise.all(Array.from({ length: 4 }, send));
        later.push(await send(), await send());
        expect(later.map((r) => r.status)).toEqual(Array(6).fill(503));
        expect(later.filter((r) => r.ms >= 750)).toEqual([]);
      } finally {
        await app.close().catch(() => {});
        await dead.close().catch(() => {});
      }
    },
  );
});
