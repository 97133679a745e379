import { describe, expect, it } from 'vitest';
import { compile, ev, identify, rule } from '../../test/support/scenarios.ts';
import { createEngineCore } from './engine-core.ts';
import {
  RECENT_IDS,
  MAX_TRACKED_TYPES,
  deserializeState,
  serializeState,
  StateFormatError,
  type UserState,
} from './state.ts';
import type { NormalisedEvent } from '../../platform/contracts.ts';

const rs = compile(
  [
    rule('welcome', { limits: { oncePerUser: true } }),
    rule('tip', {
      trigger: { event: 'Feature Used' },
      conditions: {
        all: [{ fact: 'stats', path: '$.export_done.count', operator: 'equal', value: 0 }],
      },
      limits: { cooldown: '1d' },
    }),
    rule('order', { trigger: { event: 'Order Completed' } }),
  ],
  [
    {
      id: 'active_7d',
      conditions: {
        all: [{ fact: 'stats', path: '$.app_opened.last', operator: 'withinLast', value: '7d' }],
      },
    },
    {
      id: 'trial',
      conditions: { all: [{ fact: 'user', path: '$.plan', operator: 'equal', value: 'trial' }] },
    },
  ],
);

function typicalUser(): UserState {
  const core = createEngineCore({ ruleSet: () => rs });
  let s: UserState | null = null;
  const feed = (e: NormalisedEvent) => (s = core.apply(s, e, e.ts).state);
  feed(
    ev('user-4f1c2a9e-7b21-4c1d-9a55-2f6d8e0b7c13', 'user_registered', '0s', {
      id: '5b7e0c52-3b7a-4a7b-8f71-0a8d6f2f1e11',
      traits: {
        email: 'jane.doe@example.com',
        plan: 'trial',
        name: 'Jane Doe',
        locale: 'en-GB',
        timezone: 'Europe/London',
        country: 'GB',
        signupSource: 'ads',
      },
    }),
  );
  const types = [
    'app_opened',
    'Feature Used',
    'page',
    'export_done',
    'Order Completed',
    'Cart Updated',
    'login',
    'Search Performed',
  ];
  for (let i = 0; i < 200; i++)
    feed(
      ev('user-4f1c2a9e-7b21-4c1d-9a55-2f6d8e0b7c13', types[i % types.length]!, i * 3_600_000, {
        id: `4a0d1b9e-0c5f-4d3e-8a8b-${String(i).padStart(12, '0')}`,
      }),
    );
  feed(identify('user-4f1c2a9e-7b21-4c1d-9a55-2f6d8e0b7c13', '9d', { plan: 'pro' }));
  return s!;
}

describe('user state', () => {
  it('a typical user (7 traits, 9 event types, segments, 3 rules fired, full duplicate window) stores in under 1 KB', () => {
    const s = typicalUser();
    s.applied = { p: 11, o: '123456789' };
    const text = serializeState(s);
    expect(Object.keys(s.rules).sort()).toEqual(['order', 'tip', 'welcome']);
    expect(s.recent).toHaveLength(RECENT_IDS);
    expect(Buffer.byteLength(text)).toBeLessThan(1024);
  });

  it('round-trips exactly, zero stats and non-member segments are not stored', () => {
    const s = typicalUser();
    const back = deserializeState(serializeState(s));
    expect(serializeState(back)).toBe(serializeState(s));
    expect(back.recent).toEqual(s.recent);
    expect({ ...back.traits }).toEqual({ ...s.traits });
    const core = createEngineCore({ ruleSet: () => rs });
    const fresh = core.apply(null, ev('u', 'login', '0s'), 0).state!;
    expect(fresh.stats.export_done).toEqual({ count: 0, first: null, last: null });
    const stored = JSON.parse(serializeState(fresh)) as Record<string, unknown>;
    expect(stored.s).toEqual({ login: [1, fresh.stats.login!.first, fresh.stats.login!.last] });
    expect(stored.g).toBeUndefined();
  });

  it('keeps event types and traits named like Object.prototype members as plain data', () => {
    const core = createEngineCore({ ruleSet: () => rs });
    let s = core.apply(
      null,
      ev('u', '__proto__', '0s', {
        traits: JSON.parse('{"__proto__": {"polluted": true}, "constructor": 1}') as Record<
          string,
          unknown
        >,
      }),
      0,
    ).state!;
    s = core.apply(s, ev('u', 'constructor', '1s'), 1).state!;
    const back = deserializeState(serializeState(s));
    expect(back.stats['__proto__']!.count).toBe(1);
    expect(back.stats['constructor']!.count).toBe(1);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.getPrototypeOf(back.stats)).toBeNull();
  });

  it('bounds tracked event types, evicting the least recently seen type no rule mentions', () => {
    const core = createEngineCore({ ruleSet: () => rs });
    let s: UserState | null = core.apply(null, ev('u', 'export_done', '0s'), 0).state;
    for (let i = 0; i < MAX_TRACKED_TYPES + 20; i++)
      s = core.apply(s, ev('u', `custom_${i}`, i * 1000 + 1000), i * 1000 + 1000).state;
    const counted = Object.keys(s!.stats).filter((t) => s!.stats[t]!.count > 0);
    expect(counted.length).toBeLessThanOrEqual(MAX_TRACKED_TYPES);
    expect(counted).toContain('export_done');
    expect(counted).toContain(`custom_${MAX_TRACKED_TYPES + 19}`);
    expect(counted).not.toContain('custom_0');
  });

  it('rejects what is not a stored state', () => {
    expect(() => deserializeState('nope')).toThrow(StateFormatError);
    expect(() => deserializeState('{"v":99}')).toThrow(/unsupported/);
  });
});

describe('a trait named __proto__', () => {
  const poisoned = () =>
    JSON.parse('{"__proto__": {"plan": "pro", "email": "x@example.com"}, "name": "Ada"}') as Record<
      string,
      unknown
    >;

  it('is not merged, so it never becomes the prototype of the traits', () => {
    const core = createEngineCore({ ruleSet: () => rs });
    // An adapter may hand in a state built from ordinary objects.
    const prior: UserState = { traits: {}, stats: {}, segments: {}, rules: {}, recent: [] };
    const s = core.apply(prior, ev('u', 'identify', '0s', { traits: poisoned() }), 0).state!;
    expect(s.traits.plan).toBeUndefined();
    expect(s.traits.email).toBeUndefined();
    expect(Object.getPrototypeOf(s.traits)).toBe(Object.prototype);
    expect(s.traits.name).toBe('Ada');
  });

  it('does not reach the user data of a send, nor group traits', () => {
    const core = createEngineCore({ ruleSet: () => rs });
    let s = core.apply(null, ev('u', 'identify', '0s', { traits: poisoned() }), 0).state!;
    s = core.apply(
      s,
      { ...ev('u', 'group', '1s', { traits: poisoned() }), properties: { groupId: 'g1' } },
      1,
    ).state!;
    const out = core.apply(s, ev('u', 'user_registered', '2s'), 2);
    const user = out.sends[0]!.data.user as Record<string, unknown>;
    expect(Object.hasOwn(user, '__proto__')).toBe(false);
    expect(Object.hasOwn(user.group as object, '__proto__')).toBe(false);
    expect(Object.keys(deserializeState(serializeState(out.state!)).traits).sort()).toEqual([
      'group',
      'groupId',
      'name',
    ]);
  });
});
