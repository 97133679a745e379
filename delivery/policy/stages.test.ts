// One test per policy stage, each against small in-test stores implementing the real interfaces.
import { describe, expect, it } from 'vitest';
import type { Channel } from '../../platform/contracts.ts';
import { silentLogger } from '../../platform/logger.ts';
import { loadMessageTypes } from '../../platform/message-types.ts';
import { testContext } from '../../test/support/delivery-context.ts';
import {
  emptyPreferences,
  type SuppressionState,
  type UserPreferences,
} from '../preferences/model.ts';
import { createCapsStage, type ChannelCaps } from './caps.ts';
import type { CapHolder, CapLimits, CapResult, CapStore } from './caps-store.ts';
import { createClaimStage } from './claim.ts';
import type { ClaimResult, ClaimStore } from './claims.ts';
import { createConsentStage } from './consent.ts';
import { createExpiryStage } from './expiry.ts';
import { createHoldoutStage } from './holdout.ts';
import { createSuppressionStage } from './suppression.ts';

describe('claim stage', () => {
  const store = (results: ClaimResult[]): ClaimStore & { calls: number } => {
    const s = {
      calls: 0,
      async claim() {
        return results[Math.min(s.calls++, results.length - 1)]!;
      },
      markSending: async () => true,
      finish: async () => true,
      park: async () => true,
      suppressIfParked: async () => true,
    };
    return s;
  };
  const stage = (claims: ClaimStore) =>
    createClaimStage({
      claims,
      owner: 'w1',
      leaseMs: 1000,
      logger: silentLogger(),
      sleep: async () => {},
    });

  it('continues a new claim and marks it fresh', async () => {
    const ctx = testContext();
    expect(
      await stage(store([{ kind: 'new', gen: 0, attempts: 0, wasSending: false }])).run(ctx),
    ).toEqual({ kind: 'continue' });
    expect(ctx.fresh).toBe(true);
  });
  it('resumes a parked send with its generation and attempts', async () => {
    const ctx = testContext();
    ctx.resumeGen = 2;
    expect(
      (await stage(store([{ kind: 'resumed', gen: 2, attempts: 3, wasSending: false }])).run(ctx))
        .kind,
    ).toBe('continue');
    expect([ctx.gen, ctx.attempts, ctx.fresh]).toEqual([2, 3, false]);
  });
  it('skips a finished send and re-emits its outcome', async () => {
    const r = await stage(
      store([{ kind: 'done', status: 'sent', reason: null, provider: 'smtp-1', attempts: 1 }]),
    ).run(testContext());
    expect(r).toEqual({
      kind: 'skip',
      reason: 'already sent',
      reemit: { status: 'sent', reason: null, provider: 'smtp-1' },
    });
  });
  it('skips a send parked in the delay queue', async () => {
    expect((await stage(store([{ kind: 'waiting', gen: 1 }])).run(testContext())).kind).toBe(
      'skip',
    );
  });
  it('waits for a busy claim until it can take it over', async () => {
    const s = store([
      { kind: 'busy', leaseUntil: Date.now() + 10 },
      { kind: 'busy', leaseUntil: Date.now() + 5 },
      { kind: 'reclaimed', gen: 0, attempts: 1, wasSending: true },
    ]);
    const ctx = testContext();
    expect((await stage(s).run(ctx)).kind).toBe('continue');
    expect(s.calls).toBe(3);
    expect(ctx.attempts).toBe(1);
  });
});

describe('expiry stage', () => {
  it('suppresses a stale send and passes a fresh one', async () => {
    const now = Date.parse('2026-03-10T12:00:00Z');
    expect(
      await createExpiryStage().run(testContext({ now, send: { expiresAt: now - 1 } })),
    ).toEqual({ kind: 'suppressed', reason: 'expired at 2026-03-10T11:59:59.999Z' });
    expect(
      (await createExpiryStage().run(testContext({ now, send: { expiresAt: now + 1 } }))).kind,
    ).toBe('continue');
    expect(
      (await createExpiryStage().run(testContext({ now, send: { expiresAt: null } }))).kind,
    ).toBe('continue');
  });
});

