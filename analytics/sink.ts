// The analytics sink: one consumer group over `<prefix>.events`, `.sends` (and `.sends.high`),
// `.deliveries` and `.messages` (the message log) that decodes each record (Avro, schema id in
// the header), buffers rows per table and inserts them in batches (bounded by row count, by the
// bytes of message bodies and by time). A batch's offsets are committed only after every
// row it produced is in ClickHouse, so a crash loses nothing; what it replays carries the
// same ids and collapses in the ReplacingMergeTree tables (queries count distinct ids
// meanwhile). Records that cannot be decoded, or hold values the tables cannot store, go to
// the DLQ with a reason and the stream keeps flowing.
// A `user_deleted` event erases its user from every table once its batch is inserted and
// before the batch is committed (erasure.ts), and the erasure is logged; rows of an erased
// user that arrive later are dropped (the erasure log is consulted before every insert).
import type { Logger } from 'pino';
import type { EngineAnalyticsStore } from './store.ts';
import { createAnalyticsStore } from './store.ts';
import { USER_DELETED } from '../engine/core/engine-core.ts';
import {
  createErasedUsers,
  createEraser,
  deletionRow,
  erasureRequests,
  type ErasureRequest,
} from './erasure.ts';
import { deliveryCodec, eventCodec, messageCodec, sendCodec } from '../platform/avro.ts';
import type { Bus, IncomingMessage } from '../platform/bus.ts';
import { internalTopicSpecs } from '../platform/bus.ts';
import {
  createConsumeLoop,
  RecordRejected,
  stalledHealth,
  type BatchRetry,
} from '../platform/consume.ts';
import type { Config } from '../platform/config.ts';
import { SCHEMA_ID_HEADER, topics as topicNames } from '../platform/contracts.ts';
import { ErrorCodes, errorMessage, isRetriable, LifecycleError } from '../platform/errors.ts';
import { whenReady, type StartRetry } from '../platform/ready.ts';
import { KafkaBus } from '../platform/kafka.ts';
import { Counter, createMetricsRegistry, Histogram, type Registry } from '../platform/metrics.ts';
import type { Service } from '../platform/shutdown.ts';
import {
  DEFAULT_MESSAGE_BODY_TTL_DAYS,
  deliveryRow,
  ensureSchema,
  eventRow,
  expireMessageBodies,
  messageRow,
  sendRow,
  supportsColumnTtl,
  TABLES,
  type DeliveryRow,
  type EventRow,
  type MessageRow,
  type SendRow,
  type Table,
} from './schema.ts';

export interface SinkConfig {
  groupId: string;
  topicPrefix: string;
  /** ClickHouse database of the tables (created by ensureSchema). */
  database: string;
  /** Rows (all tables together) that trigger an insert at once. */
  maxBatchRows?: number;
  /** Longest a decoded record waits for its insert. */
  flushIntervalMs?: number;
  /** Partitions consumed at the same time; their rows share inserts. */
  concurrency?: number;
  /** Longest pause between insert retries. */
  retryMaxMs?: number;
  /** How a failing batch is retried before its partition stops (defaults: the consume loop's). */
  retry?: BatchRetry;
  /** How often the erasure log is read for erasures made by other instances (default 1 s). */
  erasedRefreshMs?: number;
  /** Bytes of message-log rows (rendered bodies of up to a few MB each) that trigger an insert at once (default 32 MiB). */
  maxBatchBytes?: number;
  /** LC_MESSAGE_BODY_TTL_DAYS: days the message log keeps bodies (default 30). */
  messageBodyTtlDays?: number;
  /**
   * How often expired message bodies are emptied where the engine has no column TTL
   * (ClickHouse before 19.6; default once a day, and once at start).
   */
  bodyExpiryEveryMs?: number;
  /** The clock of body expiry. */
  now?: () => number;
}

export interface SinkDeps {
  bus: Bus;
  store: EngineAnalyticsStore;
  logger: Logger;
  metrics: Registry;
}

export type AnalyticsSink = Service;

interface Rows {
  events: EventRow[];
  sends: SendRow[];
  deliveries: DeliveryRow[];
  messages: MessageRow[];
}

