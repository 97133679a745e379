// Double opt-in over HTTP: the confirmation link's page (public, signed: the GET asks, the
// POST confirms) and the consent export support staff hand to a person or an auditor.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { requireHttpKit } from '../../platform/http.ts';
import type { LinkUseLimiter } from '../link-limits.ts';
import type { TrackingLinks } from '../links.ts';
import type { PreferenceChange } from '../preferences/model.ts';
import { PAGE_HEADERS, invalidLinkPage, tooManyRequestsPage } from '../preferences/page.ts';
import { formBody, LINK_PAGE_RESPONSES } from '../preferences/routes.ts';
import type { PreferencesStore } from '../preferences/store.ts';
import { DOUBLE_OPT_IN_SOURCE, statusAt, type OptInRequest } from './model.ts';
import { confirmedPage, confirmPage, expiredRequestPage, withdrawnRequestPage } from './page.ts';
import type { LinkState, OptInService } from './service.ts';
import type { OptInStore } from './store.ts';

export interface OptInRoutesDeps {
  service: OptInService;
  links: TrackingLinks;
  store: OptInStore;
  preferences: PreferencesStore;
  limiter: LinkUseLimiter;
  now: () => number;
}

/** A user agent is kept as evidence, bounded: a client can send any header. */
const USER_AGENT_MAX = 512;

const html = (description: string) => ({
  description,
  content: { 'text/html': { schema: { type: 'string' } } },
});

const pageQuery = {
  type: 'object',
  properties: {
    t: {
      type: 'string',
      description: 'The signed token of the confirmation link (from the email).',
    },
  },
} as const;

const RequestSchema = {
  type: 'object',
  required: ['id', 'category', 'channel', 'source', 'via', 'requestedAt', 'expiresAt', 'status'],
  properties: {
    id: { type: 'string' },
    category: { type: 'string' },
    channel: { type: 'string' },
    source: {
      type: 'string',
      description: 'Where the person asked (`signup_form`, `identify`, ...).',
    },
    via: { type: 'string', description: 'The door: `admin_api`, `preference_page`, `identify`.' },
    requestedAt: { type: 'integer' },
    remindAt: { type: 'integer', nullable: true },
    expiresAt: { type: 'integer' },
    status: { type: 'string', enum: ['pending', 'confirmed', 'withdrawn', 'expired'] },
    sendIds: {
      type: 'object',
      description: 'The sendIds of the confirmation email and of its reminder (null: none).',
      properties: {
        confirmation: { type: 'string' },
        reminder: { type: 'string', nullable: true },
      },
    },
    confirmed: {
      type: 'object',
      nullable: true,
      description: 'When and from where the link was confirmed.',
      properties: {
        at: { type: 'integer' },
        ip: { type: 'string' },
        userAgent: { type: 'string' },
      },
    },
    withdrawnAt: { type: 'integer', nullable: true },
  },
} as const;

const ExportSchema = {
  type: 'object',
  required: ['userId', 'generatedAt', 'current', 'unsubscribedAll', 'records', 'requests'],
  properties: {
    userId: { type: 'string' },
    generatedAt: { type: 'integer', description: 'When the export was made (epoch ms).' },
    current: {
      type: 'object',
      additionalProperties: true,
      description: 'category -> channel -> the consent in force `{granted, at, source}`.',
    },
    unsubscribedAll: {
      type: 'object',
      nullable: true,
      additionalProperties: true,
      properties: { at: { type: 'integer' }, source: { type: 'string' } },
    },
    records: {
      type: 'array',
      description:
        'Every consent given or withdrawn and every unsubscribe from everything, oldest first (the last 500 changes): when (`at`; `recordedAt`, when the product recorded it), how (`source`, the door `via`, the staff credential `by`) and, for a consent from a confirmation link, `confirmation`: the request, its emails and the IP and user agent that confirmed.',
      items: {
        type: 'object',
        additionalProperties: true,
        properties: {
          kind: { type: 'string', enum: ['consent', 'unsubscribe_all', 'resubscribe_all'] },
          category: { type: 'string' },
          channel: { type: 'string' },
          granted: { type: 'boolean' },
          at: { type: 'integer' },
          source: { type: 'string' },
          via: { type: 'string' },
          recordedAt: { type: 'integer' },
          by: { type: 'object', additionalProperties: true },
          confirmation: {
            type: 'object',
            additionalProperties: true,
            properties: {
              requestId: { type: 'string' },
              requestedAt: { type: 'integer' },
              requestSource: { type: 'string' },
              sendIds: { type: 'object', additionalProperties: true },
              ip: { type: 'string' },
              userAgent: { type: 'string' },
            },
          },
        },
      },
    },
    requests: {
      type: 'array',
      description: 'Every opt-in request, pending ones included, newest first.',
      items: RequestSchema,
    },
  },
} as const;

/** A request as the export shows it: its status now (a pending one past its expiry is `expired`). */
export function requestView(r: OptInRequest, now: number) {
  return { ...r, status: statusAt(r, now) };
}

