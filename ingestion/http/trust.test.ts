// What the ingest API lets an app decide, and what it keeps for the product: reserved
// event types are refused from every write key, and bodies nest at most MAX_JSON_DEPTH levels.
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { InMemoryBus } from '../../platform/bus.ts';
import { eventCodec } from '../../platform/avro.ts';
import {
  RESERVED_EVENT_TYPES,
  SCHEMA_ID_HEADER,
  type NormalisedEvent,
} from '../../platform/contracts.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import { createIngestServer, type IngestServerConfig } from './server.ts';

const SERVER_KEY = 'wk_backend_1';
const NOW = Date.parse('2026-03-01T12:00:00.000Z');

function config(): IngestServerConfig {
  return {
    ingest: { maxBatchBytes: 512_000, maxEventBytes: 32_768, rateLimitPerSecond: 10_000 },
    auth: { writeKeys: [`backend:${SERVER_KEY}`] },
    kafka: { topicPrefix: 'lc' },
  };
}

let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

async function setup(bus = new InMemoryBus(2), cfg: IngestServerConfig = config()) {
  app = await createIngestServer(cfg, {
    bus,
    logger: silentLogger(),
    metrics: createMetricsRegistry({ defaults: false }),
    clock: () => NOW,
  });
  return app;
}

const stored = (bus: InMemoryBus): NormalisedEvent[] =>
  bus.messages('lc.events').map((m) => eventCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]));
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
const post = (
  a: FastifyInstance,
  url: string,
  payload: unknown,
  headers: Record<string, string> = bearer(SERVER_KEY),
) => a.inject({ method: 'POST', url, payload: payload as Record<string, unknown>, headers });

describe('reserved event types', () => {
  it.each(Object.keys(RESERVED_EVENT_TYPES))(
    'a track named %s is refused with 400, naming the type, and nothing reaches Kafka',
    async (type) => {
      const bus = new InMemoryBus(2);
      const a = await setup(bus);
      for (const url of ['/v1/track', '/v1/t']) {
        const res = await post(a, url, {
          userId: 'victim',
          event: type,
          properties: { amount: 10 },
        });
        expect(res.statusCode, url).toBe(400);
        expect(res.json(), url).toMatchObject({
          success: false,
          code: 'LC_ERR_RESERVED_EVENT',
          field: 'event',
        });
        expect((res.json() as { message: string }).message).toContain(JSON.stringify(type));
        expect((res.json() as { message: string }).message).toContain('made by the product only');
      }
      expect(bus.messages('lc.events')).toEqual([]);
    },
  );

  it('in a batch the reserved item is refused on its own and the others are stored', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup(bus);
    const res = await post(a, '/v1/batch', {
      batch: [
        { type: 'track', userId: 'u1', event: 'Order Completed', messageId: 'ok-1' },
        { type: 'track', userId: 'u1', event: 'user_deleted', messageId: 'forged-1' },
        {
          type: 'track',
          userId: 'u1',
          event: 'message_clicked',
          messageId: 'forged-2',
          properties: { sendId: 's' },
        },
        { type: 'identify', userId: 'u1', messageId: 'ok-2', traits: { firstName: 'Ann' } },
      ],
    });
    expect(res.statusCode).toBe(202);
    const body = res.json() as {
      accepted: number;
      rejected: {
        index: number;
        messageId?: string;
        field: string;
        code: string;
        message: string;
      }[];
    };
    expect(body.accepted).toBe(2);
    expect(body.rejected.map((r) => [r.index, r.messageId, r.field, r.code])).toEqual([
      [1, 'forged-1', 'batch[1].event', 'LC_ERR_RESERVED_EVENT'],
      [2, 'forged-2', 'batch[2].event', 'LC_ERR_RESERVED_EVENT'],
    ]);
    expect(body.rejected[0]!.message).toContain('"user_deleted"');
    expect(
      stored(bus)
        .map((e) => e.id)
        .sort(),
    ).toEqual(['ok-1', 'ok-2']);
    expect(stored(bus).filter((e) => e.type in RESERVED_EVENT_TYPES)).toEqual([]);
  });

  it('page and screen names are properties, not types: a page named like a reserved type stays a page', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup(bus);
    expect((await post(a, '/v1/page', { userId: 'u1', name: 'user_deleted' })).statusCode).toBe(
      200,
    );
    expect((await post(a, '/v1/screen', { userId: 'u1', name: 'timer.fired' })).statusCode).toBe(
      200,
    );
    expect(stored(bus).map((e) => [e.type, e.properties.name])).toEqual([
      ['page', 'user_deleted'],
      ['screen', 'timer.fired'],
    ]);
  });

  it('the OpenAPI document says which event names are refused', async () => {
    const a = await setup();
    const doc = (await a.inject({ method: 'GET', url: '/openapi.json' })).json() as {
      paths: Record<
        string,
        {
          post: {
            requestBody: {
              content: Record<
                string,
                { schema: { properties: Record<string, { description?: string }> } }
              >;
            };
            responses: Record<string, { description: string }>;
          };
        }
      >;
    };
    const track = doc.paths['/v1/track']!.post;
    expect(
      track.requestBody.content['application/json']!.schema.properties.event!.description,
    ).toContain('user_deleted');
    expect(track.responses['400']!.description).toContain('LC_ERR_RESERVED_EVENT');
  });
});

