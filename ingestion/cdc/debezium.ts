// Decodes Debezium change records as Kafka Connect writes them: JsonConverter with or
// without schemas, or Avro in the Confluent wire format (magic byte 0, 4-byte schema id,
// Avro body) with writer schemas fetched from a schema registry and cached.
import avro from 'avsc';
import { losslessLongs, parseJsonLossless } from './lossless.ts';
import type { ColumnEncoding } from './values.ts';

export type Op = 'c' | 'u' | 'd' | 'r' | 't' | 'm';

/** One row change, still with Debezium's column encodings. */
export interface ChangeRecord {
  op: Op;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  source: Record<string, unknown>;
  /** Commit time (source.ts_ms), else the connector's processing time. */
  tsMs: number;
  schema: string | undefined;
  table: string;
  /** Column encodings known from the record's own schema (empty without schemas). */
  columns: Map<string, ColumnEncoding>;
  /** The record key (the row's primary key), decoded. */
  key: unknown;
}

export class DecodeError extends Error {
  constructor(
    message: string,
    /** True when retrying later can help (registry unreachable), false for bad bytes. */
    readonly retriable = false,
  ) {
    super(message);
    this.name = 'DecodeError';
  }
}

export interface SchemaRegistry {
  /** Writer schema (parsed JSON, references inlined) by id; rejects with DecodeError. */
  schema(id: number): Promise<unknown>;
}

/** A schema reference as the Confluent API lists it: the referenced type's full name, where it is registered. */
interface SchemaReference {
  name: string;
  subject: string;
  version: number;
}

interface RegisteredSchema {
  schema: unknown;
  references: SchemaReference[];
}

/** Full name of a named Avro type written as `name` inside namespace `ns`. */
const fullName = (name: string, ns: string) =>
  name.includes('.') || ns === '' ? name : `${ns}.${name}`;

/**
 * The schema with each referenced named type defined where it is first used (Avro allows a
 * named type to be defined inline once and then used by name), so it parses on its own.
 * Debezium's envelope registered through Apicurio refers to its `source` record this way.
 */
export function inlineReferences(
  schema: unknown,
  referenced: ReadonlyMap<string, unknown>,
): unknown {
  const pending = new Map(referenced);
  const walk = (node: unknown, ns: string): unknown => {
    if (typeof node === 'string') {
      const definition = pending.get(fullName(node, ns));
      if (definition === undefined) return node;
      pending.delete(fullName(node, ns));
      return walk(definition, ns);
    }
    if (Array.isArray(node)) return node.map((n) => walk(n, ns));
    if (!node || typeof node !== 'object') return node;
    const o = node as Record<string, unknown>;
    const name = typeof o.name === 'string' ? o.name : undefined;
    const space = name?.includes('.')
      ? name.slice(0, name.lastIndexOf('.'))
      : typeof o.namespace === 'string'
        ? o.namespace
        : ns;
    // A definition given in full here must not be inlined again later.
    if (name && ['record', 'enum', 'fixed', 'error'].includes(o.type as string))
      pending.delete(fullName(name, space));
    const out: Record<string, unknown> = { ...o };
    if (Array.isArray(o.fields))
      out.fields = (o.fields as Record<string, unknown>[]).map((f) => ({
        ...f,
        type: walk(f.type, space),
      }));
    else if (
      typeof o.type === 'object' ||
      (typeof o.type === 'string' &&
        !['record', 'enum', 'fixed', 'error', 'array', 'map'].includes(o.type))
    )
      out.type = walk(o.type, space);
    if (o.items !== undefined) out.items = walk(o.items, space);
    if (o.values !== undefined) out.values = walk(o.values, space);
    return out;
  };
  return walk(schema, '');
}

/**
 * Confluent-compatible schema registry client (`GET /schemas/ids/{id}`), cached per id.
 * Schema references (`references`: name, subject, version) are fetched from
 * `GET /subjects/{subject}/versions/{version}`, cached, and inlined.
 */
