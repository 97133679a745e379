// End to end against the real stack: a send command on Kafka becomes an email in the SMTP
// sink with the personalised content, the right headers and signed links; following a link
// records a click and redirects; the one-click unsubscribe stops the next marketing send.
import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeWithHeader, eventCodec, sendCodec } from '../../platform/avro.ts';
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
import { runDelivery, type DeliveryHandle } from './run.ts';
import { signWebhook } from '../providers/webhook.ts';
import { tokenOf } from '../links.ts';

let h: Harness;
let sink: SmtpSink & { dir: string };
let delivery: DeliveryHandle;

const EMAIL_EVENTS_SECRET = 'email-flow-test-email-events-secret';
const admin = (h: Harness) => ({
  authorization: `Bearer ${h.config.auth.adminToken}`,
  'content-type': 'application/json',
});

beforeAll(async () => {
  sink = await startSink();
  h = await createHarness('dlv-e2e', {
    'delivery.smtpUrls': [`smtp://127.0.0.1:${sink.port}`],
    'delivery.emailFrom': 'Example <hello@example.com>',
    'auth.emailEventsSecret': EMAIL_EVENTS_SECRET,
  });
  delivery = await runDelivery(h.config, logger, { redis: h.redis, bus: h.bus });
});

afterAll(async () => {
  await delivery?.stop();
  await h?.close();
  if (sink) await stopSink(sink);
});

async function optIn(userId: string): Promise<void> {
  const res = await fetch(`${h.baseUrl}/v1/users/${userId}/preferences`, {
    method: 'PATCH',
    headers: admin(h),
    body: JSON.stringify({
      consents: { marketing: { email: { granted: true, source: 'signup_form' } } },
    }),
  });
  expect(res.status).toBe(200);
}

