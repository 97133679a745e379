// Public tracking endpoints: signed click redirects (a tampered link is refused, never
// redirected; an expired one shows where it pointed, as text), the open pixel, RFC 8058
// one-click unsubscribe with a confirmation page for people, and the mail provider's
// bounce/complaint webhook (timestamped HMAC of the body with its own secret, never the one
// that signs links). Expired links are never acted on: no redirect, no engagement recorded,
// no unsubscribe.
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { SwaggerTransform } from '@fastify/swagger';
import type { Logger } from 'pino';
import { ErrorCodes, errorMessage } from '../../platform/errors.ts';
import { errorResponse, requireHttpKit } from '../../platform/http.ts';
import type { SentIndex } from '../sent-index.ts';
import { verifyWebhookSignature } from '../providers/webhook.ts';
import {
  PAGE_HEADERS,
  expiredClickPage,
  expiredLinkPage,
  invalidLinkPage,
  tooManyRequestsPage,
  unknownShortLinkPage,
  unsubscribeConfirmPage,
  unsubscribedPage,
} from '../preferences/page.ts';
import { formBody, LINK_PAGE_RESPONSES } from '../preferences/routes.ts';
import type { PreferencesStore } from '../preferences/store.ts';
import type { LinkUseLimiter } from '../link-limits.ts';
import type { EngagementRecorder } from './engagement.ts';
import type { MessageRef, TrackingLinks } from '../links.ts';
import { SHORT_CODE, type ShortLinkStore } from './short-links.ts';

export interface TrackingRoutesDeps {
  links: TrackingLinks;
  recorder: EngagementRecorder;
  store: PreferencesStore;
  sentIndex: SentIndex;
  /** Uses of one token per minute: over it, clicks and unsubscribes answer 429 and opens are not counted. */
  limiter: LinkUseLimiter;
  /** The codes of SMS and push short links (`/s/:code`). */
  shortLinks: ShortLinkStore;
  /**
   * The mail provider's webhook: `X-LC-Signature: t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`
   * with `secret` (config auth.emailEventsSecret; empty: the webhook is off and answers 503),
   * refused when `t` is more than `toleranceMs` from now.
   */
  emailEvents: { secret: string; toleranceMs: number };
  now: () => number;
  logger: Logger;
}

const PIXEL = Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64');

/** One event of the provider webhook. */
export interface ProviderWebhookEvent {
  type: 'bounce' | 'complaint' | 'delivered';
  /** `hard` (permanent: the address is suppressed) or `soft` (temporary). */
  bounceType?: 'hard' | 'soft';
  /** Message-ID of the original message (`<sendId@domain>`). */
  messageId: string;
  recipient?: string;
  reason?: string;
  ts?: number | string;
}

/** `<sendId@domain>` -> the sendId as the email provider wrote it. */
export function sendIdFromMessageId(messageId: string): string {
  return messageId
    .trim()
    .replace(/^</, '')
    .replace(/>$/, '')
    .replace(/@[^@]*$/, '');
}

const tags = ['tracking'];
/** Every tracking link carries its signed token in `?t=`. */
const tokenQuery = {
  type: 'object',
  properties: { t: { type: 'string', description: 'The signed token of the link.' } },
} as const;
const page = (description: string) => ({
  description,
  content: { 'text/html': { schema: { type: 'string' } } },
});
const gif = (description: string) => ({
  description,
  content: { 'image/gif': { schema: { type: 'string', format: 'binary' } } },
});
/** What the webhook's body holds; documented only (the route reads the raw bytes to check their signature). */
const WebhookEvent = {
  type: 'object',
  required: ['type', 'messageId'],
  properties: {
    type: { type: 'string', enum: ['bounce', 'complaint', 'delivered'] },
    bounceType: {
      type: 'string',
      enum: ['hard', 'soft'],
      description: '`hard` (the default) suppresses the address.',
    },
    messageId: { type: 'string', description: 'Message-ID of the original message.' },
    recipient: { type: 'string' },
    reason: { type: 'string' },
    ts: { type: 'string', description: 'When it happened: epoch ms or ISO time.' },
  },
} as const;
const documentWebhook = (({ schema, url }) => ({
  schema: {
    ...schema,
    headers: {
      type: 'object',
      required: ['x-lc-signature'],
      properties: {
        'x-lc-signature': {
          type: 'string',
          description:
            '`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" with LC_EMAIL_EVENTS_SECRET>`.',
        },
      },
    },
    body: {
      description: 'One event, an array of them, or `{events: [...]}`.',
      oneOf: [
        WebhookEvent,
        { type: 'array', items: WebhookEvent },
        {
          type: 'object',
          required: ['events'],
          properties: { events: { type: 'array', items: WebhookEvent } },
        },
      ],
    },
  },
  url,
})) satisfies SwaggerTransform;

