// A send parked for quiet hours survives the death of the delivery process that parked it:
// a delivery process (spawned as in production) defers the send to the end of the window
// and is killed with SIGKILL, no graceful stop. A new delivery worker, whose clock the test
// moves past the end of the window (as policy/quiet-caps.int.test.ts does), finds the send
// in the durable delay queue in Redis and sends it; the email arrives exactly once.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { SmtpSink } from '../../devtools/smtp-sink.ts';
import { parseQuietHours, quietHoursEnd } from '../policy/quiet-hours.ts';
import {
  createHarness,
  logger,
  startSink,
  stopSink,
  waitFor,
  welcomeSend,
  type Harness,
} from '../../test/support/delivery-harness.ts';
import { runDelivery, type DeliveryHandle } from './run.ts';

const hhmm = (ts: number) => new Date(ts).toISOString().slice(11, 16);
const mid = (sendId: string) => `${sendId.replace(/[^A-Za-z0-9._-]/g, '-')}@example.com`;

let h: Harness | undefined;
let sink: (SmtpSink & { dir: string }) | undefined;
let child: ChildProcess | null = null;
let second: DeliveryHandle | undefined;
let logDir: string | undefined;

afterAll(async () => {
  child?.kill('SIGKILL');
  await second?.stop();
  await h?.close();
  if (sink) await stopSink(sink);
  if (logDir) await rm(logDir, { recursive: true, force: true });
});

describe('quiet hours across a killed delivery process', () => {
  it('sends the parked email once, from a new worker, when its clock has passed the end of the window', async () => {
    // Two hours around now, in UTC (the user's timezone below).
    const quiet = `${hhmm(Date.now() - 3600_000)}-${hhmm(Date.now() + 3600_000)}`;
    sink = await startSink();
    h = await createHarness('dlv-quiet-kill', {
      'delivery.smtpUrls': [`smtp://127.0.0.1:${sink.port}`],
      'delivery.quietHours': quiet,
      'delivery.defaultTimezone': 'UTC',
      'delivery.delayPollMs': 200,
    });
    logDir = await mkdtemp(join(tmpdir(), 'lc-dlv-quiet-kill-'));
    child = spawn(process.execPath, ['--import', 'tsx/esm', 'delivery/pipeline/main.ts'], {
      cwd: process.cwd(),
      env: {
        ...process.env,
        ...h.env,
        LC_SMTP_URLS: `smtp://127.0.0.1:${sink.port}`,
        LC_QUIET_HOURS: quiet,
        LC_DEFAULT_TIMEZONE: 'UTC',
        LC_DELAY_POLL_MS: '200',
        LC_LOG_LEVEL: 'warn',
        KAFKAJS_NO_PARTITIONER_WARNING: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const log = createWriteStream(join(logDir, 'first.log'));
    child.stdout!.pipe(log);
    child.stderr!.pipe(log);
    const exited = new Promise((r) => child!.once('exit', r));

    // A custom category: no opt-in needed, and not transactional, so quiet hours apply.
    const userId = `qk-${h.id}`;
    const send = welcomeSend(userId, {
      category: 'product_updates',
      data: {
        user: {
          email: `${userId}@example.com`,
          firstName: 'Kim',
          plan: 'trial',
          locale: 'en',
          timezone: 'UTC',
        },
        event: { type: 'x', properties: {} },
        rule: { id: 'welcome' },
      },
    });
    await h.publishSend(send);
    const deferred = await waitFor(
      'the send parked for quiet hours by the first process',
      () => h!.outcomes.find((o) => o.sendId === send.sendId && o.status === 'deferred'),
      90_000,
    );
    const end = quietHoursEnd(Date.now(), 'UTC', parseQuietHours(quiet)!)!;
    expect(deferred.reason).toBe(`quiet_hours until ${new Date(end).toISOString()} (UTC)`);
    const dueKey = `${h.config.redis.keyPrefix}{dlv-delay}:due`;
    expect(Number(await h.redis.redis.zscore(dueKey, `email|${send.sendId}`))).toBe(end);

    child.kill('SIGKILL');
    await exited;
    child = null;
    expect(sink.list({ messageId: mid(send.sendId) })).toHaveLength(0);

    // The new worker lives after the night: its clock is past the end of the window.
    const offset = end - Date.now() + 1000;
    second = await runDelivery(h.config, logger, {
      redis: h.redis,
      bus: h.bus,
      now: () => Date.now() + offset,
    });
    await waitFor(
      'the parked email after the restart',
      () => sink!.list({ messageId: mid(send.sendId) })[0],
      90_000,
    );
    await waitFor(
      'the sent outcome',
      () => h!.outcomes.find((o) => o.sendId === send.sendId && o.status === 'sent'),
      30_000,
    );
    // Time for a duplicate to show up, had the first process's Kafka offset or the queue
    // entry brought the send back a second time.
    await new Promise((r) => setTimeout(r, 3000));
    expect(sink.list({ messageId: mid(send.sendId) })).toHaveLength(1);
    // A replayed command re-publishes an outcome with the same id; the ids are what count.
    const ids = [
      ...new Set(h.outcomes.filter((o) => o.sendId === send.sendId).map((o) => o.id)),
    ].sort();
    expect(ids).toEqual(
      [
        `${send.sendId}:email:deferred:1`,
        `${send.sendId}:email:queued`,
        `${send.sendId}:email:sent`,
      ].sort(),
    );
    expect(await h.redis.redis.zcard(dueKey)).toBe(0);
  }, 240_000);
});
