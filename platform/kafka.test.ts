import { describe, expect, it } from 'vitest';
import { incomingMessage } from './kafka.ts';

describe('Kafka consumer messages', () => {
  it('carry the key as text and as the bytes it is: binary (Avro) keys are not mangled', () => {
    // Confluent Avro keys of the rows with ids 200 and 201 (zigzag varints 0x90 0x03, 0x92 0x03).
    const k200 = Buffer.from([0, 0, 0, 0, 12, 0x90, 0x03]);
    const k201 = Buffer.from([0, 0, 0, 0, 12, 0x92, 0x03]);
    const read = (key: Buffer | null) =>
      incomingMessage('t', 2, { key, value: Buffer.from('v'), offset: '5', timestamp: '1700000000000', attributes: 0, headers: { h: Buffer.from('x') } });
    const [a, b] = [read(k200), read(k201)];
    expect(a.keyBytes).toEqual(k200);
    expect(b.keyBytes).toEqual(k201);
    // As UTF-8 text both become the same string: why the bytes must travel.
    expect(a.key).toBe(b.key);
    expect(read(Buffer.from('user-1'))).toEqual({ topic: 't', partition: 2, offset: '5', key: 'user-1', keyBytes: Buffer.from('user-1'), value: Buffer.from('v'), headers: { h: 'x' }, timestamp: 1_700_000_000_000 });
    expect(read(null)).toMatchObject({ key: null, keyBytes: null });
  });
});
