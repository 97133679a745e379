// `lifecycle demo` as a new user starts it: within a minute of its first line, the synthetic
// users have set off the example rules (welcome and trial-ending emails in the outbox, in-app
// messages in their inboxes) and the dashboards' funnel, uplift and retention panels have
// rows. A new user opens the printed URL in a browser (Debian chromium), logs in with the
// printed key and sees the same: the funnel with sent emails, a synthetic user and their
// emails. The same demo then takes `lifecycle generate` over its HTTP APIs, as a stack would.
// One demo process (chDB starts in it), no services of the stack.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../platform/config.ts';
import { signInappToken } from '../../delivery/inapp/token.ts';
import { syntheticProfile } from '../../devtools/generator.ts';
import { OPT_IN_SOURCE } from '../../devtools/generator-http.ts';
import { freePort } from '../support/ports.ts';
import { watchCsp } from '../support/csp-pages.ts';
import { REPO_ROOT } from '../support/stack-env.ts';
import { waitFor } from '../support/wait.ts';

const LIFECYCLE = path.join(REPO_ROOT, 'bin/lifecycle');
const SHOTS = path.join(REPO_ROOT, '.stack/screenshots/demo');
const SEED = 7;
type Rows = Record<string, unknown>[];

interface Run {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  exit: Promise<number | null>;
}

