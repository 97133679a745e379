import { describe, expect, it } from 'vitest';
import { compareProportions, normalCdf, normalQuantile, rate } from './stats.ts';

describe('normal distribution helpers', () => {
  it.each([
    [0, 0.5],
    [1, 0.8413447461],
    [1.959963985, 0.975],
    [-2.575829304, 0.005],
    [3, 0.998650102],
  ])('normalCdf(%f) = %f', (z, p) => {
    expect(normalCdf(z)).toBeCloseTo(p, 6);
  });

  it.each([
    [0.975, 1.959963985],
    [0.995, 2.575829304],
    [0.95, 1.644853627],
    [0.5, 0],
    [0.01, -2.326347874],
  ])('normalQuantile(%f) = %f', (p, z) => {
    expect(normalQuantile(p)).toBeCloseTo(z, 7);
  });

  it('rejects probabilities outside (0, 1)', () => {
    expect(() => normalQuantile(0)).toThrow(RangeError);
    expect(() => normalQuantile(1)).toThrow(RangeError);
  });
});

describe('compareProportions', () => {
  it('gives the uplift and the 95% Wald interval worked out by hand', () => {
    // p_t = 0.2, p_h = 0.15; se = sqrt(0.2*0.8/1000 + 0.15*0.85/100) = sqrt(0.001435) = 0.0378814
    const r = compareProportions({ n: 1000, x: 200 }, { n: 100, x: 15 });
    expect(r.treated.rate).toBe(0.2);
    expect(r.holdout.rate).toBe(0.15);
    expect(r.uplift).toBeCloseTo(0.05, 12);
    expect(r.relativeUplift).toBeCloseTo(1 / 3, 12);
    expect(r.ci!.low).toBeCloseTo(0.05 - 1.959964 * 0.0378814, 5);
    expect(r.ci!.high).toBeCloseTo(0.05 + 1.959964 * 0.0378814, 5);
    expect(r.ci!.low).toBeLessThan(0);
    // pooled p = 215/1100; z = 0.05 / sqrt(p(1-p)(1/1000+1/100)) = 1.2022; two-sided p = 0.2293
    expect(r.pValue).toBeCloseTo(0.2293, 3);
  });

  it('a large clear effect has an interval above zero and a tiny p-value', () => {
    const r = compareProportions({ n: 10_000, x: 1200 }, { n: 10_000, x: 1000 });
    expect(r.uplift).toBeCloseTo(0.02, 12);
    expect(r.ci!.low).toBeGreaterThan(0);
    expect(r.pValue!).toBeLessThan(0.001);
  });

  it('a wider confidence gives a wider interval', () => {
    const a = compareProportions({ n: 500, x: 60 }, { n: 500, x: 45 }, 0.9);
    const b = compareProportions({ n: 500, x: 60 }, { n: 500, x: 45 }, 0.99);
    expect(b.ci!.high - b.ci!.low).toBeGreaterThan(a.ci!.high - a.ci!.low);
    expect(a.uplift).toBe(b.uplift);
  });

  it('has no uplift or interval when a group is empty', () => {
    const r = compareProportions({ n: 10, x: 3 }, { n: 0, x: 0 });
    expect(r.treated.rate).toBe(0.3);
    expect(r.uplift).toBeNull();
    expect(r.ci).toBeNull();
    expect(r.pValue).toBeNull();
  });

  it('no relative uplift when nobody in the holdout converted; identical groups have p = 1', () => {
    expect(compareProportions({ n: 10, x: 2 }, { n: 10, x: 0 }).relativeUplift).toBeNull();
    expect(compareProportions({ n: 10, x: 0 }, { n: 10, x: 0 }).pValue).toBe(1);
  });

  it('rejects counts that are not counts', () => {
    expect(() => compareProportions({ n: 10, x: 11 }, { n: 10, x: 1 })).toThrow(RangeError);
    expect(() => compareProportions({ n: 10, x: 1.5 }, { n: 10, x: 1 })).toThrow(RangeError);
    expect(() => compareProportions({ n: 10, x: 1 }, { n: 10, x: 1 }, 1)).toThrow(RangeError);
  });

  it('rate is null over nothing', () => {
    expect(rate(0, 0)).toBeNull();
    expect(rate(1, 4)).toBe(0.25);
  });
});
