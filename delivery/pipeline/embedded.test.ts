// The whole delivery worker on the in-memory adapters the embedded demo uses: in-memory bus
// and stores, the shipped templates, and a small in-test email provider implementing the
// provider contract. Covers the path from a send command to a message and its outcomes,
// including parking for quiet hours and for a retry.
import { afterEach, describe, expect, it } from 'vitest';
import { deliveryCodec, encodeWithHeader, sendCodec } from '../../platform/avro.ts';
import { InMemoryBus } from '../../platform/bus.ts';
import { loadConfig } from '../../platform/config.ts';
import {
  topics as topicNames,
  type DeliveryOutcome,
  type SendCommand,
} from '../../platform/contracts.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createMetricsRegistry, type Registry } from '../../platform/metrics.ts';
import type { OutgoingMessage, Provider, ProviderResult } from '../provider.ts';
import { createMemoryDeliveryStores } from './memory-stores.ts';
import { createDelivery, type DeliveryHandle } from './run.ts';
import { sendCommand } from '../../test/support/delivery-context.ts';

const handles: DeliveryHandle[] = [];
afterEach(async () => {
  for (const h of handles.splice(0)) await h.stop();
});

function inbox(
  results: ProviderResult[] = [{ status: 'sent' }],
): Provider & { got: OutgoingMessage[] } {
  const got: OutgoingMessage[] = [];
  let i = 0;
  return {
    name: 'inbox',
    channel: 'email',
    got,
    async send(m) {
      const r = results[Math.min(i++, results.length - 1)]!;
      if (r.status === 'sent') got.push(m);
      return r;
    },
  };
}

async function start(opts: {
  quietHours?: string;
  provider: Provider;
  now?: () => number;
  metrics?: Registry;
}) {
  const config = loadConfig(
    {},
    {
      'delivery.quietHours': opts.quietHours ?? '',
      'delivery.templatesDir': 'templates',
      'delivery.delayPollMs': 20,
      'delivery.retryBaseMs': 10,
      'delivery.retryMaxMs': 50,
      'delivery.breakerCooldownMs': 20,
      'kafka.partitions': 2,
    },
  );
  const bus = new InMemoryBus(2);
  const stores = createMemoryDeliveryStores();
  const t = topicNames(config.kafka.topicPrefix);
  const handle = await createDelivery(config, silentLogger(), {
    bus,
    stores,
    providers: new Map([['email', [opts.provider]]]),
    ...(opts.now ? { now: opts.now } : {}),
    ...(opts.metrics ? { metrics: opts.metrics } : {}),
  });
  await handle.start();
  handles.push(handle);
  const publish = (s: SendCommand, topic: string = t.sends) =>
    bus.publisher().publish(topic, [{ key: s.userId, ...encodeWithHeader(sendCodec, s) }]);
  const outcomes = () => bus.messages(t.deliveries).map((m) => deliveryCodec.decode(m.value!));
  return { handle, stores, publish, outcomes, topics: t };
}

