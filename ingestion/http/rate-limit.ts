// Per-write-key token bucket counted in events (a batch of 100 costs 100), refilled
// continuously at the configured rate with one second of burst.

export interface RateDecision {
  ok: boolean;
  /** Milliseconds until the request would fit, when refused. */
  retryAfterMs: number;
}

export interface RateLimiter {
  take(key: string, events: number, now?: number): RateDecision;
}

export function createRateLimiter(perSecond: number, clock: () => number = Date.now): RateLimiter {
  const buckets = new Map<string, { tokens: number; at: number }>();
  return {
    take(key, events, now = clock()) {
      let b = buckets.get(key);
      if (!b) {
        b = { tokens: perSecond, at: now };
        buckets.set(key, b);
      }
      b.tokens = Math.min(perSecond, b.tokens + ((now - b.at) * perSecond) / 1000);
      b.at = now;
      // A request larger than the whole burst is let through on a full bucket and leaves a
      // debt, so big batches are slowed down rather than refused forever.
      if (events <= b.tokens || b.tokens >= perSecond) {
        b.tokens -= events;
        return { ok: true, retryAfterMs: 0 };
      }
      const missing = Math.min(events, perSecond) - b.tokens;
      return { ok: false, retryAfterMs: Math.max(1, Math.ceil((missing * 1000) / perSecond)) };
    },
  };
}
