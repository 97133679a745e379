// User lookup for support staff (roles support, admin):
//   GET /v1/users?q=        find users by exact userId, email address (case-insensitive) or
//                           phone number (punctuation ignored), as the engine stores them now
//   GET /v1/users/:userId   everything about one user in one answer, each section from the
//                           room that owns it: the engine's profile (traits, segments, stats,
//                           rule history) and pending timers; delivery's preferences with
//                           their history, suppressions and in-app inbox; and where the
//                           user's messages are listed. A section that cannot be read says so
//                           with a coded error and the others still answer; 404 for a user
//                           the engine never saw or erased.
// The rooms are read through the ports of platform/users.ts (UserLookup: the engine;
// UserMessaging: delivery), never written.
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { ErrorCodes, LifecycleError, errorMessage, type ErrorCode } from '../platform/errors.ts';
import { errorResponse, requireHttpKit } from '../platform/http.ts';
import type { UserLookup, UserMessaging } from '../platform/users.ts';

export interface UserRoutesOptions {
  users: UserLookup;
  messaging: UserMessaging;
}

/** Preference changes and in-app messages a lookup shows (the newest). */
export const LOOKUP_HISTORY = 50;
export const LOOKUP_INBOX = 20;

const support = { auth: { roles: ['support'] } } as const;

/** A section that could not be read. */
export interface SectionError {
  error: { code: ErrorCode; message: string };
}

const ErrorSchema = {
  type: 'object',
  description:
    'Set instead of the section when it could not be read; the other sections still answer.',
  required: ['code', 'message'],
  properties: { code: { type: 'string' }, message: { type: 'string' } },
} as const;

const ProfileSchema = {
  type: 'object',
  description: "The engine's state of the user.",
  properties: {
    userId: { type: 'string' },
    traits: { type: 'object', additionalProperties: true },
    stats: {
      type: 'object',
      description: 'Per event type: count, first and last time (epoch ms).',
      additionalProperties: {
        type: 'object',
        properties: {
          count: { type: 'integer' },
          first: { type: 'integer', nullable: true },
          last: { type: 'integer', nullable: true },
        },
      },
    },
    segments: { type: 'array', items: { type: 'string' } },
    rules: {
      type: 'object',
      description:
        'Rule id -> fires and the last time it fired (epoch ms); for a digest rule whose window held too few items to send, also skipped and the last time it was (epoch ms).',
      additionalProperties: {
        type: 'object',
        properties: {
          fires: { type: 'integer' },
          lastFiredAt: { type: 'integer', nullable: true },
          skipped: { type: 'integer' },
          lastSkippedAt: { type: 'integer' },
        },
      },
    },
    error: ErrorSchema,
  },
} as const;

const TimersSchema = {
  type: 'object',
  description: "The engine's delayed triggers waiting for the user, soonest first.",
  properties: {
    pending: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          id: { type: 'string' },
          ruleId: {
            type: 'string',
            description: '`@segments` for a recheck of time-based segments',
          },
          fires: {
            type: 'string',
            enum: ['rule', 'segments'],
            description:
              "`rule`: the rule's conditions are evaluated then (it may send); `segments`: memberships are re-evaluated",
          },
          dueAt: { type: 'integer', description: 'epoch ms' },
          trigger: {
            type: 'object',
            nullable: true,
            description: 'The event that set the timer (the rule sees it as `event`).',
            properties: {
              id: { type: 'string' },
              type: { type: 'string' },
              ts: { type: 'integer' },
            },
          },
        },
      },
    },
    error: ErrorSchema,
  },
} as const;

const ConsentSchema = {
  type: 'object',
  properties: {
    granted: { type: 'boolean' },
    at: { type: 'integer' },
    source: { type: 'string' },
  },
} as const;

