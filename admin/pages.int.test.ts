// The admin pages in a real browser (Debian chromium via playwright-core) against the embedded
// demo: its sample users come in through the ingest API, the engine sends them the welcome
// email, delivery hands it to the SMTP outbox and records it in the message log, and the
// analytics sink stores it in chDB, where the message log API reads it. A support person logs
// in with a support key, finds Ada by her email, reads her welcome email and its history, and
// resends it; a message whose HTML carries a script and an onerror handler is shown without
// running either; a wrong key is refused with its message; an analyst sees the dashboards and
// not Users; the pages fit a phone (390x844) without a sideways scroll.
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startDemo, type Demo } from '../bin/demo.ts';
import { loadConfig } from '../platform/config.ts';
import { silentLogger } from '../platform/logger.ts';
import { watchCsp } from '../test/support/csp-pages.ts';
import { freePort } from '../test/support/ports.ts';
import { REPO_ROOT } from '../test/support/stack-env.ts';
import { waitFor } from '../test/support/wait.ts';

const SHOTS = path.join(REPO_ROOT, '.stack/screenshots/admin');
const PHONE = { width: 390, height: 844 };
/** A policy refusal of a script or an event handler (not of a style or an image). */
const refusesScript = (m: string) => /directive:? ['"]script-src/.test(m);
// An email whose HTML tries to run code in whatever shows it: an inline script and an image
// error handler, each of which would leave a mark in the document if it ran.
const PROBE_TEMPLATE = [
  '---',
  'subject: Your statement is ready',
  '---',
  '<p id="probe-text">Hello {{default user.firstName "friend"}}, your statement is ready.</p>',
  `<script>document.body.insertAdjacentHTML('beforeend', '<p id="script-ran">script ran</p>');</script>`,
  `<img src="x" alt="" onerror="document.body.insertAdjacentHTML('beforeend', '<p id=img-ran>onerror ran</p>')">`,
].join('\n');

describe('the admin pages', () => {
  let demo: Demo;
  let dataDir: string;
  let templatesDir: string;
  let browser: Browser;
  let base: string;
  const adminToken = loadConfig(undefined).auth.adminToken;
  const keys: Record<'support' | 'analyst' | 'service', string> = {
    support: '',
    analyst: '',
    service: '',
  };
  let probeSendId: string;

  // Every page runs under its Content-Security-Policy, and nothing it does is refused by it.
  // A message's HTML is shown in a frame under the same policy, which refuses its styles and
  // remote images: those refusals are kept apart and checked where a message is shown.
  const csp = watchCsp(() => browser, { framed: true });
  afterEach(() => {
    expect(csp.problems()).toEqual([]);
    expect(csp.framed().filter(refusesScript)).toEqual([]);
  });
  const newPage = async (viewport = PHONE) => {
    const page = await csp.newPage();
    await page.setViewportSize(viewport);
    return page;
  };
  const shot = (page: Page, name: string) =>
    page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });

  const staff = async (token: string, url: string, init: RequestInit = {}) => {
    const res = await fetch(`${demo.urls.api}${url}`, {
      ...init,
      headers: {
        authorization: `Bearer ${token}`,
        ...(init.body ? { 'content-type': 'application/json' } : {}),
        ...(init.headers as Record<string, string> | undefined),
      },
    });
    const body: unknown = await res.json().catch(() => null);
    return { status: res.status, body: body as Record<string, unknown> };
  };

  beforeAll(async () => {
    await mkdir(SHOTS, { recursive: true });
    dataDir = await mkdtemp(path.join(tmpdir(), 'lc-admin-pages-'));
    templatesDir = path.join(dataDir, 'templates');
    await cp(path.join(REPO_ROOT, 'templates'), templatesDir, { recursive: true });
    await mkdir(path.join(templatesDir, 'statement_probe'));
    await writeFile(path.join(templatesDir, 'statement_probe', 'email.en.hbs'), PROBE_TEMPLATE);
    await writeFile(
      path.join(templatesDir, 'statement_probe', 'sample.json'),
      JSON.stringify({ user: { firstName: 'Ada', email: 'ada@example.com' } }),
    );
    // The messages' tracking links and pixel point at the API server itself, as in production:
    // the same origin as the pages.
    const apiPort = await freePort();
    demo = await startDemo(
      {
        dataDir,
        seed: true,
        overrides: {
          'http.apiPort': apiPort,
          'http.publicBaseUrl': `http://127.0.0.1:${apiPort}`,
          'http.ingestPort': 0,
          'delivery.templatesDir': templatesDir,
        },
      },
      silentLogger(),
    );
    base = demo.urls.api!;
    for (const role of Object.keys(keys) as (keyof typeof keys)[]) {
      const made = await staff(adminToken, '/v1/keys', {
        method: 'POST',
        body: JSON.stringify({ name: `${role} desk`, role }),
      });
      expect(made.status, JSON.stringify(made.body)).toBe(201);
      keys[role] = made.body.secret as string;
    }
    // The engine knows Ada once the seed is through; then the backend sends her the probe.
    await waitFor(async () => (await staff(keys.support, '/v1/users/demo-ada')).status === 200, {
      timeout: 30_000,
      interval: 200,
      message: 'the demo did not seed demo-ada',
    });
    const sent = await staff(keys.service, '/v1/send', {
      method: 'POST',
      body: JSON.stringify({
        template: 'statement_probe',
        userId: 'demo-ada',
        category: 'transactional',
        channels: ['email'],
      }),
    });
    expect(sent.status, JSON.stringify(sent.body)).toBe(202);
    probeSendId = (sent.body.sends as { sendId: string }[])[0]!.sendId;
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

  const login = async (page: Page, credential: string) => {
    await page.goto(`${base.replace(/\/$/, '')}/`);
    await page.getByLabel('Credential').fill(credential);
    await page.getByRole('button', { name: 'Log in' }).click();
  };
  /** Opens the nav on a phone (it is collapsed behind "Menu") and follows a link. */
  const go = async (page: Page, title: string) => {
    const menu = page.getByRole('button', { name: 'Menu' });
    if (await menu.isVisible()) await menu.click();
    await page.locator('nav#nav a', { hasText: title }).click();
  };
  /** The page does not scroll sideways: nothing is wider than the viewport. */
  const fitsWidth = async (page: Page) => {
    // Runs in the page, whose DOM types this file (a Node test) does not load.
    type Root = { document: { documentElement: { scrollWidth: number; clientWidth: number } } };
    const { scrollWidth, clientWidth } = await page.evaluate(() => {
      const root = (globalThis as unknown as Root).document.documentElement;
      return { scrollWidth: root.scrollWidth, clientWidth: root.clientWidth };
    });
    expect(scrollWidth, 'the body scrolls sideways').toBeLessThanOrEqual(clientWidth);
  };

  it('refuses a wrong key and shows the coded error; the demo prints the pages first', async () => {
    expect(demo.urls.admin).toBe(`${demo.urls.api}/`);
    const page = await newPage();
    await login(page, 'lc_this-is-not-a-key');
    const error = page.locator('#login-error [role="alert"]');
    await error.waitFor();
    expect(await error.getAttribute('data-code')).toBe('LC_ERR_UNAUTHORIZED');
    expect(await error.textContent()).toMatch(/not a known API key/);
    await shot(page, 'login-refused');
    // Nothing was kept: a reload shows the login again.
    await page.reload();
    await page.getByLabel('Credential').waitFor();
    await page.close();
  });

  it('support finds a user by email, reads a message and its history, resends it and sees the new send', async () => {
    const page = await newPage();
    await login(page, keys.support);
    await page.getByRole('heading', { name: 'Welcome, support desk' }).waitFor();
    expect(await page.locator('nav#nav a').allTextContents()).toEqual(['Home', 'Users']);
    await fitsWidth(page);
    await shot(page, 'support-home');

    await go(page, 'Users');
    await page.getByLabel('Email, phone or user id').fill('ADA@example.com');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByRole('link', { name: 'demo-ada' }).click();
    await page.getByRole('heading', { name: 'User demo-ada' }).waitFor();
    expect(await page.locator('td[data-col="v"]', { hasText: 'ada@example.com' }).count()).toBe(1);
    await fitsWidth(page);
    await shot(page, 'support-user');

    await page.getByRole('link', { name: 'Messages' }).click();
    await page.getByRole('heading', { name: 'Messages of demo-ada' }).waitFor();
    // The welcome email reaches the message log through delivery and the analytics sink.
    const welcome = page.locator('a[data-send]', { hasText: 'Welcome to Example, Ada!' });
    await waitFor(
      async () => {
        if ((await welcome.count()) > 0) return true;
        await page.getByRole('button', { name: 'Refresh' }).click();
        await page.waitForTimeout(500);
        return false;
      },
      { timeout: 45_000, interval: 100, message: 'the welcome email did not reach the log' },
    );
    await fitsWidth(page);
    await shot(page, 'support-messages');
    const originalSendId = await welcome.first().getAttribute('data-send');
    await welcome.first().click();

    const email = page.locator('[data-channel="email"]');
    await email.waitFor();
    expect(await email.locator('.subject').textContent()).toBe('Welcome to Example, Ada!');
    expect(await email.locator('pre.text').textContent()).toMatch(/Thanks for signing up/);
    // The HTML body is in a frame that may run nothing and belongs to no origin.
    const frame = email.locator('iframe.message-body');
    expect(await frame.getAttribute('sandbox')).toBe('');
    expect(
      await page
        .frameLocator('iframe.message-body')
        .getByText('Thanks for signing up')
        .first()
        .textContent(),
    ).toMatch(/Thanks for signing up/);
    await waitFor(
      async () => {
        const statuses = await email.locator('td[data-col="status"]').allTextContents();
        if (statuses.map((s) => s.trim()).includes('sent')) return true;
        await page.getByRole('button', { name: 'Refresh' }).click();
        await page.waitForTimeout(500);
        return false;
      },
      { timeout: 30_000, interval: 100, message: 'the history did not show sent' },
    );
    await fitsWidth(page);
    await shot(page, 'support-message');

    await page.getByRole('button', { name: 'Resend' }).click();
    const result = page.locator('.resend-result');
    await result.waitFor();
    const newSendId = await result.getAttribute('data-send');
    expect(newSendId).toBeTruthy();
    expect(newSendId).not.toBe(originalSendId);
    expect(await result.textContent()).toMatch(/consent and suppression allow it now/);
    await shot(page, 'support-resent');

    // The new send is delivered and logged like any other, and says where it came from.
    await result.getByRole('link', { name: newSendId! }).click();
    await waitFor(
      async () => {
        if ((await page.locator('dd', { hasText: `resend:${originalSendId}` }).count()) > 0)
          return true;
        await page.reload();
        await page.waitForTimeout(500);
        return false;
      },
      { timeout: 45_000, interval: 100, message: 'the resend did not reach the log' },
    );
    expect(await page.locator('[data-channel="email"] .subject').textContent()).toBe(
      'Welcome to Example, Ada!',
    );
    const resends = await staff(
      adminToken,
      `/v1/audit?action=message.resend&target=${encodeURIComponent(`message:${originalSendId}`)}`,
    );
    expect(resends.body.entries).toMatchObject([{ actor: expect.stringMatching(/^key_/) }]);
    await shot(page, 'support-new-send');
    await page.close();
  });

  it("shows a message's HTML without running its script or its onerror handler", async () => {
    const page = await newPage({ width: 1280, height: 900 });
    await login(page, keys.support);
    await page.getByRole('heading', { name: 'Welcome, support desk' }).waitFor();
    await page.goto(`${base}/#/users/demo-ada/messages/${encodeURIComponent(probeSendId)}`);
    const email = page.locator('[data-channel="email"]');
    await waitFor(
      async () => {
        if ((await email.locator('iframe.message-body').count()) > 0) return true;
        await page.reload();
        await page.waitForTimeout(500);
        return false;
      },
      { timeout: 45_000, interval: 100, message: 'the probe did not reach the log' },
    );
    const body = page.frameLocator('iframe.message-body');
    await body.locator('#probe-text').waitFor();
    const tracked: string[] = [];
    page.on('request', (r) => {
      if (new URL(r.url()).pathname.startsWith('/t/')) tracked.push(r.url());
    });
    expect(await body.locator('#probe-text').textContent()).toMatch(/your statement is ready/);
    // The markup is there, as sent, but neither handler left its mark.
    expect(await body.locator('script').count()).toBe(1);
    await page.waitForTimeout(500);
    expect(await body.locator('#script-ran').count()).toBe(0);
    expect(await body.locator('#img-ran').count()).toBe(0);
    expect(await page.locator('#script-ran, #img-ran').count()).toBe(0);
    const frame = email.locator('iframe.message-body');
    expect(await frame.getAttribute('sandbox')).toBe('');
    // The frame's own policy loads inline images only: no tracking pixel, even of this server.
    expect(await frame.getAttribute('srcdoc')).toMatch(
      /^<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:;/,
    );
    // Reading the message is not the user opening it or clicking in it: the pixel is not
    // loaded, and a link followed in the frame goes nowhere.
    await body.getByRole('link', { name: 'Email preferences' }).click();
    await page.waitForTimeout(500);
    expect(tracked).toEqual([]);
    expect(await body.locator('#probe-text').count()).toBe(1);
    await shot(page, 'message-probe');
    await frame.scrollIntoViewIfNeeded();
    await frame.screenshot({ path: path.join(SHOTS, 'message-probe-frame.png') });
    await page.close();
    // The sandbox keeps the frame from even trying: the policy refused no script in it (a
    // frame without the sandbox would have logged the inline script and handler refused).
    const refused = csp.framed();
    expect(refused.filter(refusesScript)).toEqual([]);
    expect(refused.some((m) => /Loading the image '[^']*\/t\/o\.gif/.test(m))).toBe(true);
  });

  it('an analyst sees the dashboards and not Users', async () => {
    const page = await newPage();
    await login(page, keys.analyst);
    await page.getByRole('heading', { name: 'Welcome, analyst desk' }).waitFor();
    expect(await page.locator('nav#nav a').allTextContents()).toEqual([
      'Home',
      'Campaigns',
      'Rules',
      'Dashboards',
    ]);
    await go(page, 'Dashboards');
    await page.locator('[data-panel]').first().waitFor();
    await expect
      .poll(() => page.locator('[data-panel][data-state="loading"]').count(), { timeout: 30_000 })
      .toBe(0);
    expect(await page.locator('[data-panel][data-state="ok"]').count()).toBeGreaterThan(0);
    // The welcome sends of the seed, drawn by uPlot or counted.
    await waitFor(
      async () => {
        if ((await page.locator('[data-panel] .u-wrap canvas').count()) > 0) return true;
        await page.getByRole('button', { name: 'Apply' }).click();
        await page.waitForTimeout(1000);
        return false;
      },
      { timeout: 30_000, interval: 100, message: 'no chart was drawn' },
    );
    await fitsWidth(page);
    await shot(page, 'analyst-dashboards');

    await page.goto(`${base}/#/users`);
    await page.getByRole('heading', { name: 'Not for your role' }).waitFor();
    const refused = await fetch(`${base}/v1/users?q=ada@example.com`, {
      headers: { authorization: `Bearer ${keys.analyst}` },
    });
    expect(refused.status).toBe(403);
    await page.close();
  });

  it('an admin makes a key (its secret shown once), revokes it, and reads both in the audit log', async () => {
    const page = await newPage({ width: 1280, height: 900 });
    page.on('dialog', (d) => void d.accept());
    await login(page, adminToken);
    await page.getByRole('heading', { name: 'Welcome, LC_ADMIN_TOKEN' }).waitFor();
    expect(await page.locator('nav#nav a').allTextContents()).toEqual([
      'Home',
      'Users',
      'Templates',
      'Campaigns',
      'Rules',
      'Dashboards',
      'Audit log',
      'API keys',
    ]);
    await go(page, 'API keys');
    await page.getByLabel('Name').fill('Grace (support)');
    await page.getByLabel('Role').selectOption('support');
    await page.getByRole('button', { name: 'Create key' }).click();
    const secret = (await page.locator('[data-secret]').textContent())!.trim();
    expect(secret).toMatch(/^lc_[\w-]{43}$/);
    expect((await staff(secret, '/v1/me')).body).toMatchObject({ role: 'support', via: 'key' });
    await shot(page, 'admin-key-created');
    await page.getByRole('button', { name: 'I have copied it' }).click();
    expect(await page.locator('[data-secret]').count()).toBe(0);
    expect(await page.locator('body').textContent()).not.toContain(secret);

    const row = page.locator('tr', { hasText: 'Grace (support)' });
    await row.getByRole('button', { name: 'Revoke' }).click();
    await row.locator('[data-status="revoked"]').waitFor();
    expect((await staff(secret, '/v1/me')).status).toBe(401);

    await go(page, 'Audit log');
    await page.getByLabel('Action').fill('key.revoke');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(/action=key\.revoke/);
    const entry = page.locator('tbody tr', { hasText: 'key.revoke' }).first();
    await entry.waitFor();
    await entry.getByRole('button', { name: 'Before / after' }).click();
    expect(await entry.locator('pre.json').last().textContent()).toMatch(/"revokedAt": "\d{4}-/);
    expect(await entry.locator('pre.json').last().textContent()).toContain('"Grace (support)"');
    expect(await page.locator('body').textContent()).not.toContain(secret);
    await shot(page, 'admin-audit');
    await page.close();
  });

  it('a refused credential later sends the user back to the login, and Log out forgets it', async () => {
    const page = await newPage();
    await login(page, keys.support);
    await page.getByRole('heading', { name: 'Welcome, support desk' }).waitFor();
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByLabel('Credential').waitFor();
    await page.goto(`${base}/#/users`);
    await page.getByLabel('Credential').waitFor();

    // A key revoked while it is in use: the next call answers 401 and the login says why.
    const made = await staff(adminToken, '/v1/keys', {
      method: 'POST',
      body: JSON.stringify({ name: 'short-lived', role: 'support' }),
    });
    await login(page, made.body.secret as string);
    await page.getByRole('heading', { name: 'Welcome, short-lived' }).waitFor();
    const id = (made.body.key as { id: string }).id;
    expect((await staff(adminToken, `/v1/keys/${id}`, { method: 'DELETE' })).status).toBe(200);
    await go(page, 'Users');
    await page.getByRole('heading', { name: 'Users' }).waitFor();
    // The page may render its form again as the route settles, emptying a field filled too
    // early: the search is made once the field holds the address.
    const search = page.getByLabel('Email, phone or user id');
    await expect
      .poll(
        async () => {
          await search.fill('ada@example.com');
          return search.inputValue();
        },
        { timeout: 10_000 },
      )
      .toBe('ada@example.com');
    await page.getByRole('button', { name: 'Search' }).click();
    await page
      .locator('#login-reason', { hasText: 'LC_ERR_KEY_REVOKED' })
      .waitFor({ timeout: 10_000 })
      .catch(async (err: unknown) => {
        await shot(page, 'revoked-failure');
        throw err;
      });
    await page.close();
  });
});
