// Priority `high` is delivered first: with a backlog of rule sends waiting on the sends topic
// (one delivery worker, one user at a time, so the backlog takes a while to drain), a
// password reset sent through the send API with priority high reaches the inbox while most of
// the backlog is still waiting, instead of after it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeWithHeader, sendCodec } from '../../platform/avro.ts';
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
import { startSendApi, type SendApi } from '../../test/support/send-api.ts';
import { runDelivery, type DeliveryHandle } from '../pipeline/run.ts';

const BACKLOG = 600;

let h: Harness;
let smtp: SmtpSink & { dir: string };
let delivery: DeliveryHandle | undefined;
let api: SendApi;

beforeAll(async () => {
  smtp = await startSink();
  h = await createHarness('send-high', {
    'delivery.smtpUrls': [`smtp://127.0.0.1:${smtp.port}`],
    'delivery.emailFrom': 'Example <hello@example.com>',
    'delivery.concurrency': 1,
  });
  api = await startSendApi(h.config, { redis: h.redis, publisher: h.bus.publisher() });
});

afterAll(async () => {
  await api?.close();
  await delivery?.stop();
  await h?.close();
  if (smtp) await stopSink(smtp);
});

describe('priority high', () => {
  it('is delivered before a backlog of normal sends on the sends topic drains', async () => {
    const backlog = Array.from({ length: BACKLOG }, (_, i) =>
      welcomeSend(`backlog-${i}-${h.id}`, { category: 'transactional' }),
    );
    await h.bus.publisher().publish(
      h.topics.sends,
      backlog.map((s) => ({ key: s.userId, ...encodeWithHeader(sendCodec, s) })),
    );
    delivery = await runDelivery(h.config, logger, { redis: h.redis, bus: h.bus });
    const isBacklog = (to: string[]) => to.some((a) => a.startsWith('backlog-'));
    await waitFor('the backlog to be under way', () =>
      smtp.list().filter((m) => isBacklog(m.to)).length >= 20 ? true : undefined,
    );

    const service = await api.serviceKey('backend');
    const res = await fetch(`${api.baseUrl}/v1/send`, {
      method: 'POST',
      headers: service.headers,
      body: JSON.stringify({
        template: 'welcome',
        to: { email: `reset-${h.id}@example.com` },
        category: 'transactional',
        priority: 'high',
        data: { user: { firstName: 'Urgent' } },
      }),
    });
    expect(res.status).toBe(202);
    const { sends } = (await res.json()) as { sends: { sendId: string }[] };
    const urgent = await waitFor(
      'the high-priority email',
      () => smtp.list({ messageId: `${sends[0]!.sendId}@example.com` })[0],
    );
    // The sink's ids sort by arrival.
    const before = smtp.list().filter((m) => isBacklog(m.to) && m.id < urgent.id).length;
    expect(before).toBeLessThan(BACKLOG / 2);

    // The backlog still drains, every message once.
    await waitFor(
      'the backlog to drain',
      () => (smtp.list().filter((m) => isBacklog(m.to)).length >= BACKLOG ? true : undefined),
      120_000,
      250,
    );
    expect(
      new Set(
        smtp
          .list()
          .filter((m) => isBacklog(m.to))
          .map((m) => m.messageId),
      ).size,
    ).toBe(BACKLOG);
  });
});
