// Topics that carry rendered messages (sends, the message log) take records of several MB:
// a topic that existed before with Kafka's ~1 MB default is raised in place, keeping its own
// settings, and a 3 MB record goes through the product's producer and consumer (kafkajs
// fetches a record larger than its per-partition fetch size whole).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigResourceTypes } from 'kafkajs';
import { isolate } from '../test/support/isolation.ts';
import { deleteTopics, testKafka } from '../test/support/kafka.ts';
import { waitFor } from '../test/support/wait.ts';
import { LARGE_RECORD_BYTES, type BusConsumer } from './bus.ts';
import { KafkaBus } from './kafka.ts';
import { silentLogger } from './logger.ts';

const iso = isolate('kafka_large');
const config = iso.config();
const topic = `${iso.topicPrefix}.messages`;

describe('topics for large records', () => {
  const kafka = testKafka(config);
  let bus: KafkaBus;
  let consumer: BusConsumer | undefined;

  beforeAll(async () => {
    const admin = kafka.admin();
    await admin.connect();
    try {
      // As an earlier release created it: no max.message.bytes, a retention of its own.
      await admin.createTopics({
        waitForLeaders: true,
        topics: [
          {
            topic,
            numPartitions: 2,
            configEntries: [{ name: 'retention.ms', value: '86400000' }],
          },
        ],
      });
    } finally {
      await admin.disconnect();
    }
    bus = KafkaBus.fromConfig(config, silentLogger());
  });

  afterAll(async () => {
    await consumer?.stop();
    await bus?.close();
    await deleteTopics(kafka, [topic]);
  });

  const topicConfig = async () => {
    const admin = kafka.admin();
    await admin.connect();
    try {
      const { resources } = await admin.describeConfigs({
        includeSynonyms: false,
        resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
      });
      return new Map(resources[0]!.configEntries.map((e) => [e.configName, e.configValue]));
    } finally {
      await admin.disconnect();
    }
  };

  it('raises max.message.bytes of an existing topic, keeps its retention, and moves a 3 MB record through', async () => {
    expect(Number((await topicConfig()).get('max.message.bytes'))).toBeLessThan(2 * 1024 * 1024);
    const publisher = bus.publisher();
    const big = Buffer.alloc(3 * 1024 * 1024, 'x');
    // Kafka's default refuses it.
    await expect(publisher.publish(topic, [{ key: 'u1', value: big }])).rejects.toThrow();

    await bus.ensureTopics([{ topic, partitions: 2, maxMessageBytes: LARGE_RECORD_BYTES }]);
    const after = await topicConfig();
    expect(after.get('max.message.bytes')).toBe(String(LARGE_RECORD_BYTES));
    expect(after.get('retention.ms')).toBe('86400000');

    await publisher.publish(topic, [
      { key: 'u1', value: big, headers: { n: '1' } },
      { key: 'u1', value: Buffer.from('small'), headers: { n: '2' } },
    ]);
    const got: { n: string | undefined; bytes: number; same: boolean }[] = [];
    consumer = bus.consumer({
      groupId: iso.group('reader'),
      topics: [topic],
      fromBeginning: true,
      eachBatch: async (batch, control) => {
        for (const m of batch.messages)
          got.push({
            n: m.headers.n,
            bytes: m.value?.length ?? 0,
            same: m.value?.equals(m.headers.n === '1' ? big : Buffer.from('small')) ?? false,
          });
        await control.commit((BigInt(batch.messages.at(-1)!.offset) + 1n).toString());
      },
    });
    await consumer.start();
    await waitFor(() => got.length >= 2, { timeout: 60_000, message: 'both records read back' });
    expect(got).toEqual([
      { n: '1', bytes: big.length, same: true },
      { n: '2', bytes: 5, same: true },
    ]);
  });
});
