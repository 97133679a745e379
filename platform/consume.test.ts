import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { InMemoryBus, partitionFor, type Bus } from './bus.ts';
import {
  createConsumeLoop,
  nextOffset,
  RecordRejected,
  type ConsumeLoopOptions,
} from './consume.ts';
import { DlqHeaders } from './contracts.ts';
import { createMetricsRegistry, type Registry } from './metrics.ts';

const logger = pino({ level: 'silent' });
const until = async (check: () => boolean | Promise<boolean>, ms = 3000) => {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
};

async function setup(n: number) {
  const bus = new InMemoryBus(1);
  await bus.ensureTopics([
    { topic: 'in', partitions: 1 },
    { topic: 'dlq', partitions: 1 },
  ]);
  await bus.publisher().publish(
    'in',
    Array.from({ length: n }, (_, i) => ({ key: 'u', value: Buffer.from(String(i)) })),
  );
  return { bus, registry: createMetricsRegistry({ defaults: false }) };
}

function loop<T>(
  bus: InMemoryBus,
  registry: Registry,
  options: Partial<ConsumeLoopOptions<T>> & Pick<ConsumeLoopOptions<T>, 'decode' | 'handle'>,
) {
  return createConsumeLoop<T>(
    { name: 'test', groupId: 'g', topics: ['in'], dlqTopic: 'dlq', ...options },
    { bus, publisher: bus.publisher(), logger, registry },
  );
}

async function counter(
  registry: Registry,
  name: string,
  labels: Record<string, string>,
): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  return (metric?.values ?? [])
    .filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))
    .reduce((a, v) => a + v.value, 0);
}

