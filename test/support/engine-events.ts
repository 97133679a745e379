// A deterministic, Segment-like event stream for the runtime's tests and benchmark: every
// user registers first (email, plan), then uses features, views pages, orders, opens the
// app, updates traits; a few users are deleted. Same seed, same events.
import type { NormalisedEvent } from '../../platform/contracts.ts';

function prng(seed: number): () => number {
  // mulberry32
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface GenerateOptions {
  users: number;
  events: number;
  seed?: number;
  startTs: number;
  /** Milliseconds between consecutive events' timestamps. */
  stepMs?: number;
  /** Share of users who are deleted (right to be forgotten) after registering. */
  deleteShare?: number;
  idPrefix?: string;
  /** Treat every user as registered already (a stream that continues an earlier one). */
  alreadyRegistered?: boolean;
  /** Prefix of user ids (default `user-`). */
  userPrefix?: string;
}

const FEATURES = ['export', 'share', 'search', 'invite', 'dashboard'];
const PAGES = ['/pricing', '/docs', '/settings', '/home'];

export function generateEvents(o: GenerateOptions): NormalisedEvent[] {
  const rnd = prng(o.seed ?? 42);
  const step = o.stepMs ?? 1;
  const prefix = o.idPrefix ?? 'ev';
  const out: NormalisedEvent[] = [];
  const registered = new Set<number>(
    o.alreadyRegistered ? Array.from({ length: o.users }, (_, i) => i) : [],
  );
  const userPrefix = o.userPrefix ?? 'user-';
  const deleted = new Set<number>();
  let ts = o.startTs;
  const push = (
    userIdx: number,
    type: string,
    properties: Record<string, unknown>,
    traits?: Record<string, unknown>,
  ) => {
    const e: NormalisedEvent = {
      id: `${prefix}-${out.length}`,
      userId: `${userPrefix}${userIdx}`,
      type,
      ts,
      receivedAt: ts,
      // Deletions come from the product database: only CDC may erase a user.
      source: type === 'user_deleted' ? 'cdc:test' : 'http:test',
      properties,
      context: { library: { name: 'analytics-node', version: '2.2.0' } },
    };
    if (traits) e.traits = traits;
    out.push(e);
    ts += step;
  };
  while (out.length < o.events) {
    const u = Math.floor(rnd() * o.users);
    if (!registered.has(u)) {
      registered.add(u);
      const plan = rnd() < 0.6 ? 'trial' : 'pro';
      push(
        u,
        'user_registered',
        { method: 'email' },
        { email: `${userPrefix}${u}@example.com`, plan, locale: rnd() < 0.2 ? 'de' : 'en' },
      );
      // Deleted users are on the pro plan so no delayed trial nudge races their erasure.
      if (plan === 'pro' && rnd() < (o.deleteShare ?? 0) && out.length < o.events) {
        deleted.add(u);
        push(u, 'user_deleted', { reason: 'request' });
      }
      continue;
    }
    const r = rnd();
    if (r < 0.35)
      push(u, 'Feature Used', { feature: FEATURES[Math.floor(rnd() * FEATURES.length)]! });
    else if (r < 0.5) push(u, 'page', { path: PAGES[Math.floor(rnd() * PAGES.length)]! });
    else if (r < 0.65) push(u, 'app_opened', {});
    else if (r < 0.76)
      push(u, 'order_completed', { amount: Math.round(rnd() * 120), currency: 'EUR' });
    else if (r < 0.8) push(u, 'export_done', { format: 'csv' });
    else if (r < 0.83)
      push(u, 'payment_failed', { amount: Math.round(rnd() * 50), currency: 'EUR' });
    else if (r < 0.85) push(u, 'subscription_started', { plan: 'pro' });
    else push(u, 'identify', {}, { company: `c-${u % 50}`, seats: Math.floor(rnd() * 20) });
  }
  return out;
}
