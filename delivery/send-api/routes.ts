// The send API: transactional and one-off messages from the product's backend (staff role
// service; admin):
//   POST /v1/send         one message  -> 202 {sends: [{sendId, userId, channels, status}]}
//   POST /v1/send/batch   {messages: [...]} up to 1000 -> 202 with one result per message
// Each message becomes a send command on the sends topic (`priority: high`: the high-priority
// sends topic, read by delivery apart from the rules' backlog) and goes through the same
// policy chain as a rule's sends: suppression, consent for non-transactional categories,
// frequency caps, quiet hours. The answer comes only once Kafka acknowledged the publish.
// An `Idempotency-Key` header binds the request for 24 hours (./idempotency.ts): a retry gets
// the first answer again, a different request with the key is refused.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { SwaggerTransform } from '@fastify/swagger';
import type { Logger } from 'pino';
import { encodeWithHeader, sendCodec } from '../../platform/avro.ts';
import type { OutgoingMessage, Publisher } from '../../platform/bus.ts';
import { topics as topicNames, type SendCommand } from '../../platform/contracts.ts';
import { ErrorCodes, errorMessage, LifecycleError } from '../../platform/errors.ts';
import { ERROR_SCHEMA_ID, errorResponse, requireHttpKit } from '../../platform/http.ts';
import type { UserDirectory } from '../../platform/users.ts';
import type { MessageTypes } from '../../platform/message-types.ts';
import type { IdempotencyStore } from './idempotency.ts';
import { planSend, type RequestIdentity, type TemplateRegistry } from './plan.ts';
import {
  checkIdempotencyKey,
  checkSendMessage,
  isRefusal,
  MAX_BATCH_BODY_BYTES,
  MAX_BATCH_MESSAGES,
  PRIORITY_VALUE,
  requestFingerprint,
  SendMessageSchema,
  type CheckedMessage,
  type SendRefusal,
} from './request.ts';

/** Longest a request waits for Kafka's acknowledgement before it is answered 503. */
export const SEND_PUBLISH_TIMEOUT_MS = 10_000;
/** The header that says an answer is the stored one of an earlier request with the same key. */
export const REPLAYED_HEADER = 'idempotent-replayed';

export interface SendRoutesOptions {
  /** Publishes send commands (Kafka with acks=all in production, the in-memory bus in the demo). */
  publisher: Publisher;
  topicPrefix: string;
  /** LC_SEND_MAX_DATA_BYTES. */
  maxDataBytes: number;
  /** The templates delivery renders (the API process's renderer). */
  templates: TemplateRegistry;
  /** Users as the engine sees them: the traits a send to a userId goes with. */
  users: UserDirectory;
  idempotency: IdempotencyStore;
  /** The declared message types a message may name; absent: a named type is not checked here (delivery decides). */
  messageTypes?: MessageTypes;
  logger: Logger;
  now?: () => number;
}

const tags = ['send'];

const Queued = {
  type: 'object',
  properties: {
    index: { type: 'integer', description: 'Position of the message in the batch.' },
    sendId: {
      type: 'string',
      description:
        "The send: its outcomes on lifecycle.deliveries, its row in the sends table, its emails' Message-ID carry it.",
    },
    userId: {
      type: 'string',
      description:
        'The recipient: the userId sent to, or the recipient id of a raw address (`recipient:<sha256>`, under which its preferences and suppressions are kept).',
    },
    channels: { type: 'array', items: { type: 'string' } },
    status: { type: 'string', enum: ['queued', 'rejected'] },
    code: { type: 'string', description: 'Rejected: the error code.' },
    message: { type: 'string', description: 'Rejected: what to fix.' },
    field: { type: 'string', description: 'Rejected: the field at fault.' },
  },
} as const;

const SendsAnswer = {
  type: 'object',
  properties: { sends: { type: 'array', items: Queued } },
} as const;

const replayedHeader = {
  [REPLAYED_HEADER]: {
    type: 'string',
    description:
      '`true` when this is the stored answer of an earlier request with the same Idempotency-Key.',
  },
} as const;

