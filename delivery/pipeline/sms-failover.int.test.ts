// SMS failover through the whole delivery worker (Kafka, Redis claims and delay queue) to two
// Twilio-shaped APIs on 127.0.0.1 (test/support/provider-servers.ts): the first answers 503,
// then resets connections (before it stored anything, and after it did); every message reaches
// a handset exactly once per sendId, across both providers. The links of those messages are
// short links on the product's domain that record a click and expire.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SendCommand } from '../../platform/contracts.ts';
import {
  createHarness,
  logger,
  waitFor,
  type Harness,
} from '../../test/support/delivery-harness.ts';
import { startSmsServer, type SmsServer } from '../../test/support/provider-servers.ts';
import { runDelivery, type DeliveryHandle } from './run.ts';

const SHORT_LINK_TTL_S = 5;

function paymentFailedSms(userId: string, phone: string): SendCommand {
  return {
    sendId: `payment-failed:${userId}:${randomUUID().slice(0, 8)}`,
    ruleId: 'payment-failed',
    userId,
    category: 'transactional',
    priority: 900,
    template: 'payment_failed',
    channels: ['sms'],
    variant: null,
    holdout: false,
    triggeredBy: { eventId: `evt-${userId}`, eventType: 'payment_failed' },
    createdAt: Date.now(),
    expiresAt: null,
    data: {
      user: { phone, locale: 'en', timezone: 'UTC' },
      event: { type: 'payment_failed', properties: { amount: 49, currency: 'EUR' } },
    },
  };
}

