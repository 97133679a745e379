import { describe, expect, it } from 'vitest';
import { ErrorCodes, LifecycleError } from '../platform/errors.ts';
import { isReservedEventType } from '../platform/contracts.ts';
import { silentLogger } from '../platform/logger.ts';
import { loadRuleSet } from '../rules/index.ts';
import { createSimulation } from '../engine/core/simulate.ts';
import {
  createGenerator,
  createPopulation,
  EMAIL_DOMAINS,
  MAX_JOURNEY_DAYS,
  progressLine,
  syntheticProfile,
  type SegmentMessage,
  type TimedMessage,
} from './generator.ts';

/** Everything a population makes up to `until` ms, advanced in the given steps. */
function run(
  opts: Parameters<typeof createPopulation>[0],
  until: number,
  steps: (i: number) => number = () => 250,
) {
  const p = createPopulation(opts);
  const due: TimedMessage[] = [];
  const optIns: string[] = [];
  let maxActive = 0;
  for (let t = 0, i = 0; ; t = Math.min(until, t + steps(i++))) {
    const r = p.advance(t);
    due.push(...r.due);
    optIns.push(...r.optIns);
    maxActive = Math.max(maxActive, p.stats().active);
    if (t === until) break;
  }
  return { p, due, optIns, maxActive };
}

/** Where two long message lists first differ (-1: nowhere), so a failure does not diff thousands of objects. */
function firstDifference(a: readonly unknown[], b: readonly unknown[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++)
    if (JSON.stringify(a[i]) !== JSON.stringify(b[i])) return i;
  return -1;
}

const eventOf = (m: TimedMessage['message']) => (m.type === 'track' ? m.event : 'identify');
const byUser = (due: TimedMessage[]) => {
  const users = new Map<string, TimedMessage['message'][]>();
  for (const d of due) {
    const list = users.get(d.message.userId) ?? [];
    list.push(d.message);
    users.set(d.message.userId, list);
  }
  return users;
};