describe('consume loop', () => {
  it('dead-letters what the decoder refuses with its stage and reason, hands the rest to the stage, then commits last plus one', async () => {
    const { bus, registry } = await setup(5);
    const handled: number[] = [];
    const consumer = loop<number>(bus, registry, {
      decode(m) {
        const n = Number(m.value!.toString());
        if (n === 2) throw new RecordRejected('two is not allowed');
        if (n === 3) throw new Error('boom');
        return n;
      },
      async handle(records) {
        for (const r of records) handled.push(r.value);
      },
    });
    await consumer.start();
    await until(() => consumer.lastCommitAt() !== null);
    expect(consumer.committedOffsets('in').get(0)).toBe('5');
    await consumer.stop();
    // A revoked partition's offsets are no longer this process's to report.
    expect(consumer.committedOffsets('in').size).toBe(0);
    expect(handled).toEqual([0, 1, 4]);
    const dlq = bus.messages('dlq');
    expect(
      dlq.map((d) => [
        d.headers[DlqHeaders.stage],
        d.headers[DlqHeaders.reason],
        d.headers[DlqHeaders.sourceOffset],
      ]),
    ).toEqual([
      ['test.decode', 'two is not allowed', '2'],
      ['test.decode', 'undecodable record: boom', '3'],
    ]);
    expect(
      await counter(registry, 'lifecycle_consumer_records_total', {
        consumer: 'test',
        outcome: 'ok',
      }),
    ).toBe(3);
    expect(
      await counter(registry, 'lifecycle_consumer_records_total', {
        consumer: 'test',
        outcome: 'dlq',
      }),
    ).toBe(2);
    expect(
      await counter(registry, 'lifecycle_consumer_dlq_total', {
        consumer: 'test',
        stage: 'test.decode',
      }),
    ).toBe(2);
  });

  it('skips undecodable records when another process owns their dead letters, and names the decode stage when asked', async () => {
    const { bus, registry } = await setup(3);
    const consumer = loop<number>(bus, registry, {
      undecodable: 'skip',
      decode(m) {
        if (m.value!.toString() === '1') throw new RecordRejected('nope');
        return 0;
      },
      async handle() {},
    });
    await consumer.start();
    await until(() => consumer.lastCommitAt() !== null);
    await consumer.stop();
    expect(bus.messages('dlq')).toHaveLength(0);
    expect(
      await counter(registry, 'lifecycle_consumer_records_total', {
        outcome: 'skip',
        reason: 'undecodable',
      }),
    ).toBe(1);

    const second = await setup(1);
    const named = loop<number>(second.bus, second.registry, {
      decodeStage: 'sink',
      decode() {
        throw new RecordRejected('bad');
      },
      async handle() {},
    });
    await named.start();
    await until(() => named.lastCommitAt() !== null);
    await named.stop();
    expect(second.bus.messages('dlq')[0]!.headers[DlqHeaders.stage]).toBe('sink');
  });

  it("writes the stage's dead letters (several per record if it says so) and counts its skips by reason", async () => {
    const { bus, registry } = await setup(3);
    const consumer = loop<number>(bus, registry, {
      decode: (m) => Number(m.value!.toString()),
      async handle(records, scope) {
        for (const { message, value } of records) {
          if (value === 0) scope.skip(message, 'replay');
          if (value === 1) {
            scope.deadLetter(message, 'test.email', 'email: no address');
            scope.deadLetter(message, 'test.sms', 'sms: no phone');
          }
        }
      },
    });
    await consumer.start();
    await until(() => consumer.lastCommitAt() !== null);
    await consumer.stop();
    expect(bus.messages('dlq').map((d) => d.headers[DlqHeaders.stage])).toEqual([
      'test.email',
      'test.sms',
    ]);
    expect(
      await counter(registry, 'lifecycle_consumer_records_total', {
        outcome: 'skip',
        reason: 'replay',
      }),
    ).toBe(1);
    expect(await counter(registry, 'lifecycle_consumer_records_total', { outcome: 'dlq' })).toBe(1);
    expect(await counter(registry, 'lifecycle_consumer_records_total', { outcome: 'ok' })).toBe(1);
  });

  it('reads a batch again when the stage fails or abandons it, and writes no dead letter and no commit for it', async () => {
    const { bus, registry } = await setup(2);
    let calls = 0;
    const consumer = loop<number>(bus, registry, {
      decode: (m) => Number(m.value!.toString()),
      async handle(records, scope) {
        calls++;
        scope.deadLetter(records[0]!.message, 'test.x', 'x');
        if (calls === 1) throw new Error('redis away');
        if (calls === 2) return 'abandon';
        return 'commit';
      },
    });
    await consumer.start();
    await until(() => consumer.lastCommitAt() !== null);
    await consumer.stop();
    expect(calls).toBe(3);
    // Only the committed attempt's dead letter was written.
    expect(bus.messages('dlq')).toHaveLength(1);
    expect(
      await counter(registry, 'lifecycle_consumer_batch_failures_total', { consumer: 'test' }),
    ).toBe(1);
    expect(await counter(registry, 'lifecycle_consumer_records_total', { consumer: 'test' })).toBe(
      2,
    );
    expect(consumer.lastError()).toBeNull();
  });

  it('keeps the group membership alive while a slow stage works', async () => {
    const { bus, registry } = await setup(1);
    let beats = 0;
    const consumer = createConsumeLoop<number>(
      {
        name: 'slow',
        groupId: 'g',
        topics: ['in'],
        dlqTopic: 'dlq',
        heartbeatMs: 20,
        decode: () => 0,
        async handle() {
          await new Promise((r) => setTimeout(r, 150));
        },
      },
      {
        bus: {
          consumer: (sub) =>
            bus.consumer({
              ...sub,
              eachBatch: (batch, control) =>
                sub.eachBatch(batch, {
                  ...control,
                  heartbeat: async () => {
                    beats++;
                  },
                }),
            }),
        },
        publisher: bus.publisher(),
        logger,
        registry,
      },
    );
    await consumer.start();
    await until(() => consumer.lastCommitAt() !== null);
    await consumer.stop();
    expect(beats).toBeGreaterThanOrEqual(3);
  });

  it('retries a failing batch in place, pausing longer each time, and commits only once it succeeds', async () => {
    const { bus, registry } = await setup(2);
    const at: number[] = [];
    const committedBefore: (number | undefined)[] = [];
    const consumer = loop<number>(bus, registry, {
      retryBackoff: { initialMs: 40, maxMs: 1000 },
      decode: (m) => Number(m.value!.toString()),
      async handle() {
        at.push(Date.now());
        committedBefore.push(bus.groupOffsets('g', 'in').get(0));
        if (at.length <= 2) throw new Error('store away');
      },
    });
    await consumer.start();
    await until(() => consumer.lastCommitAt() !== null);
    await consumer.stop();
    expect(at).toHaveLength(3);
    expect(committedBefore).toEqual([undefined, undefined, undefined]);
    expect(bus.groupOffsets('g', 'in').get(0)).toBe(2);
    // Exponential: the second pause is twice the first.
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(35);
    expect(at[2]! - at[1]!).toBeGreaterThanOrEqual(75);
    expect(
      await counter(registry, 'lifecycle_consumer_batch_failures_total', { consumer: 'test' }),
    ).toBe(2);
    expect(consumer.lastError()).toBeNull();
    expect(consumer.stalled()).toEqual([]);
  });

  describe('a batch that keeps failing', () => {
    const keyOn = (partition: number) =>
      Array.from({ length: 100 }, (_, i) => `user-${i}`).find(
        (k) => partitionFor(k, 2) === partition,
      )!;

    async function twoPartitions() {
      const bus = new InMemoryBus(2);
      await bus.ensureTopics([
        { topic: 'in', partitions: 2 },
        { topic: 'dlq', partitions: 1 },
      ]);
      return { bus, registry: createMetricsRegistry({ defaults: false }) };
    }

    const failOnPoison = (calls: Map<number, number>) => ({
      maxBatchAttempts: 3,
      retryBackoff: { initialMs: 5, maxMs: 20 },
      decode: (m: { value: Buffer | null }) => m.value!.toString(),
      async handle(records: { value: string }[], scope: { partition: number }) {
        calls.set(scope.partition, (calls.get(scope.partition) ?? 0) + 1);
        if (records.some((r) => r.value === 'poison'))
          throw new Error('preference store refused the erasure');
      },
    });

    it('stops its partition after maxBatchAttempts: paused, reported, logged, counted, never committed; the other partitions flow', async () => {
      const { bus, registry } = await twoPartitions();
      const lines: Record<string, unknown>[] = [];
      const logger = pino(
        { level: 'info' },
        { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
      );
      const calls = new Map<number, number>();
      const consumer = createConsumeLoop<string>(
        { name: 'erasure', groupId: 'g', topics: ['in'], dlqTopic: 'dlq', ...failOnPoison(calls) },
        { bus, publisher: bus.publisher(), logger, registry },
      );
      await consumer.start();
      await bus.publisher().publish('in', [
        { key: keyOn(0), value: Buffer.from('ok') },
        { key: keyOn(1), value: Buffer.from('poison') },
      ]);
      await until(() => consumer.stalled().length === 1);
      expect(consumer.stalled()).toEqual([
        {
          topic: 'in',
          partition: 1,
          offset: '0',
          attempts: 3,
          error: 'preference store refused the erasure',
          since: expect.any(Number) as number,
        },
      ]);
      // Paused: not read again, however long we wait; the other partition keeps flowing.
      await bus.publisher().publish('in', [{ key: keyOn(0), value: Buffer.from('later') }]);
      await until(() => bus.groupOffsets('g', 'in').get(0) === 2);
      await new Promise((r) => setTimeout(r, 100));
      expect(calls.get(1)).toBe(3);
      expect(bus.groupOffsets('g', 'in').get(1)).toBeUndefined();
      expect(
        await counter(registry, 'lifecycle_consumer_stalled_partitions', { consumer: 'erasure' }),
      ).toBe(1);
      const stop = lines.find(
        (l) => l.level === 60 || (l.level === 50 && /stopped/.test(String(l.msg))),
      );
      expect(stop).toMatchObject({
        component: 'erasure',
        topic: 'in',
        partition: 1,
        offset: '0',
        attempts: 3,
        err: 'preference store refused the erasure',
      });
      expect(String(stop!.msg)).toMatch(/restart/);

      // Leaving the group revokes the partition: nothing stalled is left in this process.
      await consumer.stop();
      expect(consumer.stalled()).toEqual([]);
      expect(
        await counter(registry, 'lifecycle_consumer_stalled_partitions', { consumer: 'erasure' }),
      ).toBe(0);
    });

    it('a stalled partition taken away by a rebalance is cleared here, and its next owner reads it again', async () => {
      const { bus, registry } = await twoPartitions();
      const calls = new Map<number, number>();
      const first = loop<string>(bus, registry, { name: 'first', ...failOnPoison(calls) });
      await first.start();
      await bus.publisher().publish('in', [{ key: keyOn(1), value: Buffer.from('poison') }]);
      await until(() => first.stalled().length === 1);

      const handled: string[] = [];
      const second = loop<string>(bus, registry, {
        name: 'second',
        decode: (m) => m.value!.toString(),
        async handle(records) {
          for (const r of records) handled.push(r.value);
        },
      });
      // The second member takes partition 1 (the in-memory bus deals partitions round-robin).
      await second.start();
      expect(second.assignment()).toEqual([{ topic: 'in', partition: 1 }]);
      expect(first.stalled()).toEqual([]);
      expect(
        await counter(registry, 'lifecycle_consumer_stalled_partitions', { consumer: 'first' }),
      ).toBe(0);
      await until(() => bus.groupOffsets('g', 'in').get(1) === 1);
      expect(handled).toEqual(['poison']);
      await second.stop();
      await first.stop();
    });

    it('keeps heartbeating while it waits to retry, and a stop does not wait for the pause to end', async () => {
      const { bus, registry } = await setup(1);
      let beats = 0;
      let calls = 0;
      const counting: Pick<Bus, 'consumer'> = {
        consumer: (sub) =>
          bus.consumer({
            ...sub,
            eachBatch: (batch, control) =>
              sub.eachBatch(batch, {
                ...control,
                heartbeat: async () => {
                  beats++;
                },
              }),
          }),
      };
      const consumer = createConsumeLoop<number>(
        {
          name: 'patient',
          groupId: 'g',
          topics: ['in'],
          dlqTopic: 'dlq',
          heartbeatMs: 20,
          retryBackoff: { initialMs: 10_000, maxMs: 10_000 },
          decode: () => 0,
          async handle() {
            calls++;
            throw new Error('redis away');
          },
        },
        { bus: counting, publisher: bus.publisher(), logger, registry },
      );
      await consumer.start();
      await until(() => calls === 1);
      await new Promise((r) => setTimeout(r, 150));
      expect(beats).toBeGreaterThanOrEqual(3);
      expect(calls).toBe(1);
      const stopping = Date.now();
      await consumer.stop();
      expect(Date.now() - stopping).toBeLessThan(1000);
      expect(consumer.stalled()).toEqual([]);
    });
  });

  it("measures its group's lag on each partition it reads until it commits, and forgets a partition it no longer reads", async () => {
    const { bus, registry } = await setup(5);
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const consumer = loop<number>(bus, registry, {
      lagIntervalMs: 20,
      decode: (m) => Number(m.value!.toString()),
      async handle() {
        await released;
      },
    });
    const lag = async () =>
      (await registry.getMetricsAsJSON()).find((m) => m.name === 'lifecycle_consumer_lag')
        ?.values ?? [];
    await consumer.start();
    await until(async () => (await lag()).length > 0);
    expect(await lag()).toEqual([
      { labels: { consumer: 'test', group: 'g', topic: 'in', partition: '0' }, value: 5 },
    ]);
    release();
    await until(async () => (await lag())[0]?.value === 0);
    // Records published later count again until they are committed.
    await bus.publisher().publish('in', [{ key: 'u', value: Buffer.from('5') }]);
    await until(() => consumer.committedOffsets('in').get(0) === '6');
    await until(async () => (await lag())[0]?.value === 0);
    await consumer.stop();
    expect(await lag()).toEqual([]);
  });

  it('measures no lag when the bus cannot tell it, or when told not to', async () => {
    const { bus, registry } = await setup(3);
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const noLagBus: Pick<Bus, 'consumer'> = { consumer: (sub) => bus.consumer(sub) };
    const quiet = createConsumeLoop<number>(
      {
        name: 'test',
        groupId: 'g',
        topics: ['in'],
        dlqTopic: 'dlq',
        lagIntervalMs: 10,
        decode: (m) => Number(m.value!.toString()),
        handle: () => released,
      },
      { bus: noLagBus, publisher: bus.publisher(), logger, registry },
    );
    const off = loop<number>(bus, registry, {
      groupId: 'g2',
      lagIntervalMs: 0,
      decode: (m) => Number(m.value!.toString()),
      handle: () => released,
    });
    await quiet.start();
    await off.start();
    await new Promise((r) => setTimeout(r, 100));
    const metric = (await registry.getMetricsAsJSON()).find(
      (m) => m.name === 'lifecycle_consumer_lag',
    );
    expect(metric?.values).toEqual([]);
    release();
    await quiet.stop();
    await off.stop();
  });

  it('names the next offset of a batch', () => {
    expect(nextOffset({ messages: [] })).toBeNull();
    expect(
      nextOffset({ messages: [{ offset: '41' }, { offset: '9007199254740993' }] as never }),
    ).toBe('9007199254740994');
  });
});
