import { describe, expect, it } from 'vitest';
import { bindParams } from '../platform/analytics-store.ts';
import { deliverabilitySql, funnelSql, upliftSql } from './queries.ts';

const all = [funnelSql, upliftSql, deliverabilitySql];

describe('analytics SQL', () => {
  it.each(all.map((f) => [f.name, f] as const))('%s filters by rule only when rules are given', (_n, f) => {
    expect(f('lc', { from: 0, to: 1 })).not.toMatch(/ruleIds/);
    expect(f('lc', { from: 0, to: 1, ruleIds: ['r1'] })).toMatch(/has\(\{ruleIds:Array\(String\)\}, rule_id\)/);
  });

  it.each(all.map((f) => [f.name, f] as const))('%s binds to plain literals for servers without query parameters', (_n, f) => {
    const sql = bindParams(f('lc', { from: 1000, to: 2000, ruleIds: ["o'brien"] }), { from: 1000, to: 2000, ruleIds: ["o'brien"] });
    expect(sql).not.toMatch(/\{[a-zA-Z]+:/);
    expect(sql).toContain("has(['o\\'brien'], rule_id)");
    // Nothing 18.16 lacks: no window functions, no FINAL-dependent counting.
    expect(sql).not.toMatch(/\bOVER\s*\(|\bFINAL\b/);
  });

  it('refuses unsafe database names', () => {
    expect(() => funnelSql('lc.x', { from: 0, to: 1 })).toThrow(/database name/);
  });
});
