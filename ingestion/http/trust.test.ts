// What the ingest API lets an app decide, and what it keeps for the product: reserved
// event types are refused from every write key, bodies nest at most MAX_JSON_DEPTH levels,
// client keys cannot set contact or routing traits, and a source with an identity secret
// must prove the userId of its client events.
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
import { createLogger, silentLogger } from '../../platform/logger.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import { createIngestServer, type IngestServerConfig } from './server.ts';
import { createClientTrust, userHash } from './trust.ts';

const SERVER_KEY = 'wk_backend_1';
const NOW = Date.parse('2026-03-01T12:00:00.000Z');

function config(): IngestServerConfig {
  return {
    ingest: { maxBatchBytes: 512_000, maxEventBytes: 32_768, rateLimitPerSecond: 10_000 },
    auth: { writeKeys: [`backend:${SERVER_KEY}`] },
    kafka: { topicPrefix: 'lc' },
    metrics: { token: METRICS_TOKEN },
  };
}
const METRICS_TOKEN = 'scraper-token-for-trust-tests';
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
    const metrics = await scrape(a);
    expect(metrics.body).toContain('ingest_rejected_total{code="LC_ERR_BAD_REQUEST"} 3');
  });
});

const CLIENT_KEY = 'wk_browser_1';
const VERIFIED_KEY = 'wk_app_browser_1';
const APP_SERVER_KEY = 'wk_app_backend_1';
const APP_SECRET = 'app-identity-secret-0123456789abcdef';

function trustConfig(): IngestServerConfig {
  return {
    ...config(),
    auth: {
      writeKeys: [
        `backend:${SERVER_KEY}:server`,
        `web:${CLIENT_KEY}`,
        `app:${VERIFIED_KEY}:client`,
        `app:${APP_SERVER_KEY}:server`,
      ],
      protectedTraits: ['role', ' Tier '],
      identitySecrets: [`app:${APP_SECRET}`],
    },
  };
}

