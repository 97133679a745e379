// Bad input against the running ingest server, over a real socket: 100,000 requests made
// malformed by construction (types, sizes, depth, bad UTF-8, content types, auth,
// `__proto__` keys, reserved event types) get a 4xx with a coded message each, never a 5xx
// or a dropped connection; the server stays up with bounded memory; and nothing malformed
// reaches Kafka: every record published is a well-formed event of a type apps may send.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { InMemoryBus } from '../../platform/bus.ts';
import { eventCodec } from '../../platform/avro.ts';
import { isReservedEventType, SCHEMA_ID_HEADER } from '../../platform/contracts.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import { isWellFormedEvent } from '../../engine/runtime/engine-service.ts';
import { createIngestServer } from './server.ts';

const KEY = 'wk_fuzz_key_0123456789';
// LC_FUZZ_REQUESTS runs a smaller or larger sample by hand.
const REQUESTS = Number(process.env.LC_FUZZ_REQUESTS ?? 100_000);
const CONCURRENCY = 48;
const ROUTES = [
  '/v1/track',
  '/v1/identify',
  '/v1/page',
  '/v1/screen',
  '/v1/group',
  '/v1/alias',
  '/v1/batch',
  '/v1/import',
];
const basic = (k: string) => `Basic ${Buffer.from(`${k}:`).toString('base64')}`;

interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer | undefined;
  /** What makes it malformed, for the failure message. */
  defect: string;
}

// A JSON value nested `depth` deep.
const deep = (depth: number): unknown => {
  let v: unknown = 'leaf';
  for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { n: v };
  return v;
};

const jsonish = fc.jsonValue({ maxDepth: 4 });
const validTrack = fc.record({
  userId: fc.string({ minLength: 1, maxLength: 20 }),
  event: fc.string({ minLength: 1, maxLength: 30 }),
  properties: fc.dictionary(fc.string(), jsonish, { maxKeys: 4 }),
});

// Each generator yields a request with at least one defect.
const defects: fc.Arbitrary<
  Omit<FuzzRequest, 'method' | 'path'> & { path?: string; method?: string }
>[] = [
  // no credential, a wrong one, a garbled one
  fc
    .tuple(
      validTrack,
      fc.constantFrom(
        '',
        'Basic',
        'Basic !!!',
        'Bearer ',
        basic('nope'),
        'Digest x',
        basic('x'.repeat(5000)),
      ),
    )
    .map(([body, auth]) => ({
      headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) },
      body: Buffer.from(JSON.stringify(body)),
      defect: `auth ${JSON.stringify(auth.slice(0, 20))}`,
    })),
  // not JSON, truncated JSON, bad UTF-8
  fc
    .oneof(
      fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
      // A trailing NUL: the random tail can close the object (`"a"}`) but never make it valid JSON.
      fc.string().map((s) => Buffer.from(`{"userId": "u", "event": ${s}\u0000`)),
      fc.constant(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])),
    )
    .map((body) => ({
      headers: { 'content-type': 'application/json', authorization: basic(KEY) },
      body,
      defect: 'unparseable body',
    })),
  // wrong content types
  fc
    .tuple(
      validTrack,
      fc.constantFrom(
        'text/xml',
        'multipart/form-data; boundary=x',
        'application/x-www-form-urlencoded',
        'image/png',
      ),
    )
    .map(([body, type]) => ({
      headers: { 'content-type': type, authorization: basic(KEY) },
      body: Buffer.from(type.includes('urlencoded') ? 'a=1&b=2' : JSON.stringify(body)),
      defect: `content-type ${type}`,
    })),
  // wrong types: no user id of any accepted shape, and no event name
  fc
    .record({
      userId: fc.constantFrom([], {}, true, ''),
      event: fc.constantFrom('', {}, [], false),
      properties: fc.oneof(fc.string(), fc.integer(), fc.array(jsonish)),
    })
    .map((body) => ({
      headers: { 'content-type': 'application/json', authorization: basic(KEY) },
      body: Buffer.from(JSON.stringify(body)),
      path: '/v1/track',
      defect: 'wrong field types',
    })),
  // too deep
  fc.integer({ min: 40, max: 3000 }).map((depth) => ({
    headers: { 'content-type': 'application/json', authorization: basic(KEY) },
    body: Buffer.from(
      JSON.stringify({ userId: 'u', event: 'Deep', properties: { nested: deep(depth) } }),
    ),
    path: '/v1/track',
    defect: `depth ${depth}`,
  })),
  // too large
  fc.integer({ min: 520_000, max: 700_000 }).map((size) => ({
    headers: { 'content-type': 'application/json', authorization: basic(KEY) },
    body: Buffer.from(
      JSON.stringify({ userId: 'u', event: 'Big', properties: { blob: 'x'.repeat(size) } }),
    ),
    path: '/v1/track',
    defect: `size ${size}`,
  })),
  // prototype keys and reserved event types
  fc
    .tuple(
      fc.constantFrom('__proto__', 'constructor', 'prototype'),
      fc.constantFrom(
        'user_deleted',
        'timer.fired',
        'schedule.occurrence',
        'message_clicked',
        'segment.entered',
        'inapp.read',
      ),
    )
    .map(([key, type]) => ({
      headers: { 'content-type': 'application/json', authorization: basic(KEY) },
      body: Buffer.from(
        `{"userId":"u-proto","event":${JSON.stringify(type)},"${key}":{"polluted":true},"properties":{"${key}":{"polluted":true}}}`,
      ),
      path: '/v1/track',
      defect: `reserved ${type} with ${key}`,
    })),
  // unknown routes and methods
  fc
    .tuple(
      fc.constantFrom(
        '/v1/nope',
        '/v2/track',
        '/v1/track/..%2f..%2fetc',
        '/%00',
        `/v1/${'a'.repeat(3000)}`,
      ),
      fc.constantFrom('GET', 'PUT', 'DELETE', 'PATCH', 'POST'),
    )
    .map(([path, method]) => ({
      headers: { 'content-type': 'application/json', authorization: basic(KEY) },
      body: method === 'GET' || method === 'DELETE' ? undefined : Buffer.from('{}'),
      path,
      method,
      defect: `${method} ${path.slice(0, 30)}`,
    })),
  // batches whose every item is bad
  fc
    .array(
      fc.oneof(
        fc.constant(null),
        fc.integer(),
        fc.record({
          type: fc.constantFrom('track', 'nope', 'identify'),
          userId: fc.constant(''),
          event: fc.constantFrom('user_deleted', 'timer.fired', ''),
        }),
      ),
      { minLength: 1, maxLength: 20 },
    )
    .map((batch) => ({
      headers: { 'content-type': 'application/json', authorization: basic(KEY) },
      body: Buffer.from(JSON.stringify({ batch })),
      path: '/v1/batch',
      defect: 'batch of bad items',
    })),
];

