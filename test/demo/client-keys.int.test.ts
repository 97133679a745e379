// A browser write key is public: anyone can read it from the page. Through one, an attacker
// identifies a paying user with an address of their choosing and forges a failed payment;
// the transactional payment notice (which needs no opt-in) would go to that address. On the
// real stack, with `lifecycle run all` as a user runs it: the client key's email and plan
// are dropped and nothing is sent to the attacker's address, while the product's backend,
// with a server key, sets the real address and the notice arrives there.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isolate, type Isolation } from '../support/isolation.ts';
import { freePort } from '../support/ports.ts';
import { smtpSinkClient } from '../support/smtp.ts';
import { REPO_ROOT } from '../support/stack-env.ts';
import { waitFor } from '../support/wait.ts';

const CLIENT_KEY = 'wk_browser_e2e_client';
const SERVER_KEY = 'wk_backend_e2e_server';
const METRICS_TOKEN = 'mt_e2e_scraper';

describe('client and server write keys, end to end', () => {
  let iso: Isolation;
  let child: ChildProcess;
  let output = '';
  let ingestUrl: string;

  beforeAll(async () => {
    iso = isolate('clientkeys');
    const [ingestPort, apiPort] = [await freePort(), await freePort()];
    ingestUrl = `http://127.0.0.1:${ingestPort}`;
    const apiUrl = `http://127.0.0.1:${apiPort}`;
    child = spawn(path.join(REPO_ROOT, 'bin/lifecycle'), ['run', 'all'], {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        ...iso.env,
        // The browser key as a user would configure it: no kind, so `client`.
        LC_WRITE_KEYS: `web:${CLIENT_KEY},backend:${SERVER_KEY}:server`,
        LC_INGEST_PORT: String(ingestPort),
        LC_API_PORT: String(apiPort),
        LC_PUBLIC_BASE_URL: apiUrl,
        LC_KAFKA_PARTITIONS: '2',
        LC_QUIET_HOURS: '',
        LC_LOG_LEVEL: 'warn',
        LC_METRICS_TOKEN: METRICS_TOKEN,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    await waitFor(
      async () => (await fetch(`${ingestUrl}/health`)).ok && (await fetch(`${apiUrl}/health`)).ok,
      { timeout: 90_000, message: 'lifecycle run all did not become healthy' },
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n--- process output ---\n${output.slice(-4000)}`);
    });
  });

  afterAll(() => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
  });

  const post = (key: string, route: string, body: object) =>
    fetch(`${ingestUrl}${route}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Basic ${Buffer.from(`${key}:`).toString('base64')}`,
      },
      body: JSON.stringify(body),
    });

  it('a forged payment_failed with an attacker-chosen email through a client key sends nothing there; the same through a server key sends the notice', async () => {
    const sink = smtpSinkClient();
    const userId = `victim-${iso.id}`;
    const attackerAddress = `attacker-${iso.id}@example.com`;
    const ownerAddress = `owner-${iso.id}@example.com`;

    // The attack, as a script on any page with the browser key would send it.
    const identify = await post(CLIENT_KEY, '/v1/identify', {
      userId,
      messageId: `${iso.id}-attack-id`,
      traits: { email: attackerAddress, plan: 'pro', firstName: 'Victim' },
    });
    expect(identify.status).toBe(200);
    const forged = await post(CLIENT_KEY, '/v1/track', {
      userId,
      messageId: `${iso.id}-attack-pay`,
      event: 'payment_failed',
      properties: { amount: 9.99 },
    });
    expect(forged.status).toBe(200);

    // The product's backend, for the same user (so after the attack on the same partition):
    // its server key sets the real address and plan, and its failed payment is reported.
    expect(
      (
        await post(SERVER_KEY, '/v1/identify', {
          userId,
          messageId: `${iso.id}-real-id`,
          traits: { email: ownerAddress, plan: 'pro', firstName: 'Victim' },
        })
      ).status,
    ).toBe(200);
    expect(
      (
        await post(SERVER_KEY, '/v1/track', {
          userId,
          messageId: `${iso.id}-real-pay`,
          event: 'payment_failed',
          properties: { amount: 9.99 },
        })
      ).status,
    ).toBe(200);

    const [notice] = await sink.waitForCount({ to: ownerAddress }, 1, 60_000);
    expect(notice!.subject).toMatch(/payment/i);
    // Whatever the attack produced was sent before this (one user: one partition, in order);
    // a few more seconds cover a delivery retried behind it.
    await new Promise((r) => setTimeout(r, 3000));
    expect(await sink.list({ to: attackerAddress })).toEqual([]);
    expect(await sink.list({ to: ownerAddress })).toHaveLength(1);

    // The ingest server faces the internet: its metrics are the scraper's only.
    expect((await fetch(`${ingestUrl}/metrics`)).status).toBe(401);
    const metrics = await (
      await fetch(`${ingestUrl}/metrics`, {
        headers: { authorization: `Bearer ${METRICS_TOKEN}` },
      })
    ).text();
    for (const trait of ['email', 'plan'])
      expect(metrics, trait).toMatch(
        new RegExp(
          `lifecycle_ingest_dropped_traits_total\\{[^}]*source="web",trait="${trait}"[^}]*\\} 1\\n`,
        ),
      );
    // Logged by name, never by value.
    expect(output).toContain('protected traits dropped');
    expect(output).not.toContain(attackerAddress);
  });
});
