import { describe, expect, it } from 'vitest';
import type { Channel } from '../../platform/contracts.ts';
import { silentLogger } from '../../platform/logger.ts';
import type { Suppression } from '../preferences/model.ts';
import type { OutgoingMessage, Provider, ProviderResult } from '../provider.ts';
import { createBreakerRegistry, createProviderStage } from './provider-stage.ts';
import { testContext } from '../../test/support/delivery-context.ts';

/** A provider answering from a script of results (the last one repeats). */
function scripted(
  name: string,
  results: (ProviderResult | Error)[],
): Provider & { sent: OutgoingMessage[] } {
  let i = 0;
  const sent: OutgoingMessage[] = [];
  return {
    name,
    channel: 'email',
    sent,
    async send(m) {
      const r = results[Math.min(i++, results.length - 1)]!;
      if (r instanceof Error) throw r;
      if (r.status === 'sent') sent.push(m);
      return r;
    },
  };
}

function setup(providers: Provider[], opts: { threshold?: number; maxAttempts?: number } = {}) {
  const suppressed: { userId: string; channel: Channel; s: Suppression }[] = [];
  const breakers = createBreakerRegistry({ threshold: opts.threshold ?? 2, cooldownMs: 60_000 });
  const stage = createProviderStage(
    { maxAttempts: opts.maxAttempts ?? 3, retryBaseMs: 1000, retryMaxMs: 60_000 },
    {
      providers: new Map([['email', providers]]),
      breakers,
      beforeSend: async () => true,
      suppress: async (userId, channel, s) => void suppressed.push({ userId, channel, s }),
      logger: silentLogger(),
      random: () => 1,
      sleep: async () => {},
    },
  );
  const ctx = () => {
    const c = testContext();
    c.message = {
      sendId: c.send.sendId,
      ruleId: c.send.ruleId,
      category: c.send.category,
      channel: 'email',
      recipient: c.recipient,
      content: { subject: 's', text: 't' },
    };
    return c;
  };
  return { stage, suppressed, breakers, ctx };
}

