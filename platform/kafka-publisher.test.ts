import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { murmur2, partitionForKey } from './kafka-publisher.ts';

// kafkajs's own (64-bit emulated) murmur2 is the reference: the same key must land on the
// same partition whichever of our producers, kafkajs's or the Java client's, writes it.
const reference = createRequire(import.meta.url)('kafkajs/src/producer/partitioners/default/murmur2.js') as (key: string | Buffer) => number;

describe('murmur2 partitioning', () => {
  it('matches kafkajs on ASCII, non-ASCII and binary keys of every length', () => {
    const keys: (string | Buffer)[] = ['', 'a', 'ab', 'abc', 'abcd', 'user-42', 'bench-user-17', 'ünïcødé', '用户-7', '😀x'];
    for (let i = 0; i < 500; i++) keys.push(randomBytes(i % 40).toString('base64').slice(0, i % 37));
    for (let i = 0; i < 100; i++) keys.push(randomBytes(i % 23));
    for (let i = 0; i < 50; i++) keys.push(String.fromCharCode(...Array.from({ length: i % 9 }, (_, j) => 0x80 + ((i * 31 + j * 97) % 0x3000))));
    for (const key of keys) {
      expect(murmur2(key), String(key)).toBe(reference(key));
      for (const n of [1, 3, 12, 64]) expect(partitionForKey(key, n)).toBe((reference(key) & 0x7fffffff) % n);
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
