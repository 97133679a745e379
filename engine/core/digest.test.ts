// Digests with content: a rule listing `items` is sent the user's recent events of those types
// (newest first, the named properties only), the state keeps no more of them than the rules
// ask for, and a user with nothing to list gets nothing.
import { describe, expect, it } from 'vitest';
import { compile, ev, identify, T0 as SCENARIO_T0 } from '../../test/support/scenarios.ts';
import { createEngineCore } from './engine-core.ts';
import { occurrenceEvent } from './schedule.ts';
import { deserializeState, serializeState, type UserState } from './state.ts';
import { MAX_ITEM_TEXT } from './digest.ts';

const H = 3_600_000;
const DAY = 24 * H;
const T0 = Date.parse('2026-03-02T09:00:00Z'); // a Monday
/** The scenario helpers take times after their own day zero. */
const rel = (ts: number) => ts - SCENARIO_T0;

const digestRule = (items: Record<string, unknown>) =>
  compile([
    {
      id: 'digest',
      category: 'marketing',
      trigger: { schedule: '0 9 * * 1', timezone: 'UTC' },
      action: { send: { template: 'weekly_digest', channels: ['email'], items } },
    },
  ]);
const weekly = {
  events: ['project_updated', 'export_done'],
  within: '7d',
  max: 3,
  properties: ['title', 'url'],
};

function run(ruleSet: ReturnType<typeof compile>, events: ReturnType<typeof ev>[], at: number) {
  const core = createEngineCore({ ruleSet: () => ruleSet });
  let state: UserState | null = core.apply(
    null,
    identify('u1', rel(T0 - 30 * DAY), { email: 'u1@example.com' }),
    T0,
  ).state;
  for (const e of events) state = core.apply(state, e, e.ts).state;
  return {
    core,
    state: state!,
    result: core.apply(state, occurrenceEvent('digest', 'u1', at), at),
  };
}

const project = (ts: number, title: string, extra: Record<string, unknown> = {}) =>
  ev('u1', 'project_updated', rel(ts), {
    properties: { title, url: `https://app.example.com/p/${title}`, secret: 'not kept', ...extra },
  });

describe('digests', () => {
  it("lists the week's items of the named types, newest first, with the named properties only", () => {
    const monday = T0 + 7 * DAY;
    const { result } = run(
      digestRule(weekly),
      [
        project(T0 - DAY, 'too old'),
        project(T0 + DAY, 'first'),
        ev('u1', 'export_done', rel(T0 + 2 * DAY), { properties: { format: 'csv' } }),
        ev('u1', 'app_opened', rel(T0 + 3 * DAY)),
        project(T0 + 4 * DAY, 'second', { title: 'x'.repeat(300) }),
      ],
      monday,
    );
    expect(result.sends).toHaveLength(1);
    expect(result.sends[0]!.data.digest).toEqual({
      items: [
        {
          type: 'project_updated',
          at: new Date(T0 + 4 * DAY).toISOString(),
          properties: { title: 'x'.repeat(MAX_ITEM_TEXT), url: 'https://app.example.com/p/second' },
        },
        {
          type: 'export_done',
          at: new Date(T0 + 2 * DAY).toISOString(),
          properties: { title: null, url: null },
        },
        {
          type: 'project_updated',
          at: new Date(T0 + DAY).toISOString(),
          properties: { title: 'first', url: 'https://app.example.com/p/first' },
        },
      ],
      counts: { project_updated: 2, export_done: 1 },
      total: 3,
      more: false,
      since: new Date(T0).toISOString(),
    });
  });

  it('sends nothing, and does not count as fired, when there is nothing to list', () => {
    const ruleSet = digestRule(weekly);
    const { core, state, result } = run(
      ruleSet,
      [project(T0 - 3 * DAY, 'last month')],
      T0 + 7 * DAY,
    );
    expect(result.sends).toEqual([]);
    expect(result.state!.rules.digest).toBeUndefined();
    // Something to list the week after: that digest goes out.
    const next = core.apply(state, project(T0 + 10 * DAY, 'new'), T0 + 10 * DAY);
    const later = core.apply(
      next.state,
      occurrenceEvent('digest', 'u1', T0 + 14 * DAY),
      T0 + 14 * DAY,
    );
    expect(later.sends).toHaveLength(1);
    expect(later.sends[0]!.data.digest).toMatchObject({ total: 1 });
  });

  it('keeps no more than the rules ask for, and says when more happened than it lists', () => {
    const events = Array.from({ length: 8 }, (_, i) => project(T0 + i * H, `p${i}`));
    const { state, result } = run(digestRule(weekly), events, T0 + DAY);
    // max 3: the three newest are kept, and the digest says there was more.
    expect(state.items!.project_updated!.map(([, p]) => p.title)).toEqual(['p5', 'p6', 'p7']);
    expect(result.sends[0]!.data.digest).toMatchObject({ total: 3, more: true });
    // Nothing of other properties or types is kept; an item older than `within` behind the newest goes.
    expect(Object.keys(state.items!)).toEqual(['project_updated']);
    expect(Object.keys(state.items!.project_updated![0]![1]).sort()).toEqual(['title', 'url']);
    const { state: later } = run(
      digestRule(weekly),
      [...events, project(T0 + 9 * DAY, 'much later')],
      T0 + 9 * DAY,
    );
    expect(later.items!.project_updated!.map(([, p]) => p.title)).toEqual(['much later']);
  });

  it('stores the items with the state, and forgets those no loaded rule lists any more', () => {
    const { state } = run(digestRule(weekly), [project(T0 + H, 'kept')], T0 + DAY);
    const back = deserializeState(serializeState(state));
    expect(back.items).toEqual(state.items);
    const without = compile([
      {
        id: 'other',
        category: 'marketing',
        trigger: { event: 'x' },
        action: { send: { template: 't', channels: ['email'] } },
      },
    ]);
    const core = createEngineCore({ ruleSet: () => without });
    const r = core.apply(back, ev('u1', 'app_opened', rel(T0 + 2 * DAY)), T0 + 2 * DAY);
    expect(r.state!.items).toEqual({});
    expect(deserializeState(serializeState(r.state!)).items).toBeUndefined();
  });

  it('refuses a digest window of zero and more than 20 items in the rule file', () => {
    expect(() => digestRule({ ...weekly, within: '0d' })).toThrow(
      /items\.within must be longer than zero/,
    );
    expect(() => digestRule({ ...weekly, max: 21 })).toThrow(/action\.send\.items\.max/);
  });
});
