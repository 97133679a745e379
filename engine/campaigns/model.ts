// What a campaign is: an audience (a segment, a saved filter over user state, or an uploaded
// list of user ids), a message (template, channels, variants, holdout), a schedule (now, at a
// time, or recurring in a fixed zone or in each user's own zone) and an optional rate. One
// TypeBox definition serves the staff API's validation and the records of the campaigns topic.
// The state machine below is the only way a campaign's state changes.
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';

export const CAMPAIGN_STATES = [
  'draft',
  'scheduled',
  'running',
  'completed',
  'stopped',
  'cancelled',
] as const;
export type CampaignState = (typeof CAMPAIGN_STATES)[number];

/** Campaign ids: what `campaign.<id>` rule ids, Redis hash tags and URLs carry without escaping. */
export const CAMPAIGN_ID_PATTERN = '^[a-z0-9][a-z0-9_-]{0,62}$';
const NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.-]*$';
const DURATION = '^[0-9]+(s|m|h|d|w)$';

const Str = (o: {
  description: string;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
}) => Type.String({ minLength: 1, maxLength: 200, ...o });

export const AudienceSchema = Type.Union(
  [
    Type.Object(
      {
        type: Type.Literal('segment'),
        segment: Str({ description: 'Id of a segment of the rules folder (rules/segments/).' }),
      },
      {
        additionalProperties: false,
        description: 'The members of a segment, as the engine sees them when the message is due.',
      },
    ),
    Type.Object(
      {
        type: Type.Literal('filter'),
        conditions: Type.Record(Type.String(), Type.Unknown(), {
          description:
            'Conditions over the user (facts user, stats, segments, now) in the rules\' format: {"all": [...]}, {"any": [...]} or {"not": {...}} (rules/README.md, "Conditions").',
        }),
      },
      {
        additionalProperties: false,
        description: 'Every user for whom the conditions hold when the message is due.',
      },
    ),
    Type.Object(
      { type: Type.Literal('list') },
      {
        additionalProperties: false,
        description: 'The user ids of an uploaded CSV (PUT /v1/campaigns/:id/audience).',
      },
    ),
  ],
  { description: 'Who the campaign is for.' },
);
export type Audience = Static<typeof AudienceSchema>;

export const VariantSchema = Type.Object(
  {
    id: Str({
      description: 'Variant id as analytics shows it, e.g. "a".',
      maxLength: 100,
      pattern: NAME_PATTERN,
    }),
    weight: Type.Number({ exclusiveMinimum: 0, description: 'Relative weight (> 0).' }),
    template: Type.Optional(
      Str({
        description: 'Template of this variant (default: the message template).',
        maxLength: 100,
        pattern: NAME_PATTERN,
      }),
    ),
  },
  { additionalProperties: false },
);

export const MessageSchema = Type.Object(
  {
    template: Str({
      description: 'Template name (templates/<name>/).',
      maxLength: 100,
      pattern: NAME_PATTERN,
    }),
    channels: Type.Array(
      Type.Union(['email', 'inapp', 'webhook', 'sms', 'push'].map((c) => Type.Literal(c))),
      { minItems: 1, uniqueItems: true, description: 'Channels to send on.' },
    ),
    category: Type.Optional(
      Type.Union([Type.Literal('marketing'), Type.Literal('transactional')], {
        description:
          '`marketing` (the default) reaches only users who opted in on the channel; `transactional` skips the opt-in, never suppression.',
      }),
    ),
    messageType: Type.Optional(
      Str({
        description:
          "The message type (LC_MESSAGE_TYPES_FILE: product_news, tips, ...), of the campaign's category: users who switched it off on a channel, or never opted in to an opt-in type, are not sent it there.",
        maxLength: 64,
        pattern: '^[a-z][a-z0-9_]{0,63}$',
      }),
    ),
    priority: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 1000,
        description:
          'Wins over lower priorities when frequency caps allow only some messages (default 0).',
      }),
    ),
    holdout: Type.Optional(
      Type.Number({
        minimum: 0,
        exclusiveMaximum: 1,
        description: 'Share of the audience recorded but not sent anything, to measure uplift.',
      }),
    ),
    variants: Type.Optional(
      Type.Array(VariantSchema, {
        minItems: 1,
        description: 'A/B variants; each user always gets the same one.',
      }),
    ),
    goal: Type.Optional(
      Type.Object(
        {
          event: Str({ description: 'Event that counts as a conversion.' }),
          within: Type.String({ pattern: DURATION, description: 'Conversion window, e.g. "7d".' }),
        },
        { additionalProperties: false },
      ),
    ),
    expiresAfter: Type.Optional(
      Type.String({
        pattern: DURATION,
        description:
          'Drop a message not delivered this long after its run (quiet hours, outages), e.g. "12h".',
      }),
    ),
  },
  {
    additionalProperties: false,
    description: 'What is sent, as a rule action with its experiment.',
  },
);
export type CampaignMessage = Static<typeof MessageSchema>;

