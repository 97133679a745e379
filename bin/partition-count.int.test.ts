// How many partitions user search reads: the events topic's own count from Kafka, asked at
// most once a minute, and the last known count while Kafka cannot answer.
import { afterAll, describe, expect, it } from 'vitest';
import { createKafka, KafkaBus } from '../platform/kafka.ts';
import { createLogger } from '../platform/logger.ts';
import { isolate } from '../test/support/isolation.ts';
import { partitionCount } from './processes.ts';

const iso = isolate('partition-count');
const config = iso.config();
const logger = createLogger({ level: 'silent', name: 'partition-count' });
const bus = KafkaBus.fromConfig(config, logger);
afterAll(async () => {
  await bus.close();
});

describe('partition count of user search', () => {
  it("reads the topic's count (not the configured one) and asks again after a minute", async () => {
    const topic = `${iso.topicPrefix}.events`;
    await bus.ensureTopics([{ topic, partitions: 5 }]);
    let now = 1_000_000;
    const count = partitionCount(bus, topic, 12, logger, () => now);
    expect(await count()).toBe(5);
    const admin = bus.kafka.admin();
    await admin.connect();
    try {
      await admin.createPartitions({ topicPartitions: [{ topic, count: 7 }] });
    } finally {
      await admin.disconnect();
    }
    now += 30_000;
    expect(await count()).toBe(5);
    now += 31_000;
    expect(await count()).toBe(7);
  });

  it('serves the configured count while Kafka cannot be reached', async () => {
    // A broker nobody listens on, and a client that does not retry: the call fails at once.
    const unreachable = new KafkaBus(
      createKafka({ brokers: ['127.0.0.1:9'], clientId: 'partition-count' }, logger, 0),
      logger,
      { replicationFactor: 1 },
    );
    try {
      const count = partitionCount(unreachable, 'any.events', 12, logger);
      expect(await count()).toBe(12);
    } finally {
      await unreachable.close();
    }
  });
});
