// Rules for the marketers' pages (reading: roles marketer, analyst and admin; trying: marketer, admin):
//   GET  /v1/rules             every rule in force, and the problems of the rule files refused since
//   GET  /v1/rules/:id         one rule with its JSON
//   POST /v1/rules/simulate    a draft rule over uploaded events, as `lifecycle simulate` runs it
//   POST /v1/rules/backtest    a draft or existing rule over the history in analytics, as `lifecycle backtest`
// Nothing here parses rule files: the set in force and the refusals are the rule loader's
// (rules/loader.ts), drafts go through the rule checker (rules/compile.ts draftRuleSet), events
// through the simulation of engine/core/simulate.ts, histories through analytics/backtest.ts.
// Trying a rule changes nothing, so it is not audited.
import path from 'node:path';
import type { FastifyError, FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import type { SendCommand } from '../platform/contracts.ts';
import { ErrorCodes, LifecycleError } from '../platform/errors.ts';
import { ERROR_SCHEMA_ID, errorResponse, requireHttpKit } from '../platform/http.ts';
import {
  draftRuleSet,
  type CompiledRule,
  type RejectedReload,
  type RuleError,
  type RuleSet,
} from '../rules/index.ts';
import { createSimulation, toOutputRecord } from '../engine/core/simulate.ts';
import { parseInputLine } from '../engine/core/input.ts';
import { replayRule } from '../analytics/backtest.ts';
import type { AnalyticsStore } from '../analytics/store.ts';

/** What a simulation may be given at most (the route's body, events) and may answer. */
export const RULE_TRIAL_LIMITS = {
  /** Body of a simulate request: the draft and the events file. */
  simulateMaxBytes: 5 * 1024 * 1024,
  simulateMaxEvents: 20_000,
  /** Sends and trace lines answered in full; the counts cover everything. */
  maxListed: 1_000,
  /** Pending timers fired after the last event at most this far past it. */
  timerHorizonMs: 400 * 86_400_000,
  /** The longest backtest window. */
  backtestMaxDays: 92,
} as const;

export interface RuleRoutesOptions {
  /** The rule set in force (the loader's last good set). */
  rules: () => RuleSet;
  /** The last refused reload of the rule files, null when the files are the set in force. */
  rejected: () => RejectedReload | null;
  /** The rules folder: files are named relative to it. */
  rulesDir: string;
  /** Template names a draft may name; null: not checked here. */
  templates: () => Promise<Set<string> | null>;
  /** The history a backtest replays; absent: backtests answer 503. */
  analytics?: () => Promise<{ store: AnalyticsStore; database: string }>;
  limits?: Partial<typeof RULE_TRIAL_LIMITS>;
}

const readers = { auth: { roles: ['marketer', 'analyst'] } } as const;
const triers = { auth: { roles: ['marketer'] } } as const;

const AnyJson = (description: string) => Type.Unknown({ description });
const RuleErrorSchema = Type.Object({
  file: Type.String({
    description: 'The rule file, relative to the rules folder (`draft` for a draft).',
  }),
  path: Type.String({ description: 'JSONPath into the file, e.g. `$.trigger.delay`.' }),
  message: Type.String(),
});
const RuleSummarySchema = Type.Object({
  id: Type.String(),
  description: Type.Optional(Type.String()),
  enabled: Type.Boolean(),
  category: Type.String(),
  priority: Type.Integer(),
  trigger: AnyJson(
    'The trigger as written: {event, delay?, where?}, {segment, on} or {schedule, timezone}.',
  ),
  triggerSummary: Type.String({ description: 'The trigger in a few words.' }),
  action: Type.String({ description: 'What it sends, in a few words: template and channels.' }),
  limits: AnyJson('oncePerUser, cooldown; null when it fires on every match.'),
  experiment: AnyJson('Holdout and variants; null without an experiment.'),
  goal: AnyJson('The conversion event and window; null without a goal.'),
  file: Type.String({ description: 'The file it came from, relative to the rules folder.' }),
});
const SimulateBody = Type.Object(
  {
    rule: AnyJson(
      'The draft rule: one rule object as in a rule file. It is evaluated as enabled, with the segments in force and no other rule.',
    ),
    // Checked by the handler: Ajv's type coercion would read an array as a string.
    events: Type.Unknown({
      description:
        'The events: the file as text, NDJSON (one event per line) or a JSON array, or a JSON array itself. Segment-style messages (identify, track, page, screen, group, alias) or normalised events ({id, userId, type, ts}), in time order.',
    }),
    until: Type.Optional(
      Type.String({
        description:
          'Move the virtual clock to this instant (ISO) after the last event, firing what falls due; without it, the timers still pending after the last event are fired (up to 400 days past it).',
      }),
    ),
  },
  { additionalProperties: false },
);
const SendSchema = AnyJson(
  'A send command as `lifecycle simulate` writes it (sendId, ruleId, userId, template, channels, createdAt, holdout, variant, data...), with `line`: the input line whose clock step made it (0: after the last event).',
);
const SimulateAnswer = Type.Object({
  rule: Type.String(),
  summary: Type.Object({
    lines: Type.Integer(),
    events: Type.Integer(),
    duplicates: Type.Integer(),
    invalid: Type.Array(Type.Object({ line: Type.Integer(), reason: Type.String() })),
    users: Type.Integer(),
    sends: Type.Integer(),
    holdouts: Type.Integer(),
    timersFired: Type.Integer(),
    timersPending: Type.Integer(),
    clock: Type.Union([Type.String(), Type.Null()]),
  }),
  users: Type.Array(
    Type.Object({ userId: Type.String(), sends: Type.Integer(), holdouts: Type.Integer() }),
    { description: 'Per user who would get something, how many sends (holdouts apart).' },
  ),
  sends: Type.Array(SendSchema, { description: 'The sends, in order (the first 1000).' }),
  trace: Type.Array(
    Type.Object({
      line: Type.Integer(),
      userId: Type.Union([Type.String(), Type.Null()]),
      type: Type.Union([Type.String(), Type.Null()]),
      sends: Type.Integer({
        description: 'Sends made while the clock moved to this event and by it.',
      }),
      invalid: Type.Optional(Type.String()),
    }),
    { description: 'One entry per input line (the first 1000).' },
  ),
  truncated: Type.Boolean({ description: 'More sends or lines than listed.' }),
});
const BacktestBody = Type.Object(
  {
    ruleId: Type.Optional(Type.String({ description: 'A rule in force (evaluated as enabled).' })),
    rule: Type.Optional(AnyJson('A draft rule instead of `ruleId`.')),
    from: Type.String({
      description: 'Start of the window (ISO); history before it is replayed too, for state.',
    }),
    to: Type.String({ description: 'End of the window (ISO, exclusive).' }),
  },
  { additionalProperties: false },
);
const BacktestAnswer = Type.Object({
  draft: Type.Boolean({ description: 'A draft was tried rather than a rule in force.' }),
  report: Type.Object({
    rule: Type.String(),
    from: Type.String(),
    to: Type.String(),
    eventsReplayed: Type.Integer(),
    eventsInWindow: Type.Integer(),
    users: Type.Integer(),
    sends: Type.Integer(),
    holdouts: Type.Integer(),
    recipients: Type.Integer(),
    byVariant: Type.Record(Type.String(), Type.Integer()),
    byTemplate: Type.Record(Type.String(), Type.Integer()),
    live: Type.Object({
      sends: Type.Integer(),
      both: Type.Integer(),
      onlyBacktest: Type.Integer(),
      onlyLive: Type.Integer(),
    }),
  }),
  sends: Type.Array(SendSchema, {
    description: 'The would-be sends in the window (the first 1000).',
  }),
});

interface InvalidDraft {
  code: typeof ErrorCodes.RulesInvalid;
  message: string;
  errors: RuleError[];
  details: { errors: RuleError[] };
}
const draftErrors = {
  400: errorResponse(
    'A malformed body, too many events, or events that are not JSON (LC_ERR_BAD_REQUEST).',
  ),
  422: {
    description:
      'The draft rule does not validate (LC_ERR_RULES_INVALID): `errors` lists each problem as {file: "draft", path, message}, as the rule files are checked.',
    content: {
      'application/json': {
        schema: {
          allOf: [
            { $ref: `${ERROR_SCHEMA_ID}#` },
            { type: 'object', properties: { errors: { type: 'array', items: RuleErrorSchema } } },
          ],
        },
      },
    },
  },
};

function describeTrigger(def: CompiledRule['def']): string {
  const t = def.trigger as Record<string, unknown>;
  if (typeof t.event === 'string')
    return `${t.event}${typeof t.delay === 'string' ? ` + ${t.delay}` : ''}${t.where ? ' (where ...)' : ''}`;
  if (typeof t.segment === 'string' && typeof t.on === 'string')
    return `segment ${t.segment}: ${t.on}`;
  if (typeof t.schedule === 'string')
    return `schedule ${t.schedule} (${typeof t.timezone === 'string' ? t.timezone : 'UTC'})`;
  return 'unknown trigger';
}

export async function ruleRoutes(app: FastifyInstance, opts: RuleRoutesOptions): Promise<void> {
  requireHttpKit(app);
  const limits = { ...RULE_TRIAL_LIMITS, ...opts.limits };
  const relative = (file: string) =>
    path.isAbsolute(file) ? path.relative(opts.rulesDir, file) : file;
  const errorOf = (e: RuleError) => ({ ...e, file: relative(e.file) });
  const summary = (r: CompiledRule) => ({
    id: r.def.id,
    ...(r.def.description !== undefined ? { description: r.def.description } : {}),
    enabled: r.def.enabled !== false,
    category: r.def.category,
    priority: r.def.priority ?? 0,
    trigger: r.def.trigger,
    triggerSummary: describeTrigger(r.def),
    action: `send ${r.def.action.send.template} via ${r.def.action.send.channels.join(', ')}`,
    limits: r.def.limits ?? null,
    experiment: r.def.experiment ?? null,
    goal: r.def.goal ?? null,
    file: relative(r.file ?? '<rules>'),
  });

  /** The draft compiled alone with the segments in force, or its problems (answered 422). */
  async function compileDraft(
    draft: unknown,
  ): Promise<{ ok: true; ruleSet: RuleSet; id: string } | { ok: false; body: InvalidDraft }> {
    if (draft === null || typeof draft !== 'object' || Array.isArray(draft))
      throw new LifecycleError(
        ErrorCodes.BadRequest,
        'rule must be one rule object, as in a rule file ({"id", "trigger", "action", ...})',
        { details: { field: 'rule' } },
      );
    const templates = await opts.templates();
    const result = draftRuleSet(opts.rules(), draft, templates ? { templates } : {});
    if (!result.ok) {
      const first = result.errors[0]!;
      return {
        ok: false,
        body: {
          code: ErrorCodes.RulesInvalid,
          message: `the draft rule is invalid at ${first.path}: ${first.message}${result.errors.length > 1 ? ` (and ${result.errors.length - 1} more in errors)` : ''}`,
          errors: result.errors.map(errorOf),
          // The same under `details`, where clients read what a coded refusal adds.
          details: { errors: result.errors.map(errorOf) },
        },
      };
    }
    return { ok: true, ruleSet: result.ruleSet, id: result.ruleSet.rules[0]!.def.id };
  }

  app.get(
    '/v1/rules',
    {
      config: readers,
      schema: {
        tags: ['rules'],
        summary: 'The rules in force, and the rule files refused',
        description:
          'Every rule of the set the engine runs (the last good set of the rules folder), by priority then id; `errors`: the problems of the last reload that was refused (the files on disk are not the set in force until they are fixed), empty otherwise.',
        response: {
          200: Type.Object({
            version: Type.String({ description: 'Content hash of the set in force.' }),
            rules: Type.Array(RuleSummarySchema),
            errors: Type.Array(RuleErrorSchema),
            rejectedAt: Type.Union([Type.String(), Type.Null()], {
              description: 'When the files were last refused; null when they are in force.',
            }),
          }),
        },
      },
    },
    async () => {
      const set = opts.rules();
      const rejected = opts.rejected();
      return {
        version: set.version,
        rules: set.rules.map(summary),
        errors: rejected ? rejected.errors.map(errorOf) : [],
        rejectedAt: rejected ? new Date(rejected.at).toISOString() : null,
      };
    },
  );

  app.get<{ Params: { id: string } }>(
    '/v1/rules/:id',
    {
      config: readers,
      schema: {
        tags: ['rules'],
        summary: 'One rule in force, with its JSON',
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 200 }) }),
        response: {
          200: Type.Object({
            rule: RuleSummarySchema,
            json: AnyJson('The rule as the engine runs it.'),
          }),
          404: errorResponse('No rule with this id in force (LC_ERR_NOT_FOUND).'),
        },
      },
    },
    async (req) => {
      const rule = opts.rules().rules.find((r) => r.def.id === req.params.id);
      if (!rule)
        throw new LifecycleError(
          ErrorCodes.NotFound,
          `no rule "${req.params.id}" in force: GET /v1/rules lists them`,
        );
      return { rule: summary(rule), json: rule.def };
    },
  );

  await app.register(async (scope) => {
    scope.setErrorHandler((err: FastifyError) => {
      if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE')
        throw new LifecycleError(
          ErrorCodes.PayloadTooLarge,
          `the simulation's body is larger than ${limits.simulateMaxBytes} bytes: simulate a sample of the events, or run lifecycle simulate on the whole file`,
        );
      throw err;
    });
    scope.post<{ Body: Static<typeof SimulateBody> }>(
      '/v1/rules/simulate',
      {
        config: triers,
        bodyLimit: limits.simulateMaxBytes,
        schema: {
          tags: ['rules'],
          summary: 'Simulate a draft rule over events',
          description:
            "What `lifecycle simulate` does, over the events given: the engine core with in-memory state and a virtual clock that follows the events' timestamps, firing delays and schedules as it passes them. The draft is checked as a rule file is; it runs with the segments in force and alone, so only its sends are answered. Nothing is stored or sent.",
          body: SimulateBody,
          response: {
            200: SimulateAnswer,
            ...draftErrors,
            413: errorResponse(
              'The body is larger than 5 MiB (LC_ERR_PAYLOAD_TOO_LARGE): simulate a sample, or run lifecycle simulate.',
            ),
          },
        },
      },
      async (req, reply) => {
        const lines = eventLines(req.body.events, limits.simulateMaxEvents);
        let until: number | null = null;
        if (req.body.until !== undefined) {
          until = Date.parse(req.body.until);
          if (!Number.isFinite(until))
            throw new LifecycleError(
              ErrorCodes.BadRequest,
              `until: ${JSON.stringify(req.body.until)} is not an ISO date (e.g. 2026-03-01T00:00:00Z)`,
              { details: { field: 'until' } },
            );
        }
        const compiled = await compileDraft(req.body.rule);
        if (!compiled.ok) return reply.code(422).send(compiled.body);
        const { ruleSet, id } = compiled;
        const sim = createSimulation({ ruleSet: () => ruleSet });
        const sends: (SendCommand & { line: number })[] = [];
        const trace: Static<typeof SimulateAnswer>['trace'] = [];
        let truncated = false;
        const keep = (made: SendCommand[], line: number) => {
          for (const s of made) {
            if (sends.length < limits.maxListed) sends.push({ ...s, line });
            else truncated = true;
          }
        };
        lines.forEach((text, i) => {
          const made = sim.line(text, i + 1);
          keep(made, i + 1);
          if (trace.length >= limits.maxListed) {
            truncated = true;
            return;
          }
          // The line read again as the simulation read it (cheap next to applying it).
          const parsed = text.trim() === '' ? null : parseInputLine(text);
          trace.push({
            line: i + 1,
            userId: parsed?.ok ? parsed.event.userId : null,
            type: parsed?.ok ? parsed.event.type : null,
            sends: made.length,
            ...(parsed && !parsed.ok ? { invalid: parsed.reason } : {}),
          });
        });
        const last = sim.summary().clock;
        if (until !== null) keep(sim.advanceTo(until), 0);
        else if (last !== null) {
          // The timers still pending (delays after the last event) fire, up to a horizon:
          // segment re-checks re-arm themselves and would otherwise run for ever.
          for (let next = sim.timers.peek(); next; next = sim.timers.peek()) {
            if (next.dueAt > last + limits.timerHorizonMs) break;
            keep(sim.advanceTo(next.dueAt), 0);
          }
        }
        const s = sim.summary();
        const perUser = new Map<string, { sends: number; holdouts: number }>();
        for (const send of sends) {
          const u = perUser.get(send.userId) ?? { sends: 0, holdouts: 0 };
          if (send.holdout) u.holdouts++;
          else u.sends++;
          perUser.set(send.userId, u);
        }
        return {
          rule: id,
          summary: {
            lines: s.lines,
            events: s.events,
            duplicates: s.duplicates,
            invalid: s.invalid.slice(0, limits.maxListed),
            users: s.users,
            sends: s.sends,
            holdouts: s.holdouts,
            timersFired: s.timersFired,
            timersPending: s.timersPending,
            clock: s.clock === null ? null : new Date(s.clock).toISOString(),
          },
          users: [...perUser].map(([userId, u]) => ({ userId, ...u })),
          sends: sends.map((send) => ({ ...toOutputRecord(send), line: send.line })),
          trace,
          truncated: truncated || s.sends > sends.length,
        };
      },
    );
  });

  app.post<{ Body: Static<typeof BacktestBody> }>(
    '/v1/rules/backtest',
    {
      config: triers,
      schema: {
        tags: ['rules'],
        summary: 'Backtest a rule over the stored history',
        description:
          "What `lifecycle backtest` does: the event history kept in analytics is replayed through the engine core up to `to`, and the rule's sends created in [from, to) are reported, compared by sendId with what the live rule sent. Give `ruleId` (a rule in force, evaluated as enabled) or `rule` (a draft). The window is at most 92 days.",
        body: BacktestBody,
        response: {
          200: BacktestAnswer,
          ...draftErrors,
          404: errorResponse('No rule with `ruleId` in force (LC_ERR_NOT_FOUND).'),
          503: errorResponse(
            'Analytics could not be read (LC_ERR_UNAVAILABLE); the message says why.',
          ),
        },
      },
    },
    async (req, reply) => {
      const { ruleId, rule, from: fromText, to: toText } = req.body;
      const bad = (field: string, message: string) =>
        new LifecycleError(ErrorCodes.BadRequest, `${field}: ${message}`, { details: { field } });
      if ((ruleId === undefined) === (rule === undefined))
        throw bad(
          'ruleId',
          'give either ruleId (a rule in force) or rule (a draft), not both or neither',
        );
      const from = Date.parse(fromText);
      if (!Number.isFinite(from))
        throw bad(
          'from',
          `${JSON.stringify(fromText)} is not an ISO date (e.g. 2026-03-01T00:00:00Z)`,
        );
      const to = Date.parse(toText);
      if (!Number.isFinite(to))
        throw bad('to', `${JSON.stringify(toText)} is not an ISO date (e.g. 2026-03-08T00:00:00Z)`);
      if (to <= from) throw bad('to', `must be after from (${fromText})`);
      if (to - from > limits.backtestMaxDays * 86_400_000)
        throw bad(
          'to',
          `the window is longer than ${limits.backtestMaxDays} days: backtest a shorter one, or run lifecycle backtest`,
        );
      let draft = rule;
      if (ruleId !== undefined) {
        const found = opts.rules().rules.find((r) => r.def.id === ruleId);
        if (!found)
          throw new LifecycleError(
            ErrorCodes.NotFound,
            `no rule "${ruleId}" in force: GET /v1/rules lists them`,
            { details: { field: 'ruleId' } },
          );
        draft = found.def;
      }
      const compiled = await compileDraft(draft);
      if (!compiled.ok) return reply.code(422).send(compiled.body);
      const { ruleSet, id } = compiled;
      if (!opts.analytics)
        throw new LifecycleError(
          ErrorCodes.Unavailable,
          'no analytics store is configured: backtests read its history',
        );
      let analytics: { store: AnalyticsStore; database: string };
      try {
        analytics = await opts.analytics();
      } catch (err) {
        throw new LifecycleError(
          ErrorCodes.Unavailable,
          `analytics cannot be reached: ${err instanceof Error ? err.message : String(err)}`,
        );
      }
      const result = await replayRule({ ruleSet, rule: id, from, to }, analytics);
      if (!result.ok) throw new LifecycleError(ErrorCodes.Unavailable, result.message);
      return {
        draft: ruleId === undefined,
        report: result.report,
        sends: result.sends.slice(0, limits.maxListed).map(toOutputRecord),
      };
    },
  );
}

