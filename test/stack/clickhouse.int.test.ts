// ClickHouse is real: the server store inserts and selects over HTTP, and the same SQL,
// run on the embedded chDB engine, returns the same rows.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChdbStore, type AnalyticsStore } from '../../analytics/store.ts';
import { LifecycleError } from '../../platform/errors.ts';
import { createTestDatabase, type TestDatabase } from '../support/clickhouse.ts';
import { isolate } from '../support/isolation.ts';

const rows = [
  { event_id: 'e1', user_id: 'ada', type: 'signup', amount: 0, ts: '2025-03-01 10:00:00' },
  { event_id: 'e2', user_id: 'ada', type: 'export_done', amount: 3, ts: '2025-03-02 11:00:00' },
  { event_id: 'e3', user_id: "o'brien", type: 'signup', amount: 0, ts: '2025-03-01 12:00:00' },
  { event_id: 'e4', user_id: "o'brien", type: 'purchase', amount: 42, ts: '2025-03-05 09:30:00' },
  { event_id: 'e5', user_id: 'zoe', type: 'signup', amount: 0, ts: '2025-02-27 08:00:00' },
];

// Runs on ClickHouse 18.16 (Debian's server) as well as on chDB's modern engine.
const ddl = (db: string) => `CREATE TABLE ${db}.events (
  event_id String, user_id String, type String, amount UInt32, ts DateTime
) ENGINE = MergeTree ORDER BY (user_id, ts)`;

const report = (db: string) => `
  SELECT user_id, count() AS events, sum(amount) AS total, toString(max(ts)) AS last_seen,
         windowFunnel(864000)(ts, type = 'signup', type = 'purchase') AS funnel_step
  FROM ${db}.events
  WHERE ts >= {since:DateTime} AND has({users:Array(String)}, user_id)
  GROUP BY user_id
  ORDER BY user_id`;

const params = { since: new Date('2025-03-01T00:00:00Z'), users: ['ada', "o'brien", 'zoe'] };

const expected = [
  { user_id: 'ada', events: 2, total: 3, last_seen: '2025-03-02 11:00:00', funnel_step: 1 },
  { user_id: "o'brien", events: 2, total: 42, last_seen: '2025-03-05 09:30:00', funnel_step: 2 },
];

describe('analytics store', () => {
  const iso = isolate('ch');
  let server: TestDatabase;
  let chdb: AnalyticsStore;
  let chdbDir: string;

  beforeAll(async () => {
    server = await createTestDatabase(iso.config());
    chdbDir = await mkdtemp(join(tmpdir(), 'lc-chdb-'));
    chdb = await createChdbStore({ path: chdbDir });
    await chdb.command(`CREATE DATABASE IF NOT EXISTS ${iso.clickhouseDatabase}`);
  });

  afterAll(async () => {
    await server?.drop();
    await chdb?.close();
    if (chdbDir) await rm(chdbDir, { recursive: true, force: true });
  });

  it('inserts and selects through the ClickHouse server', async () => {
    const db = server.database;
    await server.store.command(ddl(db));
    await server.store.insert(`${db}.events`, rows);
    expect(
      await server.store.query<{ n: number }>(`SELECT count() AS n FROM ${db}.events`),
    ).toEqual([{ n: 5 }]);
    expect(await server.store.query(report(db), params)).toEqual(expected);
    // The server really holds the table (a stub would not know its engine).
    const engines = await server.store.query<{ engine: string }>(
      `SELECT engine FROM system.tables WHERE database = {db:String} AND name = 'events'`,
      { db },
    );
    expect(engines).toEqual([{ engine: 'MergeTree' }]);
  });

  it('runs the same SQL on chDB with the same result', async () => {
    const db = iso.clickhouseDatabase;
    await chdb.command(ddl(db));
    await chdb.insert(`${db}.events`, rows);
    expect(await chdb.query(report(db), params)).toEqual(expected);
  });

  it('reports SQL errors as LifecycleError with the server message', async () => {
    const err = await server.store
      .query('SELECT no_such_column FROM system.one')
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LifecycleError);
    expect((err as LifecycleError).code).toBe('LC_ERR_ANALYTICS');
    expect((err as LifecycleError).message).toMatch(/no_such_column/);
    expect((err as LifecycleError).retriable).toBe(false);
  });
});