export async function trackingRoutes(
  app: FastifyInstance,
  deps: TrackingRoutesDeps,
): Promise<void> {
  const { links, recorder, store, logger } = deps;
  requireHttpKit(app);
  // Every route here is public: the signed token of the link, or the provider's signature
  // of the webhook body, is the credential, and each route checks its own.
  const publicRoute = { config: { auth: 'public' } } as const;
  const record = (
    kind: Parameters<EngagementRecorder['record']>[0],
    ref: MessageRef,
    extra?: { url?: string; reason?: string },
  ) =>
    recorder
      .record(kind, ref, extra)
      .catch((err: unknown) =>
        logger.error(
          { err: errorMessage(err), kind, sendId: ref.sendId },
          'could not record engagement',
        ),
      );

  const html = (reply: FastifyReply, status: number, page: string) =>
    reply.code(status).headers(PAGE_HEADERS).send(page);
  /** Counts a use of a genuine token; false (and the 429 sent) when it is over its limit. */
  const withinLimit = (
    reply: FastifyReply,
    token: string,
    now: number,
    answer: (r: FastifyReply) => FastifyReply = (r) => html(r, 429, tooManyRequestsPage()),
  ) => {
    const use = deps.limiter.take(token, now);
    if (use.allowed) return true;
    answer(reply.header('retry-after', String(use.retryAfterS)));
    return false;
  };

  app.get<{ Querystring: { t?: string } }>(
    '/t/c',
    {
      ...publicRoute,
      schema: {
        operationId: 'followClick',
        summary: 'A tracked link of a message: records the click and redirects to its URL',
        tags,
        querystring: tokenQuery,
        response: {
          302: {
            type: 'null',
            description: 'To the URL the link was signed with.',
            headers: { Location: { type: 'string', description: 'The URL of the link.' } },
          },
          ...LINK_PAGE_RESPONSES,
          410: page('The link has expired: a page showing the URL as text, not redirecting.'),
        },
      },
    },
    async (req, reply) => {
      const token = req.query.t ?? '';
      const now = deps.now();
      const click = links.readClick(token, now);
      if (click.status === 'invalid') return html(reply, 400, invalidLinkPage());
      if (!withinLimit(reply, token, now)) return reply;
      const { url, ...ref } = click.value;
      if (click.status === 'expired') return html(reply, 410, expiredClickPage(url));
      await record('clicked', ref, { url });
      return reply.header('cache-control', 'no-store').redirect(url, 302);
    },
  );

  app.get<{ Params: { code: string } }>(
    '/s/:code',
    {
      ...publicRoute,
      schema: {
        operationId: 'followShortLink',
        summary:
          'A short link of an SMS or push message: records the click and redirects to its URL',
        description:
          'The code is looked up in what the product stored when it sent the message; the destination never comes from the request.',
        tags,
        params: {
          type: 'object',
          required: ['code'],
          properties: { code: { type: 'string', description: 'The short code of the link.' } },
        },
        response: {
          302: {
            type: 'null',
            description: 'To the URL the message linked to.',
            headers: { Location: { type: 'string', description: 'The URL of the link.' } },
          },
          404: page('No such link, or it has expired: a page saying so.'),
          429: LINK_PAGE_RESPONSES[429],
        },
      },
    },
    async (req, reply) => {
      const { code } = req.params;
      const now = deps.now();
      const token = SHORT_CODE.test(code) ? await deps.shortLinks.get(code) : null;
      const click = token === null ? null : links.readClick(token, now);
      // Unknown, expired, or (should the store be tampered with) not signed by us: the same 404.
      if (!click || click.status !== 'valid') return html(reply, 404, unknownShortLinkPage());
      if (!withinLimit(reply, code, now)) return reply;
      const { url, ...ref } = click.value;
      await record('clicked', ref, { url });
      return reply.header('cache-control', 'no-store').redirect(url, 302);
    },
  );

  app.get<{ Querystring: { t?: string } }>(
    '/t/o.gif',
    {
      ...publicRoute,
      schema: {
        operationId: 'openPixel',
        summary: 'The open pixel of an email: records the open',
        description: 'Always a 1×1 GIF, so a broken token never shows as a broken picture.',
        tags,
        querystring: tokenQuery,
        response: {
          200: gif('The pixel (opens of a valid, unexpired token within its rate are recorded).'),
          400: gif('The pixel; the token is not one the product signed, nothing is recorded.'),
        },
      },
    },
    async (req, reply) => {
      const token = req.query.t ?? '';
      const now = deps.now();
      const open = links.readOpen(token, now);
      // Over the limit the pixel is still served (a mail client shows no error), only not counted.
      if (open.status === 'valid' && deps.limiter.take(token, now).allowed)
        await record('opened', open.value);
      // Always an image, so a broken token never shows as a broken picture; only valid ones count.
      return reply
        .code(open.status === 'invalid' ? 400 : 200)
        .type('image/gif')
        .header('cache-control', 'no-store, max-age=0')
        .send(PIXEL);
    },
  );

  async function unsubscribe(ref: MessageRef, source: string): Promise<void> {
    const at = deps.now();
    await store.apply(
      ref.userId,
      {
        records: [
          {
            category: ref.category,
            channel: ref.channel as never,
            record: { granted: false, at, source },
          },
        ],
      },
      { source, at },
    );
    await record('unsubscribed', ref, { reason: `${ref.category}:${ref.channel}` });
  }

  // A GET never unsubscribes (link scanners and prefetchers follow links): it asks first.
  app.get<{ Querystring: { t?: string } }>(
    '/t/u',
    {
      ...publicRoute,
      schema: {
        operationId: 'showUnsubscribePage',
        summary: 'The unsubscribe link of a message: a page that asks to confirm',
        description:
          'A GET never unsubscribes (link scanners follow links); its button POSTs here.',
        tags,
        querystring: tokenQuery,
        response: { 200: page('The confirmation page.'), ...LINK_PAGE_RESPONSES },
      },
    },
    async (req, reply) => {
      const token = req.query.t ?? '';
      const now = deps.now();
      const read = links.readUnsubscribe(token, now);
      if (read.status === 'invalid') return html(reply, 400, invalidLinkPage());
      if (!withinLimit(reply, token, now)) return reply;
      if (read.status === 'expired') return html(reply, 410, expiredLinkPage());
      const ref = read.value;
      return html(
        reply,
        200,
        unsubscribeConfirmPage({
          action: `/t/u?t=${encodeURIComponent(token)}`,
          category: ref.category,
          channel: ref.channel,
          preferencesUrl: links.preferences(ref.userId, deps.now()),
        }),
      );
    },
  );

  // RFC 8058: mail clients POST `List-Unsubscribe=One-Click`; the confirmation page posts `confirm=1`.
  app.post<{ Querystring: { t?: string }; Body: Record<string, string> | undefined }>(
    '/t/u',
    {
      ...publicRoute,
      schema: {
        operationId: 'unsubscribe',
        summary: "Unsubscribe from the message's category on its channel",
        description:
          'RFC 8058 one-click (mail clients POST `List-Unsubscribe=One-Click`: plain-text answers) or the confirmation page (`confirm=1`: pages).',
        tags,
        querystring: tokenQuery,
        body: formBody({
          'List-Unsubscribe': '`One-Click` (RFC 8058).',
          confirm: "Present: the confirmation page's button.",
        }),
        response: {
          200: {
            description: 'Unsubscribed: `unsubscribed` as text (one-click), or a page saying so.',
            content: {
              'text/plain': { schema: { type: 'string' } },
              'text/html': { schema: { type: 'string' } },
            },
          },
          ...LINK_PAGE_RESPONSES,
          410: {
            description: 'The link has expired; nothing was changed (text, or a page).',
            content: {
              'text/plain': { schema: { type: 'string' } },
              'text/html': { schema: { type: 'string' } },
            },
          },
          429: {
            description:
              'The link was used more than LC_LINK_RATE_LIMIT times in a minute (text, or a page), with Retry-After.',
            content: {
              'text/plain': { schema: { type: 'string' } },
              'text/html': { schema: { type: 'string' } },
            },
          },
        },
      },
    },
    async (req, reply) => {
      const token = req.query.t ?? '';
      const now = deps.now();
      const read = links.readUnsubscribe(token, now);
      if (read.status === 'invalid') return html(reply, 400, invalidLinkPage());
      const body = (req.body && typeof req.body === 'object' ? req.body : {}) as Record<
        string,
        string
      >;
      const fromPage = body.confirm !== undefined;
      const tooMany = (r: FastifyReply) =>
        fromPage
          ? html(r, 429, tooManyRequestsPage())
          : r
              .code(429)
              .type('text/plain; charset=utf-8')
              .send('too many requests for this link; try again in a minute\n');
      if (!withinLimit(reply, token, now, tooMany)) return reply;
      if (read.status === 'expired') {
        return fromPage
          ? html(reply, 410, expiredLinkPage())
          : reply
              .code(410)
              .type('text/plain; charset=utf-8')
              .send('this unsubscribe link has expired; nothing was changed\n');
      }
      const ref = read.value;
      await unsubscribe(ref, fromPage ? 'unsubscribe_page' : 'one_click_unsubscribe');
      if (!fromPage) return reply.type('text/plain; charset=utf-8').send('unsubscribed\n');
      return reply.headers(PAGE_HEADERS).send(
        unsubscribedPage({
          category: ref.category,
          channel: ref.channel,
          preferencesUrl: links.preferences(ref.userId, deps.now()),
        }),
      );
    },
  );

  // The mail provider's webhook, with the raw body kept for the signature check.
  await app.register(async (hook) => {
    hook.removeContentTypeParser('application/json');
    hook.addContentTypeParser(
      'application/json',
      { parseAs: 'buffer', bodyLimit: 1_048_576 },
      (_req, body, done) => done(null, body),
    );
    hook.post(
      '/v1/webhooks/email',
      {
        config: { ...publicRoute.config, swaggerTransform: documentWebhook },
        schema: {
          operationId: 'emailProviderEvents',
          summary: "The mail provider's bounces, complaints and deliveries",
          description:
            'Signed by the provider with LC_EMAIL_EVENTS_SECRET (X-LC-Signature), not by a credential: a hard bounce or a complaint suppresses the address.',
          tags: ['webhooks'],
          response: {
            200: {
              type: 'object',
              required: ['applied', 'unknown'],
              description: 'The events applied, and the Message-IDs of no send the product knows.',
              properties: {
                applied: { type: 'integer' },
                unknown: { type: 'array', items: { type: 'string' } },
              },
            },
            400: errorResponse('The body is not JSON, or an event lacks type or messageId.'),
            401: errorResponse(
              'X-LC-Signature is missing, wrong or stale (LC_ERR_INVALID_SIGNATURE).',
            ),
            503: errorResponse('The webhook is off: LC_EMAIL_EVENTS_SECRET is not set.'),
          },
        },
      },
      async (req, reply) => {
        const { secret, toleranceMs } = deps.emailEvents;
        if (!secret) {
          return reply.code(503).send({
            code: ErrorCodes.Unavailable,
            message:
              'the email events webhook is off: set LC_EMAIL_EVENTS_SECRET (16+ characters, not LC_SIGNING_SECRET) and give the same secret to the mail provider',
          });
        }
        const raw = req.body as Buffer;
        const header = String(req.headers['x-lc-signature'] ?? '');
        if (!verifyWebhookSignature(secret, raw, header, deps.now(), toleranceMs / 1000)) {
          return reply.code(401).send({
            code: ErrorCodes.InvalidSignature,
            message: `X-LC-Signature must be t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" with LC_EMAIL_EVENTS_SECRET>, with t within ${Math.round(toleranceMs / 1000)} s of now`,
          });
        }
        let parsed: unknown;
        try {
          parsed = JSON.parse(raw.toString('utf8'));
        } catch {
          return reply.code(400).send({ code: ErrorCodes.BadRequest, message: 'body is not JSON' });
        }
        const events = (
          Array.isArray(parsed) ? parsed : ((parsed as { events?: unknown }).events ?? [parsed])
        ) as ProviderWebhookEvent[];
        let applied = 0;
        const unknown: string[] = [];
        for (const e of events) {
          if (
            !e ||
            typeof e.messageId !== 'string' ||
            !['bounce', 'complaint', 'delivered'].includes(e.type)
          ) {
            return reply.code(400).send({
              code: ErrorCodes.BadRequest,
              message: 'each event needs type (bounce|complaint|delivered) and messageId',
            });
          }
          const sent = await deps.sentIndex.lookup(sendIdFromMessageId(e.messageId));
          const rec = sent.find((s) => s.channel === 'email');
          if (!rec) {
            unknown.push(e.messageId);
            continue;
          }
          const ref: MessageRef = {
            sendId: rec.sendId,
            userId: rec.userId,
            ruleId: rec.ruleId,
            channel: 'email',
            variant: rec.variant,
            category: rec.category,
          };
          const at =
            typeof e.ts === 'number' ? e.ts : e.ts ? Date.parse(e.ts) || deps.now() : deps.now();
          const address = e.recipient ?? rec.address ?? undefined;
          if (e.type === 'bounce') {
            const hard = (e.bounceType ?? 'hard') === 'hard';
            if (hard)
              await store.suppress(rec.userId, 'email', {
                reason: 'hard_bounce',
                at,
                ...(address ? { address } : {}),
              });
            await record('bounced', ref, {
              reason: `${hard ? 'hard' : 'soft'}${e.reason ? `: ${e.reason}` : ''}`,
            });
          } else if (e.type === 'complaint') {
            await store.suppress(rec.userId, 'email', {
              reason: 'complaint',
              at,
              ...(address ? { address } : {}),
            });
            await record('complained', ref, e.reason ? { reason: e.reason } : {});
          } else {
            await record('delivered', ref);
          }
          applied++;
        }
        return { applied, unknown };
      },
    );
  });
}