const PreferencesSchema = {
  type: 'object',
  description: `Current consent per category and channel, and the latest ${LOOKUP_HISTORY} changes (newest first).`,
  properties: {
    unsubscribedAll: {
      type: 'object',
      nullable: true,
      properties: { at: { type: 'integer' }, source: { type: 'string' } },
    },
    consents: {
      type: 'object',
      description: 'category -> channel -> the latest consent record',
      additionalProperties: { type: 'object', additionalProperties: ConsentSchema },
    },
    types: {
      type: 'object',
      description:
        "message type -> channel -> the user's latest switch (granted: they want it there); types without a switch follow their defaults",
      additionalProperties: { type: 'object', additionalProperties: ConsentSchema },
    },
    history: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          kind: {
            type: 'string',
            enum: ['consent', 'message_type', 'unsubscribe_all', 'resubscribe_all'],
          },
          category: { type: 'string' },
          messageType: {
            type: 'string',
            description: 'the message type switched (kind message_type)',
          },
          channel: { type: 'string' },
          granted: { type: 'boolean' },
          at: { type: 'integer', description: 'when the consent was given or withdrawn' },
          source: { type: 'string', description: 'where the user gave it' },
          via: {
            type: 'string',
            description:
              'the door the change came through: admin_api, preference_page, one_click_unsubscribe, unsubscribe_page',
          },
          recordedAt: { type: 'integer' },
          by: {
            type: 'object',
            description: 'the staff credential that made the change (staff API only)',
            properties: { actor: { type: 'string' }, role: { type: 'string', nullable: true } },
          },
        },
      },
    },
    error: ErrorSchema,
  },
} as const;

const SuppressionSchema = {
  type: 'object',
  properties: {
    reason: { type: 'string' },
    at: { type: 'integer' },
    address: { type: 'string', description: 'the address or token that failed' },
  },
} as const;

const SuppressionsSchema = {
  type: 'object',
  description: 'Channels (and addresses) no message goes to, and why since when.',
  properties: {
    deleted: { ...SuppressionSchema, nullable: true },
    channels: { type: 'object', additionalProperties: SuppressionSchema },
    error: ErrorSchema,
  },
} as const;

const InboxSchema = {
  type: 'object',
  description: `The in-app inbox: unread count and the latest ${LOOKUP_INBOX} messages.`,
  properties: {
    unread: { type: 'integer' },
    messages: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          id: { type: 'string', description: 'the sendId' },
          ruleId: { type: 'string' },
          category: { type: 'string' },
          title: { type: 'string' },
          body: { type: 'string' },
          url: { type: 'string' },
          createdAt: { type: 'integer' },
          readAt: { type: 'integer', nullable: true },
        },
      },
    },
    error: ErrorSchema,
  },
} as const;

const userParam = {
  type: 'object',
  required: ['userId'],
  properties: { userId: { type: 'string', minLength: 1, maxLength: 512 } },
} as const;

const userPath = (userId: string) => `/v1/users/${encodeURIComponent(userId)}`;

/** Loads one section; a failure becomes the section's coded error (and a log line), never the whole answer's. */
async function section<T extends object>(
  log: FastifyBaseLogger,
  name: string,
  owner: string,
  load: () => Promise<T>,
): Promise<T | SectionError> {
  try {
    return await load();
  } catch (err) {
    log.warn({ section: name, err: errorMessage(err) }, 'user lookup: a section failed to load');
    if (err instanceof LifecycleError && err.status !== 500)
      return { error: { code: err.code, message: `${name}: ${err.message}` } };
    return {
      error: {
        code: ErrorCodes.Unavailable,
        message: `${name} could not be read from ${owner} (${errorMessage(err).slice(0, 200)}); the other sections are current, ask again to retry this one`,
      },
    };
  }
}

