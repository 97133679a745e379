// The comparison the kill and fault tests judge a run by: duplicate records of a sendId pass,
// a missing sendId, an unexpected one, or one sendId with different content fail.
import { describe, expect, it } from 'vitest';
import type { SendCommand } from '../../platform/contracts.ts';
import { sendCommand } from './delivery-context.ts';
import { compareSends } from './engine-harness.ts';

const send = (sendId: string, over: Partial<SendCommand> = {}) => sendCommand({ sendId, ...over });
const reference = [
  send('a'),
  send('b'),
  send('nudge', {
    ruleId: 'trial-nudge',
    data: { user: { plan: 'trial' }, rule: { id: 'trial-nudge' } },
  }),
];
const delayed = new Set(['trial-nudge']);

describe('compareSends', () => {
  it('accepts the reference with duplicate records, and a delayed send whose trait snapshot differs', () => {
    const nudgeLater = send('nudge', {
      ruleId: 'trial-nudge',
      data: { user: { plan: 'pro' }, rule: { id: 'trial-nudge' } },
    });
    expect(compareSends([send('a'), send('a'), send('b'), nudgeLater], reference, delayed)).toEqual(
      { missing: [], unexpected: [], differing: [], duplicateRecords: 1 },
    );
  });

  it('reports a missing sendId, an unexpected one, and a duplicate record with different content', () => {
    const diff = compareSends(
      [
        send('a'),
        send('a', { template: 'winback' }),
        send('x'),
        send('nudge', {
          ruleId: 'trial-nudge',
          variant: 'b',
          data: { rule: { id: 'trial-nudge' } },
        }),
      ],
      reference,
      delayed,
    );
    expect(diff.missing).toEqual(['b']);
    expect(diff.unexpected).toEqual(['x']);
    expect(diff.differing.map((d) => d.sendId)).toEqual(['a', 'nudge']);
  });
});