/** The consent export: history oldest first, each consent from a confirmation link with its evidence. */
export function consentExport(
  userId: string,
  prefs: { consents: unknown; unsubscribedAll: unknown },
  history: PreferenceChange[],
  requests: OptInRequest[],
  now: number,
) {
  const confirmedAt = new Map(
    requests
      .filter((r) => r.confirmed)
      .map((r) => [`${r.category}:${r.channel}:${r.confirmed!.at}`, r] as const),
  );
  const records = [...history].reverse().map((h) => {
    if (h.kind !== 'consent' || h.source !== DOUBLE_OPT_IN_SOURCE) return h;
    const r = confirmedAt.get(`${h.category}:${h.channel}:${h.at}`);
    if (!r) return h;
    return {
      ...h,
      confirmation: {
        requestId: r.id,
        requestedAt: r.requestedAt,
        requestSource: r.source,
        sendIds: r.sendIds,
        ip: r.confirmed!.ip,
        userAgent: r.confirmed!.userAgent,
      },
    };
  });
  return {
    userId,
    generatedAt: now,
    current: prefs.consents,
    unsubscribedAll: prefs.unsubscribedAll,
    records,
    requests: requests.map((r) => requestView(r, now)),
  };
}

export async function optInRoutes(app: FastifyInstance, deps: OptInRoutesDeps): Promise<void> {
  requireHttpKit(app);
  const { service, store, preferences } = deps;

  const userParam = {
    type: 'object',
    required: ['userId'],
    properties: { userId: { type: 'string', minLength: 1, maxLength: 256 } },
  } as const;

  app.get<{ Params: { userId: string } }>(
    '/v1/users/:userId/consent-export',
    {
      config: { auth: { roles: ['support'] } },
      schema: {
        operationId: 'exportUserConsent',
        summary: 'Everything a user agreed to or withdrew, when and how, for an audit',
        description:
          'Personal data (the IP addresses and user agents that confirmed): hand it only to the person or an auditor. Each export is recorded in the audit log as `consent.export` (counts only, never what it held).',
        tags: ['preferences'],
        params: userParam,
        response: { 200: { ...ExportSchema, description: "The user's consent export." } },
      },
    },
    async (req) => {
      const now = deps.now();
      const { userId } = req.params;
      const [prefs, history, requests] = await Promise.all([
        preferences.get(userId),
        preferences.history(userId, 500),
        store.list(userId),
      ]);
      const out = consentExport(userId, prefs, history, requests, now);
      await req.audit({
        action: 'consent.export',
        target: `user:${userId}`,
        after: { records: out.records.length, requests: out.requests.length },
      });
      return out;
    },
  );

  const pageOf = (req: FastifyRequest<{ Querystring: { t?: string } }>, reply: FastifyReply) => {
    const token = req.query.t ?? '';
    const now = deps.now();
    // Only genuine tokens are counted (link-limits.ts): made-up ones cannot fill the limiter.
    const genuine = deps.links.readConfirmation(token, now).status !== 'invalid';
    const use = genuine ? deps.limiter.take(token, now) : null;
    if (use && !use.allowed) {
      void reply
        .code(429)
        .header('retry-after', String(use.retryAfterS))
        .headers(PAGE_HEADERS)
        .send(tooManyRequestsPage());
      return null;
    }
    return token;
  };

  const answer = (reply: FastifyReply, state: LinkState, action: string) => {
    switch (state.kind) {
      case 'invalid':
        return reply.code(400).headers(PAGE_HEADERS).send(invalidLinkPage());
      case 'expired':
        return reply.code(410).headers(PAGE_HEADERS).send(expiredRequestPage());
      case 'withdrawn':
        return reply.code(410).headers(PAGE_HEADERS).send(withdrawnRequestPage());
      case 'pending':
        return reply.headers(PAGE_HEADERS).send(
          confirmPage({
            action,
            category: state.request.category,
            channel: state.request.channel,
          }),
        );
      case 'confirmed':
        return reply.headers(PAGE_HEADERS).send(
          confirmedPage({
            category: state.request.category,
            channel: state.request.channel,
            at: state.request.confirmed!.at,
          }),
        );
    }
  };

  const responses = {
    ...LINK_PAGE_RESPONSES,
    410: html(
      'The request expired unconfirmed, or the person opted out meanwhile: a page saying so; nothing is changed.',
    ),
  };

  // Public: the signed link is the credential.
  app.get<{ Querystring: { t?: string } }>(
    '/c',
    {
      config: { auth: 'public' },
      schema: {
        operationId: 'showConfirmSubscription',
        summary: 'The page of a confirmation link (double opt-in): asks, changes nothing',
        description:
          'Mail scanners open links, so the GET only shows a button that posts to the same URL. A confirmed request shows when it was confirmed.',
        tags: ['pages'],
        querystring: pageQuery,
        response: { 200: html('The question, or the confirmation already made.'), ...responses },
      },
    },
    async (req, reply) => {
      const token = pageOf(req, reply);
      if (token === null) return reply;
      return answer(
        reply,
        await service.read(token, deps.now()),
        `/c?t=${encodeURIComponent(token)}`,
      );
    },
  );

  app.post<{ Querystring: { t?: string } }>(
    '/c',
    {
      config: { auth: 'public' },
      schema: {
        operationId: 'confirmSubscription',
        summary: 'Confirm a subscription (the button of the confirmation page)',
        description:
          'Grants the consent with source `double_opt_in`, keeping the time, IP address and user agent with the request. Idempotent: a second POST changes nothing, and never undoes an opt-out made since.',
        tags: ['pages'],
        querystring: pageQuery,
        body: formBody({ confirm: 'Present: the person pressed the button.' }),
        response: { 200: html('Confirmed.'), ...responses },
      },
    },
    async (req, reply) => {
      const token = pageOf(req, reply);
      if (token === null) return reply;
      const ua = req.headers['user-agent'];
      const state = await service.confirm(token, {
        at: deps.now(),
        ip: req.ip,
        userAgent: (typeof ua === 'string' ? ua : '').slice(0, USER_AGENT_MAX),
      });
      return answer(reply, state, `/c?t=${encodeURIComponent(token)}`);
    },
  );
}