describe('holdout stage', () => {
  it('records holdout sends without sending', async () => {
    expect(await createHoldoutStage().run(testContext({ send: { holdout: true } }))).toEqual({
      kind: 'holdout',
    });
    expect((await createHoldoutStage().run(testContext())).kind).toBe('continue');
  });
});

describe('suppression stage', () => {
  const stage = (state: SuppressionState) =>
    createSuppressionStage({ suppressions: async () => state });
  it('blocks transactional sends to a bounced address', async () => {
    const r = await stage({
      deleted: null,
      channels: { email: { reason: 'hard_bounce', at: 1, address: 'ada@example.com' } },
    }).run(testContext({ category: 'transactional' }));
    expect(r).toEqual({ kind: 'suppressed', reason: 'hard_bounce' });
  });
  it('blocks deleted users and channels without an address', async () => {
    expect(
      await stage({ deleted: { reason: 'user_deleted', at: 1 }, channels: {} }).run(testContext()),
    ).toEqual({ kind: 'suppressed', reason: 'user_deleted' });
    expect(
      await stage({ deleted: null, channels: {} }).run(testContext({ channel: 'sms' })),
    ).toEqual({ kind: 'suppressed', reason: 'no_address:sms' });
    expect((await stage({ deleted: null, channels: {} }).run(testContext())).kind).toBe('continue');
    // push devices may live in the provider's registry only
    expect(
      (await stage({ deleted: null, channels: {} }).run(testContext({ channel: 'push' }))).kind,
    ).toBe('continue');
  });
});

describe('consent stage', () => {
  const types = loadMessageTypes('rules/message-types.json');
  const stage = (p: Partial<UserPreferences>) =>
    createConsentStage({
      preferences: async (u) => ({ ...emptyPreferences(u), ...p }),
      messageTypes: types,
    });
  const optedIn = { granted: true, at: 1, source: 'signup' };
  const off = { granted: false, at: 2, source: 'preference_page' };
  const marketingEmail = { consents: { marketing: { email: optedIn } } };
  const typed = (messageType: string, over: Parameters<typeof testContext>[0] = {}) =>
    testContext({ ...over, send: { ...over.send, messageType } });

  it.each<[string, Partial<UserPreferences>, ReturnType<typeof testContext>, string | null]>([
    [
      'tips off on email, product news on: tips suppressed',
      { ...marketingEmail, types: { tips: { email: off }, product_news: { email: optedIn } } },
      typed('tips'),
      'message_type_off:tips:email',
    ],
    [
      'the same user: product news sent',
      { ...marketingEmail, types: { tips: { email: off }, product_news: { email: optedIn } } },
      typed('product_news'),
      null,
    ],
    [
      'an opt-in type the user never opted in to',
      marketingEmail,
      typed('tips'),
      'message_type_no_opt_in:tips:email',
    ],
    [
      'an opt-in type the user ticked at signup',
      { ...marketingEmail, types: { tips: { email: optedIn } } },
      typed('tips'),
      null,
    ],
    ['a type on by default, no choice made', marketingEmail, typed('product_news'), null],
    [
      'a type off by default on the channel',
      { consents: { marketing: { push: optedIn } } },
      typed('product_news', { channel: 'push' }),
      'message_type_off:product_news:push',
    ],
    [
      'a channel the type is not sent on',
      { consents: { marketing: { sms: optedIn } } },
      typed('digest', { channel: 'sms' }),
      'message_type_off:digest:sms',
    ],
    [
      'the category consent still comes first',
      { types: { tips: { email: optedIn } } },
      typed('tips'),
      'no_opt_in:marketing:email',
    ],
    [
      'unsubscribed from everything beats a type switched on',
      {
        ...marketingEmail,
        unsubscribedAll: { at: 3, source: 'x' },
        types: { tips: { email: optedIn } },
      },
      typed('tips'),
      'unsubscribed_all',
    ],
    [
      'a type users cannot switch off ignores a stored switch',
      { types: { billing: { email: off } } },
      typed('billing', { category: 'transactional' }),
      null,
    ],
    [
      'a type delivery does not know: the category decides',
      marketingEmail,
      typed('retired_type'),
      null,
    ],
    ['no type: the category decides, as before', marketingEmail, testContext(), null],
  ])('%s', async (_name, prefs, ctx, reason) => {
    const result = await stage(prefs).run(ctx);
    expect(result).toEqual(reason === null ? { kind: 'continue' } : { kind: 'suppressed', reason });
  });

  it('requires a marketing opt-in, lets transactional through', async () => {
    expect(await stage({}).run(testContext())).toEqual({
      kind: 'suppressed',
      reason: 'no_opt_in:marketing:email',
    });
    expect((await stage({}).run(testContext({ category: 'transactional' }))).kind).toBe('continue');
    expect(
      (
        await stage({
          consents: { marketing: { email: { granted: true, at: 1, source: 'signup' } } },
        }).run(testContext())
      ).kind,
    ).toBe('continue');
  });
});

