import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { InMemoryBus, type OutgoingMessage, type Publisher } from '../../platform/bus.ts';
import { eventCodec } from '../../platform/avro.ts';
import { SCHEMA_ID_HEADER, type NormalisedEvent } from '../../platform/contracts.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import { createIngestServer, type IngestServerConfig } from './server.ts';

const KEY = 'wk_test_123';
const NOW = Date.parse('2026-03-01T12:00:00.000Z');
const basic = (k: string) => `Basic ${Buffer.from(`${k}:`).toString('base64')}`;

function config(over: Partial<IngestServerConfig['ingest']> = {}, writer: IngestServerConfig['writer'] = {}): IngestServerConfig {
  return {
    ingest: { maxBatchBytes: 512_000, maxEventBytes: 32_768, rateLimitPerSecond: 10_000, ...over },
    auth: { writeKeys: [`web:${KEY}`, 'ios:other-key'] },
    kafka: { topicPrefix: 'lc' },
    writer,
  };
}

let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

async function setup(over: Partial<IngestServerConfig['ingest']> = {}, bus: { publisher(): Publisher } = new InMemoryBus(2), writer: IngestServerConfig['writer'] = {}) {
  app = await createIngestServer(config(over, writer), { bus, logger: silentLogger(), metrics: createMetricsRegistry({ defaults: false }), clock: () => NOW });
  return app;
}

function stored(bus: InMemoryBus): NormalisedEvent[] {
  return bus.messages('lc.events').map((m) => eventCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]));
}

