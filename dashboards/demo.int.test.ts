// The embedded demo shows non-empty dashboards once its sample users are seeded: what the
// seed does travels ingest -> engine -> delivery -> the bus -> the analytics sink -> chDB,
// and the dashboards API on the demo's API server reads it (with the admin token).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemo, type Demo } from '../bin/demo.ts';
import { loadConfig } from '../platform/config.ts';
import { silentLogger } from '../platform/logger.ts';
import { waitFor } from '../test/support/wait.ts';

type Rows = Record<string, unknown>[];

describe('dashboards in the demo', () => {
  let demo: Demo;
  let dataDir: string;
  const token = loadConfig(undefined).auth.adminToken;
  const panel = async (dashboard: string, id: string): Promise<{ status: number; rows: Rows }> => {
    const res = await fetch(`${demo.urls.api}/v1/dashboards/${dashboard}/panels/${id}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    const body = (await res.json()) as { rows?: Rows };
    return { status: res.status, rows: body.rows ?? [] };
  };

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'lc-demo-dash-'));
    demo = await startDemo(
      { dataDir, seed: true, overrides: { 'http.apiPort': 0, 'http.ingestPort': 0 } },
      silentLogger(),
    );
  });
  afterAll(async () => {
    await demo?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('prints the page URL and serves it; data only with the admin token', async () => {
    expect(demo.urls.dashboards).toBe(`${demo.urls.api}/dashboards`);
    const page = await fetch(demo.urls.dashboards!);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<title>Lifecycle dashboards</title>');
    expect((await fetch(`${demo.urls.api}/v1/dashboards`)).status).toBe(401);
  });

  it('fills the lifecycle, retention & churn and deliverability dashboards from the seed', async () => {
    // The three welcome emails are sent and their outcomes have reached chDB.
    await waitFor(
      async () =>
        (await panel('lifecycle', 'funnel-table')).rows.some(
          (r) => r.rule_id === 'welcome' && r.sent === 3,
        ),
      {
        timeout: 30_000,
        interval: 250,
        message: 'the welcome sends did not reach the dashboards',
      },
    );
    const funnel = (await panel('lifecycle', 'funnel-table')).rows;
    expect(funnel.find((r) => r.rule_id === 'welcome')).toMatchObject({ sends: 3, sent: 3 });
    expect(funnel.find((r) => r.rule_id === 'payment-failed')).toMatchObject({ sends: 1 });

    const churn = (await panel('retention-churn', 'churn')).rows;
    expect(churn).toEqual([{ users: 3, active: 3, inactive: 0, inactive_share: 0, cancelled: 1 }]);
    const retention = (await panel('retention-churn', 'retention')).rows;
    expect(retention).toEqual([
      expect.objectContaining({ cohort_users: 3, period: 0, active_users: 3, share: 1 }),
    ]);

    const providers = (await panel('deliverability', 'providers')).rows;
    expect(providers.find((r) => r.channel === 'email')).toMatchObject({
      attempted: expect.any(Number),
      sent: expect.any(Number),
    });
    expect(Number(providers.find((r) => r.channel === 'email')!.sent)).toBeGreaterThanOrEqual(4);

    // Every panel answers; all but re-engagement (no user has been inactive long enough yet) have rows.
    const list = (await (
      await fetch(`${demo.urls.api}/v1/dashboards`, {
        headers: { authorization: `Bearer ${token}` },
      })
    ).json()) as { dashboards: { id: string; panels: { id: string }[] }[]; errors: string[] };
    expect(list.errors).toEqual([]);
    for (const d of list.dashboards) {
      for (const p of d.panels) {
        const { status, rows } = await panel(d.id, p.id);
        expect(status, `${d.id}/${p.id}`).toBe(200);
        if (p.id !== 'reengagement') expect(rows.length, `${d.id}/${p.id}`).toBeGreaterThan(0);
      }
    }
  });
});