export async function userRoutes(app: FastifyInstance, opts: UserRoutesOptions): Promise<void> {
  requireHttpKit(app);
  const { users, messaging } = opts;

  app.get<{ Querystring: { q: string; limit?: number } }>(
    '/v1/users',
    {
      config: support,
      schema: {
        tags: ['users'],
        summary: 'Find users by userId, email address or phone number',
        description:
          "Exact userId, email address (case-insensitive) or phone number (spaces, dashes, dots, slashes and parentheses ignored; `00` read as `+`), matched against the traits the engine holds for the user now. Erased users are not found. The engine files contacts as it applies each user's events, so a change is findable once the engine has applied it.",
        querystring: {
          type: 'object',
          required: ['q'],
          properties: {
            q: { type: 'string', minLength: 1, maxLength: 512 },
            limit: { type: 'integer', minimum: 1, maximum: 100, default: 20 },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              users: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    userId: { type: 'string' },
                    matched: {
                      type: 'array',
                      items: { type: 'string', enum: ['userId', 'email', 'phone'] },
                    },
                    traits: { type: 'object', additionalProperties: true },
                    url: { type: 'string', description: 'the full lookup of this user' },
                  },
                },
              },
            },
          },
        },
      },
    },
    async (req) => {
      const q = req.query.q.trim();
      if (q === '')
        throw new LifecycleError(
          ErrorCodes.BadRequest,
          'q is blank: give a userId, an email address or a phone number',
          { details: { field: 'q' } },
        );
      let found;
      try {
        found = await users.find(q, req.query.limit ?? 20);
      } catch (err) {
        req.log.warn({ err: errorMessage(err) }, 'user search failed');
        throw new LifecycleError(
          ErrorCodes.Unavailable,
          `the engine's store could not be searched (${errorMessage(err).slice(0, 200)}); retry, or look the user up by id`,
          { cause: err },
        );
      }
      return { users: found.map((u) => ({ ...u, url: userPath(u.userId) })) };
    },
  );

  app.get<{ Params: { userId: string } }>(
    '/v1/users/:userId',
    {
      config: support,
      schema: {
        tags: ['users'],
        summary: 'Everything about one user, each part from the room that holds it',
        description:
          "The engine's profile (traits, segments, stats, rule history) and pending timers; delivery's current preferences and their history, suppressions and in-app inbox; links to the user's messages and preferences. A section that cannot be read carries `error: {code, message}` instead, and the rest still answers.",
        params: userParam,
        response: {
          200: {
            type: 'object',
            properties: {
              profile: ProfileSchema,
              timers: TimersSchema,
              preferences: PreferencesSchema,
              suppressions: SuppressionsSchema,
              inbox: InboxSchema,
              links: {
                type: 'object',
                properties: {
                  messages: {
                    type: 'string',
                    description:
                      'the messages sent to the user (message log), with content and status',
                  },
                  preferences: { type: 'string', description: 'read and change the preferences' },
                },
              },
            },
          },
          404: errorResponse('The engine has no state for this user: never seen, or erased.'),
        },
      },
    },
    async (req, reply) => {
      const { userId } = req.params;
      const log = req.log;
      const [profile, timers, preferences, suppressions, inbox] = await Promise.all([
        section(log, 'profile', "the engine's state", async () => {
          const p = await users.profile(userId);
          return p ?? { missing: true as const };
        }),
        section(log, 'timers', "the engine's timers", async () => ({
          pending: (await users.pendingTimers(userId)) ?? [],
        })),
        section(log, 'preferences', "delivery's preference store", () =>
          messaging.preferences(userId, LOOKUP_HISTORY),
        ),
        section(log, 'suppressions', "delivery's preference store", () =>
          messaging.suppressions(userId),
        ),
        section(log, 'inbox', 'the in-app inbox', () => messaging.inbox(userId, LOOKUP_INBOX)),
      ]);
      if ('missing' in profile)
        return reply.code(404).send({
          code: ErrorCodes.NotFound,
          message: `no user "${userId}": the engine has no state for this id (never seen, or erased); search by email or phone with GET /v1/users?q=`,
        });
      return {
        profile,
        timers,
        preferences,
        suppressions,
        inbox,
        links: {
          messages: `/v1/messages?userId=${encodeURIComponent(userId)}`,
          preferences: `${userPath(userId)}/preferences`,
        },
      };
    },
  );
}
