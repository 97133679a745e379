// The dashboards page in a real browser (Debian chromium via playwright-core) against the
// API server on the ClickHouse server loaded with the hand-worked datasets: it asks for the
// token, refuses a wrong one, then draws the panels with the fixture's numbers; a broken
// panel shows its error while the others render.
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../test/support/clickhouse.ts';
import { isolate } from '../test/support/isolation.ts';
import { watchCsp } from '../test/support/csp-pages.ts';
import { fixtureApi, loadFixtures } from '../test/support/dashboards-api.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));

describe('dashboards page', () => {
  const iso = isolate('dash-page');
  let dir: string;
  let db: TestDatabase;
  let app: FastifyInstance;
  let browser: Browser;
  let base: string;
  let token: string;

  // Every page runs under its Content-Security-Policy, and nothing it does is refused by it.
  const csp = watchCsp(() => browser);
  const newPage = () => csp.newPage();
  afterEach(() => {
    expect(csp.problems()).toEqual([]);
  });

  beforeAll(async () => {
    // The committed dashboards, plus one with a panel whose SQL cannot run.
    dir = await mkdtemp(path.join(tmpdir(), 'lc-dash-page-'));
    for (const f of ['lifecycle.json', 'retention-churn.json', 'deliverability.json'])
      await cp(path.join(HERE, f), path.join(dir, f));
    await writeFile(
      path.join(dir, 'zz-broken.json'),
      JSON.stringify({
        id: 'zz-broken',
        title: 'Half broken',
        panels: [
          {
            id: 'bad',
            title: 'Bad panel',
            sql: 'SELECT no_such_column FROM $db.events',
            viz: { type: 'table' },
          },
          {
            id: 'good',
            title: 'Good panel',
            sql: 'SELECT uniqExact(user_id) AS users FROM $db.events WHERE ts_ms >= {from:UInt64} AND ts_ms < {to:UInt64}',
            viz: { type: 'number', value: 'users' },
          },
        ],
      }),
    );
    const config = iso.config({ LC_DASHBOARDS_DIR: dir });
    token = config.auth.adminToken;
    db = await createTestDatabase(config);
    await loadFixtures(db.store, db.database);
    app = await fixtureApi(config, db.store);
    base = await app.listen({ host: '127.0.0.1', port: 0 });
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await app?.close();
    await db?.drop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const panel = (page: Page, id: string) => page.locator(`[data-panel="${id}"]`);
  // Locators, not page-side expressions: the page's Content-Security-Policy refuses the
  // string evaluation those need, as it would for any injected code.
  const settled = async (page: Page) => {
    await page.locator('[data-panel]').first().waitFor();
    await expect
      .poll(() => page.locator('[data-panel][data-state="loading"]').count(), { timeout: 30_000 })
      .toBe(0);
  };
  const cell = (page: Page, panelId: string, rowText: string, col: string) =>
    panel(page, panelId).locator('tr', { hasText: rowText }).locator(`td[data-col="${col}"]`);

  it('asks for the token, then renders the lifecycle panels with the numbers of the data', async () => {
    const page = await newPage();
    await page.goto(`${base}/dashboards`);
    await page.getByLabel('Admin token').fill('wrong-token');
    await page.getByRole('button', { name: 'Open dashboards' }).click();
    await expect.poll(() => page.locator('#login-error').textContent()).toMatch(/refused/);

    await page.getByLabel('Admin token').fill(token);
    await page.getByRole('button', { name: 'Open dashboards' }).click();
    await page.locator('nav a', { hasText: 'Lifecycle overview' }).waitFor();
    await settled(page);

    // March 2025: the first dataset (rules r1, r2).
    await page.getByLabel('From (UTC day)').fill('2025-03-01');
    await page.getByLabel('To (UTC day, inclusive)').fill('2025-03-31');
    await page.getByRole('button', { name: 'Apply' }).click();
    await settled(page);
    expect(await panel(page, 'treated-sends').locator('.number').textContent()).toBe('7');
    expect(await panel(page, 'holdout-sends').locator('.number').textContent()).toBe('4');
    expect(await cell(page, 'funnel-table', 'r1', 'sends').textContent()).toBe('6');
    expect(await cell(page, 'funnel-table', 'r1', 'opened').textContent()).toBe('3');
    expect(await cell(page, 'funnel-table', 'r1', 'conversion_rate').textContent()).toBe('50.0%');
    expect(await cell(page, 'uplift', 'r1', 'treated_rate').textContent()).toBe('50.0%');
    expect(await cell(page, 'uplift', 'r1', 'holdout_rate').textContent()).toBe('25.0%');
    expect(await cell(page, 'uplift', 'r1', 'uplift').textContent()).toBe('25.0%');
    // The bar chart: one bar per rule and step, with the value.
    expect(
      await panel(page, 'funnel')
        .locator('rect[data-series="sends"][data-x="r1"]')
        .getAttribute('data-value'),
    ).toBe('6');
    expect(await panel(page, 'sends-per-day').locator('circle').count()).toBeGreaterThan(0);

    // Another dashboard keeps the window.
    await page.locator('nav a', { hasText: 'Deliverability' }).click();
    await settled(page);
    expect(await cell(page, 'providers', 'smtp-a', 'attempted').textContent()).toBe('5');
    expect(await cell(page, 'providers', 'smtp-a', 'bounce_rate').textContent()).toBe('25.0%');
    expect(await cell(page, 'providers', 'smtp-b', 'complained').textContent()).toBe('1');
    await page.close();
  });

  it('takes the parameters from the address and the form: churn and re-engagement of the second dataset', async () => {
    const page = await newPage();
    await page.goto(`${base}/dashboards`);
    await page.getByLabel('Admin token').fill(token);
    await page.getByRole('button', { name: 'Open dashboards' }).click();
    await settled(page);
    // As of day 35 (the "to" day is inclusive), inactive 14 days.
    await page.goto(
      `${base}/dashboards#retention-churn?from=2025-01-20&to=2025-02-09&inactiveDays=14`,
    );
    await settled(page);
    expect(await cell(page, 'churn', '13', 'inactive').textContent()).toBe('11');
    expect(await panel(page, 'cancelled').locator('.number').textContent()).toBe('2');
    // The re-engagement window: sends of days 0-13; parameters from the form.
    await page.getByLabel('From (UTC day)').fill('2025-01-06');
    await page.getByLabel('To (UTC day, inclusive)').fill('2025-01-19');
    await page.getByLabel('Came back within (days)').fill('7');
    await page.getByRole('button', { name: 'Apply' }).click();
    await settled(page);
    expect(await cell(page, 'reengagement', 'winback', 'treated_at_risk').textContent()).toBe('3');
    expect(await cell(page, 'reengagement', 'winback', 'treated_came_back').textContent()).toBe(
      '2',
    );
    expect(await cell(page, 'reengagement', 'winback', 'holdout_came_back').textContent()).toBe(
      '1',
    );
    expect(await cell(page, 'reengagement', 'winback', 'saved').textContent()).toBe('0.50');
    // The retention triangle: cohorts down, periods across.
    expect(await cell(page, 'retention', '2025-01-06', 'cohort_users').textContent()).toBe('3');
    expect(await cell(page, 'retention', '2025-01-06', 'period:0').textContent()).toBe('100.0%');
    expect(await cell(page, 'retention', '2025-01-06', 'period:1').textContent()).toBe('66.7%');
    expect(await cell(page, 'retention', '2025-01-13', 'period:4').textContent()).toBe('50.0%');
    expect(await cell(page, 'retention', '2025-01-06', 'period:4').textContent()).toBe('');
    expect(page.url()).toContain('returnWithinDays=7');

    // A value the spec does not allow: every panel shows the API's reason.
    await page.getByLabel('Inactive after (days)').fill('0');
    // The input's own min would stop the browser from sending it; the API must refuse it anyway.
    await page.getByLabel('Inactive after (days)').evaluate((e) => e.removeAttribute('min'));
    await page.getByRole('button', { name: 'Apply' }).click();
    await settled(page);
    expect(await panel(page, 'churn').locator('.error').textContent()).toMatch(
      /parameter inactiveDays: must be at least 1/,
    );
    await page.close();
  });

  it("shows a failing panel's error and still renders the others", async () => {
    const page = await newPage();
    await page.goto(`${base}/dashboards`);
    await page.getByLabel('Admin token').fill(token);
    await page.getByRole('button', { name: 'Open dashboards' }).click();
    await settled(page);
    await page.goto(`${base}/dashboards#zz-broken?from=2025-01-01&to=2025-04-30`);
    await page.locator('[data-panel="bad"][data-state="error"]').waitFor();
    await settled(page);
    expect(await panel(page, 'bad').locator('.error').textContent()).toMatch(
      /This panel failed: .*no_such_column/,
    );
    expect(await panel(page, 'good').getAttribute('data-state')).toBe('ok');
    expect(await panel(page, 'good').locator('.number').textContent()).toBe('26');
    await page.close();
  });
});
