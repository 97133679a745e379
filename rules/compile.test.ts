import { describe, expect, it } from 'vitest';
import { compileRuleSet, formatRuleError } from './compile.ts';
import { locateJsonError } from './json-syntax.ts';
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

function errorsOf(
  files: { file: string; content: unknown }[],
  opts: { templates?: Set<string> } = {},
): string[] {
  const result = compileRuleSet(files, opts);
  return result.ok ? [] : result.errors.map(formatRuleError);
}
const one = (content: unknown, opts: { templates?: Set<string> } = {}) =>
  errorsOf(
    [
      { file: 'r.json', content },
      { file: 'segments/s.json', content: segment() },
    ],
    opts,
  );

const facts = (over: Partial<Facts> = {}): Facts => ({
  event: null,
  user: {},
  stats: {},
  segments: {},
  rule: { fires: 0, lastFiredAt: null },
  now: Date.UTC(2026, 0, 1),
  ...over,
});

describe('compileRuleSet: every error as file:jsonpath: message', () => {
  it.each([
    [
      'schema: missing field',
      (({ action: _, ...rest }) => rest)(rule()),
      'r.json:$.action: is required',
    ],
    [
      'schema: wrong enum, with a suggestion',
      rule({ category: 'marketting' }),
      'r.json:$.category: "marketting" is not allowed: use one of "marketing", "transactional" (did you mean "marketing"?)',
    ],
    [
      'schema: unknown field',
      rule({ limits: { oncePerUsr: true } }),
      'r.json:$.limits.oncePerUsr: unknown field "oncePerUsr" (did you mean "oncePerUser"?); fields here: "oncePerUser", "cooldown"',
    ],
    [
      'bad duration',
      rule({ trigger: { event: 'x', delay: '3days' } }),
      'r.json:$.trigger.delay: invalid duration "3days": use a whole number followed by s, m, h, d or w (e.g. "90s", "15m", "12h", "3d", "2w")',
    ],
    [
      'zero duration',
      rule({ limits: { cooldown: '0h' } }),
      'r.json:$.limits.cooldown: cooldown must be longer than zero',
    ],
    [
      'bad duration in a condition',
      rule({
        conditions: {
          all: [{ fact: 'stats', path: '$.x.last', operator: 'withinLast', value: '7 days' }],
        },
      }),
      'r.json:$.conditions.all[0].value: invalid duration "7 days": use a whole number followed by s, m, h, d or w (e.g. "90s", "15m", "12h", "3d", "2w")',
    ],
    [
      'unknown operator',
      rule({
        conditions: {
          all: [
            { fact: 'user', path: '$.plan', operator: 'equal' },
            { fact: 'user', path: '$.plan', operator: 'equals', value: 1 },
          ],
        },
      }),
      'r.json:$.conditions.all[0].value: is required',
    ],
    [
      'unknown fact',
      rule({
        conditions: { any: [{ fact: 'usr', path: '$.plan', operator: 'equal', value: 'trial' }] },
      }),
      'r.json:$.conditions.any[0].fact: unknown fact "usr": use one of "event", "user", "stats", "segments", "rule", "now" (did you mean "user"?)',
    ],
    [
      'unsupported path',
      rule({
        conditions: { all: [{ fact: 'user', path: '$..plan', operator: 'equal', value: 'trial' }] },
      }),
      'r.json:$.conditions.all[0].path: unsupported path "$..plan" near "..plan": write paths like $.plan, $.properties.amount, $.export_done.count, $["Feature Used"].count or $.items[0]',
    ],
    [
      'stats field typo',
      rule({
        conditions: {
          all: [{ fact: 'stats', path: '$.export_done.cnt', operator: 'equal', value: 0 }],
        },
      }),
      'r.json:$.conditions.all[0].path: stats of an event type have only "count", "first", "last", not "cnt" (did you mean "count"?)',
    ],
    [
      'root must be boolean',
      rule({ conditions: { fact: 'user', path: '$.plan', operator: 'equal', value: 'trial' } }),
      'r.json:$.conditions: conditions must start with "all", "any" or "not", e.g. {"all": [{"fact": "user", "path": "$.plan", "operator": "equal", "value": "trial"}]}',
    ],
    [
      'not takes one condition',
      rule({ conditions: { not: [] } }),
      'r.json:$.conditions.not: "not" takes one condition, not a list; wrap several in {"all": [...]}',
    ],
    [
      'numeric operator needs a number',
      rule({
        conditions: {
          all: [
            { fact: 'event', path: '$.properties.amount', operator: 'greaterThan', value: '5' },
          ],
        },
      }),
      'r.json:$.conditions.all[0].value: greaterThan needs a number, not "5"',
    ],
    [
      'in needs a list',
      rule({
        conditions: { all: [{ fact: 'user', path: '$.plan', operator: 'in', value: 'trial' }] },
      }),
      'r.json:$.conditions.all[0].value: in needs a list of values, e.g. ["trial", "basic"], not "trial"',
    ],
    [
      'bad cron',
      rule({ trigger: { schedule: '61 * * * *', timezone: 'UTC' } }),
      'r.json:$.trigger.schedule: invalid cron "61 * * * *": Constraint error, got value 61 expected range 0-59',
    ],
    [
      'cron with 4 fields',
      rule({ trigger: { schedule: '0 9 * *', timezone: 'UTC' } }),
      'r.json:$.trigger.schedule: invalid cron "0 9 * *": expected 5 fields (minute hour day-of-month month day-of-week), found 4',
    ],
    [
      'unknown timezone',
      rule({ trigger: { schedule: '0 9 * * 1', timezone: 'Europe/Berln' } }),
      'r.json:$.trigger.timezone: unknown timezone "Europe/Berln": use "user" or an IANA name such as "Europe/Berlin" or "UTC"',
    ],
    [
      'trigger kind',
      rule({ trigger: { evnt: 'x' } }),
      'r.json:$.trigger: trigger needs "event" (an event type), "segment" with "on" ("enter" or "exit"), or "schedule" (cron) with "timezone"',
    ],
    [
      'unknown segment in a trigger',
      rule({ trigger: { segment: 'inactive_3d', on: 'enter' } }),
      'r.json:$.trigger.segment: unknown segment "inactive_3d" (did you mean "inactive_30d"?): segments are defined in the segments/ folder ("inactive_30d")',
    ],
    [
      'unknown segment in conditions',
      rule({
        conditions: { all: [{ fact: 'segments', path: '$.vip', operator: 'equal', value: true }] },
      }),
      'r.json:$.conditions.all[0].path: unknown segment "vip": segments are defined in the segments/ folder ("inactive_30d")',
    ],
    [
      'variant weight must be > 0',
      rule({ experiment: { variants: [{ id: 'a', weight: 0 }] } }),
      'r.json:$.experiment.variants[0].weight: expected number to be greater than 0',
    ],
    [
      'holdout in [0, 1)',
      rule({ experiment: { holdout: 1 } }),
      'r.json:$.experiment.holdout: expected number to be less than 1',
    ],
    [
      'duplicate variant id',
      rule({
        experiment: {
          variants: [
            { id: 'a', weight: 1 },
            { id: 'a', weight: 2 },
          ],
        },
      }),
      'r.json:$.experiment.variants[1].id: duplicate variant id "a" (also at $.experiment.variants[0])',
    ],
    [
      'a list holds rules',
      [rule(), 42],
      'r.json:$[1]: a rule must be an object (or a file may hold a list of rule objects)',
    ],
  ])('%s', (_name, content, expected) => {
    expect(one(content)).toContain(expected);
  });

  it('reports the unknown operator with the list of operators', () => {
    const errors = one(
      rule({
        conditions: { all: [{ fact: 'user', path: '$.plan', operator: 'equals', value: 1 }] },
      }),
    );
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(
      /^r\.json:\$\.conditions\.all\[0\]\.operator: unknown operator "equals" \(did you mean "equal"\?\): use one of "equal", /,
    );
  });

  it('reports every error of every file, not just the first', () => {
    const errors = errorsOf([
      { file: 'a.json', content: rule({ category: 'x', trigger: { event: 'e', delay: 'soon' } }) },
      {
        file: 'b.json',
        content: [
          rule({ id: 'r2', conditions: { all: [{ fact: 'nope', operator: 'equal', value: 1 }] } }),
        ],
      },
    ]);
    expect(errors).toEqual([
      'a.json:$.category: "x" is not allowed: use one of "marketing", "transactional"',
      'a.json:$.trigger.delay: invalid duration "soon": use a whole number followed by s, m, h, d or w (e.g. "90s", "15m", "12h", "3d", "2w")',
      'b.json:$[0].conditions.all[0].fact: unknown fact "nope": use one of "event", "user", "stats", "segments", "rule", "now"',
    ]);
  });

  it('rejects duplicate ids across files, even when one of them has other errors', () => {
    expect(
      errorsOf([
        { file: 'a.json', content: rule({ category: 'x' }) },
        { file: 'b.json', content: [rule()] },
      ]),
    ).toContain('b.json:$[0].id: duplicate rule id "r1" (also in a.json at $.id)');
    expect(
      errorsOf([
        { file: 'segments/a.json', content: segment() },
        { file: 'segments/b.json', content: segment() },
      ]),
    ).toEqual([
      'segments/b.json:$.id: duplicate segment id "inactive_30d" (also in segments/a.json at $.id)',
    ]);
  });

  it('checks templates only when a template set is given', () => {
    const content = rule({
      experiment: {
        variants: [
          { id: 'a', weight: 1 },
          { id: 'b', weight: 1, template: 'welcome_b' },
        ],
      },
    });
    expect(one(content)).toEqual([]);
    expect(one(content, { templates: new Set(['welcome']) })).toEqual([
      'r.json:$.experiment.variants[1].template: unknown template "welcome_b" (did you mean "welcome"?): no folder or file of that name in the templates folder',
    ]);
    expect(one(content, { templates: new Set(['welcome', 'welcome_b']) })).toEqual([]);
  });

  it('limits segment conditions to user, stats and now', () => {
    const errors = errorsOf([
      {
        file: 'segments/s.json',
        content: segment({
          conditions: { all: [{ fact: 'event', path: '$.type', operator: 'equal', value: 'x' }] },
        }),
      },
    ]);
    expect(errors).toEqual([
      'segments/s.json:$.conditions.all[0].fact: fact "event" is not available here: use one of "user", "stats", "now"',
    ]);
  });
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
    const a = compileRuleSet(files);
    const b = compileRuleSet([...files].reverse());
    const c = compileRuleSet([
      ...files.slice(0, -1),
      { file: 'segments/s.json', content: segment({ description: 'changed' }) },
    ]);
    if (!a.ok || !b.ok || !c.ok) throw new Error('invalid');
    expect(a.ruleSet.version).toMatch(/^[0-9a-f]{16}$/);
    expect(b.ruleSet.version).toBe(a.ruleSet.version);
    expect(c.ruleSet.version).not.toBe(a.ruleSet.version);
  });
});

describe('locateJsonError', () => {
  it.each([
    ['{\n  "a": 1\n  "b": 2\n}', 3, 3, 'expected "," or "}" after a value (missing comma?)'],
    ['{"a": 1,}', 1, 9, 'trailing comma before "}"'],
    ['[1, 2,]', 1, 7, 'trailing comma before "]"'],
    ['{"a": tru}', 1, 10, 'unexpected "}"'],
    ["{'a': 1}", 1, 2, 'expected a "quoted" field name, found "\'"'],
    ['{"a": "x\ny"}', 1, 9, 'line break or control character inside a string'],
    ['{"a": 1', 1, 8, 'expected "," or "}" after a value (missing comma?)'],
    ['', 1, 1, 'unexpected end of file'],
    ['{} {}', 1, 4, 'unexpected text after the end of the document'],
  ])('%j', (text, line, column, message) => {
    expect(() => JSON.parse(text)).toThrow();
    expect(locateJsonError(text)).toEqual({ line, column, message });
  });
});
