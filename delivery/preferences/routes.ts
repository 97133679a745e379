// Preferences over HTTP: the product's API (staff roles support and service) to read and change a user's
// consent and preferences, and the end user's preference page behind a signed link.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Channel } from '../../platform/contracts.ts';
import { CHANNELS } from '../../platform/contracts.ts';
import { ErrorCodes, type ErrorCode } from '../../platform/errors.ts';
import { errorResponse, requireHttpKit } from '../../platform/http.ts';
import type { LinkUseLimiter } from '../link-limits.ts';
import type { TrackingLinks } from '../links.ts';
import type { MessageTypes } from '../../platform/message-types.ts';
import {
  normalisePatch,
  normaliseTypes,
  PreferencesError,
  typeIsOn,
  type ConsentRecord,
  type PreferencesPatch,
  type TypeRecord,
  type UserPreferences,
} from './model.ts';
import {
  PAGE_HEADERS,
  expiredLinkPage,
  invalidLinkPage,
  isChecked,
  pageTypes,
  preferencePage,
  tooManyRequestsPage,
} from './page.ts';
import type { PreferencesStore } from './store.ts';

/**
 * Double opt-in (delivery/optin/), when LC_DOUBLE_OPT_IN is on: a marketing opt-in it covers
 * is not recorded but asked for, by a confirmation email; an opt-out ends a pending request.
 */
export interface OptInGate {
  covers(category: string, channel: Channel): boolean;
  ask(a: {
    userId: string;
    category: string;
    channel: Channel;
    source: string;
    via: string;
    at: number;
  }): Promise<PendingConfirmation | null>;
  withdraw(userId: string, category: string, channel: Channel, at: number): Promise<void>;
}

/** A confirmation asked for (null from `ask`: the consent is already granted). */
export interface PendingConfirmation {
  requestId: string;
  category: string;
  channel: string;
  requestedAt: number;
  expiresAt: number;
}

/** Splits a change into what is recorded now and the opt-ins that wait for a confirmation. */
async function gated(
  gate: OptInGate | undefined,
  userId: string,
  records: { category: string; channel: Channel; record: ConsentRecord }[],
  door: { via: string; at: number },
): Promise<{ records: typeof records; pending: PendingConfirmation[] }> {
  if (!gate) return { records, pending: [] };
  const now: typeof records = [];
  const pending: PendingConfirmation[] = [];
  for (const r of records) {
    if (!gate.covers(r.category, r.channel)) now.push(r);
    else if (!r.record.granted) {
      await gate.withdraw(userId, r.category, r.channel, door.at);
      now.push(r);
    } else {
      const asked = await gate.ask({
        userId,
        category: r.category,
        channel: r.channel,
        source: r.record.source,
        via: door.via,
        at: door.at,
      });
      if (asked) pending.push(asked);
    }
  }
  return { records: now, pending };
}

export interface PreferencesRoutesDeps {
  store: PreferencesStore;
  optIn?: OptInGate;
  links: TrackingLinks;
  /** Uses of one preference link per minute before the page answers 429. */
  limiter: LinkUseLimiter;
  /** The declared message types: what the API and the page let a user switch. */
  messageTypes: MessageTypes;
  now: () => number;
}

const err = (reply: FastifyReply, status: number, code: ErrorCode, message: string) =>
  reply.code(status).send({ code, message });

const SwitchSchema = {
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
} as const;

const PatchSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    unsubscribedAll: { type: 'boolean' },
    consents: {
      type: 'object',
      additionalProperties: { type: 'object', additionalProperties: SwitchSchema },
    },
    types: {
      type: 'object',
      description:
        'message type -> channel -> on (true) or off (false), e.g. `{"tips": {"email": false}}`. Only declared types users may switch, on their channels. Opting in to an opt-in type must say its `source`.',
      additionalProperties: { type: 'object', additionalProperties: SwitchSchema },
    },
  },
} as const;

/** Each declared type with what the user gets on each of its channels (when the category consent holds). */
function typesView(prefs: UserPreferences, types: MessageTypes) {
  return types.list.map((t) => ({
    id: t.id,
    label: t.label,
    category: t.category,
    optIn: t.optIn,
    switchable: t.switchable,
    channels: Object.fromEntries(
      (Object.keys(t.channels) as Channel[]).map((c) => [c, typeIsOn(prefs, t, c)]),
    ),
  }));
}