describe('SMS failover', () => {
  let h: Harness;
  let delivery: DeliveryHandle;
  let first: SmsServer;
  let second: SmsServer;

  beforeAll(async () => {
    first = await startSmsServer({ accountSid: 'AC1', authToken: 'token-1' });
    second = await startSmsServer({ accountSid: 'AC2', authToken: 'token-2' });
    h = await createHarness('dlv-sms-failover', {
      'delivery.smsApiUrls': [first.url, second.url],
      'delivery.smsAccountSids': ['AC1', 'AC2'],
      'delivery.smsAuthTokens': ['token-1', 'token-2'],
      'delivery.smsSenders': ['+15005550006', '+15005550010'],
      'delivery.breakerThreshold': 3,
      'delivery.breakerCooldownMs': 300,
      'delivery.maxAttempts': 30,
      'delivery.shortLinkTtlS': SHORT_LINK_TTL_S,
    });
    delivery = await runDelivery(h.config, logger, { redis: h.redis, bus: h.bus });
  }, 90_000);

  afterAll(async () => {
    await delivery?.stop();
    await h?.close();
    await first?.close();
    await second?.close();
  });

  /** Every SMS that reached a handset, by sendId (the idempotency key), across both providers. */
  const copies = (sendId: string) =>
    [...first.messages, ...second.messages].filter((m) => m.idempotencyKey === sendId);
  const sentOutcome = (sendId: string) =>
    h.outcomes.find((o) => o.sendId === sendId && o.status === 'sent');
  /**
   * The first provider healthy again, with its breaker closed by a message it sent: sends that
   * find the breaker open go straight to the second provider (they never reached the first), so
   * each scenario starts from a closed one.
   */
  const healFirst = async (label: string) => {
    first.mode = 'ok';
    for (let i = 0; ; i++) {
      // An open breaker sends the probe to the second provider; after its cooldown the next
      // probe is the trial that closes it.
      const probe = paymentFailedSms(`sms-heal-${label}-${i}-${h.id}`, '+15005559999');
      await h.publishSend(probe);
      const sent = await waitFor('the probe sent', () => sentOutcome(probe.sendId));
      if (sent.provider === 'sms-1') return;
      if (i >= 10) throw new Error('the first SMS provider never took a message again');
      await new Promise((r) => setTimeout(r, 400));
    }
  };

  it('fails over from a provider answering 503 to the second, once per message, with a short link that records a click and redirects', async () => {
    first.mode = 'unavailable';
    const sends = Array.from({ length: 4 }, (_, i) =>
      paymentFailedSms(`sms-503-${i}-${h.id}`, `+1500555100${i}`),
    );
    for (const s of sends) await h.publishSend(s);
    for (const s of sends) await waitFor(`${s.sendId} sent`, () => sentOutcome(s.sendId));
    for (const s of sends) {
      expect(copies(s.sendId)).toHaveLength(1);
      expect(sentOutcome(s.sendId)!.provider).toBe('sms-2');
    }
    expect(first.messages).toHaveLength(0);
    const sms = second.messages.find((m) => m.idempotencyKey === sends[0]!.sendId)!;
    expect(sms.from).toBe('+15005550010');

    // The template's link became a short link on the product's domain.
    const short = new RegExp(`${h.baseUrl.replace(/[.]/g, '\\.')}/s/([0-9A-Za-z]{10})\\b`);
    const m = short.exec(sms.body);
    expect(m, sms.body).not.toBeNull();
    expect(sms.body).not.toContain('https://app.example.com/billing');
    const res = await fetch(m![0], { redirect: 'manual' });
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('https://app.example.com/billing');
    const click = await waitFor('the click event', () =>
      h.events.find(
        (e) => e.type === 'message_clicked' && e.properties.sendId === sends[0]!.sendId,
      ),
    );
    expect(click.properties).toMatchObject({
      channel: 'sms',
      url: 'https://app.example.com/billing',
    });

    // Nobody else can make or bend a short link: unknown codes and anything in the request are refused.
    const unknown = await fetch(`${h.baseUrl}/s/AAAAAAAAAA?t=https://evil.example`, {
      redirect: 'manual',
    });
    expect(unknown.status).toBe(404);
    expect(await unknown.text()).toContain('does not exist or has expired');

    // After LC_SHORT_LINK_TTL the link is gone.
    await new Promise((r) => setTimeout(r, SHORT_LINK_TTL_S * 1000 + 500));
    const expired = await fetch(m![0], { redirect: 'manual' });
    expect(expired.status).toBe(404);
  }, 60_000);

  it('after a reset before the first provider stored anything, asks it again and fails over only once it answers: one copy', async () => {
    await healFirst('before');
    first.mode = 'reset-before';
    const sends = Array.from({ length: 3 }, (_, i) =>
      paymentFailedSms(`sms-reset-${i}-${h.id}`, `+1500555200${i}`),
    );
    for (const s of sends) await h.publishSend(s);
    await waitFor('every send parked after the reset', () =>
      sends.every((s) =>
        h.outcomes.some(
          (o) => o.sendId === s.sendId && o.status === 'deferred' && /sms-1/.test(o.reason ?? ''),
        ),
      ),
    );
    // While the first provider stays silent, the second is not asked: it might be a second copy.
    expect(sends.flatMap((s) => copies(s.sendId))).toHaveLength(0);
    first.mode = 'unavailable';
    for (const s of sends) await waitFor(`${s.sendId} sent`, () => sentOutcome(s.sendId));
    for (const s of sends) {
      expect(copies(s.sendId)).toHaveLength(1);
      expect(sentOutcome(s.sendId)!.provider).toBe('sms-2');
    }
  }, 60_000);

  it('after a reset once the first provider stored the message, the retry to it with the same idempotency key settles it there: one copy, none at the second', async () => {
    await healFirst('after');
    first.mode = 'reset-after';
    const sends = Array.from({ length: 3 }, (_, i) =>
      paymentFailedSms(`sms-stored-${i}-${h.id}`, `+1500555300${i}`),
    );
    for (const s of sends) await h.publishSend(s);
    await waitFor('every message stored by the first provider', () =>
      sends.every((s) => first.messages.some((m) => m.idempotencyKey === s.sendId)),
    );
    await waitFor('every send parked after the reset', () =>
      sends.every((s) => h.outcomes.some((o) => o.sendId === s.sendId && o.status === 'deferred')),
    );
    first.mode = 'ok';
    for (const s of sends) await waitFor(`${s.sendId} sent`, () => sentOutcome(s.sendId));
    for (const s of sends) {
      expect(copies(s.sendId)).toHaveLength(1);
      expect(sentOutcome(s.sendId)!.provider).toBe('sms-1');
    }
    expect(second.messages.filter((m) => sends.some((s) => s.sendId === m.idempotencyKey))).toEqual(
      [],
    );
  }, 60_000);
});
