import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { InMemoryBus, type OutgoingMessage, type Publisher } from '../../platform/bus.ts';
import { eventCodec } from '../../platform/avro.ts';
import { SCHEMA_ID_HEADER, type NormalisedEvent } from '../../platform/contracts.ts';
import { ERROR_CODES, type ErrorCode } from '../../platform/errors.ts';
import { silentLogger } from '../../platform/logger.ts';
import { API_CONTENT_SECURITY_POLICY } from '../../platform/http.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import { waitFor } from '../../test/support/wait.ts';
import { createIngestServer, type IngestServerConfig } from './server.ts';

/** The web source's backend key (a server key: its traits are stored as sent). */
const KEY = 'wk_test_123';
/** A second key of the same source as KEY (its browser key: a client key). */
const KEY2 = 'wk_test_456';
const NOW = Date.parse('2026-03-01T12:00:00.000Z');
const basic = (k: string) => `Basic ${Buffer.from(`${k}:`).toString('base64')}`;

function config(
  over: Partial<IngestServerConfig['ingest']> = {},
  writer: IngestServerConfig['writer'] = {},
): IngestServerConfig {
  return {
    ingest: { maxBatchBytes: 512_000, maxEventBytes: 32_768, rateLimitPerSecond: 10_000, ...over },
    auth: { writeKeys: [`web:${KEY}:server`, `web:${KEY2}`, 'ios:other-key'] },
    kafka: { topicPrefix: 'lc' },
    metrics: { token: METRICS_TOKEN },
    writer,
  };
}
const METRICS_TOKEN = 'scraper-token-for-tests';
const scrape = (a: FastifyInstance) =>
  a.inject({
    method: 'GET',
    url: '/metrics',
    headers: { authorization: `Bearer ${METRICS_TOKEN}` },
  });

let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

async function setup(
  over: Partial<IngestServerConfig['ingest']> = {},
  bus: { publisher(): Publisher } = new InMemoryBus(2),
  writer: IngestServerConfig['writer'] = {},
) {
  app = await createIngestServer(config(over, writer), {
    bus,
    logger: silentLogger(),
    metrics: createMetricsRegistry({ defaults: false }),
    clock: () => NOW,
  });
  return app;
}

function stored(bus: InMemoryBus): NormalisedEvent[] {
  return bus
    .messages('lc.events')
    .map((m) => eventCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]));
}

const post = (
  a: FastifyInstance,
  url: string,
  payload: unknown,
  headers: Record<string, string> = { authorization: basic(KEY) },
) => a.inject({ method: 'POST', url, payload: payload as Record<string, unknown>, headers });

