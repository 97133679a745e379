// The CDC mapping file: which table changes become which events. One TypeBox schema is
// the definition (types, editor JSON Schema, loader checks); the loader reports problems
// as `file:jsonpath: message`, like rule files, and refuses the file as a whole.
import { readFileSync } from 'node:fs';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

export const COLUMN_TYPES = [
  'string',
  'number',
  'boolean',
  'json',
  'decimal',
  'timestamp',
  'timestamp-millis',
  'timestamp-micros',
  'timestamp-nanos',
  'date-days',
] as const;
export type ColumnType = (typeof COLUMN_TYPES)[number];

const Name = (description: string) => Type.String({ minLength: 1, maxLength: 200, description });
const Columns = (description: string) =>
  Type.Union([Type.Boolean(), Type.Array(Name('column'), { uniqueItems: true })], { description });

const EventAction = Type.Object(
  {
    event: Name('Event type to emit, e.g. "user_registered".'),
    properties: Type.Optional(
      Columns(
        'Columns copied into event properties: a list, true (all, the default) or false (none).',
      ),
    ),
  },
  { additionalProperties: false },
);

const UpdateRule = Type.Object(
  {
    when: Type.Union(
      [Name('column'), Type.Array(Name('column'), { minItems: 1, uniqueItems: true })],
      {
        description:
          'Column(s) whose change emits the event. One column: properties {from, to}; several: {changes: {col: {from, to}}}.',
      },
    ),
    event: Name('Event type to emit, e.g. "plan_changed".'),
    from: Type.Optional(
      Type.Unknown({ description: 'Only when the old value equals this (or is in this list).' }),
    ),
    to: Type.Optional(
      Type.Unknown({ description: 'Only when the new value equals this (or is in this list).' }),
    ),
    properties: Type.Optional(
      Columns('Extra columns (from the new row) copied into properties; default none.'),
    ),
  },
  { additionalProperties: false },
);

export const TableMappingSchema = Type.Object(
  {
    userId: Name("Column holding the user id (the events' key)."),
    columns: Type.Optional(
      Type.Record(Type.String(), Type.Union(COLUMN_TYPES.map((t) => Type.Literal(t))), {
        description:
          'Column types for topics without schemas (JSON converter with schemas.enable=false): epoch micros, decimals as strings, JSON text...',
      }),
    ),
    traits: Type.Optional(
      Columns(
        'Columns copied from the new row into user traits: true (all, the default), false (none) or a list.',
      ),
    ),
    exclude: Type.Optional(
      Type.Array(Name('column'), {
        uniqueItems: true,
        description: 'Columns never copied anywhere (password hashes, tokens).',
      }),
    ),
    rename: Type.Optional(
      Type.Record(Type.String(), Name('name'), {
        description: 'Trait/property names for columns, e.g. {"created_at": "createdAt"}.',
      }),
    ),
    insert: Type.Optional(
      Type.Union([EventAction, Type.Literal(false)], {
        description: 'Event for a new row (false: none; absent: traits only).',
      }),
    ),
    update: Type.Optional(
      Type.Array(UpdateRule, {
        description:
          'Events for changed columns. Without a matching rule, changed traits become an `identify`.',
      }),
    ),
    delete: Type.Optional(
      Type.Union([EventAction, Type.Literal(false)], {
        description:
          'Event for a deleted row, e.g. {"event": "user_deleted"} (absent or false: ignored).',
      }),
    ),
    snapshot: Type.Optional(
      Type.Union([Type.Literal('traits'), Type.Literal('events'), Type.Literal('skip')], {
        description:
          'Initial snapshot rows (op "r"): "traits" (default) emit an identify, "events" treat them as inserts, "skip" ignores them.',
      }),
    ),
  },
  { additionalProperties: false },
);
export type TableMapping = Static<typeof TableMappingSchema>;

