// In-memory twins of delivery's Redis stores (claims, caps, delay queue, preferences, sent
// index) with the same semantics, for the embedded demo and `simulate`, where there is no
// Redis. The contract tests in test/support/delivery-stores.contract.ts run against both.
import { createMemoryOptInStore, type OptInStore } from '../optin/store.ts';
import type { Channel } from '../../platform/contracts.ts';
import type { CapHolder, CapStore } from '../policy/caps-store.ts';
import { DAY_MS, WEEK_MS } from '../policy/caps-store.ts';
import { phase, phaseOf, type ClaimRef, type ClaimStore } from '../policy/claims.ts';
import {
  emptyPreferences,
  historyEntry,
  type PreferenceChange,
  type Suppression,
  type SuppressionState,
  type UserPreferences,
} from '../preferences/model.ts';
import type { PreferencesStore } from '../preferences/store.ts';
import type { DelayQueue, DelayedSend } from './delay-queue.ts';
import type { SentIndex, SentRecord } from '../sent-index.ts';
import { createMemoryShortLinkStore, type ShortLinkStore } from '../tracking/short-links.ts';
import type { FinalStatus } from '../stage.ts';

export interface DeliveryStores {
  claims: ClaimStore;
  caps: CapStore;
  delayQueue: DelayQueue;
  preferences: PreferencesStore;
  optIns: OptInStore;
  sentIndex: SentIndex;
  shortLinks: ShortLinkStore;
}

interface Claim {
  st: 'claimed' | 'deferred' | 'retrying' | FinalStatus;
  ow: string;
  lu: number;
  g: number;
  a: number;
  ph: '' | 'sending';
  rs: string;
  pv: string;
}

const clone = <T>(v: T): T => structuredClone(v);

export function createMemoryClaimStore(): ClaimStore {
  const claims = new Map<string, Claim>();
  const key = (r: ClaimRef) => `${r.userId}\n${r.sendId}\n${r.channel}`;
  const held = (r: ClaimRef, owner: string) => {
    const c = claims.get(key(r));
    return c && c.ow === owner && c.st === 'claimed' ? c : null;
  };
  return {
    async claim(ref, owner, now, leaseMs, resumeGen) {
      const c = claims.get(key(ref));
      if (!c) {
        claims.set(key(ref), {
          st: 'claimed',
          ow: owner,
          lu: now + leaseMs,
          g: 0,
          a: 0,
          ph: '',
          rs: '',
          pv: '',
        });
        return { kind: 'new', gen: 0, attempts: 0, wasSending: false };
      }
      if (c.st === 'sent' || c.st === 'suppressed' || c.st === 'failed' || c.st === 'holdout') {
        return {
          kind: 'done',
          status: c.st,
          reason: c.rs || null,
          provider: c.pv || null,
          attempts: c.a,
        };
      }
      if (c.st === 'deferred' || c.st === 'retrying') {
        if (resumeGen !== null && resumeGen === c.g) {
          Object.assign(c, { st: 'claimed', ow: owner, lu: now + leaseMs });
          return { kind: 'resumed', gen: c.g, attempts: c.a, ...phase(c.ph) };
        }
        return { kind: 'waiting', gen: c.g };
      }
      if (c.ow === owner || c.lu <= now) {
        const was = phase(c.ph);
        Object.assign(c, { ow: owner, lu: now + leaseMs });
        return { kind: 'reclaimed', gen: c.g, attempts: c.a, ...was };
      }
      return { kind: 'busy', leaseUntil: c.lu };
    },
    async markSending(ref, owner) {
      const c = held(ref, owner);
      if (c) c.ph = 'sending';
      return c !== null;
    },
    async finish(ref, owner, status, reason, provider, attempts) {
      const c = held(ref, owner);
      if (c)
        Object.assign(c, { st: status, rs: reason ?? '', pv: provider ?? '', a: attempts, ph: '' });
      return c !== null;
    },
    async park(ref, owner, state, gen, attempts, unsettled = false) {
      const c = held(ref, owner);
      if (c) Object.assign(c, { st: state, g: gen, a: attempts, ph: phaseOf(unsettled) });
      return c !== null;
    },
    async suppressIfParked(ref, reason) {
      const c = claims.get(key(ref));
      if (!c || (c.st !== 'deferred' && c.st !== 'retrying')) return false;
      Object.assign(c, { st: 'suppressed', rs: reason, pv: '' });
      return true;
    },
  };
}

export function createMemoryCapStore(): CapStore {
  const slots = new Map<
    string,
    Map<string, { ts: number; holder: CapHolder; state: 'pending' | 'sent' }>
  >();
  const of = (u: string, c: Channel) => {
    const k = `${u}\n${c}`;
    let m = slots.get(k);
    if (!m) slots.set(k, (m = new Map()));
    return m;
  };
  return {
    async reserve(userId, channel, holder, now, limits) {
      const m = of(userId, channel);
      for (const [id, s] of m) if (s.ts < now - WEEK_MS) m.delete(id);
      if (m.has(holder.sendId)) return { kind: 'held' };
      const day = [...m.values()].filter((s) => s.ts >= now - DAY_MS).length;
      const dayFull = limits.perDay > 0 && day >= limits.perDay;
      const weekFull = limits.perWeek > 0 && m.size >= limits.perWeek;
      const take = () => m.set(holder.sendId, { ts: now, holder: clone(holder), state: 'pending' });
      if (!dayFull && !weekFull) {
        take();
        return { kind: 'ok' };
      }
      // Same choice as the Redis script: among pending sends of strictly lower priority in the
      // full window, the lowest priority; on a tie the most recent.
      let victim: string | null = null;
      let victimPriority = holder.priority;
      for (const [id, s] of [...m].sort((a, b) => a[1].ts - b[1].ts)) {
        if (dayFull && s.ts < now - DAY_MS) continue;
        if (
          s.state === 'pending' &&
          s.holder.priority < holder.priority &&
          s.holder.priority <= victimPriority
        ) {
          victim = id;
          victimPriority = s.holder.priority;
        }
      }
      if (victim !== null) {
        const v = m.get(victim)!.holder;
        m.delete(victim);
        take();
        return { kind: 'preempted', victim: clone(v) };
      }
      return { kind: 'capped', window: dayFull ? 'day' : 'week' };
    },
    async commit(userId, channel, sendId) {
      const s = of(userId, channel).get(sendId);
      if (s) s.state = 'sent';
    },
    async release(userId, channel, sendId) {
      of(userId, channel).delete(sendId);
    },
  };
}

