// Campaigns for managers (roles marketer and admin; analysts may read them):
//   POST  /v1/campaigns                     create a draft {name, audience, message, schedule, throttle?}
//   GET   /v1/campaigns                     list (?state=running)
//   GET   /v1/campaigns/:id                 the campaign and its progress (fan-out and outcomes)
//   PATCH /v1/campaigns/:id                 edit a draft or scheduled campaign (optionally at a `revision`)
//   PUT   /v1/campaigns/:id/audience        upload the list of a `list` audience as CSV (a draft's)
//   POST  /v1/campaigns/:id/schedule        draft -> scheduled (checked once more against the rules in force)
//   POST  /v1/campaigns/:id/stop            running -> stopped: the fan-out ends before its next page, the engine drops the rule
//   POST  /v1/campaigns/:id/cancel          draft or scheduled -> cancelled
// Every change goes through the campaigns table (one lock per campaign, read your writes) and
// the audit log, with the campaign before and after; an upload is audited by its counts.
import { randomUUID } from 'node:crypto';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { ValueError } from '@sinclair/typebox/errors';
import { ErrorCodes, LifecycleError, errorMessage } from '../platform/errors.ts';
import { errorResponse, requireHttpKit } from '../platform/http.ts';
import type { MessageTypes } from '../platform/message-types.ts';
import type { RuleSet } from '../rules/index.ts';
import {
  CAMPAIGN_ID_PATTERN,
  CAMPAIGN_STATES,
  CampaignFieldsSchema,
  CampaignSchema,
  campaignProblems,
  campaignRuleId,
  fanOutSummary,
  parseAudienceCsv,
  parseInstant,
  transition,
  type AudienceLists,
  type Campaign,
  type CampaignAction,
  type CampaignTable,
  type ProgressStore,
} from '../engine/index.ts';
import { campaignOutcomes } from '../analytics/index.ts';
import type { AnalyticsStore } from '../analytics/store.ts';

export interface CampaignRoutesOptions {
  campaigns: CampaignTable;
  lists: AudienceLists;
  /** The scheduler's stored fan-out progress (read only). */
  progress: Pick<ProgressStore, 'load'>;
  /** The rule files in force: audiences and messages are checked against them. */
  rules: () => RuleSet;
  /** Template names a message may name; null: not checked here (delivery reports unknown ones). */
  templates: () => Promise<Set<string> | null>;
  /** The declared message types a message may name (LC_MESSAGE_TYPES_FILE); absent: not checked here. */
  messageTypes?: MessageTypes;
  /** Where sent, suppressed and failed are counted; absent: progress has fan-out figures only. */
  analytics?: () => Promise<{ store: AnalyticsStore; database: string }>;
  limits: { listMaxRows: number; listMaxBytes: number };
  now: () => number;
  /** New campaign ids (tests fix them). */
  newId?: () => string;
}

const marketer = { auth: { roles: ['marketer'] } } as const;
const readers = { auth: { roles: ['marketer', 'analyst'] } } as const;

const Id = Type.Object({ id: Type.String({ pattern: CAMPAIGN_ID_PATTERN }) });
const Revision = Type.Optional(
  Type.Integer({
    minimum: 1,
    description:
      'The revision the change was made on: refused with 409 when the campaign changed since (someone else edited it).',
  }),
);
const CreateBody = Type.Object(
  {
    name: CampaignSchema.properties.name,
    description: CampaignSchema.properties.description,
    audience: CampaignSchema.properties.audience,
    message: CampaignSchema.properties.message,
    schedule: CampaignSchema.properties.schedule,
    throttle: Type.Optional(CampaignSchema.properties.throttle),
  },
  { additionalProperties: false },
);
const UpdateBody = Type.Composite([CampaignFieldsSchema, Type.Object({ revision: Revision })], {
  additionalProperties: false,
});
const ActionBody = Type.Union([
  Type.Object({ revision: Revision }, { additionalProperties: false }),
  Type.Null(),
]);

