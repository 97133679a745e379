// The Segment-compatible ingest API: `/v1/{track,identify,page,screen,group,alias,batch}`
// authenticated by write key, validated by JSON Schema, normalised, and acknowledged only
// after Kafka stored the events. Any Segment SDK works by changing its host and write key.
// This file builds the server (the HTTP kit with the write key credential, gzip bodies,
// browser beacons, CORS, metrics) and its lifecycle; the routes are in routes.ts.
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyRequest,
} from 'fastify';
import { createGunzip, createInflate } from 'node:zlib';
import type { Logger } from 'pino';
import type { Bus } from '../../platform/bus.ts';
import type { Config } from '../../platform/config.ts';
import { topics } from '../../platform/contracts.ts';
import { ErrorCodes, LifecycleError } from '../../platform/errors.ts';
import { MAX_JSON_DEPTH, jsonTextDepthExceeds } from '../../platform/json-depth.ts';
import {
  httpServerOptions,
  metricsTokenCredential,
  operationalRoutes,
  setupHttpKit,
} from '../../platform/http.ts';
import { Counter, Gauge, Histogram, type Registry } from '../../platform/metrics.ts';
import { parseWriteKeys, writeKeyCredential } from './auth.ts';
import { ingestFailures } from './errors.ts';
import { createRateLimiter } from './rate-limit.ts';
import { createClientTrust } from './trust.ts';
import {
  createEventWriter,
  DEFAULT_WRITER_OPTIONS,
  type EventWriterOptions,
} from './event-writer.ts';
import { BATCH_URLS, segmentRoutes } from './routes.ts';

type ContentTypeParserFn = (
  req: FastifyRequest,
  body: string | Buffer,
  done: (err: Error | null, body?: unknown) => void,
) => void;

export interface IngestServerConfig {
  ingest: Pick<Config['ingest'], 'maxBatchBytes' | 'maxEventBytes' | 'rateLimitPerSecond'>;
  auth: Pick<Config['auth'], 'writeKeys'> &
    Partial<Pick<Config['auth'], 'protectedTraits' | 'identitySecrets'>>;
  kafka: Pick<Config['kafka'], 'topicPrefix'>;
  /** Which proxies may name the client (LC_TRUST_PROXY); without it, none. */
  http?: Pick<Config['http'], 'trustProxy'>;
  /** The scraper's token of this server's /metrics (LC_METRICS_TOKEN); without it /metrics is refused. */
  metrics?: Pick<Config['metrics'], 'token'>;
  /** Kafka acknowledgement timeout and memory bounds (defaults suit production). */
  writer?: Partial<EventWriterOptions>;
}

export interface IngestDeps {
  bus: Pick<Bus, 'publisher'>;
  logger: Logger;
  metrics: Registry;
  clock?: () => number;
}

