// SMTP down for a while: the breaker opens, sends are parked for retries in the durable
// delay queue (a restart of delivery loses none), a second relay takes over when there is
// one, and when the relay is back every email arrives once.
import { mkdtemp, rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSmtpSink, type SmtpSink } from '../../devtools/smtp-sink.ts';
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
import { freePort } from '../../test/support/ports.ts';

const marketingOptIn = async (h: Harness, userId: string) => {
  const res = await fetch(`${h.baseUrl}/v1/users/${userId}/preferences`, {
    method: 'PATCH',
    headers: {
      authorization: `Bearer ${h.config.auth.adminToken}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify({ consents: { marketing: { email: { granted: true, source: 'test' } } } }),
  });
  expect(res.status).toBe(200);
};

const mid = (sendId: string) => `${sendId.replace(/[^A-Za-z0-9._-]/g, '-')}@example.com`;

describe('SMTP outage', () => {
  let h: Harness;
  const sinks: SmtpSink[] = [];
  const handles: DeliveryHandle[] = [];
  let downPort = 0;
  const dirs: string[] = [];

  beforeAll(async () => {
    downPort = await freePort();
  });

  afterAll(async () => {
    for (const d of handles) await d.stop().catch(() => {});
    await h?.close();
    for (const s of sinks) await s.stop().catch(() => {});
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('opens the breaker, keeps the sends parked across a delivery restart, and delivers each once when SMTP is back', async () => {
    h = await createHarness('dlv-outage', {
      'delivery.smtpUrls': [`smtp://127.0.0.1:${downPort}`],
      'delivery.breakerThreshold': 2,
      'delivery.breakerCooldownMs': 400,
      'delivery.retryBaseMs': 200,
      'delivery.retryMaxMs': 1500,
      'delivery.maxAttempts': 50,
    });
    const first = await runDelivery(h.config, logger, { redis: h.redis, bus: h.bus });
    handles.push(first);
    const sends = Array.from({ length: 6 }, (_, i) => welcomeSend(`out-${i}-${h.id}`));
    for (const s of sends) await marketingOptIn(h, s.userId);
    for (const s of sends) await h.publishSend(s);

    // Every send fails, is parked for a retry, and the breaker opens.
    await waitFor('every send parked for a retry', () =>
      sends.every((s) =>
        h.outcomes.some(
          (o) => o.sendId === s.sendId && o.status === 'deferred' && /retry/.test(o.reason ?? ''),
        ),
      ),
    );
    const breakers = (first.health().details as { breakers: Record<string, string> }).breakers;
    expect(['open', 'half_open']).toContain(breakers['smtp-1']);
    await waitFor('circuit-open retries', () =>
      h.outcomes.some((o) => /circuit open/.test(o.reason ?? '')),
    );

    // Delivery restarts while the relay is still down: the parked retries live in Redis.
    await first.stop();
    await new Promise((r) => setTimeout(r, 500));
    const sinkDir = await mkdtemp('/tmp/lc-dlv-outage-');
    dirs.push(sinkDir);
    const sink = createSmtpSink({ port: downPort, dir: sinkDir });
    await sink.start();
    sinks.push(sink);
    const second = await runDelivery(h.config, logger, { redis: h.redis, bus: h.bus });
    handles.push(second);

    await waitFor(
      'every email after the outage',
      () => sends.every((s) => sink.list({ messageId: mid(s.sendId) }).length > 0),
      60_000,
    );
    await waitFor('sent outcomes', () =>
      sends.every((s) => h.outcomes.some((o) => o.sendId === s.sendId && o.status === 'sent')),
    );
    await new Promise((r) => setTimeout(r, 1500));
    for (const s of sends) expect(sink.list({ messageId: mid(s.sendId) })).toHaveLength(1);
    expect(h.outcomes.filter((o) => o.status === 'failed')).toEqual([]);
    await second.stop();
    handles.length = 0;
    await h.close();
  });

  it('fails over to the second relay while the first is down', async () => {
    const backup = await startSink();
    sinks.push(backup);
    h = await createHarness('dlv-failover', {
      'delivery.smtpUrls': [`smtp://127.0.0.1:${downPort + 0}`, `smtp://127.0.0.1:${backup.port}`],
      'delivery.breakerThreshold': 2,
      'delivery.breakerCooldownMs': 60_000,
    });
    // The first relay is down again for this test.
    for (const s of sinks.slice(0, 1)) await s.stop();
    const d = await runDelivery(h.config, logger, { redis: h.redis, bus: h.bus });
    handles.push(d);
    const sends = Array.from({ length: 5 }, (_, i) => welcomeSend(`fo-${i}-${h.id}`));
    for (const s of sends) await marketingOptIn(h, s.userId);
    for (const s of sends) await h.publishSend(s);
    await waitFor('every email through the backup relay', () =>
      sends.every((s) => backup.list({ messageId: mid(s.sendId) }).length === 1),
    );
    await waitFor('sent outcomes naming smtp-2', () =>
      sends.every((s) =>
        h.outcomes.some(
          (o) => o.sendId === s.sendId && o.status === 'sent' && o.provider === 'smtp-2',
        ),
      ),
    );
    expect((d.health().details as { breakers: Record<string, string> }).breakers['smtp-1']).toBe(
      'open',
    );
    expect(h.outcomes.filter((o) => o.status === 'deferred' || o.status === 'failed')).toEqual([]);
    await stopSink(backup);
    sinks.pop();
  });
});