const Count = (description: string) => Type.Integer({ description });
const ProgressSchema = Type.Object({
  runs: Count('Runs (per zone, for user-zone schedules) fanned out to the end.'),
  skippedRuns: Count(
    'Runs given up: older than the catch-up window (LC_SCHEDULER_CATCHUP_MS) when a scheduler got to them.',
  ),
  planned: Count(
    'Audience members the runs so far were planned for (counted as each run started).',
  ),
  fannedOut: Count("Members published onto the events topic (the scheduler's stored position)."),
  inProgress: Type.Array(
    Type.Object({
      zone: Type.String(),
      at: Type.String(),
      planned: Type.Integer(),
      fannedOut: Type.Integer(),
    }),
    { description: 'Runs being fanned out now.' },
  ),
  outcomes: Type.Union(
    [
      Type.Object({
        matched: Count(
          'Send commands made: members the audience condition matched (holdouts included).',
        ),
        holdout: Count('Of those, holdouts: recorded, never sent.'),
        sent: Count('Accepted by a provider.'),
        suppressed: Count('Stopped by consent, suppression, caps or expiry.'),
        failed: Count('Failed without being sent.'),
        source: Type.Literal('analytics'),
        asOf: Type.String({
          description: "When analytics was asked; it trails delivery by the sink's flush interval.",
        }),
      }),
      Type.Null(),
    ],
    {
      description:
        "From analytics (sends by campaign_id, delivery outcomes by the campaign's rule); null when analytics cannot answer (`outcomesError`).",
    },
  ),
  outcomesError: Type.Optional(Type.String()),
});
const ReportSchema = Type.Object({
  rows: Count('Data rows read (header and blank lines excluded).'),
  accepted: Count('Distinct user ids stored.'),
  duplicates: Count('Rows repeating an id.'),
  rejected: Count('Rows without a usable id.'),
  header: Type.Boolean({ description: 'The first row was a header naming the id column.' }),
  problems: Type.Array(Type.Object({ line: Type.Integer(), message: Type.String() }), {
    description: 'The first problems, with their line.',
  }),
});
const One = Type.Object({ campaign: CampaignSchema });
const errors = {
  400: errorResponse('A bad field: the message names it and says what is allowed.'),
  404: errorResponse('No campaign with this id.'),
  409: errorResponse(
    'LC_ERR_CONFLICT: the campaign is not in a state that allows this, or someone changed it first (revision); the message says which.',
  ),
};

/** TypeBox validates the bodies: Ajv's removeAdditional would strip fields while it tries a union's branches. */
function validatorCompiler({ schema }: { schema: unknown }) {
  const check = TypeCompiler.Compile(schema as TSchema);
  return (body: unknown) => {
    // An action posted without a body reads as one without a revision.
    const data = body === undefined ? null : body;
    if (check.Check(data)) return { value: data };
    const first = check.Errors(data).First();
    const err = new Error(first?.message ?? 'invalid') as Error & {
      validation: { instancePath: string; message: string; keyword: string; params: object }[];
    };
    err.validation = [
      {
        instancePath: first?.path ?? '',
        message: describeError(first),
        keyword: 'typebox',
        params: {},
      },
    ];
    return { error: err };
  };
}

/** A TypeBox error as a sentence; for a union, the forms it accepts. */
function describeError(e: ValueError | undefined): string {
  if (!e) return 'is invalid';
  const s = e.schema as {
    anyOf?: { properties?: Record<string, { const?: unknown }>; required?: string[] }[];
  };
  if (s.anyOf) {
    const forms = s.anyOf
      .map((o) => {
        const t = o.properties?.type?.const;
        if (t === undefined) return null;
        const rest = (o.required ?? []).filter((k) => k !== 'type');
        return `{"type": ${JSON.stringify(t)}${rest.map((k) => `, "${k}": ...`).join('')}}`;
      })
      .filter((f): f is string => f !== null);
    if (forms.length > 0) return `must be one of ${forms.join(' | ')}`;
  }
  const m = e.message.replace(/^Expected /, 'must be ');
  return m.charAt(0).toLowerCase() + m.slice(1);
}

function notFound(id: string): LifecycleError {
  return new LifecycleError(
    ErrorCodes.NotFound,
    `no campaign "${id}": GET /v1/campaigns lists them`,
  );
}

function refuse(c: Campaign, action: CampaignAction): never {
  const t = transition(c.state, action);
  if (t.ok) throw new Error('refuse called for an allowed transition');
  throw new LifecycleError(ErrorCodes.Conflict, `campaign "${c.id}": ${t.message}`, {
    details: { state: c.state },
  });
}

function checkRevision(c: Campaign, revision: number | undefined): void {
  if (revision !== undefined && revision !== c.revision)
    throw new LifecycleError(
      ErrorCodes.Conflict,
      `campaign "${c.id}" is at revision ${c.revision}, the change was made on revision ${revision}: reload it (GET /v1/campaigns/${c.id}) and make the change again`,
      { details: { revision: c.revision } },
    );
}

