// The consume loop's stop-the-partition on real Kafka: the paused partition is not fetched
// again while the member stays in the group past its session timeout and the other
// partition flows; nothing of it is committed; once the partition is revoked, its next
// reader starts over from the committed offset.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isolate } from '../test/support/isolation.ts';
import { deleteTopics, testKafka } from '../test/support/kafka.ts';
import { waitFor } from '../test/support/wait.ts';
import { createConsumeLoop, type ConsumeLoop } from './consume.ts';
import { KafkaBus } from './kafka.ts';
import { partitionForKey } from './kafka-publisher.ts';
import { silentLogger } from './logger.ts';
import { createMetricsRegistry } from './metrics.ts';

const iso = isolate('consume_stall');
const config = iso.config();
const topic = `${iso.topicPrefix}.in`;
const dlq = `${iso.topicPrefix}.dlq`;
const groupId = iso.group('stall');
const keyOn = (partition: number) =>
  Array.from({ length: 100 }, (_, i) => `user-${i}`).find(
    (k) => partitionForKey(k, 2) === partition,
  )!;

describe('consume loop on Kafka: a batch that keeps failing', () => {
  let bus: KafkaBus;
  const loops: ConsumeLoop[] = [];

  beforeAll(async () => {
    bus = KafkaBus.fromConfig(config, silentLogger());
    await bus.ensureTopics([
      { topic, partitions: 2 },
      { topic: dlq, partitions: 1 },
    ]);
  });

  afterAll(async () => {
    for (const l of loops) await l.stop();
    await bus?.close();
    await deleteTopics(testKafka(config), [topic, dlq]);
  });

  function start(name: string, handle: (values: string[], partition: number) => void): ConsumeLoop {
    const loop = createConsumeLoop<string>(
      {
        name,
        groupId,
        topics: [topic],
        fromBeginning: true,
        dlqTopic: dlq,
        maxBatchAttempts: 3,
        retryBackoff: { initialMs: 50, maxMs: 100 },
        decode: (m) => m.value!.toString(),
        async handle(records, scope) {
          handle(
            records.map((r) => r.value),
            scope.partition,
          );
        },
      },
      {
        bus,
        publisher: bus.publisher(),
        logger: silentLogger(),
        registry: createMetricsRegistry({ defaults: false }),
      },
    );
    loops.push(loop);
    return loop;
  }

  it('stops the partition and keeps the member in the group; the next owner reads it again', async () => {
    const handled: string[] = [];
    let poisonCalls = 0;
    const first = start('first', (values) => {
      if (values.includes('poison')) {
        poisonCalls++;
        throw new Error('the stores refused the batch');
      }
      handled.push(...values);
    });
    await first.start();
    await bus.publisher().publish(topic, [
      { key: keyOn(0), value: Buffer.from('ok') },
      { key: keyOn(1), value: Buffer.from('poison') },
    ]);
    await waitFor(() => first.stalled().length === 1, {
      timeout: 60_000,
      message: 'partition 1 did not stop',
    });
    expect(first.stalled()).toMatchObject([
      { topic, partition: 1, offset: '0', attempts: 3, error: 'the stores refused the batch' },
    ]);

    // Longer than the session timeout (10 s): a member that stopped heartbeating would be out.
    await bus.publisher().publish(topic, [{ key: keyOn(1), value: Buffer.from('after') }]);
    await new Promise((r) => setTimeout(r, 12_000));
    await bus.publisher().publish(topic, [{ key: keyOn(0), value: Buffer.from('later') }]);
    await waitFor(() => handled.includes('later'), {
      timeout: 30_000,
      message: 'partition 0 stopped flowing',
    });
    expect(first.assignment()).toHaveLength(2);
    expect(poisonCalls).toBe(3);
    expect(handled).toEqual(['ok', 'later']);
    const committed = await bus.committedOffsets(groupId, topic);
    expect(committed.get(0)).toBe('2');
    expect(Number(committed.get(1) ?? '-1')).toBeLessThanOrEqual(0);

    // Leaving the group revokes it; whoever reads it next starts from the committed offset.
    await first.stop();
    expect(first.stalled()).toEqual([]);
    const reread: string[] = [];
    const second = start('second', (values, partition) => {
      if (partition === 1) reread.push(...values);
    });
    await second.start();
    await waitFor(() => reread.length === 2, {
      timeout: 60_000,
      message: 'partition 1 not read again',
    });
    expect(reread).toEqual(['poison', 'after']);
    await waitFor(async () => (await bus.committedOffsets(groupId, topic)).get(1) === '2', {
      timeout: 30_000,
      message: 'partition 1 not committed',
    });
  });
});