describe('the synthetic population', () => {
  it('is the same for a seed however finely it is advanced, and another seed gives other users', () => {
    const opts = { rate: 3, seed: 42, dayMs: 200 };
    const fine = run(opts, 60_000, () => 50);
    // Irregular steps, as a busy event loop would make them.
    const coarse = run(opts, 60_000, (i) => [1000, 30, 2700, 400][i % 4]!);
    expect(firstDifference(coarse.due, fine.due)).toBe(-1);
    expect(coarse.optIns).toEqual(fine.optIns);
    expect(fine.due.length).toBeGreaterThan(1000);

    const other = run({ ...opts, seed: 43 }, 60_000);
    expect(
      firstDifference(
        other.due.map((d) => d.message),
        fine.due.map((d) => d.message),
      ),
    ).toBe(0);
  });

  it('gives every message a unique messageId, stable per (seed, user, step) whatever the rate or day length', () => {
    const a = run({ rate: 2, seed: 9, dayMs: 100 }, 40_000);
    const ids = a.due.map((d) => d.message.messageId);
    expect(new Set(ids).size).toBe(ids.length);
    for (const d of a.due) expect(d.message.messageId).toBe(`synth-9-${d.user}-${d.step}`);

    // The same users at another pace: the same messages in the same order, at other times.
    const b = run({ rate: 5, seed: 9, dayMs: 37 }, 40_000);
    const journeyA = byUser(a.due).get('synth-9-3')!;
    const journeyB = byUser(b.due).get('synth-9-3')!;
    expect(journeyA.length).toBeGreaterThan(5);
    expect(journeyB).toEqual(journeyA);
  });

  it('signs users up at the configured rate', () => {
    for (const rate of [0.5, 2, 10]) {
      const p = createPopulation({ rate, seed: 1, dayMs: 1000 });
      p.advance(30_000);
      // User i signs up at i / rate seconds, the first at 0.
      expect(p.stats().users).toBe(Math.floor(rate * 30) + 1);
    }
    const capped = createPopulation({ rate: 10, seed: 1, dayMs: 1000, maxUsers: 25 });
    capped.advance(30_000);
    expect(capped.stats().users).toBe(25);
  });

  it('plays each journey: signup, use, the trial reminder, then a subscription or a cancellation; payments fail, recover or churn', () => {
    const { due, p } = run({ rate: 20, seed: 5, dayMs: 50 }, 120_000);
    const journeys = byUser(due);
    const finished = [...journeys.values()].filter((j) =>
      j.some((m) => ['subscription_started', 'subscription_cancelled'].includes(eventOf(m))),
    );
    expect(finished.length).toBeGreaterThan(500);

    for (const j of journeys.values()) {
      const events = j.map(eventOf);
      // Who they are first, then the signup the welcome rule waits for (the last users of the
      // run may have had time for the first message only).
      expect(events.slice(0, 2)).toEqual(['identify', 'user_registered'].slice(0, events.length));
      const started = events.indexOf('subscription_started');
      const reminded = events.indexOf('trial_ends_soon');
      if (started >= 0) {
        // The plan changes before the event, so payment rules see a paying plan.
        expect(j[started - 1]).toMatchObject({
          type: 'identify',
          traits: { plan: expect.stringMatching(/^(basic|pro|family)$/) },
        });
        // Billing reminds only users still on trial.
        if (reminded >= 0) expect(reminded).toBeLessThan(started);
      }
      for (const [i, e] of events.entries()) {
        if (e === 'payment_failed') {
          const after = events.slice(i + 1);
          // Paid on the retry or cancelled; a journey cut at the end of the run may still wait.
          const next = after.find(
            (x) => x === 'payment_succeeded' || x === 'subscription_cancelled',
          );
          if (next === undefined) continue;
          if (next === 'subscription_cancelled')
            expect(j[i + 1 + after.indexOf(next)]).toMatchObject({
              properties: { reason: 'payment_failed' },
            });
        }
      }
    }

    const all = due.map((d) => d.message);
    const count = (pred: (m: TimedMessage['message']) => boolean) => all.filter(pred).length;
    const isTrack =
      (event: string, props: Record<string, unknown> = {}) =>
      (m: TimedMessage['message']) =>
        m.type === 'track' &&
        m.event === event &&
        Object.entries(props).every(([k, v]) => m.properties[k] === v);
    expect(count(isTrack('subscription_started'))).toBeGreaterThan(100);
    expect(count(isTrack('subscription_cancelled', { reason: 'trial_ended' }))).toBeGreaterThan(
      100,
    );
    expect(count(isTrack('subscription_cancelled', { reason: 'payment_failed' }))).toBeGreaterThan(
      5,
    );
    expect(count(isTrack('payment_succeeded', { recovered: true }))).toBeGreaterThan(5);
    expect(count(isTrack('trial_ends_soon'))).toBeGreaterThan(500);
    expect(count(isTrack('export_done'))).toBeGreaterThan(100);
    expect(count(isTrack('app_opened'))).toBeGreaterThan(1000);
    // Failed renewals charge something: the payment-failed rule only looks at amounts above 0.
    for (const m of all.filter(isTrack('payment_failed')))
      expect(m.type === 'track' && Number(m.properties.amount)).toBeGreaterThan(0);
    expect(p.stats()).toMatchObject({
      converted: count(isTrack('subscription_started')),
      paymentsFailed: count(isTrack('payment_failed')),
    });
  });

  it('sends what an app sends: example addresses, the four locales, no event type the product reserves', () => {
    const { due, optIns, p } = run({ rate: 10, seed: 77, dayMs: 100 }, 30_000);
    const identifies = due.map((d) => d.message).filter((m) => m.type === 'identify');
    const emails = identifies.flatMap((m) => (m.traits.email ? [String(m.traits.email)] : []));
    expect(emails.length).toBe(p.stats().users);
    for (const e of emails)
      expect(
        EMAIL_DOMAINS.some((d) => e.endsWith(`@${d}`)),
        e,
      ).toBe(true);
    const locales = new Set(identifies.flatMap((m) => (m.traits.locale ? [m.traits.locale] : [])));
    expect([...locales].sort()).toEqual(['de', 'en', 'fr', 'pt-BR']);
    for (const d of due)
      if (d.message.type === 'track') expect(isReservedEventType(d.message.event)).toBe(false);
    // A share opts in to marketing, the rest does not.
    expect(optIns.length / p.stats().users).toBeGreaterThan(0.4);
    expect(optIns.length / p.stats().users).toBeLessThan(0.8);
    // The profile a test can look up is the one the simulation plays.
    const first = syntheticProfile(77, 0);
    expect(identifies[0]!.traits).toMatchObject({ email: first.email, locale: first.locale });
    expect(optIns.includes(first.userId)).toBe(first.optIn);
  });

  it('keeps memory bounded: users leave when their journey ends', () => {
    const rate = 5;
    const dayMs = 20;
    const journeyMs = MAX_JOURNEY_DAYS * dayMs;
    // Twenty journeys long: the population stops growing after the first.
    const { p, maxActive } = run({ rate, seed: 3, dayMs }, 20 * journeyMs, () => 100);
    expect(p.stats().users).toBe(Math.floor((rate * 20 * journeyMs) / 1000) + 1);
    expect(maxActive).toBeLessThanOrEqual(Math.ceil((rate * journeyMs) / 1000) + rate);
    expect(maxActive).toBeGreaterThan(0);

    // With a last user, everyone has left one journey after the last signup.
    const bounded = createPopulation({ rate, seed: 3, dayMs, maxUsers: 50 });
    bounded.advance(10_000);
    expect(bounded.stats().active).toBeGreaterThan(0);
    bounded.advance(10_000 + journeyMs + 1000);
    expect(bounded.stats()).toMatchObject({ users: 50, active: 0 });
  });

  it('refuses a rate, seed or day it cannot use', () => {
    expect(() => createPopulation({ rate: 0, seed: 1, dayMs: 1000 })).toThrow(/rate/);
    expect(() => createPopulation({ rate: 1, seed: -1, dayMs: 1000 })).toThrow(/seed/);
    expect(() => createPopulation({ rate: 1, seed: 1, dayMs: 0 })).toThrow(/dayMs/);
  });
});

