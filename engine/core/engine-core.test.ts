import { describe, expect, it } from 'vitest';
import type { NormalisedEvent, SendCommand } from '../../platform/contracts.ts';
import { Value } from '@sinclair/typebox/value';
import { SendCommandSchema, NormalisedEventSchema } from '../../platform/contracts.ts';
import { at, compile, ev, identify, rule, run } from '../../test/support/scenarios.ts';
import { createEngineCore, timerFiredEvent, SEGMENT_RECHECK, type Timer } from './engine-core.ts';
import { cloneState, deserializeState, serializeState, type UserState } from './state.ts';
import { occurrenceEvent } from './schedule.ts';

const trial = { fact: 'user', path: '$.plan', operator: 'equal', value: 'trial' };

describe('engine core', () => {
  it('experiments: holdout share and variant split follow the rule, deterministically per user, with the variant template', () => {
    const rs = compile([
      rule('activation', {
        experiment: {
          holdout: 0.2,
          variants: [
            { id: 'a', weight: 1 },
            { id: 'b', weight: 1, template: 'activation_b' },
          ],
        },
        action: { send: { template: 'activation_a', channels: ['email'] } },
      }),
    ]);
    const users = Array.from({ length: 2000 }, (_, i) => `user-${i}`);
    const events = users.map((u, i) => ev(u, 'user_registered', i * 1000, { id: `r-${u}` }));
    const first = run(rs, events).sends;
    const second = run(rs, events).sends;
    expect(second).toEqual(first);
    expect(first).toHaveLength(2000);
    const holdouts = first.filter((s) => s.holdout);
    expect(holdouts.length / 2000).toBeGreaterThan(0.17);
    expect(holdouts.length / 2000).toBeLessThan(0.23);
    for (const s of holdouts) expect(s.variant).toBeNull();
    const a = first.filter((s) => s.variant === 'a');
    const b = first.filter((s) => s.variant === 'b');
    expect(a.length + b.length + holdouts.length).toBe(2000);
    expect(Math.abs(a.length - b.length) / (a.length + b.length)).toBeLessThan(0.08);
    for (const s of a) expect(s.template).toBe('activation_a');
    for (const s of b) expect(s.template).toBe('activation_b');
    // Holdout users are recorded as sends so uplift can be measured, and count in the rule history.
    expect(
      run(rs, [...events, ...users.map((u) => ev(u, 'user_registered', '1d'))]).sends,
    ).toHaveLength(4000);
  });

  it('a send carries what delivery and analytics need: goal, expiry, category, priority, data for templates', () => {
    const rs = compile([
      rule('trial-tip', {
        category: 'marketing',
        priority: 42,
        trigger: { event: 'Feature Used' },
        action: { send: { template: 'tip', channels: ['email', 'inapp'] } },
        goal: { event: 'subscription_started', within: '7d' },
        expiresAfter: '2d',
      }),
    ]);
    const { sends } = run(rs, [
      identify('u1', '0s', { email: 'a@example.com', plan: 'trial' }),
      ev('u1', 'Feature Used', '1h', { id: 'f1', properties: { feature: 'export' } }),
    ]);
    expect(sends).toHaveLength(1);
    const s = sends[0]!;
    expect(Value.Check(SendCommandSchema, s)).toBe(true);
    expect(s).toMatchObject({
      ruleId: 'trial-tip',
      userId: 'u1',
      category: 'marketing',
      priority: 42,
      template: 'tip',
      channels: ['email', 'inapp'],
      variant: null,
      holdout: false,
      triggeredBy: { eventId: 'f1', eventType: 'Feature Used' },
      createdAt: at('1h'),
      expiresAt: at('1h') + 2 * 86_400_000,
      goal: { event: 'subscription_started', withinMs: 7 * 86_400_000 },
      data: {
        user: { email: 'a@example.com', plan: 'trial' },
        event: { type: 'Feature Used', properties: { feature: 'export' } },
        rule: { id: 'trial-tip' },
      },
    });
    expect(s.sendId).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
  });

  it('sendId depends on (rule, user, trigger) only: same inputs same id, any change a new id', () => {
    const rs = compile([rule('w', {}), rule('w2', {})]);
    const once = run(rs, [ev('u1', 'user_registered', '0s', { id: 'x' })]).sends;
    const later = run(rs, [ev('u1', 'user_registered', '5d', { id: 'x' })]).sends;
    expect(later.map((s) => s.sendId)).toEqual(once.map((s) => s.sendId));
    const ids = new Set([
      ...once.map((s) => s.sendId),
      ...run(rs, [ev('u2', 'user_registered', '0s', { id: 'x' })]).sends.map((s) => s.sendId),
      ...run(rs, [ev('u1', 'user_registered', '0s', { id: 'y' })]).sends.map((s) => s.sendId),
    ]);
    expect(ids.size).toBe(6);
  });

  it('a delayed send is attributed to the original event, timed at the fire time, with the same sendId the timer would give on any replay', () => {
    const rs = compile([
      rule('d3', {
        trigger: { event: 'user_registered', delay: '3d' },
        conditions: { all: [trial] },
      }),
    ]);
    const core = createEngineCore({ ruleSet: () => rs });
    const reg = ev('u1', 'user_registered', '0s', { id: 'reg1', traits: { plan: 'trial' } });
    const r1 = core.apply(null, reg, reg.ts);
    expect(r1.sends).toEqual([]);
    expect(r1.timers).toHaveLength(1);
    const timer = r1.timers[0]!;
    expect(timer).toMatchObject({ userId: 'u1', ruleId: 'd3', dueAt: at('3d'), trigger: reg });
    expect(core.apply(null, reg, reg.ts).timers[0]!.id).toBe(timer.id);
    const fired = timerFiredEvent(timer);
    expect(Value.Check(NormalisedEventSchema, fired)).toBe(true);
    const stored = serializeState(r1.state!);
    const r2 = core.apply(deserializeState(stored), fired, timer.dueAt);
    expect(r2.sends).toHaveLength(1);
    expect(r2.sends[0]).toMatchObject({
      triggeredBy: { eventId: 'reg1', eventType: 'user_registered' },
      createdAt: at('3d'),
    });
    // The same timer firing twice (poller crashed after publishing) has no second effect.
    expect(core.apply(r2.state, fired, timer.dueAt)).toMatchObject({
      status: 'duplicate',
      sends: [],
    });
    // Fired again against the state from before the first firing (state write lost): same sendId.
    expect(core.apply(deserializeState(stored), fired, timer.dueAt).sends[0]!.sendId).toBe(
      r2.sends[0]!.sendId,
    );
  });

  it('a timer whose rule was removed, disabled or re-triggered since does nothing', () => {
    const delayed = rule('d', { trigger: { event: 'user_registered', delay: '1h' } });
    const rs1 = compile([delayed]);
    let current = rs1;
    const core = createEngineCore({ ruleSet: () => current });
    const r1 = core.apply(null, ev('u1', 'user_registered', '0s'), at('0s'));
    const timer = r1.timers[0]!;
    for (const next of [
      compile([]),
      compile([{ ...delayed, enabled: false }]),
      compile([{ ...delayed, trigger: { event: 'login', delay: '1h' } }]),
      compile([{ ...delayed, trigger: { event: 'user_registered' } }]),
    ]) {
      current = next;
      expect(core.apply(cloneState(r1.state!), timerFiredEvent(timer), timer.dueAt).sends).toEqual(
        [],
      );
    }
    current = rs1;
    expect(
      core.apply(cloneState(r1.state!), timerFiredEvent(timer), timer.dueAt).sends,
    ).toHaveLength(1);
  });

  it('statuses: erased, no-user, ignored, invalid', () => {
    const rs = compile([rule('w', {})]);
    const core = createEngineCore({ ruleSet: () => rs });
    const r = core.apply(null, ev('u1', 'user_registered', '0s'), at());
    expect(r.status).toBe('applied');
    expect(core.apply(r.state, ev('u1', 'user_deleted', '1s'), at('1s'))).toEqual({
      state: null,
      sends: [],
      timers: [],
      emitted: [],
      status: 'erased',
    });
    const timer: Timer = {
      id: 't',
      userId: 'u1',
      ruleId: 'w',
      dueAt: at('1h'),
      trigger: ev('u1', 'user_registered', '0s'),
    };
    expect(core.apply(null, timerFiredEvent(timer), at('1h')).status).toBe('no-user');
    expect(core.apply(null, occurrenceEvent('w', 'u1', at('1h')), at('1h')).status).toBe('no-user');
    const st = core.apply(null, ev('u2', 'login', '0s'), at()).state!;
    expect(
      core.apply(
        st,
        { ...ev('u2', 'segment.entered', '1s'), properties: { segment: 'x' } },
        at('1s'),
      ).status,
    ).toBe('ignored');
    const bad = core.apply(
      st,
      { ...ev('u2', 'timer.fired', '1s'), properties: { ruleId: 'w' } },
      at('1s'),
    );
    expect(bad.status).toBe('invalid');
    expect(bad.reason).toMatch(/trigger/);
  });

  it('reduces events: stats count first/last even out of order, traits merge and null clears, group traits stay on the group', () => {
    const rs = compile([rule('w', {})]);
    const core = createEngineCore({ ruleSet: () => rs });
    let s: UserState | null = null;
    const feed = (e: NormalisedEvent) => (s = core.apply(s, e, e.ts).state);
    feed(identify('u1', '0s', { plan: 'trial', email: 'a@x.io', nick: 'al' }));
    feed(ev('u1', 'login', '2h'));
    feed(ev('u1', 'login', '1h'));
    feed(ev('u1', 'login', '3h'));
    feed(identify('u1', '4h', { plan: 'pro', nick: null }));
    feed({
      ...ev('u1', 'group', '5h', { properties: { groupId: 'acme' } }),
      traits: { name: 'Acme', employees: 10 },
    });
    const state = s as unknown as UserState;
    expect(state.stats.login).toEqual({ count: 3, first: at('1h'), last: at('3h') });
    expect(state.stats.user_registered).toEqual({ count: 0, first: null, last: null });
    expect({ ...state.traits }).toEqual({
      plan: 'pro',
      email: 'a@x.io',
      groupId: 'acme',
      group: { name: 'Acme', employees: 10 },
    });
  });

  it('a re-delivered event id within the recent window has no effect, even when the caller does not dedupe', () => {
    const rs = compile([rule('each-login', { trigger: { event: 'login' } })]);
    const core = createEngineCore({ ruleSet: () => rs });
    let state: UserState | null = null;
    const sends: SendCommand[] = [];
    const events = Array.from({ length: 10 }, (_, i) =>
      ev('u1', 'login', i * 1000, { id: `l${i}` }),
    );
    // Each event delivered, then the whole batch again (a producer retry), through stored state.
    for (const e of [...events, ...events]) {
      const r = core.apply(
        state === null ? null : deserializeState(serializeState(state)),
        e,
        e.ts,
      );
      state = r.state;
      sends.push(...r.sends);
    }
    expect(sends).toHaveLength(10);
    expect(state!.stats.login!.count).toBe(10);
  });

  it('segment events: emitted with deterministic ids, and segment rules see every membership updated', () => {
    const rs = compile(
      [
        rule('both', {
          trigger: { segment: 'a', on: 'enter' },
          conditions: { all: [{ fact: 'segments', path: '$.b', operator: 'equal', value: true }] },
        }),
      ],
      [
        { id: 'a', conditions: { all: [trial] } },
        {
          id: 'b',
          conditions: { all: [{ fact: 'user', path: '$.email', operator: 'exists', value: true }] },
        },
      ],
    );
    const core = createEngineCore({ ruleSet: () => rs });
    const e = identify('u1', '0s', { plan: 'trial', email: 'x@y.z' }, 'id-1');
    const r1 = core.apply(null, e, e.ts);
    const r2 = core.apply(null, e, e.ts);
    expect(r1.emitted.map((x) => [x.type, x.properties.segment])).toEqual([
      ['segment.entered', 'a'],
      ['segment.entered', 'b'],
    ]);
    expect(r2.emitted.map((x) => x.id)).toEqual(r1.emitted.map((x) => x.id));
    for (const x of r1.emitted) expect(Value.Check(NormalisedEventSchema, x)).toBe(true);
    expect(r1.sends).toHaveLength(1);
    expect(r1.sends[0]!.triggeredBy).toEqual({
      eventId: r1.emitted[0]!.id,
      eventType: 'segment.entered',
    });
    expect(r1.state!.segments).toMatchObject({ a: true, b: true });
  });

  it('time-based segments keep one pending recheck per user, at the next instant membership may change', () => {
    const rs = compile(
      [],
      [
        {
          id: 'active',
          conditions: {
            all: [
              { fact: 'stats', path: '$.app_opened.last', operator: 'withinLast', value: '7d' },
            ],
          },
        },
      ],
    );
    const core = createEngineCore({ ruleSet: () => rs });
    const r1 = core.apply(null, ev('u1', 'app_opened', '0s'), at());
    expect(r1.emitted.map((e) => e.type)).toEqual(['segment.entered']);
    expect(r1.timers).toMatchObject([{ ruleId: SEGMENT_RECHECK, dueAt: at('7d') + 1 }]);
    // A later open moves the exit later: the pending recheck is earlier, so no second timer.
    const r2 = core.apply(r1.state, ev('u1', 'app_opened', '1d'), at('1d'));
    expect(r2.timers).toEqual([]);
    // The recheck finds nothing changed yet and sets the next one.
    const r3 = core.apply(r2.state, timerFiredEvent(r1.timers[0]!), at('7d') + 1);
    expect(r3.emitted).toEqual([]);
    expect(r3.timers).toMatchObject([{ ruleId: SEGMENT_RECHECK, dueAt: at('8d') + 1 }]);
    const r4 = core.apply(r3.state, timerFiredEvent(r3.timers[0]!), at('8d') + 1);
    expect(r4.emitted.map((e) => e.type)).toEqual(['segment.exited']);
    expect(r4.timers).toEqual([]);
    expect(r4.state!.stats.app_opened!.count).toBe(2);
  });

  it('stored state round-trips through every event without changing the outcome (a restarted engine decides the same)', () => {
    const rs = compile(
      [
        rule('welcome', { limits: { oncePerUser: true } }),
        rule('d1', {
          trigger: { event: 'user_registered', delay: '1d' },
          conditions: {
            all: [{ fact: 'stats', path: '$.login.count', operator: 'lessThan', value: 2 }],
          },
        }),
        rule('login-cooldown', { trigger: { event: 'login' }, limits: { cooldown: '6h' } }),
        rule('seg', { trigger: { segment: 'logged', on: 'enter' } }),
      ],
      [
        {
          id: 'logged',
          conditions: {
            all: [{ fact: 'stats', path: '$.login.last', operator: 'withinLast', value: '2d' }],
          },
        },
      ],
    );
    const events: NormalisedEvent[] = [];
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    for (let i = 0; i < 400; i++) {
      const u = `u${Math.floor(rnd() * 20)}`;
      const type = rnd() < 0.2 ? 'user_registered' : rnd() < 0.1 ? 'user_deleted' : 'login';
      events.push(ev(u, type, i * 3_600_000, { id: `e${i}` }));
    }
    const live = createEngineCore({ ruleSet: () => rs });
    const restarted = createEngineCore({ ruleSet: () => rs });
    const liveStates = new Map<string, UserState>();
    const stored = new Map<string, string>();
    const a: SendCommand[] = [];
    const b: SendCommand[] = [];
    const timers: Timer[] = [];
    const step = (e: NormalisedEvent) => {
      const ra = live.apply(liveStates.get(e.userId) ?? null, e, e.ts);
      if (ra.state) liveStates.set(e.userId, ra.state);
      else liveStates.delete(e.userId);
      a.push(...ra.sends);
      timers.push(...ra.timers);
      const prev = stored.get(e.userId);
      const rb = restarted.apply(prev === undefined ? null : deserializeState(prev), e, e.ts);
      if (rb.state) stored.set(e.userId, serializeState(rb.state));
      else stored.delete(e.userId);
      b.push(...rb.sends);
    };
    for (const e of events) {
      timers.sort((x, y) => x.dueAt - y.dueAt);
      while (timers.length > 0 && timers[0]!.dueAt <= e.ts) step(timerFiredEvent(timers.shift()!));
      step(e);
    }
    expect(a.length).toBeGreaterThan(50);
    expect(new Set(a.map((s) => s.ruleId))).toEqual(
      new Set(['welcome', 'd1', 'login-cooldown', 'seg']),
    );
    expect(b).toEqual(a);
  });

  it('hot reload: the next event uses the new rule set, and a newly added rule sees history of types no old rule mentioned', () => {
    let current = compile([rule('welcome', {})]);
    const core = createEngineCore({ ruleSet: () => current });
    const s = core.apply(null, ev('u1', 'export_done', '0s'), at()).state;
    current = compile([
      rule('never-exported', {
        trigger: { event: 'login' },
        conditions: {
          all: [{ fact: 'stats', path: '$.export_done.count', operator: 'equal', value: 0 }],
        },
      }),
    ]);
    expect(core.apply(s, ev('u1', 'login', '1h'), at('1h')).sends).toEqual([]);
    expect(core.apply(null, ev('u3', 'login', '1h'), at('1h')).sends.map((x) => x.ruleId)).toEqual([
      'never-exported',
    ]);
  });

  it('an event older than the last one keeps last/first right and its send is timed at its own timestamp', () => {
    const rs = compile([rule('each', { trigger: { event: 'login' } })]);
    const { sends, sim } = run(rs, [
      ev('u1', 'login', '2h', { id: 'late-1' }),
      ev('u1', 'login', '1h', { id: 'early' }),
    ]);
    expect(sends.map((x) => [x.triggeredBy.eventId, x.createdAt])).toEqual([
      ['late-1', at('2h')],
      ['early', at('1h')],
    ]);
    expect(sim.store.get('u1')!.stats.login).toEqual({ count: 2, first: at('1h'), last: at('2h') });
  });
});