export const CdcMappingSchema = Type.Object(
  {
    $schema: Type.Optional(Type.String()),
    source: Type.String({
      pattern: '^[A-Za-z0-9_.-]+$',
      minLength: 1,
      maxLength: 100,
      description: 'Name of this database; events carry source "cdc:<name>".',
    }),
    tables: Type.Record(Type.String({ pattern: '^[^.]+(\\.[^.]+)?$' }), TableMappingSchema, {
      minProperties: 1,
      description: 'Mappings by "schema.table" (or just "table").',
    }),
  },
  { additionalProperties: false, title: 'Lifecycle CDC mapping' },
);
export type CdcMapping = Static<typeof CdcMappingSchema>;

export interface MappingProblem {
  path: string;
  message: string;
}

const toJsonPath = (pointer: string) =>
  '$' +
  pointer
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((p) =>
      /^[A-Za-z_$][\w$]*$/.test(p)
        ? `.${p}`
        : /^\d+$/.test(p)
          ? `[${p}]`
          : `[${JSON.stringify(p)}]`,
    )
    .join('');

/** Every problem of a parsed mapping document; empty when it is valid. */
export function checkMapping(doc: unknown): MappingProblem[] {
  const problems: MappingProblem[] = [];
  const seen = new Set<string>();
  const collect = (schema: TSchema, value: unknown, prefix: string) => {
    for (const e of Value.Errors(schema, value)) {
      const pointer = prefix + e.path;
      // A union says only "Expected union value"; for an object, the object branch knows what is wrong.
      const branch = (e.schema.anyOf as TSchema[] | undefined)?.find((b) => b.type === 'object');
      if (branch && typeof e.value === 'object' && e.value !== null && !Array.isArray(e.value)) {
        collect(branch, e.value, pointer);
        continue;
      }
      const path = toJsonPath(pointer);
      if (seen.has(path)) continue;
      seen.add(path);
      problems.push({ path, message: e.message });
    }
  };
  collect(CdcMappingSchema, doc, '');
  if (problems.length > 0) return problems;
  const mapping = doc as CdcMapping;
  for (const [table, t] of Object.entries(mapping.tables)) {
    const at = toJsonPath(`/tables/${table.replace(/~/g, '~0').replace(/\//g, '~1')}`);
    if (t.exclude?.includes(t.userId))
      problems.push({
        path: `${at}.exclude`,
        message: `the user id column "${t.userId}" cannot be excluded`,
      });
    t.update?.forEach((rule, i) => {
      const cols = Array.isArray(rule.when) ? rule.when : [rule.when];
      for (const c of cols)
        if (t.exclude?.includes(c))
          problems.push({ path: `${at}.update[${i}].when`, message: `column "${c}" is excluded` });
      if ((rule.from !== undefined || rule.to !== undefined) && cols.length > 1) {
        problems.push({
          path: `${at}.update[${i}]`,
          message: '"from"/"to" need a single "when" column',
        });
      }
    });
  }
  return problems;
}

export class MappingError extends Error {
  constructor(
    readonly file: string,
    readonly problems: MappingProblem[],
  ) {
    super(problems.map((p) => `${file}:${p.path}: ${p.message}`).join('\n'));
    this.name = 'MappingError';
  }
}

/** Reads and validates a mapping file; throws MappingError listing every problem. */
export function loadMapping(file: string): CdcMapping {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new MappingError(file, [{ path: '$', message: (err as Error).message }]);
  }
  const problems = checkMapping(doc);
  if (problems.length > 0) throw new MappingError(file, problems);
  return doc as CdcMapping;
}

/** The mapping of a table by "schema.table", falling back to the bare table name. */
export function tableMapping(
  mapping: CdcMapping,
  schema: string | undefined,
  table: string,
): { name: string; mapping: TableMapping } | undefined {
  const qualified = schema ? `${schema}.${table}` : table;
  const m = mapping.tables[qualified] ?? mapping.tables[table];
  return m ? { name: qualified, mapping: m } : undefined;
}
