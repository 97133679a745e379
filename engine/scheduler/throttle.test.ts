// The fan-out throttle: pages go at the configured rate over a run, nothing is saved up while
// idle, and throttled pages stay small enough for a stop to be felt at once.
import { describe, expect, it } from 'vitest';
import { createThrottle, throttledPageSize } from './throttle.ts';

describe('fan-out throttle', () => {
  it('lets pages go at the rate: the n-th user no earlier than n / rate after the first', () => {
    const clock = { now: 1000 };
    const t = createThrottle(100, () => clock.now);
    expect(t.take(10)).toBe(1000);
    expect(t.take(10)).toBe(1100);
    expect(t.take(50)).toBe(1200);
    // A publisher that takes its time does not lose its place, nor gain one.
    clock.now = 1150;
    expect(t.take(10)).toBe(1700);
  });

  it('over a long run reaches exactly the rate, whatever the page sizes', () => {
    const clock = { now: 0 };
    const t = createThrottle(5000, () => clock.now);
    let sent = 0;
    let last = 0;
    for (let i = 0; i < 1000; i++) {
      const n = 500 + (i % 7) * 100;
      last = t.take(n);
      clock.now = last; // publish when allowed
      sent += n;
    }
    // Users up to the start of the last page went out in `last` ms.
    expect((sent - (500 + (999 % 7) * 100)) / (last / 1000)).toBeCloseTo(5000, 6);
  });

  it('saves nothing up while idle: after a pause the next page waits its turn again', () => {
    const clock = { now: 0 };
    const t = createThrottle(10, () => clock.now);
    t.take(10);
    clock.now = 60_000;
    expect(t.take(10)).toBe(60_000);
    expect(t.take(10)).toBe(61_000);
  });

  it('keeps throttled pages to about a fifth of a second of users', () => {
    expect(throttledPageSize(1000, null)).toBe(1000);
    expect(throttledPageSize(1000, 5000)).toBe(1000);
    expect(throttledPageSize(1000, 1000)).toBe(200);
    expect(throttledPageSize(1000, 20)).toBe(4);
    expect(throttledPageSize(1000, 1)).toBe(1);
    expect(() => createThrottle(0)).toThrow(/positive rate/);
  });
});