export function createSchemaRegistry(
  baseUrl: string,
  fetchImpl: typeof fetch = fetch,
  timeoutMs = 5000,
): SchemaRegistry {
  const cache = new Map<string, Promise<RegisteredSchema>>();
  const base = baseUrl.replace(/\/+$/, '');

  const fetchSchema = (path: string, what: string): Promise<RegisteredSchema> => {
    let p = cache.get(path);
    if (!p) {
      p = (async () => {
        let res: Response;
        try {
          res = await fetchImpl(`${base}${path}`, {
            headers: { accept: 'application/vnd.schemaregistry.v1+json, application/json' },
            signal: AbortSignal.timeout(timeoutMs),
          });
        } catch (err) {
          throw new DecodeError(`schema registry unreachable: ${(err as Error).message}`, true);
        }
        if (res.status === 404) throw new DecodeError(`${what} not found in the schema registry`);
        if (!res.ok)
          throw new DecodeError(
            `schema registry answered ${res.status} for ${what}`,
            res.status >= 500 || res.status === 429,
          );
        let body: { schema?: string; schemaType?: string; references?: unknown };
        try {
          body = (await res.json()) as typeof body;
        } catch (err) {
          // A proxy's error page with status 200: the registry is not really answering.
          throw new DecodeError(
            `schema registry answered ${what} with a body that is not JSON: ${(err as Error).message}`,
            true,
          );
        }
        if (body.schemaType && body.schemaType !== 'AVRO')
          throw new DecodeError(`${what} is ${body.schemaType}, not Avro`);
        if (typeof body.schema !== 'string')
          throw new DecodeError(`schema registry returned no schema for ${what}`);
        let schema: unknown;
        try {
          schema = JSON.parse(body.schema) as unknown;
        } catch (err) {
          throw new DecodeError(`${what} is not an Avro schema (JSON): ${(err as Error).message}`);
        }
        const references = Array.isArray(body.references)
          ? (body.references as SchemaReference[])
          : [];
        for (const r of references) {
          if (
            typeof r?.name !== 'string' ||
            typeof r.subject !== 'string' ||
            !Number.isInteger(Number(r.version))
          ) {
            throw new DecodeError(
              `${what} has a reference without name, subject and version: ${JSON.stringify(r)}`,
            );
          }
        }
        return { schema, references };
      })();
      // Keep successes and permanent failures; forget transient ones so the next try refetches.
      p.catch((err: unknown) => {
        if (err instanceof DecodeError && err.retriable) cache.delete(path);
      });
      cache.set(path, p);
    }
    return p;
  };

  /** The schema with its references (and theirs) inlined; `seen` stops reference cycles. */
  const resolve = async (
    registered: RegisteredSchema,
    seen: ReadonlySet<string>,
  ): Promise<unknown> => {
    if (registered.references.length === 0) return registered.schema;
    const referenced = new Map<string, unknown>();
    for (const r of registered.references) {
      const at = `${r.subject}/versions/${r.version}`;
      if (seen.has(at))
        throw new DecodeError(
          `schema references form a cycle at subject ${r.subject} version ${r.version}`,
        );
      const target = await fetchSchema(
        `/subjects/${encodeURIComponent(r.subject)}/versions/${Number(r.version)}`,
        `subject ${r.subject} version ${r.version} (a schema reference)`,
      );
      referenced.set(r.name, await resolve(target, new Set([...seen, at])));
    }
    return inlineReferences(registered.schema, referenced);
  };

  const resolved = new Map<number, Promise<unknown>>();
  return {
    schema(id) {
      let p = resolved.get(id);
      if (!p) {
        p = fetchSchema(`/schemas/ids/${id}`, `schema id ${id}`).then((r) => resolve(r, new Set()));
        p.catch((err: unknown) => {
          if (err instanceof DecodeError && err.retriable) resolved.delete(id);
        });
        resolved.set(id, p);
      }
      return p;
    },
  };
}