export function createMemoryDelayQueue(): DelayQueue {
  const entries = new Map<string, { score: number; entry: DelayedSend }>();
  const member = (sendId: string, channel: Channel) => `${channel}|${sendId}`;
  return {
    async add(entry) {
      entries.set(member(entry.send.sendId, entry.channel), {
        score: entry.dueAt,
        entry: clone(entry),
      });
    },
    async takeDue(now, limit, leaseMs) {
      const due = [...entries.values()]
        .filter((e) => e.score <= now)
        .sort((a, b) => a.score - b.score)
        .slice(0, limit);
      for (const e of due) e.score = now + leaseMs;
      return due.map((e) => clone(e.entry));
    },
    async remove(entry) {
      const m = member(entry.send.sendId, entry.channel);
      const e = entries.get(m);
      if (e && e.entry.gen === entry.gen) entries.delete(m);
    },
    size: async () => entries.size,
  };
}

export function createMemoryPreferencesStore(): PreferencesStore {
  const prefs = new Map<string, UserPreferences>();
  const audit = new Map<string, PreferenceChange[]>();
  const supp = new Map<string, SuppressionState>();
  const get = async (u: string) => clone(prefs.get(u) ?? emptyPreferences(u));
  const log = (u: string, ...items: PreferenceChange[]) =>
    audit.set(u, [...items.reverse(), ...(audit.get(u) ?? [])].slice(0, 500));
  return {
    get,
    async apply(u, change, meta) {
      const p = prefs.get(u) ?? emptyPreferences(u);
      const items: PreferenceChange[] = [];
      if (change.unsubscribedAll === true) {
        p.unsubscribedAll = { at: meta.at, source: meta.source };
        items.push(historyEntry({ kind: 'unsubscribe_all' }, meta));
      } else if (change.unsubscribedAll === false) {
        p.unsubscribedAll = null;
        items.push(historyEntry({ kind: 'resubscribe_all' }, meta));
      }
      for (const r of change.records) {
        (p.consents[r.category] ??= {})[r.channel] = clone(r.record);
        items.push(
          historyEntry(
            { kind: 'consent', category: r.category, channel: r.channel, ...r.record },
            meta,
          ),
        );
      }
      for (const r of change.types ?? []) {
        (p.types[r.messageType] ??= {})[r.channel] = clone(r.record);
        items.push(
          historyEntry(
            { kind: 'message_type', messageType: r.messageType, channel: r.channel, ...r.record },
            meta,
          ),
        );
      }
      prefs.set(u, p);
      if (items.length) log(u, ...items);
      return get(u);
    },
    history: async (u, limit = 50) => clone((audit.get(u) ?? []).slice(0, limit)),
    suppressions: async (u) => clone(supp.get(u) ?? { deleted: null, channels: {} }),
    async suppress(u, c, s: Suppression) {
      const st = supp.get(u) ?? { deleted: null, channels: {} };
      st.channels[c] = clone(s);
      supp.set(u, st);
    },
    async unsuppress(u, c) {
      const st = supp.get(u);
      if (!st?.channels[c]) return false;
      delete st.channels[c];
      return true;
    },
    async markDeleted(u, at) {
      prefs.delete(u);
      audit.delete(u);
      const st = supp.get(u) ?? { deleted: null, channels: {} };
      st.deleted = { reason: 'user_deleted', at };
      supp.set(u, st);
    },
  };
}

export function createMemorySentIndex(): SentIndex {
  const sent = new Map<string, Map<Channel, SentRecord>>();
  const key = (sendId: string) => sendId.replace(/[^A-Za-z0-9._-]/g, '-');
  return {
    async remember(send, channel, address) {
      const m = sent.get(key(send.sendId)) ?? new Map<Channel, SentRecord>();
      m.set(channel, {
        sendId: send.sendId,
        userId: send.userId,
        ruleId: send.ruleId,
        channel,
        variant: send.variant,
        category: send.category,
        holdout: send.holdout,
        address,
      });
      sent.set(key(send.sendId), m);
    },
    lookup: async (sendId) => [...(sent.get(key(sendId))?.values() ?? [])].map(clone),
  };
}

export function createMemoryDeliveryStores(): DeliveryStores {
  return {
    claims: createMemoryClaimStore(),
    caps: createMemoryCapStore(),
    delayQueue: createMemoryDelayQueue(),
    preferences: createMemoryPreferencesStore(),
    optIns: createMemoryOptInStore(),
    sentIndex: createMemorySentIndex(),
    shortLinks: createMemoryShortLinkStore(),
  };
}
