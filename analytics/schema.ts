// Tables of the analytics store and the rows the sink writes into them. The DDL runs
// unchanged on ClickHouse 18.16 (Debian's server) and on modern engines (chDB, current
// servers): ReplacingMergeTree keyed by the record's stable id, so a batch replayed after a
// crash collapses on merge, and every query counts distinct ids so it never double-counts
// before the merge either. Times are kept twice: `*_ms` (UInt64 epoch ms, exact, used by
// the goal windows) and a DateTime in seconds (partitioning, date functions, dashboards).
// Absent optional values are '' or 0, never NULL: 18.16 cannot put Nullable in a key.
// What a message said (the message log's body columns, a send's payload) is kept for a
// configured number of days: a column TTL where the engine has one (from 19.6, chDB); on
// 18.16 the sink empties old message bodies itself (expireMessageBodies).
import type { Logger } from 'pino';
import type { AnalyticsStore } from './store.ts';
import type {
  DeliveryOutcome,
  MessageRecord,
  NormalisedEvent,
  SendCommand,
} from '../platform/contracts.ts';
import { ErrorCodes, LifecycleError } from '../platform/errors.ts';

export const TABLES = ['events', 'sends', 'deliveries', 'messages'] as const;
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

/** The message log: one row per send and channel a provider accepted (MessageRecord). */
export interface MessageRow {
  /** `sendId:channel`. */
  id: string;
  send_id: string;
  user_id: string;
  rule_id: string;
  campaign_id: string;
  category: string;
  channel: string;
  template: string;
  /** 0: a template without managed versions. */
  template_version: number;
  locale: string;
  /** Where it went (email address, phone, device tokens, webhook URL, userId in-app); '' when none. */
  recipient: string;
  subject: string;
  html: string;
  text: string;
  /** JSON of the rest of the rendered content (push, in-app, SMS, webhook). */
  content: string;
  /** JSON of the send's personalisation data (what a resend renders again). */
  data: string;
  origin: string;
  ts_ms: number;
  ts: number;
}

/** The message log's columns that hold what a message said: emptied after the body TTL. */
export const MESSAGE_BODY_COLUMNS = ['subject', 'html', 'text', 'content', 'data'] as const;

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

export function messageRow(m: MessageRecord): MessageRow {
  return {
    id: m.id,
    send_id: m.sendId,
    user_id: m.userId,
    rule_id: m.ruleId,
    campaign_id: m.campaignId ?? '',
    category: m.category,
    channel: m.channel,
    template: m.template,
    template_version: m.templateVersion ?? 0,
    locale: m.locale,
    recipient: m.to ?? '',
    subject: m.subject ?? '',
    html: m.html ?? '',
    text: m.text ?? '',
    content: JSON.stringify(m.content),
    data: JSON.stringify(m.data),
    origin: m.origin ?? '',
    ts_ms: m.ts,
    ts: seconds(m.ts),
  };
}

export interface SchemaOptions {
  /** Days the message payload (`sends.data`: personalisation data, traits) is kept. */
  payloadTtlDays: number;
  /** Days the message log keeps what a message said (its body columns); 30 when absent. */
  messageBodyTtlDays?: number;
}

