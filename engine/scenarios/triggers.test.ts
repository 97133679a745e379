// Table-driven scenarios: given rules and events, expect exactly these sends. One row per
// behaviour a product owner relies on when writing rules.
import { describe, expect, it } from 'vitest';
import type { NormalisedEvent } from '../../platform/contracts.ts';
import { at, brief, compile, ev, identify, rule, run } from '../../test/support/scenarios.ts';

const iso = (offset: string | number) => new Date(at(offset)).toISOString();
const trial = { fact: 'user', path: '$.plan', operator: 'equal', value: 'trial' };
const neverExported = { fact: 'stats', path: '$.export_done.count', operator: 'equal', value: 0 };

interface Scenario {
  name: string;
  rules: unknown[];
  segments?: unknown[];
  events: NormalisedEvent[];
  until?: string;
  expect: {
    rule: string;
    user: string;
    at: string;
    trigger?: string;
    template?: string;
    holdout?: boolean;
  }[];
}

const reg = (user: string, when: string, traits: Record<string, unknown> = { plan: 'trial' }) =>
  ev(user, 'user_registered', when, { traits, id: `reg-${user}` });

const scenarios: Scenario[] = [
  {
    name: 'event trigger: every registration gets a welcome at the event time, attributed to that event',
    rules: [rule('welcome', {})],
    events: [reg('u1', '0s'), reg('u2', '5m')],
    expect: [
      { rule: 'welcome', user: 'u1', at: iso('0s'), trigger: 'reg-u1' },
      { rule: 'welcome', user: 'u2', at: iso('5m'), trigger: 'reg-u2' },
    ],
  },
  {
    name: 'event trigger with where: only orders above 100 match',
    rules: [
      rule('big-order', {
        trigger: {
          event: 'Order Completed',
          where: {
            all: [
              { fact: 'event', path: '$.properties.amount', operator: 'greaterThan', value: 100 },
            ],
          },
        },
      }),
    ],
    events: [
      ev('u1', 'Order Completed', '0s', { properties: { amount: 50 }, id: 'o1' }),
      ev('u1', 'Order Completed', '1h', { properties: { amount: 150 }, id: 'o2' }),
      ev('u2', 'Order Completed', '2h', { properties: {}, id: 'o3' }),
    ],
    expect: [{ rule: 'big-order', user: 'u1', at: iso('1h'), trigger: 'o2' }],
  },
  {
    name: 'event names are matched exactly as sent',
    rules: [rule('feature', { trigger: { event: 'Feature Used' } })],
    events: [ev('u1', 'feature used', '0s'), ev('u1', 'Feature Used', '1m', { id: 'f2' })],
    expect: [{ rule: 'feature', user: 'u1', at: iso('1m'), trigger: 'f2' }],
  },
  {
    name: 'delayed trigger: sent at event time + delay if conditions still hold then; state changes before the timer cancel it',
    rules: [
      rule('activation-day3', {
        trigger: { event: 'user_registered', delay: '3d' },
        conditions: { all: [trial, neverExported] },
      }),
    ],
    events: [
      reg('stays-trial', '0s'),
      reg('exports', '0s'),
      ev('exports', 'export_done', '1d'),
      reg('upgrades', '0s'),
      identify('upgrades', '2d', { plan: 'pro' }),
      reg('pro-from-start', '0s', { plan: 'pro' }),
    ],
    until: '4d',
    expect: [
      { rule: 'activation-day3', user: 'stays-trial', at: iso('3d'), trigger: 'reg-stays-trial' },
    ],
  },
  {
    name: 'delayed trigger: a timer fires before the later event that passes it',
    rules: [
      rule('activation-day3', {
        trigger: { event: 'user_registered', delay: '3d' },
        conditions: { all: [trial, neverExported] },
      }),
    ],
    events: [reg('u1', '0s'), ev('u1', 'export_done', '259201s')],
    expect: [{ rule: 'activation-day3', user: 'u1', at: iso('3d'), trigger: 'reg-u1' }],
  },
  {
    name: 'delayed trigger: where is checked when the event arrives, conditions when the timer fires',
    rules: [
      rule('cart-reminder', {
        trigger: {
          event: 'Cart Updated',
          delay: '1h',
          where: {
            all: [{ fact: 'event', path: '$.properties.items', operator: 'greaterThan', value: 0 }],
          },
        },
        conditions: {
          all: [{ fact: 'stats', path: '$["Order Completed"].count', operator: 'equal', value: 0 }],
        },
      }),
    ],
    events: [
      ev('u1', 'Cart Updated', '0s', { properties: { items: 2 }, id: 'c1' }),
      ev('u2', 'Cart Updated', '0s', { properties: { items: 0 }, id: 'c2' }),
      ev('u3', 'Cart Updated', '0s', { properties: { items: 1 }, id: 'c3' }),
      ev('u3', 'Order Completed', '30m'),
    ],
    until: '2h',
    expect: [{ rule: 'cart-reminder', user: 'u1', at: iso('1h'), trigger: 'c1' }],
  },
  {
    name: 'segment enter: fires once when the user becomes a member, not on every event inside',
    rules: [rule('power-user', { trigger: { segment: 'power-users', on: 'enter' } })],
    segments: [
      {
        id: 'power-users',
        conditions: {
          all: [
            {
              fact: 'stats',
              path: '$["Feature Used"].count',
              operator: 'greaterThanInclusive',
              value: 3,
            },
          ],
        },
      },
    ],
    events: [1, 2, 3, 4, 5].map((i) => ev('u1', 'Feature Used', `${i}m`, { id: `f${i}` })),
    expect: [{ rule: 'power-user', user: 'u1', at: iso('3m') }],
  },
  {
    name: 'segment exit, and re-entry: each exit fires again (no limits)',
    rules: [rule('trial-ended', { trigger: { segment: 'trial', on: 'exit' } })],
    segments: [{ id: 'trial', conditions: { all: [trial] } }],
    events: [
      identify('u1', '0s', { plan: 'trial' }),
      identify('u1', '1d', { plan: 'pro' }),
      identify('u1', '2d', { plan: 'trial' }),
      identify('u1', '3d', { plan: 'pro' }),
      identify('u2', '0s', { plan: 'pro' }),
    ],
    expect: [
      { rule: 'trial-ended', user: 'u1', at: iso('1d') },
      { rule: 'trial-ended', user: 'u1', at: iso('3d') },
    ],
  },
  {
    name: 'time-based segment: users enter "inactive 30d" when the time passes, without a new event; a later open postpones it',
    rules: [rule('winback', { trigger: { segment: 'inactive', on: 'enter' } })],
    segments: [
      {
        id: 'inactive',
        conditions: {
          all: [
            { fact: 'stats', path: '$.user_registered.first', operator: 'olderThan', value: '30d' },
            {
              any: [
                { fact: 'stats', path: '$.app_opened.last', operator: 'olderThan', value: '30d' },
                { fact: 'stats', path: '$.app_opened.count', operator: 'equal', value: 0 },
              ],
            },
          ],
        },
      },
    ],
    events: [
      reg('opened-twice', '0s'),
      ev('opened-twice', 'app_opened', '1d'),
      ev('opened-twice', 'app_opened', '10d'),
      reg('never-opened', '0s'),
      reg('came-back', '0s'),
      ev('came-back', 'app_opened', '10d'),
      ev('came-back', 'app_opened', '35d'),
    ],
    until: '45d',
    expect: [
      { rule: 'winback', user: 'never-opened', at: iso(30 * 86_400_000 + 1) },
      { rule: 'winback', user: 'opened-twice', at: iso(40 * 86_400_000 + 1) },
    ],
  },
  {
    name: 'schedule over a segment, fixed timezone: every Monday 09:00 UTC, members only',
    rules: [
      rule('weekly-digest', {
        trigger: { schedule: '0 9 * * 1', timezone: 'UTC', segment: 'trial' },
      }),
    ],
    segments: [{ id: 'trial', conditions: { all: [trial] } }],
    events: [
      identify('u1', '0s', { plan: 'trial' }),
      identify('u2', '0s', { plan: 'pro' }),
      identify('u3', '8d', { plan: 'trial' }),
    ],
    until: '15d',
    // Day zero is Monday 10:00, so the occurrences are 7d-1h and 14d-1h; u3 joins after the first.
    expect: [
      { rule: 'weekly-digest', user: 'u1', at: iso('167h') },
      { rule: 'weekly-digest', user: 'u1', at: iso('335h') },
      { rule: 'weekly-digest', user: 'u3', at: iso('335h') },
    ],
  },
  {
    name: 'schedule in the user timezone: 09:00 local for each user (New York is still UTC-5 on 2 March 2026)',
    rules: [rule('local-morning', { trigger: { schedule: '0 9 * * *', timezone: 'user' } })],
    events: [
      identify('berlin', '0s', { timezone: 'Europe/Berlin' }),
      identify('ny', '0s', { timezone: 'America/New_York' }),
      identify('nozone', '0s', {}),
    ],
    until: '1d',
    expect: [
      // Day zero is 2 March 10:00 UTC: Berlin 09:00 (08:00Z) on 3 March, UTC 09:00 on 3 March, New York 09:00 EST (14:00Z) on 2 March.
      { rule: 'local-morning', user: 'ny', at: '2026-03-02T14:00:00.000Z' },
      { rule: 'local-morning', user: 'berlin', at: '2026-03-03T08:00:00.000Z' },
      { rule: 'local-morning', user: 'nozone', at: '2026-03-03T09:00:00.000Z' },
    ],
  },
  {
    name: 'schedule with conditions: the audience is narrowed by conditions at the occurrence',
    rules: [
      rule('inactive-nudge', {
        trigger: { schedule: '0 12 * * *', timezone: 'UTC' },
        conditions: {
          all: [{ fact: 'stats', path: '$.login.count', operator: 'equal', value: 0 }],
        },
      }),
    ],
    events: [identify('u1', '0s', {}), identify('u2', '0s', {}), ev('u2', 'login', '1h')],
    until: '1d',
    expect: [{ rule: 'inactive-nudge', user: 'u1', at: '2026-03-02T12:00:00.000Z' }],
  },
  {
    name: 'oncePerUser: at most one send per user, ever',
    rules: [
      rule('first-feature', { trigger: { event: 'Feature Used' }, limits: { oncePerUser: true } }),
    ],
    events: [
      ev('u1', 'Feature Used', '0s', { id: 'a' }),
      ev('u1', 'Feature Used', '10d'),
      ev('u2', 'Feature Used', '1d', { id: 'b' }),
    ],
    expect: [
      { rule: 'first-feature', user: 'u1', at: iso('0s'), trigger: 'a' },
      { rule: 'first-feature', user: 'u2', at: iso('1d'), trigger: 'b' },
    ],
  },
  {
    name: 'oncePerUser with a delay: two triggers, one send',
    rules: [
      rule('followup', {
        trigger: { event: 'Trial Started', delay: '1d' },
        limits: { oncePerUser: true },
      }),
    ],
    events: [
      ev('u1', 'Trial Started', '0s', { id: 't1' }),
      ev('u1', 'Trial Started', '1h', { id: 't2' }),
    ],
    until: '3d',
    expect: [{ rule: 'followup', user: 'u1', at: iso('1d'), trigger: 't1' }],
  },
  {
    name: 'cooldown: not again within 1 day',
    rules: [rule('cart', { trigger: { event: 'Cart Updated' }, limits: { cooldown: '1d' } })],
    events: [
      ev('u1', 'Cart Updated', '0s', { id: 'c1' }),
      ev('u1', 'Cart Updated', '2h'),
      ev('u1', 'Cart Updated', '1439m'),
      ev('u1', 'Cart Updated', '1d', { id: 'c4' }),
    ],
    expect: [
      { rule: 'cart', user: 'u1', at: iso('0s'), trigger: 'c1' },
      { rule: 'cart', user: 'u1', at: iso('1d'), trigger: 'c4' },
    ],
  },
  {
    name: 'cooldown counts segment-triggered sends too',
    rules: [
      rule('back-in-segment', {
        trigger: { segment: 'trial', on: 'enter' },
        limits: { cooldown: '7d' },
      }),
    ],
    segments: [{ id: 'trial', conditions: { all: [trial] } }],
    events: [
      identify('u1', '0s', { plan: 'trial' }),
      identify('u1', '1d', { plan: 'pro' }),
      identify('u1', '2d', { plan: 'trial' }),
      identify('u1', '3d', { plan: 'pro' }),
      identify('u1', '8d', { plan: 'trial' }),
    ],
    expect: [
      { rule: 'back-in-segment', user: 'u1', at: iso('0s') },
      { rule: 'back-in-segment', user: 'u1', at: iso('8d') },
    ],
  },
  {
    name: 'enabled: false never fires and sets no timers',
    rules: [
      rule('off', { enabled: false }),
      rule('off-delayed', { enabled: false, trigger: { event: 'user_registered', delay: '1h' } }),
      rule('on', {}),
    ],
    events: [reg('u1', '0s')],
    until: '1d',
    expect: [{ rule: 'on', user: 'u1', at: iso('0s') }],
  },
  {
    name: 'conditions read the state including the current event (identify traits merged first)',
    rules: [
      rule('vip-welcome', {
        trigger: { event: 'identify' },
        conditions: {
          all: [
            { fact: 'user', path: '$.tier', operator: 'equal', value: 'vip' },
            { fact: 'stats', path: '$.identify.count', operator: 'equal', value: 1 },
          ],
        },
      }),
    ],
    events: [
      identify('u1', '0s', { tier: 'vip' }),
      identify('u1', '1h', { tier: 'vip' }),
      identify('u2', '0s', { tier: 'basic' }),
    ],
    expect: [{ rule: 'vip-welcome', user: 'u1', at: iso('0s') }],
  },
  {
    name: 'per-user order: a trait set before the trigger counts, one set after does not; users do not leak into each other',
    rules: [
      rule('pro-welcome', {
        conditions: { all: [{ fact: 'user', path: '$.plan', operator: 'equal', value: 'pro' }] },
      }),
    ],
    events: [
      identify('before', '0s', { plan: 'pro' }),
      ev('before', 'user_registered', '1s', { id: 'r-before' }),
      ev('after', 'user_registered', '0s', { id: 'r-after' }),
      identify('after', '1s', { plan: 'pro' }),
    ],
    expect: [{ rule: 'pro-welcome', user: 'before', at: iso('1s'), trigger: 'r-before' }],
  },
  {
    name: 'the rule fact: a rule can look at its own history',
    rules: [
      rule('second-order', {
        trigger: { event: 'Order Completed' },
        conditions: {
          all: [
            { fact: 'rule', path: '$.fires', operator: 'equal', value: 0 },
            { fact: 'stats', path: '$["Order Completed"].count', operator: 'equal', value: 2 },
          ],
        },
      }),
    ],
    events: [
      ev('u1', 'Order Completed', '0s'),
      ev('u1', 'Order Completed', '1d', { id: 'o2' }),
      ev('u1', 'Order Completed', '2d'),
    ],
    expect: [{ rule: 'second-order', user: 'u1', at: iso('1d'), trigger: 'o2' }],
  },
  {
    name: 'priority: sends of one event come highest priority first',
    rules: [
      rule('low', { priority: 1 }),
      rule('high', { priority: 90 }),
      rule('mid', { priority: 50 }),
    ],
    events: [reg('u1', '0s')],
    expect: ['high', 'mid', 'low'].map((r) => ({ rule: r, user: 'u1', at: iso('0s') })),
  },
  {
    name: 'user_deleted erases state: pending timers do not send, and a returning id starts from nothing',
    rules: [
      rule('welcome', { limits: { oncePerUser: true } }),
      rule('day1', { trigger: { event: 'user_registered', delay: '1d' } }),
    ],
    events: [
      reg('u1', '0s'),
      ev('u1', 'user_deleted', '1h'),
      ev('u1', 'user_registered', '2d', { id: 'reg-again', traits: {} }),
    ],
    until: '60h',
    expect: [
      { rule: 'welcome', user: 'u1', at: iso('0s'), trigger: 'reg-u1' },
      { rule: 'welcome', user: 'u1', at: iso('2d'), trigger: 'reg-again' },
    ],
  },
  {
    name: 'replaying an event id has no second effect (no send, no count)',
    rules: [
      rule('second-login', {
        trigger: { event: 'login' },
        conditions: {
          all: [{ fact: 'stats', path: '$.login.count', operator: 'equal', value: 2 }],
        },
      }),
      rule('each-login', { trigger: { event: 'login' } }),
    ],
    events: [
      ev('u1', 'login', '0s', { id: 'l1' }),
      ev('u1', 'login', '0s', { id: 'l1' }),
      ev('u1', 'login', '1h', { id: 'l2' }),
    ],
    expect: [
      { rule: 'each-login', user: 'u1', at: iso('0s'), trigger: 'l1' },
      { rule: 'each-login', user: 'u1', at: iso('1h'), trigger: 'l2' },
      { rule: 'second-login', user: 'u1', at: iso('1h'), trigger: 'l2' },
    ],
  },
];

describe('scenarios: rules + events -> sends', () => {
  for (const sc of scenarios) {
    it(sc.name, () => {
      const rs = compile(sc.rules, sc.segments ?? []);
      const { sends } = run(rs, sc.events, sc.until);
      const got = sends.map(brief).map((b) => {
        const row = sc.expect.find((e) => e.rule === b.rule && e.user === b.user && e.at === b.at);
        // Compare only the fields a row states.
        return row
          ? Object.fromEntries(Object.keys(row).map((k) => [k, b[k as keyof typeof b]]))
          : b;
      });
      expect(got).toEqual(sc.expect);
    });
  }
});
