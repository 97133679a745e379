import { describe, expect, it } from 'vitest';
import { bindParams } from './store.ts';
import {
  churnParams,
  churnSql,
  deliverabilitySql,
  funnelSql,
  reengagementParams,
  reengagementSql,
  retentionParams,
  retentionSql,
  upliftSql,
} from './queries.ts';

const all = [funnelSql, upliftSql, deliverabilitySql, reengagementSql];

describe('analytics SQL', () => {
  it.each(all.map((f) => [f.name, f] as const))(
    '%s filters by rule only when rules are given',
    (_n, f) => {
      expect(f('lc', { from: 0, to: 1 })).not.toMatch(/ruleIds/);
      expect(f('lc', { from: 0, to: 1, ruleIds: ['r1'] })).toMatch(
        /has\(\{ruleIds:Array\(String\)\}, rule_id\)/,
      );
    },
  );

  it.each(all.map((f) => [f.name, f] as const))(
    '%s binds to plain literals for servers without query parameters',
    (_n, f) => {
      const extra = { inactiveMs: 1, activeFrom: 0, returnWithinMs: 1 };
      const sql = bindParams(f('lc', { from: 1000, to: 2000, ruleIds: ["o'brien"] }), {
        from: 1000,
        to: 2000,
        ruleIds: ["o'brien"],
        ...extra,
      });
      expect(sql).not.toMatch(/\{[a-zA-Z]+:/);
      expect(sql).toContain("has(['o\\'brien'], rule_id)");
      // Nothing 18.16 lacks: no window functions, no FINAL-dependent counting.
      expect(sql).not.toMatch(/\bOVER\s*\(|\bFINAL\b/);
    },
  );

  it('retention and churn bind every parameter they use, user text only as quoted literals', () => {
    const r = bindParams(
      retentionSql('lc'),
      retentionParams({ from: 0, to: 10, periodDays: 7, periods: 4, signupEvent: "x' OR 1=1" }),
    );
    expect(r).toContain("type = 'x\\' OR 1=1'");
    expect(r).not.toMatch(/\{[a-zA-Z]+:|\bOVER\s*\(/);
    const c = bindParams(
      churnSql('lc'),
      churnParams({
        from: 0,
        to: 5 * 86_400_000,
        inactiveDays: 2,
        cancelEvent: 'subscription_cancelled',
      }),
    );
    expect(c).toContain(`last_active_ms < ${3 * 86_400_000}`);
    expect(c).not.toMatch(/\{[a-zA-Z]+:/);
  });

  it('checks the options it cannot leave to the database', () => {
    expect(() =>
      retentionParams({ from: 0, to: 1, periodDays: 3, periods: 1, signupEvent: 's' }),
    ).toThrow(/periodDays/);
    expect(() =>
      retentionParams({ from: 0, to: 1, periodDays: 7, periods: -1, signupEvent: 's' }),
    ).toThrow(/periods/);
    expect(() => churnParams({ from: 0, to: 1, inactiveDays: 0, cancelEvent: 'c' })).toThrow(
      /inactiveDays/,
    );
    expect(() =>
      reengagementParams({ from: 5, to: 1, inactiveDays: 1, returnWithinDays: 1 }),
    ).toThrow(/window/);
    // Activity before the epoch is never asked for.
    expect(
      reengagementParams({ from: 1000, to: 2000, inactiveDays: 1, returnWithinDays: 1 }).activeFrom,
    ).toBe(0);
  });

  it('refuses unsafe database names', () => {
    expect(() => funnelSql('lc.x', { from: 0, to: 1 })).toThrow(/database name/);
    expect(() => retentionSql('lc;drop')).toThrow(/database name/);
  });
});
