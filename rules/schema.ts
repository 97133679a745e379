// TypeBox schemas of rule and segment files: the one definition from which the TypeScript
// types, the published JSON Schemas (editor autocomplete) and the loader's checks derive.
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { DURATION_PATTERN, DURATION_HINT } from './duration.ts';

/** Built-in json-rules-engine operators, then the ones this product adds (registered in both evaluators). */
export const BUILTIN_OPERATORS = [
  'equal',
  'notEqual',
  'in',
  'notIn',
  'contains',
  'doesNotContain',
  'lessThan',
  'lessThanInclusive',
  'greaterThan',
  'greaterThanInclusive',
] as const;
export const CUSTOM_OPERATORS = [
  'exists',
  'notExists',
  'withinLast',
  'olderThan',
  'withinNext',
  'startsWith',
  'endsWith',
] as const;
export const OPERATORS = [...BUILTIN_OPERATORS, ...CUSTOM_OPERATORS] as const;
export type OperatorName = (typeof OPERATORS)[number];

/** Facts a condition can read; see rules/README.md for their shapes. */
export const FACTS = ['event', 'user', 'stats', 'segments', 'rule', 'now'] as const;
export type FactName = (typeof FACTS)[number];

const ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.-]*$';
const ID_HINT = 'use letters, digits, "_", "-" or "." (starting with a letter or digit)';

// `patternErrorMessage` and `markdownDescription` are understood by VS Code's JSON editor.
const Id = (description: string) =>
  Type.String({
    minLength: 1,
    maxLength: 100,
    pattern: ID_PATTERN,
    description,
    patternErrorMessage: ID_HINT,
  });

export const DurationSchema = Type.String({
  pattern: DURATION_PATTERN,
  description:
    'A duration: a whole number and a unit, s (seconds), m (minutes), h (hours), d (days) or w (weeks), e.g. "3d".',
  patternErrorMessage: DURATION_HINT,
  examples: ['90s', '15m', '12h', '3d', '2w'],
});

export const FactRefSchema = Type.Object(
  {
    fact: Type.Union(
      FACTS.map((f) => Type.Literal(f)),
      { description: 'Fact to compare against instead of a constant.' },
    ),
    path: Type.Optional(Type.String({ description: 'JSONPath into the fact, e.g. "$.plan".' })),
  },
  {
    additionalProperties: false,
    description: 'Compare with another fact value instead of a constant.',
  },
);

export const LeafConditionSchema = Type.Object(
  {
    fact: Type.Union(
      FACTS.map((f) => Type.Literal(f)),
      {
        description:
          'What to look at: `event` (the triggering event), `user` (merged traits), `stats` (per event type {count, first, last}), `segments` (segment id -> member), `rule` ({fires, lastFiredAt} of this rule for the user), `now` (epoch ms).',
      },
    ),
    path: Type.Optional(
      Type.String({
        description:
          'JSONPath into the fact: `$.plan`, `$.properties.amount`, `$.export_done.count`, `$["Feature Used"].last`, `$.items[0]`. Omit to use the whole fact.',
        examples: ['$.plan', '$.export_done.count', '$["Feature Used"].last'],
      }),
    ),
    operator: Type.Union(
      OPERATORS.map((o) => Type.Literal(o)),
      {
        description:
          'How to compare the fact value with `value` (see rules/README.md, "Operators").',
      },
    ),
    value: Type.Unknown({
      description:
        'What to compare with: a constant (string, number, boolean, null, array), a duration for withinLast/olderThan/withinNext, true/false for exists/notExists, or {"fact", "path"} to compare with another fact.',
    }),
  },
  { additionalProperties: false, description: 'One comparison: fact (at path) operator value.' },
);

/** A condition node: `all`, `any`, `not` or a comparison, nested at will (json-rules-engine format). */
export const ConditionNodeSchema = Type.Recursive(
  (Node) =>
    Type.Union([
      Type.Object(
        {
          all: Type.Array(Node, {
            description: 'True when every condition is true (and when empty).',
          }),
        },
        { additionalProperties: false },
      ),
      Type.Object(
        {
          any: Type.Array(Node, {
            description:
              'True when at least one condition is true (json-rules-engine: also true when empty).',
          }),
        },
        { additionalProperties: false },
      ),
      Type.Object(
        { not: Type.Union([Node], { description: 'True when the condition is false.' }) },
        { additionalProperties: false },
      ),
      LeafConditionSchema,
    ]),
  { $id: 'Condition' },
);
export type ConditionNode = Static<typeof ConditionNodeSchema>;