describe('the demo weekly digest', () => {
  it('has content: the example rule over the synthetic users lists the features they used and what they exported, by name', async () => {
    const loaded = await loadRuleSet(new URL('../rules/examples', import.meta.url).pathname);
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
    // A few simulated weeks, stamped (as the demo does) so that they end on a Sunday evening.
    const { due } = run({ rate: 2, seed: 5, dayMs: 1000 }, 90_000);
    const end = Date.parse('2026-12-06T20:00:00Z');
    const last = due[due.length - 1]!.at;
    const sim = createSimulation({ ruleSet: () => loaded.ruleSet });
    due.forEach((d, i) =>
      sim.line(
        JSON.stringify({ ...d.message, timestamp: new Date(end - (last - d.at)).toISOString() }),
        i + 1,
      ),
    );
    const digests = sim
      .advanceTo(Date.parse('2026-12-08T00:00:00Z'))
      .filter((s) => s.ruleId === 'weekly-digest');
    expect(digests.length).toBeGreaterThan(10);
    for (const send of digests) {
      const digest = send.data.digest as {
        total: number;
        items: { type: string; properties: Record<string, unknown> }[];
      };
      expect(digest.total).toBeGreaterThan(0);
      for (const item of digest.items)
        expect(item.properties).toEqual(
          item.type === 'Feature Used'
            ? { feature: expect.any(String) }
            : { format: expect.any(String) },
        );
    }
    expect(sim.summary().byRule['weekly-digest']?.sends).toBe(digests.length);
  });
});

