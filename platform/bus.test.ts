import { describe, expect, it } from 'vitest';
import { InMemoryBus, keyBytesOf, partitionFor, sendToDlq, type IncomingMessage } from './bus.ts';

const msg = (key: string, v: string) => ({ key, value: Buffer.from(v) });

describe('InMemoryBus', () => {
  it('keeps per-key order and redelivers what was not committed', async () => {
    const bus = new InMemoryBus(3);
    await bus.ensureTopics([{ topic: 't', partitions: 3 }]);
    await bus
      .publisher()
      .publish('t', [msg('u1', '1'), msg('u2', 'a'), msg('u1', '2'), msg('u1', '3')]);
    const seen: string[] = [];
    const c = bus.consumer({
      groupId: 'g',
      topics: ['t'],
      eachBatch: async (batch, ctl) => {
        for (const m of batch.messages) if (m.key === 'u1') seen.push(m.value!.toString());
        // commit only the first message of each batch: the rest comes again
        await ctl.commit(String(Number(batch.messages[0]!.offset) + 1));
      },
    });
    await c.start();
    await new Promise((r) => setTimeout(r, 200));
    await c.stop();
    expect(seen.slice(0, 3)).toEqual(['1', '2', '3']);
    expect(seen.filter((s) => s === '3').length).toBeGreaterThan(1);
  });

  it('splits partitions between group members and never gives one partition to two', async () => {
    const bus = new InMemoryBus(4);
    await bus.ensureTopics([{ topic: 't', partitions: 4 }]);
    const noop = async () => {};
    const a = bus.consumer({ groupId: 'g', topics: ['t'], eachBatch: noop });
    const b = bus.consumer({ groupId: 'g', topics: ['t'], eachBatch: noop });
    await a.start();
    expect(a.assignment()).toHaveLength(4);
    await b.start();
    expect(a.assignment()).toHaveLength(2);
    expect(b.assignment()).toHaveLength(2);
    const owned = [...a.assignment(), ...b.assignment()].map((tp) => tp.partition).sort();
    expect(owned).toEqual([0, 1, 2, 3]);
    await a.stop();
    expect(b.assignment()).toHaveLength(4);
    await b.stop();
  });

  it('stops handing out a paused partition, keeps the others flowing, and reads it again from the committed offset once resumed', async () => {
    const bus = new InMemoryBus(2);
    await bus.ensureTopics([{ topic: 't', partitions: 2 }]);
    const seen: string[] = [];
    const c = bus.consumer({
      groupId: 'g',
      topics: ['t'],
      eachBatch: async (batch, ctl) => {
        for (const m of batch.messages) seen.push(`${m.partition}:${m.value!.toString()}`);
        await ctl.commit(String(Number(batch.messages[batch.messages.length - 1]!.offset) + 1));
      },
    });
    await c.start();
    c.pause([{ topic: 't', partition: 0 }]);
    const keyOn = (p: number) =>
      Array.from({ length: 50 }, (_, i) => `k${i}`).find((k) => partitionFor(k, 2) === p)!;
    await bus.publisher().publish('t', [msg(keyOn(0), 'a'), msg(keyOn(1), 'b')]);
    await new Promise((r) => setTimeout(r, 150));
    expect(seen).toEqual(['1:b']);
    expect(bus.groupOffsets('g', 't').get(0)).toBeUndefined();
    c.resume([{ topic: 't', partition: 0 }]);
    await new Promise((r) => setTimeout(r, 150));
    expect(seen).toContain('0:a');
    expect(bus.groupOffsets('g', 't').get(0)).toBe(1);
    await c.stop();
  });

  it('puts the reason and the source position on DLQ records', async () => {
    const bus = new InMemoryBus(1);
    const m: IncomingMessage = {
      topic: 'src',
      partition: 0,
      offset: '7',
      key: 'u',
      value: Buffer.from('x'),
      headers: {},
      timestamp: 0,
    };
    await sendToDlq(bus.publisher(), 'dlq', m, 'bad json', 'decode');
    const [d] = bus.messages('dlq');
    expect(d?.headers).toMatchObject({
      'lc-dlq-reason': 'bad json',
      'lc-dlq-source-topic': 'src',
      'lc-dlq-source-offset': '7',
    });
    expect(d?.key).toBe('u');
  });

  // Debezium's Avro keys: magic byte, schema id, zigzag varint. 200 and 201 differ only in
  // bytes that are not valid UTF-8, so as text both read as the same replacement character.
  const avroKey = (id: number) =>
    Buffer.from([0, 0, 0, 0, 12, ((id * 2) & 0x7f) | 0x80, (id * 2) >> 7]);

  it('carries binary keys as their bytes, in and out of the DLQ', async () => {
    const bus = new InMemoryBus(4);
    const k200 = avroKey(200);
    const k201 = avroKey(201);
    expect(k200.toString('utf8')).toBe(k201.toString('utf8'));
    await bus.publisher().publish('src', [
      { key: k200.toString('utf8'), keyBytes: k200, value: Buffer.from('a') },
      { key: k201.toString('utf8'), keyBytes: k201, value: Buffer.from('b') },
      { key: 'u1', value: Buffer.from('c') },
    ]);
    const [a, b, text] = ['a', 'b', 'c'].map((v) =>
      bus.messages('src').find((m) => m.value!.toString() === v)!,
    );
    expect([a!.keyBytes, b!.keyBytes, text!.keyBytes]).toEqual([k200, k201, Buffer.from('u1')]);
    expect(text!.key).toBe('u1');
    // a text key and its bytes land on the same partition
    await bus
      .publisher()
      .publish('src', [{ key: null, keyBytes: Buffer.from('u1'), value: Buffer.from('d') }]);
    expect(bus.messages('src').find((m) => m.value!.toString() === 'd')!.partition).toBe(
      text!.partition,
    );

    await sendToDlq(bus.publisher(), 'dlq', a!, 'bad row', 'cdc');
    await sendToDlq(bus.publisher(), 'dlq', b!, 'bad row', 'cdc');
    expect(bus.messages('dlq').map((d) => d.keyBytes)).toEqual([k200, k201]);
  });

  it('a message built by hand without key bytes goes to the DLQ with its text key as bytes', async () => {
    const bus = new InMemoryBus(1);
    const m: IncomingMessage = {
      topic: 'src',
      partition: 0,
      offset: '1',
      key: 'ü',
      value: null,
      headers: {},
      timestamp: 0,
    };
    expect(keyBytesOf(m)).toEqual(Buffer.from('ü', 'utf8'));
    await sendToDlq(bus.publisher(), 'dlq', m, 'r', 's');
    expect(bus.messages('dlq')[0]).toMatchObject({ key: 'ü', keyBytes: Buffer.from('ü', 'utf8') });
  });
});