const emptyRows = (): Rows => ({ events: [], sends: [], deliveries: [], messages: [] });
const rowCount = (r: Rows) =>
  r.events.length + r.sends.length + r.deliveries.length + r.messages.length;
/** What a message-log row weighs (its text columns); the other tables' rows are small and counted by number. */
const messageBytes = (m: MessageRow) =>
  m.subject.length + m.html.length + m.text.length + m.content.length + m.data.length;
const rowBytes = (r: Rows) => r.messages.reduce((n, m) => n + messageBytes(m), 0);

// DateTime is seconds in a UInt32: keep times where both engines store them faithfully.
const MAX_MS = Date.UTC(2100, 0, 1);
function checkTime(name: string, ms: number): string | null {
  return Number.isInteger(ms) && ms >= 0 && ms < MAX_MS
    ? null
    : `${name} ${ms} is not an epoch-ms time between 1970 and 2100`;
}

type Decoded =
  | { table: 'events'; row: EventRow }
  | { table: 'sends'; row: SendRow }
  | { table: 'deliveries'; row: DeliveryRow }
  | { table: 'messages'; row: MessageRow };

/** Decodes one record into its row, or says why it cannot be stored. */
export function decodeRecord(
  topic: Table,
  message: Pick<IncomingMessage, 'value' | 'headers'>,
): Decoded | { error: string } {
  if (message.value === null || message.value.length === 0) return { error: 'empty record value' };
  const schemaId = message.headers[SCHEMA_ID_HEADER];
  try {
    switch (topic) {
      case 'events': {
        const e = eventCodec.decode(message.value, schemaId);
        const bad = checkTime('ts', e.ts) ?? checkTime('receivedAt', e.receivedAt);
        if (bad) return { error: bad };
        return {
          table: 'events',
          row: e.type === USER_DELETED ? deletionRow(eventRow(e)) : eventRow(e),
        };
      }
      case 'sends': {
        const s = sendCodec.decode(message.value, schemaId);
        const bad =
          checkTime('createdAt', s.createdAt) ??
          (s.expiresAt === null ? null : checkTime('expiresAt', s.expiresAt)) ??
          (s.goal && (!Number.isInteger(s.goal.withinMs) || s.goal.withinMs < 0)
            ? `goal window ${s.goal.withinMs} is negative`
            : null) ??
          (Number.isInteger(s.priority) && Math.abs(s.priority) < 2 ** 31
            ? null
            : `priority ${s.priority} out of range`);
        return bad ? { error: bad } : { table: 'sends', row: sendRow(s) };
      }
      case 'deliveries': {
        const d = deliveryCodec.decode(message.value, schemaId);
        const bad =
          checkTime('ts', d.ts) ?? (d.attempt >= 0 ? null : `attempt ${d.attempt} is negative`);
        return bad ? { error: bad } : { table: 'deliveries', row: deliveryRow(d) };
      }
      case 'messages': {
        const m = messageCodec.decode(message.value, schemaId);
        const bad = checkTime('ts', m.ts);
        return bad ? { error: bad } : { table: 'messages', row: messageRow(m) };
      }
    }
  } catch (err) {
    return { error: errorMessage(err) };
  }
}

/**
 * Splits rows so that no insert touches more than `maxMonths` monthly partitions: ClickHouse
 * refuses an insert block spanning more than 100 partitions, which a backfill of old
 * events would otherwise hit on every retry. `second` gives a row's partition time.
 */
export function chunkByMonth<R>(
  rows: readonly R[],
  second: (row: R) => number,
  maxMonths = 50,
): R[][] {
  const byMonth = new Map<number, R[]>();
  for (const row of rows) {
    const d = new Date(second(row) * 1000);
    const month = d.getUTCFullYear() * 12 + d.getUTCMonth();
    const list = byMonth.get(month);
    if (list) list.push(row);
    else byMonth.set(month, [row]);
  }
  if (byMonth.size <= maxMonths) return rows.length > 0 ? [[...rows]] : [];
  const chunks: R[][] = [];
  const months = [...byMonth.keys()].sort((a, b) => a - b);
  for (let i = 0; i < months.length; i += maxMonths)
    chunks.push(months.slice(i, i + maxMonths).flatMap((m) => byMonth.get(m)!));
  return chunks;
}

