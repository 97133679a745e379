// Digests through the engine core: given a week of events, the digest send's items; what falls
// outside the window; the minItems skip; the bounds on what a user keeps; old stored states.
import { describe, expect, it } from 'vitest';
import type { SendCommand } from '../../platform/contracts.ts';
import { at, compile, ev, identify, rule, run } from '../../test/support/scenarios.ts';
import { createEngineCore } from './engine-core.ts';
import {
  MAX_DIGEST_COUNTED,
  MAX_DIGEST_ITEMS,
  MAX_DIGEST_TEXT,
  type DigestData,
} from './digest.ts';
import { deserializeState, serializeState, type UserState } from './state.ts';

const DAY = 86_400_000;
// Day zero (T0) is Monday 10:00 UTC: a Monday 09:00 UTC schedule first falls at 7d-1h.
const FIRST_MONDAY = at('167h');

function digestRule(digest: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return rule('digest', {
    trigger: { schedule: '0 9 * * 1', timezone: 'UTC' },
    action: { send: { template: 'weekly_digest', channels: ['email'], digest } },
    ...extra,
  });
}

const digestOf = (send: SendCommand) => send.data.digest as DigestData;
const items = (send: SendCommand) =>
  digestOf(send).items.map((i) => [i.type, i.ts - at(0), i.properties]);

interface Row {
  name: string;
  digest: Record<string, unknown>;
  events: ReturnType<typeof ev>[];
  until: string;
  /** Per digest send: [type, ms after T0, properties], newest first; none means no send. */
  expect: [string, number, Record<string, unknown>][][];
  counts?: Record<string, number>[];
}

const rows: Row[] = [
  {
    name: 'the events of the week named by the rule, newest first, with the chosen properties',
    digest: { events: ['Feature Used', 'project_updated'], window: '7d', properties: ['feature'] },
    events: [
      identify('u', '0s', { plan: 'pro' }),
      ev('u', 'Feature Used', '1d', { properties: { feature: 'export', secret: 'x' } }),
      ev('u', 'page', '2d', { properties: { feature: 'not a digest type' } }),
      ev('u', 'project_updated', '3d', { properties: { name: 'Q4' } }),
      ev('u', 'Feature Used', '4d', { properties: { feature: 'share' } }),
    ],
    until: '7d',
    expect: [
      [
        ['Feature Used', 4 * DAY, { feature: 'share' }],
        ['project_updated', 3 * DAY, {}],
        ['Feature Used', 1 * DAY, { feature: 'export' }],
      ],
    ],
    counts: [{ 'Feature Used': 2, project_updated: 1 }],
  },
  {
    name: 'items outside the window are dropped: a 2d window at the first Monday sees only the last two days',
    digest: { events: ['Feature Used'], window: '2d', properties: ['feature'] },
    events: [
      ev('u', 'Feature Used', '1d', { properties: { feature: 'old' } }),
      ev('u', 'Feature Used', '4d', { properties: { feature: 'older than 2d' } }),
      ev('u', 'Feature Used', '5d', { properties: { feature: 'in' } }),
    ],
    until: '7d',
    expect: [[['Feature Used', 5 * DAY, { feature: 'in' }]]],
  },
  {
    name: 'maxItems: the newest N, with the counts of everything in the window',
    digest: { events: ['a', 'b'], window: '7d', maxItems: 2 },
    events: [ev('u', 'a', '1d'), ev('u', 'b', '2d'), ev('u', 'a', '3d'), ev('u', 'a', '4d')],
    until: '7d',
    expect: [
      [
        ['a', 4 * DAY, {}],
        ['a', 3 * DAY, {}],
      ],
    ],
    counts: [{ a: 3, b: 1 }],
  },
  {
    name: 'minItems: too few items, no send',
    digest: { events: ['Feature Used'], window: '7d', minItems: 2 },
    events: [identify('u', '0s', {}), ev('u', 'Feature Used', '1d')],
    until: '7d',
    expect: [],
  },
  {
    name: 'no item at all (default minItems 1): the empty digest never goes out',
    digest: { events: ['Feature Used'], window: '7d' },
    events: [identify('u', '0s', {}), ev('u', 'app_opened', '1d')],
    until: '7d',
    expect: [],
  },
  {
    name: 'each week its own items: the second Monday does not repeat the first week',
    digest: { events: ['x'], window: '7d' },
    events: [ev('u', 'x', '1d'), ev('u', 'x', '8d')],
    until: '14d',
    expect: [[['x', 1 * DAY, {}]], [['x', 8 * DAY, {}]]],
  },
];