/** The root of `conditions` / `where`: must be `all`, `any` or `not` (as in json-rules-engine). */
export const ConditionsSchema = Type.Union(
  [
    Type.Object(
      {
        all: Type.Array(ConditionNodeSchema, {
          description: 'True when every condition is true (and when empty).',
        }),
      },
      { additionalProperties: false },
    ),
    Type.Object(
      {
        any: Type.Array(ConditionNodeSchema, {
          description: 'True when at least one condition is true.',
        }),
      },
      { additionalProperties: false },
    ),
    Type.Object({ not: ConditionNodeSchema }, { additionalProperties: false }),
  ],
  {
    description:
      'Conditions in json-rules-engine format: {"all": [...]}, {"any": [...]} or {"not": {...}}.',
  },
);
export type Conditions = Static<typeof ConditionsSchema>;
export type LeafCondition = Static<typeof LeafConditionSchema>;

export const EventTriggerSchema = Type.Object(
  {
    event: Type.String({
      minLength: 1,
      description:
        'Exact event type that starts the rule, as sent (e.g. "user_registered", "Feature Used").',
    }),
    where: Type.Optional(
      Type.Union([ConditionsSchema], {
        description: 'Extra conditions checked at the moment the event arrives (before any delay).',
      }),
    ),
    delay: Type.Optional(
      Type.Union([DurationSchema], {
        description:
          'Wait this long after the event, then evaluate `conditions` against the user state at that moment.',
      }),
    ),
  },
  {
    additionalProperties: false,
    description: 'Fire when an event of this type arrives (optionally after a delay).',
  },
);

export const SegmentTriggerSchema = Type.Object(
  {
    segment: Type.String({ minLength: 1, description: 'Id of a segment in rules/segments/.' }),
    on: Type.Union([Type.Literal('enter'), Type.Literal('exit')], {
      description: 'Fire when the user enters or leaves the segment.',
    }),
  },
  { additionalProperties: false, description: 'Fire when a user enters or leaves a segment.' },
);

export const ScheduleTriggerSchema = Type.Object(
  {
    schedule: Type.String({
      minLength: 1,
      description:
        'Cron expression with 5 fields (minute hour day-of-month month day-of-week), e.g. "0 9 * * 1" for Mondays 09:00, or @daily/@weekly.',
      examples: ['0 9 * * 1', '0 18 * * *', '@daily'],
    }),
    timezone: Type.String({
      minLength: 1,
      description:
        '"user" to run at that local time in each user\'s timezone trait, or an IANA zone such as "Europe/Berlin" or "UTC".',
      examples: ['user', 'UTC', 'Europe/Berlin', 'America/New_York'],
    }),
    segment: Type.Optional(
      Type.String({
        minLength: 1,
        description: 'Audience: only members of this segment (default: every known user).',
      }),
    ),
  },
  {
    additionalProperties: false,
    description: 'Recurring campaign: evaluate the rule for an audience on a schedule.',
  },
);

export const TriggerSchema = Type.Union(
  [EventTriggerSchema, SegmentTriggerSchema, ScheduleTriggerSchema],
  {
    description: 'What starts the rule: an event, a segment entry/exit, or a schedule.',
  },
);
export type EventTrigger = Static<typeof EventTriggerSchema>;
export type SegmentTrigger = Static<typeof SegmentTriggerSchema>;
export type ScheduleTrigger = Static<typeof ScheduleTriggerSchema>;
export type Trigger = Static<typeof TriggerSchema>;

const ChannelSchema = Type.Union(
  ['email', 'inapp', 'webhook', 'sms', 'push'].map((c) => Type.Literal(c)),
  { description: 'Delivery channel.' },
);

const TemplateName = (description: string) =>
  Type.String({
    minLength: 1,
    maxLength: 100,
    pattern: ID_PATTERN,
    description,
    patternErrorMessage: ID_HINT,
  });

