// The compacted-topic view on the real Kafka: a second process's view sees a write, a view
// started again reads everything back, a tombstone deletes, and no view leaves a consumer
// group (or committed offsets) behind on the broker.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Admin } from 'kafkajs';
import { isolate } from '../test/support/isolation.ts';
import { deleteTopics, testKafka } from '../test/support/kafka.ts';
import { KafkaBus } from './kafka.ts';
import { silentLogger } from './logger.ts';
import { createTopicView, type TopicView, type TopicViewCodec } from './topic-view.ts';

interface Doc {
  id: string;
  rev: number;
}

const codec: TopicViewCodec<Doc> = {
  encode: (d) => Buffer.from(JSON.stringify(d)),
  decode(key, value) {
    try {
      const d = JSON.parse(value.toString()) as Doc;
      return d.id === key ? { ok: true, value: d } : { ok: false, reason: 'key is not the id' };
    } catch {
      return { ok: false, reason: 'not JSON' };
    }
  },
};

const iso = isolate('topic_view');
const config = iso.config();
const topic = `${iso.topicPrefix}.docs`;

describe('topic view on Kafka', () => {
  // Two processes: each has its own bus (own clients), as two API instances would.
  const buses: KafkaBus[] = [];
  const views: TopicView<Doc>[] = [];
  let admin: Admin;

  const open = async () => {
    const bus = KafkaBus.fromConfig(config, silentLogger());
    buses.push(bus);
    const v = createTopicView<Doc>(
      {
        topic,
        dlqTopic: `${iso.topicPrefix}.dlq`,
        name: 'doc-view',
        codec,
        spec: { topic, partitions: 1, compacted: true },
        supersedes: (next, current) => next.rev >= current.rev,
      },
      { bus, publisher: bus.publisher(), logger: silentLogger() },
    );
    views.push(v);
    await v.start();
    return v;
  };

  const groupsOnBroker = async () =>
    (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.startsWith(topic));

  beforeAll(async () => {
    admin = testKafka(config).admin();
    await admin.connect();
  });

  afterAll(async () => {
    for (const v of views) await v.stop().catch(() => undefined);
    for (const b of buses) await b.close().catch(() => undefined);
    await deleteTopics(testKafka(config), [topic]);
    await admin.disconnect();
  });

  it('shows a write to a second process, reads it all back after a restart, deletes on a tombstone, and leaves no group behind', async () => {
    const a = await open();
    const b = await open();
    await a.put('d1', { id: 'd1', rev: 1 });
    await a.put('d2', { id: 'd2', rev: 1 });
    expect(a.get('d1')).toEqual({ id: 'd1', rev: 1 });
    // The other process: caught up with the end, it holds both.
    await b.syncToEnd();
    expect(b.get('d2')).toEqual({ id: 'd2', rev: 1 });

    // While they run, each is in a group of its own with nothing committed.
    expect(await groupsOnBroker()).toEqual(expect.arrayContaining([a.groupId, b.groupId]));
    const offsets = await admin.fetchOffsets({ groupId: a.groupId, topics: [topic] });
    expect(offsets[0]?.partitions.map((p) => p.offset)).toEqual(['-1']);

    // A tombstone written by the second process deletes the key in both.
    await b.put('d1', null);
    expect(b.get('d1')).toBeUndefined();
    await a.syncToEnd();
    expect(a.get('d1')).toBeUndefined();

    // The first process restarts: a new view reads the topic from the beginning.
    await a.stop();
    const again = await open();
    expect(again.groupId).not.toBe(a.groupId);
    expect([...again.entries()]).toEqual([['d2', { id: 'd2', rev: 1 }]]);
    expect(again.health()).toMatchObject({ ok: true, caughtUp: true, entries: 1 });

    await b.stop();
    await again.stop();
    // Every view's group is gone from the broker once it stopped.
    expect(await groupsOnBroker()).toEqual([]);
  });
});
