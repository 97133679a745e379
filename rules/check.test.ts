import { describe, expect, it } from 'vitest';
import { loadMessageTypes } from '../platform/message-types.ts';
import { checkRuleSet, formatRuleError } from './check.ts';

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
  const result = checkRuleSet(files, opts);
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

describe('checkRuleSet: every error as file:jsonpath: message', () => {
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

  it('keeps rule ids starting with "campaign." for the rules campaigns compile to', () => {
    expect(one(rule({ id: 'campaign.friday' }))).toEqual([
      'r.json:$.id: rule ids starting with "campaign." are the rules of campaigns made through the API (/v1/campaigns); give this rule another id',
    ]);
    expect(one(rule({ id: 'campaigns-friday' }))).toEqual([]);
    const asCampaign = checkRuleSet([{ file: 'c', content: rule({ id: 'campaign.friday' }) }], {
      campaignRules: true,
    });
    expect(asCampaign.ok).toBe(true);
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

  it('checks the message type a rule names against the declared types, when they are given', () => {
    const types = loadMessageTypes('rules/message-types.json');
    const check = (content: unknown) => {
      const res = checkRuleSet([{ file: 'r.json', content }], { messageTypes: types });
      return res.ok ? [] : res.errors.map(formatRuleError);
    };
    // A marketing rule without a type keeps the category's behaviour.
    expect(check(rule())).toEqual([]);
    expect(check(rule({ messageType: 'tips' }))).toEqual([]);
    expect(
      check([rule({ messageType: 'product_news' }), rule({ id: 'r2', messageType: 'tipps' })]),
    ).toEqual([
      'r.json:$[1].messageType: unknown message type "tipps" (did you mean "tips"?): types are declared in the message types file ("product_news", "tips", "digest", "offers", "billing", "security")',
    ]);
    expect(check(rule({ messageType: 'billing' }))).toEqual([
      'r.json:$.category: message type "billing" is transactional: set "category": "transactional" or name a marketing type',
    ]);
    expect(
      check(
        rule({
          messageType: 'digest',
          action: { send: { template: 'welcome', channels: ['email', 'sms'] } },
        }),
      ),
    ).toEqual([
      'r.json:$.action.send.channels[1]: message type "digest" is not sent on sms (it declares "email"): users could not choose it there, so it would never be sent',
    ]);
    // A type users cannot switch off goes on every channel.
    expect(
      check(
        rule({
          category: 'transactional',
          messageType: 'billing',
          action: { send: { template: 'welcome', channels: ['webhook'] } },
        }),
      ),
    ).toEqual([]);
    // Without the declared types (a tool that has none), the name is not checked.
    expect(checkRuleSet([{ file: 'r.json', content: rule({ messageType: 'tipps' }) }]).ok).toBe(
      true,
    );
  });
});

describe('checkRuleSet: digests', () => {
  const withDigest = (digest: unknown) =>
    rule({
      action: { send: { template: 'weekly_digest', channels: ['email'], digest } },
    });

  it.each([
    [
      'a missing window',
      { events: ['Feature Used'] },
      ['r.json:$.action.send.digest.window: is required'],
    ],
    [
      'no event types',
      { events: [], window: '7d' },
      ['r.json:$.action.send.digest.events: expected array length to be greater or equal to 1'],
    ],
    [
      'an unknown field, with a suggestion',
      { events: ['x'], window: '7d', maxItem: 5 },
      [
        'r.json:$.action.send.digest.maxItem: unknown field "maxItem" (did you mean "maxItems"?); fields here: "events", "window", "maxItems", "minItems", "properties"',
      ],
    ],
    [
      'a window longer than what the engine keeps',
      { events: ['x'], window: '6w' },
      [
        'r.json:$.action.send.digest.window: a digest looks back at most 31d (the engine keeps no older items), not "6w"',
      ],
    ],
    [
      'a zero window',
      { events: ['x'], window: '0d' },
      ['r.json:$.action.send.digest.window: digest.window must be longer than zero'],
    ],
    [
      'minItems above maxItems (default 20)',
      { events: ['x'], window: '7d', minItems: 21 },
      [
        'r.json:$.action.send.digest.minItems: minItems (21) is more than maxItems (20): such a digest could never be sent',
      ],
    ],
    [
      'maxItems above the bound',
      { events: ['x'], window: '7d', maxItems: 500 },
      ['r.json:$.action.send.digest.maxItems: expected integer to be less or equal to 50'],
    ],
    [
      'an event type the engine makes',
      { events: ['Feature Used', 'timer.fired'], window: '7d' },
      [
        'r.json:$.action.send.digest.events[1]: "timer.fired" is made by the engine itself and is never kept for a digest; name events your app or database sends',
      ],
    ],
  ])('%s', (_name, digest, expected) => {
    expect(one(withDigest(digest))).toEqual(expected);
  });

  it('a valid digest passes, and its event types count as mentioned (their stats are kept)', () => {
    const result = checkRuleSet([
      {
        file: 'r.json',
        content: withDigest({
          events: ['Feature Used', 'project_updated'],
          window: '7d',
          maxItems: 10,
          minItems: 2,
          properties: ['feature'],
        }),
      },
    ]);
    expect(result.ok).toBe(true);
    if (result.ok) expect([...result.checked.eventTypes]).toContain('project_updated');
  });
});
