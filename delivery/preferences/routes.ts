// Preferences over HTTP: the product's API (staff roles support and service) to read and change a user's
// consent and preferences, and the end user's preference page behind a signed link.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Channel } from '../../platform/contracts.ts';
import { CHANNELS } from '../../platform/contracts.ts';
import { ErrorCodes, type ErrorCode } from '../../platform/errors.ts';
import { requireHttpKit } from '../../platform/http.ts';
import type { LinkUseLimiter } from '../link-limits.ts';
import type { TrackingLinks } from '../links.ts';
import {
  normalisePatch,
  PreferencesError,
  type ConsentRecord,
  type PreferencesPatch,
} from './model.ts';
import {
  PAGE_HEADERS,
  expiredLinkPage,
  invalidLinkPage,
  isChecked,
  preferencePage,
  tooManyRequestsPage,
} from './page.ts';
import type { PreferencesStore } from './store.ts';

export interface PreferencesRoutesDeps {
  store: PreferencesStore;
  links: TrackingLinks;
  /** Uses of one preference link per minute before the page answers 429. */
  limiter: LinkUseLimiter;
  now: () => number;
}

const err = (reply: FastifyReply, status: number, code: ErrorCode, message: string) =>
  reply.code(status).send({ code, message });

const PatchSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    unsubscribedAll: { type: 'boolean' },
    consents: {
      type: 'object',
      additionalProperties: {
        type: 'object',
        additionalProperties: {
          anyOf: [
            { type: 'boolean' },
            {
              type: 'object',
              additionalProperties: false,
              required: ['granted'],
              properties: {
                granted: { type: 'boolean' },
                at: { anyOf: [{ type: 'integer' }, { type: 'string' }] },
                source: { type: 'string', minLength: 1, maxLength: 200 },
              },
            },
          ],
        },
      },
    },
  },
} as const;