describe('frequency cap stage', () => {
  const caps = (
    result: CapResult,
  ): CapStore & { reserved: { channel: string; limits: CapLimits }[] } => {
    const reserved: { channel: string; limits: CapLimits }[] = [];
    return {
      reserved,
      reserve: async (_u, channel, _h, _now, limits) => (
        reserved.push({ channel, limits }),
        result
      ),
      commit: async () => {},
      release: async () => {},
    };
  };
  const limits = (over: Partial<Record<Channel, CapLimits | null>>): ChannelCaps => ({
    email: null,
    inapp: null,
    webhook: null,
    sms: null,
    push: null,
    ...over,
  });
  it('exempts transactional sends', async () => {
    const c = caps({ kind: 'capped', window: 'day' });
    expect(
      (
        await createCapsStage(limits({ email: { perDay: 1, perWeek: 1 } }), {
          caps: c,
          onPreempted: async () => {},
        }).run(testContext({ category: 'transactional' }))
      ).kind,
    ).toBe('continue');
    expect(c.reserved).toHaveLength(0);
  });
  it('suppresses a capped send with the window in the reason', async () => {
    const r = await createCapsStage(limits({ email: { perDay: 1, perWeek: 5 } }), {
      caps: caps({ kind: 'capped', window: 'week' }),
      onPreempted: async () => {},
    }).run(testContext());
    expect(r).toEqual({ kind: 'suppressed', reason: 'frequency_cap:email:week' });
  });
  it("reserves with the limits of the send's own channel", async () => {
    const c = caps({ kind: 'ok' });
    const stage = createCapsStage(
      limits({
        email: { perDay: 3, perWeek: 10 },
        sms: { perDay: 1, perWeek: 3 },
        push: { perDay: 5, perWeek: 20 },
      }),
      { caps: c, onPreempted: async () => {} },
    );
    for (const channel of ['sms', 'email', 'push'] as const)
      expect((await stage.run(testContext({ channel }))).kind).toBe('continue');
    expect(c.reserved).toEqual([
      { channel: 'sms', limits: { perDay: 1, perWeek: 3 } },
      { channel: 'email', limits: { perDay: 3, perWeek: 10 } },
      { channel: 'push', limits: { perDay: 5, perWeek: 20 } },
    ]);
  });
  it('holds a slot, and hands a preempted lower-priority send to the callback', async () => {
    const victim: CapHolder = {
      sendId: 'low',
      ruleId: 'r-low',
      priority: 1,
      variant: null,
      category: 'marketing',
    };
    const seen: CapHolder[] = [];
    const ctx = testContext({ send: { priority: 90 } });
    const r = await createCapsStage(limits({ email: { perDay: 1, perWeek: 5 } }), {
      caps: caps({ kind: 'preempted', victim }),
      onPreempted: async (v) => void seen.push(v),
    }).run(ctx);
    expect(r.kind).toBe('continue');
    expect(ctx.capHeld).toBe(true);
    expect(seen).toEqual([victim]);
  });
  it('does nothing on an uncapped channel', async () => {
    const c = caps({ kind: 'capped', window: 'day' });
    const stage = createCapsStage(limits({ email: { perDay: 1, perWeek: 1 } }), {
      caps: c,
      onPreempted: async () => {},
    });
    for (const channel of ['webhook', 'inapp', 'sms'] as const) {
      const ctx = testContext({ channel });
      expect((await stage.run(ctx)).kind).toBe('continue');
      expect(ctx.capHeld).toBe(false);
    }
    expect(c.reserved).toHaveLength(0);
  });
});
