// The message log over HTTP, for staff (roles support and marketer read; support resends):
//   GET  /v1/messages?userId=&to=&sendId=&since=&cursor=&limit=   {messages, next}: newest first
//   GET  /v1/messages/:sendId                                    one send, every channel's content and history
//   POST /v1/messages/:sendId/resend  {channel?}                 a new send of the logged message (202)
// A resend is a new send command on the sends topic: its sendId is derived from the original
// and the request's Idempotency-Key (else its request id), so a retried request is the same
// send and delivery sends it once; it goes through the whole policy chain, consent and
// suppression included, and the answer says when the chain will refuse it. Every resend is
// in the audit log, without what the message said.
import type { FastifyInstance } from 'fastify';
import { encodeWithHeader, sendCodec } from '../platform/avro.ts';
import type { Publisher } from '../platform/bus.ts';
import { CHANNELS, type Channel, type SendCommand } from '../platform/contracts.ts';
import { ErrorCodes, LifecycleError } from '../platform/errors.ts';
import { errorResponse, requireHttpKit } from '../platform/http.ts';
import {
  listMessages,
  messageDetail,
  resendCommand,
  type MessageDetail,
  type MessageListFilter,
} from './messages.ts';
import type { AnalyticsStore } from './store.ts';

export interface MessageRoutesOptions {
  /** The analytics store and the database of the tables (opened on first use). */
  analytics: () => Promise<{ store: AnalyticsStore; database: string }>;
  /** Publishes resends. */
  publisher: Publisher;
  /** The sends topic (`<prefix>.sends`). */
  sendsTopic: string;
  /** LC_MESSAGE_BODY_TTL_DAYS. */
  bodyTtlDays: number;
  /**
   * What the policy chain would decide about a send now (delivery's suppression and consent),
   * when this server can tell: the reason it would be suppressed, or null.
   */
  policyPreview?: (send: SendCommand, channel: Channel) => Promise<string | null>;
  now?: () => number;
}

/**
 * Support reads and resends; marketers read: looking up what was sent to whom is part of
 * managing templates and campaigns (DESIGN.md, "Who uses it"), while sending a message again
 * to a person is a support decision. Admin is admitted by every staff route.
 */
const readers = { auth: { roles: ['support', 'marketer'] } } as const;
const resenders = { auth: { roles: ['support'] } } as const;
const tags = ['messages'];

const nullableString = { type: 'string', nullable: true } as const;
const nullableInteger = { type: 'integer', nullable: true } as const;
const FreeObject = { type: 'object', additionalProperties: true } as const;

const MessageSummarySchema = {
  type: 'object',
  properties: {
    sendId: { type: 'string' },
    channel: { type: 'string', enum: [...CHANNELS] },
    userId: { type: 'string' },
    ruleId: { type: 'string', description: 'The rule that made the send (or `api`, ...).' },
    campaignId: nullableString,
    category: { type: 'string' },
    template: { type: 'string' },
    templateVersion: { ...nullableInteger, description: 'Null: a template without versions.' },
    locale: nullableString,
    to: { ...nullableString, description: 'Where it went; null when it was not sent.' },
    subject: { ...nullableString, description: 'Null past the body TTL, or not an email.' },
    origin: { ...nullableString, description: '`resend:<sendId>`, `api:<keyId>`, ...' },
    holdout: { type: 'boolean' },
    createdAt: { type: 'integer', description: 'When the send was created (epoch ms).' },
    sentAt: { ...nullableInteger, description: 'When the provider accepted it (epoch ms).' },
    status: { ...nullableString, description: 'The latest status.' },
    reason: { ...nullableString, description: 'Why (a suppression, an error, a clicked link).' },
  },
} as const;

const HistorySchema = {
  type: 'object',
  properties: {
    status: { type: 'string' },
    ts: { type: 'integer' },
    reason: nullableString,
    provider: nullableString,
    attempt: { type: 'integer' },
  },
} as const;

const ChannelMessageSchema = {
  type: 'object',
  properties: {
    channel: { type: 'string', enum: [...CHANNELS] },
    status: nullableString,
    reason: nullableString,
    to: nullableString,
    templateVersion: nullableInteger,
    locale: nullableString,
    sentAt: nullableInteger,
    content: {
      type: 'object',
      nullable: true,
      description:
        'What the message said, as sent (links rewritten); null when it was not sent or its body is past LC_MESSAGE_BODY_TTL_DAYS.',
      properties: {
        subject: nullableString,
        html: nullableString,
        text: nullableString,
        other: { ...FreeObject, description: 'Push, in-app, SMS or webhook content.' },
      },
    },
    data: {
      ...FreeObject,
      nullable: true,
      description: 'The personalisation data it was rendered with (what a resend renders again).',
    },
    omitted: { type: 'array', items: { type: 'string' } },
    bodyExpiresAt: nullableInteger,
    bodyExpired: { type: 'boolean' },
    history: {
      type: 'array',
      items: HistorySchema,
      description: 'Every status, oldest first: queued, sent, delivered, opened, clicked, ...',
    },
  },
} as const;

