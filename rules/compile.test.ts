import { describe, expect, it } from 'vitest';
import { checkRuleSet, formatRuleError } from './check.ts';
import { compileRuleSet, extendRuleSet } from './compile.ts';
import type { Facts } from './types.ts';

const rule = (over: Record<string, unknown> = {}) => ({
  id: 'r1',
  category: 'marketing',
  trigger: { event: 'user_registered' },
  action: { send: { template: 'welcome', channels: ['email'] } },
  ...over,
});
const segment = (over: Record<string, unknown> = {}) => ({
  id: 'inactive_30d',
  conditions: {
    all: [{ fact: 'stats', path: '$.app_opened.last', operator: 'olderThan', value: '30d' }],
  },
  ...over,
});

const facts = (over: Partial<Facts> = {}): Facts => ({
  event: null,
  user: {},
  stats: {},
  segments: {},
  rule: { fires: 0, lastFiredAt: null },
  now: Date.UTC(2026, 0, 1),
  ...over,
});

describe('compileRuleSet: the compiled set', () => {
  const files = [
    {
      file: 'a.json',
      content: [
        rule({ id: 'low', priority: 1 }),
        rule({ id: 'high', priority: 90, trigger: { event: 'user_registered', delay: '3d' } }),
      ],
    },
    {
      file: 'b.json',
      content: rule({
        id: 'also-high',
        priority: 90,
        limits: { cooldown: '12h' },
        goal: { event: 'subscription_started', within: '7d' },
        expiresAfter: '2d',
      }),
    },
    { file: 'c.json', content: rule({ id: 'off', enabled: false }) },
    {
      file: 'd.json',
      content: rule({ id: 'seg', trigger: { segment: 'inactive_30d', on: 'enter' } }),
    },
    {
      file: 'e.json',
      content: rule({
        id: 'digest',
        trigger: { schedule: '0 9 * * 1', timezone: 'user', segment: 'inactive_30d' },
      }),
    },
    {
      file: 'f.json',
      content: rule({
        id: 'paid',
        trigger: {
          event: 'payment_failed',
          where: {
            all: [
              { fact: 'event', path: '$.properties.amount', operator: 'greaterThan', value: 0 },
            ],
          },
        },
        conditions: {
          all: [
            { fact: 'stats', path: '$["Feature Used"].count', operator: 'greaterThan', value: 2 },
          ],
        },
      }),
    },
    { file: 'segments/s.json', content: segment() },
  ];

  it('indexes enabled rules by trigger, priority first then id', () => {
    const result = compileRuleSet(files);
    if (!result.ok) throw new Error(result.errors.map(formatRuleError).join('\n'));
    const rs = result.ruleSet;
    expect(rs.byEvent.get('user_registered')!.map((r) => r.def.id)).toEqual([
      'also-high',
      'high',
      'low',
    ]);
    expect(rs.bySegment.get('inactive_30d:enter')!.map((r) => r.def.id)).toEqual(['seg']);
    expect(rs.scheduled.map((r) => r.def.id)).toEqual(['digest']);
    expect(rs.rules.map((r) => r.def.id)).toContain('off');
    expect([...rs.byEvent.values()].flat().map((r) => r.def.id)).not.toContain('off');
    expect([...rs.eventTypes].sort()).toEqual([
      'Feature Used',
      'app_opened',
      'payment_failed',
      'subscription_started',
      'user_registered',
    ]);
    const high = rs.rules.find((r) => r.def.id === 'high')!;
    expect(high.delayMs).toBe(3 * 86_400_000);
    expect(high.def.enabled).toBe(true);
    const alsoHigh = rs.rules.find((r) => r.def.id === 'also-high')!;
    expect([
      alsoHigh.cooldownMs,
      alsoHigh.goalWithinMs,
      alsoHigh.expiresAfterMs,
      alsoHigh.where,
    ]).toEqual([12 * 3_600_000, 7 * 86_400_000, 2 * 86_400_000, null]);
    expect(rs.rules.find((r) => r.def.id === 'low')!.def.priority).toBe(1);
    expect(rs.rules.find((r) => r.def.id === 'seg')!.def.priority).toBe(0);
    expect(Object.isFrozen(high.def.trigger)).toBe(true);
  });

  it('compiles where, conditions and segment tests into predicates', () => {
    const result = compileRuleSet(files);
    if (!result.ok) throw new Error('invalid');
    const paid = result.ruleSet.rules.find((r) => r.def.id === 'paid')!;
    const event = {
      id: 'e1',
      userId: 'u1',
      type: 'payment_failed',
      ts: 0,
      receivedAt: 0,
      source: 'test',
      properties: { amount: 12 },
    };
    expect(paid.where!(facts({ event }))).toBe(true);
    expect(paid.where!(facts({ event: { ...event, properties: { amount: 0 } } }))).toBe(false);
    expect(
      paid.conditions(facts({ stats: { 'Feature Used': { count: 3, first: 1, last: 2 } } })),
    ).toBe(true);
    expect(
      paid.conditions(facts({ stats: { 'Feature Used': { count: 0, first: null, last: null } } })),
    ).toBe(false);
    const now = Date.UTC(2026, 0, 1);
    const seg = result.ruleSet.segments[0]!;
    expect(
      seg.test(
        facts({ now, stats: { app_opened: { count: 1, first: 0, last: now - 31 * 86_400_000 } } }),
      ),
    ).toBe(true);
    expect(
      seg.test(
        facts({ now, stats: { app_opened: { count: 1, first: 0, last: now - 29 * 86_400_000 } } }),
      ),
    ).toBe(false);
    expect(result.ruleSet.rules.find((r) => r.def.id === 'low')!.conditions(facts())).toBe(true);
  });

  it('has a content version that ignores file order and changes with content', () => {
    const original = compileRuleSet(files);
    const reordered = compileRuleSet([...files].reverse());
    const edited = compileRuleSet([
      ...files.slice(0, -1),
      { file: 'segments/s.json', content: segment({ description: 'changed' }) },
    ]);
    if (!original.ok || !reordered.ok || !edited.ok) throw new Error('invalid');
    expect(original.ruleSet.version).toMatch(/^[0-9a-f]{16}$/);
    expect(reordered.ruleSet.version).toBe(original.ruleSet.version);
    expect(edited.ruleSet.version).not.toBe(original.ruleSet.version);
  });
});

