// The message log on the real stack, end to end: a send command on Kafka is delivered to an
// SMTP sink; delivery publishes what it sent to the messages topic; the analytics sink stores
// it in ClickHouse; the API shows the message with its content and every status since
// (delivered from the mail provider's webhook, opened from the tracking pixel). A resend
// makes one new email; the same resend retried with the same Idempotency-Key makes none.
// And large messages: an email of about 2 MB of HTML with inline base64 images renders, goes
// through Kafka and SMTP intact and is readable in full from ClickHouse; one of 3 MB is
// refused with the reason before any SMTP call.
import { randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAnalyticsStore } from '../../analytics/store.ts';
import { runSink } from '../../analytics/sink.ts';
import {
  withoutActionTokens,
  type ChannelMessage,
  type MessageDetail,
  type MessagePage,
} from '../../analytics/messages.ts';
import { createApiServer } from '../../bin/api.ts';
import { runDelivery, type DeliveryHandle } from '../../delivery/index.ts';
import { signWebhook } from '../../delivery/providers/webhook.ts';
import type { SmtpSink } from '../../devtools/smtp-sink.ts';
import { DlqHeaders } from '../../platform/contracts.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import {
  createHarness,
  logger,
  startSink,
  stopSink,
  waitFor,
  welcomeSend,
  type Harness,
} from '../support/delivery-harness.ts';
import { REPO_ROOT } from '../support/stack-env.ts';

const EMAIL_EVENTS_SECRET = 'message-log-test-email-events-secret';
const MAX_MESSAGE_BYTES = 2_621_440;

let h: Harness;
let smtp: SmtpSink & { dir: string };
let delivery: DeliveryHandle;
let sink: Awaited<ReturnType<typeof runSink>>;
let api: FastifyInstance;
let templatesDir: string;
/** The base64 of the images in the two large templates. */
const images = { big: [] as string[], huge: [] as string[] };

/** A template whose HTML carries inline images: `count` of `bytes` random bytes each, base64. */
async function imageTemplate(name: keyof typeof images, count: number, bytes: number) {
  for (let i = 0; i < count; i++) images[name].push(randomBytes(bytes).toString('base64'));
  const body = [
    '---',
    `subject: Your {{user.firstName}} report (${name})`,
    'layout: transactional',
    '---',
    '<p>Hello {{user.firstName}}, here is your report with its charts.</p>',
    ...images[name].map(
      (b64, i) =>
        `<p>Chart ${i + 1}</p><img alt="chart ${i + 1}" src="data:image/png;base64,${b64}">`,
    ),
    '<p><a href="https://app.example.com/reports">Open the reports</a></p>',
  ].join('\n');
  await mkdir(join(templatesDir, name), { recursive: true });
  await writeFile(join(templatesDir, name, 'email.en.hbs'), body);
  await writeFile(
    join(templatesDir, name, 'sample.json'),
    JSON.stringify({ user: { firstName: 'Ada', email: 'ada@example.com' } }),
  );
}

const adminHeaders = () => ({ authorization: `Bearer ${h.config.auth.adminToken}` });
const messageIdOf = (sendId: string) => `${sendId.replace(/[^A-Za-z0-9._-]/g, '-')}@example.com`;

async function detail(sendId: string): Promise<MessageDetail | null> {
  const res = await api.inject({
    method: 'GET',
    url: `/v1/messages/${encodeURIComponent(sendId)}`,
    headers: adminHeaders(),
  });
  if (res.statusCode === 404) return null;
  expect(res.statusCode, res.body).toBe(200);
  return res.json();
}

/**
 * Waits until the API shows the send's channel with a history that holds every status named
 * (and, with `content`, what the message said: the outcome and the message log are two
 * tables the sink fills one after the other, so a status may show before the content).
 */
async function waitForHistory(
  sendId: string,
  statuses: string[],
  opts: { content?: boolean } = {},
): Promise<ChannelMessage> {
  return waitFor(
    `${sendId} in the message log with ${statuses.join(', ')}${opts.content ? ' and its content' : ''}`,
    async () => {
      const d = await detail(sendId);
      const email = d?.channels.find((c) => c.channel === 'email');
      const seen = new Set(email?.history.map((e) => e.status));
      if (opts.content && !email?.content) return undefined;
      return email && statuses.every((s) => seen.has(s)) ? email : undefined;
    },
    90_000,
    500,
  );
}

/** Every send command published so far has been read and committed by delivery. */
async function deliveryCaughtUp(): Promise<void> {
  await waitFor(
    'delivery to commit every send command',
    async () => {
      const end = await h.bus.endOffsets(h.topics.sends);
      const done = await h.bus.committedOffsets(h.config.delivery.groupId, h.topics.sends);
      // A partition never committed (-1) is caught up when it holds nothing.
      const committed = (p: number) => {
        const c = BigInt(done.get(p) ?? '-1');
        return c < 0n ? 0n : c;
      };
      return [...end].every(([p, high]) => committed(p) >= BigInt(high));
    },
    60_000,
    250,
  );
}

