// In-app gateway (fastify plugin): apps connect a WebSocket with a signed token and receive
// their messages live; messages sent while they were offline come from the paginated inbox.
// Any instance can deliver to any user: the provider publishes on the user's Redis channel
// and the instance holding that user's socket(s) is subscribed to it. A read receipt (over
// the socket or HTTP) for a message not read before becomes an `inapp.read` event on the
// events topic (rules) and a `read` outcome on the deliveries topic (analytics funnels),
// as opens of emails do; a second receipt for the same message becomes neither.
//
//   GET  /v1/inapp/ws?token=...                      WebSocket; server sends {type:"message", message}
//                                                    client may send {type:"read", ids:[...]} / {type:"ping"}
//   GET  /v1/inapp/inbox?token=&cursor=&limit=       {messages, nextCursor, unread}
//   POST /v1/inapp/inbox/read?token=   {ids:[...]}    {read: n}
//   POST   /v1/inapp/devices?token=  {token, platform: "fcm"|"apns"}   registers a push device
//   DELETE /v1/inapp/devices/:deviceToken?token=                      unregisters it (logout)
// The token may also come as `Authorization: Bearer <token>`.
import websocket from '@fastify/websocket';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { deliveryCodec, encodeWithHeader, eventCodec } from '../../platform/avro.ts';
import type { Publisher } from '../../platform/bus.ts';
import { type DeliveryOutcome, type NormalisedEvent } from '../../platform/contracts.ts';
import { ErrorCodes, LifecycleError, type ErrorCode } from '../../platform/errors.ts';
import {
  bearerToken,
  errorResponse,
  provideCredential,
  type Credential,
} from '../../platform/http.ts';
import type { KeySpace } from '../../platform/keys.ts';
import { Counter, Gauge, type Registry } from '../../platform/metrics.ts';
import type { DeviceRegistry } from '../providers/devices.ts';
import type { Inbox, InboxMessage } from './inbox.ts';
import { createRedisLiveChannel, type LiveChannel } from './live.ts';

export { inappChannel } from './live.ts';
import { verifyInappToken } from './token.ts';

export interface InappGatewayOptions {
  /** config auth.inappSecret (LC_INAPP_SECRET): verifies client tokens. */
  inappSecret: string;
  /**
   * Where live messages come from. Default: Redis pub/sub over `redis`/`keys`, subscribing on
   * `subscriber` (default: a duplicate of `redis`, closed with the app).
   */
  live?: LiveChannel;
  redis?: Redis;
  subscriber?: Redis;
  keys?: KeySpace;
  inbox: Inbox;
  /** Receives `inapp.read` events and `read` outcomes. */
  publisher: Publisher;
  eventsTopic: string;
  /** Where `read` outcomes go (`lifecycle.deliveries`). */
  deliveriesTopic: string;
  logger: Logger;
  /** When given, apps register their push device tokens here with the same token. */
  devices?: DeviceRegistry;
  /**
   * When given, the app's settings link to the signed preference page (`/p`), the page of the
   * emails' footer link: the URL for a user at a time (delivery/links.ts `preferences`).
   */
  preferencesLink?: (userId: string, now: number) => string;
  /** Registers `lifecycle_inapp_connections` and `lifecycle_inapp_frames_total{type}` when given. */
  metrics?: Registry;
  /** Close sockets that sent nothing (not even a ping) for this long. */
  idleTimeoutMs?: number;
  now?: () => number;
}

/** The part of a `ws` socket the gateway uses (`ws` ships no type declarations here). */
interface WebSocket {
  readonly readyState: number;
  readonly OPEN: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  on(event: 'message', listener: (data: Buffer) => void): void;
  on(event: 'close', listener: () => void): void;
}

/** What the gateway sends to a client socket. */
export type GatewayFrame =
  | { type: 'ready'; userId: string; unread: number }
  | { type: 'message'; message: InboxMessage }
  | { type: 'read'; ids: string[] }
  | { type: 'pong' }
  | { type: 'error'; code: ErrorCode; message: string };

