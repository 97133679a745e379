// The behaviour every implementation of delivery's stores must have (Redis in production,
// in-memory in the demo): run by policy/stores.int.test.ts against the real Redis and by
// pipeline/memory-stores.test.ts against the in-memory twins.
import { describe, expect, it } from 'vitest';
import type { DelayQueue } from '../../delivery/pipeline/delay-queue.ts';
import { sendCommand } from './delivery-context.ts';
import type { PreferencesStore } from '../../delivery/preferences/store.ts';
import { DAY_MS, type CapStore } from '../../delivery/policy/caps-store.ts';
import type { ClaimStore } from '../../delivery/policy/claims.ts';

export interface ContractStores {
  claims: ClaimStore;
  caps: CapStore;
  delayQueue: DelayQueue;
  preferences: PreferencesStore;
  /** Unique per run, for ids that must not collide with earlier runs on a shared store. */
  runId: string;
}

export function storesContract(stores: ContractStores): void {
  describe('claims', () => {
    const { claims } = stores;
    const ref = { userId: 'u1', sendId: 's1', channel: 'email' as const };

    it('walks claimed -> sending -> sent, and a replay sees the stored outcome', async () => {
      const now = Date.now();
      expect(await claims.claim(ref, 'w1', now, 1000, null)).toEqual({
        kind: 'new',
        gen: 0,
        attempts: 0,
        wasSending: false,
      });
      expect(await claims.claim(ref, 'w2', now, 1000, null)).toMatchObject({ kind: 'busy' });
      expect(await claims.markSending(ref, 'w2')).toBe(false);
      expect(await claims.markSending(ref, 'w1')).toBe(true);
      expect(await claims.finish(ref, 'w1', 'sent', null, 'smtp-1', 1)).toBe(true);
      expect(await claims.claim(ref, 'w2', now, 1000, null)).toEqual({
        kind: 'done',
        status: 'sent',
        reason: null,
        provider: 'smtp-1',
        attempts: 1,
      });
      expect(await claims.finish(ref, 'w1', 'failed', 'x', null, 2)).toBe(false);
    });

    it('hands an expired lease to another worker and says a provider call may have happened', async () => {
      const r = { ...ref, sendId: 's2' };
      const now = Date.now();
      await claims.claim(r, 'dead', now - 5000, 1000, null);
      await claims.markSending(r, 'dead');
      expect(await claims.claim(r, 'w2', now, 1000, null)).toEqual({
        kind: 'reclaimed',
        gen: 0,
        attempts: 0,
        wasSending: true,
      });
      expect(await claims.finish(r, 'dead', 'sent', null, 'x', 1)).toBe(false);
      expect(await claims.finish(r, 'w2', 'sent', null, 'x', 1)).toBe(true);
    });

    it('a parked send resumes only from its own delay-queue generation', async () => {
      const r = { ...ref, sendId: 's3' };
      const now = Date.now();
      await claims.claim(r, 'w1', now, 1000, null);
      expect(await claims.park(r, 'w1', 'retrying', 1, 1)).toBe(true);
      expect(await claims.claim(r, 'w2', now, 1000, null)).toEqual({ kind: 'waiting', gen: 1 });
      expect(await claims.claim(r, 'w2', now, 1000, 0)).toEqual({ kind: 'waiting', gen: 1 });
      expect(await claims.claim(r, 'w2', now, 1000, 1)).toEqual({
        kind: 'resumed',
        gen: 1,
        attempts: 1,
        wasSending: false,
      });
      expect(await claims.suppressIfParked(r, 'x')).toBe(false);
      expect(await claims.park(r, 'w2', 'deferred', 2, 1)).toBe(true);
      expect(await claims.suppressIfParked(r, 'frequency_cap')).toBe(true);
      expect(await claims.claim(r, 'w3', now, 1000, 2)).toMatchObject({
        kind: 'done',
        status: 'suppressed',
        reason: 'frequency_cap',
      });
    });
  });

  describe('claims after a provider call without an answer', () => {
    const { claims } = stores;
    const ref = { userId: 'u1', sendId: 's1', channel: 'email' as const };
    it('a send parked unsettled tells the pass that resumes it, until a call settles it', async () => {
      const r = { ...ref, sendId: 's-unsettled' };
      const now = Date.now();
      await claims.claim(r, 'w1', now, 1000, null);
      expect(await claims.markSending(r, 'w1')).toBe(true);
      expect(await claims.park(r, 'w1', 'retrying', 1, 1, true)).toBe(true);
      expect(await claims.claim(r, 'w2', now, 1000, 1)).toEqual({
        kind: 'resumed',
        gen: 1,
        attempts: 1,
        wasSending: true,
      });
      // A crash of the resumed pass before its own call leaves the doubt for the takeover.
      expect(await claims.claim(r, 'w3', now + 5000, 1000, null)).toMatchObject({
        kind: 'reclaimed',
        wasSending: true,
      });
      expect(await claims.park(r, 'w3', 'retrying', 2, 2)).toBe(true);
      expect(await claims.claim(r, 'w3', now, 1000, 2)).toMatchObject({
        kind: 'resumed',
        wasSending: false,
      });
    });

    it('a send parked unsettled at a named provider tells the resumed pass which one', async () => {
      const r = { ...ref, sendId: 's-unsettled-at' };
      const now = Date.now();
      await claims.claim(r, 'w1', now, 1000, null);
      expect(await claims.markSending(r, 'w1')).toBe(true);
      expect(await claims.park(r, 'w1', 'retrying', 1, 1, 'sms-2')).toBe(true);
      expect(await claims.claim(r, 'w2', now, 1000, 1)).toEqual({
        kind: 'resumed',
        gen: 1,
        attempts: 1,
        wasSending: true,
        sendingAt: 'sms-2',
      });
    });
  });

  describe('frequency caps', () => {
    const { caps } = stores;
    const holder = (sendId: string, priority: number) => ({
      sendId,
      ruleId: `r-${sendId}`,
      priority,
      variant: null,
      category: 'marketing',
    });
    const limits = { perDay: 2, perWeek: 3 };

    it('counts per rolling day and week, and a held slot stays held', async () => {
      const t0 = Date.now() - 3 * DAY_MS;
      expect(await caps.reserve('c1', 'email', holder('a', 10), t0, limits)).toEqual({
        kind: 'ok',
      });
      await caps.commit('c1', 'email', 'a');
      expect(await caps.reserve('c1', 'email', holder('b', 10), t0 + 1000, limits)).toEqual({
        kind: 'ok',
      });
      await caps.commit('c1', 'email', 'b');
      expect(await caps.reserve('c1', 'email', holder('b', 10), t0 + 2000, limits)).toEqual({
        kind: 'held',
      });
      expect(await caps.reserve('c1', 'email', holder('c', 10), t0 + 3000, limits)).toEqual({
        kind: 'capped',
        window: 'day',
      });
      // a day later the day window is free again, the week window holds 2 of 3
      expect(
        await caps.reserve('c1', 'email', holder('c', 10), t0 + DAY_MS + 5000, limits),
      ).toEqual({ kind: 'ok' });
      await caps.commit('c1', 'email', 'c');
      expect(
        await caps.reserve('c1', 'email', holder('d', 10), t0 + DAY_MS + 6000, limits),
      ).toEqual({ kind: 'capped', window: 'week' });
      // other channels count separately
      expect(await caps.reserve('c1', 'push', holder('d', 10), t0 + DAY_MS + 6000, limits)).toEqual(
        { kind: 'ok' },
      );
      // a released slot is free again
      await caps.release('c1', 'email', 'c');
      expect(
        await caps.reserve('c1', 'email', holder('d', 10), t0 + DAY_MS + 7000, limits),
      ).toEqual({ kind: 'ok' });
    });

    it('a higher-priority send takes the slot of the lowest-priority pending one; sent ones keep theirs', async () => {
      const now = Date.now();
      const l = { perDay: 2, perWeek: 0 };
      await caps.reserve('c2', 'email', holder('sent', 1), now - 3000, l);
      await caps.commit('c2', 'email', 'sent');
      await caps.reserve('c2', 'email', holder('pending-low', 5), now - 2000, l);
      expect(await caps.reserve('c2', 'email', holder('equal', 5), now - 1000, l)).toEqual({
        kind: 'capped',
        window: 'day',
      });
      expect(await caps.reserve('c2', 'email', holder('high', 90), now, l)).toEqual({
        kind: 'preempted',
        victim: holder('pending-low', 5),
      });
      expect(await caps.reserve('c2', 'email', holder('higher', 99), now + 1, l)).toEqual({
        kind: 'preempted',
        victim: holder('high', 90),
      });
      await caps.commit('c2', 'email', 'higher');
      expect(await caps.reserve('c2', 'email', holder('top', 100), now + 2, l)).toEqual({
        kind: 'capped',
        window: 'day',
      });
    });

    it('holds each channel to its own limits; a higher-priority send takes a slot only in its own channel', async () => {
      const now = Date.now();
      const sms = { perDay: 1, perWeek: 3 };
      const email = { perDay: 3, perWeek: 10 };
      // Both parked (e.g. deferred by quiet hours), low priority.
      expect(await caps.reserve('c3', 'sms', holder('sms-low', 5), now - 2000, sms)).toEqual({
        kind: 'ok',
      });
      expect(await caps.reserve('c3', 'email', holder('email-low', 5), now - 2000, email)).toEqual({
        kind: 'ok',
      });
      // SMS is full at 1 a day; email has room for two more, so no slot is taken from anyone.
      expect(await caps.reserve('c3', 'email', holder('email-2', 50), now - 1000, email)).toEqual({
        kind: 'ok',
      });
      expect(await caps.reserve('c3', 'email', holder('email-3', 50), now - 900, email)).toEqual({
        kind: 'ok',
      });
      // Email full: the winner takes the lowest-priority pending email, never the SMS.
      expect(await caps.reserve('c3', 'email', holder('email-top', 99), now - 800, email)).toEqual({
        kind: 'preempted',
        victim: holder('email-low', 5),
      });
      expect(await caps.reserve('c3', 'email', holder('email-late', 50), now - 700, email)).toEqual(
        { kind: 'capped', window: 'day' },
      );
      expect(await caps.reserve('c3', 'sms', holder('sms-high', 90), now, sms)).toEqual({
        kind: 'preempted',
        victim: holder('sms-low', 5),
      });
      expect(await caps.reserve('c3', 'sms', holder('sms-equal', 90), now + 1, sms)).toEqual({
        kind: 'capped',
        window: 'day',
      });
      // The week window of SMS (3) is counted apart from email's sends.
      expect(
        await caps.reserve('c3', 'sms', holder('sms-next-day', 10), now + DAY_MS + 1, sms),
      ).toEqual({ kind: 'ok' });
      expect(
        await caps.reserve('c3', 'sms', holder('sms-day-3', 10), now + 2 * DAY_MS + 2, sms),
      ).toEqual({ kind: 'ok' });
      expect(
        await caps.reserve('c3', 'sms', holder('sms-day-4', 10), now + 3 * DAY_MS + 3, sms),
      ).toEqual({ kind: 'capped', window: 'week' });
    });
  });

  describe('delay queue', () => {
    const q = stores.delayQueue;
    it('returns due entries leased, keeps them until removed, and a newer generation survives an old remove', async () => {
      const now = Date.now();
      const send = sendCommand({ sendId: `dq-${stores.runId}` });
      await q.add({ send, channel: 'email', gen: 1, reason: 'quiet', dueAt: now - 10 });
      await q.add({
        send: sendCommand({ sendId: 'later' }),
        channel: 'email',
        gen: 1,
        reason: 'quiet',
        dueAt: now + 60_000,
      });
      const due = await q.takeDue(now, 10, 5000);
      expect(due.map((d) => d.send.sendId)).toEqual([send.sendId]);
      expect(due[0]!.send).toEqual(send);
      expect(await q.takeDue(now + 1000, 10, 5000)).toEqual([]);
      // the lease ran out (the worker died): it comes back
      expect((await q.takeDue(now + 6000, 10, 5000)).map((d) => d.gen)).toEqual([1]);
      await q.add({ send, channel: 'email', gen: 2, reason: 'retry', dueAt: now + 7000 });
      await q.remove({ send, channel: 'email', gen: 1 });
      expect((await q.takeDue(now + 8000, 10, 5000)).map((d) => d.gen)).toEqual([2]);
      await q.remove({ send, channel: 'email', gen: 2 });
      expect(await q.takeDue(now + 20_000, 10, 5000)).toEqual([]);
      expect(await q.size()).toBe(1);
    });
  });

  describe('preferences store', () => {
    const store = stores.preferences;
    it('keeps consent records with time and source, an audit trail, suppressions and erasure', async () => {
      await store.apply(
        'p1',
        {
          records: [
            {
              category: 'marketing',
              channel: 'email',
              record: { granted: true, at: 1000, source: 'signup_form' },
            },
          ],
        },
        { source: 'admin_api', at: 1000, by: { actor: 'key_support1', role: 'support' } },
      );
      const p = await store.apply(
        'p1',
        {
          unsubscribedAll: true,
          records: [],
          types: [
            {
              messageType: 'tips',
              channel: 'email',
              record: { granted: false, at: 2000, source: 'preference_page' },
            },
          ],
        },
        { source: 'preference_page', at: 2000 },
      );
      expect(p).toEqual({
        userId: 'p1',
        unsubscribedAll: { at: 2000, source: 'preference_page' },
        consents: { marketing: { email: { granted: true, at: 1000, source: 'signup_form' } } },
        types: { tips: { email: { granted: false, at: 2000, source: 'preference_page' } } },
      });
      // Who changed what, when and through which door: the user on the preference page, a
      // staff key through the API (the consent's own source says where the user agreed).
      expect(await store.history('p1')).toEqual([
        {
          kind: 'message_type',
          messageType: 'tips',
          channel: 'email',
          granted: false,
          at: 2000,
          source: 'preference_page',
          via: 'preference_page',
          recordedAt: 2000,
        },
        {
          kind: 'unsubscribe_all',
          at: 2000,
          source: 'preference_page',
          via: 'preference_page',
          recordedAt: 2000,
        },
        {
          kind: 'consent',
          category: 'marketing',
          channel: 'email',
          granted: true,
          at: 1000,
          source: 'signup_form',
          via: 'admin_api',
          recordedAt: 1000,
          by: { actor: 'key_support1', role: 'support' },
        },
      ]);
      expect(await store.history('p1', 1)).toHaveLength(1);
      await store.suppress('p1', 'email', { reason: 'hard_bounce', at: 3000, address: 'a@b.c' });
      expect((await store.suppressions('p1')).channels.email).toEqual({
        reason: 'hard_bounce',
        at: 3000,
        address: 'a@b.c',
      });
      expect(await store.unsuppress('p1', 'email')).toBe(true);
      await store.markDeleted('p1', 4000);
      expect(await store.get('p1')).toEqual({
        userId: 'p1',
        unsubscribedAll: null,
        consents: {},
        types: {},
      });
      expect((await store.suppressions('p1')).deleted).toEqual({
        reason: 'user_deleted',
        at: 4000,
      });
      expect(await store.history('p1')).toEqual([]);
    });

    it('keeps the newest 500 changes of a user', async () => {
      const user = `bounded-${stores.runId}`;
      const records = Array.from({ length: 501 }, (_, i) => ({
        category: `c${i}`,
        channel: 'email' as const,
        record: { granted: i % 2 === 0, at: i, source: 'import' },
      }));
      await store.apply(user, { records }, { source: 'admin_api', at: 5000 });
      const history = await store.history(user, 1000);
      expect(history).toHaveLength(500);
      expect(history[0]).toMatchObject({ category: 'c500', at: 500 });
      expect(history[499]).toMatchObject({ category: 'c1', at: 1 });
      await store.markDeleted(user, 6000);
    });
  });
}