beforeAll(async () => {
  templatesDir = await mkdtemp(join(tmpdir(), 'lc-msglog-templates-'));
  await cp(join(REPO_ROOT, 'templates'), templatesDir, { recursive: true });
  // About 2 MB of HTML (3 images of 512 KiB, base64), and about 3 MB (3 of 768 KiB).
  await imageTemplate('big', 3, 512 * 1024);
  await imageTemplate('huge', 3, 768 * 1024);
  smtp = await startSink();
  h = await createHarness('msglog', {
    'delivery.smtpUrls': [`smtp://127.0.0.1:${smtp.port}`],
    'delivery.emailFrom': 'Example <hello@example.com>',
    'delivery.templatesDir': templatesDir,
    'auth.emailEventsSecret': EMAIL_EVENTS_SECRET,
  });
  expect(h.config.delivery.maxMessageBytes).toBe(MAX_MESSAGE_BYTES);
  delivery = await runDelivery(h.config, logger, { redis: h.redis, bus: h.bus });
  sink = await runSink(h.config, logger);
  api = await createApiServer(h.config, {
    redis: h.redis,
    publisher: h.bus.publisher(),
    logger,
    metrics: createMetricsRegistry({ defaults: false }),
  });
  await api.ready();
}, 180_000);

afterAll(async () => {
  await api?.close();
  await sink?.stop();
  await delivery?.stop();
  await h?.close();
  if (smtp) await stopSink(smtp);
  if (h) {
    const admin = await createAnalyticsStore({ ...h.config.clickhouse, database: 'default' });
    await admin.command(`DROP DATABASE IF EXISTS ${h.config.clickhouse.database}`);
    await admin.close();
  }
  if (templatesDir) await rm(templatesDir, { recursive: true, force: true });
});

