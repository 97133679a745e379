// Every panel of every committed dashboard runs through the API server on the ClickHouse
// server (18.16 here) and on chDB, over the hand-worked datasets, and the built-in panels
// show the numbers worked out in analytics/fixtures.ts.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CHURN_WINDOW,
  COHORT_EXPECTED,
  EXPECTED,
  RETENTION_WINDOW,
} from '../test/support/analytics-fixtures.ts';
import { createChdbStore, type AnalyticsStore } from '../analytics/store.ts';
import { createTestDatabase, type TestDatabase } from '../test/support/clickhouse.ts';
import { isolate } from '../test/support/isolation.ts';
import { fixtureApi, loadFixtures } from '../test/support/dashboards-api.ts';
import { loadDashboards } from './loader.ts';

const ALL = 'from=2024-12-01&to=2025-05-01';
const ms = (t: number) => String(t);

function checks(get: () => { app: FastifyInstance; token: string }) {
  const panel = async (dashboard: string, id: string, qs: string) => {
    const { app, token } = get();
    const res = await app.inject({
      method: 'GET',
      url: `/v1/dashboards/${dashboard}/panels/${id}?${qs}`,
      headers: { authorization: `Bearer ${token}` },
    });
    return {
      status: res.statusCode,
      body: res.json() as { columns: string[]; rows: Record<string, unknown>[]; message?: string },
    };
  };

  it('runs every panel of every dashboard', async () => {
    const set = await loadDashboards(new URL('.', import.meta.url).pathname);
    for (const d of set.dashboards) {
      for (const p of d.spec.panels) {
        const { status, body } = await panel(d.spec.id, p.id, ALL);
        expect({ panel: `${d.spec.id}/${p.id}`, status, message: body.message }).toEqual({
          panel: `${d.spec.id}/${p.id}`,
          status: 200,
          message: undefined,
        });
        expect(body.rows.length, `${d.spec.id}/${p.id}`).toBeGreaterThan(0);
      }
    }
  });

  it('lifecycle: funnel, uplift and send counts', async () => {
    const funnel = (await panel('lifecycle', 'funnel-table', ALL)).body.rows;
    expect(
      funnel.map((r) => [
        r.rule_id,
        r.sends,
        r.sent,
        r.delivered,
        r.opened,
        r.clicked,
        r.converted,
      ]),
    ).toEqual([
      ['nudge', 1, 0, 0, 0, 0, 0],
      ...EXPECTED.funnel.map((f) => [
        f.ruleId,
        f.sends,
        f.sent,
        f.delivered,
        f.opened,
        f.clicked,
        f.converted,
      ]),
      ['winback', 6, 0, 0, 0, 0, 0],
    ]);
    const uplift = (await panel('lifecycle', 'uplift', `${ALL}&ruleIds=r1`)).body.rows;
    expect(uplift).toEqual([
      expect.objectContaining({
        rule_id: 'r1',
        treated_users: 6,
        treated_converted: 3,
        holdout_users: 4,
        holdout_converted: 1,
        uplift: 0.25,
      }),
    ]);
    expect((await panel('lifecycle', 'treated-sends', ALL)).body.rows).toEqual([{ sends: 14 }]);
    expect((await panel('lifecycle', 'treated-sends', `${ALL}&ruleIds=r1,r2`)).body.rows).toEqual([
      { sends: 7 },
    ]);
    expect((await panel('lifecycle', 'holdout-sends', ALL)).body.rows).toEqual([{ held_out: 7 }]);
  });

  it('retention & churn: cohorts, churn and what re-engagement saved', async () => {
    const window = (w: { from: number; to: number }) => `from=${ms(w.from)}&to=${ms(w.to)}`;
    const churn = (
      await panel('retention-churn', 'churn', `${window(CHURN_WINDOW)}&inactiveDays=14`)
    ).body.rows;
    const c = COHORT_EXPECTED.churn;
    expect(churn).toEqual([
      {
        users: c.users,
        active: c.active,
        inactive: c.inactive,
        inactive_share: c.inactiveShare,
        cancelled: c.cancelled,
      },
    ]);
    // The panel shows 8 periods: c4 on day 30 (period 3) and cancelling on day 36 (period 4) appear too.
    const retention = (
      await panel('retention-churn', 'retention', `${window(RETENTION_WINDOW)}&period=week`)
    ).body.rows;
    expect(retention.map((r) => [r.cohort, r.cohort_users, r.period, r.active_users])).toEqual([
      ...COHORT_EXPECTED.weekly.map((r) => [r.cohort, r.cohortUsers, r.period, r.activeUsers]),
      ['2025-01-13', 2, 3, 1],
      ['2025-01-13', 2, 4, 1],
    ]);
    const saved = (
      await panel(
        'retention-churn',
        'reengagement',
        `${window(RETENTION_WINDOW)}&inactiveDays=14&returnWithinDays=7`,
      )
    ).body.rows;
    expect(
      saved.map((r) => [
        r.rule_id,
        r.treated_at_risk,
        r.treated_came_back,
        r.holdout_at_risk,
        r.holdout_came_back,
      ]),
    ).toEqual(
      expect.arrayContaining(
        COHORT_EXPECTED.reengagement.map((r) => [
          r.ruleId,
          r.treated.n,
          r.treated.x,
          r.holdout.n,
          r.holdout.x,
        ]),
      ),
    );
    expect(saved.find((r) => r.rule_id === 'winback')!.saved).toBeCloseTo(
      COHORT_EXPECTED.reengagement[0]!.saved!,
      12,
    );
  });

  it('deliverability: per provider, and outcomes', async () => {
    const providers = (await panel('deliverability', 'providers', ALL)).body.rows;
    expect(
      providers.map((r) => ({
        provider: r.provider,
        channel: r.channel,
        attempted: r.attempted,
        sent: r.sent,
        failed: r.failed,
        bounced: r.bounced,
        complained: r.complained,
      })),
    ).toEqual(EXPECTED.deliverability);
    const outcomes = (await panel('deliverability', 'outcomes', ALL)).body.rows;
    expect(outcomes.find((r) => r.status === 'sent')).toEqual({ status: 'sent', messages: 6 });
    expect(outcomes.find((r) => r.status === 'holdout')).toEqual({
      status: 'holdout',
      messages: 4,
    });
  });
}

