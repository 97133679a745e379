// The policy chain as delivery assembles it (createPolicyChain), on the in-memory stores: the
// stages in their documented order, and sends that more than one stage would stop, decided
// by the stage that comes first. Each stage alone is tested in policy/stages.test.ts.
import { describe, expect, it } from 'vitest';
import { NO_MESSAGE_TYPES } from '../../platform/message-types.ts';
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

function build(overrides: Record<string, unknown> = {}, html = '<p>Hello</p>') {
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
      optIns: stores.optIns,
      messageTypes: NO_MESSAGE_TYPES,
      renderer: {
        render: (_template, channel) =>
          channel === 'email'
            ? { subject: 'Hello', html, text: 'Hello' }
            : { title: 'Hello', body: 'Hello' },
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
  const decisionOf = (r: Awaited<ReturnType<typeof pipeline.process>>, s: SendCommand) => {
    const final = r.outcomes.filter((o) => o.sendId === s.sendId && o.status !== 'queued');
    expect(final).toHaveLength(1);
    return { status: final[0]!.status, reason: final[0]!.reason };
  };
  const decide = async (s: SendCommand, channel: Channel = 'email', now = NOON) =>
    decisionOf(await pipeline.process(s, channel, null, now), s);
  /** The decision with what the worker publishes besides the outcome: the DLQ reason and the log record. */
  const decideAll = async (s: SendCommand, channel: Channel = 'email') => {
    const r = await pipeline.process(s, channel, null, NOON);
    return { ...decisionOf(r, s), dlq: r.dlq, message: r.message };
  };
  return { stages, stores, got, send, optIn, decide, decideAll };
}

describe('the assembled policy chain', () => {
  it('runs claim, expiry, opt-in, holdout, suppression, consent, frequency cap, quiet hours, render, provider in that order', () => {
    expect(build().stages.map((s) => s.name)).toEqual([
      'claim',
      'expiry',
      'opt_in',
      'holdout',
      'suppression',
      'consent',
      'frequency_cap',
      'quiet_hours',
      'render',
      'size',
      'provider',
    ]);
  });

  it('a rendered email above LC_MAX_MESSAGE_BYTES fails into the DLQ with the reason, and no provider is called', async () => {
    const limit = 4096;
    const html = `<p>Hi</p><img src="data:image/png;base64,${'A'.repeat(limit)}">`;
    const c = build({ 'delivery.quietHours': '', 'delivery.maxMessageBytes': limit }, html);
    const d = await c.decideAll(c.send({ category: 'transactional' }));
    // The open pixel is added by the render stage: the HTML measured is the HTML that would be sent.
    const bytes = Number(/rendered HTML is (\d+) bytes/.exec(d.reason ?? '')?.[1]);
    expect(bytes).toBeGreaterThan(html.length);
    expect(d).toMatchObject({
      status: 'failed',
      reason: `message.too_large: rendered HTML is ${bytes} bytes, the limit is ${limit} (LC_MAX_MESSAGE_BYTES)`,
      dlq: `message.too_large: rendered HTML is ${bytes} bytes, the limit is ${limit} (LC_MAX_MESSAGE_BYTES)`,
      message: null,
    });
    expect(c.got).toHaveLength(0);
    // Up to the limit it goes out.
    const fits = build({ 'delivery.quietHours': '', 'delivery.maxMessageBytes': bytes }, html);
    expect((await fits.decide(fits.send({ category: 'transactional' }))).status).toBe('sent');
    expect(fits.got).toHaveLength(1);
  });

  it('a sent send carries its message-log record: the content as sent, where it went, its data and origin', async () => {
    const c = build({ 'delivery.quietHours': '' });
    const s = c.send({ category: 'transactional', origin: 'resend:s-0', templateVersion: 4 });
    const d = await c.decideAll(s);
    expect(d.status).toBe('sent');
    const sent = c.got[0]!;
    expect(d.message).toEqual({
      id: `${s.sendId}:email`,
      sendId: s.sendId,
      userId: 'user-1',
      ruleId: s.ruleId,
      campaignId: null,
      category: 'transactional',
      channel: 'email',
      template: s.template,
      // The render stage says which version it used (null until templates have versions).
      templateVersion: null,
      locale: 'en',
      to: 'ada@example.com',
      subject: 'Hello',
      html: sent.content.html,
      text: sent.content.text,
      content: {},
      data: s.data,
      origin: 'resend:s-0',
      ts: expect.any(Number),
    });
    // What the provider got, after the render stage added the open pixel.
    expect(d.message!.html).toMatch(/<img src="[^"]*\/t\/o\.gif\?t=/);
    // Not sent: no record.
    const suppressed = await c.decideAll(c.send());
    expect(suppressed).toMatchObject({ status: 'suppressed', message: null });
    // Other channels keep their content in `content`, and their own address.
    const sms = await c.decideAll(c.send({ category: 'transactional' }), 'sms');
    expect(sms.message).toMatchObject({
      channel: 'sms',
      to: '+15550100',
      subject: null,
      html: null,
      text: null,
      content: { title: 'Hello', body: 'Hello' },
    });
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