/** Upper bounds of a digest: they bound what the engine keeps per user for it. */
export const DIGEST_LIMITS = {
  events: 20,
  window: '31d',
  maxItems: 50,
  properties: 8,
} as const;

export const DIGEST_DEFAULTS = { maxItems: 20, minItems: 1 } as const;

export const DigestSchema = Type.Object(
  {
    events: Type.Array(
      Type.String({ minLength: 1, description: 'An event type, exactly as sent.' }),
      {
        minItems: 1,
        maxItems: DIGEST_LIMITS.events,
        uniqueItems: true,
        description:
          'Event types the digest lists, exactly as sent (e.g. ["Feature Used", "project_updated"]). The engine keeps recent events of these types per user.',
      },
    ),
    window: Type.Union([DurationSchema], {
      description: `How far back the digest looks from the moment the rule fires, e.g. "7d" (at most ${DIGEST_LIMITS.window}).`,
    }),
    maxItems: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: DIGEST_LIMITS.maxItems,
        default: DIGEST_DEFAULTS.maxItems,
        description: `At most this many items in one digest, newest first (1-${DIGEST_LIMITS.maxItems}, default 20). Counts per type are exact up to ${DIGEST_LIMITS.maxItems}.`,
      }),
    ),
    minItems: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: DIGEST_LIMITS.maxItems,
        default: DIGEST_DEFAULTS.minItems,
        description:
          'With fewer items in the window the rule does not send (the skip is recorded in the rule history), so an empty digest never goes out (default 1).',
      }),
    ),
    properties: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), {
        maxItems: DIGEST_LIMITS.properties,
        uniqueItems: true,
        description: `Event properties each item keeps for the template, e.g. ["feature", "name"] (at most ${DIGEST_LIMITS.properties}; text, numbers and true/false only; default none).`,
      }),
    ),
  },
  {
    additionalProperties: false,
    description:
      'Collect the user\'s recent events of these types and send them as the message\'s `digest` data (see rules/README.md, "Digests").',
  },
);
export type DigestDefinition = Static<typeof DigestSchema>;