describe('email flow', () => {
  it('delivers a personalised, tracked email; a click is recorded and redirected; one-click unsubscribe stops the next marketing send', async () => {
    const userId = `ada-${h.id}`;
    await optIn(userId);
    const send = welcomeSend(userId);
    await h.publishSend(send);

    const messageId = `${send.sendId.replace(/[^A-Za-z0-9._-]/g, '-')}@example.com`;
    const mail = await waitFor('the welcome email in the sink', () => sink.list({ messageId })[0]);
    expect(mail.to).toEqual([`${userId}@example.com`]);
    expect(mail.subject).toBe(`Welcome to Example, Ada-${userId}!`);
    expect(mail.html).toContain(`Ada-${userId}`);
    expect(mail.headers['list-unsubscribe-post']).toBe('List-Unsubscribe=One-Click');
    const unsubscribeUrl = /<([^>]+)>/.exec(String(mail.headers['list-unsubscribe']))![1]!;
    expect(unsubscribeUrl.startsWith(`${h.baseUrl}/t/u?t=`)).toBe(true);
    expect(mail.headers['x-lifecycle-send-id']).toBe(send.sendId);

    // Every external link is a signed click URL; the original target appears nowhere as a link.
    const hrefs = [...mail.html!.matchAll(/href="([^"]+)"/g)].map((m) => m[1]!);
    expect(hrefs.length).toBeGreaterThan(0);
    expect(hrefs.some((u) => u.startsWith('https://app.example.com'))).toBe(false);
    const click = hrefs.find((u) => u.startsWith(`${h.baseUrl}/t/c?t=`))!;
    expect(mail.html).toContain(`<img src="${h.baseUrl}/t/o.gif?t=`);

    await waitFor('queued and sent outcomes', () => {
      const s = h.outcomes.filter((o) => o.sendId === send.sendId).map((o) => o.status);
      return s.includes('queued') && s.includes('sent') ? s : undefined;
    });

    // Follow the link as a mail client would.
    const res = await fetch(click, { redirect: 'manual' });
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('https://app.example.com/start');
    const clicked = await waitFor('the click event', () =>
      h.events.find((e) => e.type === 'message_clicked' && e.properties.sendId === send.sendId),
    );
    expect(clicked).toMatchObject({
      userId,
      source: 'tracker',
      properties: { url: 'https://app.example.com/start', ruleId: 'welcome', channel: 'email' },
    });
    await waitFor('the clicked outcome', () =>
      h.outcomes.find((o) => o.sendId === send.sendId && o.status === 'clicked'),
    );

    // A tampered link is refused, never redirected.
    const token = tokenOf(click);
    const tampered = `${h.baseUrl}/t/c?t=${token.slice(0, 10)}${token[10] === 'A' ? 'B' : 'A'}${token.slice(11)}`;
    const bad = await fetch(tampered, { redirect: 'manual' });
    expect(bad.status).toBe(400);
    expect(bad.headers.get('location')).toBeNull();

    // RFC 8058 one-click unsubscribe, as a mail provider sends it.
    const unsub = await fetch(unsubscribeUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'List-Unsubscribe=One-Click',
    });
    expect(unsub.status).toBe(200);
    await waitFor('the unsubscribe event', () =>
      h.events.find((e) => e.type === 'message_unsubscribed' && e.userId === userId),
    );

    const next = welcomeSend(userId, { ruleId: 'winback' });
    await h.publishSend(next);
    const suppressed = await waitFor('the next marketing send suppressed', () =>
      h.outcomes.find((o) => o.sendId === next.sendId && o.status === 'suppressed'),
    );
    expect(suppressed.reason).toBe('opted_out:marketing:email');
    expect(sink.list({ to: `${userId}@example.com` })).toHaveLength(1);

    // Transactional mail still reaches the user (no opt-in needed, no List-Unsubscribe).
    const receipt = welcomeSend(userId, { category: 'transactional', ruleId: 'receipt' });
    await h.publishSend(receipt);
    const txMail = await waitFor(
      'the transactional email',
      () =>
        sink.list({
          messageId: `${receipt.sendId.replace(/[^A-Za-z0-9._-]/g, '-')}@example.com`,
        })[0],
    );
    expect(txMail.headers['list-unsubscribe']).toBeUndefined();
  });

  it('a click on a link with a query redirects to the full URL and records only its scheme, host and path', async () => {
    const userId = `cleo-${h.id}`;
    await optIn(userId);
    const send = welcomeSend(userId, { ruleId: 'winback', template: 'winback' });
    await h.publishSend(send);
    const mail = await waitFor(
      'the winback email',
      () => sink.list({ to: `${userId}@example.com` })[0],
    );
    expect(mail.html).not.toContain('WELCOMEBACK30');
    const click = [...mail.html!.matchAll(/href="([^"]+)"/g)]
      .map((m) => m[1]!)
      .find((u) => u.startsWith(`${h.baseUrl}/t/c?t=`))!;
    const res = await fetch(click, { redirect: 'manual' });
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('https://app.example.com/comeback?code=WELCOMEBACK30');
    const clicked = await waitFor('the click event', () =>
      h.events.find((e) => e.type === 'message_clicked' && e.properties.sendId === send.sendId),
    );
    expect(clicked.properties.url).toBe('https://app.example.com/comeback');
    const outcome = await waitFor('the clicked outcome', () =>
      h.outcomes.find((o) => o.sendId === send.sendId && o.status === 'clicked'),
    );
    expect(outcome.reason).toBe('https://app.example.com/comeback');
    const recorded = JSON.stringify([
      ...h.events.filter((e) => e.userId === userId),
      ...h.outcomes.filter((o) => o.userId === userId),
    ]);
    expect(recorded).not.toContain('WELCOMEBACK30');
  });

  it('records holdouts without sending, refuses marketing without opt-in, and delivers each sendId once when the command is replayed', async () => {
    const userId = `bob-${h.id}`;
    const noConsent = welcomeSend(userId);
    await h.publishSend(noConsent);
    expect(
      (
        await waitFor('no-opt-in suppression', () =>
          h.outcomes.find((o) => o.sendId === noConsent.sendId && o.status === 'suppressed'),
        )
      ).reason,
    ).toBe('no_opt_in:marketing:email');

    await optIn(userId);
    const holdout = welcomeSend(userId, { holdout: true });
    await h.publishSend(holdout);
    await waitFor('the holdout outcome', () =>
      h.outcomes.find((o) => o.sendId === holdout.sendId && o.status === 'holdout' && o.holdout),
    );

    const once = welcomeSend(userId);
    await h.publishSend(once);
    await h.publishSend(once);
    await h.publishSend(once);
    const id = `${once.sendId.replace(/[^A-Za-z0-9._-]/g, '-')}@example.com`;
    await waitFor('the email', () => sink.list({ messageId: id })[0]);
    await waitFor(
      'three decisions on the replayed command',
      () => h.outcomes.filter((o) => o.sendId === once.sendId && o.status === 'sent').length >= 3,
    );
    expect(sink.list({ messageId: id })).toHaveLength(1);
    expect(sink.list({ to: `${userId}@example.com` })).toHaveLength(1);
  });

  it('a hard bounce reported by the provider webhook suppresses the address', async () => {
    const userId = `eve-${h.id}`;
    await optIn(userId);
    const first = welcomeSend(userId);
    await h.publishSend(first);
    const mail = await waitFor('the email', () => sink.list({ to: `${userId}@example.com` })[0]);
    const body = JSON.stringify({
      events: [
        {
          type: 'bounce',
          bounceType: 'hard',
          messageId: `<${mail.messageId}>`,
          recipient: `${userId}@example.com`,
          reason: '550 5.1.1 user unknown',
        },
      ],
    });
    const webhook = (signature?: string) =>
      fetch(`${h.baseUrl}/v1/webhooks/email`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(signature ? { 'x-lc-signature': signature } : {}),
        },
        body,
      });
    const nowS = Math.floor(Date.now() / 1000);
    expect((await webhook()).status).toBe(401);
    // Neither the link signing secret, nor the old untimestamped form, nor a replay from 10 minutes ago.
    expect((await webhook(signWebhook(h.config.auth.signingSecret, body, nowS))).status).toBe(401);
    expect(
      (
        await webhook(
          `sha256=${createHmac('sha256', EMAIL_EVENTS_SECRET).update(body).digest('hex')}`,
        )
      ).status,
    ).toBe(401);
    expect((await webhook(signWebhook(EMAIL_EVENTS_SECRET, body, nowS - 600))).status).toBe(401);
    expect(
      h.events.find((e) => e.type === 'message_bounced' && e.userId === userId),
    ).toBeUndefined();
    const res = await webhook(signWebhook(EMAIL_EVENTS_SECRET, body, nowS));
    expect(await res.json()).toEqual({ applied: 1, unknown: [] });
    await waitFor('the bounce event', () =>
      h.events.find((e) => e.type === 'message_bounced' && e.userId === userId),
    );

    const tx = welcomeSend(userId, { category: 'transactional' });
    await h.publishSend(tx);
    expect(
      (
        await waitFor('suppressed transactional send', () =>
          h.outcomes.find((o) => o.sendId === tx.sendId && o.status === 'suppressed'),
        )
      ).reason,
    ).toBe('hard_bounce');
    expect(sink.list({ to: `${userId}@example.com` })).toHaveLength(1);
  });

  it('a user_deleted event suppresses every later send of that user, transactional included', async () => {
    const userId = `gone-${h.id}`;
    const event = {
      id: `del-${userId}`,
      userId,
      type: 'user_deleted',
      ts: Date.now(),
      receivedAt: Date.now(),
      source: 'cdc:test',
      properties: {},
    };
    await h.bus
      .publisher()
      .publish(h.topics.events, [{ key: userId, ...encodeWithHeader(eventCodec, event) }]);
    await waitFor(
      'the deletion marker',
      async () =>
        (await h.redis.redis.hget(
          `${h.config.redis.keyPrefix}{${userId}}:dlv:suppress`,
          'user',
        )) !== null,
    );
    const tx = welcomeSend(userId, { category: 'transactional' });
    await h.publishSend(tx);
    expect(
      (
        await waitFor('suppressed', () =>
          h.outcomes.find((o) => o.sendId === tx.sendId && o.status === 'suppressed'),
        )
      ).reason,
    ).toBe('user_deleted');
    expect(sink.list({ to: `${userId}@example.com` })).toHaveLength(0);
  });

  it('a send that cannot be rendered fails into the DLQ with the reason, and an undecodable command too', async () => {
    const userId = `dlq-${h.id}`;
    const bad = welcomeSend(userId, { category: 'transactional', template: 'no_such_template' });
    await h.publishSend(bad);
    const failed = await waitFor('the failed outcome', () =>
      h.outcomes.find((o) => o.sendId === bad.sendId && o.status === 'failed'),
    );
    expect(failed.reason).toMatch(/^render: /);
    const record = await waitFor('the DLQ record', () => h.dlq.find((r) => r.key === userId));
    expect(record.headers['lc-dlq-reason']).toMatch(/^email: render: /);
    expect(record.headers['lc-dlq-source-topic']).toBe(h.topics.sends);
    expect(sendCodec.decode(record.value!)).toEqual(bad);

    await h.bus
      .publisher()
      .publish(h.topics.sends, [{ key: `garbage-${h.id}`, value: Buffer.from('not avro') }]);
    const garbage = await waitFor('the undecodable command in the DLQ', () =>
      h.dlq.find((r) => r.key === `garbage-${h.id}`),
    );
    expect(garbage.headers['lc-dlq-reason']).toMatch(/^undecodable send command/);
  });
});
