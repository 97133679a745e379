import { describe, expect, it } from 'vitest';
import { createLinkUseLimiter } from './link-limits.ts';

const T0 = Date.parse('2026-03-10T12:00:00Z');

describe('link use limits', () => {
  it('allows perMinute uses of a token in any sliding minute, and says when the next one is allowed', () => {
    const limiter = createLinkUseLimiter({ perMinute: 3 });
    expect(
      [T0, T0 + 10_000, T0 + 20_000].map((t) => limiter.take('body.mac-a', t).allowed),
    ).toEqual([true, true, true]);
    expect(limiter.take('body.mac-a', T0 + 30_000)).toEqual({ allowed: false, retryAfterS: 30 });
    // A refused use is not counted: the first use leaves the window at T0 + 60 s.
    expect(limiter.take('body.mac-a', T0 + 59_000)).toEqual({ allowed: false, retryAfterS: 1 });
    expect(limiter.take('body.mac-a', T0 + 60_001).allowed).toBe(true);
    expect(limiter.take('body.mac-a', T0 + 60_002).allowed).toBe(false);
  });

  it('counts each token on its own', () => {
    const limiter = createLinkUseLimiter({ perMinute: 1 });
    expect(limiter.take('x.mac-a', T0).allowed).toBe(true);
    expect(limiter.take('x.mac-b', T0).allowed).toBe(true);
    expect(limiter.take('x.mac-a', T0).allowed).toBe(false);
  });

  it('keeps the counts of the most recently used tokens only', () => {
    const limiter = createLinkUseLimiter({ perMinute: 1, maxTokens: 2 });
    limiter.take('x.a', T0);
    limiter.take('x.b', T0);
    expect(limiter.take('x.a', T0).allowed).toBe(false);
    limiter.take('x.c', T0);
    // b was the least recently used and is forgotten; a is still counted.
    expect(limiter.take('x.b', T0).allowed).toBe(true);
    expect(limiter.take('x.c', T0).allowed).toBe(false);
  });
});
