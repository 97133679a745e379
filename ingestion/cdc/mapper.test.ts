// The mapping file's rules, one feature at a time: several `when` columns, `from`/`to`
// filters with single and list values, snapshot rows as events, and the column types a
// mapping declares for topics without schemas.
import { describe, expect, it } from 'vitest';
import type { ChangeRecord, Op } from './debezium.ts';
import { cdcEventId, mapChange, type MapOutcome } from './mapper.ts';
import { checkMapping, type CdcMapping } from './mapping.ts';

const NOW = 1_780_000_000_000;

const mapping: CdcMapping = {
  source: 'billing',
  tables: {
    'public.accounts': {
      userId: 'user_id',
      traits: ['plan', 'seats', 'status', 'active'],
      columns: {
        opened_ms: 'timestamp-millis',
        born: 'date-days',
        active: 'boolean',
        settings: 'json',
        seats: 'number',
        seen_ns: 'timestamp-nanos',
      },
      insert: { event: 'account_opened' },
      update: [
        { when: ['plan', 'seats'], event: 'account_changed', properties: ['status'] },
        { when: 'status', from: 'trial', to: ['active', 'paid'], event: 'trial_converted' },
        { when: 'status', from: ['active', 'paid'], to: 'trial', event: 'account_downgraded' },
        { when: 'status', to: 'canceled', event: 'account_canceled', properties: false },
        { when: 'active', to: true, event: 'account_activated' },
      ],
      snapshot: 'events',
    },
  },
};

const base = {
  user_id: 'u1',
  plan: 'basic',
  seats: '3',
  status: 'trial',
  active: 'f',
  opened_ms: 1_700_000_000_123,
  born: 19_675,
  settings: '{"theme":"dark"}',
  seen_ns: '1700000000123456789',
};

let lsn = 100;
function change(
  op: Op,
  before: Record<string, unknown> | null,
  after: Record<string, unknown> | null,
): ChangeRecord {
  return {
    op,
    before,
    after,
    source: { lsn: lsn++, table: 'accounts', schema: 'public' },
    tsMs: NOW - 1000,
    schema: 'public',
    table: 'accounts',
    columns: new Map(),
    key: { id: 7 },
  };
}
const types = (o: MapOutcome) => (o.kind === 'events' ? o.events.map((e) => e.type) : o.kind);
const update = (to: Record<string, unknown>, from: Record<string, unknown> = {}) =>
  mapChange(change('u', { ...base, ...from }, { ...base, ...from, ...to }), mapping, {
    receivedAt: NOW,
  });

describe('CDC mapper rules', () => {
  it('the test mapping is a valid mapping file', () => {
    expect(checkMapping(mapping)).toEqual([]);
  });

  it('several `when` columns: one event with {changes} holding only the columns that changed', () => {
    const both = update({ plan: 'pro', seats: '5' });
    expect(both.kind === 'events' && both.events.map((e) => [e.type, e.properties])).toEqual([
      [
        'account_changed',
        {
          status: 'trial',
          changes: { plan: { from: 'basic', to: 'pro' }, seats: { from: 3, to: 5 } },
        },
      ],
    ]);
    const one = update({ seats: '4' });
    expect(one.kind === 'events' && one.events[0]!.properties).toEqual({
      status: 'trial',
      changes: { seats: { from: 3, to: 4 } },
    });
    // declared number: "3" and 3 are the same value, so nothing changed
    expect(types(update({ seats: 3 }))).toBe('skip');
  });

  it('`from` and `to` filter on the old and new value; a list matches any of its values', () => {
    expect(types(update({ status: 'active' }))).toEqual(['trial_converted']);
    expect(types(update({ status: 'paid' }))).toEqual(['trial_converted']);
    // from does not match: paid -> active is no conversion; only traits changed
    expect(types(update({ status: 'active' }, { status: 'paid' }))).toEqual(['identify']);
    // list-valued from
    expect(types(update({ status: 'trial' }, { status: 'active' }))).toEqual([
      'account_downgraded',
    ]);
    expect(types(update({ status: 'trial' }, { status: 'paid' }))).toEqual(['account_downgraded']);
    // to does not match the conversion's list, but the cancellation's value
    const canceled = update({ status: 'canceled' });
    expect(
      canceled.kind === 'events' && canceled.events.map((e) => [e.type, e.properties]),
    ).toEqual([['account_canceled', { from: 'trial', to: 'canceled' }]]);
  });

  it('every matching rule emits its event, each with its own id, with the new traits', () => {
    const out = update({ status: 'canceled', plan: 'pro', active: 't' });
    if (out.kind !== 'events') throw new Error(out.reason);
    expect(out.events.map((e) => e.type)).toEqual([
      'account_changed',
      'account_canceled',
      'account_activated',
    ]);
    expect(new Set(out.events.map((e) => e.id)).size).toBe(3);
    for (const e of out.events)
      expect(e.traits).toEqual({ plan: 'pro', seats: 3, status: 'canceled', active: true });
    // `to: true` compares with the converted value: 'f' -> 't' is false -> true
    expect(out.events[2]!.properties).toEqual({ from: false, to: true });
  });

  it('snapshot "events": snapshot rows are mapped as inserts, with their own op in the context', () => {
    const snap = mapChange(change('r', null, base), mapping, { receivedAt: NOW });
    if (snap.kind !== 'events') throw new Error(snap.reason);
    expect(snap.events.map((e) => [e.type, e.context])).toEqual([
      ['account_opened', { cdc: { table: 'public.accounts', op: 'r' } }],
    ]);
    const traitsOnly = mapChange(
      change('r', null, base),
      {
        ...mapping,
        tables: {
          'public.accounts': { ...mapping.tables['public.accounts']!, snapshot: 'traits' },
        },
      },
      { receivedAt: NOW },
    );
    expect(types(traitsOnly)).toEqual(['identify']);
  });

  it('declared column types: millis, date-days, boolean, json, number and nanos', () => {
    const c = change('c', null, base);
    const out = mapChange(c, mapping, { receivedAt: NOW });
    if (out.kind !== 'events') throw new Error(out.reason);
    expect(out.events[0]!.properties).toEqual({
      user_id: 'u1',
      plan: 'basic',
      seats: 3,
      status: 'trial',
      active: false,
      opened_ms: '2023-11-14T22:13:20.123Z',
      born: '2023-11-14',
      settings: { theme: 'dark' },
      seen_ns: '2023-11-14T22:13:20.123Z',
    });
    expect(out.events[0]!.id).toBe(
      cdcEventId(
        'cdc:billing',
        `lsn:${String(c.source.lsn)}`,
        'public.accounts',
        { id: 7 },
        'account_opened',
      ),
    );
  });
});
