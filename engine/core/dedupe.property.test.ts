// Property: re-delivering events (a producer or SDK retry, an engine restart before commit)
// never changes what is sent, whatever the rules and the interleaving of users.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { NormalisedEvent, SendCommand } from '../../platform/contracts.ts';
import { compile, ev, rule } from '../../test/support/scenarios.ts';
import { createEngineCore, timerFiredEvent, type Timer } from './engine-core.ts';
import { deserializeState, serializeState } from './state.ts';

const rs = compile(
  [
    rule('each-login', { trigger: { event: 'login' } }),
    rule('third-login', {
      trigger: { event: 'login' },
      conditions: { all: [{ fact: 'stats', path: '$.login.count', operator: 'equal', value: 3 }] },
    }),
    rule('cool', { trigger: { event: 'purchase' }, limits: { cooldown: '2h' } }),
    rule('later', {
      trigger: { event: 'purchase', delay: '3h' },
      conditions: { all: [{ fact: 'stats', path: '$.refund.count', operator: 'equal', value: 0 }] },
    }),
    rule('buyer', { trigger: { segment: 'buyers', on: 'enter' }, limits: { oncePerUser: true } }),
  ],
  [
    {
      id: 'buyers',
      conditions: {
        all: [
          { fact: 'stats', path: '$.purchase.count', operator: 'greaterThanInclusive', value: 2 },
        ],
      },
    },
  ],
);

/** Events in order, timers fired when passed, state stored as text between every step. */
function play(events: NormalisedEvent[]): SendCommand[] {
  const core = createEngineCore({ ruleSet: () => rs });
  const stored = new Map<string, string>();
  const timers: Timer[] = [];
  const sends: SendCommand[] = [];
  const step = (e: NormalisedEvent) => {
    const prev = stored.get(e.userId);
    const r = core.apply(prev === undefined ? null : deserializeState(prev), e, e.ts);
    if (r.state) stored.set(e.userId, serializeState(r.state));
    else stored.delete(e.userId);
    sends.push(...r.sends);
    timers.push(...r.timers);
  };
  for (const e of events) {
    timers.sort((a, b) => a.dueAt - b.dueAt || (a.id < b.id ? -1 : 1));
    while (timers.length > 0 && timers[0]!.dueAt <= e.ts) step(timerFiredEvent(timers.shift()!));
    step(e);
  }
  return sends;
}

describe('re-delivery', () => {
  it('any event delivered again soon after (within the per-user window) produces no extra send and no different send', () => {
    const eventArb = fc.record({
      user: fc.constantFrom('a', 'b', 'c'),
      type: fc.constantFrom('login', 'purchase', 'refund', 'page'),
      gapMin: fc.integer({ min: 0, max: 120 }),
    });
    fc.assert(
      fc.property(
        fc.array(eventArb, { minLength: 1, maxLength: 40 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        (specs, dupPicks) => {
          let t = 0;
          const events = specs.map((s, i) =>
            ev(s.user, s.type, (t += s.gapMin * 60_000), { id: `e${i}` }),
          );
          // Re-deliver some events right after themselves, in place (same id, same time).
          const withDups: NormalisedEvent[] = [];
          const dup = new Set(dupPicks.map((p) => p % events.length));
          events.forEach((e, i) => {
            withDups.push(e);
            if (dup.has(i)) withDups.push({ ...e });
          });
          expect(play(withDups)).toEqual(play(events));
        },
      ),
      { numRuns: 150 },
    );
  });
});