export function readEvent(userId: string, message: InboxMessage, now: number): NormalisedEvent {
  return {
    id: `inapp.read:${userId}:${message.id}`,
    userId,
    type: 'inapp.read',
    ts: now,
    receivedAt: now,
    source: 'inapp',
    properties: { sendId: message.id, ruleId: message.ruleId, channel: 'inapp' },
  };
}

/**
 * The `read` outcome of a message, once per send: its id is the sendId's, as the outcomes of
 * other once-per-message engagement (`<sendId>:<channel>:<status>`), so a republished one
 * is deduplicated by the analytics sink.
 */
export function readOutcome(userId: string, message: InboxMessage, now: number): DeliveryOutcome {
  return {
    id: `${message.id}:inapp:read`,
    sendId: message.id,
    ruleId: message.ruleId,
    userId,
    channel: 'inapp',
    status: 'read',
    reason: null,
    provider: null,
    attempt: 0,
    ts: now,
    variant: null,
    holdout: false,
  };
}

function tokenOf(req: FastifyRequest): string | undefined {
  const q = (req.query ?? {}) as { token?: unknown };
  if (typeof q.token === 'string' && q.token) return q.token;
  return bearerToken(req.headers.authorization);
}

/** The in-app client token (signed with LC_INAPP_SECRET by the app backend) as the credential of `appUser` routes. */
function appUserCredential(inappSecret: string, now: () => number): Credential {
  return {
    schemes: {
      inappToken: {
        type: 'apiKey',
        in: 'query',
        name: 'token',
        description: 'The in-app client token the app backend signed for the user.',
      },
      inappBearer: {
        type: 'http',
        scheme: 'bearer',
        description: 'The in-app client token as a bearer token.',
      },
    },
    authenticate(req) {
      const token = tokenOf(req);
      const userId = token ? verifyInappToken(inappSecret, token, now()) : null;
      if (!userId)
        throw new LifecycleError(
          ErrorCodes.Unauthorized,
          'missing, invalid or expired in-app token; ask the app backend for a new one',
        );
      return { id: userId, name: userId };
    },
  };
}

/** The user of an `appUser` route's request (the kit has checked the token before the handler runs). */
const userOf = (req: FastifyRequest): string => req.principal!.id;

