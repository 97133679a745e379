// The right to be forgotten in the analytics store. A `user_deleted` event the sink reads
// erases that user's rows from every table once the batch holding it is inserted, and
// before its offsets are committed; the erasure is written to the `erasures` log.
//
// - ClickHouse server: a mutation (`ALTER TABLE t DELETE WHERE ...`), the one form Debian's
//   18.16 knows. It returns once ClickHouse has stored it; it then rewrites every part that
//   existed at that moment, in the background, and resumes after a restart, so the
//   deletion is decided before the commit even while rows are still visible.
//   `system.mutations` (is_done = 0) shows what is still being rewritten.
// - chDB (a modern engine): a lightweight `DELETE FROM`, which hides the rows at once.
//
// The deletion event's own row is kept, stripped to its id, user, type, times and source,
// so the erasure stays auditable next to its log entry. Both hold no personal data but the
// user id. Erasing is idempotent: a replayed deletion erases again (nothing, or what the
// replay stored again before it) and logs another entry.
import { USER_DELETED } from '../engine/core/engine-core.ts';
import { reservedTypeRefusal } from '../platform/contracts.ts';
import { assertDatabaseName, ERASURE_LOG, type EventRow, type Table, TABLES } from './schema.ts';
import type { AnalyticsBackend, AnalyticsStore, EngineAnalyticsStore } from './store.ts';

export type ErasureMethod = 'mutation' | 'lightweight_delete';

/** Lightweight `DELETE FROM` is generally available from ClickHouse 23.3. */
export function supportsLightweightDelete(version: string): boolean {
  const [major, minor] = version.split('.').map((p) => Number(p));
  if (
    major === undefined ||
    minor === undefined ||
    !Number.isFinite(major) ||
    !Number.isFinite(minor)
  )
    return false;
  return major > 23 || (major === 23 && minor >= 3);
}

/** A mutation on a server; on chDB a lightweight delete where its engine has one. */
export function erasureMethod(backend: AnalyticsBackend, version: string): ErasureMethod {
  return backend === 'chdb' && supportsLightweightDelete(version)
    ? 'lightweight_delete'
    : 'mutation';
}

export interface ErasureStatement {
  table: Table;
  /** Counts the rows the erasure is about to remove (`n`). */
  count: string;
  erase: string;
}

/** Per table, the statements that erase one user, bound to `{user:String}` and never to the id's text. */
export function erasureStatements(database: string, method: ErasureMethod): ErasureStatement[] {
  assertDatabaseName(database);
  return TABLES.map((table) => {
    const where = `user_id = {user:String}${table === 'events' ? ` AND type != '${USER_DELETED}'` : ''}`;
    return {
      table,
      count: `SELECT count() AS n FROM ${database}.${table} WHERE ${where}`,
      erase:
        method === 'mutation'
          ? `ALTER TABLE ${database}.${table} DELETE WHERE ${where}`
          : `DELETE FROM ${database}.${table} WHERE ${where}`,
    };
  });
}

export interface ErasureRequest {
  userId: string;
  /** Id of the `user_deleted` event. */
  requestId: string;
  /** Its source (`cdc:appdb`, `http:web`, ...). */
  source: string;
  /** Its time (epoch ms). */
  requestedAt: number;
}

/** The erasures a batch's event rows ask for: its `user_deleted` events, once per event id. */
export function erasureRequests(events: readonly EventRow[]): ErasureRequest[] {
  const byId = new Map<string, ErasureRequest>();
  for (const e of events) {
    // Only the product database erases a user (platform/contracts.ts): a forged deletion from an app erases nothing.
    if (
      e.type !== USER_DELETED ||
      byId.has(e.id) ||
      reservedTypeRefusal({ type: e.type, source: e.source }) !== null
    )
      continue;
    byId.set(e.id, { userId: e.user_id, requestId: e.id, source: e.source, requestedAt: e.ts_ms });
  }
  return [...byId.values()];
}

/**
 * The row kept of a deletion event. What else the request carried (a reason typed by the
 * user, the client's address in `context`, the anonymous id that links to events before
 * sign-up) is personal data it asks to be rid of.
 */
export function deletionRow(row: EventRow): EventRow {
  return { ...row, anonymous_id: '', properties: '{}', traits: '', context: '' };
}

/** One row of the `erasures` table. */
export interface ErasureLogRow {
  user_id: string;
  request_id: string;
  request_source: string;
  requested_at_ms: number;
  requested_at: number;
  erased_at_ms: number;
  erased_at: number;
  method: ErasureMethod;
  erased_tables: string[];
  /** Rows each table held for the user just before the erasure (0: nothing left to erase). */
  erased_rows: number[];
}

export interface Eraser {
  /** Erases the user from every table, logs it, and returns the log row. Throws when the store does. */
  erase(request: ErasureRequest): Promise<ErasureLogRow>;
}

