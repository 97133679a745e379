// Tables of the analytics store and the rows the sink writes into them. The DDL runs
// unchanged on ClickHouse 18.16 (Debian's server) and on modern engines (chDB, current
// servers): ReplacingMergeTree keyed by the record's stable id, so a batch replayed after a
// crash collapses on merge, and every query counts distinct ids so it never double-counts
// before the merge either. Times are kept twice: `*_ms` (UInt64 epoch ms, exact, used by
// the goal windows) and a DateTime in seconds (partitioning, date functions, dashboards).
// Absent optional values are '' or 0, never NULL: 18.16 cannot put Nullable in a key.
import type { Logger } from 'pino';
import type { AnalyticsStore } from './store.ts';
import type { DeliveryOutcome, NormalisedEvent, SendCommand } from '../platform/contracts.ts';
import { ErrorCodes, LifecycleError } from '../platform/errors.ts';

export const TABLES = ['events', 'sends', 'deliveries'] as const;
export type Table = (typeof TABLES)[number];
/** The log of erasures (right to be forgotten) the sink carried out; see erasure.ts. */
export const ERASURE_LOG = 'erasures';

export interface EventRow {
  id: string;
  user_id: string;
  anonymous_id: string;
  type: string;
  ts_ms: number;
  ts: number;
  received_at_ms: number;
  source: string;
  properties: string;
  traits: string;
  context: string;
}

export interface SendRow {
  send_id: string;
  rule_id: string;
  user_id: string;
  category: string;
  priority: number;
  template: string;
  channels: string[];
  variant: string;
  holdout: number;
  triggered_by_event_id: string;
  triggered_by_event_type: string;
  created_at_ms: number;
  created_at: number;
  expires_at_ms: number;
  campaign_id: string;
  goal_event: string;
  goal_within_ms: number;
  data: string;
  /** The template version a send pinned (a resend, a test send); 0: the published one at render time. */
  template_version: number;
  /** Who asked for a send made outside the rules (`api:<credential>`, `resend:<sendId>`); '' for rule sends. */
  origin: string;
}

export interface DeliveryRow {
  id: string;
  send_id: string;
  rule_id: string;
  user_id: string;
  channel: string;
  status: string;
  reason: string;
  provider: string;
  attempt: number;
  ts_ms: number;
  ts: number;
  variant: string;
  holdout: number;
}

const seconds = (ms: number) => Math.floor(ms / 1000);
const jsonOrEmpty = (v: Record<string, unknown> | undefined) =>
  v === undefined ? '' : JSON.stringify(v);

export function eventRow(e: NormalisedEvent): EventRow {
  return {
    id: e.id,
    user_id: e.userId,
    anonymous_id: e.anonymousId ?? '',
    type: e.type,
    ts_ms: e.ts,
    ts: seconds(e.ts),
    received_at_ms: e.receivedAt,
    source: e.source,
    properties: JSON.stringify(e.properties),
    traits: jsonOrEmpty(e.traits),
    context: jsonOrEmpty(e.context),
  };
}

export function sendRow(s: SendCommand): SendRow {
  return {
    send_id: s.sendId,
    rule_id: s.ruleId,
    user_id: s.userId,
    category: s.category,
    priority: s.priority,
    template: s.template,
    channels: [...s.channels],
    variant: s.variant ?? '',
    holdout: s.holdout ? 1 : 0,
    triggered_by_event_id: s.triggeredBy.eventId,
    triggered_by_event_type: s.triggeredBy.eventType,
    created_at_ms: s.createdAt,
    created_at: seconds(s.createdAt),
    expires_at_ms: s.expiresAt ?? 0,
    campaign_id: s.campaignId ?? '',
    goal_event: s.goal?.event ?? '',
    goal_within_ms: s.goal?.withinMs ?? 0,
    data: JSON.stringify(s.data),
    template_version: s.templateVersion ?? 0,
    origin: s.origin ?? '',
  };
}

export function deliveryRow(d: DeliveryOutcome): DeliveryRow {
  return {
    id: d.id,
    send_id: d.sendId,
    rule_id: d.ruleId,
    user_id: d.userId,
    channel: d.channel ?? '',
    status: d.status,
    reason: d.reason ?? '',
    provider: d.provider ?? '',
    attempt: d.attempt,
    ts_ms: d.ts,
    ts: seconds(d.ts),
    variant: d.variant ?? '',
    holdout: d.holdout ? 1 : 0,
  };
}

export interface SchemaOptions {
  /** Days the message payload (`sends.data`: personalisation data, traits) is kept. */
  payloadTtlDays: number;
}

