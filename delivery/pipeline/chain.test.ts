// The policy chain as delivery assembles it (createPolicyChain), on the in-memory stores: the
// stages in their documented order, and sends that more than one stage would stop, decided
// by the stage that comes first. Each stage alone is tested in policy/stages.test.ts.
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../platform/config.ts';
import type { Channel, SendCommand } from '../../platform/contracts.ts';
import { silentLogger } from '../../platform/logger.ts';
import type { OutgoingMessage, Provider } from '../provider.ts';
import { createTrackingLinks } from '../links.ts';
import { createPolicyChain } from './chain.ts';
import { createMemoryDeliveryStores } from './memory-stores.ts';
import { createSendPipeline } from './pipeline.ts';
import { createBreakerRegistry } from './provider-stage.ts';
import { sendCommand } from '../../test/support/delivery-context.ts';

/** 22:00 UTC: inside the default quiet hours (21:00-08:00) of a user in UTC. */
const NIGHT = Date.parse('2026-03-10T22:00:00Z');
const NOON = Date.parse('2026-03-10T12:00:00Z');

function build(overrides: Record<string, unknown> = {}) {
  const config = loadConfig({}, { 'delivery.quietHours': '21:00-08:00', ...overrides });
  const stores = createMemoryDeliveryStores();
  const got: OutgoingMessage[] = [];
  const provider = (channel: Channel): Provider => ({
    name: `test-${channel}`,
    channel,
    async send(m) {
      got.push(m);
      return { status: 'sent' };
    },
  });
  const providers = new Map<Channel, Provider[]>(
    (['email', 'sms', 'push', 'webhook', 'inapp'] as const).map((c) => [c, [provider(c)]]),
  );
  const logger = silentLogger();
  const stages = createPolicyChain(
    { ...config.delivery, publicBaseUrl: config.http.publicBaseUrl },
    {
      owner: 'w1',
      claims: stores.claims,
      caps: stores.caps,
      preferences: stores.preferences,
      renderer: {
        render: () => ({
          subject: 'Hello',
          html: '<p>Hello</p>',
          text: 'Hello',
          title: 'Hello',
          body: 'Hello',
        }),
        versionFor: () => null,
        isTemplateLink: () => true,
      },
      links: createTrackingLinks({
        publicBaseUrl: config.http.publicBaseUrl,
        signingSecret: config.auth.signingSecret,
      }),
      providers,
      breakers: createBreakerRegistry({ threshold: 5, cooldownMs: 1000 }),
      logger,
    },
  );
  const pipeline = createSendPipeline({
    stages,
    claims: stores.claims,
    caps: stores.caps,
    delayQueue: stores.delayQueue,
    sentIndex: stores.sentIndex,
    owner: 'w1',
    logger,
    defaults: { timezone: 'UTC', locale: 'en' },
  });
  let n = 0;
  const send = (over: Partial<SendCommand> = {}) =>
    sendCommand({
      sendId: `s-${++n}`,
      data: {
        user: {
          email: 'ada@example.com',
          phone: '+15550100',
          webhookUrl: 'https://hooks.example.com/x',
          deviceTokens: ['tok-1'],
          timezone: 'UTC',
          locale: 'en',
        },
      },
      ...over,
    });
  const optIn = (channel: Channel) =>
    stores.preferences.apply(
      'user-1',
      {
        records: [
          { category: 'marketing', channel, record: { granted: true, at: 1, source: 'test' } },
        ],
      },
      { source: 'test', at: 1 },
    );
  const decide = async (s: SendCommand, channel: Channel = 'email', now = NOON) => {
    const r = await pipeline.process(s, channel, null, now);
    const final = r.outcomes.filter((o) => o.sendId === s.sendId && o.status !== 'queued');
    expect(final).toHaveLength(1);
    return { status: final[0]!.status, reason: final[0]!.reason };
  };
  return { stages, stores, got, send, optIn, decide };
}

describe('the assembled policy chain', () => {
  it('runs claim, expiry, holdout, suppression, consent, frequency cap, quiet hours, render, provider in that order', () => {
    expect(build().stages.map((s) => s.name)).toEqual([
      'claim',
      'expiry',
      'holdout',
      'suppression',
      'consent',
      'frequency_cap',
      'quiet_hours',
      'render',
      'provider',
    ]);
  });

  it('an expired holdout send is recorded as expired: expiry comes before holdout', async () => {
    const c = build();
    expect(await c.decide(c.send({ holdout: true, expiresAt: NOON - 1 }))).toEqual({
      status: 'suppressed',
      reason: 'expired at 2026-03-10T11:59:59.999Z',
    });
  });

  it('a holdout send to a hard-bounced address is recorded as holdout: holdout comes before suppression', async () => {
    const c = build();
    await c.optIn('email');
    await c.stores.preferences.suppress('user-1', 'email', {
      reason: 'hard_bounce',
      at: 1,
      address: 'ada@example.com',
    });
    expect(await c.decide(c.send({ holdout: true }))).toEqual({
      status: 'holdout',
      reason: 'holdout group',
    });
    expect(c.got).toHaveLength(0);
  });

  it('a bounced address without marketing opt-in is suppressed as hard_bounce: suppression comes before consent', async () => {
    const c = build();
    await c.stores.preferences.suppress('user-1', 'email', {
      reason: 'hard_bounce',
      at: 1,
      address: 'ada@example.com',
    });
    expect(await c.decide(c.send())).toEqual({ status: 'suppressed', reason: 'hard_bounce' });
    // the same send without the bounce stops at consent
    await c.stores.preferences.unsuppress('user-1', 'email');
    expect(await c.decide(c.send())).toEqual({
      status: 'suppressed',
      reason: 'no_opt_in:marketing:email',
    });
  });

  it('a send to a full channel during quiet hours is capped at once, not parked: the cap comes before quiet hours', async () => {
    const c = build({ 'delivery.channelCaps': 'email:1/5' });
    await c.optIn('email');
    // The first one takes the day's only slot and waits for the morning with it.
    expect(await c.decide(c.send(), 'email', NIGHT)).toEqual({
      status: 'deferred',
      reason: 'quiet_hours until 2026-03-11T08:00:00.000Z (UTC)',
    });
    expect(await c.decide(c.send(), 'email', NIGHT)).toEqual({
      status: 'suppressed',
      reason: 'frequency_cap:email:day',
    });
    expect(await c.stores.delayQueue.size()).toBe(1);
  });

  it('caps each channel with its own limits; webhook and in-app are not capped by default', async () => {
    const c = build({ 'delivery.quietHours': '', 'delivery.channelCaps': 'sms:1/3,push:2/5' });
    const product = { category: 'product_updates' };
    const run = async (channel: Channel, n: number) => {
      const out: string[] = [];
      for (let i = 0; i < n; i++) {
        const d = await c.decide(c.send(product), channel);
        out.push(d.reason ?? d.status);
      }
      return out;
    };
    expect(await run('sms', 2)).toEqual(['sent', 'frequency_cap:sms:day']);
    expect(await run('push', 3)).toEqual(['sent', 'sent', 'frequency_cap:push:day']);
    // email has no entry in LC_CAPS: LC_CAP_PER_DAY (3)
    expect(await run('email', 4)).toEqual(['sent', 'sent', 'sent', 'frequency_cap:email:day']);
    expect(await run('webhook', 6)).toEqual(Array(6).fill('sent'));
    expect(await run('inapp', 6)).toEqual(Array(6).fill('sent'));
    expect(c.got.map((m) => m.channel).filter((ch) => ch === 'webhook')).toHaveLength(6);
  });
});