// Oversized bodies are a few hundred of the sample: each is half a megabyte on the wire.
const weighted = defects.map((arbitrary, i) => ({ arbitrary, weight: i === 5 ? 1 : 50 }));
const requests: fc.Arbitrary<FuzzRequest> = fc
  .tuple(fc.oneof(...weighted), fc.constantFrom(...ROUTES))
  .map(([r, path]) => ({
    method: r.method ?? 'POST',
    path: r.path ?? path,
    headers: r.headers,
    body: r.body,
    defect: r.defect,
  }));

describe('ingest API under malformed input', () => {
  let app: FastifyInstance;
  let url: string;
  const bus = new InMemoryBus(2);

  beforeAll(async () => {
    app = await createIngestServer(
      {
        ingest: { maxBatchBytes: 512_000, maxEventBytes: 32_768, rateLimitPerSecond: 1_000_000 },
        auth: { writeKeys: [`web:${KEY}`] },
        kafka: { topicPrefix: 'fuzz' },
      },
      { bus, logger: silentLogger(), metrics: createMetricsRegistry({ defaults: false }) },
    );
    url = await app.listen({ port: 0, host: '127.0.0.1' });
  });

  afterAll(async () => {
    await app?.close();
  });

  it(`answers ${REQUESTS.toLocaleString('en')} malformed requests with a coded 4xx only, stays up with bounded memory, and lets nothing malformed through`, async () => {
    const sample = fc.sample(requests, { numRuns: REQUESTS, seed: 20261207 });
    global.gc?.();
    const heapBefore = process.memoryUsage().heapUsed;
    const bad: string[] = [];
    const statuses = new Map<number, number>();
    let next = 0;
    const worker = async () => {
      while (next < sample.length) {
        const r = sample[next++]!;
        let status = 0;
        let body = '';
        try {
          const res = await fetch(`${url}${r.path}`, {
            method: r.method,
            headers: r.headers,
            body: r.body,
          });
          status = res.status;
          body = await res.text();
        } catch (err) {
          bad.push(`${r.defect}: connection failed (${(err as Error).message})`);
          continue;
        }
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        // 200 is allowed only for a batch whose items were refused one by one (the body says so).
        const partialBatch =
          status === 200 && r.path === '/v1/batch' && /"rejected":\[\{/.test(body);
        if (!(status >= 400 && status < 500) && !partialBatch)
          bad.push(
            `${r.defect} (${r.method} ${r.path.slice(0, 40)}): ${status} ${body.slice(0, 120)}`,
          );
        else if (status >= 400 && !/"(code|message)"/.test(body) && status !== 404)
          bad.push(`${r.defect}: ${status} without a message: ${body.slice(0, 120)}`);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    expect(
      bad.slice(0, 20),
      `${bad.length} bad answers; statuses ${JSON.stringify([...statuses])}`,
    ).toEqual([]);

    const health = await fetch(`${url}/health`);
    expect(health.status).toBe(200);
    global.gc?.();
    const grownMb = (process.memoryUsage().heapUsed - heapBefore) / 1e6;
    // The sample itself is held until here; what the server keeps must stay small.
    expect(grownMb).toBeLessThan(200);

    // Whatever reached the events topic is a well-formed event of a type apps may send.
    const published = bus
      .messages('fuzz.events')
      .map((m) => eventCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]));
    for (const event of published) {
      expect(isWellFormedEvent(event), JSON.stringify(event).slice(0, 200)).toBe(true);
      expect(isReservedEventType(event.type), event.type).toBe(false);
      expect(Object.getPrototypeOf(event.properties)).toBe(Object.prototype);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  }, 600_000);
});