const partitionSecond: Record<Table, (row: object) => number> = {
  events: (r) => (r as EventRow).ts,
  sends: (r) => (r as SendRow).created_at,
  deliveries: (r) => (r as DeliveryRow).ts,
  messages: (r) => (r as MessageRow).ts,
};

/**
 * Collects rows from concurrent partition batches; `add` resolves once those rows are
 * inserted (or rejects when the insert failed). A buffer is sealed when it reaches
 * `maxRows`, `maxBytes` of message bodies, or `intervalMs` after its first row; sealed
 * buffers insert one at a time.
 */
function createRowBuffer(opts: {
  maxRows: number;
  maxBytes: number;
  intervalMs: number;
  insert: (rows: Rows) => Promise<void>;
}) {
  interface Pending {
    rows: Rows;
    timer: NodeJS.Timeout;
    promise: Promise<void>;
    resolve: () => void;
    reject: (err: unknown) => void;
  }
  let current: Pending | null = null;
  let chain: Promise<void> = Promise.resolve();
  let immediate = false;

  function open(): Pending {
    let resolve!: () => void;
    let reject!: (err: unknown) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // Every waiter handles the rejection; this keeps a buffer nobody waits on from crashing the process.
    promise.catch(() => undefined);
    const pending: Pending = {
      rows: emptyRows(),
      timer: setTimeout(() => seal(), opts.intervalMs),
      promise,
      resolve,
      reject,
    };
    return pending;
  }

  function seal(): void {
    const batch = current;
    if (!batch) return;
    current = null;
    clearTimeout(batch.timer);
    chain = chain.then(() => opts.insert(batch.rows).then(batch.resolve, batch.reject));
  }

  return {
    add(rows: Rows): Promise<void> {
      if (rowCount(rows) === 0) return Promise.resolve();
      current ??= open();
      for (const t of TABLES) for (const r of rows[t]) (current.rows[t] as (typeof r)[]).push(r);
      const { promise } = current;
      if (
        immediate ||
        rowCount(current.rows) >= opts.maxRows ||
        rowBytes(current.rows) >= opts.maxBytes
      )
        seal();
      return promise;
    },
    /** Inserts what is buffered now, and everything added from here on without waiting. */
    drain(): Promise<void> {
      immediate = true;
      seal();
      return chain;
    },
    buffered: () => (current ? rowCount(current.rows) : 0),
  };
}

