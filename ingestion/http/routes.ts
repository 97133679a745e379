// The Segment routes: `/v1/{track,identify,page,screen,group,alias,batch}` and the
// one-letter paths of analytics.js, each taking a write key, validated by JSON Schema,
// normalised, and acknowledged only after Kafka stored the events.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { SwaggerTransform } from '@fastify/swagger';
import { Type } from '@sinclair/typebox';
import type { OutgoingMessage } from '../../platform/bus.ts';
import type { NormalisedEvent, WriteKeyKind } from '../../platform/contracts.ts';
import { encodeWithHeader, eventCodec } from '../../platform/avro.ts';
import { ErrorCodes, LifecycleError } from '../../platform/errors.ts';
import { describeValidation, errorResponse } from '../../platform/http.ts';
import { MAX_JSON_DEPTH } from '../../platform/json-depth.ts';
import type { Counter } from '../../platform/metrics.ts';
import { fail } from './errors.ts';
import type { EventWriter } from './event-writer.ts';
import type { RateLimiter } from './rate-limit.ts';
import { USER_HASH_FIELD, type ClientTrust } from './trust.ts';
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

export interface SegmentRoutesDeps {
  ingest: { maxEventBytes: number; rateLimitPerSecond: number };
  writer: Pick<EventWriter, 'write'>;
  limiter: RateLimiter;
  clock: () => number;
  /** The kind of the write key with this digest (the principal's id). */
  keyKind: (digest: string) => WriteKeyKind;
  trust: ClientTrust;
  metrics: {
    events: Counter<'source' | 'call'>;
    rejected: Counter<'code'>;
    droppedTraits: Counter<'source' | 'trait'>;
  };
}

interface RejectedItem extends Rejection {
  index: number;
  messageId?: string;
}

const Rejected = Type.Object({
  index: Type.Integer(),
  messageId: Type.Optional(Type.String()),
  code: Type.String(),
  field: Type.String(),
  message: Type.String(),
});
const Accepted = Type.Object({
  success: Type.Literal(true),
  accepted: Type.Integer({ description: 'Messages stored in Kafka.' }),
  rejected: Type.Array(Rejected, {
    description: 'Messages refused, by index in the batch, with the field at fault.',
  }),
});
// Both refusals that ask the client to come back say when (analytics-node waits for X-RateLimit-Reset).
const retryHeaders = {
  'Retry-After': { type: 'integer', minimum: 1, description: 'Seconds to wait before retrying.' },
  'X-RateLimit-Reset': {
    type: 'integer',
    description: 'Epoch milliseconds from which a retry may succeed (now + Retry-After).',
  },
};
// The refusals of a Segment route, with what each means here (the body is the server's
// one error schema, INGEST_ERROR_SCHEMA).
const errorResponses = {
  400: errorResponse(
    `Invalid message; \`field\` names the field at fault. A track whose event name is a type only the product makes (user_deleted, timer.fired, message_*, ...) is refused with code LC_ERR_RESERVED_EVENT. A message that nests objects and arrays deeper than ${MAX_JSON_DEPTH} levels (the message object is the first; a batch's envelope does not count) is refused before it is parsed.`,
  ),
  401: errorResponse(
    `No write key presented; or, for a client key of a source that verifies identities (LC_IDENTITY_SECRETS), no \`context.${USER_HASH_FIELD}\` with a userId, or an anonymous identify or alias.`,
  ),
  403: errorResponse(
    `Unknown write key; or a \`context.${USER_HASH_FIELD}\` that is not the HMAC of the userId.`,
  ),
  413: errorResponse(
    'Request or event larger than the configured limit (the limit applies to the inflated body).',
  ),
  415: errorResponse(
    'Content-Encoding other than gzip, deflate or identity, or a body that is neither application/json nor text/plain (LC_ERR_UNSUPPORTED_MEDIA_TYPE).',
  ),
  429: errorResponse(
    'Per-write-key event rate exceeded (a batch counts its events); retry after Retry-After.',
    retryHeaders,
  ),
  503: errorResponse(
    'Kafka is not acknowledging; nothing was reported stored, retry after Retry-After with the same messageIds.',
    retryHeaders,
  ),
};
/** What every Segment route takes besides its body (documentation; the preParsing hook enforces it). */
const requestHeaders = Type.Object({
  'content-encoding': Type.Optional(
    Type.Unsafe<string>({
      type: 'string',
      enum: ['gzip', 'deflate', 'identity'],
      description:
        'Compressed bodies are inflated first; the size limits apply to the inflated body. Any other encoding is a 415.',
    }),
  ),
});
/** Request bodies: JSON, or JSON sent as text/plain (browsers' sendBeacon). */
const consumes = ['application/json', 'text/plain'];
const documentRoute = (body?: unknown) =>
  (({ schema, url }) => ({
    schema: { ...schema, headers: requestHeaders, ...(body ? { body } : {}) },
    url,
  })) satisfies SwaggerTransform;

