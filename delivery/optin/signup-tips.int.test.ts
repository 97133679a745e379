// The consent story of a signup, end to end on the real stack (Kafka, Redis, the delivery worker,
// the SMTP sink): a new user ticks "send me tips" at signup (the backend reports the marketing
// opt-in as an `identify` trait and the tips choice through the preference API). They get the
// confirmation email and no tips; once they confirm, tips arrive; they switch tips off on the
// preference page the emails link to, keep product news, and from then on get product news
// and no tips, each suppression recorded with its reason.
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

beforeAll(async () => {
  sink = await startSink();
  h = await createHarness('dlv-tips', {
    'delivery.smtpUrls': [`smtp://127.0.0.1:${sink.port}`],
    'delivery.doubleOptIn': true,
  });
  delivery = await runDelivery(h.config, logger, { redis: h.redis, bus: h.bus });
});

afterAll(async () => {
  await delivery?.stop();
  await h?.close();
  if (sink) await stopSink(sink);
});

const admin = () => ({
  authorization: `Bearer ${h.config.auth.adminToken}`,
  'content-type': 'application/json',
});
/** `&#x3D;` and `&amp;` as a mail client reads them in an href. */
const hrefs = (html: string) =>
  [...html.matchAll(/href="([^"]+)"/g)].map((m) =>
    m[1]!.replace(/&#x3D;/g, '=').replace(/&amp;/g, '&'),
  );

/** A marketing email of one message type; resolves with its outcome. */
async function send(userId: string, messageType: 'tips' | 'product_news') {
  const cmd = welcomeSend(userId, { messageType, ruleId: `${messageType}-rule` });
  await h.publishSend(cmd);
  return waitFor(`the outcome of ${cmd.sendId}`, () =>
    h.outcomes.find(
      (o) => o.sendId === cmd.sendId && (o.status === 'sent' || o.status === 'suppressed'),
    ),
  );
}

describe('a signup who ticks "send me tips"', () => {
  it('gets a confirmation, tips only after confirming, and can switch tips off but keep product news', async () => {
    const userId = `tia-${h.id}`;
    const email = await h.publishSignup(userId, {
      firstName: 'Tia',
      locale: 'en',
      marketing_opt_in: true,
    });
    const tipsChoice = await fetch(`${h.baseUrl}/v1/users/${userId}/preferences`, {
      method: 'PATCH',
      headers: admin(),
      body: JSON.stringify({
        types: { tips: { email: { granted: true, source: 'signup_form' } } },
      }),
    });
    expect(tipsChoice.status, await tipsChoice.clone().text()).toBe(200);

    const confirmation = await waitFor('the confirmation email', () => sink.list({ to: email })[0]);
    expect(confirmation.subject).toBe('Please confirm your subscription');
    // Ticked, not confirmed: no tips.
    expect(await send(userId, 'tips')).toMatchObject({
      status: 'suppressed',
      reason: 'no_opt_in:marketing:email',
    });

    const link = hrefs(confirmation.html!).find((u) => u.startsWith(`${h.baseUrl}/c?t=`))!;
    const confirmed = await fetch(link, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'confirm=1',
    });
    expect(confirmed.status).toBe(200);
    expect(await send(userId, 'tips')).toMatchObject({ status: 'sent' });
    expect(await send(userId, 'product_news')).toMatchObject({ status: 'sent' });

    // The preference page every email links to: tips off, product news left on.
    const tipsMail = sink.list({ to: email }).find((m) => m.subject !== confirmation.subject)!;
    const pageUrl = hrefs(tipsMail.html!).find((u) => u.startsWith(`${h.baseUrl}/p?t=`))!;
    const page = await (await fetch(pageUrl)).text();
    const shownTypes = /name="shownTypes" value="([^"]*)"/.exec(page)?.[1];
    expect(shownTypes, 'the page lists the message types').toContain('tips:email');
    expect(page).toContain('name="t:product_news:email"');
    // The message types part of the form: every box shown ticked stays ticked but tips by email.
    const form = new URLSearchParams({ shownTypes: shownTypes! });
    for (const m of page.matchAll(/<input[^>]*name="(t:[^"]+)"[^>]*checked[^>]*>/g))
      if (m[1] !== 't:tips:email') form.set(m[1]!, 'on');
    expect(form.has('t:product_news:email')).toBe(true);
    const saved = await fetch(pageUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: form.toString(),
    });
    expect(saved.status, await saved.clone().text()).toBe(200);

    expect(await send(userId, 'tips')).toMatchObject({
      status: 'suppressed',
      reason: expect.stringMatching(/^message_type_off:tips:email/) as string,
    });
    expect(await send(userId, 'product_news')).toMatchObject({ status: 'sent' });
  });
});