const IdempotencyHeader = {
  type: 'object',
  properties: {
    'idempotency-key': {
      type: 'string',
      minLength: 1,
      maxLength: 255,
      description:
        'Makes the request safe to retry for 24 hours: a retry with the same body gets the first answer (same sendIds, header `idempotent-replayed: true`) and sends nothing more; a different body with the key is refused (422); a retry while the first is still in progress gets 409. Keys are per credential.',
    },
  },
} as const;

/** The documented body and headers; the route itself checks them (unknown fields are refused, not dropped). */
const documentRoute = (body: unknown) =>
  (({ schema, url }) => ({
    schema: { ...schema, headers: IdempotencyHeader, body },
    url,
  })) satisfies SwaggerTransform;

const BatchDocSchema = {
  type: 'object',
  required: ['messages'],
  additionalProperties: false,
  properties: {
    messages: {
      type: 'array',
      minItems: 1,
      maxItems: MAX_BATCH_MESSAGES,
      items: SendMessageSchema,
      description: `Up to ${MAX_BATCH_MESSAGES} messages, each as POST /v1/send takes one.`,
    },
  },
};

const failureResponses = (batch: boolean) => {
  // A batch with no valid message answers the first refusal's code and status, plus why each
  // message was refused: the coded error, extended.
  const rejected = (description: string) =>
    batch
      ? {
          description,
          content: {
            'application/json': {
              schema: {
                allOf: [
                  { $ref: `${ERROR_SCHEMA_ID}#` },
                  {
                    type: 'object',
                    properties: {
                      sends: {
                        type: 'array',
                        items: Queued,
                        description: 'When no message was accepted: why each was rejected.',
                      },
                    },
                  },
                ],
              },
            },
          },
        }
      : errorResponse(description);
  return {
    400: rejected(
      `A malformed message (\`field\` names the field): no recipient, both userId and to, an unknown field, a category other than transactional or marketing, a priority other than high or normal, an address trait in data.user, an invalid address or Idempotency-Key${batch ? `; or a batch without 1 to ${MAX_BATCH_MESSAGES} messages, or none valid` : ''}.`,
    ),
    409: errorResponse(
      'LC_ERR_IDEMPOTENCY_IN_PROGRESS: a request with this Idempotency-Key is still in progress; retry shortly with the same key.',
    ),
    413: rejected(
      "LC_ERR_PAYLOAD_TOO_LARGE: a message's data is larger than LC_SEND_MAX_DATA_BYTES, or the body is too large.",
    ),
    422: rejected(
      'LC_ERR_UNKNOWN_TEMPLATE (with close names), LC_ERR_TEMPLATE_CHANNEL (the channels the template has), LC_ERR_UNKNOWN_USER (identify the user first), or LC_ERR_IDEMPOTENCY_MISMATCH (the key was used for another request).',
    ),
    503: errorResponse(
      'LC_ERR_KAFKA_PUBLISH / LC_ERR_KAFKA_UNAVAILABLE: Kafka did not acknowledge; nothing is reported queued. Retry with the same Idempotency-Key: the retry cannot send twice.',
    ),
  };
};

type Result =
  | { index: number; status: 'queued'; sendId: string; userId: string; channels: string[] }
  | ({ index: number; status: 'rejected' } & Omit<SendRefusal, 'status'>);

/** Runs `fn` over items, `limit` at a time, keeping their order. */
async function mapOrdered<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const run = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, run));
  return out;
}