export function createEraser(deps: {
  store: EngineAnalyticsStore;
  database: string;
  clock?: () => number;
}): Eraser {
  const { store, database } = deps;
  const clock = deps.clock ?? Date.now;
  let method: Promise<ErasureMethod> | undefined;

  // Asked once per store; asked again after a failure (ClickHouse was away).
  const methodOfStore = () =>
    (method ??= store
      .query<{ v: string }>('SELECT version() AS v')
      .then((rows) => erasureMethod(store.backend, rows[0]?.v ?? '0'))
      .catch((err: unknown) => {
        method = undefined;
        throw err;
      }));

  return {
    async erase(request) {
      const how = await methodOfStore();
      const params = { user: request.userId };
      const tables: string[] = [];
      const counts: number[] = [];
      for (const statement of erasureStatements(database, how)) {
        const n = Number(
          (await store.query<{ n: number | string }>(statement.count, params))[0]?.n ?? 0,
        );
        // Nothing to erase (a replay, a user never seen here): no mutation, which on a
        // server would rewrite the table's parts for nothing.
        if (n > 0) await store.command(statement.erase, params);
        tables.push(statement.table);
        counts.push(n);
      }
      const erasedAt = clock();
      const row: ErasureLogRow = {
        user_id: request.userId,
        request_id: request.requestId,
        request_source: request.source,
        requested_at_ms: request.requestedAt,
        requested_at: Math.floor(request.requestedAt / 1000),
        erased_at_ms: erasedAt,
        erased_at: Math.floor(erasedAt / 1000),
        method: how,
        erased_tables: tables,
        erased_rows: counts,
      };
      await store.insert(`${database}.${ERASURE_LOG}`, [row]);
      return row;
    },
  };
}

// ------------------------------------------------------------------ erased users

/**
 * The users the erasure log names, as the sink consults it before every insert: rows of an
 * erased user that arrive after the erasure (events in flight, outcomes of sends made
 * before it, a replay) are dropped instead of stored again. Loaded whole on first use and
 * then read again for newer entries at most every `refreshMs`, so an erasure made by another
 * sink instance (or before a restart) is honoured too. A user id, once erased, stays erased
 * in the analytics tables.
 */
export interface ErasedUsers {
  /** Reads the log's new entries (all of them the first time); throws when the store does. */
  refresh(): Promise<void>;
  /** An erasure this process just made. */
  add(userId: string): void;
  has(userId: string): boolean;
  size(): number;
}

export function createErasedUsers(deps: {
  store: AnalyticsStore;
  database: string;
  refreshMs?: number;
  clock?: () => number;
}): ErasedUsers {
  assertDatabaseName(deps.database);
  const clock = deps.clock ?? Date.now;
  const refreshMs = deps.refreshMs ?? 1000;
  const users = new Set<string>();
  let newest: number | null = null;
  let readAt = -Infinity;
  // Another instance's clock may run behind this one: read a minute back, the set dedupes.
  const SKEW_MS = 60_000;
  return {
    async refresh() {
      if (clock() - readAt < refreshMs) return;
      const since = newest === null ? 0 : Math.max(0, newest - SKEW_MS);
      const rows = await deps.store.query<{ user_id: string; at: number | string }>(
        `SELECT user_id, max(erased_at_ms) AS at FROM ${deps.database}.${ERASURE_LOG}
         WHERE erased_at_ms >= {since:UInt64} GROUP BY user_id`,
        { since },
      );
      for (const r of rows) {
        users.add(r.user_id);
        newest = Math.max(newest ?? 0, Number(r.at));
      }
      newest ??= 0;
      readAt = clock();
    },
    add(userId) {
      users.add(userId);
    },
    has: (userId) => users.has(userId),
    size: () => users.size,
  };
}

// ------------------------------------------------------------------ read path

export interface ErasureEntry {
  userId: string;
  requestId: string;
  source: string;
  requestedAt: number;
  erasedAt: number;
  method: string;
  /** Rows found and erased, per table. */
  rows: Record<string, number>;
}

/**
 * The erasure log, newest first: every erasure (a replayed deletion shows as a second
 * entry, usually with 0 rows), of one user or of everyone.
 */
export async function erasureLog(
  store: AnalyticsStore,
  database: string,
  filter: { userId?: string; limit?: number } = {},
): Promise<ErasureEntry[]> {
  assertDatabaseName(database);
  const limit = filter.limit ?? 100;
  if (!Number.isInteger(limit) || limit < 1)
    throw new RangeError(`limit must be a positive integer, got ${limit}`);
  const rows = await store.query<Omit<ErasureLogRow, 'requested_at' | 'erased_at'>>(
    `SELECT user_id, request_id, request_source, requested_at_ms, erased_at_ms, method, erased_tables, erased_rows
     FROM ${database}.${ERASURE_LOG}${filter.userId === undefined ? '' : ' WHERE user_id = {user:String}'}
     ORDER BY erased_at_ms DESC, request_id
     LIMIT ${limit}`,
    filter.userId === undefined ? {} : { user: filter.userId },
  );
  return rows.map((r) => ({
    userId: r.user_id,
    requestId: r.request_id,
    source: r.request_source,
    requestedAt: Number(r.requested_at_ms),
    erasedAt: Number(r.erased_at_ms),
    method: r.method,
    rows: Object.fromEntries(r.erased_tables.map((t, i) => [t, Number(r.erased_rows[i] ?? 0)])),
  }));
}

export interface PendingMutation {
  table: string;
  mutationId: string;
  command: string;
  createdAt: string;
}

/** Mutations on the analytics tables that ClickHouse is still applying (erasures on a server). */
export async function pendingMutations(
  store: AnalyticsStore,
  database: string,
): Promise<PendingMutation[]> {
  assertDatabaseName(database);
  const rows = await store.query<{
    table: string;
    mutation_id: string;
    command: string;
    created: string;
  }>(
    `SELECT table, mutation_id, command, toString(create_time) AS created
     FROM system.mutations
     WHERE database = {db:String} AND is_done = 0
     ORDER BY create_time`,
    { db: database },
  );
  return rows.map((r) => ({
    table: r.table,
    mutationId: r.mutation_id,
    command: r.command,
    createdAt: r.created,
  }));
}