describe('the message log, end to end', () => {
  it('shows what was sent with its content and history; a resend is one new email, its retry none', async () => {
    const userId = `ada-${h.id}`;
    const optIn = await fetch(`${h.baseUrl}/v1/users/${userId}/preferences`, {
      method: 'PATCH',
      headers: { ...adminHeaders(), 'content-type': 'application/json' },
      body: JSON.stringify({
        consents: { marketing: { email: { granted: true, source: 'signup_form' } } },
      }),
    });
    expect(optIn.status).toBe(200);
    const send = welcomeSend(userId);
    await h.publishSend(send);
    const mail = await waitFor(
      'the welcome email',
      () => smtp.list({ messageId: messageIdOf(send.sendId) })[0],
    );

    // The mail provider says it was delivered; the user opens it (the tracking pixel).
    const body = JSON.stringify({
      events: [{ type: 'delivered', messageId: `<${mail.messageId}>`, recipient: mail.to[0] }],
    });
    const delivered = await fetch(`${h.baseUrl}/v1/webhooks/email`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-lc-signature': signWebhook(EMAIL_EVENTS_SECRET, body, Math.floor(Date.now() / 1000)),
      },
      body,
    });
    expect(await delivered.json()).toEqual({ applied: 1, unknown: [] });
    const pixel = new RegExp(`<img src="(${h.baseUrl}/t/o\\.gif\\?t=[^"]+)"`).exec(mail.html!)![1]!;
    expect((await fetch(pixel)).status).toBe(200);

    const email = await waitForHistory(send.sendId, ['queued', 'sent', 'delivered', 'opened'], {
      content: true,
    });
    // What the user got, byte for byte: the logged HTML is the HTML after link rewriting,
    // but for the links that act as the recipient (unsubscribe, preferences), which staff see
    // without their token.
    expect(email.content).toEqual({
      subject: mail.subject,
      html: withoutActionTokens(mail.html),
      text: expect.any(String) as string,
      other: {},
    });
    const unsubscribe = /\/t\/u\?t(?:=|&#x3D;)([A-Za-z0-9._~%-]+)/.exec(mail.html!)![1]!;
    expect(email.content!.html).not.toContain(unsubscribe);
    expect(email.content!.html).toMatch(/\/t\/u\?t(?:=|&#x3D;)redacted/);
    expect(email).toMatchObject({
      to: `${userId}@example.com`,
      locale: 'en',
      // The version the render stage used: the managed templates seed the folder as version 1+.
      templateVersion: expect.any(Number) as number,
      data: send.data,
      bodyExpired: false,
    });
    const statuses = email.history.map((e) => e.status);
    expect(statuses.indexOf('queued')).toBeLessThan(statuses.indexOf('sent'));
    expect(statuses.indexOf('sent')).toBeLessThan(statuses.indexOf('opened'));
    // The open shows once, though the tracker records it as an event and as an outcome.
    expect(statuses.filter((s) => s === 'opened')).toHaveLength(1);

    const listed = await api.inject({
      method: 'GET',
      url: `/v1/messages?userId=${encodeURIComponent(userId)}`,
      headers: adminHeaders(),
    });
    expect((listed.json() as MessagePage).messages).toEqual([
      expect.objectContaining({
        sendId: send.sendId,
        channel: 'email',
        subject: mail.subject,
        to: `${userId}@example.com`,
      }),
    ]);

    // Support resends it, then the same request is retried (a timeout on their side).
    const resend = () =>
      api.inject({
        method: 'POST',
        url: `/v1/messages/${encodeURIComponent(send.sendId)}/resend`,
        headers: { ...adminHeaders(), 'idempotency-key': `ticket-${h.id}` },
      });
    const first = await resend();
    expect(first.statusCode, first.body).toBe(202);
    const resent = first.json() as { sendId: string; policy: { allowed: boolean } };
    expect(resent.policy.allowed).toBe(true);
    const copy = await waitFor(
      'the resent email',
      () => smtp.list({ messageId: messageIdOf(resent.sendId) })[0],
    );
    expect(copy.subject).toBe(mail.subject);
    expect(copy.to).toEqual(mail.to);
    const again = await resend();
    expect(again.statusCode).toBe(202);
    expect((again.json() as { sendId: string }).sendId).toBe(resent.sendId);
    await deliveryCaughtUp();
    expect(smtp.list({ messageId: messageIdOf(resent.sendId) })).toHaveLength(1);
    expect(smtp.list({ to: `${userId}@example.com` })).toHaveLength(2);
    // The resend is in the log too, naming what it resent.
    const resentDetail = await waitFor('the resend in the message log', async () => {
      const d = await detail(resent.sendId);
      return d?.origin ? d : undefined;
    });
    expect(resentDetail).toMatchObject({ origin: `resend:${send.sendId}`, userId });
  });
});

describe('large messages', () => {
  it('an email of about 2 MB with inline images is rendered, sent intact and stored in full', async () => {
    const userId = `big-${h.id}`;
    const send = welcomeSend(userId, {
      template: 'big',
      ruleId: 'report',
      category: 'transactional',
      data: { user: { email: `${userId}@example.com`, firstName: 'Ada', locale: 'en' } },
    });
    await h.publishSend(send);
    const mail = await waitFor(
      'the 2 MB email',
      () => smtp.list({ messageId: messageIdOf(send.sendId) })[0],
      90_000,
    );
    const html = mail.html!;
    expect(Buffer.byteLength(html)).toBeGreaterThan(2 * 1000 * 1000);
    expect(Buffer.byteLength(html)).toBeLessThan(MAX_MESSAGE_BYTES);
    for (const b64 of images.big) expect(html).toContain(`src="data:image/png;base64,${b64}"`);

    // Stored whole in ClickHouse, and the API hands it back as it was sent.
    const email = await waitForHistory(send.sendId, ['sent'], { content: true });
    // As sent, but for the preference link's token, which staff do not see.
    expect(email.content!.html).toBe(withoutActionTokens(html));
    const store = await createAnalyticsStore(h.config.clickhouse);
    try {
      const [row] = await store.query<{ bytes: number | string }>(
        `SELECT length(html) AS bytes FROM ${h.config.clickhouse.database}.messages WHERE send_id = {s:String} LIMIT 1`,
        { s: send.sendId },
      );
      expect(Number(row!.bytes)).toBe(Buffer.byteLength(html));
    } finally {
      await store.close();
    }
  });

  it('a 3 MB email is refused with the reason before any SMTP call, into the DLQ', async () => {
    const userId = `huge-${h.id}`;
    const send = welcomeSend(userId, {
      template: 'huge',
      ruleId: 'report',
      category: 'transactional',
      data: { user: { email: `${userId}@example.com`, firstName: 'Ada', locale: 'en' } },
    });
    await h.publishSend(send);
    const failed = await waitFor(
      'the failed outcome',
      () => h.outcomes.find((o) => o.sendId === send.sendId && o.status === 'failed'),
      90_000,
    );
    expect(failed.reason).toMatch(
      /^message\.too_large: rendered HTML is (\d+) bytes, the limit is 2621440 \(LC_MAX_MESSAGE_BYTES\)$/,
    );
    const bytes = Number(/is (\d+) bytes/.exec(failed.reason!)![1]);
    expect(bytes).toBeGreaterThan(3 * 1024 * 1024);
    const dead = await waitFor('the DLQ record', () =>
      h.dlq.find((d) => d.headers[DlqHeaders.reason]?.includes('message.too_large')),
    );
    expect(dead.key).toBe(userId);
    expect(dead.headers[DlqHeaders.reason]).toBe(`email: ${failed.reason}`);
    await deliveryCaughtUp();
    expect(smtp.list({ messageId: messageIdOf(send.sendId) })).toEqual([]);
    expect(smtp.list({ to: `${userId}@example.com` })).toEqual([]);
    // The log shows why, and has no content for it.
    const email = await waitForHistory(send.sendId, ['failed']);
    expect(email).toMatchObject({ status: 'failed', content: null, to: null });
  });
});