describe('JSON depth', () => {
  /** `levels` objects, one inside the other: `{"a":{"a":...{}}}`. */
  const deep = (levels: number): Record<string, unknown> => {
    let v: Record<string, unknown> = {};
    for (let i = 1; i < levels; i++) v = { a: v };
    return v;
  };
  const raw = (
    a: FastifyInstance,
    url: string,
    payload: string | Buffer,
    headers: Record<string, string> = {},
  ) =>
    a.inject({
      method: 'POST',
      url,
      payload,
      headers: { ...bearer(SERVER_KEY), 'content-type': 'application/json', ...headers },
    });

  it('a message may nest 32 levels (the message object is the first), in a single call and in a batch', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup(bus);
    // the message (level 1), its properties (2) and 30 levels inside them: 32
    expect(
      (
        await post(a, '/v1/track', {
          userId: 'u1',
          event: 'Deep',
          messageId: 'single',
          properties: deep(31),
        })
      ).statusCode,
    ).toBe(200);
    expect(
      (
        await post(a, '/v1/batch', {
          batch: [
            {
              type: 'track',
              userId: 'u1',
              event: 'Deep',
              messageId: 'batched',
              properties: deep(31),
            },
          ],
        })
      ).statusCode,
    ).toBe(200);
    expect(stored(bus).map((e) => e.id)).toEqual(['single', 'batched']);
  });

  it.each([
    ['/v1/track', (p: unknown) => ({ userId: 'u1', event: 'Deep', properties: p })],
    ['/v1/identify', (p: unknown) => ({ userId: 'u1', traits: p })],
    [
      '/v1/batch',
      (p: unknown) => ({ batch: [{ type: 'track', userId: 'u1', event: 'Deep', properties: p }] }),
    ],
  ])(
    '%s: one level more is a 400 that names the limit, and nothing is stored',
    async (url, body) => {
      const bus = new InMemoryBus(2);
      const a = await setup(bus);
      const res = await post(a, url, body(deep(32)));
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({
        success: false,
        code: 'LC_ERR_BAD_REQUEST',
        message: expect.stringContaining('32 levels'),
      });
      expect(bus.messages('lc.events')).toEqual([]);
    },
  );

  it('a body nested beyond any stack is refused before it is parsed or walked: JSON, text/plain and gzip alike', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup(bus);
    // Deep enough to overflow JSON.stringify (a few thousand levels), small enough for the 32 KB message limit.
    const levels = 12_000;
    const text = `{"userId":"u1","event":"Deep","properties":{"a":${'['.repeat(levels)}${']'.repeat(levels)}}}`;
    for (const [what, res] of [
      ['json', await raw(a, '/v1/track', text)],
      ['text/plain', await raw(a, '/v1/t', text, { 'content-type': 'text/plain' })],
      [
        'gzip batch',
        await raw(
          a,
          '/v1/batch',
          gzipSync(`{"batch":[${text.replace('{', '{"type":"track",')}]}`),
          { 'content-encoding': 'gzip' },
        ),
      ],
    ] as const) {
      expect(res.statusCode, what).toBe(400);
      expect(res.json(), what).toMatchObject({
        code: 'LC_ERR_BAD_REQUEST',
        message: expect.stringContaining('32 levels'),
      });
    }
    expect(bus.messages('lc.events')).toEqual([]);
    const metrics = await a.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.body).toContain('ingest_rejected_total{code="LC_ERR_BAD_REQUEST"} 3');
  });
});
