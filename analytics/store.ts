// The analytics store: the few operations the sink, dashboards and backtests need from
// ClickHouse, with two implementations chosen by config.clickhouse.backend: `server`
// (ClickHouse over HTTP, @clickhouse/client) and `chdb` (the engine in-process, for the
// embedded demo). Rows travel as JSONEachRow both ways, and 64-bit integers come back as
// JSON numbers on both, so the same SQL returns the same values.
//
// Query parameters use ClickHouse's `{name:Type}` placeholders. Servers older than 19.x
// (Debian's 18.16) do not know them, so there the values are bound client-side as escaped
// literals of the declared type. Write `has({ids:Array(String)}, col)` rather than
// `col IN {ids:Array(String)}`: 18.16 accepts arrays only in the former.
import { createClient, ClickHouseLogLevel, type ClickHouseClient } from '@clickhouse/client';
import type { Config } from '../platform/config.ts';
import { ErrorCodes, LifecycleError } from '../platform/errors.ts';

export type QueryParams = Record<string, unknown>;

export interface AnalyticsStore {
  /** DDL and statements without a result; `params` bind `{name:Type}` placeholders as in `query`. */
  command(sql: string, params?: QueryParams): Promise<void>;
  /** Inserts rows (objects keyed by column name) as JSONEachRow. */
  insert(table: string, rows: object[]): Promise<void>;
  /** Runs a SELECT and returns its rows as objects. */
  query<T = Record<string, unknown>>(sql: string, params?: QueryParams): Promise<T[]>;
  close(): Promise<void>;
}

export type AnalyticsConfig = Pick<
  Config['clickhouse'],
  'backend' | 'url' | 'database' | 'user' | 'password' | 'chdbPath'
>;
export type AnalyticsBackend = AnalyticsConfig['backend'];

/**
 * A store opened on one of the two engines, which it names: the few statements they spell
 * differently (erasure: a mutation or a lightweight delete) are chosen by it.
 */
export interface EngineAnalyticsStore extends AnalyticsStore {
  readonly backend: AnalyticsBackend;
}

/** Opens the store the config names. The database itself is not created here. */
export async function createAnalyticsStore(config: AnalyticsConfig): Promise<EngineAnalyticsStore> {
  return config.backend === 'chdb'
    ? createChdbStore({ path: config.chdbPath })
    : createServerStore(config);
}

function storeError(op: string, err: unknown): LifecycleError {
  const message = err instanceof Error ? err.message : String(err);
  // Connection problems can be retried; SQL errors (code N in the message) cannot.
  const retriable = /ECONNREFUSED|ECONNRESET|ETIMEDOUT|socket hang up|Timeout/i.test(message);
  return new LifecycleError(
    ErrorCodes.Analytics,
    `analytics ${op} failed: ${message.split('\n')[0]}`,
    { retriable, cause: err },
  );
}

function parseRows<T>(text: string): T[] {
  const rows: T[] = [];
  for (const line of text.split('\n')) if (line.trim() !== '') rows.push(JSON.parse(line) as T);
  return rows;
}

// ------------------------------------------------------------------ parameter binding

const PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_]*):([^{}]+)\}/g;