describe('compileRuleSet: a set that fails its checks', () => {
  it('returns every error the check found, grouped by file, and no rule set', () => {
    const files = [
      { file: 'a.json', content: rule({ category: 'x', trigger: { event: 'e', delay: 'soon' } }) },
      {
        file: 'b.json',
        content: [
          rule({ id: 'r2', conditions: { all: [{ fact: 'nope', operator: 'equal', value: 1 }] } }),
        ],
      },
    ];
    const result = compileRuleSet(files);
    const check = checkRuleSet(files);
    if (result.ok || check.ok) throw new Error('expected errors');
    expect(result.errors.map(formatRuleError)).toEqual([
      'a.json:$.category: "x" is not allowed: use one of "marketing", "transactional"',
      'a.json:$.trigger.delay: invalid duration "soon": use a whole number followed by s, m, h, d or w (e.g. "90s", "15m", "12h", "3d", "2w")',
      'b.json:$[0].conditions.all[0].fact: unknown fact "nope": use one of "event", "user", "stats", "segments", "rule", "now"',
    ]);
    expect(result.errors).toEqual(check.errors);
  });
});

describe('extendRuleSet: a compiled set with more rules', () => {
  const base = compileRuleSet([
    {
      file: 'r.json',
      content: {
        id: 'welcome',
        category: 'transactional',
        trigger: { event: 'user_registered' },
        action: { send: { template: 'welcome', channels: ['email'] } },
      },
    },
    {
      file: 'segments/pro.json',
      content: {
        id: 'pro',
        conditions: { all: [{ fact: 'user', path: '$.plan', operator: 'equal', value: 'pro' }] },
      },
    },
  ]);
  if (!base.ok) throw new Error('base does not compile');
  const extra = (segment: string) => ({
    file: 'campaign:c1',
    content: {
      id: 'campaign.c1',
      category: 'marketing',
      trigger: { event: 'campaign.member' },
      conditions: {
        all: [{ fact: 'segments', path: `$.${segment}`, operator: 'equal', value: true }],
      },
      action: { send: { template: 'news', channels: ['email'] } },
    },
  });

  it('indexes and versions the base and the added rules as one set, the base unchanged', () => {
    const res = extendRuleSet(base.ruleSet, [extra('pro')]);
    expect(res.ok).toBe(true);
    if (!res.ok) return;
    expect(res.ruleSet.rules.map((r) => r.def.id)).toEqual(['campaign.c1', 'welcome']);
    expect(res.ruleSet.byEvent.get('campaign.member')?.map((r) => r.def.id)).toEqual([
      'campaign.c1',
    ]);
    expect(res.ruleSet.segments.map((s) => s.def.id)).toEqual(['pro']);
    expect(res.ruleSet.version).not.toBe(base.ruleSet.version);
    expect(base.ruleSet.rules).toHaveLength(1);
    expect(extendRuleSet(base.ruleSet, [])).toEqual({ ok: true, ruleSet: base.ruleSet });
  });

  it("reports what is wrong with the added rules against the base's segments", () => {
    const res = extendRuleSet(base.ruleSet, [extra('prp')]);
    expect(res.ok).toBe(false);
    if (res.ok) return;
    expect(res.errors.map(formatRuleError)).toEqual([
      expect.stringMatching(/^campaign:c1:\$\.conditions\.all\[0\]\.path: unknown segment "prp"/),
    ]);
  });
});

describe('compileRuleSet: digests', () => {
  const digestRule = (id: string, digest: Record<string, unknown>, enabled = true) =>
    rule({
      id,
      enabled,
      action: { send: { template: 'weekly_digest', channels: ['email'], digest } },
    });

  it('applies the defaults and keeps, per type, the widest need of every loaded rule (disabled ones too)', () => {
    const res = compileRuleSet([
      {
        file: 'r.json',
        content: [
          digestRule('a', { events: ['x', 'y'], window: '7d', properties: ['p'] }),
          digestRule(
            'b',
            { events: ['y'], window: '14d', maxItems: 30, minItems: 3, properties: ['q', 'p'] },
            false,
          ),
          rule({ id: 'plain' }),
        ],
      },
    ]);
    expect(res.ok).toBe(true);
    if (!res.ok) return;
    const a = res.ruleSet.rules.find((r) => r.def.id === 'a')!;
    expect(a.digest).toEqual({
      events: ['x', 'y'],
      window: '7d',
      windowMs: 7 * 86_400_000,
      maxItems: 20,
      minItems: 1,
      properties: ['p'],
    });
    expect(res.ruleSet.rules.find((r) => r.def.id === 'plain')!.digest).toBeNull();
    expect(Object.fromEntries(res.ruleSet.digestKeep)).toEqual({
      x: { maxAgeMs: 7 * 86_400_000, maxItems: 20, properties: ['p'] },
      y: { maxAgeMs: 14 * 86_400_000, maxItems: 30, properties: ['p', 'q'] },
    });
  });
});
