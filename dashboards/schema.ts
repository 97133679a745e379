// The dashboard spec format, defined once: TypeBox for the loader, published as
// dashboards/dashboard.schema.json for editors (npx tsx dashboards/generate-schema.ts).
import { Type, type Static } from '@sinclair/typebox';

export const VIZ_TYPES = ['table', 'bar', 'line', 'number'] as const;
export const COLUMN_FORMATS = ['integer', 'number', 'percent', 'text'] as const;

const Name = (description: string) =>
  Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_]{0,63}$', description });

export const IntegerParameterSchema = Type.Object(
  {
    type: Type.Literal('integer'),
    label: Type.Optional(Type.String({ description: 'Shown next to the input on the page.' })),
    default: Type.Integer(),
    minimum: Type.Optional(Type.Integer()),
    maximum: Type.Optional(Type.Integer()),
  },
  { additionalProperties: false, description: 'A whole number, bound as a ClickHouse integer.' },
);

export const StringParameterSchema = Type.Object(
  {
    type: Type.Literal('string'),
    label: Type.Optional(Type.String()),
    default: Type.String(),
    enum: Type.Optional(
      Type.Array(Type.String(), {
        minItems: 1,
        description: 'The only values allowed (the page shows a select).',
      }),
    ),
    pattern: Type.Optional(
      Type.String({ description: 'A regular expression the whole value must match.' }),
    ),
    maxLength: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 1000, description: 'Default 200.' }),
    ),
  },
  {
    additionalProperties: false,
    description: 'Text, bound as a ClickHouse String (never pasted into the SQL).',
  },
);

export const ParameterSchema = Type.Union([IntegerParameterSchema, StringParameterSchema]);

export const VizSchema = Type.Object(
  {
    type: Type.Union(
      VIZ_TYPES.map((t) => Type.Literal(t)),
      {
        description:
          'table: all columns; bar / line: `y` columns against `x`; number: one value (`value`, first row).',
      },
    ),
    x: Type.Optional(
      Type.String({ description: 'bar / line: the column along the horizontal axis.' }),
    ),
    y: Type.Optional(
      Type.Array(Type.String(), {
        minItems: 1,
        description: 'bar / line: the columns drawn (one bar or line each).',
      }),
    ),
    value: Type.Optional(
      Type.String({ description: 'number: the column shown (default: the first).' }),
    ),
    columns: Type.Optional(
      Type.Array(Type.String(), {
        minItems: 1,
        description: 'table: the columns shown, in this order (default: all).',
      }),
    ),
    pivot: Type.Optional(
      Type.Object(
        {
          row: Type.String({
            description: 'The column whose values become the rows (e.g. cohort).',
          }),
          column: Type.String({
            description: 'The column whose values become the table columns (e.g. period).',
          }),
          value: Type.String({ description: 'The column shown in the cells (e.g. share).' }),
          keep: Type.Optional(
            Type.Array(Type.String(), {
              description: 'Columns shown once per row, after the row (e.g. cohort_users).',
            }),
          ),
        },
        {
          additionalProperties: false,
          description: 'table: rows × columns of one value, like a retention triangle.',
        },
      ),
    ),
    format: Type.Optional(
      Type.Record(Type.String(), Type.Union(COLUMN_FORMATS.map((t) => Type.Literal(t))), {
        description:
          'How a column is shown: integer, number (2 decimals), percent (0.25 -> 25.0%), text.',
      }),
    ),
  },
  { additionalProperties: false },
);

export const PanelSchema = Type.Object(
  {
    id: Type.String({
      pattern: '^[a-z0-9][a-z0-9-]{0,63}$',
      description: 'Unique in the dashboard; part of the panel data URL.',
    }),
    title: Type.String({ minLength: 1 }),
    description: Type.Optional(Type.String()),
    query: Type.Optional(
      Type.String({
        description:
          'A built-in query: funnel, uplift, deliverability, retention, churn, reengagement (see dashboards/README.md).',
      }),
    ),
    sql: Type.Optional(
      Type.String({
        minLength: 1,
        description:
          'A SELECT. Tables as $db.events, $db.sends, $db.deliveries; values as ClickHouse parameters {from:UInt64}, {to:UInt64}, {ruleIds:Array(String)}, {allRules:UInt8} and {<dashboard parameter>:<Type>}.',
      }),
    ),
    params: Type.Optional(
      Type.Record(Type.String(), Type.Union([Type.Integer(), Type.String()]), {
        description:
          'Fixed values for this panel, overriding the dashboard parameter or built-in default of the same name.',
      }),
    ),
    viz: VizSchema,
    width: Type.Optional(
      Type.Union([Type.Literal(1), Type.Literal(2)], {
        description: 'Columns of the grid the panel spans (default 1; 2 = full width).',
      }),
    ),
  },
  { additionalProperties: false },
);

export const DashboardSchema = Type.Object(
  {
    $schema: Type.Optional(Type.String()),
    id: Type.String({
      pattern: '^[a-z0-9][a-z0-9-]{0,63}$',
      description: 'Unique across dashboards; part of the URL.',
    }),
    title: Type.String({ minLength: 1 }),
    description: Type.Optional(Type.String()),
    order: Type.Optional(
      Type.Integer({
        description:
          "Position in the page's menu: lower first (default 100), then by title. The first one opens by default.",
      }),
    ),
    window: Type.Optional(
      Type.Object(
        {
          days: Type.Integer({
            minimum: 1,
            maximum: 3660,
            description: 'Default time window: the last N days.',
          }),
        },
        { additionalProperties: false },
      ),
    ),
    parameters: Type.Optional(
      Type.Record(Name('Parameter name'), ParameterSchema, {
        description:
          'Parameters the page lets the reader change, with their defaults. `from`, `to`, `ruleIds` and `allRules` always exist.',
      }),
    ),
    panels: Type.Array(PanelSchema, { minItems: 1 }),
  },
  {
    additionalProperties: false,
    title: 'Lifecycle dashboard',
    description: 'A dashboard of SQL panels (dashboards/README.md).',
  },
);

export type ParameterSpec = Static<typeof ParameterSchema>;
export type VizSpec = Static<typeof VizSchema>;
export type PanelSpec = Static<typeof PanelSchema>;
export type DashboardSpec = Static<typeof DashboardSchema>;
