import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createKeySpace, decodeTag, encodeTag } from './keys.ts';

describe('Redis key space', () => {
  const keys = createKeySpace('lc:');

  it('gives different user ids different keys, braces or not', () => {
    const ids = ['a{1', 'a}1', 'a_1', 'a%7B1', 'a%1', '{}', '', '%'];
    const stateKeys = ids.map((id) => keys.user(id, 'state'));
    expect(new Set(stateKeys).size).toBe(ids.length);
  });

  it('keeps one hash tag per user: no brace inside it', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (id) => {
        const key = keys.user(id, 'inbox');
        const tag = key.slice(key.indexOf('{') + 1, key.indexOf('}'));
        expect(key).toBe(`lc:{${tag}}:inbox`);
        expect(tag).not.toMatch(/[{}]/);
      }),
    );
  });

  it('is one-to-one and reversible', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), (a, b) => {
        expect(decodeTag(encodeTag(a))).toBe(a);
        if (a !== b) expect(encodeTag(a)).not.toBe(encodeTag(b));
      }),
      { numRuns: 2000 },
    );
  });

  it('keeps the keys of ids without %, { or } as they were', () => {
    expect(keys.user('user-42_x@example', 'state')).toBe('lc:{user-42_x@example}:state');
    expect(keys.partition('lifecycle.events', 3, 'timers')).toBe('lc:{p3}:lifecycle.events:timers');
  });
});
