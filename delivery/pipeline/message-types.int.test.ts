// Message types end to end on the real stack: a new signup who ticked "send me tips" gets
// tips and product news by email; from the preference page their emails link to, they switch
// tips off and keep product news; the delivery worker (Kafka + Redis) then sends the product
// news and suppresses the tips, recording why on the deliveries topic.
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
import { runDelivery, type DeliveryHandle } from './run.ts';

let h: Harness;
let sink: SmtpSink & { dir: string };
let delivery: DeliveryHandle;

beforeAll(async () => {
  sink = await startSink();
  h = await createHarness('dlv-types', {
    'delivery.smtpUrls': [`smtp://127.0.0.1:${sink.port}`],
    'delivery.emailFrom': 'Example <hello@example.com>',
  });
  delivery = await runDelivery(h.config, logger, { redis: h.redis, bus: h.bus });
});

afterAll(async () => {
  await delivery?.stop();
  await h?.close();
  if (sink) await stopSink(sink);
});

const messageIdOf = (sendId: string) => `${sendId.replace(/[^A-Za-z0-9._-]/g, '-')}@example.com`;

/** The form a browser submits from the page: hidden fields, and every box left checked. */
function formOf(html: string, change: Record<string, boolean>): URLSearchParams {
  const form = new URLSearchParams();
  for (const m of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g))
    form.set(m[1]!, m[2]!.replaceAll('&amp;', '&'));
  for (const m of html.matchAll(/<input type="checkbox" name="([^"]+)"[^>]*?( checked)?>/g)) {
    const name = m[1]!;
    if (change[name] ?? m[2] !== undefined) form.set(name, 'on');
  }
  return form;
}

describe('message types', () => {
  it('a signup who ticked tips switches tips off on the page their email links to and keeps product news', async () => {
    const userId = `tia-${h.id}`;
    // The product's signup form: marketing by email, and the "send me tips" box ticked.
    const signup = await fetch(`${h.baseUrl}/v1/users/${userId}/preferences`, {
      method: 'PATCH',
      headers: {
        authorization: `Bearer ${h.config.auth.adminToken}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({
        consents: { marketing: { email: { granted: true, source: 'signup_form' } } },
        types: { tips: { email: { granted: true, source: 'signup_form' } } },
      }),
    });
    expect(signup.status).toBe(200);

    const firstTip = welcomeSend(userId, { ruleId: 'tips-day1', messageType: 'tips' });
    await h.publishSend(firstTip);
    const tipMail = await waitFor(
      'the first tip',
      () => sink.list({ messageId: messageIdOf(firstTip.sendId) })[0],
    );

    // The footer's preference link opens the page with the types the user may switch.
    const footer = [...tipMail.html!.matchAll(/href="([^"]+)"/g)]
      // As a mail client reads the attribute (handlebars writes = as &#x3D;).
      .map((m) => m[1]!.replaceAll('&#x3D;', '=').replaceAll('&amp;', '&'))
      .find((u) => u.startsWith(`${h.baseUrl}/p?t=`));
    expect(footer).toBeDefined();
    const page = await fetch(footer!);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('Tips and tutorials');
    expect(html).toMatch(/name="t:tips:email"[^>]* checked/);
    expect(html).toMatch(/name="t:product_news:email"[^>]* checked/);
    expect(html).not.toContain('t:billing:');

    const saved = await fetch(footer!, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: formOf(html, { 't:tips:email': false }).toString(),
    });
    expect(saved.status).toBe(200);
    const after = await saved.text();
    expect(after).toContain('Your preferences were saved.');
    expect(after).not.toMatch(/name="t:tips:email"[^>]* checked/);
    expect(after).toMatch(/name="t:product_news:email"[^>]* checked/);

    const news = welcomeSend(userId, { ruleId: 'product-news', messageType: 'product_news' });
    const tip = welcomeSend(userId, { ruleId: 'tips-day7', messageType: 'tips' });
    await h.publishSend(tip);
    await h.publishSend(news);
    await waitFor(
      'the product news email',
      () => sink.list({ messageId: messageIdOf(news.sendId) })[0],
    );
    const suppressed = await waitFor('the tip suppressed', () =>
      h.outcomes.find((o) => o.sendId === tip.sendId && o.status === 'suppressed'),
    );
    expect(suppressed).toMatchObject({
      userId,
      ruleId: 'tips-day7',
      channel: 'email',
      reason: 'message_type_off:tips:email',
    });
    expect(h.outcomes.some((o) => o.sendId === tip.sendId && o.status === 'sent')).toBe(false);
    expect(sink.list({ messageId: messageIdOf(tip.sendId) })).toHaveLength(0);
    // Two emails in all: the first tip and the product news.
    expect(sink.list({ to: `${userId}@example.com` })).toHaveLength(2);

    // The history says who switched what, when, through which door.
    const prefs = (await (
      await fetch(`${h.baseUrl}/v1/users/${userId}/preferences`, {
        headers: { authorization: `Bearer ${h.config.auth.adminToken}` },
      })
    ).json()) as {
      types: Record<string, Record<string, { granted: boolean; source: string }>>;
      history: { kind: string; messageType?: string; granted?: boolean; via?: string }[];
    };
    expect(prefs.types.tips!.email).toMatchObject({ granted: false, source: 'preference_page' });
    expect(
      prefs.history.filter((e) => e.kind === 'message_type').map((e) => [e.granted, e.via]),
    ).toEqual([
      [false, 'preference_page'],
      [true, 'admin_api'],
    ]);
  });

  it('an opt-in type goes to nobody who did not opt in to it, even with marketing consent; billing goes to everyone', async () => {
    const userId = `noa-${h.id}`;
    const res = await fetch(`${h.baseUrl}/v1/users/${userId}/preferences`, {
      method: 'PATCH',
      headers: {
        authorization: `Bearer ${h.config.auth.adminToken}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({
        consents: { marketing: { email: { granted: true, source: 'signup_form' } } },
      }),
    });
    expect(res.status).toBe(200);
    const tip = welcomeSend(userId, { ruleId: 'tips-day1', messageType: 'tips' });
    const bill = welcomeSend(userId, {
      ruleId: 'payment-failed',
      category: 'transactional',
      messageType: 'billing',
    });
    await h.publishSend(tip);
    await h.publishSend(bill);
    await waitFor('the billing email', () => sink.list({ messageId: messageIdOf(bill.sendId) })[0]);
    const suppressed = await waitFor('the tip suppressed', () =>
      h.outcomes.find((o) => o.sendId === tip.sendId && o.status === 'suppressed'),
    );
    expect(suppressed.reason).toBe('message_type_no_opt_in:tips:email');
  });
});