/** A server whose log lines are kept, to check what is logged (and that values are not). */
async function setupLogged(bus: InMemoryBus) {
  const lines: Record<string, unknown>[] = [];
  app = await createIngestServer(trustConfig(), {
    bus,
    logger: createLogger(
      { level: 'info' },
      { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
    ),
    metrics: createMetricsRegistry({ defaults: false }),
    clock: () => NOW,
  });
  return { a: app, lines };
}

const contactTraits = {
  email: 'attacker@example.com',
  Phone: '+15550100',
  deviceTokens: ['tok-attacker'],
  webhookUrl: 'https://attacker.example/hook',
  plan: 'enterprise',
  role: 'admin',
  tier: 'gold',
  firstName: 'Mallory',
  locale: 'de',
};

describe('client and server write keys', () => {
  it('a client key cannot set protected traits: they are dropped, counted by name, and logged once without their values; the rest is stored', async () => {
    const bus = new InMemoryBus(2);
    const { a, lines } = await setupLogged(bus);
    const res = await post(
      a,
      '/v1/identify',
      { userId: 'victim', messageId: 'c-1', traits: contactTraits },
      bearer(CLIENT_KEY),
    );
    expect(res.statusCode).toBe(200);
    const [event] = stored(bus);
    expect(event!.traits).toEqual({ firstName: 'Mallory', locale: 'de' });
    expect(event!.source).toBe('http:web:client');

    const metrics = (await scrape(a)).body;
    for (const trait of ['email', 'phone', 'deviceTokens', 'webhookUrl', 'plan', 'role', 'Tier'])
      expect(metrics, trait).toContain(
        `lifecycle_ingest_dropped_traits_total{source="web",trait="${trait}"} 1`,
      );
    const drops = lines.filter((l) => String(l.msg).startsWith('protected traits dropped'));
    expect(drops).toHaveLength(1);
    expect(drops[0]).toMatchObject({ source: 'web', kind: 'client', dropped: 7, messages: 1 });
    const logged = JSON.stringify(lines);
    for (const value of [
      'attacker@example.com',
      '+15550100',
      'tok-attacker',
      'attacker.example',
      'enterprise',
    ])
      expect(logged).not.toContain(value);
  });

  it('a batch of a client key logs its drops once for the whole request', async () => {
    const bus = new InMemoryBus(2);
    const { a, lines } = await setupLogged(bus);
    const res = await post(
      a,
      '/v1/batch',
      {
        batch: [
          { type: 'identify', userId: 'u1', traits: { email: 'a@example.com', name: 'A' } },
          { type: 'identify', userId: 'u2', traits: { email: 'b@example.com', plan: 'pro' } },
          { type: 'track', userId: 'u2', event: 'Signed Up', properties: { plan: 'pro' } },
        ],
      },
      bearer(CLIENT_KEY),
    );
    expect(res.statusCode).toBe(200);
    const byType = (type: string) =>
      stored(bus)
        .filter((e) => e.type === type)
        .map((e) => [e.userId, e.traits ?? e.properties])
        .sort();
    expect(byType('identify')).toEqual([
      ['u1', { name: 'A' }],
      ['u2', {}],
    ]);
    // Track properties are never merged into traits: they are kept as sent.
    expect(byType('Signed Up')).toEqual([['u2', { plan: 'pro' }]]);
    const drops = lines.filter((l) => String(l.msg).startsWith('protected traits dropped'));
    expect(drops).toHaveLength(1);
    expect(drops[0]).toMatchObject({ traits: ['email', 'plan'], dropped: 3, messages: 3 });
    const metrics = (await scrape(a)).body;
    expect(metrics).toContain(
      'lifecycle_ingest_dropped_traits_total{source="web",trait="email"} 2',
    );
  });

  it('a server key sets every trait, and its events say they came from a server key', async () => {
    const bus = new InMemoryBus(2);
    const { a, lines } = await setupLogged(bus);
    const res = await post(a, '/v1/identify', { userId: 'victim', traits: contactTraits });
    expect(res.statusCode).toBe(200);
    expect(stored(bus)[0]!.traits).toEqual(contactTraits);
    expect(stored(bus)[0]!.source).toBe('http:backend:server');
    expect(lines.filter((l) => String(l.msg).startsWith('protected traits dropped'))).toEqual([]);
  });

  it('the kind comes from the key alone: a body cannot claim to be a server', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup(bus, trustConfig());
    await post(
      a,
      '/v1/identify',
      {
        userId: 'victim',
        traits: { email: 'attacker@example.com' },
        context: { source: 'http:web:server', kind: 'server', library: { name: 'server' } },
      },
      bearer(CLIENT_KEY),
    );
    expect(stored(bus)[0]!.source).toBe('http:web:client');
    expect(stored(bus)[0]!.traits).toEqual({});
  });
});

