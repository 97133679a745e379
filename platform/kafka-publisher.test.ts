import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { KafkaJSProtocolError, type Kafka, type ProducerBatch, type ProducerConfig } from 'kafkajs';
import { silentLogger } from './logger.ts';
import { createShardedPublisher, murmur2, partitionForKey } from './kafka-publisher.ts';

// kafkajs's own (64-bit emulated) murmur2 is the reference: the same key must land on the
// same partition whichever of our producers, kafkajs's or the Java client's, writes it.
const reference = createRequire(import.meta.url)(
  'kafkajs/src/producer/partitioners/default/murmur2.js',
) as (key: string | Buffer) => number;

describe('murmur2 partitioning', () => {
  it('matches kafkajs on ASCII, non-ASCII and binary keys of every length', () => {
    const keys: (string | Buffer)[] = [
      '',
      'a',
      'ab',
      'abc',
      'abcd',
      'user-42',
      'bench-user-17',
      'ünïcødé',
      '用户-7',
      '😀x',
    ];
    for (let i = 0; i < 500; i++)
      keys.push(
        randomBytes(i % 40)
          .toString('base64')
          .slice(0, i % 37),
      );
    for (let i = 0; i < 100; i++) keys.push(randomBytes(i % 23));
    for (let i = 0; i < 50; i++)
      keys.push(
        String.fromCharCode(
          ...Array.from({ length: i % 9 }, (_, j) => 0x80 + ((i * 31 + j * 97) % 0x3000)),
        ),
      );
    for (const key of keys) {
      expect(murmur2(key), String(key)).toBe(reference(key));
      for (const n of [1, 3, 12, 64])
        expect(partitionForKey(key, n)).toBe((reference(key) & 0x7fffffff) % n);
    }
  });

  it('gives the partitions the Java client gives (values from Kafka’s own Utils.murmur2 tests)', () => {
    // org.apache.kafka.common.utils.UtilsTest#testMurmur2
    const cases: [string, number][] = [
      ['21', -973932308],
      ['foobar', -790332482],
      ['a-little-bit-long-string', -985981536],
      ['a-little-bit-longer-string', -1486304829],
      ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
    ];
    for (const [key, hash] of cases) expect(murmur2(key)).toBe(hash);
  });
});

describe('sharded publisher: what it asks of kafkajs', () => {
  // The no-loss promise of the HTTP API (a 2xx only after every replica has the event) and the
  // no-duplicate promise on producer retries rest on these options; the Kafka client is the seam.
  it('produces through idempotent producers with one request in flight, and every request waits for all in-sync replicas (acks=all)', async () => {
    const producers: ProducerConfig[] = [];
    const requests: ProducerBatch[] = [];
    const kafka = {
      producer: (config: ProducerConfig) => {
        producers.push(config);
        return {
          connect: async () => {},
          disconnect: async () => {},
          sendBatch: async (batch: ProducerBatch) => {
            requests.push(batch);
            return [];
          },
        };
      },
    } as unknown as Kafka;
    const publisher = createShardedPublisher(kafka, {
      lanes: 3,
      partitionCount: async () => 6,
      logger: silentLogger(),
    });
    await publisher.publish(
      'lc.events',
      Array.from({ length: 40 }, (_, i) => ({
        key: `user-${i}`,
        value: Buffer.from(String(i)),
        headers: {},
      })),
    );
    await publisher.publish('lc.events', [
      { key: 'user-1', value: Buffer.from('again'), headers: { 'lc-schema-id': '1' } },
    ]);
    expect(producers).toHaveLength(3);
    for (const config of producers)
      expect(config).toMatchObject({ idempotent: true, maxInFlightRequests: 1 });
    expect(requests.length).toBeGreaterThanOrEqual(3);
    for (const request of requests) expect(request.acks).toBe(-1);
    expect(
      requests
        .flatMap((r) => r.topicMessages!.flatMap((t) => t.messages))
        .map((m) => String(m.value))
        .sort(),
    ).toEqual([...Array.from({ length: 40 }, (_, i) => String(i)), 'again'].sort());
    await publisher.close();
  });

  it('writes key bytes, when a message has them, instead of its text key (a dead-lettered Avro key stays binary)', async () => {
    const sent: ProducerBatch[] = [];
    const kafka = {
      producer: () => ({
        connect: async () => {},
        disconnect: async () => {},
        sendBatch: async (batch: ProducerBatch) => (sent.push(batch), []),
      }),
    } as unknown as Kafka;
    const publisher = createShardedPublisher(kafka, {
      lanes: 1,
      partitionCount: async () => 12,
      logger: silentLogger(),
    });
    const binary = Buffer.from([0, 0, 0, 0, 12, 0x90, 0x03]);
    await publisher.publish('lc.dlq', [
      { key: binary.toString('utf8'), keyBytes: binary, value: Buffer.from('a') },
      { key: 'user-1', value: Buffer.from('b') },
    ]);
    const [a, b] = sent.flatMap((r) => r.topicMessages!.flatMap((t) => t.messages));
    expect(a).toMatchObject({ key: binary, partition: partitionForKey(binary, 12) });
    expect(b).toMatchObject({ key: 'user-1', partition: partitionForKey('user-1', 12) });
    await publisher.close();
  });
});

describe('sharded publisher: a producer stuck after a broker restart', () => {
  // kafkajs#598: after a broker restart an idempotent producer can be left with sequence
  // numbers the broker refuses (OUT_OF_ORDER_SEQUENCE_NUMBER) on every later request.
  it('replaces a producer whose request failed, so the next publish goes out through a new one', async () => {
    let made = 0;
    const disconnected: number[] = [];
    const delivered: string[] = [];
    const kafka = {
      producer: () => {
        const id = ++made;
        let stuck = id === 1;
        return {
          connect: async () => {},
          disconnect: async () => void disconnected.push(id),
          sendBatch: async (batch: ProducerBatch) => {
            if (stuck)
              throw new KafkaJSProtocolError(
                Object.assign(new Error('The broker received an out of order sequence number'), {
                  type: 'OUT_OF_ORDER_SEQUENCE_NUMBER',
                  code: 45,
                  retriable: false,
                }),
              );
            stuck = false;
            for (const t of batch.topicMessages!)
              for (const m of t.messages) delivered.push(String(m.value));
            return [];
          },
        };
      },
    } as unknown as Kafka;
    const publisher = createShardedPublisher(kafka, {
      lanes: 1,
      partitionCount: async () => 3,
      logger: silentLogger(),
    });
    const record = (v: string) => [{ key: 'user-1', value: Buffer.from(v), headers: {} }];
    await expect(publisher.publish('lc.sends', record('first'))).rejects.toThrow(
      /out of order sequence/,
    );
    // The caller retries what was not acknowledged (the consume loop reads its batch again).
    await publisher.publish('lc.sends', record('first'));
    await publisher.publish('lc.sends', record('second'));
    expect(delivered).toEqual(['first', 'second']);
    expect(made).toBe(2);
    expect(disconnected).toEqual([1]);
    await publisher.close();
  });
});