const post = (a: FastifyInstance, url: string, payload: unknown, headers: Record<string, string> = { authorization: basic(KEY) }) =>
  a.inject({ method: 'POST', url, payload: payload as Record<string, unknown>, headers });

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
        source: 'http:web',
        properties: { total: 30 },
        context: { library: { name: 'x' } },
      },
    ]);
  });

  it.each([
    ['identify', { userId: 'u1', traits: { plan: 'pro' } }, { type: 'identify', traits: { plan: 'pro' }, properties: {} }],
    ['page', { anonymousId: 'a1', name: 'Pricing', category: 'Docs', properties: { path: '/p' } }, { type: 'page', userId: 'a1', anonymousId: 'a1', properties: { path: '/p', name: 'Pricing', category: 'Docs' } }],
    ['screen', { userId: 'u1', name: 'Home' }, { type: 'screen', properties: { name: 'Home' } }],
    ['group', { userId: 'u1', groupId: 'acme', traits: { seats: 5 } }, { type: 'group', properties: { groupId: 'acme', traits: { seats: 5 } } }],
    ['alias', { userId: 'u1', previousId: 'a1' }, { type: 'alias', properties: { previousId: 'a1' } }],
  ])('/v1/%s becomes a normalised event', async (call, body, expected) => {
    const bus = new InMemoryBus(2);
    const a = await setup({}, bus);
    const res = await post(a, `/v1/${call}`, body, { authorization: `Bearer ${KEY}` });
    expect(res.statusCode).toBe(200);
    const [e] = stored(bus);
    expect(e).toMatchObject({ userId: 'u1', ts: NOW, receivedAt: NOW, source: 'http:web', ...expected });
    expect(e!.id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('accepts the write key in the body, as analytics-node sends it, and names the source from the key', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup({}, bus);
    const res = await post(a, '/v1/batch', { writeKey: 'other-key', batch: [{ type: 'track', userId: 'u9', event: 'X' }] }, {});
    expect(res.statusCode).toBe(200);
    expect(stored(bus)[0]!.source).toBe('http:ios');
  });

  it('applies batch sentAt and merges batch context under each message context', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup({}, bus);
    const res = await post(a, '/v1/batch', {
      sentAt: '2026-03-01T12:00:10.000Z',
      context: { app: { version: '1' }, locale: 'en' },
      batch: [
        { type: 'track', userId: 'u1', event: 'A', timestamp: '2026-03-01T12:00:08.000Z', context: { locale: 'de' } },
        { type: 'identify', userId: 'u1', originalTimestamp: '2026-03-01T12:00:09.000Z', timestamp: '2020-01-01T00:00:00Z' },
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
    expect((await post(a, '/v1/b', { batch: [{ type: 'page', userId: 'u1' }] })).statusCode).toBe(200);
    expect(stored(bus).map((e) => e.type)).toEqual(expect.arrayContaining(['Clicked', 'page']));
    const preflight = await a.inject({ method: 'OPTIONS', url: '/v1/track', headers: { origin: 'https://shop.example', 'access-control-request-method': 'POST' } });
    expect(preflight.statusCode).toBe(204);
    expect(preflight.headers['access-control-allow-headers']).toContain('authorization');
  });

  it('inflates gzip bodies and still applies the body limit to the inflated size', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup({ maxBatchBytes: 2000 }, bus);
    const body = gzipSync(JSON.stringify({ batch: [{ type: 'track', userId: 'u1', event: 'Zipped' }] }));
    const res = await a.inject({ method: 'POST', url: '/v1/batch', payload: body, headers: { authorization: basic(KEY), 'content-type': 'application/json', 'content-encoding': 'gzip' } });
    expect(res.statusCode).toBe(200);
    expect(stored(bus)[0]!.type).toBe('Zipped');
    const bomb = gzipSync(JSON.stringify({ batch: [{ type: 'track', userId: 'u1', event: 'A', properties: { s: 'x'.repeat(10_000) } }] }));
    expect(bomb.length).toBeLessThan(2000);
    const big = await a.inject({ method: 'POST', url: '/v1/batch', payload: bomb, headers: { authorization: basic(KEY), 'content-type': 'application/json', 'content-encoding': 'gzip' } });
    expect(big.statusCode).toBe(413);
    const br = await a.inject({ method: 'POST', url: '/v1/batch', payload: 'x', headers: { authorization: basic(KEY), 'content-type': 'application/json', 'content-encoding': 'br' } });
    expect(br.statusCode).toBe(415);
    const corrupt = await a.inject({ method: 'POST', url: '/v1/batch', payload: Buffer.from('not gzip at all'), headers: { authorization: basic(KEY), 'content-type': 'application/json', 'content-encoding': 'gzip' } });
    expect(corrupt.statusCode).toBe(400);
  });

  it('takes text/plain JSON (browser beacons) and coerces numeric user ids to strings', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup({}, bus);
    const res = await a.inject({ method: 'POST', url: '/v1/track', payload: JSON.stringify({ userId: 42, event: 'A' }), headers: { authorization: basic(KEY), 'content-type': 'text/plain' } });
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
    const wrong = await post(a, '/v1/track', { userId: 'u', event: 'A' }, { authorization: basic('nope') });
    expect(wrong.statusCode).toBe(403);
    expect(wrong.json()).toMatchObject({ code: 'LC_ERR_FORBIDDEN' });
    // auth comes before validation: an invalid body from a stranger is still 403
    expect((await post(a, '/v1/track', { nothing: true }, { authorization: `Bearer nope` })).statusCode).toBe(403);
    expect(bus.messages('lc.events')).toHaveLength(0);
  });

  it.each([
    ['/v1/track', { userId: 'u1' }, 'event', 'event is required'],
    ['/v1/track', { userId: 'u1', event: '' }, 'event', 'event must NOT have fewer than 1 characters'],
    ['/v1/track', { userId: 'u1', event: 'A', properties: 'x' }, 'properties', 'properties must be object'],
    ['/v1/track', { event: 'A' }, 'userId', 'userId or anonymousId is required'],
    ['/v1/track', { userId: null, anonymousId: null, event: 'A' }, 'userId', 'userId or anonymousId is required'],
    ['/v1/track', { userId: 'u', event: 'A', timestamp: 'yesterday' }, 'timestamp', 'timestamp is not an ISO 8601 date: "yesterday"'],
    ['/v1/identify', { userId: 'u', traits: [1] }, 'traits', 'traits must be object'],
    ['/v1/group', { userId: 'u' }, 'groupId', 'groupId is required'],
    ['/v1/alias', { userId: 'u' }, 'previousId', 'previousId is required'],
    ['/v1/batch', { batch: 'x' }, 'batch[0]', 'batch[0] must be object'],
    ['/v1/batch', {}, 'batch', 'batch is required'],
  ])('400 on %s %j names %s', async (url, body, field, message) => {
    const a = await setup();
    const res = await post(a, url, body);
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ success: false, code: 'LC_ERR_BAD_REQUEST', field, message });
  });

  it('400 on a body that is not JSON', async () => {
    const a = await setup();
    const res = await a.inject({ method: 'POST', url: '/v1/track', payload: '{"userId":', headers: { authorization: basic(KEY), 'content-type': 'application/json' } });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ code: 'LC_ERR_BAD_REQUEST' });
  });

  it('413 when a single event or a batch body is over the limit', async () => {
    const a = await setup({ maxEventBytes: 1000, maxBatchBytes: 4000 });
    const big = await post(a, '/v1/track', { userId: 'u', event: 'A', properties: { s: 'x'.repeat(1200) } });
    expect(big.statusCode).toBe(413);
    expect(big.json()).toMatchObject({ code: 'LC_ERR_PAYLOAD_TOO_LARGE', message: 'request body is larger than 1000 bytes' });
    const batch = await post(a, '/v1/batch', { batch: Array.from({ length: 100 }, () => ({ type: 'track', userId: 'u', event: 'Aaaaaaaaaaaaa' })) });
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
    const body = res.json() as { accepted: number; rejected: { index: number; field: string; code: string; messageId?: string }[] };
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

  it('an oversized message is found in a gzip batch whose compressed body is under the per-message limit', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup({ maxEventBytes: 500 }, bus);
    const body = gzipSync(JSON.stringify({ batch: [{ type: 'track', userId: 'u1', event: 'Small', messageId: 's1' }, { type: 'track', userId: 'u1', event: 'Big', properties: { s: 'x'.repeat(2000) } }] }));
    expect(body.length).toBeLessThan(500);
    const res = await a.inject({ method: 'POST', url: '/v1/batch', payload: body, headers: { authorization: basic(KEY), 'content-type': 'application/json', 'content-encoding': 'gzip' } });
    expect(res.statusCode).toBe(202);
    expect((res.json() as { rejected: { index: number; code: string }[] }).rejected.map((r) => [r.index, r.code])).toEqual([[1, 'LC_ERR_PAYLOAD_TOO_LARGE']]);
    expect(stored(bus).map((e) => e.id)).toEqual(['s1']);
  });

  it('a batch with no valid message is a 400 that still lists every rejection', async () => {
    const a = await setup();
    const res = await post(a, '/v1/batch', { batch: [{ type: 'track', userId: 'u' }, { type: 'alias', userId: 'u' }] });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ field: 'batch[0].event', rejected: [{ index: 0 }, { index: 1, field: 'batch[1].previousId' }] });
  });

  it('429 with Retry-After once a write key exceeds its event rate, counting batch events', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup({ rateLimitPerSecond: 5 }, bus);
    const ok = await post(a, '/v1/batch', { batch: Array.from({ length: 4 }, (_, i) => ({ type: 'track', userId: `u${i}`, event: 'A' })) });
    expect(ok.statusCode).toBe(200);
    expect((await post(a, '/v1/track', { userId: 'u', event: 'A' })).statusCode).toBe(200);
    const limited = await post(a, '/v1/track', { userId: 'u', event: 'A' });
    expect(limited.statusCode).toBe(429);
    expect(limited.headers['retry-after']).toBe('1');
    expect(Number(limited.headers['x-ratelimit-reset'])).toBeGreaterThan(NOW);
    expect(limited.json()).toMatchObject({ code: 'LC_ERR_RATE_LIMITED' });
    // another key has its own budget
    expect((await post(a, '/v1/track', { userId: 'u', event: 'A' }, { authorization: basic('other-key') })).statusCode).toBe(200);
    expect(bus.messages('lc.events')).toHaveLength(6);
  });

  it('503 with Retry-After when Kafka does not acknowledge, and 503 at once while it keeps failing', async () => {
    let calls = 0;
    const failing: Publisher = {
      publish: async (_topic: string, _m: OutgoingMessage[]) => {
        calls++;
        throw new Error('connect ECONNREFUSED 127.0.0.1:19092');
      },
    };
    const a = await setup({}, { publisher: () => failing }, { failFastMs: 60_000 });
    const first = await post(a, '/v1/track', { userId: 'u', event: 'A' });
    expect(first.statusCode).toBe(503);
    expect(first.headers['retry-after']).toBe('1');
    expect(first.json()).toMatchObject({ code: 'LC_ERR_UNAVAILABLE' });
    const second = await post(a, '/v1/track', { userId: 'u', event: 'A' });
    expect(second.statusCode).toBe(503);
    expect(calls).toBe(1);
    const health = await a.inject({ method: 'GET', url: '/health' });
    expect(health.statusCode).toBe(503);
  });
});

describe('ingest API: documents and metrics', () => {
  it('serves an OpenAPI document listing every Segment route', async () => {
    const a = await setup();
    const res = await a.inject({ method: 'GET', url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    const doc = res.json() as { openapi: string; paths: Record<string, unknown> };
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths).sort()).toEqual(['/v1/alias', '/v1/batch', '/v1/group', '/v1/identify', '/v1/page', '/v1/screen', '/v1/track']);
  });

  it('exposes health and Prometheus metrics counting stored events by source', async () => {
    const a = await setup();
    await post(a, '/v1/track', { userId: 'u', event: 'A' });
    expect((await a.inject({ method: 'GET', url: '/health' })).json()).toMatchObject({ ok: true });
    const metrics = await a.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.body).toContain('ingest_events_total{source="web",call="track"} 1');
  });
});
