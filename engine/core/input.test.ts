import { describe, expect, it } from 'vitest';
import { parseInputLine } from './input.ts';

const ok = (line: unknown) => {
  const r = parseInputLine(typeof line === 'string' ? line : JSON.stringify(line));
  if (!r.ok) throw new Error(r.reason);
  return r;
};
const bad = (line: unknown) => {
  const r = parseInputLine(typeof line === 'string' ? line : JSON.stringify(line));
  if (r.ok) throw new Error('expected a rejection');
  return r.reason;
};

describe('simulate input lines', () => {
  it('Segment track: type is the event name as sent, properties kept, time from timestamp', () => {
    const r = ok({
      type: 'track',
      event: 'Feature Used',
      userId: 'u1',
      messageId: 'm1',
      timestamp: '2026-03-02T10:00:00.000Z',
      properties: { feature: 'export' },
      context: { ip: '1.2.3.4' },
    });
    expect(r.format).toBe('segment');
    expect(r.event).toEqual({
      id: 'm1',
      userId: 'u1',
      type: 'Feature Used',
      ts: Date.parse('2026-03-02T10:00:00.000Z'),
      receivedAt: Date.parse('2026-03-02T10:00:00.000Z'),
      source: 'simulate',
      properties: { feature: 'export' },
      context: { ip: '1.2.3.4' },
    });
  });

  it('Segment identify, page, screen, group, alias as Segment documents them', () => {
    expect(
      ok({
        type: 'identify',
        userId: 'u1',
        messageId: 'i',
        timestamp: '2026-03-02T10:00:00Z',
        traits: { plan: 'trial' },
      }).event,
    ).toMatchObject({ type: 'identify', traits: { plan: 'trial' }, properties: {} });
    expect(
      ok({
        type: 'page',
        userId: 'u1',
        messageId: 'p',
        timestamp: '2026-03-02T10:00:00Z',
        name: 'Pricing',
        properties: { path: '/pricing' },
      }).event,
    ).toMatchObject({ type: 'page', properties: { name: 'Pricing', path: '/pricing' } });
    expect(
      ok({
        type: 'screen',
        userId: 'u1',
        messageId: 's',
        timestamp: '2026-03-02T10:00:00Z',
        name: 'Home',
      }).event,
    ).toMatchObject({ type: 'screen', properties: { name: 'Home' } });
    expect(
      ok({
        type: 'group',
        userId: 'u1',
        messageId: 'g',
        timestamp: '2026-03-02T10:00:00Z',
        groupId: 'acme',
        traits: { name: 'Acme' },
      }).event,
    ).toMatchObject({ type: 'group', properties: { groupId: 'acme' }, traits: { name: 'Acme' } });
    expect(
      ok({
        type: 'alias',
        userId: 'u1',
        previousId: 'anon-1',
        messageId: 'a',
        timestamp: '2026-03-02T10:00:00Z',
      }).event,
    ).toMatchObject({ type: 'alias', properties: { previousId: 'anon-1' } });
  });

  it('anonymous users, numeric ids and missing messageIds', () => {
    expect(
      ok({
        type: 'track',
        event: 'x',
        anonymousId: 'anon-9',
        messageId: 'm',
        timestamp: '2026-03-02T10:00:00Z',
      }).event,
    ).toMatchObject({ userId: 'anon-9', anonymousId: 'anon-9' });
    expect(
      ok({
        type: 'track',
        event: 'x',
        userId: 42,
        messageId: 'm',
        timestamp: '2026-03-02T10:00:00Z',
      }).event.userId,
    ).toBe('42');
    const line = '{"type":"track","event":"x","userId":"u","timestamp":"2026-03-02T10:00:00Z"}';
    expect(ok(line).event.id).toBe(ok(line).event.id);
    expect(ok(line).event.id).not.toBe(ok(line.replace('"x"', '"y"')).event.id);
  });

  it('normalised events pass through', () => {
    const e = {
      id: 'cdc:1',
      userId: 'u1',
      type: 'user_registered',
      ts: 1772445600000,
      receivedAt: 1772445600001,
      source: 'cdc:pg',
      properties: {},
      traits: { plan: 'trial' },
    };
    expect(ok(e)).toEqual({ ok: true, format: 'normalised', event: e });
  });

  it('rejects with a reason a user can act on', () => {
    expect(bad('{not json')).toMatch(/not JSON/);
    expect(bad('[1,2]')).toMatch(/not a JSON object/);
    expect(bad({ type: 'purchase', userId: 'u', timestamp: '2026-03-02T10:00:00Z' })).toMatch(
      /type must be one of/,
    );
    expect(bad({ type: 'track', userId: 'u', timestamp: '2026-03-02T10:00:00Z' })).toMatch(
      /event name/,
    );
    expect(bad({ type: 'track', event: 'x', timestamp: '2026-03-02T10:00:00Z' })).toMatch(
      /userId or anonymousId/,
    );
    expect(bad({ type: 'track', event: 'x', userId: 'u' })).toMatch(/timestamp is required/);
    expect(bad({ type: 'track', event: 'x', userId: 'u', timestamp: 'yesterday' })).toMatch(
      /not an ISO date/,
    );
    expect(
      bad({
        type: 'track',
        event: 'x',
        userId: 'u',
        timestamp: '2026-03-02T10:00:00Z',
        properties: [1],
      }),
    ).toMatch(/properties must be an object/);
    expect(bad({ id: 'x', userId: '', type: 't', ts: 1 })).toMatch(/userId/);
    expect(bad({ id: 'x', userId: 'u', type: 't', ts: 1.5 })).toMatch(/integer/);
  });
});