async function until<T>(probe: () => T | undefined | false, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const welcome = (over: Partial<SendCommand> = {}) =>
  sendCommand({
    template: 'welcome',
    data: {
      user: {
        email: 'ada@example.com',
        firstName: 'Ada',
        plan: 'trial',
        locale: 'de',
        timezone: 'Europe/Berlin',
      },
      event: { type: 'user_registered', properties: {} },
      rule: { id: 'welcome' },
    },
    ...over,
  });
const statuses = (os: DeliveryOutcome[], sendId: string) =>
  os.filter((o) => o.sendId === sendId).map((o) => o.status);

describe('delivery on the in-memory adapters', () => {
  it('renders the shipped template in the user locale and sends once, with tracking and one-click unsubscribe', async () => {
    const provider = inbox();
    const d = await start({ provider });
    await d.stores.preferences.apply(
      'user-1',
      {
        records: [
          {
            category: 'marketing',
            channel: 'email',
            record: { granted: true, at: 1, source: 'test' },
          },
        ],
      },
      { source: 'test', at: 1 },
    );
    const s = welcome();
    await d.publish(s);
    await d.publish(s);
    await until(() => statuses(d.outcomes(), s.sendId).filter((x) => x === 'sent').length === 2);
    expect(provider.got).toHaveLength(1);
    const m = provider.got[0]!;
    expect(m.content.subject).toMatch(/Ada/);
    expect(m.content.html).toContain('/t/c?t=');
    expect(m.headers?.['List-Unsubscribe-Post']).toBe('List-Unsubscribe=One-Click');
    expect(statuses(d.outcomes(), s.sendId)).toEqual(['queued', 'sent', 'sent']);
  });

  it('parks a send for quiet hours and sends it when the policy clock passes their end', async () => {
    let offset = 0;
    const provider = inbox();
    const d = await start({ provider, quietHours: '00:00-23:59', now: () => Date.now() + offset });
    const s = welcome({ category: 'product_updates' });
    await d.publish(s);
    const deferred = await until(() =>
      d.outcomes().find((o) => o.sendId === s.sendId && o.status === 'deferred'),
    );
    expect(deferred.reason).toMatch(/^quiet_hours until .* \(Europe\/Berlin\)$/);
    expect(provider.got).toHaveLength(0);
    const end = Date.parse(/until (\S+)/.exec(deferred.reason!)![1]!);
    offset = end - Date.now() + 1000;
    await until(() => provider.got.length === 1);
    expect(statuses(d.outcomes(), s.sendId)).toEqual(['queued', 'deferred', 'sent']);
  });

  it('retries a retriable failure through the delay queue and gives up into failed after the last attempt', async () => {
    const provider = inbox([{ status: 'retriable', error: '421 busy' }, { status: 'sent' }]);
    const d = await start({ provider });
    const s = welcome({ category: 'transactional' });
    await d.publish(s);
    await until(() => provider.got.length === 1);
    await until(() => statuses(d.outcomes(), s.sendId).includes('sent'));
    expect(statuses(d.outcomes(), s.sendId)).toEqual(['queued', 'deferred', 'sent']);
    expect(d.outcomes().find((o) => o.status === 'deferred')?.reason).toMatch(
      /^retry 2\/6 in \d+ ms: inbox: 421 busy$/,
    );

    const broken = inbox([{ status: 'retriable', error: 'down' }]);
    const d2 = await start({ provider: broken });
    const s2 = welcome({ category: 'transactional', sendId: 'send-2' });
    await d2.publish(s2);
    const failed = await until(() =>
      d2.outcomes().find((o) => o.sendId === 'send-2' && o.status === 'failed'),
    );
    expect(failed.reason).toBe('gave up after 6 attempts: inbox: down');
  });

  it('counts every stage decision in lifecycle_delivery_stage_total{stage,result}', async () => {
    const metrics = createMetricsRegistry({ defaults: false });
    const provider = inbox();
    const d = await start({ provider, metrics });
    await d.stores.preferences.apply(
      'opted-in',
      {
        records: [
          {
            category: 'marketing',
            channel: 'email',
            record: { granted: true, at: 1, source: 'test' },
          },
        ],
      },
      { source: 'test', at: 1 },
    );
    // No opt-in: stops at consent. Opted in: passes every stage to the provider.
    const suppressed = welcome({ sendId: 'no-consent', userId: 'no-opt-in' });
    const sent = welcome({ sendId: 'consented', userId: 'opted-in' });
    await d.publish(suppressed);
    await d.publish(sent);
    await until(
      () =>
        statuses(d.outcomes(), 'no-consent').includes('suppressed') &&
        statuses(d.outcomes(), 'consented').includes('sent'),
    );
    const counted = async () => {
      const m = await metrics.getSingleMetric('lifecycle_delivery_stage_total')!.get();
      return Object.fromEntries(
        m.values.map((v) => [`${v.labels.stage}:${v.labels.result}`, v.value]),
      );
    };
    expect(await counted()).toEqual({
      'claim:continue': 2,
      'expiry:continue': 2,
      'opt_in:continue': 2,
      'holdout:continue': 2,
      'suppression:continue': 2,
      'consent:suppressed': 1,
      'consent:continue': 1,
      'frequency_cap:continue': 1,
      'quiet_hours:continue': 1,
      'render:continue': 1,
      'size:continue': 1,
      'provider:sent': 1,
    });
    expect(provider.got.map((m) => m.sendId)).toEqual(['consented']);
  });

  it('sends a command of the high-priority sends topic through the same chain, once', async () => {
    const provider = inbox();
    const d = await start({ provider });
    const s = welcome({ sendId: 'api-high', category: 'transactional', priority: 1000 });
    await d.publish(s, d.topics.sendsHigh);
    await d.publish(s, d.topics.sendsHigh);
    await until(() => statuses(d.outcomes(), 'api-high').filter((x) => x === 'sent').length === 2);
    expect(provider.got.map((m) => m.sendId)).toEqual(['api-high']);
  });
});
