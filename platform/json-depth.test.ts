import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { jsonDepthExceeds, jsonTextDepthExceeds } from './json-depth.ts';

/** Depth by definition: a scalar 0, `{}`/`[]` 1, a container one more than its deepest member. */
function depth(v: unknown): number {
  if (typeof v !== 'object' || v === null) return 0;
  const members = Array.isArray(v) ? v : Object.values(v);
  return 1 + members.reduce<number>((m, x) => Math.max(m, depth(x)), 0);
}

const nested = (levels: number) => `${'{"a":'.repeat(levels - 1)}{}${'}'.repeat(levels - 1)}`;

describe('JSON depth', () => {
  it('counts levels of objects and arrays: {} is one', () => {
    expect(jsonDepthExceeds(1, 0)).toBe(false);
    expect(jsonDepthExceeds({}, 0)).toBe(true);
    expect(jsonDepthExceeds({}, 1)).toBe(false);
    expect(jsonDepthExceeds({ a: [1, { b: null }] }, 2)).toBe(true);
    expect(jsonDepthExceeds({ a: [1, { b: null }] }, 3)).toBe(false);
    expect(jsonTextDepthExceeds(nested(32), 32)).toBe(false);
    expect(jsonTextDepthExceeds(nested(33), 32)).toBe(true);
  });

  it('the text scan ignores brackets inside strings, escaped quotes included', () => {
    const text = JSON.stringify({ s: '{{{[[[', t: 'a \\"{{{ [[', u: '\\', v: [{ w: '"]]]}}}' }] });
    expect(jsonTextDepthExceeds(text, 3)).toBe(false);
    expect(jsonTextDepthExceeds(text, 2)).toBe(true);
  });

  it('is safe on values far deeper than any stack', () => {
    const levels = 200_000;
    const text = `${'['.repeat(levels)}${']'.repeat(levels)}`;
    expect(jsonTextDepthExceeds(text, 32)).toBe(true);
    expect(jsonDepthExceeds(JSON.parse(text), 32)).toBe(true);
  });

  it('both agree with the definition on any JSON value', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 8 }), fc.integer({ min: 0, max: 9 }), (v, limit) => {
        const expected = depth(v) > limit;
        expect(jsonDepthExceeds(v, limit)).toBe(expected);
        expect(jsonTextDepthExceeds(JSON.stringify(v), limit)).toBe(expected);
      }),
      { numRuns: 500 },
    );
  });
});