function quoteString(s: string): string {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n').replace(/\r/g, '\\r').replace(/\t/g, '\\t').replace(/\0/g, '\\0')}'`;
}

function formatDateTime(v: unknown, withTime: boolean): string {
  const d = v instanceof Date ? v : typeof v === 'number' ? new Date(v) : null;
  if (d) {
    if (Number.isNaN(d.getTime())) throw new Error('invalid date');
    const iso = d.toISOString();
    return withTime ? `${iso.slice(0, 10)} ${iso.slice(11, 19)}` : iso.slice(0, 10);
  }
  if (typeof v === 'string') return v;
  throw new Error(`expected a Date, epoch ms or string, got ${typeof v}`);
}

/** Renders `value` as a ClickHouse literal of `type`; throws when it does not fit. */
export function literal(type: string, value: unknown): string {
  const t = type.trim();
  const inner = /^(Nullable|LowCardinality)\((.*)\)$/.exec(t);
  if (inner) {
    if (value === null || value === undefined) {
      if (inner[1] === 'Nullable') return 'NULL';
      throw new Error('null for a non-nullable type');
    }
    return literal(inner[2]!, value);
  }
  const array = /^Array\((.*)\)$/.exec(t);
  if (array) {
    if (!Array.isArray(value)) throw new Error(`expected an array for ${t}`);
    return `[${value.map((v) => literal(array[1]!, v)).join(', ')}]`;
  }
  if (/^U?Int(8|16|32|64|128|256)$/.test(t)) {
    const s =
      typeof value === 'bigint'
        ? value.toString()
        : typeof value === 'number' && Number.isInteger(value)
          ? String(value)
          : typeof value === 'string' && /^-?\d+$/.test(value)
            ? value
            : null;
    if (s === null) throw new Error(`expected an integer for ${t}`);
    if (t.startsWith('U') && s.startsWith('-')) throw new Error(`negative value for ${t}`);
    return s;
  }
  if (/^(Float32|Float64|Decimal.*)$/.test(t)) {
    const n = typeof value === 'string' ? Number(value) : value;
    if (typeof n !== 'number' || !Number.isFinite(n))
      throw new Error(`expected a finite number for ${t}`);
    return String(n);
  }
  if (t === 'Bool' || t === 'Boolean') {
    if (typeof value !== 'boolean') throw new Error(`expected a boolean for ${t}`);
    return value ? '1' : '0';
  }
  if (
    t === 'String' ||
    t === 'UUID' ||
    /^FixedString\(\d+\)$/.test(t) ||
    /^Enum(8|16)?\(/.test(t)
  ) {
    if (typeof value !== 'string') throw new Error(`expected a string for ${t}`);
    return quoteString(value);
  }
  if (t === 'Date') return `toDate(${quoteString(formatDateTime(value, false))})`;
  if (/^DateTime(\(.*\))?$/.test(t))
    return `toDateTime(${quoteString(formatDateTime(value, true))})`;
  throw new Error(`unsupported parameter type ${t}`);
}

/** Replaces `{name:Type}` placeholders with literals; every placeholder must have a value. */
export function bindParams(sql: string, params: QueryParams): string {
  return sql.replace(PLACEHOLDER, (_m, name: string, type: string) => {
    if (!(name in params))
      throw new LifecycleError(ErrorCodes.Analytics, `query parameter ${name} has no value`);
    try {
      return literal(type, params[name]);
    } catch (err) {
      throw new LifecycleError(
        ErrorCodes.Analytics,
        `query parameter ${name} (${type}): ${(err as Error).message}`,
      );
    }
  });
}

// ------------------------------------------------------------------ ClickHouse server

const JSON_SETTINGS = { output_format_json_quote_64bit_integers: 0 } as const;

export function createServerStore(
  config: Omit<AnalyticsConfig, 'backend' | 'chdbPath'>,
): EngineAnalyticsStore {
  const client: ClickHouseClient = createClient({
    url: config.url,
    username: config.user,
    password: config.password,
    database: config.database,
    log: { level: ClickHouseLogLevel.OFF },
    clickhouse_settings: JSON_SETTINGS,
  });
  let nativeParams: Promise<boolean> | undefined;

  // Query parameters arrived in ClickHouse 19.x; ask once and bind locally on older servers.
  function supportsNativeParams(): Promise<boolean> {
    nativeParams ??= client
      .query({ query: 'SELECT version() AS v', format: 'JSONEachRow' })
      .then((r) => r.json<{ v: string }>())
      .then((rows) => Number((rows[0]?.v ?? '0').split('.')[0]) >= 19)
      .catch((err: unknown) => {
        nativeParams = undefined;
        throw err;
      });
    return nativeParams;
  }

  /** The statement and how its parameters travel: natively from 19.x, else bound as literals here. */
  async function bound(
    sql: string,
    params: QueryParams | undefined,
  ): Promise<{ query: string; query_params?: QueryParams }> {
    if (params === undefined || Object.keys(params).length === 0) return { query: sql };
    return (await supportsNativeParams())
      ? { query: sql, query_params: params }
      : { query: bindParams(sql, params) };
  }

  return {
    backend: 'server',
    async command(sql, params) {
      try {
        await client.command(await bound(sql, params));
      } catch (err) {
        if (err instanceof LifecycleError) throw err;
        throw storeError('command', err);
      }
    },
    async insert(table, rows) {
      if (rows.length === 0) return;
      try {
        await client.insert({ table, values: rows, format: 'JSONEachRow' });
      } catch (err) {
        throw storeError(`insert into ${table}`, err);
      }
    },
    async query<T>(sql: string, params?: QueryParams): Promise<T[]> {
      try {
        const rs = await client.query({ ...(await bound(sql, params)), format: 'JSONEachRow' });
        return await rs.json<T>();
      } catch (err) {
        if (err instanceof LifecycleError) throw err;
        throw storeError('query', err);
      }
    },
    async close() {
      await client.close();
    },
  };
}

// ------------------------------------------------------------------ chDB (in-process)

/**
 * chDB binds one data folder per process: every store opened on the same `path` shares
 * it, and a second folder can be opened only after the first store is closed.
 */
export async function createChdbStore(options: { path: string }): Promise<EngineAnalyticsStore> {
  const { mkdir } = await import('node:fs/promises');
  await mkdir(options.path, { recursive: true });
  // Loaded lazily: the native engine is large and only the embedded mode needs it.
  const chdb = await import('chdb');
  const session = new chdb.Session(options.path, {
    connectionArgs: ['--output_format_json_quote_64bit_integers=0'],
  });
  let closed = false;
  const open = () => {
    if (closed) throw new LifecycleError(ErrorCodes.Analytics, 'analytics store is closed');
  };
  return {
    backend: 'chdb',
    async command(sql, params) {
      open();
      try {
        if (params !== undefined && Object.keys(params).length > 0)
          await session.queryBindAsync(sql, params);
        else await session.queryAsync(sql);
      } catch (err) {
        throw storeError('command', err);
      }
    },
    async insert(table, rows) {
      open();
      if (rows.length === 0) return;
      try {
        await session.insert({
          table,
          values: rows.map((r) => JSON.stringify(r)).join('\n') + '\n',
          format: 'JSONEachRow',
        });
      } catch (err) {
        throw storeError(`insert into ${table}`, err);
      }
    },
    async query<T>(sql: string, params?: QueryParams): Promise<T[]> {
      open();
      try {
        const r =
          params !== undefined && Object.keys(params).length > 0
            ? await session.queryBindAsync(sql, params, { format: 'JSONEachRow' })
            : await session.queryAsync(sql, { format: 'JSONEachRow' });
        return parseRows<T>(r.text());
      } catch (err) {
        throw storeError('query', err);
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      session.close();
      await chdb.drainPending();
    },
  };
}
