// Retention cohorts, churn and what re-engagement rules saved: the numbers worked out by
// hand for the second crafted dataset (fixtures.ts), on the ClickHouse server (18.16 here)
// and on chDB, with every row stored twice and the first dataset beside it, so double
// counting or leaking between the two would show.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChdbStore, type AnalyticsStore } from './store.ts';
import { createTestDatabase, type TestDatabase } from '../test/support/clickhouse.ts';
import { isolate } from '../test/support/isolation.ts';
import {
  CHURN_WINDOW,
  COHORT_EVENTS,
  COHORT_EXPECTED,
  COHORT_SENDS,
  DELIVERIES,
  EVENTS,
  RETENTION_WINDOW,
  SENDS,
} from '../test/support/analytics-fixtures.ts';
import { churnSummary, reengagement, retentionCohorts } from './queries.ts';
import { deliveryRow, ensureSchema, eventRow, sendRow } from './schema.ts';
import { compareProportions } from './stats.ts';

async function load(store: AnalyticsStore, db: string): Promise<void> {
  await ensureSchema(store, db, { payloadTtlDays: 30 });
  for (let round = 0; round < 2; round++) {
    await store.insert(`${db}.events`, [...EVENTS, ...COHORT_EVENTS].map(eventRow));
    await store.insert(`${db}.sends`, [...SENDS, ...COHORT_SENDS].map(sendRow));
    await store.insert(`${db}.deliveries`, DELIVERIES.map(deliveryRow));
  }
}

async function check(store: AnalyticsStore, db: string): Promise<void> {
  const weekly = await retentionCohorts(store, db, {
    ...RETENTION_WINDOW,
    periodDays: 7,
    periods: 2,
    signupEvent: 'user_registered',
  });
  expect(weekly).toEqual(COHORT_EXPECTED.weekly);
  const daily = await retentionCohorts(store, db, {
    ...RETENTION_WINDOW,
    periodDays: 1,
    periods: 1,
    signupEvent: 'user_registered',
  });
  expect(daily).toEqual(COHORT_EXPECTED.daily);
  // Another signup event: nobody did it.
  expect(
    await retentionCohorts(store, db, {
      ...RETENTION_WINDOW,
      periodDays: 7,
      periods: 2,
      signupEvent: 'account_created',
    }),
  ).toEqual([]);

  expect(
    await churnSummary(store, db, {
      ...CHURN_WINDOW,
      inactiveDays: 14,
      cancelEvent: 'subscription_cancelled',
    }),
  ).toEqual(COHORT_EXPECTED.churn);
  // Inactive 16 days = last activity before day 19: c3's cancellation on day 20 (through CDC) makes them active.
  expect(
    (
      await churnSummary(store, db, {
        ...CHURN_WINDOW,
        inactiveDays: 16,
        cancelEvent: 'subscription_cancelled',
      })
    ).inactive,
  ).toBe(10);

  const saved = await reengagement(store, db, {
    ...RETENTION_WINDOW,
    inactiveDays: 14,
    returnWithinDays: 7,
  });
  expect(saved.map((r) => r.ruleId).sort()).toEqual(['nudge', 'winback']);
  for (const want of COHORT_EXPECTED.reengagement) {
    const got = saved.find((r) => r.ruleId === want.ruleId)!;
    const c = compareProportions(want.treated, want.holdout);
    expect({
      treated: got.treated,
      holdout: got.holdout,
      uplift: got.uplift,
      ci: got.ci,
      pValue: got.pValue,
    }).toEqual({
      treated: c.treated,
      holdout: c.holdout,
      uplift: c.uplift,
      ci: c.ci,
      pValue: c.pValue,
    });
    if (want.saved === null) expect(got.saved).toBeNull();
    else expect(got.saved).toBeCloseTo(want.saved, 12);
  }
  // One rule only, and a 1-day return window: w1 (back 3 days after), w4 and w5 (2 days after) no longer count.
  const winback = await reengagement(store, db, {
    ...RETENTION_WINDOW,
    ruleIds: ['winback'],
    inactiveDays: 14,
    returnWithinDays: 1,
  });
  expect(
    winback.map((r) => [r.ruleId, r.treated.n, r.treated.x, r.holdout.n, r.holdout.x]),
  ).toEqual([['winback', 3, 0, 2, 0]]);
}

describe('retention, churn and re-engagement queries', () => {
  const iso = isolate('aq-cohorts');
  let server: TestDatabase;
  let chdb: AnalyticsStore;
  let chdbDir: string;

  beforeAll(async () => {
    server = await createTestDatabase(iso.config());
    chdbDir = await mkdtemp(join(tmpdir(), 'lc-chdb-cohorts-'));
    chdb = await createChdbStore({ path: chdbDir });
  });

  afterAll(async () => {
    await server?.drop();
    await chdb?.close();
    if (chdbDir) await rm(chdbDir, { recursive: true, force: true });
  });

  it('on the ClickHouse server', async () => {
    await load(server.store, server.database);
    await check(server.store, server.database);
  });

  it('the same SQL on chDB gives the same numbers', async () => {
    await load(chdb, iso.clickhouseDatabase);
    await check(chdb, iso.clickhouseDatabase);
  });
});
