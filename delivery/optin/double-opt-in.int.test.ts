// Double opt-in on the real stack: a signup (`identify` with `marketing_opt_in`) on Kafka gets
// the confirmation email in the SMTP sink and no marketing; opening the link changes nothing;
// its POST grants the consent, and marketing arrives. An unconfirmed request gets its one
// reminder after LC_OPT_IN_REMINDER_AFTER, then expires: its link confirms nothing.
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

let h: Harness;
let sink: SmtpSink & { dir: string };
let delivery: DeliveryHandle;

const REMIND_AFTER_S = 4;
const EXPIRE_AFTER_S = 9;

beforeAll(async () => {
  sink = await startSink();
  h = await createHarness('dlv-optin', {
    'delivery.smtpUrls': [`smtp://127.0.0.1:${sink.port}`],
    'delivery.doubleOptIn': true,
    'delivery.optInReminderAfter': `${REMIND_AFTER_S}s`,
    'delivery.optInExpiresAfter': `${EXPIRE_AFTER_S}s`,
  });
  delivery = await runDelivery(h.config, logger, { redis: h.redis, bus: h.bus });
});

afterAll(async () => {
  await delivery?.stop();
  await h?.close();
  if (sink) await stopSink(sink);
});

const admin = () => ({ authorization: `Bearer ${h.config.auth.adminToken}` });

/** The signup as the product's backend reports it: the address and the ticked box. */
const signup = (userId: string) =>
  h.publishSignup(userId, { firstName: 'Ada', locale: 'en', marketing_opt_in: true });

const confirmLink = (html: string) => {
  const href = [...html.matchAll(/href="([^"]+)"/g)]
    .map((m) => m[1]!.replace(/&#x3D;/g, '=').replace(/&amp;/g, '&'))
    .find((u) => u.startsWith(`${h.baseUrl}/c?t=`));
  if (!href) throw new Error(`no confirmation link in ${html}`);
  return href!;
};

async function marketingOutcome(userId: string) {
  const send = welcomeSend(userId);
  await h.publishSend(send);
  return waitFor(`the outcome of ${send.sendId}`, () =>
    h.outcomes.find(
      (o) => o.sendId === send.sendId && (o.status === 'sent' || o.status === 'suppressed'),
    ),
  );
}

describe('double opt-in', () => {
  it('a signup with marketing opt-in gets the confirmation email; no marketing until the link is posted, then marketing arrives', async () => {
    const userId = `ada-${h.id}`;
    const email = await signup(userId);
    const mail = await waitFor('the confirmation email', () => sink.list({ to: email })[0]);
    expect(mail.subject).toBe('Please confirm your subscription');
    expect(mail.headers['list-unsubscribe']).toBeUndefined();
    const link = confirmLink(mail.html!);

    expect(await marketingOutcome(userId)).toMatchObject({
      status: 'suppressed',
      reason: 'no_opt_in:marketing:email',
    });

    // A mail scanner opening the link subscribes nobody.
    const page = await fetch(link);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('Confirm your subscription');
    expect(await marketingOutcome(userId)).toMatchObject({ status: 'suppressed' });

    const post = await fetch(link, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        'user-agent': 'IntegrationMail/1.0',
      },
      body: 'confirm=1',
    });
    expect(post.status).toBe(200);
    expect(await post.text()).toContain('You confirmed');

    const sent = await marketingOutcome(userId);
    expect(sent.status).toBe('sent');
    expect(sink.list({ to: email }).map((m) => m.subject)).toContain(
      `Welcome to Example, Ada-${userId}!`,
    );

    const exported = await fetch(`${h.baseUrl}/v1/users/${userId}/consent-export`, {
      headers: admin(),
    });
    expect(exported.status).toBe(200);
    const out = (await exported.json()) as {
      records: { source: string; confirmation?: { ip: string; userAgent: string } }[];
      requests: { status: string; source: string; via: string }[];
    };
    expect(out.requests).toEqual([
      expect.objectContaining({ status: 'confirmed', source: 'identify', via: 'identify' }),
    ]);
    expect(out.records).toEqual([
      expect.objectContaining({
        source: 'double_opt_in',
        confirmation: expect.objectContaining({
          ip: '127.0.0.1',
          userAgent: 'IntegrationMail/1.0',
        }),
      }),
    ]);
    // Once: the reminder of a confirmed request is not sent, and a replayed signup sends nothing.
    await signup(userId);
    await new Promise((r) => setTimeout(r, (REMIND_AFTER_S + 1) * 1000));
    await delivery.pollDelayQueue();
    expect(
      sink.list({ to: email }).filter((m) => m.subject?.includes('confirm your subscription')),
    ).toHaveLength(1);
  }, 60_000);

  it('an unconfirmed request gets one reminder, then expires: its link confirms nothing', async () => {
    const userId = `bob-${h.id}`;
    const email = await signup(userId);
    const first = await waitFor('the confirmation email', () => sink.list({ to: email })[0]);
    const startedAt = Date.now();
    const reminder = await waitFor('the reminder', () =>
      sink.list({ to: email }).find((m) => m.subject?.startsWith('Reminder:')),
    );
    expect(Date.now() - startedAt).toBeGreaterThan((REMIND_AFTER_S - 2) * 1000);
    expect(confirmLink(reminder.html!)).toBe(confirmLink(first.html!));

    await new Promise((r) => setTimeout(r, EXPIRE_AFTER_S * 1000));
    const late = await fetch(confirmLink(first.html!), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'confirm=1',
    });
    expect(late.status).toBe(410);
    expect(await marketingOutcome(userId)).toMatchObject({ status: 'suppressed' });
    const exported = await fetch(`${h.baseUrl}/v1/users/${userId}/consent-export`, {
      headers: admin(),
    });
    const out = (await exported.json()) as { records: unknown[]; requests: { status: string }[] };
    expect(out.records).toEqual([]);
    expect(out.requests.map((r) => r.status)).toEqual(['expired']);
    expect(sink.list({ to: email })).toHaveLength(2);
  }, 60_000);
});