describe('the generator', () => {
  function harness(opts: { fail?: (call: number) => unknown } = {}) {
    let clock = 1_800_000_000_000;
    const calls: (['optIn', string] | ['batch', SegmentMessage[]])[] = [];
    let posts = 0;
    const g = createGenerator(
      { rate: 4, seed: 11, dayMs: 500, maxStepMs: 2000, batchSize: 50 },
      {
        postBatch: async (batch) => {
          const err = opts.fail?.(posts++);
          if (err) throw err;
          calls.push(['batch', batch]);
        },
        optIn: async (userId) => {
          calls.push(['optIn', userId]);
        },
        logger: silentLogger(),
        now: () => clock,
      },
    );
    return {
      g,
      calls,
      advance: async (ms: number) => {
        clock += ms;
        await g.tick();
      },
      now: () => clock,
    };
  }

  it('posts messages stamped with the real time they became due, opt-ins first, in batches', async () => {
    const h = harness();
    await h.g.tick();
    for (let i = 0; i < 40; i++) await h.advance(250);
    const batches = h.calls.flatMap((c) => (c[0] === 'batch' ? [c[1]] : []));
    const messages = batches.flat();
    expect(Math.max(...batches.map((b) => b.length))).toBeLessThanOrEqual(50);
    expect(h.g.stats()).toMatchObject({ users: 41, events: messages.length, retries: 0 });
    // Timestamps are real: not after now, at most one tick behind when due, in order per user.
    const last = new Map<string, number>();
    for (const m of messages) {
      const ts = Date.parse(m.timestamp);
      expect(ts).toBeLessThanOrEqual(h.now());
      expect(ts).toBeGreaterThan(1_800_000_000_000 - 1);
      expect(ts).toBeGreaterThanOrEqual(last.get(m.userId) ?? 0);
      last.set(m.userId, ts);
    }
    // A user's opt-in is written before any of their messages is posted.
    const optIns = h.calls.filter((c) => c[0] === 'optIn').length;
    expect(optIns).toBe(h.g.stats().optIns);
    expect(optIns).toBeGreaterThan(10);
    for (const [i, c] of h.calls.entries()) {
      if (c[0] !== 'optIn') continue;
      const firstBatch = h.calls.findIndex(
        (x) => x[0] === 'batch' && x[1].some((m) => m.userId === c[1]),
      );
      expect(firstBatch).toBeGreaterThan(i);
    }
  });

  it('is the same run for the same seed and clock, timestamps included', async () => {
    const a = harness();
    const b = harness();
    for (const h of [a, b]) for (let i = 0; i < 20; i++) await h.advance(333);
    expect(a.calls.length).toBeGreaterThan(20);
    expect(firstDifference(b.calls, a.calls)).toBe(-1);
  });

  it('slows the simulation instead of bursting when ticks come late', async () => {
    const h = harness();
    await h.g.tick();
    await h.advance(60_000);
    // One tick covers at most maxStepMs (2 s) of simulated time: 4 users/s -> users 0..8.
    expect(h.g.stats().users).toBe(9);
  });

  it('retries the same messages while the product cannot take them, and waits for it', async () => {
    const unavailable = new LifecycleError(ErrorCodes.RateLimited, 'slow down', {
      retriable: true,
    });
    const h = harness({ fail: (n) => (n >= 2 && n < 5 ? unavailable : undefined) });
    await h.g.tick();
    await h.advance(1000);
    await h.advance(1000); // post #2 fails
    const failedUsers = h.g.stats().users;
    expect(h.g.stats()).toMatchObject({ retries: 1, retrying: 'slow down' });
    await h.advance(10_000); // #3 fails
    await h.advance(10_000); // #4 fails
    // The simulation waited: no new users while the messages were not taken.
    expect(h.g.stats().users).toBe(failedUsers);
    expect(h.g.health().ok).toBe(true);
    await h.advance(1000); // #5 succeeds with the held batch
    const batches = h.calls.flatMap((c) => (c[0] === 'batch' ? [c[1]] : []));
    expect(batches).toHaveLength(3);
    const ids = batches.flat().map((m) => m.messageId);
    expect(new Set(ids).size).toBe(ids.length);
    expect(h.g.stats()).toMatchObject({ retries: 3, retrying: null });
    await h.advance(250);
    expect(h.g.stats().users).toBe(failedUsers + 1);
  });

  it('stops, saying why, when the product refuses the messages', async () => {
    const refused = new LifecycleError(ErrorCodes.Forbidden, 'unknown write key');
    let clock = 0;
    const g = createGenerator(
      { rate: 50, seed: 1, dayMs: 1000, tickMs: 5 },
      {
        postBatch: async () => {
          throw refused;
        },
        logger: silentLogger(),
        now: () => (clock += 100),
      },
    );
    await g.start();
    expect(g.health().ok).toBe(true);
    await expect(g.done).rejects.toBe(refused);
    expect(g.health()).toMatchObject({ ok: false, details: { refused: 'unknown write key' } });
    await g.stop();
  });

  it('stops cleanly while running', async () => {
    let posted = 0;
    const g = createGenerator(
      { rate: 100, seed: 2, dayMs: 1000, tickMs: 5 },
      {
        postBatch: async (batch) => {
          posted += batch.length;
        },
        optIn: async () => {},
        logger: silentLogger(),
      },
    );
    await g.start();
    await new Promise((r) => setTimeout(r, 100));
    await g.stop();
    await expect(g.done).resolves.toBeUndefined();
    const after = posted;
    expect(after).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 50));
    expect(posted).toBe(after);
  });

  it('reports progress on one line', () => {
    expect(
      progressLine(
        {
          users: 120,
          active: 70,
          messages: 900,
          events: 843,
          converted: 12,
          cancelled: 30,
          paymentsFailed: 2,
          optIns: 70,
          retries: 0,
          retrying: null,
        },
        ['37 emails in the outbox'],
      ),
    ).toBe(
      'generator: 120 users (70 in the simulation), 843 events, 12 subscribed, 30 cancelled, 37 emails in the outbox',
    );
  });
});