export async function sendRoutes(app: FastifyInstance, opts: SendRoutesOptions): Promise<void> {
  requireHttpKit(app);
  const now = opts.now ?? Date.now;
  const topics = topicNames(opts.topicPrefix);
  const log = opts.logger.child({ component: 'send-api' });
  const service = { roles: ['service'] } as const;

  /** Publishes every send, each to its priority's topic, and resolves once Kafka acknowledged all. */
  async function publish(sends: SendCommand[]): Promise<void> {
    const byTopic = new Map<string, OutgoingMessage[]>();
    for (const s of sends) {
      const topic = s.priority === PRIORITY_VALUE.high ? topics.sendsHigh : topics.sends;
      const list = byTopic.get(topic) ?? [];
      list.push({ key: s.userId, ...encodeWithHeader(sendCodec, s) });
      byTopic.set(topic, list);
    }
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new LifecycleError(
              ErrorCodes.KafkaPublish,
              `Kafka did not acknowledge the sends within ${SEND_PUBLISH_TIMEOUT_MS / 1000} s; nothing is reported queued: retry with the same Idempotency-Key (a retry cannot send twice)`,
              { retriable: true, status: 503 },
            ),
          ),
        SEND_PUBLISH_TIMEOUT_MS,
      );
    });
    try {
      await Promise.race([
        Promise.all(
          [...byTopic].map(([topic, messages]) => opts.publisher.publish(topic, messages)),
        ),
        deadline,
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * One request, single or batch: check the messages, claim the Idempotency-Key, plan each
   * message (templates, the user's traits), publish the accepted ones, record the change,
   * store the answer under the key, answer.
   */
  async function handle(
    req: FastifyRequest,
    reply: FastifyReply,
    route: string,
    items: unknown[],
    batch: boolean,
  ) {
    const checkedKey = checkIdempotencyKey(req.headers['idempotency-key']);
    if (isRefusal(checkedKey))
      throw new LifecycleError(checkedKey.code, checkedKey.message, {
        details: { field: checkedKey.field },
      });
    const key: string | null = checkedKey;
    const principal = req.principal!.id;
    const checked = items.map((item, i) =>
      checkSendMessage(item, {
        maxDataBytes: opts.maxDataBytes,
        prefix: batch ? `messages[${i}].` : '',
        ...(opts.messageTypes ? { messageTypes: opts.messageTypes } : {}),
      }),
    );
    if (!batch && isRefusal(checked[0]))
      throw new LifecycleError(checked[0].code, checked[0].message, {
        details: { field: checked[0].field },
      });

    const at = now();
    let token: string | null = null;
    if (key !== null) {
      const begun = await opts.idempotency.begin(
        principal,
        key,
        requestFingerprint(route, req.body),
        at,
      );
      switch (begun.state) {
        case 'replay':
          return reply
            .header(REPLAYED_HEADER, 'true')
            .code(begun.answer.status)
            .send(begun.answer.body);
        case 'mismatch':
          throw new LifecycleError(
            ErrorCodes.IdempotencyMismatch,
            `Idempotency-Key "${key}" was used within the last 24 hours for another request (a different body or route): a retry must send the same body; a new request needs a new key`,
            { details: { field: 'Idempotency-Key' } },
          );
        case 'in_progress':
          throw new LifecycleError(
            ErrorCodes.IdempotencyInProgress,
            `a request with Idempotency-Key "${key}" is still in progress; retry shortly with the same key to get its answer`,
            { details: { field: 'Idempotency-Key' } },
          );
        case 'started':
          token = begun.token;
      }
    }
    try {
      const identity: RequestIdentity = { principal, idempotencyKey: key, requestId: req.id };
      // The engine's state is read per user; a batch reads a few users at a time.
      const planned = await mapOrdered(checked, 16, async (c, i) =>
        isRefusal(c)
          ? c
          : planSend(
              c as CheckedMessage,
              i,
              identity,
              { templates: opts.templates, users: opts.users },
              at,
              batch ? `messages[${i}].` : '',
            ),
      );
      const results: Result[] = planned.map((p, index) =>
        isRefusal(p)
          ? { index, status: 'rejected', code: p.code, message: p.message, field: p.field }
          : {
              index,
              status: 'queued',
              sendId: p.sendId,
              userId: p.userId,
              channels: [...p.channels],
            },
      );
      const sends = planned.filter((p): p is SendCommand => !isRefusal(p));
      if (sends.length === 0) {
        // Nothing was sent, so nothing is kept under the key: the caller fixes the request and sends it again.
        const first = planned.find(isRefusal)!;
        if (!batch)
          throw new LifecycleError(first.code, first.message, { details: { field: first.field } });
        await abandon();
        return reply.code(first.status).send({
          code: first.code,
          message: `no message of the batch was accepted; ${first.message}`,
          field: first.field,
          sends: results,
        });
      }
      await publish(sends);
      await req.audit(
        batch
          ? {
              action: 'send.batch',
              target: `send-batch:${sends[0]!.triggeredBy.eventId}`,
              after: { sends: sends.map(summary), rejected: results.length - sends.length },
            }
          : {
              action: 'send.create',
              target: `send:${sends[0]!.sendId}`,
              after: summary(sends[0]!),
            },
      );
      const body = batch
        ? { sends: results }
        : { sends: results.map(({ index: _index, ...r }) => r) };
      if (token !== null)
        await opts.idempotency.complete(principal, key!, token, { status: 202, body });
      return reply.code(202).send(body);
    } catch (err) {
      await abandon();
      throw err;
    }

    async function abandon(): Promise<void> {
      if (token === null) return;
      const t = token;
      token = null;
      await opts.idempotency
        .abandon(principal, key!, t)
        .catch((err: unknown) =>
          log.warn(
            { err: errorMessage(err) },
            'could not release an Idempotency-Key; it is usable again when its lease ends',
          ),
        );
    }
  }

  /** What the audit log keeps of a send: who to, what, how; never the data (personal, and kept for good). */
  const summary = (s: SendCommand) => ({
    sendId: s.sendId,
    userId: s.userId,
    template: s.template,
    channels: s.channels,
    category: s.category,
    priority: s.priority === PRIORITY_VALUE.high ? 'high' : 'normal',
  });

  app.post(
    '/v1/send',
    {
      bodyLimit: opts.maxDataBytes + 64 * 1024,
      config: { auth: service, swaggerTransform: documentRoute(SendMessageSchema) },
      schema: {
        tags,
        summary: 'Send one message (transactional or one-off) to a user or a raw address',
        description:
          'The message goes through the same policy chain as rule sends (suppression; consent for marketing; frequency caps and quiet hours for non-transactional sends) and lands in analytics with ruleId `api` and origin `api:<credential>`. Answered 202 once Kafka acknowledged it; whether it was sent is on lifecycle.deliveries (and the deliveries table) under its sendId.',
        body: { type: 'object' },
        response: {
          202: {
            ...SendsAnswer,
            description: 'Queued: Kafka holds the send.',
            headers: replayedHeader,
          },
          ...failureResponses(false),
        },
      },
    },
    async (req, reply) => handle(req, reply, 'POST /v1/send', [req.body], false),
  );

  app.post(
    '/v1/send/batch',
    {
      bodyLimit: Math.max(MAX_BATCH_BODY_BYTES, opts.maxDataBytes + 64 * 1024),
      config: { auth: service, swaggerTransform: documentRoute(BatchDocSchema) },
      schema: {
        tags,
        summary: `Send up to ${MAX_BATCH_MESSAGES} messages in one request`,
        description: `Each message is checked on its own: the valid ones are published (in one publish per topic) and answered \`queued\`, the others \`rejected\` with code, message and field, in the order sent (202). When none is valid nothing is sent and the answer has the first rejection's status. Bodies up to ${MAX_BATCH_BODY_BYTES / 1024 / 1024} MB. With an Idempotency-Key, message i gets the same sendId on every retry.`,
        body: { type: 'object' },
        response: {
          202: {
            ...SendsAnswer,
            description:
              'At least one message is queued; `sends` has one result per message, by index.',
            headers: replayedHeader,
          },
          ...failureResponses(true),
        },
      },
    },
    async (req, reply) => {
      const body = req.body as Record<string, unknown>;
      const extra = Object.keys(body).filter((k) => k !== 'messages');
      if (extra.length > 0)
        throw new LifecycleError(
          ErrorCodes.BadRequest,
          `unknown field ${extra[0]}: a batch is {"messages": [...]}`,
          {
            details: { field: extra[0] },
          },
        );
      const messages = body.messages;
      if (!Array.isArray(messages) || messages.length === 0 || messages.length > MAX_BATCH_MESSAGES)
        throw new LifecycleError(
          ErrorCodes.BadRequest,
          `messages must be an array of 1 to ${MAX_BATCH_MESSAGES} messages${Array.isArray(messages) ? ` (got ${messages.length}): split larger batches` : ''}`,
          { details: { field: 'messages' } },
        );
      return handle(req, reply, 'POST /v1/send/batch', messages, true);
    },
  );
}
