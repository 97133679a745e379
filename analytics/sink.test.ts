import { describe, expect, it } from 'vitest';
import { deliveryCodec, encodeWithHeader, eventCodec, sendCodec } from '../platform/avro.ts';
import { SCHEMA_ID_HEADER } from '../platform/contracts.ts';
import { DELIVERIES, EVENTS, SENDS } from '../test/support/analytics-fixtures.ts';
import { deliveryRow, eventRow, sendRow } from './schema.ts';
import { chunkByMonth, decodeRecord } from './sink.ts';

describe('decodeRecord', () => {
  it('turns each topic\'s Avro record into its table row', () => {
    expect(decodeRecord('events', encodeWithHeader(eventCodec, EVENTS[0]!))).toEqual({ table: 'events', row: eventRow(EVENTS[0]!) });
    expect(decodeRecord('sends', encodeWithHeader(sendCodec, SENDS[0]!))).toEqual({ table: 'sends', row: sendRow(SENDS[0]!) });
    expect(decodeRecord('deliveries', encodeWithHeader(deliveryCodec, DELIVERIES[0]!))).toEqual({ table: 'deliveries', row: deliveryRow(DELIVERIES[0]!) });
  });

  it('reads records without the schema header as the current schema', () => {
    expect(decodeRecord('events', { value: eventCodec.encode(EVENTS[1]!), headers: {} })).toMatchObject({ table: 'events' });
  });

  it.each([
    ['an empty value', 'events', { value: null, headers: {} }, /empty record value/],
    ['bytes of another schema', 'sends', encodeWithHeader(eventCodec, EVENTS[0]!), /unknown writer schema id/],
    ['garbage bytes', 'deliveries', { value: Buffer.from('hello'), headers: { [SCHEMA_ID_HEADER]: deliveryCodec.schemaId } }, /not a valid/],
    ['a negative event time', 'events', encodeWithHeader(eventCodec, { ...EVENTS[0]!, ts: -5 }), /ts -5 is not an epoch-ms time/],
    ['a time in seconds far in the future', 'deliveries', encodeWithHeader(deliveryCodec, { ...DELIVERIES[0]!, ts: 9_999_999_999_999 }), /not an epoch-ms time/],
    ['a negative goal window', 'sends', encodeWithHeader(sendCodec, { ...SENDS[0]!, goal: { event: 'x', withinMs: -1 } }), /goal window -1 is negative/],
    ['a negative attempt', 'deliveries', encodeWithHeader(deliveryCodec, { ...DELIVERIES[0]!, attempt: -1 }), /attempt -1/],
  ] as const)('rejects %s with a reason', (_name, topic, message, reason) => {
    const r = decodeRecord(topic, message);
    expect('error' in r && r.error).toMatch(reason);
  });
});

describe('chunkByMonth', () => {
  const at = (iso: string) => ({ ts: Date.parse(iso) / 1000 });

  it('keeps a batch whole when it spans few months', () => {
    const rows = [at('2025-01-31T23:59:59Z'), at('2025-02-01T00:00:00Z'), at('2025-01-05T00:00:00Z')];
    expect(chunkByMonth(rows, (r) => r.ts)).toEqual([rows]);
    expect(chunkByMonth([], (r: { ts: number }) => r.ts)).toEqual([]);
  });

  it('splits a backfill over many years into inserts of at most maxMonths partitions, losing nothing', () => {
    const rows = Array.from({ length: 240 }, (_, i) => at(new Date(Date.UTC(2000, i, 15)).toISOString()));
    const chunks = chunkByMonth(rows, (r) => r.ts, 50);
    expect(chunks).toHaveLength(5);
    for (const c of chunks) {
      const months = new Set(c.map((r) => new Date(r.ts * 1000).toISOString().slice(0, 7)));
      expect(months.size).toBeLessThanOrEqual(50);
    }
    expect(chunks.flat().map((r) => r.ts).sort()).toEqual(rows.map((r) => r.ts).sort());
  });
});
