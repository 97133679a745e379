// Kafka is a real broker: Avro records with the schema-id header go through a topic with
// several partitions and come back decoded, in per-user order, and the broker's offsets
// account for every record.
import { afterAll, describe, expect, it } from 'vitest';
import { eventCodec, encodeWithHeader } from '../../platform/avro.ts';
import { SCHEMA_ID_HEADER, topics, type NormalisedEvent } from '../../platform/contracts.ts';
import { isolate } from '../support/isolation.ts';
import { consume, createTopics, deleteTopics, testKafka } from '../support/kafka.ts';

describe('Kafka with Avro payloads', () => {
  const iso = isolate('kafka-avro');
  const config = iso.config();
  const kafka = testKafka(config);
  const topic = topics(config.kafka.topicPrefix).events;

  afterAll(async () => {
    await deleteTopics(kafka, [topic]);
  });

  it('round-trips keyed Avro events with the schema-id header, in per-user order', async () => {
    await createTopics(kafka, [topic], 3);
    const users = ['u-1', 'u-2', 'u-3', 'u-4'];
    const sent: NormalisedEvent[] = [];
    for (let i = 0; i < 24; i++) {
      const userId = users[i % users.length]!;
      sent.push({
        id: `${iso.id}-${i}`,
        userId,
        type: i % 2 ? 'Feature Used' : 'export_done',
        ts: 1_700_000_000_000 + i,
        receivedAt: 1_700_000_000_500 + i,
        source: 'http:test',
        properties: { i, nested: { ok: true } },
        ...(i === 0 ? { traits: { plan: 'trial' } } : {}),
      });
    }
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    await producer.send({
      topic,
      acks: -1,
      messages: sent.map((e) => ({ key: e.userId, ...encodeWithHeader(eventCodec, e) })),
    });
    await producer.disconnect();

    const records = await consume(kafka, topic, iso.group('reader'), { count: sent.length });
    expect(records).toHaveLength(sent.length);
    const received = records.map((r) => {
      const header = r.headers[SCHEMA_ID_HEADER];
      expect(header?.toString()).toBe(eventCodec.schemaId);
      return {
        key: r.key?.toString(),
        partition: r.partition,
        event: eventCodec.decode(r.value!, header?.toString()),
      };
    });
    // Every event arrives intact, keyed by its user.
    expect(received.map((r) => r.event).sort((a, b) => a.ts - b.ts)).toEqual(sent);
    for (const r of received) expect(r.key).toBe(r.event.userId);
    // One user's events live on one partition, in the order they were produced.
    for (const u of users) {
      const mine = received.filter((r) => r.key === u);
      expect(new Set(mine.map((r) => r.partition)).size).toBe(1);
      expect(mine.map((r) => r.event.ts)).toEqual(
        sent.filter((e) => e.userId === u).map((e) => e.ts),
      );
    }
    // The broker's high watermarks count exactly what was sent.
    const admin = kafka.admin();
    await admin.connect();
    const offsets = await admin.fetchTopicOffsets(topic);
    await admin.disconnect();
    expect(offsets).toHaveLength(3);
    expect(offsets.reduce((n, o) => n + Number(o.high), 0)).toBe(sent.length);
  });

  it('rejects bytes written with another schema id', () => {
    const { value } = encodeWithHeader(eventCodec, {
      id: 'x',
      userId: 'u',
      type: 't',
      ts: 1,
      receivedAt: 1,
      source: 's',
      properties: {},
    });
    expect(() => eventCodec.decode(value, 'not-the-schema')).toThrow(/unknown writer schema id/);
  });
});