const PreferencesSchema = {
  type: 'object',
  required: ['userId', 'unsubscribedAll', 'consents'],
  additionalProperties: true,
  properties: {
    userId: { type: 'string' },
    unsubscribedAll: {
      type: 'object',
      nullable: true,
      additionalProperties: true,
      description: 'Unsubscribed from everything: when (epoch ms) and where; null when not.',
      properties: { at: { type: 'integer' }, source: { type: 'string' } },
    },
    consents: {
      type: 'object',
      additionalProperties: true,
      description:
        'category -> channel -> the latest consent record `{granted, at (epoch ms), source}`.',
    },
    types: {
      type: 'object',
      additionalProperties: true,
      description:
        "message type -> channel -> the user's latest switch `{granted, at (epoch ms), source}`; a type without one follows its default.",
    },
    messageTypes: {
      type: 'array',
      description:
        'Every declared message type and, per channel it is sent on, whether this user gets it (when the category consent holds): their switch, or the default.',
      items: {
        type: 'object',
        additionalProperties: false,
        properties: {
          id: { type: 'string' },
          label: { type: 'string' },
          category: { type: 'string' },
          optIn: { type: 'boolean' },
          switchable: { type: 'boolean' },
          channels: { type: 'object', additionalProperties: { type: 'boolean' } },
        },
      },
    },
  },
} as const;

const LookupSchema = {
  ...PreferencesSchema,
  properties: {
    ...PreferencesSchema.properties,
    suppressions: {
      type: 'object',
      additionalProperties: true,
      description:
        '`deleted` (the user was erased) and `channels`: channel -> `{reason, at, address?}` of a hard bounce, complaint or invalid address.',
    },
    history: {
      type: 'array',
      description: 'The latest 50 changes, newest first, with time and source.',
      items: { type: 'object', additionalProperties: true },
    },
  },
} as const;

/** The signed links of an end user's pages: the token is the credential. */
const pageQuery = {
  type: 'object',
  properties: {
    t: { type: 'string', description: 'The signed token of the link (from a message).' },
  },
} as const;

const html = (description: string) => ({
  description,
  content: { 'text/html': { schema: { type: 'string' } } },
});
/**
 * A form of an end user's page (application/x-www-form-urlencoded, parsed into flat strings
 * by delivery/formbody.ts), with what its fields mean.
 */
export const formBody = (fields: Record<string, string>) => ({
  content: {
    'application/x-www-form-urlencoded': {
      schema: {
        type: 'object',
        additionalProperties: { type: 'string' },
        properties: Object.fromEntries(
          Object.entries(fields).map(([name, description]) => [
            name,
            { type: 'string', description },
          ]),
        ),
      },
    },
  },
});