export async function preferencesRoutes(
  app: FastifyInstance,
  deps: PreferencesRoutesDeps,
): Promise<void> {
  const { store, links } = deps;
  requireHttpKit(app);
  // Support staff look up and change a user's preferences; the product backend (service)
  // mirrors its own settings page into them and hands out preference links. Lifting a
  // suppression (a bounce, a complaint) is a support decision only.
  const preferences = { auth: { roles: ['support', 'service'] } } as const;
  const support = { auth: { roles: ['support'] } } as const;

  // --- product API -------------------------------------------------------------------
  await app.register(async (api) => {
    const userParam = {
      type: 'object',
      required: ['userId'],
      properties: { userId: { type: 'string', minLength: 1, maxLength: 256 } },
    } as const;

    api.get<{ Params: { userId: string } }>(
      '/v1/users/:userId/preferences',
      { config: preferences, schema: { params: userParam } },
      async (req) => {
        const [prefs, suppressions, history] = await Promise.all([
          store.get(req.params.userId),
          store.suppressions(req.params.userId),
          store.history(req.params.userId, 50),
        ]);
        return { ...prefs, suppressions, history };
      },
    );

    api.patch<{ Params: { userId: string }; Body: PreferencesPatch }>(
      '/v1/users/:userId/preferences',
      {
        config: preferences,
        schema: { params: userParam, body: PatchSchema },
        // The default validator strips unknown fields; a typo (`unsubscribeAll`) must not be a silent no-op.
        preValidation: async (req, reply) => {
          const body = req.body as Record<string, unknown> | null;
          const unknown =
            body && typeof body === 'object'
              ? Object.keys(body).filter((k) => k !== 'unsubscribedAll' && k !== 'consents')
              : [];
          if (unknown.length > 0)
            return err(
              reply,
              400,
              ErrorCodes.BadRequest,
              `unknown field(s) ${unknown.join(', ')}; expected unsubscribedAll and/or consents`,
            );
        },
      },
      async (req, reply) => {
        const now = deps.now();
        try {
          const change = normalisePatch(req.body, now, 'admin_api', true);
          const before = await store.get(req.params.userId);
          const after = await store.apply(req.params.userId, change, {
            source: 'admin_api',
            at: now,
            ...(req.principal
              ? { by: { actor: req.principal.id, role: req.principal.role ?? null } }
              : {}),
          });
          await req.audit({
            action: 'preferences.update',
            target: `user:${req.params.userId}`,
            before,
            after,
          });
          return after;
        } catch (e) {
          if (e instanceof PreferencesError)
            return err(reply, 400, ErrorCodes.BadRequest, e.message);
          throw e;
        }
      },
    );

    api.post<{ Params: { userId: string } }>(
      '/v1/users/:userId/preferences/link',
      { config: preferences, schema: { params: userParam } },
      async (req) => {
        return { url: links.preferences(req.params.userId, deps.now()) };
      },
    );

    api.delete<{ Params: { userId: string; channel: string } }>(
      '/v1/users/:userId/suppressions/:channel',
      { config: support },
      async (req, reply) => {
        if (!(CHANNELS as readonly string[]).includes(req.params.channel))
          return err(
            reply,
            400,
            ErrorCodes.BadRequest,
            `unknown channel "${req.params.channel}" (one of ${CHANNELS.join(', ')})`,
          );
        const removed = await store.unsuppress(req.params.userId, req.params.channel as Channel);
        if (removed)
          await req.audit({
            action: 'suppression.remove',
            target: `user:${req.params.userId}`,
            before: { channel: req.params.channel, suppressed: true },
            after: { channel: req.params.channel, suppressed: false },
          });
        return removed
          ? reply.code(204).send()
          : err(
              reply,
              404,
              ErrorCodes.NotFound,
              `no ${req.params.channel} suppression for this user`,
            );
      },
    );
  });

  // --- end user's preference page ----------------------------------------------------
  const pageOf = async (
    req: FastifyRequest<{ Querystring: { t?: string } }>,
    reply: FastifyReply,
  ) => {
    const token = req.query.t ?? '';
    const now = deps.now();
    const link = links.readPreferences(token, now);
    const use = link.status === 'invalid' ? null : deps.limiter.take(token, now);
    if (use && !use.allowed) {
      void reply
        .code(429)
        .header('retry-after', String(use.retryAfterS))
        .headers(PAGE_HEADERS)
        .send(tooManyRequestsPage());
      return null;
    }
    if (link.status !== 'valid') {
      void reply
        .code(link.status === 'expired' ? 410 : 400)
        .headers(PAGE_HEADERS)
        .send(link.status === 'expired' ? expiredLinkPage() : invalidLinkPage());
      return null;
    }
    return link.value.userId;
  };

  // Public: the signed link is the credential, checked by pageOf.
  app.get<{ Querystring: { t?: string } }>(
    '/p',
    { config: { auth: 'public' } },
    async (req, reply) => {
      const userId = await pageOf(req, reply);
      if (userId === null) return reply;
      const prefs = await store.get(userId);
      return reply
        .headers(PAGE_HEADERS)
        .send(preferencePage(prefs, { action: `/p?t=${encodeURIComponent(req.query.t ?? '')}` }));
    },
  );

  app.post<{ Querystring: { t?: string }; Body: Record<string, string> }>(
    '/p',
    { config: { auth: 'public' } },
    async (req, reply) => {
      const userId = await pageOf(req, reply);
      if (userId === null) return reply;
      const body = (req.body ?? {}) as Record<string, string>;
      const now = deps.now();
      const prefs = await store.get(userId);
      const records: { category: string; channel: Channel; record: ConsentRecord }[] = [];
      // Only cells the page showed are read, and only changes are written: the time of a
      // consent record stays the time the person actually changed it.
      for (const cell of String(body.shown ?? '').split(',')) {
        const m = /^([a-z][a-z0-9_-]{0,63}):([a-z]+)$/.exec(cell);
        if (!m || m[1] === 'transactional' || !(CHANNELS as readonly string[]).includes(m[2]!))
          continue;
        const category = m[1]!;
        const channel = m[2] as Channel;
        const granted = body[`c:${category}:${channel}`] !== undefined;
        if (
          granted !== isChecked(prefs, category, channel) ||
          (granted && !prefs.consents[category]?.[channel])
        ) {
          records.push({
            category,
            channel,
            record: { granted, at: now, source: 'preference_page' },
          });
        }
      }
      const all = body.all !== undefined;
      const change: { unsubscribedAll?: boolean; records: typeof records } = { records };
      if (all !== (prefs.unsubscribedAll !== null)) change.unsubscribedAll = all;
      const next = await store.apply(userId, change, { source: 'preference_page', at: now });
      return reply.headers(PAGE_HEADERS).send(
        preferencePage(next, {
          action: `/p?t=${encodeURIComponent(req.query.t ?? '')}`,
          saved: true,
        }),
      );
    },
  );
}