export const ScheduleSchema = Type.Union(
  [
    Type.Object(
      { type: Type.Literal('now') },
      { additionalProperties: false, description: 'Runs once, when scheduled.' },
    ),
    Type.Object(
      {
        type: Type.Literal('at'),
        at: Str({
          description:
            'Runs once at this instant (ISO 8601 with an offset, e.g. "2026-12-04T10:00:00+01:00").',
          maxLength: 40,
        }),
      },
      { additionalProperties: false },
    ),
    Type.Object(
      {
        type: Type.Literal('recurring'),
        cron: Str({
          description:
            'Cron expression, 5 fields (minute hour day-of-month month day-of-week): "0 10 * * 5" is Fridays 10:00.',
          maxLength: 100,
        }),
        timezone: Str({
          description:
            '"user": at that local time in each user\'s own zone (their `timezone` trait; UTC when unknown). Or an IANA zone such as "Europe/Berlin".',
          maxLength: 64,
        }),
        endsAt: Type.Optional(
          Str({
            description: 'No run after this instant (ISO 8601); the campaign then completes.',
            maxLength: 40,
          }),
        ),
      },
      { additionalProperties: false },
    ),
  ],
  { description: 'When it runs.' },
);
export type CampaignSchedule = Static<typeof ScheduleSchema>;

export const ThrottleSchema = Type.Object(
  {
    perSecond: Type.Integer({
      minimum: 1,
      maximum: 1_000_000,
      description: 'Audience members fanned out per second, at most.',
    }),
  },
  {
    additionalProperties: false,
    description: 'How fast a run reaches its audience (default LC_CAMPAIGN_RATE).',
  },
);

/** What an uploaded list held (the ids themselves are stored apart, audience.ts). */
export const ListSummarySchema = Type.Object(
  {
    rows: Type.Integer({ description: 'Data rows read (header excluded).' }),
    accepted: Type.Integer({ description: 'Distinct user ids stored.' }),
    duplicates: Type.Integer({ description: 'Rows repeating an id already seen.' }),
    rejected: Type.Integer({ description: 'Rows without a usable id.' }),
    uploadedAt: Type.String(),
  },
  { additionalProperties: false },
);
export type ListSummary = Static<typeof ListSummarySchema>;

const Iso = (description: string) => Type.String({ description });

/** A campaign as the campaigns topic and the API hold it. */
export const CampaignSchema = Type.Object(
  {
    id: Type.String({ pattern: CAMPAIGN_ID_PATTERN }),
    name: Str({ description: 'What managers call it.' }),
    description: Type.Optional(Type.String({ maxLength: 2000 })),
    state: Type.Union(
      CAMPAIGN_STATES.map((s) => Type.Literal(s)),
      {
        description:
          'draft -> scheduled -> running -> completed | stopped; scheduled or draft -> cancelled.',
      },
    ),
    /** One more with every change: an edit may name the revision it was made on. */
    revision: Type.Integer({ minimum: 1 }),
    audience: AudienceSchema,
    list: Type.Union([ListSummarySchema, Type.Null()], {
      description: 'The uploaded list, for `list` audiences.',
    }),
    message: MessageSchema,
    schedule: ScheduleSchema,
    throttle: Type.Union([ThrottleSchema, Type.Null()]),
    createdAt: Iso('ISO 8601.'),
    createdBy: Type.String({ description: 'Who created it (credential id).' }),
    updatedAt: Iso('ISO 8601.'),
    updatedBy: Type.String(),
    scheduledAt: Type.Union([
      Iso('When it was scheduled: a `now` campaign runs then; recurring runs start after it.'),
      Type.Null(),
    ]),
    startedAt: Type.Union([Iso('When the first run began.'), Type.Null()]),
    endedAt: Type.Union([Iso('When it completed, was stopped or cancelled.'), Type.Null()]),
  },
  { additionalProperties: false },
);
export type Campaign = Static<typeof CampaignSchema>;