describe('ingest API: accepted calls', () => {
  it('stores a track keyed by userId with messageId as id, skew-corrected time and the write key source', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup({}, bus);
    const res = await post(a, '/v1/track', {
      userId: 'u1',
      event: 'Order Completed',
      messageId: 'm-1',
      properties: { total: 30 },
      timestamp: '2026-03-01T11:00:00.000Z',
      sentAt: '2026-03-01T11:00:05.000Z',
      context: { library: { name: 'x' } },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ success: true, accepted: 1, rejected: [] });
    const [m] = bus.messages('lc.events');
    expect(m!.key).toBe('u1');
    expect(stored(bus)).toEqual([
      {
        id: 'm-1',
        userId: 'u1',
        type: 'Order Completed',
        // client clock is one hour behind: receivedAt - (sentAt - timestamp)
        ts: NOW - 5000,
        receivedAt: NOW,
        source: 'http:web:server',
        properties: { total: 30 },
        context: { library: { name: 'x' } },
      },
    ]);
  });

  it.each([
    [
      'identify',
      { userId: 'u1', traits: { plan: 'pro' } },
      { type: 'identify', traits: { plan: 'pro' }, properties: {} },
    ],
    [
      'page',
      { anonymousId: 'a1', name: 'Pricing', category: 'Docs', properties: { path: '/p' } },
      {
        type: 'page',
        userId: 'a1',
        anonymousId: 'a1',
        properties: { path: '/p', name: 'Pricing', category: 'Docs' },
      },
    ],
    ['screen', { userId: 'u1', name: 'Home' }, { type: 'screen', properties: { name: 'Home' } }],
    [
      'group',
      { userId: 'u1', groupId: 'acme', traits: { seats: 5 } },
      { type: 'group', properties: { groupId: 'acme', traits: { seats: 5 } } },
    ],
    [
      'alias',
      { userId: 'u1', previousId: 'a1' },
      { type: 'alias', properties: { previousId: 'a1' } },
    ],
  ])('/v1/%s becomes a normalised event', async (call, body, expected) => {
    const bus = new InMemoryBus(2);
    const a = await setup({}, bus);
    const res = await post(a, `/v1/${call}`, body, { authorization: `Bearer ${KEY}` });
    expect(res.statusCode).toBe(200);
    const [e] = stored(bus);
    expect(e).toMatchObject({
      userId: 'u1',
      ts: NOW,
      receivedAt: NOW,
      source: 'http:web:server',
      ...expected,
    });
    expect(e!.id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('accepts the write key in the body, as analytics-node sends it, and names the source from the key', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup({}, bus);
    const res = await post(
      a,
      '/v1/batch',
      { writeKey: 'other-key', batch: [{ type: 'track', userId: 'u9', event: 'X' }] },
      {},
    );
    expect(res.statusCode).toBe(200);
    expect(stored(bus)[0]!.source).toBe('http:ios:client');
  });

  it('applies batch sentAt and merges batch context under each message context', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup({}, bus);
    const res = await post(a, '/v1/batch', {
      sentAt: '2026-03-01T12:00:10.000Z',
      context: { app: { version: '1' }, locale: 'en' },
      batch: [
        {
          type: 'track',
          userId: 'u1',
          event: 'A',
          timestamp: '2026-03-01T12:00:08.000Z',
          context: { locale: 'de' },
        },
        {
          type: 'identify',
          userId: 'u1',
          originalTimestamp: '2026-03-01T12:00:09.000Z',
          timestamp: '2020-01-01T00:00:00Z',
        },
      ],
    });
    expect(res.statusCode).toBe(200);
    const [a1, a2] = stored(bus);
    expect(a1!.ts).toBe(NOW - 2000);
    expect(a1!.context).toEqual({ app: { version: '1' }, locale: 'de' });
    expect(a2!.ts).toBe(NOW - 1000);
  });

  it('answers analytics.js one-letter paths and cross-origin calls', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup({}, bus);
    const res = await a.inject({
      method: 'POST',
      url: '/v1/t',
      payload: JSON.stringify({ writeKey: KEY, userId: 'u1', event: 'Clicked' }),
      headers: { 'content-type': 'text/plain', origin: 'https://shop.example' },
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['access-control-allow-origin']).toBe('*');
    expect((await post(a, '/v1/b', { batch: [{ type: 'page', userId: 'u1' }] })).statusCode).toBe(
      200,
    );
    expect(stored(bus).map((e) => e.type)).toEqual(expect.arrayContaining(['Clicked', 'page']));
    const preflight = await a.inject({
      method: 'OPTIONS',
      url: '/v1/track',
      headers: { origin: 'https://shop.example', 'access-control-request-method': 'POST' },
    });
    expect(preflight.statusCode).toBe(204);
    expect(preflight.headers['access-control-allow-headers']).toContain('authorization');
  });

  it('inflates gzip bodies and still applies the body limit to the inflated size', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup({ maxBatchBytes: 2000 }, bus);
    const body = gzipSync(
      JSON.stringify({ batch: [{ type: 'track', userId: 'u1', event: 'Zipped' }] }),
    );
    const res = await a.inject({
      method: 'POST',
      url: '/v1/batch',
      payload: body,
      headers: {
        authorization: basic(KEY),
        'content-type': 'application/json',
        'content-encoding': 'gzip',
      },
    });
    expect(res.statusCode).toBe(200);
    expect(stored(bus)[0]!.type).toBe('Zipped');
    const bomb = gzipSync(
      JSON.stringify({
        batch: [{ type: 'track', userId: 'u1', event: 'A', properties: { s: 'x'.repeat(10_000) } }],
      }),
    );
    expect(bomb.length).toBeLessThan(2000);
    const big = await a.inject({
      method: 'POST',
      url: '/v1/batch',
      payload: bomb,
      headers: {
        authorization: basic(KEY),
        'content-type': 'application/json',
        'content-encoding': 'gzip',
      },
    });
    expect(big.statusCode).toBe(413);
    const br = await a.inject({
      method: 'POST',
      url: '/v1/batch',
      payload: 'x',
      headers: {
        authorization: basic(KEY),
        'content-type': 'application/json',
        'content-encoding': 'br',
      },
    });
    expect(br.statusCode).toBe(415);
    const corrupt = await a.inject({
      method: 'POST',
      url: '/v1/batch',
      payload: Buffer.from('not gzip at all'),
      headers: {
        authorization: basic(KEY),
        'content-type': 'application/json',
        'content-encoding': 'gzip',
      },
    });
    expect(corrupt.statusCode).toBe(400);
  });

  it('takes text/plain JSON (browser beacons) and coerces numeric user ids to strings', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup({}, bus);
    const res = await a.inject({
      method: 'POST',
      url: '/v1/track',
      payload: JSON.stringify({ userId: 42, event: 'A' }),
      headers: { authorization: basic(KEY), 'content-type': 'text/plain' },
    });
    expect(res.statusCode).toBe(200);
    expect(stored(bus)[0]!.userId).toBe('42');
  });
});