const MessageDetailSchema = {
  type: 'object',
  properties: {
    sendId: { type: 'string' },
    userId: { type: 'string' },
    ruleId: { type: 'string' },
    campaignId: nullableString,
    category: { type: 'string' },
    template: { type: 'string' },
    priority: nullableInteger,
    holdout: { type: 'boolean' },
    createdAt: nullableInteger,
    origin: nullableString,
    channels: { type: 'array', items: ChannelMessageSchema },
  },
} as const;

/** `since`: an ISO time or epoch milliseconds. */
function timeParam(value: string | undefined, field: string): number | undefined {
  if (value === undefined) return undefined;
  const ms = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isFinite(ms) || ms < 0)
    throw new LifecycleError(
      ErrorCodes.BadRequest,
      `${field} "${value}" is not an ISO time or epoch milliseconds`,
      { details: { field } },
    );
  return ms;
}

/** A store failure: 503 while ClickHouse is unreachable (a retry can help), else 500. */
function storeFailure(err: unknown): unknown {
  if (!(err instanceof LifecycleError) || err.code !== ErrorCodes.Analytics) return err;
  return new LifecycleError(err.code, err.message, {
    status: err.retriable ? 503 : 500,
    retriable: err.retriable,
    cause: err,
  });
}

const notFound = (sendId: string) =>
  new LifecycleError(
    ErrorCodes.NotFound,
    `no message with sendId ${sendId} in the message log (search by the beginning of one: GET /v1/messages?sendId=...)`,
  );

/** The channel to resend: the one asked for, else the one channel the message was sent on. */
function channelToResend(original: MessageDetail, asked: Channel | undefined): Channel {
  if (asked !== undefined) return asked;
  const sent = original.channels.filter((c) => c.bodyExpiresAt !== null).map((c) => c.channel);
  if (sent.length === 1) return sent[0]!;
  if (sent.length === 0) return original.channels[0]?.channel ?? 'email';
  throw new LifecycleError(
    ErrorCodes.BadRequest,
    `message ${original.sendId} was sent on ${sent.join(', ')}: say which to resend in \`channel\``,
    { details: { field: 'channel' } },
  );
}

