// The analysts' queries return the numbers worked out by hand for the crafted dataset, on
// the ClickHouse server (18.16 here) and on chDB's modern engine, with every row stored
// twice (a replay not merged yet) so double counting would show.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChdbStore, type AnalyticsStore } from './store.ts';
import { createTestDatabase, type TestDatabase } from '../test/support/clickhouse.ts';
import { isolate } from '../test/support/isolation.ts';
import { DELIVERIES, EVENTS, EXPECTED, SENDS, WINDOW } from '../test/support/analytics-fixtures.ts';
import { deliverabilityByProvider, goalUplift, ruleFunnel } from './queries.ts';
import {
  deliveryRow,
  ensureSchema,
  eventRow,
  sendRow,
  supportsColumnTtl,
  TABLES,
} from './schema.ts';
import { compareProportions } from './stats.ts';

/**
 * Loads every fixture row twice. On chDB merges are paused first, so the duplicates are
 * certainly there when the queries run. ClickHouse 18.16 crashes (segfault in its background
 * pool) when tables with stopped merges are dropped, so there the duplicates are left to
 * merge whenever they do: the queries must give the same numbers either way.
 */
async function load(store: AnalyticsStore, db: string, pauseMerges: boolean): Promise<void> {
  await ensureSchema(store, db, { payloadTtlDays: 30 });
  if (pauseMerges)
    for (const table of TABLES) await store.command(`SYSTEM STOP MERGES ${db}.${table}`);
  for (let round = 0; round < 2; round++) {
    await store.insert(`${db}.events`, EVENTS.map(eventRow));
    await store.insert(`${db}.sends`, SENDS.map(sendRow));
    await store.insert(`${db}.deliveries`, DELIVERIES.map(deliveryRow));
  }
  const [n] = await store.query<{ rows: number }>(`SELECT count() AS rows FROM ${db}.deliveries`);
  if (pauseMerges) expect(n?.rows).toBe(2 * DELIVERIES.length);
  else expect(n?.rows).toBeGreaterThanOrEqual(DELIVERIES.length);
}

const omit = <T extends object>(rows: T[], keys: string[]) =>
  rows.map((r) => Object.fromEntries(Object.entries(r).filter(([k]) => !keys.includes(k))));

async function checkQueries(store: AnalyticsStore, db: string): Promise<void> {
  const funnel = await ruleFunnel(store, db, WINDOW);
  expect(omit(funnel, ['rates'])).toEqual(EXPECTED.funnel);
  expect(funnel[0]!.rates).toEqual({
    sent: 5 / 6,
    delivered: 4 / 6,
    opened: 3 / 6,
    clicked: 2 / 6,
    converted: 3 / 6,
  });

  const uplift = await goalUplift(store, db, WINDOW);
  // r2 has no goal: not part of the uplift report.
  expect(uplift).toEqual([
    { ruleId: 'r1', ...compareProportions(EXPECTED.uplift.treated, EXPECTED.uplift.holdout) },
  ]);
  expect(uplift[0]!.uplift).toBeCloseTo(0.5 - 0.25, 12);

  const providers = await deliverabilityByProvider(store, db, WINDOW);
  expect(omit(providers, ['rates'])).toEqual(EXPECTED.deliverability);
  expect(providers[0]!.rates).toEqual({ sent: 0.8, failed: 0.2, bounced: 0.25, complained: 0 });

  // Filters: one rule; a window that ends before any send.
  expect(omit(await ruleFunnel(store, db, { ...WINDOW, ruleIds: ['r2'] }), ['rates'])).toEqual([
    EXPECTED.funnel[1],
  ]);
  expect(await ruleFunnel(store, db, { from: WINDOW.from, to: WINDOW.from + 1 })).toEqual([]);
  expect(await goalUplift(store, db, { ...WINDOW, ruleIds: ['no-such-rule'] })).toEqual([]);
}

describe('analytics queries', () => {
  const iso = isolate('aq');
  let server: TestDatabase;
  let chdb: AnalyticsStore;
  let chdbDir: string;

  beforeAll(async () => {
    server = await createTestDatabase(iso.config());
    chdbDir = await mkdtemp(join(tmpdir(), 'lc-chdb-analytics-'));
    chdb = await createChdbStore({ path: chdbDir });
  });

  afterAll(async () => {
    await server?.drop();
    await chdb?.close();
    if (chdbDir) await rm(chdbDir, { recursive: true, force: true });
  });

  it('funnel, uplift and deliverability on the ClickHouse server', async () => {
    await load(server.store, server.database, false);
    await checkQueries(server.store, server.database);
  });

  it('the same SQL on chDB gives the same numbers, and the payload TTL is in force there', async () => {
    const db = iso.clickhouseDatabase;
    const info = await ensureSchema(chdb, db, { payloadTtlDays: 30 });
    expect(info.payloadTtl).toBe(true);
    await load(chdb, db, true);
    await checkQueries(chdb, db);
    const [ddl] = await chdb.query<{ statement: string }>(`SHOW CREATE TABLE ${db}.sends`);
    expect(ddl?.statement).toMatch(/`data` String TTL created_at \+ toIntervalDay\(30\)/);
    // A changed setting changes the table in place (a mutation: merges must run); running again with it changes nothing.
    for (const table of TABLES) await chdb.command(`SYSTEM START MERGES ${db}.${table}`);
    await ensureSchema(chdb, db, { payloadTtlDays: 7 });
    await ensureSchema(chdb, db, { payloadTtlDays: 7 });
    const [after] = await chdb.query<{ statement: string }>(`SHOW CREATE TABLE ${db}.sends`);
    expect(after?.statement).toMatch(/toIntervalDay\(7\)/);
  });

  it('the server at hand has no TTL: the schema says so and still works', async () => {
    const info = await ensureSchema(server.store, server.database, { payloadTtlDays: 30 });
    expect(info.version).toMatch(/^\d+\./);
    expect(info.payloadTtl).toBe(supportsColumnTtl(info.version));
    const [ddl] = await server.store.query<{ statement: string }>(
      `SHOW CREATE TABLE ${server.database}.sends`,
    );
    expect(ddl!.statement.includes('TTL')).toBe(info.payloadTtl);
  });
});