export interface SchemaInfo {
  version: string;
  /** Whether the payload TTL is in force (false on servers older than 19.6). */
  payloadTtl: boolean;
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function assertDatabaseName(database: string): void {
  if (!IDENT.test(database))
    throw new LifecycleError(
      ErrorCodes.Analytics,
      `not a plain ClickHouse database name: ${database}`,
    );
}

/** Column TTL arrived in ClickHouse 19.6. */
export function supportsColumnTtl(version: string): boolean {
  const [major = 0, minor = 0] = version.split('.').map((p) => Number(p));
  return major > 19 || (major === 19 && minor >= 6);
}

export function payloadTtlClause(days: number): string {
  if (!Number.isInteger(days) || days < 1)
    throw new LifecycleError(
      ErrorCodes.Analytics,
      `payload TTL must be a positive number of days, got ${days}`,
    );
  return `TTL created_at + toIntervalDay(${days})`;
}

/** CREATE TABLE statements, with the payload TTL when `ttlDays` is given. */
export function tableDdl(database: string, ttlDays?: number): Record<Table, string> {
  assertDatabaseName(database);
  const ttl = ttlDays === undefined ? '' : ` ${payloadTtlClause(ttlDays)}`;
  return {
    events: `CREATE TABLE IF NOT EXISTS ${database}.events (
  id String,
  user_id String,
  anonymous_id String,
  type String,
  ts_ms UInt64,
  ts DateTime,
  received_at_ms UInt64,
  source String,
  properties String,
  traits String,
  context String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (type, user_id, id)`,
    sends: `CREATE TABLE IF NOT EXISTS ${database}.sends (
  send_id String,
  rule_id String,
  user_id String,
  category String,
  priority Int32,
  template String,
  channels Array(String),
  variant String,
  holdout UInt8,
  triggered_by_event_id String,
  triggered_by_event_type String,
  created_at_ms UInt64,
  created_at DateTime,
  expires_at_ms UInt64,
  campaign_id String,
  goal_event String,
  goal_within_ms UInt64,
  data String${ttl},
  template_version UInt32,
  origin String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(created_at)
ORDER BY (rule_id, user_id, send_id)`,
    deliveries: `CREATE TABLE IF NOT EXISTS ${database}.deliveries (
  id String,
  send_id String,
  rule_id String,
  user_id String,
  channel String,
  status String,
  reason String,
  provider String,
  attempt UInt32,
  ts_ms UInt64,
  ts DateTime,
  variant String,
  holdout UInt8
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (rule_id, send_id, id)`,
  };
}

/**
 * Columns added to a table after its first release, in the order they were added. A new table
 * has them (tableDdl ends with them); an older one gets them at the next start (ensureSchema).
 */
export const ADDED_COLUMNS: Readonly<Record<Table, readonly { name: string; type: string }[]>> = {
  events: [],
  sends: [
    { name: 'template_version', type: 'UInt32' },
    { name: 'origin', type: 'String' },
  ],
  deliveries: [],
};

/**
 * Adds the columns of ADDED_COLUMNS a table lacks. ClickHouse 18.16 has no `ADD COLUMN IF NOT
 * EXISTS`, so the table's columns are read first; a column another instance added meanwhile
 * is read again rather than refused. Rows written before have the type's default ('' or 0).
 */
export async function addMissingColumns(
  store: AnalyticsStore,
  database: string,
  logger?: Logger,
): Promise<string[]> {
  assertDatabaseName(database);
  const added: string[] = [];
  for (const table of TABLES) {
    const wanted = ADDED_COLUMNS[table];
    if (wanted.length === 0) continue;
    const present = async () =>
      new Set(
        (
          await store.query<{ name: string }>(
            `SELECT name FROM system.columns WHERE database = '${database}' AND table = '${table}'`,
          )
        ).map((r) => r.name),
      );
    const have = await present();
    for (const column of wanted) {
      if (have.has(column.name)) continue;
      try {
        await store.command(
          `ALTER TABLE ${database}.${table} ADD COLUMN ${column.name} ${column.type}`,
        );
      } catch (err) {
        if (!(await present()).has(column.name)) throw err;
      }
      have.add(column.name);
      added.push(`${table}.${column.name}`);
      logger?.info({ database, table, column: column.name }, 'column added to an existing table');
    }
  }
  return added;
}

/**
 * The erasure log: one row per erasure the sink carried out (a replayed deletion adds
 * another, with what it found then). The user id is the only personal data in it: the
 * request is named by its event id and source, what was erased by table and row count.
 * A plain MergeTree without TTL: an audit trail is kept, and never collapsed.
 */
export function erasureLogDdl(database: string): string {
  assertDatabaseName(database);
  return `CREATE TABLE IF NOT EXISTS ${database}.${ERASURE_LOG} (
  user_id String,
  request_id String,
  request_source String,
  requested_at_ms UInt64,
  requested_at DateTime,
  erased_at_ms UInt64,
  erased_at DateTime,
  method String,
  erased_tables Array(String),
  erased_rows Array(UInt64)
) ENGINE = MergeTree
PARTITION BY toYYYYMM(erased_at)
ORDER BY (user_id, erased_at_ms, request_id)`;
}

/**
 * Creates the database and tables if missing; idempotent. The payload TTL is set where the
 * engine supports it (decided by `version()`), and changed in place when the configured
 * number of days differs from the table's.
 */
export async function ensureSchema(
  store: AnalyticsStore,
  database: string,
  opts: SchemaOptions,
  logger?: Logger,
): Promise<SchemaInfo> {
  assertDatabaseName(database);
  const version = (await store.query<{ v: string }>('SELECT version() AS v'))[0]?.v ?? '0';
  const payloadTtl = supportsColumnTtl(version);
  await store.command(`CREATE DATABASE IF NOT EXISTS ${database}`);
  const ddl = tableDdl(database, payloadTtl ? opts.payloadTtlDays : undefined);
  for (const table of TABLES) await store.command(ddl[table]);
  await addMissingColumns(store, database, logger);
  await store.command(erasureLogDdl(database));
  if (payloadTtl) {
    const wanted = `toIntervalDay(${opts.payloadTtlDays})`;
    const [row] = await store.query<{ statement: string }>(`SHOW CREATE TABLE ${database}.sends`);
    if (row && !row.statement.includes(wanted)) {
      await store.command(
        `ALTER TABLE ${database}.sends MODIFY COLUMN data String ${payloadTtlClause(opts.payloadTtlDays)}`,
      );
      logger?.info({ database, days: opts.payloadTtlDays }, 'message payload TTL changed');
    }
  } else {
    logger?.info(
      { database, version },
      'ClickHouse before 19.6 has no TTL: message payloads are kept until deleted by hand',
    );
  }
  return { version, payloadTtl };
}