function start(args: string[], env: Record<string, string> = {}): Run {
  const child = spawn(LIFECYCLE, args, {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const run: Run = {
    child,
    stdout: '',
    stderr: '',
    exit: new Promise((resolve) => child.once('exit', (code) => resolve(code))),
  };
  child.stdout!.on('data', (d: Buffer) => (run.stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (run.stderr += d.toString()));
  return run;
}

describe('the demo with synthetic users', () => {
  const config = loadConfig(undefined);
  const admin = { authorization: `Bearer ${config.auth.adminToken}` };
  let dataDir: string;
  let demo: Run;
  let firstLine: string;
  let shownAt: number;
  let apiUrl: string;
  let ingestUrl: string;
  let outboxUrl: string;
  let writeKey: string;

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'lc-demo-gen-'));
    const [apiPort, ingestPort] = [await freePort(), await freePort()];
    apiUrl = `http://127.0.0.1:${apiPort}`;
    ingestUrl = `http://127.0.0.1:${ingestPort}`;
    demo = start(['demo', '--data', dataDir, '--generator-seed', String(SEED)], {
      LC_API_PORT: String(apiPort),
      LC_INGEST_PORT: String(ingestPort),
    });
    await waitFor(() => demo.stdout.includes('Ctrl-C stops.'), {
      timeout: 120_000,
      interval: 100,
      message: 'the demo did not print its block',
    }).catch((err: Error) => {
      throw new Error(`${err.message}\n${demo.stdout}\n${demo.stderr.slice(-3000)}`);
    });
    shownAt = Date.now();
    firstLine = demo.stdout.split('\n')[0]!;
    outboxUrl = /Outbox\s+(\S+)/.exec(demo.stdout)![1]!;
    writeKey = /write key ([^\s,]+)/.exec(demo.stdout)![1]!;
  });

  afterAll(async () => {
    if (demo?.child.exitCode === null) demo.child.kill('SIGKILL');
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  const panel = async (dashboard: string, id: string): Promise<Rows> => {
    const res = await fetch(`${apiUrl}/v1/dashboards/${dashboard}/panels/${id}`, {
      headers: admin,
    });
    return res.ok ? ((await res.json()) as { rows: Rows }).rows : [];
  };

  it('prints the URL to open first, then the key and that it is not a production mode', () => {
    expect(firstLine).toBe(`${apiUrl}/`);
    const block = demo.stdout.split('Ctrl-C stops.')[0]!.split('\n');
    expect(block.length).toBeLessThanOrEqual(10);
    expect(block[1]).toContain(`Key: ${config.auth.adminToken}`);
    expect(demo.stdout).toMatch(/not a production mode/i);
    expect(demo.stdout).toContain(`seed ${SEED}`);
  });

  it('within a minute: welcome and trial-ending emails, in-app messages, and dashboards with funnel, uplift and retention rows', async () => {
    const deadline = shownAt + 60_000;
    const generated = (to: string[]) => to.some((a) => a.includes(`.${SEED}.`));
    const seen = {
      welcome: false,
      trialEnding: false,
      inapp: false,
      funnel: false,
      uplift: false,
      retention: false,
    };
    // The first users of the seed who tick the marketing box: trial-ending goes to their inboxes.
    const optedIn = Array.from({ length: 60 }, (_, i) => syntheticProfile(SEED, i)).filter(
      (p) => p.optIn,
    );
    while (Date.now() < deadline && Object.values(seen).some((v) => !v)) {
      const mails = (
        (await (await fetch(outboxUrl)).json()) as {
          messages: { to: string[]; subject: string }[];
        }
      ).messages.filter((m) => generated(m.to));
      seen.welcome ||= mails.some((m) => /^(Welcome to|Willkommen bei) Example/.test(m.subject));
      seen.trialEnding ||= mails.some((m) => /^(Your trial|Ihr Testzeitraum)/.test(m.subject));
      if (!seen.inapp)
        for (const p of optedIn) {
          const res = await fetch(`${apiUrl}/v1/inapp/inbox`, {
            headers: {
              authorization: `Bearer ${signInappToken(config.auth.inappSecret, p.userId)}`,
            },
          });
          const inbox = (await res.json()) as { messages?: { ruleId: string }[] };
          if (inbox.messages?.some((m) => m.ruleId === 'trial-ending')) {
            seen.inapp = true;
            break;
          }
        }
      const funnel = await panel('lifecycle', 'funnel-table');
      seen.funnel ||=
        funnel.some((r) => r.rule_id === 'welcome' && Number(r.sent) > 0) &&
        funnel.some((r) => r.rule_id === 'trial-ending' && Number(r.sends) > 0);
      seen.uplift ||= (await panel('lifecycle', 'uplift')).some(
        (r) => r.rule_id === 'trial-ending' && Number(r.treated_users) > 0,
      );
      seen.retention ||= (await panel('retention-churn', 'retention')).some(
        (r) => Number(r.cohort_users) > 10,
      );
      if (Object.values(seen).some((v) => !v)) await new Promise((r) => setTimeout(r, 1000));
    }
    expect(seen, `after ${Math.round((Date.now() - shownAt) / 1000)} s`).toEqual({
      welcome: true,
      trialEnding: true,
      inapp: true,
      funnel: true,
      uplift: true,
      retention: true,
    });
    // Subscriptions and churn are under way too.
    const churn = await panel('retention-churn', 'churn');
    expect(Number(churn[0]?.cancelled)).toBeGreaterThan(0);
    expect(demo.stderr).toMatch(
      /generator: \d+ users \(\d+ in the simulation\), \d+ events, \d+ subscribed, \d+ cancelled, \d+ emails in the outbox/,
    );
  });

  it('as a new user: the printed URL, the printed key, then dashboards that fill and a synthetic user with emails', async () => {
    const key = /Key: (\S+)/.exec(demo.stdout)![1]!;
    const browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    const csp = watchCsp(() => browser, { framed: true });
    try {
      await mkdir(SHOTS, { recursive: true });
      const page = await csp.newPage();
      await page.setViewportSize({ width: 1280, height: 900 });
      const shot = (name: string) =>
        page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
      const go = async (p: Page, title: string) => {
        const menu = p.getByRole('button', { name: 'Menu' });
        if (await menu.isVisible()) await menu.click();
        await p.locator('nav#nav a', { hasText: title }).click();
      };

      await page.goto(firstLine);
      await page.getByLabel('Credential').fill(key);
      await page.getByRole('button', { name: 'Log in' }).click();
      await page.locator('nav#nav a', { hasText: 'Dashboards' }).waitFor();
      await shot('home');

      // The lifecycle dashboard: the funnel has the welcome rule with emails sent.
      await go(page, 'Dashboards');
      const funnel = page.locator('[data-panel="funnel-table"]');
      const welcomeSent = funnel
        .locator('tr', { hasText: 'welcome' })
        .locator('td[data-col="sent"]');
      await expect
        .poll(
          async () => {
            if ((await welcomeSent.count()) > 0)
              return Number((await welcomeSent.first().textContent())?.replace(/,/g, ''));
            await page.getByRole('button', { name: 'Apply' }).click();
            return 0;
          },
          { timeout: 60_000, interval: 1000 },
        )
        .toBeGreaterThan(0);
      await expect
        .poll(() => page.locator('[data-panel][data-state="loading"]').count(), { timeout: 30_000 })
        .toBe(0);
      await shot('dashboards');

      // A synthetic user's page, with the welcome email in their messages.
      const user = syntheticProfile(SEED, 0);
      // (Finding users by address is the support test's, admin/pages.int.test.ts: here the
      // page of a synthetic user, as a link to it opens it.)
      await page.goto(`${firstLine}#/users/${encodeURIComponent(user.userId)}`);
      await page.getByRole('heading', { name: `User ${user.userId}` }).waitFor();
      await page.getByRole('link', { name: 'Messages' }).click();
      await page.getByRole('heading', { name: `Messages of ${user.userId}` }).waitFor();
      const welcome = page.locator('a[data-send]', {
        hasText: /Welcome to Example|Willkommen bei Example/,
      });
      await expect
        .poll(
          async () => {
            if ((await welcome.count()) > 0) return true;
            await page.getByRole('button', { name: 'Refresh' }).click();
            return false;
          },
          { timeout: 30_000, interval: 1000 },
        )
        .toBe(true);
      await shot('user-messages');
      expect(csp.problems()).toEqual([]);
    } finally {
      await browser.close();
    }
  });

  it('lifecycle generate drives the same APIs over HTTP: users the engine knows, opt-ins recorded', async () => {
    const seed = 4242;
    const gen = start([
      'generate',
      '--ingest-url',
      ingestUrl,
      '--write-key',
      writeKey,
      '--api-url',
      apiUrl,
      '--admin-token',
      config.auth.adminToken,
      '--rate',
      '10',
      '--duration',
      '3s',
      '--seed',
      String(seed),
      '--progress-ms',
      '1000',
    ]);
    expect(await gen.exit, gen.stderr).toBe(0);
    expect(gen.stderr).toContain(`generate: seed ${seed}, 10 new users/s`);
    const users = Number(/generator: (\d+) users/.exec(gen.stdout)?.[1]);
    expect(users).toBeGreaterThanOrEqual(20);

    const first = syntheticProfile(seed, 0);
    const profile = await waitFor(
      async () => {
        const res = await fetch(`${apiUrl}/v1/users/${first.userId}`, { headers: admin });
        return res.ok
          ? ((await res.json()) as { profile: { traits: Record<string, unknown> } }).profile
          : null;
      },
      { timeout: 20_000, interval: 250, message: 'the engine never saw the generated user' },
    );
    expect(profile.traits).toMatchObject({ email: first.email, locale: first.locale });

    const optedIn = Array.from({ length: users }, (_, i) => syntheticProfile(seed, i)).find(
      (p) => p.optIn,
    )!;
    const prefs = (await (
      await fetch(`${apiUrl}/v1/users/${optedIn.userId}/preferences`, { headers: admin })
    ).json()) as { consents: { marketing: { email: { granted: boolean; source: string } } } };
    expect(prefs.consents.marketing.email).toMatchObject({
      granted: true,
      source: OPT_IN_SOURCE,
    });
  });

  it('lifecycle generate stops at once, saying why, when the ingest API refuses its key', async () => {
    const gen = start([
      'generate',
      '--ingest-url',
      ingestUrl,
      '--write-key',
      'not-a-key',
      '--duration',
      '60s',
    ]);
    const started = Date.now();
    expect(await gen.exit).toBe(1);
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(gen.stderr).toMatch(/lifecycle generate: ingest: 40[13] LC_ERR_\w+: /);
  });

  it('stops cleanly on Ctrl-C', async () => {
    demo.child.kill('SIGINT');
    expect(await demo.exit).toBe(0);
  });
});
