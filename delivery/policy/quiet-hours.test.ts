import { describe, expect, it } from 'vitest';
import { createQuietHoursStage, parseQuietHours, quietHoursEnd } from './quiet-hours.ts';
import { testContext } from '../../test/support/delivery-context.ts';

const w = parseQuietHours('21:00-08:00')!;

describe('quiet hours', () => {
  it('parses windows, including empty and wrapping ones', () => {
    expect(parseQuietHours('21:00-08:00')).toEqual({ start: 1260, end: 480 });
    expect(parseQuietHours('')).toBeNull();
    expect(parseQuietHours('08:00-08:00')).toBeNull();
    expect(() => parseQuietHours('25:00-08:00')).toThrow(/21:00-08:00/);
  });

  it.each([
    // [now (UTC ISO), timezone, expected end (UTC ISO) or null]
    ['2026-03-10T22:30:00Z', 'UTC', '2026-03-11T08:00:00.000Z'],
    ['2026-03-10T03:00:00Z', 'UTC', '2026-03-10T08:00:00.000Z'],
    ['2026-03-10T12:00:00Z', 'UTC', null],
    ['2026-03-10T20:59:59Z', 'UTC', null],
    ['2026-03-10T21:00:00Z', 'UTC', '2026-03-11T08:00:00.000Z'],
    // 12:00 UTC is 21:00 in Tokyo (+9): quiet until 08:00 Tokyo = 23:00 UTC
    ['2026-03-10T12:00:00Z', 'Asia/Tokyo', '2026-03-10T23:00:00.000Z'],
    // 03:00 UTC is 22:00 in New York (EST, -5) the evening before: until 08:00 EST = 13:00 UTC
    ['2026-01-15T03:00:00Z', 'America/New_York', '2026-01-15T13:00:00.000Z'],
    // DST starts in New York on 2026-03-08 at 02:00: 08:00 EDT is 12:00 UTC
    ['2026-03-08T04:00:00Z', 'America/New_York', '2026-03-08T12:00:00.000Z'],
    // DST ends in Berlin on 2026-10-25: 08:00 CET is 07:00 UTC
    ['2026-10-24T20:30:00Z', 'Europe/Berlin', '2026-10-25T07:00:00.000Z'],
  ])('at %s in %s quiet hours end at %s', (now, tz, expected) => {
    const end = quietHoursEnd(Date.parse(now), tz, w);
    expect(end === null ? null : new Date(end).toISOString()).toBe(expected);
  });

  it('supports windows that do not wrap midnight', () => {
    const day = parseQuietHours('12:00-14:00')!;
    expect(quietHoursEnd(Date.parse('2026-03-10T13:00:00Z'), 'UTC', day)).toBe(
      Date.parse('2026-03-10T14:00:00Z'),
    );
    expect(quietHoursEnd(Date.parse('2026-03-10T15:00:00Z'), 'UTC', day)).toBeNull();
  });

  it('defers marketing email and exempts transactional, in-app and webhook', async () => {
    const stage = createQuietHoursStage({ quietHours: '21:00-08:00' });
    const night = Date.parse('2026-03-10T23:00:00Z');
    const r = await stage.run(testContext({ now: night }));
    expect(r).toMatchObject({
      kind: 'defer',
      retry: false,
      until: Date.parse('2026-03-11T08:00:00Z'),
    });
    expect((await stage.run(testContext({ now: night, category: 'transactional' }))).kind).toBe(
      'continue',
    );
    expect((await stage.run(testContext({ now: night, channel: 'inapp' }))).kind).toBe('continue');
    expect((await stage.run(testContext({ now: night, channel: 'webhook' }))).kind).toBe(
      'continue',
    );
    expect((await stage.run(testContext({ now: Date.parse('2026-03-10T12:00:00Z') }))).kind).toBe(
      'continue',
    );
    expect(
      (await createQuietHoursStage({ quietHours: '' }).run(testContext({ now: night }))).kind,
    ).toBe('continue');
  });
});