const typeCache = new Map<unknown, avro.Type>();
function avroType(schema: unknown): avro.Type {
  let t = typeCache.get(schema);
  if (!t) {
    // Longs beyond 2^53 (NanoTimestamp, snowflake ids, `infinity` micros) as decimal strings.
    t = avro.Type.forSchema(schema as avro.Schema, { wrapUnions: 'auto', typeHook: losslessLongs });
    typeCache.set(schema, t);
  }
  return t;
}

/** True for the Confluent wire format (JSON never starts with a zero byte). */
export const isConfluentAvro = (bytes: Buffer) => bytes.length >= 5 && bytes[0] === 0;

async function decodeAvro(
  bytes: Buffer,
  registry: SchemaRegistry | undefined,
): Promise<{ value: unknown; schema: unknown }> {
  if (!registry)
    throw new DecodeError(
      'Avro record (Confluent wire format) but no schema registry is configured (LC_SCHEMA_REGISTRY_URL)',
    );
  const id = bytes.readInt32BE(1);
  const schema = await registry.schema(id);
  try {
    return { value: avroType(schema).fromBuffer(bytes.subarray(5)), schema };
  } catch (err) {
    throw new DecodeError(`Avro body does not match schema id ${id}: ${(err as Error).message}`);
  }
}

/** Named types of an Avro schema by short and full name, to resolve references like "Value". */
function namedTypes(
  schema: unknown,
  out = new Map<string, unknown>(),
  ns = '',
): Map<string, unknown> {
  if (Array.isArray(schema)) for (const s of schema) namedTypes(s, out, ns);
  else if (schema && typeof schema === 'object') {
    const o = schema as {
      name?: string;
      namespace?: string;
      fields?: { type: unknown }[];
      items?: unknown;
      values?: unknown;
    };
    const space = o.namespace ?? ns;
    if (typeof o.name === 'string') {
      out.set(o.name, o);
      out.set(o.name.includes('.') ? o.name : `${space}.${o.name}`, o);
    }
    for (const f of o.fields ?? []) namedTypes(f.type, out, space);
    if (o.items) namedTypes(o.items, out, space);
    if (o.values) namedTypes(o.values, out, space);
  }
  return out;
}

/** Column encodings from an Avro record schema (Debezium puts `connect.name` on fields). */
function avroColumns(envelope: unknown): Map<string, ColumnEncoding> {
  const out = new Map<string, ColumnEncoding>();
  const named = namedTypes(envelope);
  const fields = (envelope as { fields?: { name: string; type: unknown }[] }).fields ?? [];
  const resolve = (t: unknown): unknown => {
    const u = Array.isArray(t) ? t.find((x) => x !== 'null') : t;
    return typeof u === 'string' ? (named.get(u) ?? u) : u;
  };
  for (const side of ['after', 'before']) {
    const row = resolve(fields.find((f) => f.name === side)?.type) as
      { fields?: { name: string; type: unknown }[] } | undefined;
    for (const f of row?.fields ?? []) {
      if (out.has(f.name)) continue;
      const t = resolve(f.type) as Record<string, unknown> | string;
      if (typeof t !== 'object' || t === null) continue;
      const name =
        (t['connect.name'] as string | undefined) ??
        (t.logicalType === 'decimal' ? 'org.apache.kafka.connect.data.Decimal' : undefined);
      const params = t['connect.parameters'] as Record<string, string> | undefined;
      const scale =
        params?.scale !== undefined
          ? Number(params.scale)
          : typeof t.scale === 'number'
            ? t.scale
            : undefined;
      const enc: ColumnEncoding = {};
      if (name) enc.name = name;
      if (scale !== undefined) enc.scale = scale;
      if (params?.['__debezium.source.column.type'])
        enc.sourceType = params['__debezium.source.column.type'];
      if (enc.name || enc.sourceType) out.set(f.name, enc);
    }
  }
  return out;
}

