// Several idempotent producers behind one publisher: partitions are sharded across them,
// so every key still lands on the partition the Java client would pick and each key's
// records are stored in publish order, with all publishes running concurrently.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isolate } from '../test/support/isolation.ts';
import { deleteTopics, testKafka } from '../test/support/kafka.ts';
import { waitFor } from '../test/support/wait.ts';
import { KafkaBus } from './kafka.ts';
import { partitionForKey } from './kafka-publisher.ts';
import { silentLogger } from './logger.ts';
import type { BusConsumer } from './bus.ts';

const iso = isolate('kafka_publisher');
const config = iso.config();
const topic = `${iso.topicPrefix}.sharded`;
const PARTITIONS = 6;

describe('KafkaBus publisher with several producers', () => {
  let bus: KafkaBus;
  let consumer: BusConsumer | undefined;

  beforeAll(async () => {
    bus = KafkaBus.fromConfig(config, silentLogger(), { producers: 3 });
    await bus.ensureTopics([{ topic, partitions: PARTITIONS }]);
  });

  afterAll(async () => {
    await consumer?.stop();
    await bus?.close();
    await deleteTopics(testKafka(config), [topic]);
  });

  it('stores every record on its key’s murmur2 partition, each key in publish order', async () => {
    const publisher = bus.publisher();
    const users = Array.from({ length: 40 }, (_, i) => `user-${i}-${iso.id}`);
    const next = new Map(users.map((u) => [u, 0]));
    // 200 publishes in flight at once, each a mix of users, like concurrent HTTP batches.
    const publishes: Promise<void>[] = [];
    for (let call = 0; call < 200; call++) {
      const messages = Array.from({ length: 25 }, (_, j) => {
        const user = users[(call * 7 + j * 13) % users.length]!;
        const seq = next.get(user)!;
        next.set(user, seq + 1);
        return { key: user, value: Buffer.from(`${user}:${seq}`), headers: { 'lc-test': 'x' } };
      });
      publishes.push(publisher.publish(topic, messages));
    }
    await Promise.all(publishes);
    const total = 200 * 25;

    const seen: { partition: number; key: string; seq: number; header: string | undefined }[] = [];
    consumer = bus.consumer({
      groupId: iso.group('reader'),
      topics: [topic],
      fromBeginning: true,
      // Committed, so the consumer moves on: a batch left unresolved is fetched again, and
      // its records would be counted twice.
      eachBatch: async (batch, control) => {
        for (const m of batch.messages) {
          const [key, seq] = m.value!.toString().split(':');
          seen.push({
            partition: m.partition,
            key: key!,
            seq: Number(seq),
            header: m.headers['lc-test'],
          });
        }
        await control.commit((BigInt(batch.messages.at(-1)!.offset) + 1n).toString());
      },
    });
    await consumer.start();
    await waitFor(() => seen.length >= total, { timeout: 60_000 });
    // Anything stored twice would show up here.
    await new Promise((r) => setTimeout(r, 1000));
    expect(seen.length).toBe(total);

    const last = new Map<string, number>();
    for (const r of seen) {
      expect(r.partition).toBe(partitionForKey(r.key, PARTITIONS));
      expect(r.header).toBe('x');
      // Records of one partition arrive in offset order, so each key's sequence must only grow.
      expect(r.seq).toBe((last.get(r.key) ?? -1) + 1);
      last.set(r.key, r.seq);
    }
    for (const u of users) expect(last.get(u)).toBe(next.get(u)! - 1);
  });
});