describe('ingest API: refusals', () => {
  it('401 without a key, 403 with an unknown key, and nothing stored', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup({}, bus);
    const none = await post(a, '/v1/track', { userId: 'u', event: 'A' }, {});
    expect(none.statusCode).toBe(401);
    expect(none.json()).toMatchObject({ success: false, code: 'LC_ERR_UNAUTHORIZED' });
    const wrong = await post(
      a,
      '/v1/track',
      { userId: 'u', event: 'A' },
      { authorization: basic('nope') },
    );
    expect(wrong.statusCode).toBe(403);
    expect(wrong.json()).toMatchObject({ code: 'LC_ERR_FORBIDDEN' });
    // auth comes before validation: an invalid body from a stranger is still 403
    expect(
      (await post(a, '/v1/track', { nothing: true }, { authorization: `Bearer nope` })).statusCode,
    ).toBe(403);
    expect(bus.messages('lc.events')).toHaveLength(0);
  });

  it.each([
    ['/v1/track', { userId: 'u1' }, 'event', 'event is required'],
    [
      '/v1/track',
      { userId: 'u1', event: '' },
      'event',
      'event must NOT have fewer than 1 characters',
    ],
    [
      '/v1/track',
      { userId: 'u1', event: 'A', properties: 'x' },
      'properties',
      'properties must be object',
    ],
    ['/v1/track', { event: 'A' }, 'userId', 'userId or anonymousId is required'],
    [
      '/v1/track',
      { userId: null, anonymousId: null, event: 'A' },
      'userId',
      'userId or anonymousId is required',
    ],
    [
      '/v1/track',
      { userId: 'u', event: 'A', timestamp: 'yesterday' },
      'timestamp',
      'timestamp is not an ISO 8601 date: "yesterday"',
    ],
    ['/v1/identify', { userId: 'u', traits: [1] }, 'traits', 'traits must be object'],
    ['/v1/group', { userId: 'u' }, 'groupId', 'groupId is required'],
    ['/v1/alias', { userId: 'u' }, 'previousId', 'previousId is required'],
    [
      '/v1/batch',
      { batch: 'x' },
      'batch[0]',
      'no valid message in the batch; first problem: batch[0] must be an object (one message with a type), not a string',
    ],
    [
      '/v1/batch',
      { batch: [null] },
      'batch[0]',
      'no valid message in the batch; first problem: batch[0] must be an object (one message with a type), not null',
    ],
    ['/v1/batch', {}, 'batch', 'batch is required'],
  ])('400 on %s %j names %s', async (url, body, field, message) => {
    const a = await setup();
    const res = await post(a, url, body);
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({
      success: false,
      code: 'LC_ERR_BAD_REQUEST',
      field,
      message,
    });
  });

  it('400 on a body that is not JSON', async () => {
    const a = await setup();
    const res = await a.inject({
      method: 'POST',
      url: '/v1/track',
      payload: '{"userId":',
      headers: { authorization: basic(KEY), 'content-type': 'application/json' },
    });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ code: 'LC_ERR_BAD_REQUEST' });
  });

  it('413 when a single event or a batch body is over the limit', async () => {
    const a = await setup({ maxEventBytes: 1000, maxBatchBytes: 4000 });
    const big = await post(a, '/v1/track', {
      userId: 'u',
      event: 'A',
      properties: { s: 'x'.repeat(1200) },
    });
    expect(big.statusCode).toBe(413);
    expect(big.json()).toMatchObject({
      code: 'LC_ERR_PAYLOAD_TOO_LARGE',
      message: 'request body is larger than 1000 bytes',
    });
    const batch = await post(a, '/v1/batch', {
      batch: Array.from({ length: 100 }, () => ({
        type: 'track',
        userId: 'u',
        event: 'Aaaaaaaaaaaaa',
      })),
    });
    expect(batch.statusCode).toBe(413);
  });

  it('a partly bad batch stores the valid messages and lists the others by index with the field at fault', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup({ maxEventBytes: 500 }, bus);
    const res = await post(a, '/v1/batch', {
      batch: [
        { type: 'track', userId: 'u1', event: 'Good', messageId: 'g1' },
        { type: 'track', userId: 'u1', messageId: 'b1' },
        { type: 'teleport', userId: 'u1' },
        { type: 'identify', traits: {} },
        { type: 'track', userId: 'u1', event: 'Big', properties: { s: 'x'.repeat(600) } },
        { type: 'identify', userId: 'u2', traits: { plan: 'pro' }, messageId: 'g2' },
      ],
    });
    expect(res.statusCode).toBe(202);
    const body = res.json() as {
      accepted: number;
      rejected: { index: number; field: string; code: string; messageId?: string }[];
    };
    expect(body.accepted).toBe(2);
    expect(body.rejected.map((r) => [r.index, r.field, r.code])).toEqual([
      [1, 'batch[1].event', 'LC_ERR_BAD_REQUEST'],
      [2, 'batch[2].type', 'LC_ERR_BAD_REQUEST'],
      [3, 'batch[3].userId', 'LC_ERR_BAD_REQUEST'],
      [4, 'batch[4]', 'LC_ERR_PAYLOAD_TOO_LARGE'],
    ]);
    expect(body.rejected[0]!.messageId).toBe('b1');
    expect(stored(bus).map((e) => e.id)).toEqual(expect.arrayContaining(['g1', 'g2']));
    expect(stored(bus)).toHaveLength(2);
  });

  it('items that are not objects are rejected one by one, and the valid messages of the batch are stored', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup({}, bus);
    const res = await post(a, '/v1/batch', {
      batch: [
        { type: 'track', userId: 'u1', event: 'Good', messageId: 'g1' },
        null,
        42,
        'track',
        [{ type: 'track' }],
        true,
        { type: 'identify', userId: 'u2', messageId: 'g2' },
      ],
    });
    expect(res.statusCode).toBe(202);
    const body = res.json() as {
      success: boolean;
      accepted: number;
      rejected: { index: number; field: string; code: string; message: string }[];
    };
    expect(body).toMatchObject({ success: true, accepted: 2 });
    expect(body.rejected).toEqual([
      {
        index: 1,
        code: 'LC_ERR_BAD_REQUEST',
        field: 'batch[1]',
        message: 'batch[1] must be an object (one message with a type), not null',
      },
      {
        index: 2,
        code: 'LC_ERR_BAD_REQUEST',
        field: 'batch[2]',
        message: 'batch[2] must be an object (one message with a type), not a number',
      },
      {
        index: 3,
        code: 'LC_ERR_BAD_REQUEST',
        field: 'batch[3]',
        message: 'batch[3] must be an object (one message with a type), not a string',
      },
      {
        index: 4,
        code: 'LC_ERR_BAD_REQUEST',
        field: 'batch[4]',
        message: 'batch[4] must be an object (one message with a type), not an array',
      },
      {
        index: 5,
        code: 'LC_ERR_BAD_REQUEST',
        field: 'batch[5]',
        message: 'batch[5] must be an object (one message with a type), not a boolean',
      },
    ]);
    expect(
      stored(bus)
        .map((e) => e.id)
        .sort(),
    ).toEqual(['g1', 'g2']);
    const metrics = await scrape(a);
    expect(metrics.body).toContain('lifecycle_ingest_rejected_total{code="LC_ERR_BAD_REQUEST"} 5');
  });

  it('an oversized message is found in a gzip batch whose compressed body is under the per-message limit', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup({ maxEventBytes: 500 }, bus);
    const body = gzipSync(
      JSON.stringify({
        batch: [
          { type: 'track', userId: 'u1', event: 'Small', messageId: 's1' },
          { type: 'track', userId: 'u1', event: 'Big', properties: { s: 'x'.repeat(2000) } },
        ],
      }),
    );
    expect(body.length).toBeLessThan(500);
    const res = await a.inject({
      method: 'POST',
      url: '/v1/batch',
      payload: body,
      headers: {
        authorization: basic(KEY),
        'content-type': 'application/json',
        'content-encoding': 'gzip',
      },
    });
    expect(res.statusCode).toBe(202);
    expect(
      (res.json() as { rejected: { index: number; code: string }[] }).rejected.map((r) => [
        r.index,
        r.code,
      ]),
    ).toEqual([[1, 'LC_ERR_PAYLOAD_TOO_LARGE']]);
    expect(stored(bus).map((e) => e.id)).toEqual(['s1']);
  });

  it('a batch with no valid message is a 400 that still lists every rejection', async () => {
    const a = await setup();
    const res = await post(a, '/v1/batch', {
      batch: [
        { type: 'track', userId: 'u' },
        { type: 'alias', userId: 'u' },
      ],
    });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({
      field: 'batch[0].event',
      rejected: [{ index: 0 }, { index: 1, field: 'batch[1].previousId' }],
    });
  });

  it('429 with Retry-After once a write key exceeds its event rate, counting batch events', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup({ rateLimitPerSecond: 5 }, bus);
    const ok = await post(a, '/v1/batch', {
      batch: Array.from({ length: 4 }, (_, i) => ({ type: 'track', userId: `u${i}`, event: 'A' })),
    });
    expect(ok.statusCode).toBe(200);
    expect((await post(a, '/v1/track', { userId: 'u', event: 'A' })).statusCode).toBe(200);
    const limited = await post(a, '/v1/track', { userId: 'u', event: 'A' });
    expect(limited.statusCode).toBe(429);
    expect(limited.headers['retry-after']).toBe('1');
    expect(Number(limited.headers['x-ratelimit-reset'])).toBeGreaterThan(NOW);
    expect(limited.json()).toMatchObject({ code: 'LC_ERR_RATE_LIMITED' });
    // another key has its own budget
    expect(
      (
        await post(
          a,
          '/v1/track',
          { userId: 'u', event: 'A' },
          { authorization: basic('other-key') },
        )
      ).statusCode,
    ).toBe(200);
    expect(bus.messages('lc.events')).toHaveLength(6);
  });

  it('two write keys of one source have a budget each (the limit is per key, not per source)', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup({ rateLimitPerSecond: 3 }, bus);
    const batch = (n: number) => ({
      batch: Array.from({ length: n }, (_, i) => ({ type: 'track', userId: `u${i}`, event: 'A' })),
    });
    expect((await post(a, '/v1/batch', batch(3))).statusCode).toBe(200);
    expect((await post(a, '/v1/track', { userId: 'u', event: 'A' })).statusCode).toBe(429);
    // Same source ("web"), other key: a full budget of its own.
    expect(
      (await post(a, '/v1/batch', batch(3), { authorization: `Bearer ${KEY2}` })).statusCode,
    ).toBe(200);
    expect(
      (await post(a, '/v1/track', { userId: 'u', event: 'A' }, { authorization: `Bearer ${KEY2}` }))
        .statusCode,
    ).toBe(429);
    expect(
      stored(bus)
        .map((e) => e.source)
        .sort(),
    ).toEqual([
      ...Array<string>(3).fill('http:web:client'),
      ...Array<string>(3).fill('http:web:server'),
    ]);
  });

  it('503 with Retry-After when Kafka does not acknowledge, and 503 at once while it keeps failing', async () => {
    let calls = 0;
    const failing: Publisher = {
      publish: async (_topic: string, _m: OutgoingMessage[]) => {
        calls++;
        throw new Error('connect ECONNREFUSED 127.0.0.1:19092');
      },
    };
    const a = await setup({}, { publisher: () => failing }, { probeIntervalMs: 60_000 });
    const first = await post(a, '/v1/track', { userId: 'u', event: 'A' });
    expect(first.statusCode).toBe(503);
    expect(first.headers['retry-after']).toBe('1');
    expect(first.headers['x-ratelimit-reset']).toBe(String(NOW + 1000));
    expect(first.json()).toMatchObject({ code: 'LC_ERR_UNAVAILABLE' });
    const second = await post(a, '/v1/track', { userId: 'u', event: 'A' });
    expect(second.statusCode).toBe(503);
    expect(second.headers['retry-after']).toBe('1');
    expect(calls).toBe(1);
    const health = await a.inject({ method: 'GET', url: '/health' });
    expect(health.statusCode).toBe(503);
  });
});

