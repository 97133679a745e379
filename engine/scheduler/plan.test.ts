import { describe, expect, it } from 'vitest';
import { compile, ev } from '../../test/support/scenarios.ts';
import { changeFor, combine, directoryChanges, planZone, scheduleZone } from './plan.ts';

const iso = (t: number | undefined) => (t === undefined ? undefined : new Date(t).toISOString());
const H = 3_600_000;

describe('directory changes from events', () => {
  it('files users under their timezone trait, UTC when missing, removed or unknown', () => {
    expect(changeFor(ev('u', 'identify', 0, { traits: { timezone: 'Europe/Berlin' } }))).toEqual({
      op: 'set',
      zone: 'Europe/Berlin',
    });
    expect(changeFor(ev('u', 'identify', 0, { traits: { timezone: 'Mars/Olympus' } }))).toEqual({
      op: 'set',
      zone: 'UTC',
    });
    expect(changeFor(ev('u', 'identify', 0, { traits: { timezone: null } }))).toEqual({
      op: 'set',
      zone: 'UTC',
    });
    expect(changeFor(ev('u', 'identify', 0, { traits: { plan: 'pro' } }))).toEqual({ op: 'touch' });
    expect(changeFor(ev('u', 'Feature Used', 0))).toEqual({ op: 'touch' });
    // Group traits belong to the group.
    expect(changeFor(ev('u', 'group', 0, { traits: { timezone: 'Asia/Tokyo' } }))).toEqual({
      op: 'touch',
    });
    expect(changeFor(ev('u', 'user_deleted', 0))).toEqual({ op: 'delete' });
  });

  it("ignores the engine's own events, which neither create nor move users", () => {
    for (const type of ['schedule.occurrence', 'timer.fired', 'segment.entered', 'segment.exited'])
      expect(changeFor(ev('u', type, 0))).toBeNull();
  });

  it("nets a user's events in order into one change", () => {
    const tz = (zone: string) => ({ traits: { timezone: zone } });
    const changes = directoryChanges([
      ev('moved', 'identify', 0, tz('Asia/Tokyo')),
      ev('moved', 'identify', 1, tz('Europe/Berlin')),
      ev('moved', 'Feature Used', 2),
      ev('gone', 'identify', 0, tz('Asia/Tokyo')),
      ev('gone', 'user_deleted', 1),
      ev('back', 'user_deleted', 0),
      ev('back', 'signup', 1),
      ev('plain', 'signup', 0),
      ev('plain', 'schedule.occurrence', 1),
    ]);
    expect(Object.fromEntries(changes)).toEqual({
      moved: { op: 'set', zone: 'Europe/Berlin' },
      gone: { op: 'delete' },
      // A new user under an erased id starts without traits.
      back: { op: 'set', zone: 'UTC' },
      plain: { op: 'touch' },
    });
  });

  it('lets a seeded zone fill in only what events did not say', () => {
    expect(combine(undefined, { op: 'add', zone: 'Asia/Tokyo' })).toEqual({
      op: 'add',
      zone: 'Asia/Tokyo',
    });
    expect(combine({ op: 'touch' }, { op: 'add', zone: 'Asia/Tokyo' })).toEqual({
      op: 'add',
      zone: 'Asia/Tokyo',
    });
    expect(combine({ op: 'set', zone: 'UTC' }, { op: 'add', zone: 'Asia/Tokyo' })).toEqual({
      op: 'set',
      zone: 'UTC',
    });
    expect(combine({ op: 'delete' }, { op: 'add', zone: 'Asia/Tokyo' })).toEqual({
      op: 'set',
      zone: 'Asia/Tokyo',
    });
  });
});