const campaignCheck = TypeCompiler.Compile(CampaignSchema);

/** Why a value read from the campaigns topic is not a campaign, or null when it is one. */
export function campaignRefusal(value: unknown): string | null {
  if (campaignCheck.Check(value)) return null;
  const first = campaignCheck.Errors(value).First();
  return first ? `${first.path || '/'}: ${first.message}` : 'not a campaign';
}

/** What a manager may change on a draft or scheduled campaign. */
export const CampaignFieldsSchema = Type.Object(
  {
    name: Type.Optional(CampaignSchema.properties.name),
    description: Type.Optional(CampaignSchema.properties.description),
    audience: Type.Optional(AudienceSchema),
    message: Type.Optional(MessageSchema),
    schedule: Type.Optional(ScheduleSchema),
    throttle: Type.Optional(Type.Union([ThrottleSchema, Type.Null()])),
  },
  { additionalProperties: false },
);
export type CampaignFields = Static<typeof CampaignFieldsSchema>;

/** What things a campaign can be asked to do, and who asks: managers, or the scheduler (`start`, `complete`). */
export type CampaignAction =
  'update' | 'upload' | 'schedule' | 'start' | 'complete' | 'stop' | 'cancel';

/**
 * The state machine. A `draft` is edited, given its list and scheduled (or dropped); a
 * `scheduled` one may still be edited or cancelled until the scheduler starts its first run
 * (its list is fixed: the scheduler may be paging through it); a `running` one can only be
 * stopped (or completes by itself: a one-off run done, a recurring one past its end).
 * `completed`, `stopped` and `cancelled` are final.
 */
export const TRANSITIONS: Readonly<
  Record<CampaignState, Readonly<Partial<Record<CampaignAction, CampaignState>>>>
> = {
  draft: { update: 'draft', upload: 'draft', schedule: 'scheduled', cancel: 'cancelled' },
  scheduled: {
    update: 'scheduled',
    start: 'running',
    complete: 'completed',
    cancel: 'cancelled',
  },
  running: { stop: 'stopped', complete: 'completed' },
  completed: {},
  stopped: {},
  cancelled: {},
};

const VERBS: Record<CampaignAction, string> = {
  update: 'edit',
  upload: 'upload an audience to',
  schedule: 'schedule',
  start: 'start',
  complete: 'complete',
  stop: 'stop',
  cancel: 'cancel',
};

const HINTS: Record<CampaignAction, string> = {
  update: 'PATCH /v1/campaigns/:id',
  upload: 'PUT /v1/campaigns/:id/audience',
  schedule: 'POST /v1/campaigns/:id/schedule',
  start: 'the scheduler starts it',
  complete: 'the scheduler completes it',
  stop: 'POST /v1/campaigns/:id/stop',
  cancel: 'POST /v1/campaigns/:id/cancel',
};

const DONE: Record<CampaignAction, string> = {
  update: 'edited',
  upload: 'given an audience',
  schedule: 'scheduled',
  start: 'started',
  complete: 'completed',
  stop: 'stopped',
  cancel: 'cancelled',
};

/** Staff-facing actions only; the scheduler's are not offered as advice. */
const STAFF_ACTIONS: readonly CampaignAction[] = ['update', 'upload', 'schedule', 'stop', 'cancel'];

export type TransitionResult = { ok: true; next: CampaignState } | { ok: false; message: string };

/** The state after `action`, or why a campaign in `state` refuses it (what it allows instead). */
export function transition(state: CampaignState, action: CampaignAction): TransitionResult {
  const next = TRANSITIONS[state][action];
  if (next !== undefined) return { ok: true, next };
  const allowed = STAFF_ACTIONS.filter((a) => TRANSITIONS[state][a] !== undefined);
  const instead =
    allowed.length === 0
      ? `a ${state} campaign is final: create a new one (POST /v1/campaigns)`
      : `a ${state} campaign can only be ${allowed.map((a) => `${DONE[a]} (${HINTS[a]})`).join(', ')}`;
  return { ok: false, message: `cannot ${VERBS[action]} a ${state} campaign: ${instead}` };
}

/** The states whose campaigns the engine evaluates (and the scheduler fans out). */
export function isLive(state: CampaignState): boolean {
  return state === 'scheduled' || state === 'running';
}