function invalid(problems: { field: string; message: string }[]): LifecycleError {
  const first = problems[0]!;
  return new LifecycleError(
    ErrorCodes.BadRequest,
    `${first.field}: ${first.message}${problems.length > 1 ? ` (and ${problems.length - 1} more in details.problems)` : ''}`,
    { details: { field: first.field, problems } },
  );
}

export async function campaignRoutes(
  app: FastifyInstance,
  opts: CampaignRoutesOptions,
): Promise<void> {
  requireHttpKit(app);
  app.setValidatorCompiler(validatorCompiler);
  const newId = opts.newId ?? (() => `cmp_${randomUUID().replace(/-/g, '').slice(0, 16)}`);
  const iso = () => new Date(opts.now()).toISOString();
  const actor = (req: FastifyRequest) => req.principal?.id ?? 'anonymous';

  async function check(c: Campaign): Promise<void> {
    const templates = await opts.templates();
    const problems = campaignProblems(c, opts.rules(), {
      ...(templates ? { templates } : {}),
      ...(opts.messageTypes ? { messageTypes: opts.messageTypes } : {}),
    });
    if (problems.length > 0) throw invalid(problems);
  }

  /** Changes a campaign under its lock on its latest state, refusing what its state does not allow. */
  async function act(
    req: FastifyRequest,
    id: string,
    action: CampaignAction,
    revision: number | undefined,
    make: (c: Campaign, next: Campaign['state']) => Campaign | Promise<Campaign>,
  ): Promise<{ before: Campaign; after: Campaign }> {
    if (!opts.campaigns.get(id)) await opts.campaigns.syncToEnd();
    if (!opts.campaigns.get(id)) throw notFound(id);
    const { before, after } = await opts.campaigns.change(id, async (cur) => {
      if (!cur) throw notFound(id);
      checkRevision(cur, revision);
      const t = transition(cur.state, action);
      if (!t.ok) refuse(cur, action);
      const next = await make(cur, t.next);
      return { ...next, state: t.next, updatedAt: iso(), updatedBy: actor(req) };
    });
    await req.audit({
      action: `campaign.${action}`,
      target: `campaign:${id}`,
      before: before ?? null,
      after: after ?? null,
    });
    return { before: before!, after: after! };
  }

  app.post<{ Body: Static<typeof CreateBody> }>(
    '/v1/campaigns',
    {
      config: marketer,
      schema: {
        tags: ['campaigns'],
        summary: 'Create a campaign (a draft)',
        description:
          "A draft campaign: audience (a segment, a filter over user state, or a list uploaded next with PUT /v1/campaigns/:id/audience), message (template, channels, variants, holdout; marketing unless said otherwise), schedule (now, at an instant, or recurring by cron in a fixed zone or each user's zone) and an optional rate. Checked against the rules in force; schedule it with POST /v1/campaigns/:id/schedule.",
        body: CreateBody,
        response: { 201: One, ...errors },
      },
    },
    async (req, reply) => {
      const at = iso();
      const draft: Campaign = {
        id: newId(),
        name: req.body.name,
        ...(req.body.description !== undefined ? { description: req.body.description } : {}),
        state: 'draft',
        revision: 1,
        audience: req.body.audience,
        list: null,
        message: req.body.message,
        schedule: req.body.schedule,
        throttle: req.body.throttle ?? null,
        createdAt: at,
        createdBy: actor(req),
        updatedAt: at,
        updatedBy: actor(req),
        scheduledAt: null,
        startedAt: null,
        endedAt: null,
      };
      await check(draft);
      const { after } = await opts.campaigns.change(draft.id, (cur) => {
        if (cur) throw new LifecycleError(ErrorCodes.Conflict, `campaign "${draft.id}" exists`);
        return draft;
      });
      await req.audit({ action: 'campaign.create', target: `campaign:${draft.id}`, after });
      return reply.code(201).send({ campaign: after });
    },
  );

  app.get<{ Querystring: { state?: Campaign['state'] } }>(
    '/v1/campaigns',
    {
      config: readers,
      schema: {
        tags: ['campaigns'],
        summary: 'List campaigns, newest first',
        description: 'Every campaign (or those in one state), without progress.',
        querystring: Type.Object({
          state: Type.Optional(Type.Union(CAMPAIGN_STATES.map((s) => Type.Literal(s)))),
        }),
        response: {
          200: Type.Object({ campaigns: Type.Array(CampaignSchema) }),
          400: errorResponse('A bad filter: the message names it.'),
        },
      },
    },
    async (req) => ({
      campaigns: opts.campaigns
        .list()
        .filter((c) => req.query.state === undefined || c.state === req.query.state),
    }),
  );

  app.get<{ Params: Static<typeof Id> }>(
    '/v1/campaigns/:id',
    {
      config: readers,
      schema: {
        tags: ['campaigns'],
        summary: 'A campaign and its progress',
        description:
          "Progress: runs, planned and fanned out from the scheduler's stored position (exact), sent, suppressed and failed from analytics (behind delivery by the sink's flush interval).",
        params: Id,
        response: {
          200: Type.Object({ campaign: CampaignSchema, progress: ProgressSchema }),
          ...errors,
        },
      },
    },
    async (req) => {
      const id = req.params.id;
      let c = opts.campaigns.get(id);
      if (!c) {
        await opts.campaigns.syncToEnd();
        c = opts.campaigns.get(id);
      }
      if (!c) throw notFound(id);
      const fanOut = fanOutSummary(await opts.progress.load(campaignRuleId(id)));
      let outcomes: Static<typeof ProgressSchema>['outcomes'] = null;
      let outcomesError: string | undefined;
      if (opts.analytics) {
        try {
          const { store, database } = await opts.analytics();
          const asOf = iso();
          outcomes = {
            ...(await campaignOutcomes(store, database, {
              campaignId: id,
              ruleId: campaignRuleId(id),
            })),
            source: 'analytics',
            asOf,
          };
        } catch (err) {
          outcomesError = `analytics did not answer: ${errorMessage(err)}`;
          req.log.warn({ err: errorMessage(err), campaignId: id }, 'campaign outcomes unavailable');
        }
      } else outcomesError = 'no analytics store is configured';
      return {
        campaign: c,
        progress: { ...fanOut, outcomes, ...(outcomesError ? { outcomesError } : {}) },
      };
    },
  );

  app.patch<{ Params: Static<typeof Id>; Body: Static<typeof UpdateBody> }>(
    '/v1/campaigns/:id',
    {
      config: marketer,
      schema: {
        tags: ['campaigns'],
        summary: 'Edit a draft or scheduled campaign',
        description:
          'Fields given replace the stored ones (`throttle: null` removes the rate). A scheduled campaign can be edited until its first run starts; give `revision` to refuse the edit when someone changed the campaign meanwhile.',
        params: Id,
        body: UpdateBody,
        response: { 200: One, ...errors },
      },
    },
    async (req) => {
      const { revision, ...fields } = req.body;
      const { after } = await act(req, req.params.id, 'update', revision, async (cur) => {
        const next = { ...cur, ...fields } as Campaign;
        if (fields.audience && fields.audience.type !== 'list') next.list = null;
        await check(next);
        return next;
      });
      return { campaign: after };
    },
  );

  app.post<{ Params: Static<typeof Id>; Body: Static<typeof ActionBody> }>(
    '/v1/campaigns/:id/schedule',
    {
      config: marketer,
      schema: {
        tags: ['campaigns'],
        summary: 'Schedule a draft campaign',
        description:
          'draft -> scheduled. Checked again against the rules in force; a `list` audience needs an uploaded list, an `at` schedule a future instant. A `now` campaign runs at once; recurring runs start with the first occurrence after this moment.',
        params: Id,
        body: ActionBody,
        response: { 200: One, ...errors },
      },
    },
    async (req) => {
      const { after } = await act(
        req,
        req.params.id,
        'schedule',
        req.body?.revision,
        async (cur) => {
          await check(cur);
          const now = opts.now();
          const s = cur.schedule;
          if (cur.audience.type === 'list' && (cur.list?.accepted ?? 0) === 0)
            throw invalid([
              {
                field: 'list',
                message: `no list uploaded: PUT /v1/campaigns/${cur.id}/audience with a CSV of user ids first`,
              },
            ]);
          if (s.type === 'at' && (parseInstant(s.at) ?? 0) <= now)
            throw invalid([
              {
                field: 'schedule.at',
                message: `${s.at} has passed: set a future instant, or {"type": "now"}`,
              },
            ]);
          if (
            s.type === 'recurring' &&
            s.endsAt !== undefined &&
            (parseInstant(s.endsAt) ?? 0) <= now
          )
            throw invalid([
              { field: 'schedule.endsAt', message: `${s.endsAt} has passed: no run would be left` },
            ]);
          return { ...cur, scheduledAt: new Date(now).toISOString() };
        },
      );
      return { campaign: after };
    },
  );

  for (const action of ['stop', 'cancel'] as const)
    app.post<{ Params: Static<typeof Id>; Body: Static<typeof ActionBody> }>(
      `/v1/campaigns/:id/${action}`,
      {
        config: marketer,
        schema: {
          tags: ['campaigns'],
          summary:
            action === 'stop' ? 'Stop a running campaign' : 'Cancel a draft or scheduled campaign',
          description:
            action === 'stop'
              ? 'running -> stopped, for good: the fan-out ends before its next page, and members already published match nothing once the engine reads the stop (within about half a second).'
              : 'draft or scheduled -> cancelled, for good: nothing of it is sent.',
          params: Id,
          body: ActionBody,
          response: { 200: One, ...errors },
        },
      },
      async (req) => {
        const { after } = await act(req, req.params.id, action, req.body?.revision, (cur) => ({
          ...cur,
          endedAt: iso(),
        }));
        return { campaign: after };
      },
    );

  await app.register(async (scope) => {
    // The list arrives as CSV; the parser takes the body whole, up to the configured size.
    scope.addContentTypeParser(
      ['text/csv', 'text/plain'],
      { parseAs: 'string', bodyLimit: opts.limits.listMaxBytes },
      (_req, body, done) => done(null, body),
    );
    scope.setErrorHandler((err: FastifyError, _req, _reply) => {
      if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE')
        throw new LifecycleError(
          ErrorCodes.PayloadTooLarge,
          `the list is larger than ${opts.limits.listMaxBytes} bytes (LC_CAMPAIGN_LIST_MAX_BYTES): split the audience over several campaigns, or raise the limit`,
        );
      throw err;
    });
    scope.put<{ Params: Static<typeof Id> }>(
      '/v1/campaigns/:id/audience',
      {
        config: marketer,
        bodyLimit: opts.limits.listMaxBytes,
        schema: {
          tags: ['campaigns'],
          summary: "Upload a draft campaign's list of user ids (CSV)",
          description:
            'Content-Type text/csv: one user id per row, in the first column, or in the column named userId, user_id or id when the first row is such a header. Replaces the list; answers with a report (rows, accepted, duplicates, rejected and the first problems with their line). The campaign\'s audience must be {"type": "list"}.',
          params: Id,
          consumes: ['text/csv'],
          response: {
            200: Type.Object({ campaign: CampaignSchema, report: ReportSchema }),
            ...errors,
            413: errorResponse(
              'The list is larger than LC_CAMPAIGN_LIST_MAX_BYTES or has more than LC_CAMPAIGN_LIST_MAX_ROWS rows.',
            ),
            415: errorResponse(
              'Send the list as text/csv (one user id per line, or a CSV with a userId column).',
            ),
          },
        },
      },
      async (req: FastifyRequest<{ Params: Static<typeof Id> }>, reply: FastifyReply) => {
        if (typeof req.body !== 'string')
          return reply.code(415).send({
            code: ErrorCodes.BadRequest,
            message: 'send the list as Content-Type: text/csv, one user id per row',
          });
        const parsed = parseAudienceCsv(req.body, { maxRows: opts.limits.listMaxRows });
        const { userIds, ...report } = parsed;
        if (report.accepted === 0)
          throw new LifecycleError(
            ErrorCodes.BadRequest,
            `the CSV holds no usable user id (${report.rows} rows, ${report.rejected} rejected${report.problems[0] ? `; line ${report.problems[0].line}: ${report.problems[0].message}` : ''})`,
            { details: { report } },
          );
        const { after } = await act(req, req.params.id, 'upload', undefined, async (cur) => {
          if (cur.audience.type !== 'list')
            throw new LifecycleError(
              ErrorCodes.Conflict,
              `campaign "${cur.id}" has a ${cur.audience.type} audience: set its audience to {"type": "list"} (PATCH /v1/campaigns/${cur.id}) before uploading a list`,
            );
          await opts.lists.replace(cur.id, userIds);
          return {
            ...cur,
            list: {
              rows: report.rows,
              accepted: report.accepted,
              duplicates: report.duplicates,
              rejected: report.rejected,
              uploadedAt: iso(),
            },
          };
        });
        return { campaign: after, report };
      },
    );
  });
}
