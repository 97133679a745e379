// The marketers' admin pages in a real browser (Debian chromium via playwright-core) against
// the embedded demo, whose scheduler fans campaigns out through its bus to the engine and
// delivery: a marketer logs in with a marketer key, creates a template (the live preview
// renders its subject), publishes it, creates a campaign to an uploaded CSV list of users with
// that template, schedules it now and watches it complete with the planned count; the rules
// page lists the example rules and a simulation of one shows its send. Every page runs under
// its Content-Security-Policy, at desktop size and at 390x844 without a sideways scroll.
import { cp, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startDemo, type Demo } from '../bin/demo.ts';
import { loadConfig } from '../platform/config.ts';
import { silentLogger } from '../platform/logger.ts';
import { watchCsp } from '../test/support/csp-pages.ts';
import { REPO_ROOT } from '../test/support/stack-env.ts';
import { waitFor } from '../test/support/wait.ts';

const SHOTS = path.join(REPO_ROOT, '.stack/screenshots/admin');
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };
const LIST = ['demo-ada', 'demo-bert', 'demo-chen'];

describe("the marketers' admin pages", () => {
  let demo: Demo;
  let dataDir: string;
  let browser: Browser;
  let base: string;
  let marketerKey = '';
  const adminToken = loadConfig(undefined).auth.adminToken;

  const csp = watchCsp(() => browser, { framed: true });
  afterEach(() => {
    expect(csp.problems()).toEqual([]);
  });
  const newPage = async (viewport = DESKTOP) => {
    const page = await csp.newPage();
    await page.setViewportSize(viewport);
    return page;
  };
  const shot = (page: Page, name: string) =>
    page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
  const login = async (page: Page) => {
    await page.goto(`${base.replace(/\/$/, '')}/`);
    await page.getByLabel('Credential').fill(marketerKey);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('heading', { name: 'Welcome, marketing desk' }).waitFor();
  };
  const go = async (page: Page, title: string) => {
    const menu = page.getByRole('button', { name: 'Menu' });
    if (await menu.isVisible()) await menu.click();
    await page.locator('nav#nav a', { hasText: title }).click();
  };
  /** Nothing is wider than the viewport (a string: the test runs in node, the check in the page). */
  const fitsWidth = async (page: Page) => {
    const [scrollWidth, clientWidth] = (await page.evaluate(
      '[document.documentElement.scrollWidth, document.documentElement.clientWidth]',
    )) as [number, number];
    expect(scrollWidth, 'the body scrolls sideways').toBeLessThanOrEqual(clientWidth);
  };

  beforeAll(async () => {
    await mkdir(SHOTS, { recursive: true });
    dataDir = await mkdtemp(path.join(tmpdir(), 'lc-marketer-pages-'));
    const templatesDir = path.join(dataDir, 'templates');
    await cp(path.join(REPO_ROOT, 'templates'), templatesDir, { recursive: true });
    demo = await startDemo(
      {
        dataDir,
        seed: true,
        overrides: {
          'http.apiPort': 0,
          'http.ingestPort': 0,
          'delivery.templatesDir': templatesDir,
        },
      },
      silentLogger(),
    );
    base = demo.urls.api!;
    const made = await fetch(`${base}/v1/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'marketing desk', role: 'marketer' }),
    });
    expect(made.status).toBe(201);
    marketerKey = ((await made.json()) as { secret: string }).secret;
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await demo?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('a marketer creates and publishes a template, then runs a campaign to an uploaded list to completion', async () => {
    const page = await newPage();
    await login(page);
    expect(await page.locator('nav#nav a').allTextContents()).toEqual([
      'Home',
      'Templates',
      'Campaigns',
      'Rules',
    ]);

    // A new template: saved as version 1, previewed live with its sample data.
    await go(page, 'Templates');
    await page.getByRole('link', { name: 'welcome' }).waitFor();
    await page.getByRole('button', { name: 'New template' }).click();
    await page.getByLabel('Name').fill('spring_sale');
    await page
      .locator('textarea[name="body"]')
      .fill(
        '---\nsubject: Spring sale for {{user.firstName}}\n---\n<p>Hello {{user.firstName}}, <b>20% off</b> this week.</p>\n',
      );
    await page.getByLabel('Version message').fill('First draft of the spring sale');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByRole('heading', { name: 'spring_sale' }).waitFor();
    const subject = page.locator('[data-preview="subject"]');
    await subject.waitFor({ timeout: 15_000 });
    expect(await subject.textContent()).toBe('Spring sale for Ada');
    // The HTML is in a frame that may run nothing.
    expect(await page.locator('iframe.message-body').getAttribute('sandbox')).toBe('');
    // A real user's traits replace the sample's once the user id is typed (debounced).
    await page.locator('input[name="preview-user"]').fill('demo-bert');
    await expect
      .poll(() => subject.textContent(), { timeout: 10_000 })
      .toBe('Spring sale for Bert');
    await shot(page, 'marketer-template');
    // Typing in the editor previews the unsaved draft for the same user, before any save.
    const preview = page.locator('[data-preview-of]');
    expect(await preview.getAttribute('data-preview-of')).toBe('v1');
    await page
      .locator('textarea[name="file"]')
      .fill(
        '---\nsubject: Last days of the sale, {{user.firstName}}\n---\n<p>Hello {{user.firstName}}</p>\n',
      );
    await expect
      .poll(() => subject.textContent(), { timeout: 10_000 })
      .toBe('Last days of the sale, Bert');
    expect(await preview.getAttribute('data-preview-of')).toBe('draft');
    await shot(page, 'marketer-template-draft');

    await page.getByRole('button', { name: 'Publish v1' }).click();
    await expect
      .poll(() => page.locator('[data-published]').textContent(), { timeout: 10_000 })
      .toContain('email: * v1');

    // A campaign to an uploaded list, with that template, run now.
    await go(page, 'Campaigns');
    await page.getByRole('button', { name: 'New campaign' }).click();
    await page.getByRole('heading', { name: 'New campaign' }).waitFor();
    await shot(page, 'marketer-campaign-new');
    await page.getByLabel('Name').fill('Spring sale');
    await page.locator('input[name="list"]').setInputFiles({
      name: 'spring.csv',
      mimeType: 'text/csv',
      buffer: Buffer.from(`userId\n${LIST.join('\n')}\n`),
    });
    await page
      .locator('select[name="template"] option', { hasText: 'spring_sale' })
      .waitFor({ state: 'attached' });
    await page.locator('select[name="template"]').selectOption('spring_sale');
    await page.locator('select[name="category"]').selectOption('transactional');
    await page.getByRole('button', { name: 'Create draft' }).click();
    await page.getByRole('heading', { name: /Spring sale/ }).waitFor();
    await page.getByRole('button', { name: 'Schedule' }).click();
    const state = page.locator('h1 [data-status]');
    await expect
      .poll(() => state.getAttribute('data-status'), { timeout: 60_000 })
      .toBe('completed');
    expect(await page.locator('[data-progress="planned"]').textContent()).toBe(String(LIST.length));
    expect(await page.locator('[data-progress="fannedOut"]').textContent()).toBe(
      String(LIST.length),
    );
    await waitFor(
      async () =>
        (await page.locator('[data-progress="sent"]').textContent()) === String(LIST.length),
      {
        timeout: 60_000,
        interval: 500,
        message: 'the campaign’s emails were not all counted as sent',
      },
    );
    await shot(page, 'marketer-campaign');
    await page.close();
  }, 180_000);

  it('the rules page lists the example rules, and a simulation of one shows its send', async () => {
    const page = await newPage();
    await login(page);
    await go(page, 'Rules');
    await page.getByRole('link', { name: 'trial-activation-day3' }).waitFor();
    expect(await page.getByRole('link', { name: 'welcome' }).count()).toBe(1);
    await page.getByRole('link', { name: 'welcome' }).click();
    await page.getByRole('heading', { name: /welcome/ }).waitFor();
    await page.locator('textarea[name="events"]').fill(
      [
        {
          type: 'identify',
          userId: 'sim-1',
          traits: { email: 'sim@example.com' },
          timestamp: '2026-11-02T09:00:00Z',
          messageId: 's1',
        },
        {
          type: 'track',
          event: 'user_registered',
          userId: 'sim-1',
          timestamp: '2026-11-02T09:00:01Z',
          messageId: 's2',
        },
      ]
        .map((e) => JSON.stringify(e))
        .join('\n'),
    );
    await page.getByRole('button', { name: 'Simulate' }).click();
    const result = page.locator('[data-result="simulate"]');
    await result.waitFor();
    const sends = result.locator('table').first();
    expect(await sends.locator('td[data-col="userId"]').allTextContents()).toEqual(['sim-1']);
    expect(await sends.locator('td[data-col="template"]').allTextContents()).toEqual(['welcome']);
    await shot(page, 'marketer-rule-simulate');
    await page.close();
  }, 60_000);

  it('every page fits a phone (390x844) without a sideways scroll', async () => {
    const page = await newPage(PHONE);
    await login(page);
    for (const [title, name] of [
      ['Templates', 'templates'],
      ['Campaigns', 'campaigns'],
      ['Rules', 'rules'],
    ] as const) {
      await go(page, title);
      await page.getByRole('heading', { name: title, exact: true }).waitFor();
      await page.locator('table, p.empty').first().waitFor();
      await fitsWidth(page);
      await shot(page, `marketer-${name}-phone`);
    }
    await page.goto(`${base.replace(/\/$/, '')}/#/templates/spring_sale`);
    await page.locator('[data-preview="subject"]').waitFor({ timeout: 15_000 });
    await fitsWidth(page);
    await shot(page, 'marketer-template-phone');
    await page.goto(`${base.replace(/\/$/, '')}/#/rules/welcome`);
    await page.locator('textarea[name="events"]').waitFor();
    await fitsWidth(page);
    await shot(page, 'marketer-rule-phone');
    await page.close();
  }, 90_000);
});
