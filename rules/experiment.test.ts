import { describe, expect, it } from 'vitest';
import { assignExperiment, experimentDraws } from './experiment.ts';
import type { RuleDefinition } from './schema.ts';

const rule = (experiment: RuleDefinition['experiment']): RuleDefinition => ({
  id: 'trial-activation-day3',
  category: 'marketing',
  trigger: { event: 'user_registered', delay: '3d' },
  action: { send: { template: 'activation_tip', channels: ['email'] } },
  ...(experiment ? { experiment } : {}),
});

function split(definition: RuleDefinition, users: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i < users; i++) {
    const assignment = assignExperiment(definition, `user-${i}`);
    const key = assignment.holdout ? 'holdout' : `${assignment.variant}:${assignment.template}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

describe('assignExperiment', () => {
  it('splits 100k users into holdout and weighted variants within tolerance', () => {
    const users = 100_000;
    const counts = split(
      rule({
        holdout: 0.1,
        variants: [
          { id: 'a', weight: 1 },
          { id: 'b', weight: 1, template: 'activation_tip_b' },
        ],
      }),
      users,
    );
    expect([...counts.keys()].sort()).toEqual([
      'a:activation_tip',
      'b:activation_tip_b',
      'holdout',
    ]);
    // 5 standard deviations of a binomial share over 100k users is about 0.005.
    expect(Math.abs(counts.get('holdout')! / users - 0.1)).toBeLessThan(0.005);
    expect(Math.abs(counts.get('a:activation_tip')! / users - 0.45)).toBeLessThan(0.008);
    expect(Math.abs(counts.get('b:activation_tip_b')! / users - 0.45)).toBeLessThan(0.008);
  });

  it('honours unequal weights', () => {
    const users = 100_000;
    const counts = split(
      rule({
        variants: [
          { id: 'a', weight: 3 },
          { id: 'b', weight: 1 },
        ],
      }),
      users,
    );
    expect(counts.get('holdout')).toBeUndefined();
    expect(Math.abs(counts.get('a:activation_tip')! / users - 0.75)).toBeLessThan(0.007);
  });

  it('is stable: same user, same group, and pinned so a code change cannot reshuffle live users', () => {
    const abTest = rule({
      holdout: 0.1,
      variants: [
        { id: 'a', weight: 1 },
        { id: 'b', weight: 1, template: 'activation_tip_b' },
      ],
    });
    const first = Array.from({ length: 1000 }, (_, i) => assignExperiment(abTest, `u${i}`));
    const again = Array.from({ length: 1000 }, (_, i) => assignExperiment(abTest, `u${i}`));
    expect(again).toEqual(first);
    const [holdoutDraw, variantDraw] = experimentDraws('trial-activation-day3', 'user-42');
    expect([holdoutDraw, variantDraw].every((x) => x >= 0 && x < 1)).toBe(true);
    expect({
      holdoutDraw: holdoutDraw.toFixed(6),
      variantDraw: variantDraw.toFixed(6),
    }).toMatchInlineSnapshot(`
      {
        "holdoutDraw": "0.022299",
        "variantDraw": "0.030251",
      }
    `);
  });

  it('changing the holdout share does not move non-holdout users between variants', () => {
    const variants = [
      { id: 'a', weight: 1 },
      { id: 'b', weight: 1 },
    ];
    const r10 = rule({ holdout: 0.1, variants });
    const r20 = rule({ holdout: 0.2, variants });
    for (let i = 0; i < 5000; i++) {
      const before = assignExperiment(r10, `u${i}`);
      const after = assignExperiment(r20, `u${i}`);
      if (!before.holdout && !after.holdout) expect(after.variant).toBe(before.variant);
      if (before.holdout) expect(after.holdout).toBe(true);
    }
  });

  it('without an experiment everybody is sent the rule template', () => {
    expect(assignExperiment(rule(undefined), 'u1')).toEqual({
      holdout: false,
      variant: null,
      template: 'activation_tip',
    });
    expect(assignExperiment(rule({ holdout: 0 }), 'u1')).toEqual({
      holdout: false,
      variant: null,
      template: 'activation_tip',
    });
  });
});
