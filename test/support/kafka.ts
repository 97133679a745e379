// Kafka helpers: a quiet client, topics created up front, and reading N records.
import { Kafka, logLevel, type IHeaders, type KafkaMessage } from 'kafkajs';
import type { Config } from '../../platform/config.ts';
import { waitFor } from './wait.ts';

export function testKafka(config: Pick<Config, 'kafka'>, clientId = 'lifecycle-test'): Kafka {
  return new Kafka({
    clientId,
    brokers: [...config.kafka.brokers],
    logLevel: logLevel.NOTHING,
    retry: { retries: 8 },
  });
}

export async function createTopics(
  kafka: Kafka,
  topics: string[],
  numPartitions = 1,
): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({
      topics: topics.map((topic) => ({ topic, numPartitions })),
      waitForLeaders: true,
    });
  } finally {
    await admin.disconnect();
  }
}

export async function deleteTopics(kafka: Kafka, topics: string[]): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const doomed = topics.filter((t) => existing.has(t));
    if (doomed.length > 0) await admin.deleteTopics({ topics: doomed });
  } finally {
    await admin.disconnect();
  }
}

/** Waits until `topic` exists and every partition has a leader (e.g. one a connector creates). */
export async function waitForTopic(kafka: Kafka, topic: string, timeout = 60_000): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await waitFor(
      async () => {
        if (!(await admin.listTopics()).includes(topic)) return false;
        const { topics: meta } = await admin.fetchTopicMetadata({ topics: [topic] });
        const parts = meta[0]?.partitions ?? [];
        return parts.length > 0 && parts.every((p) => p.leader >= 0);
      },
      { timeout, interval: 250, message: `topic ${topic} does not exist` },
    );
  } finally {
    await admin.disconnect();
  }
}

export interface ConsumedRecord {
  topic: string;
  partition: number;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: IHeaders;
}

/**
 * Reads from the beginning of `topic` (or a regex) with a fresh group until `count` records
 * arrived (or `until` says enough), then disconnects.
 */
export async function consume(
  kafka: Kafka,
  topic: string | RegExp,
  groupId: string,
  opts: { count?: number; until?: (records: ConsumedRecord[]) => boolean; timeout?: number } = {},
): Promise<ConsumedRecord[]> {
  if (typeof topic === 'string') await waitForTopic(kafka, topic, opts.timeout ?? 60_000);
  const records: ConsumedRecord[] = [];
  const enough = opts.until ?? ((r: ConsumedRecord[]) => r.length >= (opts.count ?? 1));
  const consumer = kafka.consumer({
    groupId,
    maxWaitTimeInMs: 200,
    sessionTimeout: 10_000,
    heartbeatInterval: 1_000,
  });
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachMessage: async ({
        topic: t,
        partition,
        message,
      }: {
        topic: string;
        partition: number;
        message: KafkaMessage;
      }) => {
        records.push({
          topic: t,
          partition,
          offset: message.offset,
          key: message.key,
          value: message.value,
          headers: message.headers ?? {},
        });
      },
    });
    await waitFor(() => enough(records), {
      timeout: opts.timeout ?? 60_000,
      message: `not enough records on ${String(topic)} (have ${records.length})`,
    });
    return records;
  } finally {
    await consumer.disconnect();
  }
}
