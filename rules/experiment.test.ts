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

function split(r: RuleDefinition, users: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i < users; i++) {
    const a = assignExperiment(r, `user-${i}`);
    const key = a.holdout ? 'holdout' : `${a.variant}:${a.template}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

describe('assignExperiment', () => {
  it('splits 100k users into holdout and weighted variants within tolerance', () => {
    const n = 100_000;
    const counts = split(
      rule({
        holdout: 0.1,
        variants: [
          { id: 'a', weight: 1 },
          { id: 'b', weight: 1, template: 'activation_tip_b' },
        ],
      }),
      n,
    );
    expect([...counts.keys()].sort()).toEqual([
      'a:activation_tip',
      'b:activation_tip_b',
      'holdout',
    ]);
    // 5 standard deviations of a binomial share at n = 100k is about 0.005.
    expect(Math.abs(counts.get('holdout')! / n - 0.1)).toBeLessThan(0.005);
    expect(Math.abs(counts.get('a:activation_tip')! / n - 0.45)).toBeLessThan(0.008);
    expect(Math.abs(counts.get('b:activation_tip_b')! / n - 0.45)).toBeLessThan(0.008);
  });

  it('honours unequal weights', () => {
    const n = 100_000;
    const counts = split(
      rule({
        variants: [
          { id: 'a', weight: 3 },
          { id: 'b', weight: 1 },
        ],
      }),
      n,
    );
    expect(counts.get('holdout')).toBeUndefined();
    expect(Math.abs(counts.get('a:activation_tip')! / n - 0.75)).toBeLessThan(0.007);
  });

  it('is stable: same user, same group, and pinned so a code change cannot reshuffle live users', () => {
    const r = rule({
      holdout: 0.1,
      variants: [
        { id: 'a', weight: 1 },
        { id: 'b', weight: 1, template: 'activation_tip_b' },
      ],
    });
    const first = Array.from({ length: 1000 }, (_, i) => assignExperiment(r, `u${i}`));
    const again = Array.from({ length: 1000 }, (_, i) => assignExperiment(r, `u${i}`));
    expect(again).toEqual(first);
    const [u, v] = experimentDraws('trial-activation-day3', 'user-42');
    expect([u, v].every((x) => x >= 0 && x < 1)).toBe(true);
    expect({ u: u.toFixed(6), v: v.toFixed(6) }).toMatchInlineSnapshot(`
      {
        "u": "0.022299",
        "v": "0.030251",
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
      const a = assignExperiment(r10, `u${i}`);
      const b = assignExperiment(r20, `u${i}`);
      if (!a.holdout && !b.holdout) expect(b.variant).toBe(a.variant);
      if (a.holdout) expect(b.holdout).toBe(true);
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
