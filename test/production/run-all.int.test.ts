// `lifecycle run all` as a user runs it: one real process with every production unit on
// the real stack. An app identifies a user and tracks a sign-up over the Segment API; the
// welcome email arrives in the SMTP sink, the send lands in ClickHouse, and SIGTERM stops
// the process cleanly.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAnalyticsStore, type AnalyticsStore } from '../../analytics/store.ts';
import { isolate, type Isolation } from '../support/isolation.ts';
import { REPO_ROOT } from '../support/stack-env.ts';
import { smtpSinkClient } from '../support/smtp.ts';
import { waitFor } from '../support/wait.ts';
import { freePort } from '../support/ports.ts';

describe('lifecycle run all', () => {
  let iso: Isolation;
  let child: ChildProcess;
  let output = '';
  let ingestUrl: string;
  let apiUrl: string;
  let metricsUrl: string;
  let store: AnalyticsStore;

  beforeAll(async () => {
    iso = isolate('runall');
    const [ingestPort, apiPort, metricsPort] = [
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    ingestUrl = `http://127.0.0.1:${ingestPort}`;
    apiUrl = `http://127.0.0.1:${apiPort}`;
    child = spawn(path.join(REPO_ROOT, 'bin/lifecycle'), ['run', 'all'], {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        ...iso.env,
        LC_INGEST_PORT: String(ingestPort),
        LC_API_PORT: String(apiPort),
        LC_METRICS_PORT: String(metricsPort),
        LC_PUBLIC_BASE_URL: apiUrl,
        LC_KAFKA_PARTITIONS: '2',
        LC_QUIET_HOURS: '',
        LC_LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    await waitFor(
      async () => (await fetch(`${ingestUrl}/health`)).ok && (await fetch(`${apiUrl}/health`)).ok,
      {
        timeout: 90_000,
        message: 'lifecycle run all did not become healthy',
      },
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n--- process output ---\n${output.slice(-4000)}`);
    });
    store = await createAnalyticsStore(iso.config().clickhouse);
  });

  afterAll(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await store?.close();
  });

  it('turns a sign-up sent over the Segment API into a welcome email and an analytics row', async () => {
    const email = `${iso.id}@example.com`;
    const userId = `user-${iso.id}`;
    const auth = `Basic ${Buffer.from('dev-write-key:').toString('base64')}`;
    const post = (p: string, body: object) =>
      fetch(`${ingestUrl}${p}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: auth },
        body: JSON.stringify(body),
      });
    expect(
      (
        await post('/v1/identify', {
          userId,
          messageId: `${iso.id}-id`,
          traits: { email, firstName: 'Grace', plan: 'trial' },
        })
      ).status,
    ).toBe(200);
    expect(
      (await post('/v1/track', { userId, messageId: `${iso.id}-reg`, event: 'user_registered' }))
        .status,
    ).toBe(200);

    const [mail] = await smtpSinkClient().waitForCount({ to: email }, 1, 60_000);
    expect(mail!.subject).toBe('Welcome to Example, Grace!');

    const rows = await waitFor(
      async () => {
        const r = await store.query<{ n: number }>(
          `SELECT count() AS n FROM ${iso.clickhouseDatabase}.sends WHERE user_id = {u:String} AND rule_id = 'welcome'`,
          { u: userId },
        );
        return r[0]!.n >= 1 ? r : false;
      },
      { timeout: 60_000, message: 'the welcome send did not reach ClickHouse' },
    );
    expect(rows[0]!.n).toBe(1);

    // Every unit of the process reports on the one Prometheus endpoint.
    const metrics = await (await fetch(metricsUrl)).text();
    expect(metrics).toMatch(
      /lifecycle_consumer_records_total\{[^}]*consumer="engine"[^}]*\} [1-9]/,
    );
    expect(metrics).toContain('lifecycle_ingest_events_total');
    expect(metrics).toContain('lifecycle_scheduler_directory_sync_age_seconds');
    // Lag is measured every few seconds.
    await waitFor(
      async () =>
        /lifecycle_consumer_lag\{[^}]*consumer="delivery"/.test(
          await (await fetch(metricsUrl)).text(),
        ),
      { timeout: 30_000, message: "the delivery group's lag was never measured" },
    );
    expect(metrics).toMatch(/lifecycle_http_request_seconds_count\{[^}]*route="\/v1\/track"/);
  });

  it('stops gracefully on SIGTERM', async () => {
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});