describe('identity verification of client keys', () => {
  const verified = (body: Record<string, unknown>, key = VERIFIED_KEY) =>
    setup(new InMemoryBus(2), trustConfig()).then((a) =>
      post(a, '/v1/identify', body, bearer(key)),
    );

  it('a client event with a userId and no context.userHash is refused with 401 naming the fix', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup(bus, trustConfig());
    for (const url of ['/v1/identify', '/v1/track']) {
      const res = await post(
        a,
        url,
        { userId: 'victim', event: 'payment_failed', traits: {} },
        bearer(VERIFIED_KEY),
      );
      expect(res.statusCode, url).toBe(401);
      expect(res.json(), url).toMatchObject({
        code: 'LC_ERR_UNAUTHORIZED',
        field: 'context.userHash',
        message: expect.stringContaining('HMAC-SHA256 of the userId'),
      });
      expect((res.json() as { message: string }).message).toContain('LC_IDENTITY_SECRETS');
    }
    expect(bus.messages('lc.events')).toEqual([]);
  });

  it("a wrong hash (another user's, or garbage) is refused with 403", async () => {
    for (const hash of [
      userHash(APP_SECRET, 'attacker'),
      'zz',
      userHash('another-secret', 'victim'),
    ]) {
      const res = await verified({ userId: 'victim', context: { userHash: hash } });
      expect(res.statusCode, hash).toBe(403);
      expect(res.json()).toMatchObject({
        code: 'LC_ERR_FORBIDDEN',
        field: 'context.userHash',
        message: expect.stringContaining('does not match the userId'),
      });
    }
  });

  it('a valid hash is accepted; protected traits are still dropped, and the hash is not stored', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup(bus, trustConfig());
    const res = await post(
      a,
      '/v1/identify',
      {
        userId: 'victim',
        traits: contactTraits,
        context: { userHash: userHash(APP_SECRET, 'victim').toUpperCase(), locale: 'de-DE' },
      },
      bearer(VERIFIED_KEY),
    );
    expect(res.statusCode).toBe(200);
    expect(stored(bus)[0]!.traits).toEqual({ firstName: 'Mallory', locale: 'de' });
    expect(stored(bus)[0]!.context).toEqual({ locale: 'de-DE' });
  });

  it('anonymous events are accepted, but an anonymous identify or alias is refused', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup(bus, trustConfig());
    const anon = { anonymousId: 'anon-1' };
    expect(
      (await post(a, '/v1/track', { ...anon, event: 'Viewed' }, bearer(VERIFIED_KEY))).statusCode,
    ).toBe(200);
    expect(
      (await post(a, '/v1/page', { ...anon, name: 'Home' }, bearer(VERIFIED_KEY))).statusCode,
    ).toBe(200);
    for (const [url, body] of [
      ['/v1/identify', { ...anon, traits: { firstName: 'A' } }],
      ['/v1/alias', { ...anon, previousId: 'victim' }],
    ] as const) {
      const res = await post(a, url, body, bearer(VERIFIED_KEY));
      expect(res.statusCode, url).toBe(401);
      expect(res.json()).toMatchObject({ code: 'LC_ERR_UNAUTHORIZED', field: 'userId' });
    }
    expect(stored(bus).map((e) => e.type)).toEqual(['Viewed', 'page']);
  });

  it('in a batch each message is judged on its own; a batch with no verified message is a 401', async () => {
    const bus = new InMemoryBus(2);
    const a = await setup(bus, trustConfig());
    const good = {
      type: 'track',
      userId: 'u1',
      event: 'A',
      context: { userHash: userHash(APP_SECRET, 'u1') },
    };
    const bad = { type: 'track', userId: 'u2', event: 'A' };
    const mixed = await post(a, '/v1/batch', { batch: [good, bad] }, bearer(VERIFIED_KEY));
    expect(mixed.statusCode).toBe(202);
    expect((mixed.json() as { rejected: { field: string; code: string }[] }).rejected).toEqual([
      expect.objectContaining({ field: 'batch[1].context.userHash', code: 'LC_ERR_UNAUTHORIZED' }),
    ]);
    const none = await post(a, '/v1/batch', { batch: [bad] }, bearer(VERIFIED_KEY));
    expect(none.statusCode).toBe(401);
    // The batch's own context carries the hash for all its messages, as Segment merges it.
    const shared = await post(
      a,
      '/v1/batch',
      { batch: [bad], context: { userHash: userHash(APP_SECRET, 'u2') } },
      bearer(VERIFIED_KEY),
    );
    expect(shared.statusCode).toBe(200);
  });

  it('server keys of the same source need no hash', async () => {
    const res = await verified(
      { userId: 'victim', traits: { email: 'v@example.com' } },
      APP_SERVER_KEY,
    );
    expect(res.statusCode).toBe(200);
  });

  it('a secret for a source without a write key, or a short one, stops the server from starting', () => {
    expect(() =>
      createClientTrust(
        { protectedTraits: [], identitySecrets: [`ap:${APP_SECRET}`] },
        new Set(['app']),
      ),
    ).toThrow(/LC_IDENTITY_SECRETS: source "ap" has no write key/);
    expect(() =>
      createClientTrust({ protectedTraits: [], identitySecrets: ['app:short'] }, new Set(['app'])),
    ).toThrow(/at least 32 characters/);
    expect(() =>
      createClientTrust({ protectedTraits: [], identitySecrets: ['app'] }, new Set(['app'])),
    ).toThrow(/source:secret/);
  });
});
