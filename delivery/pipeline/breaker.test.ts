import { describe, expect, it } from 'vitest';
import { backoffMs, createBreaker } from './breaker.ts';

describe('circuit breaker', () => {
  it('opens after the threshold, lets one trial through after the cooldown, closes on success', () => {
    const b = createBreaker({ threshold: 3, cooldownMs: 1000 });
    expect(b.allow(0)).toBe(true);
    b.failure(0);
    b.failure(1);
    expect(b.state(2)).toBe('closed');
    b.failure(2);
    expect(b.state(3)).toBe('open');
    expect(b.allow(500)).toBe(false);
    expect(b.reopensAt()).toBe(1002);
    expect(b.allow(1002)).toBe(true);
    expect(b.allow(1003)).toBe(false);
    b.success();
    expect(b.state(1004)).toBe('closed');
    expect(b.allow(1004)).toBe(true);
  });

  it('a failed trial opens it again for a full cooldown', () => {
    const b = createBreaker({ threshold: 1, cooldownMs: 100 });
    b.failure(0);
    expect(b.allow(100)).toBe(true);
    b.failure(100);
    expect(b.state(150)).toBe('open');
    expect(b.allow(199)).toBe(false);
    expect(b.allow(200)).toBe(true);
  });

  it('a success resets the failure count', () => {
    const b = createBreaker({ threshold: 2, cooldownMs: 100 });
    b.failure(0);
    b.success();
    b.failure(1);
    expect(b.state(2)).toBe('closed');
  });
});

describe('backoff', () => {
  it('doubles per attempt with jitter in the upper half, capped', () => {
    expect(backoffMs(1, 1000, 60_000, () => 0)).toBe(500);
    expect(backoffMs(1, 1000, 60_000, () => 1)).toBe(1000);
    expect(backoffMs(3, 1000, 60_000, () => 1)).toBe(4000);
    expect(backoffMs(3, 1000, 60_000, () => 0)).toBe(2000);
    expect(backoffMs(20, 1000, 60_000, () => 1)).toBe(60_000);
    for (let i = 0; i < 100; i++) {
      const d = backoffMs(4, 100, 10_000);
      expect(d).toBeGreaterThanOrEqual(400);
      expect(d).toBeLessThanOrEqual(800);
    }
  });
});
