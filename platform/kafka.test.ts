import { describe, expect, it } from 'vitest';
import type { Kafka } from 'kafkajs';
import { incomingMessage, KafkaBus } from './kafka.ts';
import { silentLogger } from './logger.ts';

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

describe('end offsets', () => {
  const bus = (fetchTopicOffsets: () => Promise<{ partition: number; offset: string; high: string; low: string }[]>) =>
    new KafkaBus({ admin: () => ({ connect: async () => undefined, fetchTopicOffsets }) } as unknown as Kafka, silentLogger());

  it('asks again while a partition has no leader yet (a topic just created), and gives up on other errors', async () => {
    let calls = 0;
    const electing = bus(async () => {
      if (++calls < 3) throw Object.assign(new Error('This server is not the leader for that topic-partition'), { retriable: true });
      return [{ partition: 0, offset: '7', high: '7', low: '0' }];
    });
    expect(await electing.endOffsets('t')).toEqual(new Map([[0, '7']]));
    expect(calls).toBe(3);

    let fatal = 0;
    const denied = bus(async () => {
      fatal++;
      throw Object.assign(new Error('Not authorized to access topics'), { retriable: false });
    });
    await expect(denied.endOffsets('t')).rejects.toThrow('Not authorized');
    expect(fatal).toBe(1);
  });
});