describe('dashboards on the ClickHouse server', () => {
  const iso = isolate('dash');
  const config = iso.config();
  let db: TestDatabase;
  let app: FastifyInstance;
  beforeAll(async () => {
    db = await createTestDatabase(config);
    await loadFixtures(db.store, db.database);
    app = await fixtureApi(config, db.store);
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('lists the dashboards in the OpenAPI document the API serves', async () => {
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json() as {
      paths: Record<string, unknown>;
    };
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/dashboards',
        '/v1/dashboards',
        '/v1/dashboards/{id}',
        '/v1/dashboards/{id}/panels/{panelId}',
      ]),
    );
    expect(
      (await app.inject({ method: 'GET', url: '/v1/dashboards/lifecycle/panels/funnel' }))
        .statusCode,
    ).toBe(401);
  });
  checks(() => ({ app, token: config.auth.adminToken }));

  it('opens its own ClickHouse client from the config when none is given (lifecycle run api)', async () => {
    const own = await fixtureApi(config);
    try {
      const res = await own.inject({
        method: 'GET',
        url: `/v1/dashboards/lifecycle/panels/treated-sends?${ALL}`,
        headers: { authorization: `Bearer ${config.auth.adminToken}` },
      });
      expect(res.json()).toMatchObject({ rows: [{ sends: 14 }] });
    } finally {
      await own.close();
    }
  });
});

describe('dashboards on chDB', () => {
  const iso = isolate('dash-chdb');
  const config = iso.config();
  let store: AnalyticsStore;
  let dir: string;
  let app: FastifyInstance;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lc-chdb-dash-'));
    store = await createChdbStore({ path: dir });
    await loadFixtures(store, config.clickhouse.database);
    app = await fixtureApi(config, store);
  });
  afterAll(async () => {
    await app?.close();
    await store?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  checks(() => ({ app, token: config.auth.adminToken }));
});
