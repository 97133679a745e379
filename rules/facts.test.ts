import { describe, expect, it } from 'vitest';
import { completeStats } from './facts.ts';
import { compileConditions } from './evaluator.ts';

describe('completeStats', () => {
  it("zero-fills every event type of the rule set and keeps the user's own", () => {
    const stats = completeStats(new Set(['export_done', 'app_opened']), {
      app_opened: { count: 2, first: 1, last: 5 },
      other: { count: 1, first: 3, last: 3 },
    });
    expect(stats).toEqual({
      export_done: { count: 0, first: null, last: null },
      app_opened: { count: 2, first: 1, last: 5 },
      other: { count: 1, first: 3, last: 3 },
    });
    const neverExported = compileConditions({
      all: [{ fact: 'stats', path: '$.export_done.count', operator: 'equal', value: 0 }],
    });
    expect(
      neverExported({
        event: null,
        user: {},
        stats,
        segments: {},
        rule: { fires: 0, lastFiredAt: null },
        now: 0,
      }),
    ).toBe(true);
    expect(
      neverExported({
        event: null,
        user: {},
        stats: {},
        segments: {},
        rule: { fires: 0, lastFiredAt: null },
        now: 0,
      }),
    ).toBe(false);
  });
});