export const RuleSchema = Type.Object(
  {
    $schema: Type.Optional(
      Type.String({ description: 'Path or URL of this JSON Schema, for editors.' }),
    ),
    id: Id(
      'Unique id of the rule across all rule files; appears in sends and analytics. Do not rename a live rule.',
    ),
    description: Type.Optional(
      Type.String({ description: 'What the rule does and why, for humans.' }),
    ),
    enabled: Type.Optional(
      Type.Boolean({
        default: true,
        description: 'false keeps the rule loaded and validated but never fires it.',
      }),
    ),
    category: Type.Union([Type.Literal('marketing'), Type.Literal('transactional')], {
      description:
        '`marketing` is sent only with marketing consent; `transactional` (receipts, payment problems) bypasses marketing opt-in.',
    }),
    messageType: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 64,
        description:
          "The message type (rules/message-types.json: product_news, tips, billing...): users choose per type and channel what they get, and delivery honours it. Its category must be the rule's. Omit for a message no type describes: only the category consent applies.",
      }),
    ),
    priority: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 1000,
        default: 0,
        description:
          'Higher runs first and wins when frequency caps allow only some messages (0-1000, default 0).',
      }),
    ),
    trigger: TriggerSchema,
    conditions: Type.Optional(
      Type.Union([ConditionsSchema], {
        description:
          'Must be true (when the trigger fires) for the message to be sent. Omit to always send.',
      }),
    ),
    action: Type.Object(
      {
        send: Type.Object(
          {
            template: TemplateName('Template name (a folder or file in templates/).'),
            channels: Type.Array(ChannelSchema, {
              minItems: 1,
              uniqueItems: true,
              description: 'Channels to send on, e.g. ["email"] or ["inapp", "push"].',
            }),
            digest: Type.Optional(DigestSchema),
          },
          { additionalProperties: false, description: 'Send a message.' },
        ),
      },
      { additionalProperties: false, description: 'What happens when the rule fires.' },
    ),
    limits: Type.Optional(
      Type.Object(
        {
          oncePerUser: Type.Optional(
            Type.Boolean({ description: 'Fire at most once per user, ever.' }),
          ),
          cooldown: Type.Optional(
            Type.Union([DurationSchema], {
              description: 'Do not fire again for the same user within this time.',
            }),
          ),
        },
        {
          additionalProperties: false,
          description: 'How often the rule may fire per user (default: on every match).',
        },
      ),
    ),
    experiment: Type.Optional(
      Type.Object(
        {
          holdout: Type.Optional(
            Type.Number({
              minimum: 0,
              exclusiveMaximum: 1,
              default: 0,
              description:
                'Share of users (0 to <1) who are recorded but not sent anything, to measure uplift. 0.1 = 10%.',
            }),
          ),
          variants: Type.Optional(
            Type.Array(
              Type.Object(
                {
                  id: Id('Variant id as it appears in analytics, e.g. "a", "b".'),
                  weight: Type.Number({
                    exclusiveMinimum: 0,
                    description: 'Relative weight (> 0); users split in proportion to weights.',
                  }),
                  template: Type.Optional(
                    TemplateName('Template for this variant (default: the action template).'),
                  ),
                },
                { additionalProperties: false },
              ),
              { minItems: 1, description: 'A/B variants; each user always gets the same one.' },
            ),
          ),
        },
        {
          additionalProperties: false,
          description:
            'Holdout group and A/B variants, assigned by a stable hash of (rule id, user id).',
        },
      ),
    ),
    goal: Type.Optional(
      Type.Object(
        {
          event: Type.String({
            minLength: 1,
            description: 'Event type that counts as a conversion, e.g. "subscription_started".',
          }),
          within: Type.Union([DurationSchema], {
            description: 'Conversion window after the send.',
          }),
        },
        {
          additionalProperties: false,
          description: 'What success looks like, for conversion and uplift reports.',
        },
      ),
    ),
    expiresAfter: Type.Optional(
      Type.Union([DurationSchema], {
        description:
          'Drop the message if it cannot be delivered within this time (e.g. deferred by quiet hours).',
      }),
    ),
  },
  {
    additionalProperties: false,
    title: 'Lifecycle rule',
    description:
      'One rule: trigger, conditions, action, limits, experiment, goal. See rules/README.md.',
  },
);
export type RuleDefinition = Static<typeof RuleSchema>;

export const SegmentSchema = Type.Object(
  {
    $schema: Type.Optional(
      Type.String({ description: 'Path or URL of this JSON Schema, for editors.' }),
    ),
    id: Id('Unique segment id; rules refer to it in triggers and in the `segments` fact.'),
    description: Type.Optional(Type.String({ description: 'Who is in the segment, for humans.' })),
    conditions: Type.Union([ConditionsSchema], {
      description: 'A user is a member while these conditions are true. Facts: user, stats, now.',
    }),
  },
  {
    additionalProperties: false,
    title: 'Lifecycle segment',
    description: 'A named audience: users for whom the conditions are true. See rules/README.md.',
  },
);
export type SegmentDefinition = Static<typeof SegmentSchema>;

/** Facts a segment's conditions may use: segments describe user state, not a single event or rule. */
export const SEGMENT_FACTS: readonly FactName[] = ['user', 'stats', 'now'];

/**
 * A schema as a plain JSON Schema document: the recursive condition node becomes one
 * `definitions` entry referenced from every place that uses it.
 */
export function toJsonSchema(schema: TSchema): Record<string, unknown> {
  const defs: Record<string, unknown> = {};
  const walk = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(walk);
    if (node === null || typeof node !== 'object') return node;
    const obj = node as Record<string, unknown>;
    if (typeof obj.$ref === 'string' && !obj.$ref.startsWith('#'))
      return { $ref: `#/definitions/${obj.$ref}` };
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(obj)) out[k] = walk(v);
    if (typeof obj.$id === 'string' && !obj.$id.includes('/')) {
      const name = obj.$id;
      delete out.$id;
      defs[name] ??= out;
      return { $ref: `#/definitions/${name}` };
    }
    return out;
  };
  const root = walk(schema) as Record<string, unknown>;
  return { $schema: 'http://json-schema.org/draft-07/schema#', ...root, definitions: defs };
}