describe('provider stage', () => {
  it('sends through the first provider', async () => {
    const a = scripted('smtp-a', [{ status: 'sent', providerMessageId: 'm1' }]);
    const { stage, ctx } = setup([a, scripted('smtp-b', [{ status: 'sent' }])]);
    expect(await stage.run(ctx())).toEqual({
      kind: 'sent',
      provider: 'smtp-a',
      providerMessageId: 'm1',
    });
    expect(a.sent).toHaveLength(1);
  });

  it('fails over to the next provider on a retriable error and on a throw', async () => {
    const b = scripted('smtp-b', [{ status: 'sent' }]);
    const { stage, ctx } = setup([
      scripted('smtp-a', [
        { status: 'retriable', error: '421 try later' },
        new Error('ECONNREFUSED'),
      ]),
      b,
    ]);
    expect((await stage.run(ctx())).kind).toBe('sent');
    expect(await stage.run(ctx())).toMatchObject({ kind: 'sent', provider: 'smtp-b' });
    expect(b.sent).toHaveLength(2);
  });

  it('opens the breaker of a failing provider and stops calling it', async () => {
    let calls = 0;
    const a: Provider = {
      name: 'smtp-a',
      channel: 'email',
      send: async () => (calls++, { status: 'retriable', error: 'down' }),
    };
    const { stage, ctx, breakers } = setup([a, scripted('smtp-b', [{ status: 'sent' }])], {
      threshold: 2,
    });
    for (let i = 0; i < 5; i++) expect((await stage.run(ctx())).kind).toBe('sent');
    expect(calls).toBe(2);
    expect(breakers.states(Date.now())).toEqual({ 'smtp-a': 'open', 'smtp-b': 'closed' });
  });

  it('parks for a retry with backoff when every provider failed, then gives up into the DLQ', async () => {
    const { stage, ctx } = setup(
      [scripted('smtp-a', [{ status: 'retriable', error: 'timeout' }])],
      { threshold: 100, maxAttempts: 2 },
    );
    const c = ctx();
    const before = Date.now();
    const r1 = await stage.run(c);
    expect(r1).toMatchObject({ kind: 'defer', retry: true, error: 'smtp-a: timeout' });
    if (r1.kind !== 'defer') throw new Error('unreachable');
    expect(r1.until - before).toBeGreaterThanOrEqual(1000);
    expect(c.attempts).toBe(1);
    const r2 = await stage.run(c);
    expect(r2).toEqual({
      kind: 'failed',
      dlq: true,
      reason: 'gave up after 2 attempts: smtp-a: timeout',
    });
  });

  it('waits for the breaker when every provider is open, without spending an attempt', async () => {
    const { stage, ctx } = setup([scripted('smtp-a', [{ status: 'retriable', error: 'down' }])], {
      threshold: 1,
      maxAttempts: 5,
    });
    const c = ctx();
    await stage.run(c);
    expect(c.attempts).toBe(1);
    const r = await stage.run(c);
    expect(r).toMatchObject({ kind: 'defer', retry: true, error: 'smtp-a: circuit open' });
    if (r.kind === 'defer') expect(r.until - Date.now()).toBeGreaterThan(59_000);
    expect(c.attempts).toBe(1);
  });

  it('honours a provider retry-after', async () => {
    const { stage, ctx } = setup(
      [scripted('sms', [{ status: 'retriable', error: '429', retryAfterMs: 30_000 }])],
      { threshold: 100 },
    );
    const r = await stage.run(ctx());
    if (r.kind !== 'defer') throw new Error(`expected defer, got ${r.kind}`);
    expect(r.until - Date.now()).toBeGreaterThan(29_000);
  });

  it('a permanent error fails the send and suppresses the address', async () => {
    const { stage, ctx, suppressed } = setup([
      scripted('smtp-a', [
        { status: 'permanent', error: '550 5.1.1 no such user', suppress: 'hard_bounce' },
      ]),
      scripted('smtp-b', [{ status: 'sent' }]),
    ]);
    expect(await stage.run(ctx())).toEqual({
      kind: 'failed',
      dlq: false,
      bounced: true,
      reason: 'smtp-a: hard_bounce: 550 5.1.1 no such user',
    });
    expect(suppressed).toMatchObject([
      {
        userId: 'user-1',
        channel: 'email',
        s: { reason: 'hard_bounce', address: 'ada@example.com' },
      },
    ]);
  });

  it('a dead push token does not suppress the push channel', async () => {
    const { stage, ctx, suppressed } = setup([
      scripted('push', [
        { status: 'permanent', error: 'token unregistered', suppress: 'invalid_token' },
      ]),
    ]);
    expect(await stage.run(ctx())).toMatchObject({ kind: 'failed', dlq: false, bounced: false });
    expect(suppressed).toEqual([]);
  });

  it('fails into the DLQ when the channel has no provider', async () => {
    const { stage, ctx } = setup([]);
    expect(await stage.run(ctx())).toMatchObject({ kind: 'failed', dlq: true });
  });

  describe('a send taken over from a worker that died during the provider call', () => {
    const withLookup = (
      p: Provider & { sent: OutgoingMessage[] },
      answers: (boolean | Error)[],
    ) => {
      const asked: string[] = [];
      let i = 0;
      return Object.assign(p, {
        asked,
        async accepted(m: OutgoingMessage) {
          asked.push(m.sendId);
          const a = answers[Math.min(i++, answers.length - 1)]!;
          if (a instanceof Error) throw a;
          return a;
        },
      });
    };
    const takeover = (c: ReturnType<ReturnType<typeof setup>['ctx']>) =>
      Object.assign(c, { takeover: true });

    it('is recorded as sent, not sent again, when the provider already has the message', async () => {
      const a = withLookup(scripted('smtp-a', [{ status: 'sent' }]), [true]);
      const { stage, ctx } = setup([a]);
      expect(await stage.run(takeover(ctx()))).toEqual({
        kind: 'sent',
        provider: 'smtp-a',
        reconciled: true,
      });
      expect(a.asked).toEqual(['send-1']);
      expect(a.sent).toHaveLength(0);
    });

    it('asks every provider of the channel that can be asked: the message may have gone out by a failover', async () => {
      const a = withLookup(scripted('smtp-a', [{ status: 'sent' }]), [false]);
      const b = scripted('smtp-b', [{ status: 'sent' }]);
      const c = withLookup(scripted('smtp-c', [{ status: 'sent' }]), [true]);
      const { stage, ctx } = setup([a, b, c]);
      expect(await stage.run(takeover(ctx()))).toEqual({
        kind: 'sent',
        provider: 'smtp-c',
        reconciled: true,
      });
      expect(a.sent.length + b.sent.length + c.sent.length).toBe(0);
    });

    it('is sent again when no provider has it', async () => {
      const a = withLookup(scripted('smtp-a', [{ status: 'sent' }]), [false]);
      const { stage, ctx } = setup([a]);
      expect(await stage.run(takeover(ctx()))).toEqual({ kind: 'sent', provider: 'smtp-a' });
      expect(a.sent).toHaveLength(1);
    });

    it('asks again when the lookup cannot tell, and sends once it says no', async () => {
      const a = withLookup(scripted('smtp-a', [{ status: 'sent' }]), [
        new Error('HTTP 503'),
        false,
      ]);
      const { stage, ctx } = setup([a]);
      expect((await stage.run(takeover(ctx()))).kind).toBe('sent');
      expect(a.asked).toHaveLength(2);
      expect(a.sent).toHaveLength(1);
    });

    it('sends anyway (at least once) when the lookup never answers, after the configured tries', async () => {
      const a = withLookup(scripted('smtp-a', [{ status: 'sent' }]), [new Error('ECONNREFUSED')]);
      const { stage, ctx } = setup([a]);
      expect((await stage.run(takeover(ctx()))).kind).toBe('sent');
      expect(a.asked).toHaveLength(3);
      expect(a.sent).toHaveLength(1);
    });

    it('asks before a retry too: the failed call may have reached the relay before the connection dropped', async () => {
      // The relay accepts the message, then the connection is reset before its reply.
      const relay = withLookup(scripted('smtp-a', [new Error('read ECONNRESET')]), [true]);
      const { stage, ctx } = setup([relay]);
      const first = ctx();
      expect((await stage.run(first)).kind).toBe('defer');
      expect(first.attempts).toBe(1);
      expect(relay.asked).toHaveLength(0);
      const retry = Object.assign(ctx(), { attempts: first.attempts });
      expect(await stage.run(retry)).toEqual({
        kind: 'sent',
        provider: 'smtp-a',
        reconciled: true,
      });
      expect(relay.asked).toEqual(['send-1']);
    });

    it('asks first when the last call of the send ended without an answer', async () => {
      const a = withLookup(scripted('smtp-a', [{ status: 'sent' }]), [true]);
      const { stage, ctx } = setup([a]);
      expect(await stage.run(Object.assign(ctx(), { unsettled: true }))).toEqual({
        kind: 'sent',
        provider: 'smtp-a',
        reconciled: true,
      });
      expect(a.sent).toHaveLength(0);
    });

    it('does not ask on a first send', async () => {
      const a = withLookup(scripted('smtp-a', [{ status: 'sent' }]), [true]);
      const { stage, ctx } = setup([a]);
      expect((await stage.run(ctx())).kind).toBe('sent');
      expect(a.asked).toHaveLength(0);
      expect(a.sent).toHaveLength(1);
    });
  });
});