/** The batch routes: their bodies carry many messages in an envelope. */
export const BATCH_URLS: ReadonlySet<string> = new Set(['/v1/batch', '/v1/b']);

export function segmentRoutes(app: FastifyInstance, deps: SegmentRoutesDeps): void {
  const { maxEventBytes, rateLimitPerSecond } = deps.ingest;
  const { writer, limiter, clock, trust } = deps;
  const {
    events: eventsTotal,
    rejected: rejectedTotal,
    droppedTraits: droppedTraitsTotal,
  } = deps.metrics;
  /** The write key the kit checked: its source names the events, its digest is the rate limit's bucket. */
  const keyOf = (req: FastifyRequest) => req.principal!;

  /** Takes the request's events from its write key's budget (several keys of one source have one budget each). */
  const admit = (req: FastifyRequest, events: number) => {
    const d = limiter.take(keyOf(req).id, events);
    if (!d.ok) {
      throw new LifecycleError(
        ErrorCodes.RateLimited,
        `rate limit of ${rateLimitPerSecond} events/s for this write key exceeded`,
        {
          status: 429,
          details: {
            retryAfterSeconds: Math.ceil(d.retryAfterMs / 1000),
            retryAfterMs: d.retryAfterMs,
          },
        },
      );
    }
  };

  const toMessage = (e: NormalisedEvent): OutgoingMessage => ({
    key: e.userId,
    ...encodeWithHeader(eventCodec, e),
  });

  /**
   * Counts the protected traits a client key's messages carried (once they are stored) and
   * logs them once per request, by name: the values are personal data and never logged.
   */
  const reportDropped = (source: string, dropped: string[], messages: number) => {
    if (dropped.length === 0) return;
    const perTrait = new Map<string, number>();
    for (const t of dropped) perTrait.set(t, (perTrait.get(t) ?? 0) + 1);
    for (const [trait, n] of perTrait) droppedTraitsTotal.inc({ source, trait }, n);
    app.log.warn(
      { source, kind: 'client', traits: [...perTrait.keys()], dropped: dropped.length, messages },
      'protected traits dropped: a client write key may not set contact or routing traits (send them with a server key)',
    );
  };

  const store = async (source: string, calls: MessageType[], events: NormalisedEvent[]) => {
    await writer.write(events.map(toMessage));
    // One counter update per call type, not per event: labelled updates hash their labels.
    if (calls.length === 1) return eventsTotal.inc({ source, call: calls[0]! });
    const perCall = new Map<MessageType, number>();
    for (const c of calls) perCall.set(c, (perCall.get(c) ?? 0) + 1);
    for (const [call, n] of perCall) eventsTotal.inc({ source, call }, n);
  };

  // analytics.js (analytics-next) posts to one-letter paths (/v1/t, /v1/i, ..., /v1/b).
  for (const [type, url] of MESSAGE_TYPES.flatMap(
    (t) =>
      [
        [t, `/v1/${t}`],
        [t, `/v1/${t[0]}`],
      ] as const,
  )) {
    app.post(
      url,
      {
        bodyLimit: maxEventBytes,
        config: { auth: 'writeKey', swaggerTransform: documentRoute() },
        schema: {
          hide: url.length === 5,
          operationId: type,
          summary: `Segment ${type} call`,
          tags: ['segment'],
          consumes,
          body: MESSAGE_SCHEMAS[type],
          response: {
            200: { ...Accepted, description: 'The event is stored in Kafka.' },
            ...errorResponses,
          },
        },
      },
      async (req, reply) => {
        const { id, name: source } = keyOf(req);
        const kind = deps.keyKind(id);
        const receivedAt = clock();
        const msg = req.body as SegmentMessage;
        const event = normalise(type, msg, { source, kind, receivedAt });
        const screened = isRejection(event) ? event : trust.screen(source, kind, type, msg, event);
        if (isRejection(screened)) {
          rejectedTotal.inc({ code: screened.code });
          return fail(
            reply,
            screened.status ?? 400,
            screened.code,
            screened.message,
            screened.field,
          );
        }
        admit(req, 1);
        await store(source, [type], [event as NormalisedEvent]);
        reportDropped(source, screened, 1);
        return { success: true, accepted: 1, rejected: [] };
      },
    );
  }

  for (const url of BATCH_URLS)
    app.post(
      url,
      {
        // Validated as any array, items one by one below; documented with each item's schema.
        config: { auth: 'writeKey', swaggerTransform: documentRoute(BatchDocSchema) },
        schema: {
          hide: url === '/v1/b',
          operationId: 'batch',
          summary: 'Segment batch: many calls of any type in one request',
          description:
            'Each message is validated on its own: valid messages are stored, invalid ones (including items that are not objects) are listed in `rejected` (status 202). When no message is valid the answer is 400.',
          tags: ['segment'],
          consumes,
          body: BatchSchema,
          response: {
            200: { ...Accepted, description: 'Every message is stored in Kafka.' },
            202: {
              ...Accepted,
              description:
                'The valid messages are stored in Kafka; the others are listed in `rejected`.',
            },
            ...errorResponses,
          },
        },
      },
      async (req, reply) => {
        const { id, name: source } = keyOf(req);
        const kind = deps.keyKind(id);
        const receivedAt = clock();
        const dropped: string[] = [];
        const body = req.body as {
          batch: unknown[];
          sentAt?: string;
          context?: Record<string, unknown>;
        };
        const rejected: RejectedItem[] = [];
        const events: NormalisedEvent[] = [];
        const calls: MessageType[] = [];
        // No message can be larger than a body within the per-message limit; only bigger
        // bodies (or compressed ones, whose inflated size is unknown here) are measured per message.
        const contentLength = Number(req.headers['content-length']);
        const measureEach =
          req.headers['content-encoding'] !== undefined || !(contentLength <= maxEventBytes);
        // Defined once per request, not per message: a closure per message costs more than the rest of a valid message's checks.
        const rejectAt = (index: number, item: Record<string, unknown> | null, r: Rejection) => {
          const messageId = typeof item?.messageId === 'string' ? item.messageId : undefined;
          rejected.push(messageId ? { index, messageId, ...r } : { index, ...r });
          rejectedTotal.inc({ code: r.code });
        };
        body.batch.forEach((value, index) => {
          if (typeof value !== 'object' || value === null || Array.isArray(value)) {
            const got =
              value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`;
            return rejectAt(index, null, {
              code: ErrorCodes.BadRequest,
              field: `batch[${index}]`,
              message: `batch[${index}] must be an object (one message with a type), not ${got}`,
            });
          }
          const item = value as Record<string, unknown>;
          const size = measureEach ? Buffer.byteLength(JSON.stringify(item)) : 0;
          if (size > maxEventBytes) {
            return rejectAt(index, item, {
              code: ErrorCodes.PayloadTooLarge,
              field: `batch[${index}]`,
              message: `message is ${size} bytes, larger than the ${maxEventBytes} bytes limit`,
            });
          }
          const type = item.type;
          if (typeof type !== 'string' || !(MESSAGE_TYPES as readonly string[]).includes(type)) {
            return rejectAt(index, item, {
              code: ErrorCodes.BadRequest,
              field: `batch[${index}].type`,
              message: `batch[${index}].type must be one of ${MESSAGE_TYPES.join(', ')}`,
            });
          }
          const validate = req.compileValidationSchema(MESSAGE_SCHEMAS[type as MessageType]);
          if (!validate(item)) {
            const { field, message } = describeValidation(
              (validate.errors ?? []) as Parameters<typeof describeValidation>[0],
              `batch[${index}]`,
            );
            return rejectAt(index, item, { code: ErrorCodes.BadRequest, field, message });
          }
          const event = normalise(type as MessageType, item as SegmentMessage, {
            source,
            kind,
            receivedAt,
            batchSentAt: body.sentAt,
            batchContext: body.context,
          });
          const screened = isRejection(event)
            ? event
            : trust.screen(source, kind, type as MessageType, item as SegmentMessage, event);
          if (isRejection(screened))
            return rejectAt(index, item, {
              ...screened,
              field: `batch[${index}].${screened.field}`,
              message: `batch[${index}].${screened.message}`,
            });
          for (const t of screened) dropped.push(t);
          events.push(event as NormalisedEvent);
          calls.push(type as MessageType);
        });
        if (events.length === 0 && rejected.length > 0) {
          // A batch refused whole for want of identity says so with 401/403, as a single call would.
          return reply.code(rejected[0]!.status ?? 400).send({
            success: false,
            code: ErrorCodes.BadRequest,
            message: `no valid message in the batch; first problem: ${rejected[0]!.message}`,
            field: rejected[0]!.field,
            rejected,
          });
        }
        admit(req, events.length);
        await store(source, calls, events);
        reportDropped(source, dropped, events.length);
        return reply
          .code(rejected.length > 0 ? 202 : 200)
          .send({ success: true, accepted: events.length, rejected });
      },
    );
}