describe('ingest API: waiting for Kafka', () => {
  it('answers a request only after Kafka acknowledged its events', async () => {
    const acks: (() => void)[] = [];
    const gated: Publisher = { publish: () => new Promise<void>((ack) => acks.push(ack)) };
    const a = await setup({}, { publisher: () => gated });
    let answered = false;
    const res = post(a, '/v1/track', { userId: 'u', event: 'A' }).then(
      (r) => ((answered = true), r),
    );
    await waitFor(() => acks.length === 1, {
      timeout: 5000,
      interval: 5,
      message: 'the produce was sent',
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(answered).toBe(false);
    acks[0]!();
    expect((await res).statusCode).toBe(200);
  });

  it('while a produce hangs, only the first request waits for the acknowledgement timeout; the next ones get 503 with retry headers at once', async () => {
    const hung: (() => void)[] = [];
    const hanging: Publisher = { publish: () => new Promise<void>((ack) => hung.push(ack)) };
    const timeoutMs = 800;
    const a = await setup(
      {},
      { publisher: () => hanging },
      { timeoutMs, probeIntervalMs: 50, probeTimeoutMs: 50 },
    );
    const timed = async () => {
      const started = performance.now();
      const r = await post(a, '/v1/track', { userId: 'u', event: 'A' });
      return {
        status: r.statusCode,
        retryAfter: r.headers['retry-after'],
        reset: r.headers['x-ratelimit-reset'],
        ms: performance.now() - started,
      };
    };
    const first = await timed();
    expect(first).toMatchObject({ status: 503, retryAfter: '1' });
    expect(first.ms).toBeGreaterThanOrEqual(timeoutMs - 50);
    const later = [];
    for (let i = 0; i < 20; i++) {
      later.push(await timed());
      await new Promise((r) => setTimeout(r, 30));
    }
    expect(
      later.filter(
        (r) => r.status !== 503 || r.retryAfter !== '1' || r.reset !== String(NOW + 1000),
      ),
    ).toEqual([]);
    expect(later.filter((r) => r.ms >= timeoutMs / 2)).toEqual([]);
    expect(hung).toHaveLength(1);
    expect((await a.inject({ method: 'GET', url: '/health' })).statusCode).toBe(503);
    hung[0]!();
  });
});

describe('ingest API: coded refusals', () => {
  it('answers validation, unknown routes, too large and wrongly typed or encoded bodies with a code of platform/errors.ts and the field at fault', async () => {
    const a = await setup({ maxBatchBytes: 2_000, maxEventBytes: 1_000 });
    const json = { authorization: basic(KEY), 'content-type': 'application/json' };
    const answers = {
      invalid: await post(a, '/v1/track', { userId: 'u1', event: { name: 'Viewed' } }),
      missing: await post(a, '/v1/track', { userId: 'u1' }),
      unknown: await a.inject({ method: 'POST', url: '/v1/nothing', headers: json, payload: '{}' }),
      large: await a.inject({
        method: 'POST',
        url: '/v1/batch',
        headers: json,
        payload: JSON.stringify({
          batch: [{ type: 'track', userId: 'u', event: 'x'.repeat(3_000) }],
        }),
      }),
      mediaType: await a.inject({
        method: 'POST',
        url: '/v1/track',
        headers: { ...json, 'content-type': 'application/xml' },
        payload: '<track/>',
      }),
      encoding: await a.inject({
        method: 'POST',
        url: '/v1/track',
        headers: { ...json, 'content-encoding': 'br' },
        payload: '{}',
      }),
    };
    const seen = Object.fromEntries(
      Object.entries(answers).map(([k, r]) => [k, [r.statusCode, r.json()]]),
    );
    expect(seen).toEqual({
      invalid: [
        400,
        {
          success: false,
          code: 'LC_ERR_BAD_REQUEST',
          message: 'event must be string',
          field: 'event',
        },
      ],
      missing: [
        400,
        {
          success: false,
          code: 'LC_ERR_BAD_REQUEST',
          message: 'event is required',
          field: 'event',
        },
      ],
      unknown: [
        404,
        { success: false, code: 'LC_ERR_NOT_FOUND', message: 'Route POST:/v1/nothing not found' },
      ],
      large: [
        413,
        {
          success: false,
          code: 'LC_ERR_PAYLOAD_TOO_LARGE',
          message: 'request body is larger than 2000 bytes',
        },
      ],
      mediaType: [
        415,
        {
          success: false,
          code: 'LC_ERR_UNSUPPORTED_MEDIA_TYPE',
          message: 'send the body as application/json (or text/plain holding JSON)',
        },
      ],
      encoding: [
        415,
        {
          success: false,
          code: 'LC_ERR_UNSUPPORTED_MEDIA_TYPE',
          message: 'unsupported Content-Encoding br: send gzip, deflate or none',
        },
      ],
    });
    for (const [name, r] of Object.entries(answers))
      expect(ERROR_CODES[r.json<{ code: ErrorCode }>().code]?.status, name).toBe(r.statusCode);
  });
});

describe('ingest API: documents and metrics', () => {
  it('serves an OpenAPI document listing every Segment route', async () => {
    const a = await setup();
    const res = await a.inject({ method: 'GET', url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    const doc = res.json() as OpenApiDoc;
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths).sort()).toEqual([
      '/health',
      '/metrics',
      '/openapi.json',
      '/v1/alias',
      '/v1/batch',
      '/v1/group',
      '/v1/identify',
      '/v1/page',
      '/v1/screen',
      '/v1/track',
    ]);
  });

  it('documents what the routes take and answer: batch items as one of the six messages, text/plain and gzip bodies, the body writeKey, 415, and the retry headers of 429 and 503', async () => {
    const a = await setup();
    const doc = (await a.inject({ method: 'GET', url: '/openapi.json' })).json() as OpenApiDoc;
    for (const [path, item] of Object.entries(doc.paths).filter(([p]) => p.startsWith('/v1/'))) {
      const op = item.post!;
      expect(Object.keys(op.requestBody!.content).sort(), path).toEqual([
        'application/json',
        'text/plain',
      ]);
      expect(op.parameters, path).toContainEqual(
        expect.objectContaining({
          in: 'header',
          name: 'content-encoding',
          schema: expect.objectContaining({ enum: ['gzip', 'deflate', 'identity'] }),
        }),
      );
      expect(Object.keys(op.responses), path).toEqual(
        expect.arrayContaining(['200', '400', '401', '403', '413', '415', '429', '503']),
      );
      for (const status of ['429', '503']) {
        expect(
          Object.keys(op.responses[status]!.headers ?? {}).sort(),
          `${path} ${status}`,
        ).toEqual(['Retry-After', 'X-RateLimit-Reset']);
        expect(op.responses[status]!.headers!['Retry-After']!.schema).toMatchObject({
          type: 'integer',
        });
      }
      const body = op.requestBody!.content['application/json']!.schema as Schema;
      expect(body.properties!.writeKey, path).toMatchObject({
        type: 'string',
        description: expect.stringContaining('Write key'),
      });
    }
    const batch = doc.paths['/v1/batch']!.post!;
    expect(Object.keys(batch.responses)).toContain('202');
    const items = (batch.requestBody!.content['application/json']!.schema as Schema).properties!
      .batch!.items!;
    expect(items.oneOf).toHaveLength(6);
    expect(items.oneOf!.map((m) => m.properties!.type!.enum)).toEqual([
      ['track'],
      ['identify'],
      ['page'],
      ['screen'],
      ['group'],
      ['alias'],
    ]);
    for (const m of items.oneOf!) expect(m.required).toContain('type');
    // Each item carries the fields of its message, not just a type.
    expect(items.oneOf![0]!.properties).toHaveProperty('event');
    expect(items.oneOf![0]!.required).toContain('event');
    expect(items.oneOf![4]!.required).toContain('groupId');
    expect(items.oneOf![5]!.required).toContain('previousId');
    expect(openApi30Problems(doc)).toEqual([]);
  });

  it('the OpenAPI check finds the mistakes it is there for', () => {
    const doc: OpenApiDoc = {
      openapi: '3.0.3',
      info: { title: 't', version: '1' },
      paths: {
        '/x': {
          post: {
            requestBody: { content: { json: { schema: { type: ['string', 'null'] } } } },
            parameters: [{ name: 'h', in: 'body', schema: { type: 'string' } }],
            responses: {
              200: { description: 'ok', headers: { 'Retry-After': { in: 'header' } } },
              '4': {},
            },
            security: [{ nope: [] }],
          },
        },
      },
    } as unknown as OpenApiDoc;
    expect(openApi30Problems(doc)).toEqual([
      '/x post parameters[0]: in must be query, header, path or cookie',
      '/x post requestBody: media type json',
      '/x post requestBody json schema: type must be one of integer, number, string, boolean, array, object',
      '/x post responses 4: not a status code',
      '/x post responses 4: description required',
      '/x post responses 200 header Retry-After: unknown key in',
      '/x post responses 200 header Retry-After: needs schema or content',
      '/x post security: unknown scheme nope',
    ]);
  });

  it('exposes health and Prometheus metrics counting stored events by source', async () => {
    const a = await setup();
    await post(a, '/v1/track', { userId: 'u', event: 'A' });
    expect((await a.inject({ method: 'GET', url: '/health' })).json()).toMatchObject({ ok: true });
    const metrics = await scrape(a);
    expect(metrics.body).toContain('lifecycle_ingest_events_total{source="web",call="track"} 1');
  });

  it("keeps its metrics from anyone without the scraper's token, a write key included", async () => {
    const a = await setup();
    for (const authorization of [
      undefined,
      basic(KEY),
      `Bearer ${KEY}`,
      'Bearer scraper-token-for-test',
    ]) {
      const res = await a.inject({
        method: 'GET',
        url: '/metrics',
        ...(authorization ? { headers: { authorization } } : {}),
      });
      expect(res.statusCode, String(authorization)).toBe(401);
      expect(res.body).not.toContain('lifecycle_ingest');
    }
    expect((await scrape(a)).statusCode).toBe(200);
  });
});

interface Schema {
  type?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  oneOf?: Schema[];
  required?: string[];
  enum?: unknown[];
  [k: string]: unknown;
}
interface OpenApiDoc {
  openapi: string;
  info: { title: string; version: string };
  paths: Record<string, Record<string, unknown> & { post?: Operation }>;
  components?: { securitySchemes?: Record<string, unknown>; schemas?: Record<string, Schema> };
  security?: Record<string, string[]>[];
}
interface Operation {
  parameters?: { name: string; in: string; required?: boolean; schema?: Schema }[];
  requestBody?: { content: Record<string, { schema?: Schema }> };
  responses: Record<
    string,
    {
      description: string;
      headers?: Record<string, { schema?: Schema }>;
      content?: Record<string, { schema?: Schema }>;
    }
  >;
  security?: Record<string, string[]>[];
}

/**
 * The OpenAPI 3.0 rules a generated document can break (no validator package is installed):
 * fixed fields per object, status codes, required descriptions, parameter locations, header
 * objects, media types, security scheme names, resolvable $refs, and Schema Objects limited
 * to OpenAPI 3.0's JSON Schema subset (a single `type`, `nullable` instead of null types, no
 * `const`/`$id`/`examples`). Returns one line per problem.
 */
function openApi30Problems(doc: OpenApiDoc): string[] {
  const problems: string[] = [];
  const ext = (k: string) => k.startsWith('x-');
  const only = (where: string, o: object, allowed: string[]) => {
    for (const k of Object.keys(o))
      if (!allowed.includes(k) && !ext(k)) problems.push(`${where}: unknown key ${k}`);
  };
  const TYPES = ['integer', 'number', 'string', 'boolean', 'array', 'object'];
  const SCHEMA_KEYS = [
    'title',
    'multipleOf',
    'maximum',
    'exclusiveMaximum',
    'minimum',
    'exclusiveMinimum',
    'maxLength',
    'minLength',
    'pattern',
    'maxItems',
    'minItems',
    'uniqueItems',
    'maxProperties',
    'minProperties',
    'required',
    'enum',
    'type',
    'allOf',
    'oneOf',
    'anyOf',
    'not',
    'items',
    'properties',
    'additionalProperties',
    'description',
    'format',
    'default',
    'nullable',
    'discriminator',
    'readOnly',
    'writeOnly',
    'xml',
    'externalDocs',
    'example',
    'deprecated',
    '$ref',
  ];
  const resolve = (ref: string) =>
    ref.startsWith('#/') &&
    ref
      .slice(2)
      .split('/')
      .reduce<unknown>(
        (o, p) =>
          (o as Record<string, unknown> | undefined)?.[p.replace(/~1/g, '/').replace(/~0/g, '~')],
        doc,
      ) !== undefined;
  const schema = (where: string, sc: unknown): void => {
    if (typeof sc !== 'object' || sc === null || Array.isArray(sc))
      return void problems.push(`${where}: schema must be an object`);
    const s = sc as Schema;
    only(where, s, SCHEMA_KEYS);
    if (typeof s.$ref === 'string' && !resolve(s.$ref))
      problems.push(`${where}: $ref ${s.$ref} does not resolve`);
    if (s.type !== undefined && !(typeof s.type === 'string' && TYPES.includes(s.type)))
      problems.push(`${where}: type must be one of ${TYPES.join(', ')}`);
    if (s.type === 'array' && s.items === undefined) problems.push(`${where}: array without items`);
    if (
      s.required !== undefined &&
      !(
        Array.isArray(s.required) &&
        s.required.length > 0 &&
        s.required.every((r) => typeof r === 'string')
      )
    )
      problems.push(`${where}: required must be a non-empty list of names`);
    if (s.enum !== undefined && !(Array.isArray(s.enum) && s.enum.length > 0))
      problems.push(`${where}: enum must be a non-empty list`);
    for (const k of [
      'nullable',
      'exclusiveMinimum',
      'exclusiveMaximum',
      'readOnly',
      'writeOnly',
      'uniqueItems',
      'deprecated',
    ])
      if (s[k] !== undefined && typeof s[k] !== 'boolean')
        problems.push(`${where}: ${k} must be a boolean`);
    for (const k of ['allOf', 'oneOf', 'anyOf'] as const) {
      if (s[k] === undefined) continue;
      if (!Array.isArray(s[k]) || (s[k] as unknown[]).length === 0)
        problems.push(`${where}: ${k} must be a non-empty list`);
      else (s[k] as unknown[]).forEach((m, i) => schema(`${where}.${k}[${i}]`, m));
    }
    if (s.not !== undefined) schema(`${where}.not`, s.not);
    if (s.items !== undefined) schema(`${where}.items`, s.items);
    if (s.properties !== undefined)
      for (const [k, v] of Object.entries(s.properties)) schema(`${where}.properties.${k}`, v);
    if (s.additionalProperties !== undefined && typeof s.additionalProperties !== 'boolean')
      schema(`${where}.additionalProperties`, s.additionalProperties);
  };
  const content = (where: string, c: Record<string, { schema?: unknown }>) => {
    for (const [media, m] of Object.entries(c)) {
      if (!/^[\w.+-]+\/[\w.+*-]+$/.test(media)) problems.push(`${where}: media type ${media}`);
      if (m.schema !== undefined) schema(`${where} ${media} schema`, m.schema);
    }
  };
  const schemes = Object.keys(doc.components?.securitySchemes ?? {});
  const security = (where: string, list: Record<string, string[]>[] | undefined) => {
    for (const req of list ?? [])
      for (const name of Object.keys(req))
        if (!schemes.includes(name)) problems.push(`${where}: unknown scheme ${name}`);
  };

  if (!/^3\.0\.\d+$/.test(doc.openapi)) problems.push(`openapi: ${doc.openapi} is not 3.0.x`);
  only('document', doc, [
    'openapi',
    'info',
    'servers',
    'paths',
    'components',
    'security',
    'tags',
    'externalDocs',
  ]);
  if (typeof doc.info?.title !== 'string' || typeof doc.info?.version !== 'string')
    problems.push('info: title and version required');
  security('security', doc.security);
  for (const [name, sc] of Object.entries(doc.components?.schemas ?? {}))
    schema(`components.schemas.${name}`, sc);
  for (const [path, item] of Object.entries(doc.paths)) {
    if (!path.startsWith('/')) problems.push(`${path}: paths start with /`);
    only(path, item, [
      '$ref',
      'summary',
      'description',
      'get',
      'put',
      'post',
      'delete',
      'options',
      'head',
      'patch',
      'trace',
      'servers',
      'parameters',
    ]);
    for (const method of ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']) {
      const op = item[method] as Operation | undefined;
      if (!op) continue;
      const at = `${path} ${method}`;
      only(at, op, [
        'tags',
        'summary',
        'description',
        'externalDocs',
        'operationId',
        'parameters',
        'requestBody',
        'responses',
        'callbacks',
        'deprecated',
        'security',
        'servers',
      ]);
      (op.parameters ?? []).forEach((p, i) => {
        const where = `${at} parameters[${i}]`;
        if (typeof p.name !== 'string') problems.push(`${where}: name required`);
        if (!['query', 'header', 'path', 'cookie'].includes(p.in))
          problems.push(`${where}: in must be query, header, path or cookie`);
        only(where, p, [
          'name',
          'in',
          'description',
          'required',
          'deprecated',
          'allowEmptyValue',
          'style',
          'explode',
          'allowReserved',
          'schema',
          'example',
          'examples',
          'content',
        ]);
        if (p.in === 'path' && p.required !== true)
          problems.push(`${where}: path parameters are required`);
        if (p.schema !== undefined) schema(`${where} schema`, p.schema);
      });
      if (op.requestBody) {
        only(`${at} requestBody`, op.requestBody, ['description', 'content', 'required']);
        if (Object.keys(op.requestBody.content ?? {}).length === 0)
          problems.push(`${at} requestBody: content required`);
        content(`${at} requestBody`, op.requestBody.content ?? {});
      }
      if (Object.keys(op.responses ?? {}).length === 0) problems.push(`${at}: responses required`);
      for (const [status, r] of Object.entries(op.responses ?? {})) {
        const where = `${at} responses ${status}`;
        if (!/^([1-5]\d\d|[1-5]XX|default)$/.test(status))
          problems.push(`${where}: not a status code`);
        only(where, r, ['description', 'headers', 'content', 'links']);
        if (typeof r.description !== 'string') problems.push(`${where}: description required`);
        for (const [h, header] of Object.entries(r.headers ?? {})) {
          only(`${where} header ${h}`, header, [
            'description',
            'required',
            'deprecated',
            'allowEmptyValue',
            'style',
            'explode',
            'schema',
            'example',
            'examples',
            'content',
          ]);
          if (
            header.schema === undefined &&
            (header as { content?: unknown }).content === undefined
          )
            problems.push(`${where} header ${h}: needs schema or content`);
          if (header.schema !== undefined) schema(`${where} header ${h} schema`, header.schema);
        }
        if (r.content) content(where, r.content);
      }
      security(`${at} security`, op.security);
    }
  }
  return problems;
}

describe('ingest API: security headers and proxies', () => {
  it('every answer carries the security headers: accepted, refused, preflight, documents, a miss, a bad URL', async () => {
    const a = await setup();
    const track = { userId: 'u1', event: 'Viewed' };
    const answers = {
      accepted: await post(a, '/v1/track', track),
      noKey: await post(a, '/v1/track', track, {}),
      invalid: await post(a, '/v1/track', { userId: 'u1' }),
      preflight: await a.inject({
        method: 'OPTIONS',
        url: '/v1/batch',
        headers: { origin: 'https://shop.example', 'access-control-request-method': 'POST' },
      }),
      openapi: await a.inject({ method: 'GET', url: '/openapi.json' }),
      health: await a.inject({ method: 'GET', url: '/health' }),
      miss: await a.inject({ method: 'GET', url: '/v1/nothing' }),
      badUrl: await a.inject({ method: 'GET', url: '/v1/%E0%A4%A' }),
    };
    expect(
      Object.fromEntries(Object.entries(answers).map(([k, r]) => [k, r.statusCode])),
    ).toMatchObject({
      accepted: 200,
      noKey: 401,
      invalid: 400,
      openapi: 200,
      health: 200,
      miss: 404,
      badUrl: 400,
    });
    expect(answers.preflight.statusCode).toBeLessThan(300);
    for (const [name, res] of Object.entries(answers))
      expect(res.headers, name).toMatchObject({
        'content-security-policy': API_CONTENT_SECURITY_POLICY,
        'referrer-policy': 'no-referrer',
        'x-content-type-options': 'nosniff',
        'x-frame-options': 'DENY',
      });
    // CORS still answers browsers' SDKs.
    expect(answers.preflight.headers['access-control-allow-origin']).toBe('*');
  });

  async function whoIs(trustProxy: string | undefined, remoteAddress: string) {
    app = await createIngestServer(
      { ...config(), ...(trustProxy === undefined ? {} : { http: { trustProxy } }) },
      {
        bus: new InMemoryBus(2),
        logger: silentLogger(),
        metrics: createMetricsRegistry({ defaults: false }),
        clock: () => NOW,
      },
    );
    app.get('/test/who', { config: { auth: 'public' } }, async (req) => ({ ip: req.ip }));
    const res = await app.inject({
      method: 'GET',
      url: '/test/who',
      remoteAddress,
      headers: { 'x-forwarded-for': '203.0.113.9' },
    });
    await app.close();
    app = undefined;
    return (res.json() as { ip: string }).ip;
  }

  it('a spoofed X-Forwarded-For does not change request.ip unless LC_TRUST_PROXY trusts the peer', async () => {
    expect(await whoIs(undefined, '198.51.100.7')).toBe('198.51.100.7');
    expect(await whoIs('false', '198.51.100.7')).toBe('198.51.100.7');
    expect(await whoIs('loopback', '198.51.100.7')).toBe('198.51.100.7');
    expect(await whoIs('loopback', '127.0.0.1')).toBe('203.0.113.9');
    expect(await whoIs('true', '198.51.100.7')).toBe('203.0.113.9');
  });
});