export async function messageRoutes(
  app: FastifyInstance,
  opts: MessageRoutesOptions,
): Promise<void> {
  requireHttpKit(app);
  const now = opts.now ?? Date.now;
  const ttl = () => ({ bodyTtlDays: opts.bodyTtlDays, now: now() });
  const withStore = async <T>(
    fn: (store: AnalyticsStore, database: string) => Promise<T>,
  ): Promise<T> => {
    try {
      const { store, database } = await opts.analytics();
      return await fn(store, database);
    } catch (err) {
      throw storeFailure(err);
    }
  };

  app.get<{
    Querystring: {
      userId?: string;
      to?: string;
      sendId?: string;
      since?: string;
      cursor?: string;
      limit?: number;
    };
  }>(
    '/v1/messages',
    {
      config: readers,
      schema: {
        tags,
        summary: 'Messages of a user, to an address, or by sendId: newest first, a page at a time',
        description:
          'One item per send and channel, sent or not (a send the policy chain stopped shows its status and reason). Give at least one of userId, to, sendId. `to` matches the address a message went to (email: any case). `sendId` matches a sendId or its beginning. `next` is the cursor of the following page; messages arriving meanwhile do not shift it.',
        querystring: {
          type: 'object',
          properties: {
            userId: { type: 'string', minLength: 1, maxLength: 500 },
            to: { type: 'string', minLength: 1, maxLength: 500 },
            sendId: { type: 'string', minLength: 1, maxLength: 500 },
            since: {
              type: 'string',
              description: 'Sends created from then: ISO time or epoch ms.',
            },
            cursor: { type: 'string', maxLength: 2000 },
            limit: { type: 'integer', minimum: 1, maximum: 100, default: 20 },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              messages: { type: 'array', items: MessageSummarySchema },
              next: { ...nullableString, description: 'Cursor of the next page; null at the end.' },
            },
          },
          400: errorResponse(
            'A bad filter: say what is wrong with userId, to, sendId, since, cursor or limit.',
          ),
        },
      },
    },
    async (req) => {
      const q = req.query;
      const filter: MessageListFilter = { limit: q.limit ?? 20 };
      if (q.userId !== undefined) filter.userId = q.userId;
      if (q.to !== undefined) filter.to = q.to.trim();
      if (q.sendId !== undefined) filter.sendId = q.sendId;
      if (q.cursor !== undefined) filter.cursor = q.cursor;
      const since = timeParam(q.since, 'since');
      if (since !== undefined) filter.since = since;
      return withStore((store, database) => listMessages(store, database, filter, ttl()));
    },
  );

  app.get<{ Params: { sendId: string } }>(
    '/v1/messages/:sendId',
    {
      config: readers,
      schema: {
        tags,
        summary: 'One send: what each channel got, where it went, and every status since',
        description:
          "Content (subject, HTML, text; other channels in `other`) and data as sent, kept LC_MESSAGE_BODY_TTL_DAYS days; after that `content` and `data` are null and `bodyExpired` is true, the rest stays. `history` has delivery's outcomes and the tracker's opens and clicks.",
        params: {
          type: 'object',
          required: ['sendId'],
          properties: { sendId: { type: 'string', minLength: 1, maxLength: 500 } },
        },
        response: {
          200: MessageDetailSchema,
          404: errorResponse('No message with this sendId in the message log.'),
        },
      },
    },
    async (req) => {
      const detail = await withStore((store, database) =>
        messageDetail(store, database, req.params.sendId, ttl()),
      );
      if (!detail) throw notFound(req.params.sendId);
      return detail;
    },
  );

  app.post<{ Params: { sendId: string }; Body: { channel?: Channel } | undefined }>(
    '/v1/messages/:sendId/resend',
    {
      config: resenders,
      schema: {
        tags,
        summary: 'Send a logged message again, as a new send through the policy chain',
        description:
          "A new send command: the same template at the logged version, the logged data, the original's category, rule and campaign, `origin: resend:<sendId>`. Its sendId is derived from the original and the Idempotency-Key header (else the request id): the same request retried with the same key is the same send and is sent once. It goes through the policy chain like any send: a marketing message to a user who has unsubscribed since, or an address that bounced, is refused there; `policy` says so when it can be known now. Only a message delivery recorded as sent, and younger than LC_MESSAGE_BODY_TTL_DAYS, can be resent (409 otherwise).",
        params: {
          type: 'object',
          required: ['sendId'],
          properties: { sendId: { type: 'string', minLength: 1, maxLength: 500 } },
        },
        headers: {
          type: 'object',
          properties: {
            'idempotency-key': {
              type: 'string',
              minLength: 1,
              maxLength: 200,
              description: 'The same key makes a retried resend the same send (sent once).',
            },
          },
        },
        body: {
          type: 'object',
          nullable: true,
          additionalProperties: false,
          properties: {
            channel: {
              type: 'string',
              enum: [...CHANNELS],
              description: 'Which channel to resend; needed when the message went out on several.',
            },
          },
        },
        response: {
          202: {
            type: 'object',
            properties: {
              sendId: { type: 'string', description: 'The new send.' },
              originalSendId: { type: 'string' },
              channel: { type: 'string', enum: [...CHANNELS] },
              templateVersion: nullableInteger,
              category: { type: 'string' },
              policy: {
                type: 'object',
                nullable: true,
                description:
                  'What the policy chain will decide, when known now: `allowed: false` with the reason it will suppress the resend (consent, suppression). Caps and quiet hours are decided when it is read.',
                properties: {
                  allowed: { type: 'boolean' },
                  reason: nullableString,
                  message: { type: 'string' },
                },
              },
            },
          },
          400: errorResponse('The message went on several channels: name the one to resend.'),
          404: errorResponse('No message with this sendId in the message log.'),
          409: errorResponse(
            'LC_ERR_CONFLICT: the message was never sent, or its content has expired (LC_MESSAGE_BODY_TTL_DAYS): nothing to resend.',
          ),
        },
      },
    },
    async (req, reply) => {
      const { sendId } = req.params;
      const original = await withStore((store, database) =>
        messageDetail(store, database, sendId, ttl()),
      );
      if (!original) throw notFound(sendId);
      const channel = channelToResend(original, req.body?.channel);
      const header = req.headers['idempotency-key'];
      const key = typeof header === 'string' && header !== '' ? `key:${header}` : `req:${req.id}`;
      const send = resendCommand(original, channel, key, now());
      const refusal = opts.policyPreview ? await opts.policyPreview(send, channel) : null;
      await opts.publisher.publish(opts.sendsTopic, [
        { key: send.userId, ...encodeWithHeader(sendCodec, send) },
      ]);
      // What was asked and what was made of it; never what the message said.
      await req.audit({
        action: 'message.resend',
        target: `message:${sendId}`,
        after: {
          sendId: send.sendId,
          channel,
          category: send.category,
          template: send.template,
          templateVersion: send.templateVersion ?? null,
          idempotencyKey: typeof header === 'string' ? header : null,
          policy: refusal,
        },
      });
      return reply.code(202).send({
        sendId: send.sendId,
        originalSendId: sendId,
        channel,
        templateVersion: send.templateVersion ?? null,
        category: send.category,
        policy: !opts.policyPreview
          ? null
          : refusal === null
            ? {
                allowed: true,
                reason: null,
                message: 'consent and suppression allow it now; delivery decides when it reads it',
              }
            : {
                allowed: false,
                reason: refusal,
                message: `the policy chain will suppress this resend (${refusal}): the user's consent or a suppression forbids it now; it is recorded as suppressed, not sent`,
              },
      });
    },
  );
}