/** The events as lines for the simulation: a JSON array's items, or the text's lines (NDJSON). */
function eventLines(events: unknown, max: number): string[] {
  let lines: string[];
  if (typeof events !== 'string' && !Array.isArray(events))
    throw new LifecycleError(
      ErrorCodes.BadRequest,
      'events must be the events file as text (NDJSON or a JSON array) or a JSON array of events',
      { details: { field: 'events' } },
    );
  if (Array.isArray(events)) lines = events.map((e) => JSON.stringify(e));
  else if (events.trimStart().startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(events);
    } catch (err) {
      throw new LifecycleError(
        ErrorCodes.BadRequest,
        `events: the text starts with "[" but is not a JSON array (${err instanceof Error ? err.message : String(err)}); send a JSON array of events or one event per line (NDJSON)`,
        { details: { field: 'events' } },
      );
    }
    lines = (parsed as unknown[]).map((e) => JSON.stringify(e));
  } else lines = events.split(/\r?\n/);
  while (lines.length > 0 && lines[lines.length - 1]!.trim() === '') lines.pop();
  if (lines.length === 0)
    throw new LifecycleError(ErrorCodes.BadRequest, 'events: no event given', {
      details: { field: 'events' },
    });
  if (lines.length > max)
    throw new LifecycleError(
      ErrorCodes.BadRequest,
      `events: ${lines.length} events, at most ${max} are simulated here: simulate a sample, or run lifecycle simulate on the whole file`,
      { details: { field: 'events' } },
    );
  return lines;
}