describe('digest sends', () => {
  it.each(rows)('$name', (row) => {
    const rs = compile([digestRule(row.digest)]);
    const { sends, summary } = run(rs, row.events, row.until);
    expect(sends.map(items)).toEqual(row.expect);
    if (row.counts)
      expect(
        sends.map((s) => Object.fromEntries(digestOf(s).types.map((t) => [t.type, t.count]))),
      ).toEqual(row.counts);
    if (row.expect.length === 0) expect(summary.byRule.digest?.skipped).toBeGreaterThan(0);
  });

  it('carries the window, its bounds and per-type lists', () => {
    const rs = compile([digestRule({ events: ['a', 'b'], window: '7d', maxItems: 2 })]);
    const { sends } = run(rs, [ev('u', 'a', '1d'), ev('u', 'b', '2d'), ev('u', 'a', '3d')], '7d');
    const d = digestOf(sends[0]!);
    expect(d).toMatchObject({
      window: '7d',
      from: FIRST_MONDAY - 7 * DAY,
      to: FIRST_MONDAY,
      total: 3,
      more: true,
    });
    expect(d.types.map((t) => [t.type, t.count, t.atLeast, t.items.length])).toEqual([
      ['a', 2, false, 1],
      ['b', 1, false, 1],
    ]);
  });

  it('a skip is recorded in the rule history, is not a fire, and does not start the cooldown', () => {
    const rs = compile([
      digestRule({ events: ['x'], window: '7d' }, { limits: { cooldown: '6d' } }),
    ]);
    const { sends, sim } = run(rs, [identify('u', '0s', {}), ev('u', 'x', '8d')], '14d');
    // First Monday: nothing to tell; second Monday: one item, sent despite the 6d cooldown.
    expect(sends.map((s) => s.createdAt)).toEqual([FIRST_MONDAY + 7 * DAY]);
    const history = sim.store.get('u')!.rules.digest!;
    expect(history).toEqual({
      fires: 1,
      lastFiredAt: FIRST_MONDAY + 7 * DAY,
      skipped: 1,
      lastSkippedAt: FIRST_MONDAY,
    });
    const back = deserializeState(serializeState(sim.store.get('u')!));
    expect(back.rules.digest).toEqual(history);
  });

  it('a holdout user is skipped the same way (uplift compares like with like)', () => {
    const rs = compile([
      digestRule({ events: ['x'], window: '7d' }, { experiment: { holdout: 0.999 } }),
    ]);
    const empty = run(rs, [identify('u', '0s', {})], '7d');
    expect(empty.sends).toEqual([]);
    expect(empty.summary.byRule.digest?.skipped).toBe(1);
    const withItem = run(rs, [identify('u', '0s', {}), ev('u', 'x', '1d')], '7d');
    expect(withItem.sends.map((s) => [s.holdout, digestOf(s).total])).toEqual([[true, 1]]);
  });

  it('event-triggered rules carry a digest too (the trigger event included)', () => {
    const rs = compile([
      rule('third', {
        trigger: { event: 'x' },
        conditions: {
          all: [{ fact: 'stats', path: '$.x.count', operator: 'equal', value: 3 }],
        },
        action: {
          send: {
            template: 'weekly_digest',
            channels: ['email'],
            digest: { events: ['x'], window: '1d', minItems: 3 },
          },
        },
      }),
    ]);
    const { sends } = run(rs, [ev('u', 'x', '1h'), ev('u', 'x', '2h'), ev('u', 'x', '3h')]);
    expect(sends).toHaveLength(1);
    expect(digestOf(sends[0]!).total).toBe(3);
  });
});

