// A circuit breaker per provider: after `threshold` consecutive failures the provider is
// skipped (failover goes to the next one) for `cooldownMs`; then one trial call decides
// whether it closes again or stays open for another cooldown.
export type BreakerState = 'closed' | 'open' | 'half_open';

export interface Breaker {
  /** May a call go out now? In half-open state only one trial at a time. */
  allow(now: number): boolean;
  success(): void;
  failure(now: number): void;
  state(now: number): BreakerState;
  /** When an open breaker lets a trial through (epoch ms), or 0 when not open. */
  reopensAt(): number;
}

export function createBreaker(opts: { threshold: number; cooldownMs: number }): Breaker {
  let failures = 0;
  let openedAt = 0;
  let open = false;
  let trialInFlight = false;
  const state = (now: number): BreakerState =>
    !open ? 'closed' : now - openedAt >= opts.cooldownMs ? 'half_open' : 'open';
  return {
    state,
    allow(now) {
      const s = state(now);
      if (s === 'closed') return true;
      if (s === 'open' || trialInFlight) return false;
      trialInFlight = true;
      return true;
    },
    success() {
      failures = 0;
      open = false;
      trialInFlight = false;
    },
    failure(now) {
      failures++;
      if (trialInFlight || failures >= opts.threshold) {
        open = true;
        openedAt = now;
      }
      trialInFlight = false;
    },
    reopensAt: () => (open ? openedAt + opts.cooldownMs : 0),
  };
}

/** Exponential backoff with full jitter: uniform in [base*2^(n-1)/2, base*2^(n-1)], capped. */
export function backoffMs(
  attempt: number,
  baseMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