export async function createIngestServer(
  config: IngestServerConfig,
  deps: IngestDeps,
): Promise<FastifyInstance> {
  const clock = deps.clock ?? Date.now;
  const log = deps.logger.child({ component: 'ingest-http' });
  // Read once: nothing below holds `config`, so the server keeps the write keys only as the digests of `keys`.
  const { maxBatchBytes, maxEventBytes, rateLimitPerSecond } = config.ingest;
  const writerOptions = { ...config.writer };
  const keys = parseWriteKeys(config.auth.writeKeys);
  const trust = createClientTrust(
    {
      protectedTraits: config.auth.protectedTraits ?? [],
      identitySecrets: config.auth.identitySecrets ?? [],
    },
    new Set([...keys.digests.values()].map((k) => k.source)),
  );
  const limiter = createRateLimiter(rateLimitPerSecond, clock);
  const eventsTopic = topics(config.kafka.topicPrefix).events;

  const m = deps.metrics;
  const eventsTotal = new Counter({
    name: 'lifecycle_ingest_events_total',
    help: 'Events stored in Kafka, by source and call type.',
    labelNames: ['source', 'call'],
    registers: [m],
  });
  const rejectedTotal = new Counter({
    name: 'lifecycle_ingest_rejected_total',
    help: 'Messages or requests refused, by reason code.',
    labelNames: ['code'],
    registers: [m],
  });
  const droppedTraitsTotal = new Counter({
    name: 'lifecycle_ingest_dropped_traits_total',
    help: 'Protected traits (contact, routing, plan, LC_PROTECTED_TRAITS) dropped from messages of client write keys, by source and trait name.',
    labelNames: ['source', 'trait'],
    registers: [m],
  });
  const produceSeconds = new Histogram({
    name: 'lifecycle_ingest_produce_seconds',
    help: 'Time Kafka took to acknowledge one coalesced produce.',
    labelNames: ['outcome'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 3],
    registers: [m],
  });
  const produceSize = new Histogram({
    name: 'lifecycle_ingest_produce_messages',
    help: 'Messages per coalesced produce.',
    buckets: [1, 10, 50, 100, 500, 1000, 5000],
    registers: [m],
  });
  const inFlightGauge = new Gauge({
    name: 'lifecycle_ingest_inflight_events',
    help: 'Events accepted and waiting for Kafka.',
    registers: [m],
  });

  const writer = createEventWriter(deps.bus.publisher(), eventsTopic, writerOptions, {
    onFlush: (n, s, ok) => {
      produceSeconds.observe({ outcome: ok ? 'ok' : 'error' }, s);
      produceSize.observe(n);
    },
    onInFlight: (n) => inFlightGauge.set(n),
  });

  const app = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    // Per-request log lines cost more than the request at tens of thousands per second.
    logController: new LogController({ disableRequestLogging: true }),
    // and so does a pino child (with its redaction) per request: requests log through the component logger.
    childLoggerFactory: (logger) => logger,
    bodyLimit: maxBatchBytes,
    return503OnClosing: true,
    ...httpServerOptions(config.http ?? { trustProxy: 'false' }),
  });
  await setupHttpKit(app, {
    credentials: {
      writeKey: writeKeyCredential(keys),
      metrics: metricsTokenCredential(config.metrics?.token ?? ''),
    },
    openapi: {
      info: {
        title: 'Lifecycle ingest API',
        description:
          'Segment-compatible HTTP tracking API. Point any Segment SDK at this host with a write key configured in LC_WRITE_KEYS. ' +
          'A client write key (browser, mobile; the default kind) cannot set the traits email, phone, deviceTokens, webhookUrl, plan or those of LC_PROTECTED_TRAITS: they are dropped from its identify calls. ' +
          'A source with an identity secret (LC_IDENTITY_SECRETS) requires context.userHash, the hex HMAC-SHA256 of the userId, on client calls that name a user. ' +
          'The write key goes in HTTP Basic (as the user name), as a Bearer token, or as "writeKey" in the JSON body (what analytics-node and analytics.js send). ' +
          'Bodies are application/json or text/plain (JSON), optionally gzip- or deflate-compressed (Content-Encoding).',
        version: '1',
      },
      tags: [
        {
          name: 'segment',
          description:
            'The Segment HTTP tracking API: one call per message, or a batch of any of them.',
        },
      ],
    },
    ...ingestFailures({ rejected: rejectedTotal, clock }),
    metrics: m,
  });

  // Some SDKs gzip their batches (Content-Encoding: gzip, as Segment's API accepts). The
  // body limit applies to the inflated bytes, so a small bomb cannot grow past it.
  app.addHook('preParsing', async (req, _reply, payload) => {
    const encoding = req.headers['content-encoding']?.toLowerCase();
    if (!encoding || encoding === 'identity') return payload;
    if (encoding !== 'gzip' && encoding !== 'deflate') {
      throw new LifecycleError(
        ErrorCodes.UnsupportedMediaType,
        `unsupported Content-Encoding ${encoding}: send gzip, deflate or none`,
      );
    }
    const inflate = encoding === 'gzip' ? createGunzip() : createInflate();
    const out = Object.assign(inflate, { receivedEncodedLength: 0 });
    payload.on('data', (chunk: Buffer) => {
      out.receivedEncodedLength += chunk.length;
    });
    inflate.on('error', () => undefined);
    payload.pipe(inflate);
    return out;
  });

  // Bodies are measured for depth in their text, before anything parses or walks them, then
  // parsed by fastify's own JSON parser (with its prototype-poisoning checks). Browsers'
  // sendBeacon posts JSON as text/plain: it takes the same way.
  const parseJson = app.getDefaultJsonParser(
    app.initialConfig.onProtoPoisoning ?? 'error',
    app.initialConfig.onConstructorPoisoning ?? 'error',
  );
  const parseBody: ContentTypeParserFn = (req, body, done) => {
    const text = body as string;
    const batch = BATCH_URLS.has(req.routeOptions.url ?? '');
    // A batch's envelope (the body object and its `batch` array) does not count against its messages.
    if (jsonTextDepthExceeds(text, batch ? MAX_JSON_DEPTH + 2 : MAX_JSON_DEPTH)) {
      const what = batch ? 'a message of the batch nests' : 'the message nests';
      done(
        new LifecycleError(
          ErrorCodes.BadRequest,
          `${what} objects and arrays deeper than ${MAX_JSON_DEPTH} levels, the limit of event data`,
        ),
        undefined,
      );
      return;
    }
    void parseJson(req, text, done);
  };
  app.removeContentTypeParser(['application/json', 'text/plain']);
  app.addContentTypeParser('application/json', { parseAs: 'string' }, parseBody);
  app.addContentTypeParser('text/plain', { parseAs: 'string' }, parseBody);

  // Browsers call from any site with the (public) write key: allow cross-origin calls.
  app.addHook('onSend', (req, reply, payload, done) => {
    if (req.headers.origin) {
      void reply.header('access-control-allow-origin', '*');
      void reply.header('access-control-expose-headers', 'retry-after, x-ratelimit-reset');
    }
    done(null, payload);
  });
  // The preflight asks before any key is sent: it is public.
  app.options(
    '/v1/*',
    { schema: { hide: true }, config: { auth: 'public' } },
    async (_req, reply) =>
      reply
        .code(204)
        .header('access-control-allow-origin', '*')
        .header('access-control-allow-methods', 'POST, OPTIONS')
        .header('access-control-allow-headers', 'authorization, content-type')
        .header('access-control-max-age', '86400')
        .send(),
  );

  segmentRoutes(app, {
    ingest: { maxEventBytes, rateLimitPerSecond },
    writer,
    limiter,
    clock,
    keyKind: (digest) => keys.kindOf(digest),
    trust,
    metrics: { events: eventsTotal, rejected: rejectedTotal, droppedTraits: droppedTraitsTotal },
  });
  operationalRoutes(app, {
    metrics: m,
    metricsAccess: 'metrics',
    health: () => ({
      ok: writer.healthy(),
      kafka: { inFlightEvents: writer.inFlight(), lastError: writer.lastError() },
    }),
  });

  // Requests still waiting for Kafka finish (or time out) before the process lets go of the producer.
  app.addHook('onClose', async () => {
    const limit = writerOptions.timeoutMs ?? DEFAULT_WRITER_OPTIONS.timeoutMs;
    await Promise.race([writer.drain(), new Promise((r) => setTimeout(r, limit).unref())]);
  });
  return app;
}