describe('provider calls without an answer', () => {
  it('parks an ambiguous failure for a retry that asks first, without failing over (the first provider may have it)', async () => {
    const a = scripted('smtp-a', [
      { status: 'retriable', ambiguous: true, error: 'Connection closed unexpectedly' },
    ]);
    const b = scripted('smtp-b', [{ status: 'sent' }]);
    const { stage, ctx } = setup([a, b]);
    const r = await stage.run(ctx());
    expect(r).toMatchObject({ kind: 'defer', retry: true, unsettled: true });
    expect(b.sent).toHaveLength(0);
  });

  it('stops waiting for a call that never answers at its deadline, as an ambiguous failure', async () => {
    const hung: Provider = {
      name: 'smtp-hung',
      channel: 'email',
      deadlineMs: 50,
      send: () => new Promise<ProviderResult>(() => {}),
    };
    const b = scripted('smtp-b', [{ status: 'sent' }]);
    const { stage, ctx } = setup([hung, b]);
    const started = Date.now();
    const r = await stage.run(ctx());
    expect(Date.now() - started).toBeLessThan(2000);
    expect(r).toMatchObject({ kind: 'defer', retry: true, unsettled: true });
    expect(r.kind === 'defer' && r.reason).toContain('no answer from smtp-hung within 50 ms');
    expect(b.sent).toHaveLength(0);
  });

  it('gives a provider without a deadline of its own the stage default', async () => {
    const hung: Provider = {
      name: 'inapp-hung',
      channel: 'email',
      send: () => new Promise<ProviderResult>(() => {}),
    };
    const stage = createProviderStage(
      { maxAttempts: 3, retryBaseMs: 1000, retryMaxMs: 60_000, providerDeadlineMs: 30 },
      {
        providers: new Map([['email', [hung]]]),
        breakers: createBreakerRegistry({ threshold: 2, cooldownMs: 60_000 }),
        beforeSend: async () => true,
        suppress: async () => {},
        logger: silentLogger(),
        random: () => 1,
      },
    );
    const c = testContext();
    c.message = {
      sendId: c.send.sendId,
      ruleId: c.send.ruleId,
      category: c.send.category,
      channel: 'email',
      recipient: c.recipient,
      content: { subject: 's', text: 't' },
    };
    expect(await stage.run(c)).toMatchObject({ kind: 'defer', unsettled: true });
  });
});