describe('what a user keeps for digests', () => {
  function feed(ruleSet = compile([digestRule({ events: ['x'], window: '7d', maxItems: 5 })])) {
    const core = createEngineCore({ ruleSet: () => ruleSet });
    let state: UserState | null = null;
    return {
      apply(e: ReturnType<typeof ev>) {
        state = core.apply(state, e, e.ts).state;
        return state!;
      },
    };
  }

  it('only the types some loaded digest names', () => {
    const f = feed();
    f.apply(ev('u', 'x', '0s'));
    const s = f.apply(ev('u', 'y', '1s'));
    expect(Object.keys(s.digest!)).toEqual(['x']);
  });

  it(`at most ${MAX_DIGEST_COUNTED} items per type, newest kept; only the newest maxItems keep their properties; counts say when there may have been more`, () => {
    const rs = compile([
      digestRule({ events: ['x'], window: '7d', maxItems: 5, properties: ['n'] }),
    ]);
    const f = feed(rs);
    const events = Array.from({ length: 60 }, (_, i) =>
      ev('u', 'x', i * 60_000, { properties: { n: i } }),
    );
    let s: UserState | undefined;
    for (const e of events) s = f.apply(e);
    const kept = s!.digest!.x!;
    expect(kept).toHaveLength(MAX_DIGEST_COUNTED);
    expect(kept[0]!.ts).toBe(at(0) + 10 * 60_000);
    expect(kept.map((i) => i.properties.n ?? null)).toEqual([
      ...Array<null>(MAX_DIGEST_COUNTED - 5).fill(null),
      55,
      56,
      57,
      58,
      59,
    ]);
    const { sends } = run(rs, events, '7d');
    expect(digestOf(sends[0]!).types[0]).toMatchObject({ count: 50, atLeast: true });
    expect(digestOf(sends[0]!).items.map((i) => i.properties.n)).toEqual([59, 58, 57, 56, 55]);
  });

  it('nothing older than the widest window, against the newest item', () => {
    const f = feed();
    f.apply(ev('u', 'x', '0s'));
    f.apply(ev('u', 'x', '3d'));
    const s = f.apply(ev('u', 'x', '8d'));
    expect(s.digest!.x!.map((i) => i.ts - at(0))).toEqual([3 * DAY, 8 * DAY]);
  });

  it('late events take their place in time', () => {
    const f = feed();
    f.apply(ev('u', 'x', '2h'));
    const s = f.apply(ev('u', 'x', '1h'));
    expect(s.digest!.x!.map((i) => i.ts - at(0))).toEqual([3_600_000, 7_200_000]);
  });

  it(`at most ${MAX_DIGEST_ITEMS} items over every type, and text properties are cut`, () => {
    const types = Array.from({ length: 5 }, (_, i) => `t${i}`);
    const rs = compile([
      digestRule({ events: types, window: '7d', maxItems: 50, properties: ['name'] }),
    ]);
    const f = feed(rs);
    let s: UserState | undefined;
    for (let i = 0; i < 300; i++)
      s = f.apply(ev('u', types[i % 5]!, i * 1000, { properties: { name: 'n'.repeat(500) } }));
    const kept = Object.values(s!.digest!).flat();
    expect(kept).toHaveLength(MAX_DIGEST_ITEMS);
    // Each type lost items to the bound over all types: its count says "at least".
    const { sends } = run(
      rs,
      Array.from({ length: 300 }, (_, i) => ev('u', types[i % 5]!, i * 1000)),
      '7d',
    );
    expect(digestOf(sends[0]!).types.map((t) => [t.count, t.atLeast])).toEqual(
      types.map(() => [20, true]),
    );
    expect(Math.min(...kept.map((i) => i.ts))).toBe(at(0) + 200 * 1000);
    expect(kept[0]!.properties.name).toHaveLength(MAX_DIGEST_TEXT);
    // A full digest stays a few KB in store.
    expect(Buffer.byteLength(serializeState(s!))).toBeLessThan(16 * 1024);
  });

  it('a rule set without the digest forgets the items at the next event', () => {
    const f = feed();
    f.apply(ev('u', 'x', '0s'));
    const core = createEngineCore({ ruleSet: () => compile([rule('other', {})]) });
    const withItems = deserializeState(serializeState(f.apply(ev('u', 'x', '1s'))));
    const s = core.apply(withItems, ev('u', 'y', '2s'), at('2s')).state!;
    expect(s.digest).toBeUndefined();
    expect(JSON.parse(serializeState(s)).v).toBe(1);
  });
});

describe('stored state with digest items', () => {
  it('round-trips and is written as format 2; without items it stays format 1', () => {
    const rs = compile([digestRule({ events: ['x'], window: '7d', properties: ['p', 'q'] })]);
    const core = createEngineCore({ ruleSet: () => rs });
    const plain = core.apply(null, ev('u', 'y', '0s'), at(0)).state!;
    expect(JSON.parse(serializeState(plain)).v).toBe(1);
    const s = core.apply(
      plain,
      ev('u', 'x', '1s', { properties: { p: 'a', q: 2 } }),
      at('1s'),
    ).state!;
    const text = serializeState(s);
    expect(JSON.parse(text)).toMatchObject({ v: 2, d: { x: [[at('1s'), { p: 'a', q: 2 }]] } });
    expect(serializeState(deserializeState(text))).toBe(text);
  });

  it('a state stored before digests existed (format 1) decodes, and collects items from then on', () => {
    // As the previous release wrote it.
    const old =
      '{"v":1,"u":{"plan":"pro","timezone":"UTC"},"s":{"app_opened":[3,1772445600000,1772618400000]},"r":{"digest":[1,1772441999000]},"e":"AAAAAAAB"}';
    const s = deserializeState(old);
    expect(s.traits).toEqual({ plan: 'pro', timezone: 'UTC' });
    expect(s.rules.digest).toEqual({ fires: 1, lastFiredAt: 1772441999000 });
    expect(s.digest).toBeUndefined();
    const rs = compile([digestRule({ events: ['x'], window: '7d' })]);
    const core = createEngineCore({ ruleSet: () => rs });
    const next = core.apply(s, ev('u', 'x', '1d'), at('1d')).state!;
    expect(next.digest!.x).toHaveLength(1);
    expect(deserializeState(serializeState(next)).stats.app_opened!.count).toBe(3);
  });

  it('refuses formats it does not know', () => {
    expect(() => deserializeState('{"v":3}')).toThrow(/unsupported/);
  });
});