describe('planning a zone', () => {
  const rs = compile([
    {
      id: 'daily',
      category: 'marketing',
      trigger: { schedule: '0 9 * * *', timezone: 'user' },
      action: { send: { template: 't', channels: ['email'] } },
    },
    {
      id: 'fixed',
      category: 'marketing',
      trigger: { schedule: '0 9 * * *', timezone: 'America/New_York' },
      action: { send: { template: 't', channels: ['email'] } },
    },
  ]);
  const daily = rs.scheduled.find((r) => r.def.id === 'daily')!;
  const fixed = rs.scheduled.find((r) => r.def.id === 'fixed')!;
  const since = Date.parse('2026-03-02T10:00:00Z');

  it('starts at the first occurrence after the rule was first seen, once it is due', () => {
    const now = Date.parse('2026-03-03T08:30:00Z');
    const p = planZone(daily, 'Europe/Berlin', null, since, now, 48 * H);
    // 09:00 in Berlin is 08:00Z in March (winter time).
    expect(iso(p.due?.at)).toBe('2026-03-03T08:00:00.000Z');
    expect(p.due).toMatchObject({ shard: 0, cursor: null, resumed: false });
    expect(p.progress).toEqual({ w: since });
    expect(p.skipped).toBeNull();
    // In New York 09:00 is still ahead: nothing due, the next one known.
    const ny = planZone(daily, 'America/New_York', null, since, now, 6 * H);
    expect(ny.due).toBeNull();
    expect(iso(ny.next ?? undefined)).toBe('2026-03-03T14:00:00.000Z');
  });

  it('continues from the watermark, one occurrence at a time', () => {
    const now = Date.parse('2026-03-04T12:00:00Z');
    const p = planZone(
      daily,
      'Europe/Berlin',
      { w: Date.parse('2026-03-03T08:00:00Z') },
      since,
      now,
      48 * H,
    );
    expect(iso(p.due?.at)).toBe('2026-03-04T08:00:00.000Z');
    const done = planZone(
      daily,
      'Europe/Berlin',
      { w: Date.parse('2026-03-04T08:00:00Z') },
      since,
      now,
      48 * H,
    );
    expect(done.due).toBeNull();
    expect(iso(done.next ?? undefined)).toBe('2026-03-05T08:00:00.000Z');
  });

  it('resumes a half-done occurrence at its stored shard and cursor', () => {
    const at = Date.parse('2026-03-03T08:00:00Z');
    const p = planZone(
      daily,
      'Europe/Berlin',
      { w: since, at, s: 17, c: 'Europe/Berlin\nu42' },
      since,
      at + 60_000,
      6 * H,
    );
    expect(p.due).toEqual({ at, shard: 17, cursor: 'Europe/Berlin\nu42', resumed: true });
  });

  it('skips occurrences older than the catch-up window and reports them', () => {
    const now = Date.parse('2026-03-06T12:00:00Z');
    // Down since 2 March: 3, 4 and 5 March at 08:00Z are older than 24 h; 6 March 08:00Z is not.
    const p = planZone(daily, 'Europe/Berlin', { w: since }, since, now, 24 * H);
    expect(p.skipped).toEqual({
      count: 3,
      first: Date.parse('2026-03-03T08:00:00Z'),
      last: Date.parse('2026-03-05T08:00:00Z'),
      truncated: false,
    });
    // The stored progress counts them (a campaign reports its skipped runs).
    expect(p.progress).toEqual({ w: now - 24 * H, sk: 3 });
    expect(iso(p.due?.at)).toBe('2026-03-06T08:00:00.000Z');
    // A half-done occurrence that is too old is given up as well; what it had published still counts.
    const stale = planZone(
      daily,
      'Europe/Berlin',
      {
        w: since,
        at: Date.parse('2026-03-03T08:00:00Z'),
        s: 3,
        c: 'x',
        p: 10,
        n: 4,
        runs: 2,
        tp: 20,
        tn: 20,
      },
      since,
      now,
      24 * H,
    );
    expect(stale.skipped?.count).toBe(3);
    expect(stale.due?.resumed).toBe(false);
    expect(stale.progress).toEqual({ w: now - 24 * H, runs: 2, sk: 3, tp: 30, tn: 24 });
    // With a zero window only the latest due occurrence can still run... if it is exactly now.
    expect(planZone(daily, 'Europe/Berlin', { w: since }, since, now, 0).due).toBeNull();
  });

  it('never fans out occurrences that fell while the rule was disabled', () => {
    const now = Date.parse('2026-03-04T12:00:00Z');
    const disabledAt = Date.parse('2026-03-04T11:59:00Z');
    // 4 March 08:00Z is within the window but the rule was off then: skipped, nothing due.
    const p = planZone(
      daily,
      'Europe/Berlin',
      { w: Date.parse('2026-03-03T08:00:00Z') },
      since,
      now,
      48 * H,
      disabledAt,
    );
    expect(p.due).toBeNull();
    expect(p.skipped).toMatchObject({ count: 1, first: Date.parse('2026-03-04T08:00:00Z') });
    expect(p.progress).toEqual({ w: disabledAt, sk: 1 });
    // A fan-out that was under way when the rule was disabled is not resumed.
    const half = planZone(
      daily,
      'Europe/Berlin',
      { w: since, at: Date.parse('2026-03-04T08:00:00Z'), s: 5, c: 'x' },
      since,
      now,
      48 * H,
      disabledAt,
    );
    expect(half.due).toBeNull();
    expect(half.skipped?.count).toBe(1);
    // Disabled long ago: the window decides as usual.
    expect(
      iso(planZone(daily, 'Europe/Berlin', { w: since }, since, now, 48 * H, since).due?.at),
    ).toBe('2026-03-03T08:00:00.000Z');
  });

  it("evaluates fixed-zone rules in the rule's zone whatever the directory zone", () => {
    expect(scheduleZone(fixed, 'Asia/Tokyo')).toBe('America/New_York');
    expect(scheduleZone(daily, 'Asia/Tokyo')).toBe('Asia/Tokyo');
    const now = Date.parse('2026-03-03T14:30:00Z');
    expect(iso(planZone(fixed, 'America/New_York', null, since, now, 6 * H).due?.at)).toBe(
      '2026-03-03T14:00:00.000Z',
    );
  });
});