describe('failover after a call without an answer (providers that cannot be asked)', () => {
  const ambiguous: ProviderResult = {
    status: 'retriable',
    ambiguous: true,
    error: 'ECONNRESET: socket hang up',
  };

  it('names the provider of the unanswered call, and the retry goes to it first, not back to the top of the list', async () => {
    const a = scripted('sms-1', [{ status: 'retriable', error: 'HTTP 503' }, { status: 'sent' }]);
    const b = scripted('sms-2', [ambiguous, { status: 'sent', providerMessageId: 'SM2' }]);
    const { stage, ctx } = setup([a, b], { threshold: 10 });
    const c = ctx();
    const r = await stage.run(c);
    expect(r).toMatchObject({ kind: 'defer', unsettled: true, unsettledProvider: 'sms-2' });
    // The resumed pass (claim.ts sets these from the parked claim).
    Object.assign(c, { unsettled: true, unsettledProvider: 'sms-2' });
    a.sent.length = 0;
    const calls: string[] = [];
    for (const p of [a, b]) {
      const send = p.send.bind(p);
      p.send = async (m) => (calls.push(p.name), send(m));
    }
    expect(await stage.run(c)).toMatchObject({ kind: 'sent', provider: 'sms-2' });
    // sms-1 would have sent a second copy had it been asked first.
    expect(calls).toEqual(['sms-2']);
    expect(a.sent).toHaveLength(0);
  });

  it('moves on to the next provider once the unanswered one answers with a refusal', async () => {
    const a = scripted('sms-1', [ambiguous, { status: 'retriable', error: 'HTTP 503' }]);
    const b = scripted('sms-2', [{ status: 'sent' }]);
    const { stage, ctx } = setup([a, b], { threshold: 10 });
    const c = ctx();
    expect(await stage.run(c)).toMatchObject({ kind: 'defer', unsettledProvider: 'sms-1' });
    expect(b.sent).toHaveLength(0);
    Object.assign(c, { unsettled: true, unsettledProvider: 'sms-1' });
    expect(await stage.run(c)).toMatchObject({ kind: 'sent', provider: 'sms-2' });
    expect(b.sent).toHaveLength(1);
  });

  it('waits for the breaker of the unanswered provider instead of failing over past it', async () => {
    const a = scripted('sms-1', [ambiguous]);
    const b = scripted('sms-2', [{ status: 'sent' }]);
    const { stage, ctx, breakers } = setup([a, b], { threshold: 1 });
    const c = ctx();
    await stage.run(c);
    expect(breakers.states(Date.now())['sms-1']).toBe('open');
    Object.assign(c, { unsettled: true, unsettledProvider: 'sms-1' });
    const attempts = c.attempts;
    const r = await stage.run(c);
    expect(r).toMatchObject({ kind: 'defer', unsettled: true, unsettledProvider: 'sms-1' });
    expect(r.kind === 'defer' && r.reason).toContain('sms-1: circuit open');
    expect(b.sent).toHaveLength(0);
    // Waiting for a breaker is not an attempt.
    expect(c.attempts).toBe(attempts);
  });

  it('fails over at once when the first provider could not have received the request', async () => {
    const a = scripted('sms-1', [{ status: 'retriable', error: 'ECONNREFUSED: connect' }]);
    const b = scripted('sms-2', [{ status: 'sent' }]);
    const { stage, ctx } = setup([a, b]);
    expect(await stage.run(ctx())).toMatchObject({ kind: 'sent', provider: 'sms-2' });
  });
});