export interface SchemaInfo {
  version: string;
  /** Whether the payload TTL is in force (false on servers older than 19.6). */
  payloadTtl: boolean;
  /**
   * Whether the message log's body TTL is a column TTL of the table (from 19.6, chDB);
   * without it the sink empties expired bodies itself (`expireMessageBodies`).
   */
  bodyTtl: boolean;
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

/** The column TTL of the message log's body columns: they reset to '' `days` after the message. */
export function bodyTtlClause(days: number): string {
  if (!Number.isInteger(days) || days < 1)
    throw new LifecycleError(
      ErrorCodes.Analytics,
      `message body TTL must be a positive number of days, got ${days}`,
    );
  return `TTL ts + toIntervalDay(${days})`;
}

/**
 * CREATE TABLE statements, with the payload TTL when `ttlDays` is given and the message
 * body TTL when `bodyTtlDays` is.
 */
export function tableDdl(
  database: string,
  ttlDays?: number,
  bodyTtlDays?: number,
): Record<Table, string> {
  assertDatabaseName(database);
  const ttl = ttlDays === undefined ? '' : ` ${payloadTtlClause(ttlDays)}`;
  const bodyTtl = bodyTtlDays === undefined ? '' : ` ${bodyTtlClause(bodyTtlDays)}`;
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
    // Keyed by user first: support reads one user's messages; a replay collapses by id.
    messages: `CREATE TABLE IF NOT EXISTS ${database}.messages (
  id String,
  send_id String,
  user_id String,
  rule_id String,
  campaign_id String,
  category String,
  channel String,
  template String,
  template_version UInt32,
  locale String,
  recipient String,
  subject String${bodyTtl},
  html String${bodyTtl},
  text String${bodyTtl},
  content String${bodyTtl},
  data String${bodyTtl},
  origin String,
  ts_ms UInt64,
  ts DateTime
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (user_id, id)`,
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
  messages: [],
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
  const bodyDays = opts.messageBodyTtlDays ?? DEFAULT_MESSAGE_BODY_TTL_DAYS;
  await store.command(`CREATE DATABASE IF NOT EXISTS ${database}`);
  const ddl = tableDdl(
    database,
    payloadTtl ? opts.payloadTtlDays : undefined,
    payloadTtl ? bodyDays : undefined,
  );
  for (const table of TABLES) await store.command(ddl[table]);
  await addMissingColumns(store, database, logger);
  await store.command(erasureLogDdl(database));
  if (payloadTtl) {
    const [row] = await store.query<{ statement: string }>(
      `SHOW CREATE TABLE ${database}.messages`,
    );
    const stale = MESSAGE_BODY_COLUMNS.filter(
      (c) =>
        !new RegExp(`\`${c}\` String TTL ts \\+ toIntervalDay\\(${bodyDays}\\)`).test(
          row?.statement ?? '',
        ),
    );
    for (const column of stale)
      await store.command(
        `ALTER TABLE ${database}.messages MODIFY COLUMN ${column} String ${bodyTtlClause(bodyDays)}`,
      );
    if (stale.length > 0) logger?.info({ database, days: bodyDays }, 'message body TTL changed');
  }
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
      'ClickHouse before 19.6 has no TTL: message payloads are kept until deleted by hand, and the sink empties expired message bodies itself once a day',
    );
  }
  return { version, payloadTtl, bodyTtl: payloadTtl };
}

export const DEFAULT_MESSAGE_BODY_TTL_DAYS = 30;

/** The rows of the message log whose body is older than the cutoff and not emptied yet. */
const EXPIRED_BODIES = `ts_ms < {cutoff:UInt64} AND (${MESSAGE_BODY_COLUMNS.map((c) => `${c} != ''`).join(' OR ')})`;

/**
 * Empties the body columns of messages older than `days`, where the engine has no column TTL
 * (ClickHouse before 19.6): a mutation (`ALTER TABLE ... UPDATE`), made only when some row
 * needs it, since every mutation rewrites whole parts. Returns the rows it emptied. The read
 * path hides expired bodies by their time in any case (analytics/messages.ts).
 */
export async function expireMessageBodies(
  store: AnalyticsStore,
  database: string,
  days: number,
  now: number,
): Promise<number> {
  assertDatabaseName(database);
  bodyTtlClause(days);
  const params = { cutoff: Math.max(0, now - days * 86_400_000) };
  const [row] = await store.query<{ n: number | string }>(
    `SELECT count() AS n FROM ${database}.messages WHERE ${EXPIRED_BODIES}`,
    params,
  );
  const n = Number(row?.n ?? 0);
  if (n > 0)
    await store.command(
      `ALTER TABLE ${database}.messages UPDATE ${MESSAGE_BODY_COLUMNS.map((c) => `${c} = ''`).join(', ')} WHERE ${EXPIRED_BODIES}`,
      params,
    );
  return n;
}