export async function inappGateway(app: FastifyInstance, opts: InappGatewayOptions): Promise<void> {
  const log = opts.logger.child({ component: 'inapp-gateway' });
  const now = opts.now ?? Date.now;
  const ownLive = opts.live === undefined;
  let live: LiveChannel;
  if (opts.live) live = opts.live;
  else if (opts.redis && opts.keys) {
    live = createRedisLiveChannel({
      redis: opts.redis,
      keys: opts.keys,
      ...(opts.subscriber ? { subscriber: opts.subscriber } : {}),
      onError: (err) => log.warn({ err: err.message }, 'in-app subscriber connection error'),
    });
  } else throw new Error('in-app gateway needs `live`, or `redis` and `keys`');
  /** userId -> sockets of that user on this instance */
  const sockets = new Map<string, Set<WebSocket>>();
  /** userId -> its live subscription on this instance (settled or in flight) */
  const subscriptions = new Map<string, Promise<void>>();
  let connections = 0;
  const registers = opts.metrics ? [opts.metrics] : [];
  new Gauge({
    name: 'lifecycle_inapp_connections',
    help: 'Open in-app WebSocket connections on this instance.',
    registers,
    collect() {
      this.set(connections);
    },
  });
  const frames = new Counter({
    name: 'lifecycle_inapp_frames_total',
    help: 'Frames pushed to in-app clients, by type.',
    labelNames: ['type'],
    registers,
  });

  live.onMessage((userId, message) => {
    const set = sockets.get(userId);
    if (!set) return;
    const frame = JSON.stringify({ type: 'message', message } satisfies GatewayFrame);
    for (const s of set) {
      if (s.readyState !== s.OPEN) continue;
      s.send(frame);
      frames.inc({ type: 'message' });
    }
  });
  await live.ready();

  if (!app.hasDecorator('websocketServer'))
    await app.register(websocket, { options: { maxPayload: 64 * 1024 } });

  provideCredential(app, 'appUser', appUserCredential(opts.inappSecret, now));
  const appUser = { auth: 'appUser' } as const;

  async function markRead(userId: string, ids: unknown): Promise<string[]> {
    if (!Array.isArray(ids)) return [];
    const at = now();
    const wanted = ids.filter((x): x is string => typeof x === 'string');
    // Published before the messages are marked read: a failed publish leaves them unread, so
    // the client's retried receipt publishes again. Only messages unread until now count (a
    // second receipt is no new event or outcome); a receipt racing this one publishes the
    // same ids, which consumers deduplicate.
    const fresh = await opts.inbox.unreadAmong(userId, wanted);
    if (fresh.length > 0) {
      await opts.publisher.publish(
        opts.eventsTopic,
        fresh.map((m) => ({
          key: userId,
          ...encodeWithHeader(eventCodec, readEvent(userId, m, at)),
        })),
      );
      await opts.publisher.publish(
        opts.deliveriesTopic,
        fresh.map((m) => ({
          key: userId,
          ...encodeWithHeader(deliveryCodec, readOutcome(userId, m, at)),
        })),
      );
      await opts.inbox.markRead(
        userId,
        fresh.map((m) => m.id),
        at,
      );
    }
    return fresh.map((m) => m.id);
  }

  app.get(
    '/v1/inapp/ws',
    { websocket: true, config: appUser },
    (socket: WebSocket, req: FastifyRequest) => {
      const userId = userOf(req);
      let set = sockets.get(userId);
      if (!set) sockets.set(userId, (set = new Set()));
      set.add(socket);
      connections++;
      // Every socket of the user waits for the one subscription (a second socket may arrive
      // while the first one's SUBSCRIBE is still in flight).
      let subscribed = subscriptions.get(userId);
      if (!subscribed) subscriptions.set(userId, (subscribed = live.subscribe(userId)));
      void subscribed
        .then(() => opts.inbox.unread(userId))
        .then((unread) =>
          socket.send(JSON.stringify({ type: 'ready', userId, unread } satisfies GatewayFrame)),
        )
        .catch((err: unknown) => {
          if (subscriptions.get(userId) === subscribed) subscriptions.delete(userId);
          log.warn({ err: (err as Error).message }, 'in-app subscribe failed');
          socket.close(1011, 'unavailable');
        });

      let idle: NodeJS.Timeout | undefined;
      const touch = () => {
        if (!opts.idleTimeoutMs) return;
        clearTimeout(idle);
        idle = setTimeout(() => socket.close(1000, 'idle'), opts.idleTimeoutMs);
      };
      touch();

      socket.on('message', (raw: Buffer) => {
        touch();
        let msg: { type?: unknown; ids?: unknown };
        try {
          msg = JSON.parse(raw.toString('utf8')) as typeof msg;
        } catch {
          socket.send(
            JSON.stringify({
              type: 'error',
              code: ErrorCodes.BadRequest,
              message: 'frames are JSON',
            } satisfies GatewayFrame),
          );
          return;
        }
        if (msg.type === 'ping') {
          socket.send(JSON.stringify({ type: 'pong' } satisfies GatewayFrame));
        } else if (msg.type === 'read') {
          markRead(userId, msg.ids).then(
            (ids) => socket.send(JSON.stringify({ type: 'read', ids } satisfies GatewayFrame)),
            (err: unknown) => {
              log.warn({ err: (err as Error).message }, 'read receipt failed');
              socket.send(
                JSON.stringify({
                  type: 'error',
                  code: ErrorCodes.Unavailable,
                  message: 'read receipt not stored; send it again',
                } satisfies GatewayFrame),
              );
            },
          );
        } else {
          socket.send(
            JSON.stringify({
              type: 'error',
              code: ErrorCodes.BadRequest,
              message: 'unknown frame type (use ping, read)',
            } satisfies GatewayFrame),
          );
        }
      });

      socket.on('close', () => {
        clearTimeout(idle);
        connections--;
        const current = sockets.get(userId);
        if (!current) return;
        current.delete(socket);
        if (current.size === 0) {
          sockets.delete(userId);
          const pending = subscriptions.get(userId);
          subscriptions.delete(userId);
          void (pending ?? Promise.resolve())
            .catch(() => undefined)
            .then(() => {
              // A new socket for the same user may have arrived meanwhile: keep the subscription then.
              if (!sockets.has(userId)) live.unsubscribe(userId).catch(() => undefined);
            });
        }
      });
    },
  );

  const tags = ['inapp'];
  const InboxMessageSchema = {
    type: 'object',
    required: ['id', 'ruleId', 'category', 'title', 'body', 'createdAt'],
    additionalProperties: true,
    properties: {
      id: { type: 'string', description: 'The sendId.' },
      ruleId: { type: 'string' },
      category: { type: 'string' },
      title: { type: 'string' },
      body: { type: 'string' },
      url: { type: 'string' },
      data: { type: 'object', additionalProperties: true },
      createdAt: { type: 'integer', description: 'Epoch ms.' },
      readAt: { type: 'integer', nullable: true, description: 'Epoch ms; null while unread.' },
    },
  } as const;

  app.get(
    '/v1/inapp/inbox',
    {
      config: appUser,
      schema: {
        operationId: 'getInbox',
        summary: "A page of the user's in-app inbox, newest first",
        tags,
        querystring: {
          type: 'object',
          properties: {
            cursor: { type: 'string', description: 'The `nextCursor` of the previous page.' },
            limit: {
              type: 'integer',
              minimum: 1,
              maximum: 100,
              description: 'Messages per page (20).',
            },
          },
        },
        response: {
          200: {
            type: 'object',
            required: ['messages', 'nextCursor', 'unread'],
            description: 'The page, the cursor of the next (older) one, and the unread count.',
            properties: {
              messages: { type: 'array', items: InboxMessageSchema },
              nextCursor: { type: 'string', nullable: true },
              unread: { type: 'integer' },
            },
          },
          400: errorResponse('`limit` is not an integer from 1 to 100.'),
        },
      },
    },
    async (req, reply) => {
      const userId = userOf(req);
      const q = req.query as { cursor?: string; limit?: string };
      const limit = q.limit === undefined ? 20 : Number(q.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
        return reply
          .code(400)
          .send({ code: ErrorCodes.BadRequest, message: 'limit must be an integer from 1 to 100' });
      }
      return opts.inbox.page(userId, { cursor: q.cursor ?? null, limit });
    },
  );

  app.post(
    '/v1/inapp/inbox/read',
    {
      config: appUser,
      schema: {
        operationId: 'markInboxRead',
        summary: 'Mark inbox messages read (a read receipt)',
        description:
          'Each message read for the first time becomes an `inapp.read` event and a `read` outcome; a second receipt becomes neither.',
        tags,
        body: {
          type: 'object',
          properties: {
            ids: { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: 100 },
          },
        },
        response: {
          200: {
            type: 'object',
            required: ['read', 'ids'],
            description: 'The messages that were unread until now.',
            properties: {
              read: { type: 'integer' },
              ids: { type: 'array', items: { type: 'string' } },
            },
          },
          400: errorResponse('The body is not `{"ids": [message ids]}` with 1 to 100 ids.'),
          503: errorResponse('The receipt was not stored (Kafka or Redis away): send it again.'),
        },
      },
    },
    async (req, reply) => {
      const userId = userOf(req);
      const body = (req.body ?? {}) as { ids?: unknown };
      if (!Array.isArray(body.ids) || body.ids.length === 0 || body.ids.length > 100) {
        return reply.code(400).send({
          code: ErrorCodes.BadRequest,
          message: 'body must be {"ids": [message ids]} with 1 to 100 ids',
        });
      }
      let ids: string[];
      try {
        ids = await markRead(userId, body.ids);
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'read receipt failed');
        return reply.code(503).send({
          code: ErrorCodes.Unavailable,
          message: 'read receipt not stored; send it again',
        });
      }
      return { read: ids.length, ids };
    },
  );

  const preferencesLink = opts.preferencesLink;
  if (preferencesLink) {
    app.get(
      '/v1/inapp/preferences-link',
      {
        config: appUser,
        schema: {
          operationId: 'getInappPreferencesLink',
          summary: "A signed link to the token's user's preference page, for the app's settings",
          description:
            'The page every email links to in its footer: which messages the user gets, per type and channel. Fetch it when the user opens the settings (it expires with LC_UNSUBSCRIBE_TTL_DAYS).',
          tags,
          response: {
            200: {
              type: 'object',
              required: ['url'],
              description: 'The link.',
              properties: { url: { type: 'string', format: 'uri' } },
            },
          },
        },
      },
      async (req) => ({ url: preferencesLink(userOf(req), (opts.now ?? Date.now)()) }),
    );
  }

  const devices = opts.devices;
  if (devices) {
    app.post(
      '/v1/inapp/devices',
      {
        config: appUser,
        schema: {
          operationId: 'registerDevice',
          summary: "Register a push device of the token's user",
          tags,
          body: {
            type: 'object',
            properties: {
              token: { type: 'string', description: 'The FCM or APNs device token.' },
              platform: { type: 'string', enum: ['fcm', 'apns'] },
            },
          },
          response: {
            204: { type: 'null', description: 'Registered.' },
            400: errorResponse(
              'The body is not `{"token": "<device token>", "platform": "fcm" | "apns"}`.',
            ),
          },
        },
      },
      async (req, reply) => {
        const userId = userOf(req);
        const body = (req.body ?? {}) as { token?: unknown; platform?: unknown };
        if (
          typeof body.token !== 'string' ||
          body.token === '' ||
          body.token.length > 4096 ||
          (body.platform !== 'fcm' && body.platform !== 'apns')
        ) {
          return reply.code(400).send({
            code: ErrorCodes.BadRequest,
            message: 'body must be {"token": "<device token>", "platform": "fcm" | "apns"}',
          });
        }
        await devices.register(userId, { token: body.token, platform: body.platform }, now());
        return reply.code(204).send();
      },
    );
    app.delete(
      '/v1/inapp/devices/:deviceToken',
      {
        config: appUser,
        schema: {
          operationId: 'unregisterDevice',
          summary: 'Unregister a push device (logout)',
          tags,
          params: {
            type: 'object',
            required: ['deviceToken'],
            properties: { deviceToken: { type: 'string' } },
          },
          response: {
            204: { type: 'null', description: 'Unregistered.' },
            404: errorResponse('No such device for this user.'),
          },
        },
      },
      async (req, reply) => {
        const userId = userOf(req);
        const { deviceToken } = req.params as { deviceToken: string };
        const removed = await devices.unregister(userId, deviceToken);
        return reply
          .code(removed ? 204 : 404)
          .send(
            removed
              ? undefined
              : { code: ErrorCodes.NotFound, message: 'no such device for this user' },
          );
      },
    );
  }

  app.addHook('onClose', async () => {
    for (const set of sockets.values()) for (const s of set) s.close(1001, 'server shutting down');
    sockets.clear();
    if (ownLive) await live.close();
  });
}

export type { InboxMessage } from './inbox.ts';
