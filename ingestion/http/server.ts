// The Segment-compatible ingest API: `/v1/{track,identify,page,screen,group,alias,batch}`
// authenticated by write key, validated by JSON Schema, normalised, and acknowledged only
// after Kafka stored the events. Any Segment SDK works by changing its host and write key.
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { createGunzip, createInflate } from 'node:zlib';
import swagger, { type SwaggerTransform } from '@fastify/swagger';
import { Type } from '@sinclair/typebox';
import type { Logger } from 'pino';
import type { Bus, OutgoingMessage } from '../../platform/bus.ts';
import type { Config } from '../../platform/config.ts';
import { topics, type NormalisedEvent } from '../../platform/contracts.ts';
import { encodeWithHeader, eventCodec } from '../../platform/avro.ts';
import { ErrorCodes, LifecycleError, type ErrorCode } from '../../platform/errors.ts';
import { Counter, Gauge, Histogram, type Registry } from '../../platform/metrics.ts';
import { parseWriteKeys, presentedKey } from './auth.ts';
import { createRateLimiter } from './rate-limit.ts';
import { createEventWriter, DEFAULT_WRITER_OPTIONS, type EventWriterOptions } from './event-writer.ts';
import {
  BatchDocSchema,
  BatchSchema,
  MESSAGE_SCHEMAS,
  MESSAGE_TYPES,
  isRejection,
  normalise,
  type MessageType,
  type Rejection,
  type SegmentMessage,
} from './segment.ts';

export interface IngestServerConfig {
  ingest: Pick<Config['ingest'], 'maxBatchBytes' | 'maxEventBytes' | 'rateLimitPerSecond'>;
  auth: Pick<Config['auth'], 'writeKeys'>;
  kafka: Pick<Config['kafka'], 'topicPrefix'>;
  /** Kafka acknowledgement timeout and memory bounds (defaults suit production). */
  writer?: Partial<EventWriterOptions>;
}

export interface IngestDeps {
  bus: Pick<Bus, 'publisher'>;
  logger: Logger;
  metrics: Registry;
  clock?: () => number;
}

interface RejectedItem extends Rejection {
  index: number;
  messageId?: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    ingestSource: string;
    /** Digest of the presented write key (never its plaintext): the rate limit's bucket. */
    ingestKey: string;
  }
}

const Rejected = Type.Object({
  index: Type.Integer(),
  messageId: Type.Optional(Type.String()),
  code: Type.String(),
  field: Type.String(),
  message: Type.String(),
});
const ErrorBody = Type.Object({
  success: Type.Literal(false),
  code: Type.String(),
  message: Type.String(),
  field: Type.Optional(Type.String()),
  rejected: Type.Optional(Type.Array(Rejected)),
});
const Accepted = Type.Object({
  success: Type.Literal(true),
  accepted: Type.Integer({ description: 'Messages stored in Kafka.' }),
  rejected: Type.Array(Rejected, { description: 'Messages refused, by index in the batch, with the field at fault.' }),
});
// Both refusals that ask the client to come back say when (analytics-node waits for X-RateLimit-Reset).
const retryHeaders = {
  'Retry-After': { type: 'integer', minimum: 1, description: 'Seconds to wait before retrying.' },
  'X-RateLimit-Reset': { type: 'integer', description: 'Epoch milliseconds from which a retry may succeed (now + Retry-After).' },
};
const errorResponses = {
  400: { ...ErrorBody, description: 'Invalid message; `field` names the field at fault.' },
  401: { ...ErrorBody, description: 'No write key presented.' },
  403: { ...ErrorBody, description: 'Unknown write key.' },
  413: { ...ErrorBody, description: 'Request or event larger than the configured limit (the limit applies to the inflated body).' },
  415: { ...ErrorBody, description: 'Content-Encoding other than gzip, deflate or identity, or a body that is neither application/json nor text/plain.' },
  429: { ...ErrorBody, description: 'Per-write-key event rate exceeded (a batch counts its events); retry after Retry-After.', headers: retryHeaders },
  503: { ...ErrorBody, description: 'Kafka is not acknowledging; nothing was reported stored, retry after Retry-After with the same messageIds.', headers: retryHeaders },
};
/** What every Segment route takes besides its body (documentation; the preParsing hook enforces it). */
const requestHeaders = Type.Object({
  'content-encoding': Type.Optional(
    Type.Unsafe<string>({
      type: 'string',
      enum: ['gzip', 'deflate', 'identity'],
      description: 'Compressed bodies are inflated first; the size limits apply to the inflated body. Any other encoding is a 415.',
    }),
  ),
});
/** Request bodies: JSON, or JSON sent as text/plain (browsers' sendBeacon). */
const consumes = ['application/json', 'text/plain'];
const documentRoute = (body?: unknown) => (({ schema, url }) => ({ schema: { ...schema, headers: requestHeaders, ...(body ? { body } : {}) }, url })) satisfies SwaggerTransform;

