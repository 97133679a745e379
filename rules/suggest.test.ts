import { describe, expect, it } from 'vitest';
import { didYouMean } from './suggest.ts';

describe('didYouMean', () => {
  it.each([
    ['a misspelt name', 'marketting', ['marketing', 'transactional'], 'marketing'],
    ['one letter missing', 'usr', ['event', 'user', 'stats'], 'user'],
    ['an abbreviation of a longer name', 'cnt', ['count', 'first', 'last'], 'count'],
    ['a name written in another case', 'EQUAL', ['equal', 'notEqual'], 'equal'],
    ['the first of equally close names', 'ab', ['ac', 'ad'], 'ac'],
  ])('suggests for %s', (_name, input, known, suggested) => {
    expect(didYouMean(input, known)).toBe(` (did you mean "${suggested}"?)`);
  });

  it.each([
    ['nothing is close', 'vip', ['inactive_30d']],
    ['two edits in a short name that is no abbreviation', 'xyz', ['xab']],
    ['there are no names to suggest', 'welcome', []],
  ])('says nothing when %s', (_name, input, known) => {
    expect(didYouMean(input, known)).toBe('');
  });
});