/** The answers of a page behind a signed link besides its own: a bad, an expired, an overused link. */
export const LINK_PAGE_RESPONSES = {
  400: html('The link is not one the product signed (tampered or truncated): a page saying so.'),
  410: html('The link has expired: a page saying so; nothing is changed.'),
  429: html(
    'The link was used more than LC_LINK_RATE_LIMIT times in a minute: a page saying so, with Retry-After.',
  ),
};

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
    const tags = ['preferences'];

    api.get<{ Params: { userId: string } }>(
      '/v1/users/:userId/preferences',
      {
        config: preferences,
        schema: {
          operationId: 'getUserPreferences',
          summary: "A user's consent and preferences, suppressions and latest changes",
          tags,
          params: userParam,
          response: {
            200: {
              ...LookupSchema,
              description: 'What the user agreed to, and why sends to them may be suppressed.',
            },
          },
        },
      },
      async (req) => {
        const [prefs, suppressions, history] = await Promise.all([
          store.get(req.params.userId),
          store.suppressions(req.params.userId),
          store.history(req.params.userId, 50),
        ]);
        return {
          ...prefs,
          messageTypes: typesView(prefs, deps.messageTypes),
          suppressions,
          history,
        };
      },
    );

    api.patch<{ Params: { userId: string }; Body: PreferencesPatch }>(
      '/v1/users/:userId/preferences',
      {
        config: preferences,
        schema: {
          operationId: 'updateUserPreferences',
          summary: "Change a user's consent and preferences (only what the body names)",
          description:
            'A marketing opt-in, and an opt-in to a message type that needs one, must say its `source`; `at` (epoch ms or ISO time) defaults to now. With double opt-in (LC_DOUBLE_OPT_IN, the default) a marketing email opt-in is not recorded: the person gets a confirmation email, and the answer lists it under `pendingConfirmations`. `types` switches message types per channel (`{"tips": {"email": false}}`); a type that needs an opt-in is sent only once the marketing consent of its channel holds too. Unknown fields are refused, not ignored. Audited as `preferences.update`.',
          tags,
          params: userParam,
          body: PatchSchema,
          response: {
            200: {
              ...PreferencesSchema,
              properties: {
                ...PreferencesSchema.properties,
                pendingConfirmations: {
                  type: 'array',
                  description:
                    'Marketing opt-ins not recorded yet: with double opt-in (LC_DOUBLE_OPT_IN) each waits for the person to confirm through the email sent to them.',
                  items: {
                    type: 'object',
                    properties: {
                      requestId: { type: 'string' },
                      category: { type: 'string' },
                      channel: { type: 'string' },
                      requestedAt: { type: 'integer' },
                      expiresAt: { type: 'integer' },
                    },
                  },
                },
              },
              description: 'The preferences after the change.',
            },
            400: errorResponse(
              'A value is invalid (LC_ERR_BAD_REQUEST), or `types` names a type that is not declared, that users cannot switch, or a channel it is not sent on (LC_ERR_UNKNOWN_MESSAGE_TYPE); `message` says which.',
            ),
          },
        },
        // The default validator strips unknown fields; a typo (`unsubscribeAll`) must not be a silent no-op.
        preValidation: async (req, reply) => {
          const body = req.body as Record<string, unknown> | null;
          const unknown =
            body && typeof body === 'object'
              ? Object.keys(body).filter(
                  (k) => k !== 'unsubscribedAll' && k !== 'consents' && k !== 'types',
                )
              : [];
          if (unknown.length > 0)
            return err(
              reply,
              400,
              ErrorCodes.BadRequest,
              `unknown field(s) ${unknown.join(', ')}; expected unsubscribedAll, consents and/or types`,
            );
        },
      },
      async (req, reply) => {
        const now = deps.now();
        try {
          const asked = {
            ...normalisePatch(req.body, now, 'admin_api', true),
            types: normaliseTypes(req.body.types, deps.messageTypes, now, 'admin_api', true),
          };
          const before = await store.get(req.params.userId);
          const { records, pending } = await gated(deps.optIn, req.params.userId, asked.records, {
            via: 'admin_api',
            at: now,
          });
          const change = { ...asked, records };
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
            after: pending.length > 0 ? { ...after, pendingConfirmations: pending } : after,
          });
          return { ...after, pendingConfirmations: pending };
        } catch (e) {
          if (e instanceof PreferencesError) return err(reply, 400, e.code, e.message);
          throw e;
        }
      },
    );

    api.post<{ Params: { userId: string } }>(
      '/v1/users/:userId/preferences/link',
      {
        config: preferences,
        schema: {
          operationId: 'createPreferencesLink',
          summary: "A signed link to the user's preference page, to put in the product",
          tags,
          params: userParam,
          response: {
            200: {
              type: 'object',
              required: ['url'],
              description: 'The link (valid LC_PREFERENCES_LINK_TTL_DAYS days).',
              properties: { url: { type: 'string', format: 'uri' } },
            },
          },
        },
      },
      async (req) => {
        return { url: links.preferences(req.params.userId, deps.now()) };
      },
    );

    api.delete<{ Params: { userId: string; channel: string } }>(
      '/v1/users/:userId/suppressions/:channel',
      {
        config: support,
        schema: {
          operationId: 'liftSuppression',
          summary: "Lift a suppression of one of the user's channels (a bounce, a complaint)",
          description:
            'For when the user fixed their address. Audited as `suppression.remove`. A deleted user stays suppressed.',
          tags,
          params: {
            type: 'object',
            required: ['userId', 'channel'],
            properties: {
              userId: userParam.properties.userId,
              channel: { type: 'string', description: `One of ${CHANNELS.join(', ')}.` },
            },
          },
          response: {
            204: { type: 'null', description: 'The suppression is lifted.' },
            400: errorResponse(`The channel is not one of ${CHANNELS.join(', ')}.`),
            404: errorResponse('The user has no suppression on this channel.'),
          },
        },
      },
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
  const pageTags = ['pages'];
  app.get<{ Querystring: { t?: string } }>(
    '/p',
    {
      config: { auth: 'public' },
      schema: {
        operationId: 'showPreferencePage',
        summary: "The end user's preference page (signed link)",
        description:
          'A table of categories × channels, one of the message types a user may switch × the channels each is sent on (labels and descriptions from the message types file), and an "unsubscribe from everything" box; it posts to the same URL.',
        tags: pageTags,
        querystring: pageQuery,
        response: { 200: html('The preference page.'), ...LINK_PAGE_RESPONSES },
      },
    },
    async (req, reply) => {
      const userId = await pageOf(req, reply);
      if (userId === null) return reply;
      const prefs = await store.get(userId);
      return reply.headers(PAGE_HEADERS).send(
        preferencePage(prefs, {
          action: `/p?t=${encodeURIComponent(req.query.t ?? '')}`,
          types: deps.messageTypes,
        }),
      );
    },
  );

  app.post<{ Querystring: { t?: string }; Body: Record<string, string> }>(
    '/p',
    {
      config: { auth: 'public' },
      schema: {
        operationId: 'savePreferencePage',
        summary: 'Save the preference page (its form)',
        description:
          'Each checked cell is a field `c:<category>:<channel>`, or `t:<message type>:<channel>` for a message type. Writes consent records and message type switches with source `preference_page`, only for the cells the page showed (`shown`, `shownTypes`) that changed.',
        tags: pageTags,
        querystring: pageQuery,
        body: formBody({
          shown: 'The `category:channel` cells the page showed, comma-separated.',
          shownTypes: 'The `messageType:channel` cells the page showed, comma-separated.',
          all: 'Present: unsubscribe from everything.',
        }),
        response: { 200: html('The preference page, saved.'), ...LINK_PAGE_RESPONSES },
      },
    },
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
      // Message types: only switchable types on the page's channels they are sent on; a box left
      // as the default shows it is not a choice the person made, so nothing is written for it.
      const types: TypeRecord[] = [];
      const offered = new Map(pageTypes(deps.messageTypes).map((t) => [t.type.id, t]));
      for (const cell of new Set(String(body.shownTypes ?? '').split(','))) {
        const m = /^([a-z][a-z0-9_]{0,63}):([a-z]+)$/.exec(cell);
        const row = m ? offered.get(m[1]!) : undefined;
        if (!m || !row || !row.channels.includes(m[2] as Channel)) continue;
        const channel = m[2] as Channel;
        const on = body[`t:${row.type.id}:${channel}`] !== undefined;
        if (on !== typeIsOn(prefs, row.type, channel))
          types.push({
            messageType: row.type.id,
            channel,
            record: { granted: on, at: now, source: 'preference_page' },
          });
      }
      const all = body.all !== undefined;
      const { records: recordNow, pending } = await gated(deps.optIn, userId, records, {
        via: 'preference_page',
        at: now,
      });
      const change: { unsubscribedAll?: boolean; records: typeof records; types: TypeRecord[] } = {
        records: recordNow,
        types,
      };
      if (all !== (prefs.unsubscribedAll !== null)) change.unsubscribedAll = all;
      const next = await store.apply(userId, change, { source: 'preference_page', at: now });
      return reply.headers(PAGE_HEADERS).send(
        preferencePage(next, {
          action: `/p?t=${encodeURIComponent(req.query.t ?? '')}`,
          saved: true,
          confirmationSent: pending.length > 0,
          types: deps.messageTypes,
        }),
      );
    },
  );
}