function fail(reply: FastifyReply, status: number, code: ErrorCode, message: string, field?: string) {
  return reply.code(status).send(field ? { success: false, code, message, field } : { success: false, code, message });
}

/** First Ajv error as (field, message), with the field as a dotted path into the message. */
function describeValidation(errors: { instancePath: string; message?: string; keyword: string; params: Record<string, unknown> }[], prefix = ''): { field: string; message: string } {
  const e = errors[0];
  if (!e) return { field: prefix || 'body', message: 'invalid' };
  const path = e.instancePath
    .split('/')
    .filter(Boolean)
    .map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`))
    .join('');
  let field = `${prefix}${path}`.replace(/^\./, '');
  let message = e.message ?? 'is invalid';
  if (e.keyword === 'required') {
    field = `${field ? `${field}.` : ''}${String(e.params.missingProperty)}`;
    message = 'is required';
  }
  if (!field) field = 'body';
  return { field, message: `${field} ${message}` };
}

export async function createIngestServer(config: IngestServerConfig, deps: IngestDeps): Promise<FastifyInstance> {
  const clock = deps.clock ?? Date.now;
  const log = deps.logger.child({ component: 'ingest-http' });
  // Read once: nothing below holds `config`, so the server keeps the write keys only as the digests of `keys`.
  const { maxBatchBytes, maxEventBytes, rateLimitPerSecond } = config.ingest;
  const writerOptions = { ...config.writer };
  const keys = parseWriteKeys(config.auth.writeKeys);
  const limiter = createRateLimiter(rateLimitPerSecond, clock);
  const eventsTopic = topics(config.kafka.topicPrefix).events;

  const m = deps.metrics;
  const eventsTotal = new Counter({ name: 'ingest_events_total', help: 'Events stored in Kafka, by source and call type.', labelNames: ['source', 'call'], registers: [m] });
  const rejectedTotal = new Counter({ name: 'ingest_rejected_total', help: 'Messages or requests refused, by reason code.', labelNames: ['code'], registers: [m] });
  const produceSeconds = new Histogram({
    name: 'ingest_produce_seconds',
    help: 'Time Kafka took to acknowledge one coalesced produce.',
    labelNames: ['outcome'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 3],
    registers: [m],
  });
  const produceSize = new Histogram({ name: 'ingest_produce_messages', help: 'Messages per coalesced produce.', buckets: [1, 10, 50, 100, 500, 1000, 5000], registers: [m] });
  const inFlightGauge = new Gauge({ name: 'ingest_inflight_events', help: 'Events accepted and waiting for Kafka.', registers: [m] });

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
  });
  app.decorateRequest('ingestSource', '');
  app.decorateRequest('ingestKey', '');

  // Some SDKs gzip their batches (Content-Encoding: gzip, as Segment's API accepts). The
  // body limit applies to the inflated bytes, so a small bomb cannot grow past it.
  app.addHook('preParsing', async (req, _reply, payload) => {
    const encoding = req.headers['content-encoding']?.toLowerCase();
    if (!encoding || encoding === 'identity') return payload;
    if (encoding !== 'gzip' && encoding !== 'deflate') {
      throw new LifecycleError(ErrorCodes.BadRequest, `unsupported Content-Encoding ${encoding}: send gzip, deflate or none`, { status: 415 });
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

  // Browsers' sendBeacon posts JSON as text/plain.
  app.addContentTypeParser('text/plain', { parseAs: 'string' }, (_req, body, done) => {
    try {
      done(null, JSON.parse(body as string));
    } catch {
      done(Object.assign(new Error('body is not valid JSON'), { statusCode: 400, code: 'FST_ERR_CTP_INVALID_JSON_BODY' }), undefined);
    }
  });

  await app.register(swagger, {
    openapi: {
      info: {
        title: 'Lifecycle ingest API',
        description:
          'Segment-compatible HTTP tracking API. Point any Segment SDK at this host with a write key configured in LC_WRITE_KEYS. ' +
          'The write key goes in HTTP Basic (as the user name), as a Bearer token, or as "writeKey" in the JSON body (what analytics-node and analytics.js send). ' +
          'Bodies are application/json or text/plain (JSON), optionally gzip- or deflate-compressed (Content-Encoding).',
        version: '1',
      },
      components: {
        securitySchemes: {
          writeKeyBasic: { type: 'http', scheme: 'basic', description: 'Write key as the user name, empty password (Segment).' },
          writeKeyBearer: { type: 'http', scheme: 'bearer', description: 'Write key as a bearer token.' },
        },
      },
      security: [{ writeKeyBasic: [] }, { writeKeyBearer: [] }],
    },
  });

  app.setErrorHandler((err: FastifyError & { validation?: unknown }, req, reply) => {
    if (err instanceof LifecycleError) {
      rejectedTotal.inc({ code: err.code });
      if (err.status === 503 || err.status === 429) {
        const seconds = Number(err.details?.retryAfterSeconds ?? 1);
        void reply.header('Retry-After', String(seconds));
        // analytics-node waits until this epoch-ms instant before retrying a 429.
        void reply.header('X-RateLimit-Reset', String(clock() + Number(err.details?.retryAfterMs ?? seconds * 1000)));
      }
      if (err.status >= 500 && err.status !== 503) req.log.error({ err }, 'ingest request failed');
      return fail(reply, err.status, err.code, err.message, typeof err.details?.field === 'string' ? err.details.field : undefined);
    }
    if (err.validation) {
      rejectedTotal.inc({ code: ErrorCodes.BadRequest });
      const { field, message } = describeValidation(err.validation as Parameters<typeof describeValidation>[0]);
      return fail(reply, 400, ErrorCodes.BadRequest, message, field);
    }
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      rejectedTotal.inc({ code: ErrorCodes.PayloadTooLarge });
      const limit = req.routeOptions.bodyLimit ?? maxBatchBytes;
      return fail(reply, 413, ErrorCodes.PayloadTooLarge, `request body is larger than ${limit} bytes`);
    }
    if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      return fail(reply, 415, ErrorCodes.BadRequest, 'send the body as application/json (or text/plain holding JSON)');
    }
    if (err.statusCode && err.statusCode < 500) {
      rejectedTotal.inc({ code: ErrorCodes.BadRequest });
      return fail(reply, err.statusCode, ErrorCodes.BadRequest, err.code?.startsWith('FST_ERR_CTP') ? 'body is not valid JSON' : err.message);
    }
    req.log.error({ err }, 'ingest request failed');
    return fail(reply, 500, ErrorCodes.Internal, 'internal error');
  });

  // Browsers call from any site with the (public) write key: allow cross-origin calls.
  app.addHook('onSend', (req, reply, payload, done) => {
    if (req.headers.origin) {
      void reply.header('access-control-allow-origin', '*');
      void reply.header('access-control-expose-headers', 'retry-after, x-ratelimit-reset');
    }
    done(null, payload);
  });
  app.options('/v1/*', { schema: { hide: true } }, async (_req, reply) =>
    reply
      .code(204)
      .header('access-control-allow-origin', '*')
      .header('access-control-allow-methods', 'POST, OPTIONS')
      .header('access-control-allow-headers', 'authorization, content-type')
      .header('access-control-max-age', '86400')
      .send(),
  );

  // Authentication runs after the body is parsed (the key may be in it) and before
  // validation, so an unauthenticated caller learns nothing about the schema.
  const authenticate = async (req: FastifyRequest) => {
    const key = presentedKey(req.headers.authorization, req.body);
    if (!key) {
      throw new LifecycleError(ErrorCodes.Unauthorized, 'write key required: HTTP Basic with the write key as user name, a Bearer token, or "writeKey" in the body', { status: 401 });
    }
    const known = keys.lookup(key);
    if (!known) throw new LifecycleError(ErrorCodes.Forbidden, 'unknown write key', { status: 403 });
    req.ingestSource = known.source;
    req.ingestKey = known.digest;
  };

  /** Takes the request's events from its write key's budget (several keys of one source have one budget each). */
  const admit = (req: FastifyRequest, events: number) => {
    const d = limiter.take(req.ingestKey, events);
    if (!d.ok) {
      throw new LifecycleError(ErrorCodes.RateLimited, `rate limit of ${rateLimitPerSecond} events/s for this write key exceeded`, {
        status: 429,
        details: { retryAfterSeconds: Math.ceil(d.retryAfterMs / 1000), retryAfterMs: d.retryAfterMs },
      });
    }
  };

  const toMessage = (e: NormalisedEvent): OutgoingMessage => ({ key: e.userId, ...encodeWithHeader(eventCodec, e) });

  const store = async (source: string, calls: MessageType[], events: NormalisedEvent[]) => {
    await writer.write(events.map(toMessage));
    // One counter update per call type, not per event: labelled updates hash their labels.
    if (calls.length === 1) return eventsTotal.inc({ source, call: calls[0]! });
    const perCall = new Map<MessageType, number>();
    for (const c of calls) perCall.set(c, (perCall.get(c) ?? 0) + 1);
    for (const [call, n] of perCall) eventsTotal.inc({ source, call }, n);
  };

  // analytics.js (analytics-next) posts to one-letter paths (/v1/t, /v1/i, ..., /v1/b).
  for (const [type, url] of MESSAGE_TYPES.flatMap((t) => [[t, `/v1/${t}`], [t, `/v1/${t[0]}`]] as const)) {
    app.post(
      url,
      {
        bodyLimit: maxEventBytes,
        preValidation: authenticate,
        config: { swaggerTransform: documentRoute() },
        schema: {
          hide: url.length === 5,
          summary: `Segment ${type} call`,
          tags: ['segment'],
          consumes,
          body: MESSAGE_SCHEMAS[type],
          response: { 200: { ...Accepted, description: 'The event is stored in Kafka.' }, ...errorResponses },
        },
      },
      async (req, reply) => {
        const source = req.ingestSource;
        const receivedAt = clock();
        const event = normalise(type, req.body as SegmentMessage, { source, receivedAt });
        if (isRejection(event)) {
          rejectedTotal.inc({ code: event.code });
          return fail(reply, 400, event.code, event.message, event.field);
        }
        admit(req, 1);
        await store(source, [type], [event]);
        return { success: true, accepted: 1, rejected: [] };
      },
    );
  }

  for (const url of ['/v1/batch', '/v1/b']) app.post(
    url,
    {
      preValidation: authenticate,
      // Validated as any array, items one by one below; documented with each item's schema.
      config: { swaggerTransform: documentRoute(BatchDocSchema) },
      schema: {
        hide: url === '/v1/b',
        summary: 'Segment batch: many calls of any type in one request',
        description: 'Each message is validated on its own: valid messages are stored, invalid ones (including items that are not objects) are listed in `rejected` (status 202). When no message is valid the answer is 400.',
        tags: ['segment'],
        consumes,
        body: BatchSchema,
        response: {
          200: { ...Accepted, description: 'Every message is stored in Kafka.' },
          202: { ...Accepted, description: 'The valid messages are stored in Kafka; the others are listed in `rejected`.' },
          ...errorResponses,
        },
      },
    },
    async (req, reply) => {
      const source = req.ingestSource;
      const receivedAt = clock();
      const body = req.body as { batch: unknown[]; sentAt?: string; context?: Record<string, unknown> };
      const rejected: RejectedItem[] = [];
      const events: NormalisedEvent[] = [];
      const calls: MessageType[] = [];
      // No message can be larger than a body within the per-message limit; only bigger
      // bodies (or compressed ones, whose inflated size is unknown here) are measured per message.
      const contentLength = Number(req.headers['content-length']);
      const measureEach = req.headers['content-encoding'] !== undefined || !(contentLength <= maxEventBytes);
      // Defined once per request, not per message: a closure per message costs more than the rest of a valid message's checks.
      const rejectAt = (index: number, item: Record<string, unknown> | null, r: Rejection) => {
        const messageId = typeof item?.messageId === 'string' ? item.messageId : undefined;
        rejected.push(messageId ? { index, messageId, ...r } : { index, ...r });
        rejectedTotal.inc({ code: r.code });
      };
      body.batch.forEach((value, index) => {
        if (typeof value !== 'object' || value === null || Array.isArray(value)) {
          const got = value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`;
          return rejectAt(index, null, { code: ErrorCodes.BadRequest, field: `batch[${index}]`, message: `batch[${index}] must be an object (one message with a type), not ${got}` });
        }
        const item = value as Record<string, unknown>;
        const size = measureEach ? Buffer.byteLength(JSON.stringify(item)) : 0;
        if (size > maxEventBytes) {
          return rejectAt(index, item, { code: ErrorCodes.PayloadTooLarge, field: `batch[${index}]`, message: `message is ${size} bytes, larger than the ${maxEventBytes} bytes limit` });
        }
        const type = item.type;
        if (typeof type !== 'string' || !(MESSAGE_TYPES as readonly string[]).includes(type)) {
          return rejectAt(index, item, { code: ErrorCodes.BadRequest, field: `batch[${index}].type`, message: `batch[${index}].type must be one of ${MESSAGE_TYPES.join(', ')}` });
        }
        const validate = req.compileValidationSchema(MESSAGE_SCHEMAS[type as MessageType]);
        if (!validate(item)) {
          const { field, message } = describeValidation((validate.errors ?? []) as Parameters<typeof describeValidation>[0], `batch[${index}]`);
          return rejectAt(index, item, { code: ErrorCodes.BadRequest, field, message });
        }
        const event = normalise(type as MessageType, item as SegmentMessage, { source, receivedAt, batchSentAt: body.sentAt, batchContext: body.context });
        if (isRejection(event)) return rejectAt(index, item, { ...event, field: `batch[${index}].${event.field}`, message: `batch[${index}].${event.message}` });
        events.push(event);
        calls.push(type as MessageType);
      });
      if (events.length === 0 && rejected.length > 0) {
        return reply.code(400).send({
          success: false,
          code: ErrorCodes.BadRequest,
          message: `no valid message in the batch; first problem: ${rejected[0]!.message}`,
          field: rejected[0]!.field,
          rejected,
        });
      }
      admit(req, events.length);
      await store(source, calls, events);
      return reply.code(rejected.length > 0 ? 202 : 200).send({ success: true, accepted: events.length, rejected });
    },
  );

  app.get('/health', { schema: { hide: true } }, async (_req, reply) => {
    const ok = writer.healthy();
    return reply.code(ok ? 200 : 503).send({ ok, kafka: { inFlightEvents: writer.inFlight(), lastError: writer.lastError() } });
  });
  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
    return reply.header('content-type', m.contentType).send(await m.metrics());
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  // Requests still waiting for Kafka finish (or time out) before the process lets go of the producer.
  app.addHook('onClose', async () => {
    const limit = writerOptions.timeoutMs ?? DEFAULT_WRITER_OPTIONS.timeoutMs;
    await Promise.race([writer.drain(), new Promise((r) => setTimeout(r, limit).unref())]);
  });
  return app;
}
