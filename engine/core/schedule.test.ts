import { describe, expect, it } from 'vitest';
import { compile, rule } from '../../test/support/scenarios.ts';
import { occurrenceEvent, scheduleOccurrences, timezoneFor } from './schedule.ts';

describe('schedule occurrences', () => {
  const weekly = compile([rule('weekly', { trigger: { schedule: '0 9 * * 1', timezone: 'user' } })])
    .rules[0]!;

  it('lists occurrences in (from, to] in the given zone, across a DST change', () => {
    const from = Date.parse('2026-03-02T09:00:00Z');
    const to = Date.parse('2026-03-31T00:00:00Z');
    expect(
      scheduleOccurrences(weekly, from, to, 'UTC').map((t) => new Date(t).toISOString()),
    ).toEqual([
      '2026-03-09T09:00:00.000Z',
      '2026-03-16T09:00:00.000Z',
      '2026-03-23T09:00:00.000Z',
      '2026-03-30T09:00:00.000Z',
    ]);
    // Berlin switches to summer time on 29 March: 09:00 local is 08:00Z, then 07:00Z (2 March 08:00Z is before `from`).
    expect(
      scheduleOccurrences(weekly, from, to, 'Europe/Berlin').map((t) => new Date(t).toISOString()),
    ).toEqual([
      '2026-03-09T08:00:00.000Z',
      '2026-03-16T08:00:00.000Z',
      '2026-03-23T08:00:00.000Z',
      '2026-03-30T07:00:00.000Z',
    ]);
    expect(scheduleOccurrences(weekly, to, from, 'UTC')).toEqual([]);
  });

  it('resolves "user" to the timezone trait, UTC when missing or unknown', () => {
    const t = weekly.def.trigger as { schedule: string; timezone: string };
    expect(timezoneFor(t, { timezone: 'Asia/Tokyo' })).toBe('Asia/Tokyo');
    expect(timezoneFor(t, { timezone: 'Mars/Olympus' })).toBe('UTC');
    expect(timezoneFor(t, {})).toBe('UTC');
    expect(
      timezoneFor({ schedule: '@daily', timezone: 'Europe/Paris' }, { timezone: 'Asia/Tokyo' }),
    ).toBe('Europe/Paris');
  });

  it('an occurrence event has a deterministic id per (rule, user, instant)', () => {
    const a = occurrenceEvent('weekly', 'u1', Date.parse('2026-03-09T09:00:00Z'));
    expect(a).toMatchObject({
      type: 'schedule.occurrence',
      userId: 'u1',
      properties: { ruleId: 'weekly', occurrence: '2026-03-09T09:00:00.000Z' },
    });
    expect(occurrenceEvent('weekly', 'u1', a.ts, 123).id).toBe(a.id);
    expect(occurrenceEvent('weekly', 'u2', a.ts).id).not.toBe(a.id);
    expect(occurrenceEvent('weekly', 'u1', a.ts + 1).id).not.toBe(a.id);
  });
});
