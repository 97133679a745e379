// Quiet hours and frequency caps on the real stack: marketing sends inside quiet hours are
// parked in the durable delay queue until the window ends (never dropped), a capped channel
// gives its slot to the higher-priority send and records the other as suppressed with the
// reason, and transactional sends pass both. The email cap comes from LC_CAPS (per channel).
// Rather than waiting for the real end of the window, the test gives delivery a clock it
// moves past the end of quiet hours, after checking that the sends were parked exactly
// until then.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SmtpSink } from '../../devtools/smtp-sink.ts';
import {
  createHarness,
  logger,
  startSink,
  stopSink,
  waitFor,
  welcomeSend,
  type Harness,
} from '../../test/support/delivery-harness.ts';
import { runDelivery, type DeliveryHandle } from '../pipeline/run.ts';
import { parseQuietHours, quietHoursEnd } from './quiet-hours.ts';

let h: Harness;
let sink: SmtpSink & { dir: string };
let delivery: DeliveryHandle;
/** The test's clock: real time plus an offset the test moves forward to "after the night". */
let offset = 0;
const now = () => Date.now() + offset;

const hhmm = (ts: number) => new Date(ts).toISOString().slice(11, 16);
// A window around now, in UTC (the user's timezone below).
const quiet = `${hhmm(Date.now() - 3600_000)}-${hhmm(Date.now() + 3600_000)}`;
const mid = (sendId: string) => `${sendId.replace(/[^A-Za-z0-9._-]/g, '-')}@example.com`;

beforeAll(async () => {
  sink = await startSink();
  h = await createHarness('dlv-quiet', {
    'delivery.smtpUrls': [`smtp://127.0.0.1:${sink.port}`],
    'delivery.quietHours': quiet,
    // Email's own cap (LC_CAPS) is what limits it here, not the default of 3 a day.
    'delivery.channelCaps': 'email:1/5,sms:2/6',
    'delivery.defaultTimezone': 'UTC',
    // Polled by hand below, so every step is observable.
    'delivery.delayPollMs': 3_600_000,
  });
  delivery = await runDelivery(h.config, logger, { redis: h.redis, bus: h.bus, now });
});

afterAll(async () => {
  await delivery?.stop();
  await h?.close();
  if (sink) await stopSink(sink);
});

describe('quiet hours and frequency caps', () => {
  it('defers to the end of quiet hours, lets the higher priority win the cap, and sends transactional at once', async () => {
    const userId = `q-${h.id}`;
    const res = await fetch(`${h.baseUrl}/v1/users/${userId}/preferences`, {
      method: 'PATCH',
      headers: {
        authorization: `Bearer ${h.config.auth.adminToken}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({
        consents: { marketing: { email: { granted: true, source: 'test' } } },
      }),
    });
    expect(res.status).toBe(200);
    const user = {
      email: `${userId}@example.com`,
      firstName: 'Quinn',
      plan: 'trial',
      locale: 'en',
      timezone: 'UTC',
    };
    const data = { user, event: { type: 'x', properties: {} }, rule: { id: 'x' } };
    const low = welcomeSend(userId, { ruleId: 'low', priority: 10, data });
    const high = welcomeSend(userId, { ruleId: 'high', priority: 90, data });
    const lower = welcomeSend(userId, { ruleId: 'lower', priority: 5, data });
    const receipt = welcomeSend(userId, {
      ruleId: 'receipt',
      category: 'transactional',
      priority: 0,
      data,
    });

    await h.publishSend(low);
    const deferred = await waitFor('low parked for quiet hours', () =>
      h.outcomes.find((o) => o.sendId === low.sendId && o.status === 'deferred'),
    );
    const end = quietHoursEnd(Date.now(), 'UTC', parseQuietHours(quiet)!)!;
    expect(deferred.reason).toBe(`quiet_hours until ${new Date(end).toISOString()} (UTC)`);
    const dueKey = `${h.config.redis.keyPrefix}{dlv-delay}:due`;
    expect(Number(await h.redis.redis.zscore(dueKey, `email|${low.sendId}`))).toBe(end);

    await h.publishSend(high);
    const preempted = await waitFor('low preempted by high', () =>
      h.outcomes.find((o) => o.sendId === low.sendId && o.status === 'suppressed'),
    );
    expect(preempted.reason).toBe('frequency_cap:email:preempted_by:high');
    await waitFor('high parked', () =>
      h.outcomes.find((o) => o.sendId === high.sendId && o.status === 'deferred'),
    );

    await h.publishSend(lower);
    expect(
      (
        await waitFor('lower capped', () =>
          h.outcomes.find((o) => o.sendId === lower.sendId && o.status === 'suppressed'),
        )
      ).reason,
    ).toBe('frequency_cap:email:day');

    await h.publishSend(receipt);
    await waitFor(
      'the receipt sent during quiet hours',
      () => sink.list({ messageId: mid(receipt.sendId) })[0],
    );

    // The night is over: the parked entries fall due.
    offset = end - Date.now() + 1000;
    expect(await delivery.pollDelayQueue()).toBe(2);
    await waitFor(
      'high sent after quiet hours',
      () => sink.list({ messageId: mid(high.sendId) })[0],
    );
    await waitFor('sent outcome for high', () =>
      h.outcomes.find((o) => o.sendId === high.sendId && o.status === 'sent'),
    );
    expect(sink.list({ messageId: mid(low.sendId) })).toHaveLength(0);
    expect(sink.list({ messageId: mid(lower.sendId) })).toHaveLength(0);
    expect(sink.list({ to: user.email })).toHaveLength(2);
    expect(await h.redis.redis.zcard(dueKey)).toBe(0);
    // The rolling window is the user's email window: the one slot is high's; the
    // transactional receipt took none.
    expect(await h.redis.redis.zrange(h.redis.keys.user(userId, 'dlv:cap:email'), 0, -1)).toEqual([
      high.sendId,
    ]);
  });
});