export function createAnalyticsSink(config: SinkConfig, deps: SinkDeps): AnalyticsSink {
  const { bus, store, metrics } = deps;
  const log = deps.logger.child({ component: 'analytics-sink' });
  const topic = topicNames(config.topicPrefix);
  const tableOf = new Map<string, Table>([
    [topic.events, 'events'],
    [topic.sends, 'sends'],
    // The send API's high-priority sends: the same send commands, on a topic delivery reads apart.
    [topic.sendsHigh, 'sends'],
    [topic.deliveries, 'deliveries'],
    [topic.messages, 'messages'],
  ]);
  const publisher = bus.publisher();
  const retryMaxMs = config.retryMaxMs ?? 5000;

  const rowsCounter = new Counter({
    name: 'lifecycle_sink_rows_total',
    help: 'Rows inserted into ClickHouse by table',
    labelNames: ['table'],
    registers: [metrics],
  });
  const insertErrors = new Counter({
    name: 'lifecycle_sink_insert_errors_total',
    help: 'Failed insert attempts',
    labelNames: ['table'],
    registers: [metrics],
  });
  const insertSeconds = new Histogram({
    name: 'lifecycle_sink_insert_seconds',
    help: 'Time to insert one buffered batch (all tables)',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [metrics],
  });
  const erasures = new Counter({
    name: 'lifecycle_sink_erasures_total',
    help: 'Users erased from the analytics tables on a user_deleted event (replays count again)',
    registers: [metrics],
  });
  const erasureErrors = new Counter({
    name: 'lifecycle_sink_erasure_errors_total',
    help: 'Failed erasure attempts (each is retried)',
    registers: [metrics],
  });
  const eraser = createEraser({ store, database: config.database });
  const erased = createErasedUsers({
    store,
    database: config.database,
    refreshMs: config.erasedRefreshMs ?? 1000,
  });
  const droppedRows = new Counter({
    name: 'lifecycle_sink_erased_rows_dropped_total',
    help: 'Rows of users already erased that arrived later (events in flight, replays) and were not stored',
    labelNames: ['table'],
    registers: [metrics],
  });

  // Like an insert: ClickHouse away means wait; rows are never stored unchecked.
  async function refreshErased(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await erased.refresh();
        return;
      } catch (err) {
        lastError = errorMessage(err);
        if (stopping) throw err;
        const delay = Math.min(retryMaxMs, 200 * 2 ** Math.min(attempt - 1, 10));
        log[attempt === 1 || attempt % 10 === 0 ? 'error' : 'warn'](
          { attempt, delayMs: delay, err: lastError },
          'reading the erasure log failed, retrying',
        );
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /** The rows minus those of users erased before this batch; a deletion event's own row stays. */
  function withoutErased(rows: Rows): Rows {
    if (erased.size() === 0) return rows;
    const kept = emptyRows();
    for (const table of TABLES) {
      for (const row of rows[table]) {
        const isDeletion = table === 'events' && (row as EventRow).type === USER_DELETED;
        if (erased.has(row.user_id) && !isDeletion) droppedRows.inc({ table });
        else (kept[table] as (typeof row)[]).push(row);
      }
    }
    return kept;
  }

  let running = false;
  let stopping = false;
  let lastInsertAt: number | null = null;
  let lastError: string | null = null;

  // ClickHouse being down or a table missing is something an operator fixes: keep trying
  // (the partitions wait, nothing is committed, health says why) until it works or the
  // sink stops, rather than skipping rows.
  async function insertChunk(table: Table, rows: object[]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await store.insert(`${config.database}.${table}`, rows);
        rowsCounter.inc({ table }, rows.length);
        return;
      } catch (err) {
        insertErrors.inc({ table });
        lastError = errorMessage(err);
        if (stopping) throw err;
        const delay = Math.min(retryMaxMs, 200 * 2 ** Math.min(attempt - 1, 10));
        log[attempt === 1 || attempt % 10 === 0 ? 'error' : 'warn'](
          {
            table,
            rows: rows.length,
            attempt,
            retriable: isRetriable(err),
            delayMs: delay,
            err: lastError,
          },
          'insert failed, retrying',
        );
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  // Like an insert: ClickHouse away means retry until it works, the batch uncommitted
  // meanwhile; a deletion is never committed past without its erasure.
  async function erase(request: ErasureRequest): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        const done = await eraser.erase(request);
        erasures.inc();
        log.info(
          {
            requestId: request.requestId,
            source: request.source,
            method: done.method,
            tables: done.erased_tables,
            rows: done.erased_rows,
          },
          'user erased from the analytics tables',
        );
        return;
      } catch (err) {
        erasureErrors.inc();
        lastError = errorMessage(err);
        if (stopping) throw err;
        const delay = Math.min(retryMaxMs, 200 * 2 ** Math.min(attempt - 1, 10));
        log[attempt === 1 || attempt % 10 === 0 ? 'error' : 'warn'](
          { requestId: request.requestId, attempt, delayMs: delay, err: lastError },
          'erasure failed, retrying',
        );
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  async function insertTable(table: Table, rows: object[]): Promise<void> {
    for (const chunk of chunkByMonth(rows, partitionSecond[table])) await insertChunk(table, chunk);
  }

  const buffer = createRowBuffer({
    maxRows: config.maxBatchRows ?? 5000,
    maxBytes: config.maxBatchBytes ?? 32 * 1024 * 1024,
    intervalMs: config.flushIntervalMs ?? 1000,
    insert: async (received) => {
      const end = insertSeconds.startTimer();
      // Buffers insert one at a time, so the erasures of the buffer before are in the set;
      // those of other instances arrive with the refresh.
      await refreshErased();
      const rows = withoutErased(received);
      // A table that already went in is inserted again if a later one fails and the batch
      // replays: the duplicate rows carry the same ids and collapse.
      for (const table of TABLES) if (rows[table].length > 0) await insertTable(table, rows[table]);
      // After the rows, so that those of the deleted user in this very batch go too.
      for (const request of erasureRequests(rows.events)) {
        await erase(request);
        erased.add(request.userId);
      }
      end();
      lastInsertAt = Date.now();
      lastError = null;
    },
  });

  const consumer = createConsumeLoop<Decoded>(
    {
      name: 'analytics-sink',
      groupId: config.groupId,
      topics: [topic.events, topic.sends, topic.sendsHigh, topic.deliveries, topic.messages],
      fromBeginning: true,
      concurrency: config.concurrency ?? 6,
      dlqTopic: topic.dlq,
      decodeStage: 'analytics-sink',
      ...config.retry,
      decode(message) {
        const table = tableOf.get(message.topic);
        if (!table)
          throw new LifecycleError(
            ErrorCodes.Internal,
            `analytics sink got a record of unexpected topic ${message.topic}`,
          );
        const decoded = decodeRecord(table, message);
        if ('error' in decoded) throw new RecordRejected(decoded.error);
        return decoded;
      },
      async handle(records, scope) {
        const rows = emptyRows();
        for (const { value: decoded } of records)
          (rows[decoded.table] as (typeof decoded.row)[]).push(decoded.row);
        try {
          // The insert may wait for ClickHouse to come back: keep the group membership meanwhile.
          const stored = buffer.add(rows);
          let done = false;
          void stored.then(
            () => (done = true),
            () => (done = true),
          );
          while (!done) {
            await Promise.race([stored, new Promise((r) => setTimeout(r, 1000))]);
            if (done) break;
            // Partition taken away (rebalance, stop) while ClickHouse is away: let it go without
            // committing; whoever reads it next stores it again, and the copies collapse.
            if (!scope.isActive()) return 'abandon';
            try {
              await scope.heartbeat();
            } catch (err) {
              log.info(
                { topic: scope.topic, partition: scope.partition, err: errorMessage(err) },
                'group rebalancing while the insert waits; batch left uncommitted',
              );
              return 'abandon';
            }
          }
          await stored;
        } catch (err) {
          log.error(
            {
              topic: scope.topic,
              partition: scope.partition,
              rows: rowCount(rows),
              err: errorMessage(err),
            },
            'insert abandoned on stop; the batch will be read again',
          );
          throw err;
        }
        return 'commit';
      },
    },
    { bus, publisher, logger: deps.logger, registry: metrics },
  );

  // Where the engine has no column TTL (ClickHouse 18.16), message bodies past their days are
  // emptied here: at start, then once a day. The API hides them from the day they expire.
  const bodyTtlDays = config.messageBodyTtlDays ?? DEFAULT_MESSAGE_BODY_TTL_DAYS;
  const expiryEveryMs = config.bodyExpiryEveryMs ?? 86_400_000;
  let columnTtl: boolean | null = null;
  let expiryTimer: NodeJS.Timeout | null = null;
  let expiring: Promise<void> = Promise.resolve();
  async function expireBodies(): Promise<void> {
    try {
      columnTtl ??= supportsColumnTtl(
        (await store.query<{ v: string }>('SELECT version() AS v'))[0]?.v ?? '0',
      );
      if (columnTtl) return;
      const rows = await expireMessageBodies(
        store,
        config.database,
        bodyTtlDays,
        (config.now ?? Date.now)(),
      );
      if (rows > 0)
        log.info({ rows, days: bodyTtlDays }, 'emptied message bodies older than their TTL');
    } catch (err) {
      log.warn(
        { err: errorMessage(err) },
        'emptying expired message bodies failed; tried again at the next round',
      );
    }
  }
  function scheduleExpiry(): void {
    expiryTimer = setTimeout(() => {
      expiring = expireBodies().finally(() => {
        if (running && !stopping) scheduleExpiry();
      });
    }, expiryEveryMs);
    expiryTimer.unref();
  }

  return {
    name: 'analytics-sink',
    async start() {
      await consumer.start();
      running = true;
      expiring = expireBodies();
      scheduleExpiry();
      log.info(
        { groupId: config.groupId, topics: [...tableOf.keys()], database: config.database },
        'analytics sink started',
      );
    },
    async stop() {
      if (!running) return;
      stopping = true;
      if (expiryTimer) clearTimeout(expiryTimer);
      await expiring;
      // Batches waiting for the flush timer insert now, so the consumer can leave promptly.
      const drained = buffer.drain();
      await consumer.stop();
      await drained.catch(() => undefined);
      running = false;
      log.info({}, 'analytics sink stopped');
    },
    health() {
      const loop = stalledHealth([consumer]);
      return {
        ok: running && lastError === null && loop.ok,
        details: {
          buffered: buffer.buffered(),
          lastInsertAt,
          lastError,
          assigned: consumer.assignment().length,
          stalled: loop.stalled,
        },
      };
    },
  };
}

/** Config subset of the sink, from the one product config. */
export function sinkConfig(config: Pick<Config, 'kafka' | 'clickhouse' | 'analytics'>): SinkConfig {
  return {
    groupId: config.analytics.groupId,
    topicPrefix: config.kafka.topicPrefix,
    database: config.clickhouse.database,
    concurrency: Math.min(config.kafka.partitions, 12),
    messageBodyTtlDays: config.analytics.messageBodyTtlDays,
  };
}

/**
 * Opens the analytics store the config names with the schema in place. On a server the
 * database is created through the `default` database first (a connection cannot name a
 * database that does not exist yet); chDB has one store per process.
 */
export async function openAnalytics(
  config: Pick<Config, 'clickhouse' | 'analytics'>,
  logger: Logger,
): Promise<EngineAnalyticsStore> {
  const opts = {
    payloadTtlDays: config.analytics.payloadTtlDays,
    messageBodyTtlDays: config.analytics.messageBodyTtlDays,
  };
  if (config.clickhouse.backend === 'chdb') {
    const store = await createAnalyticsStore(config.clickhouse);
    await ensureSchema(store, config.clickhouse.database, opts, logger);
    return store;
  }
  const admin = await createAnalyticsStore({ ...config.clickhouse, database: 'default' });
  try {
    await ensureSchema(admin, config.clickhouse.database, opts, logger);
  } finally {
    await admin.close();
  }
  return createAnalyticsStore(config.clickhouse);
}

/**
 * `openAnalytics`, waiting for ClickHouse while it does not answer (a deploy that starts
 * the sink before ClickHouse, a ClickHouse restart). Nothing is consumed meanwhile, so
 * nothing waits uncommitted. An error that is not about reaching ClickHouse (a refused
 * password, a bad database name) stops the start at once.
 */
export function openAnalyticsWhenReady(
  config: Pick<Config, 'clickhouse' | 'analytics'>,
  logger: Logger,
  retry?: StartRetry,
): Promise<EngineAnalyticsStore> {
  return whenReady({
    what: 'ClickHouse',
    at: config.clickhouse.url,
    logger,
    retry,
    meanwhile: 'before consuming',
    waitable: isRetriable,
    attempt: () => openAnalytics(config, logger),
  });
}

/** `lifecycle run sink`: Kafka in, ClickHouse out, until stopped. */
export async function runSink(
  config: Readonly<Config>,
  logger: Logger,
  opts: { metrics?: Registry; startRetry?: StartRetry } = {},
): Promise<{ stop(): Promise<void>; health(): ReturnType<Service['health']> }> {
  const log = logger.child({ component: 'analytics-sink' });
  const topic = topicNames(config.kafka.topicPrefix);
  const bus = KafkaBus.fromConfig(config, logger);
  let store: EngineAnalyticsStore;
  try {
    await bus.ensureTopics(
      internalTopicSpecs(topic, config.kafka.partitions).filter((s) => s.topic !== topic.campaigns),
    );
    store = await openAnalyticsWhenReady(config, log, opts.startRetry);
  } catch (err) {
    await bus.close();
    throw err;
  }
  const sink = createAnalyticsSink(sinkConfig(config), {
    bus,
    store,
    logger,
    metrics: opts.metrics ?? createMetricsRegistry({ process: 'sink' }),
  });
  try {
    await sink.start();
  } catch (err) {
    await store.close();
    await bus.close();
    throw err;
  }
  return {
    async stop() {
      await sink.stop();
      await bus.close();
      await store.close();
    },
    health: () => sink.health(),
  };
}