interface ConnectField {
  field: string;
  type: string;
  name?: string;
  parameters?: Record<string, string>;
  fields?: ConnectField[];
}

/** Column encodings from a JsonConverter schema (schemas.enable=true). */
function jsonColumns(schema: { fields?: ConnectField[] }): Map<string, ColumnEncoding> {
  const out = new Map<string, ColumnEncoding>();
  const row =
    schema.fields?.find((f) => f.field === 'after') ??
    schema.fields?.find((f) => f.field === 'before');
  for (const f of row?.fields ?? []) {
    const enc: ColumnEncoding = {};
    if (f.name) enc.name = f.name;
    const scale = f.parameters?.scale;
    if (scale !== undefined) enc.scale = Number(scale);
    const sourceType = f.parameters?.['__debezium.source.column.type'];
    if (sourceType) enc.sourceType = sourceType;
    if (enc.name || enc.sourceType) out.set(f.field, enc);
  }
  return out;
}

function parseJson(bytes: Buffer): unknown {
  try {
    return parseJsonLossless(bytes.toString('utf8'));
  } catch (err) {
    throw new DecodeError(`not JSON: ${(err as Error).message}`);
  }
}

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Decodes a record key (JSON with or without schema, or Confluent Avro). Never throws for JSON oddities. */
export async function decodeKey(
  bytes: Buffer | string | null,
  registry: SchemaRegistry | undefined,
): Promise<unknown> {
  if (bytes === null) return null;
  const buf = typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes;
  if (isConfluentAvro(buf)) return (await decodeAvro(buf, registry)).value;
  const parsed = parseJson(buf);
  if (isObj(parsed) && 'schema' in parsed && 'payload' in parsed) return parsed.payload;
  return parsed;
}

/**
 * A Debezium value -> ChangeRecord; null for a tombstone. Throws DecodeError for bytes
 * that are not a Debezium change event envelope.
 */
export async function decodeChange(
  value: Buffer | null,
  key: unknown,
  registry: SchemaRegistry | undefined,
): Promise<ChangeRecord | null> {
  if (value === null || value.length === 0) return null;
  let payload: unknown;
  let columns = new Map<string, ColumnEncoding>();
  if (isConfluentAvro(value)) {
    const decoded = await decodeAvro(value, registry);
    payload = decoded.value;
    columns = avroColumns(decoded.schema);
  } else {
    const parsed = parseJson(value);
    if (isObj(parsed) && 'payload' in parsed && 'schema' in parsed) {
      payload = parsed.payload;
      if (isObj(parsed.schema)) columns = jsonColumns(parsed.schema as { fields?: ConnectField[] });
    } else {
      payload = parsed;
    }
  }
  if (payload === null) return null;
  if (!isObj(payload) || typeof payload.op !== 'string' || !isObj(payload.source)) {
    throw new DecodeError(
      'not a Debezium change event envelope (expected op, source, before/after)',
    );
  }
  const op = payload.op as Op;
  if (!['c', 'u', 'd', 'r', 't', 'm'].includes(op))
    throw new DecodeError(`unknown Debezium op ${JSON.stringify(op)}`);
  const source = payload.source;
  const table = typeof source.table === 'string' ? source.table : '';
  const schema =
    typeof source.schema === 'string'
      ? source.schema
      : typeof source.db === 'string' && source.connector === 'mysql'
        ? source.db
        : undefined;
  const tsMs = Number(source.ts_ms ?? payload.ts_ms ?? 0);
  return {
    op,
    before: isObj(payload.before) ? payload.before : null,
    after: isObj(payload.after) ? payload.after : null,
    source,
    tsMs: Number.isFinite(tsMs) ? tsMs : 0,
    schema,
    table,
    columns,
    key,
  };
}
