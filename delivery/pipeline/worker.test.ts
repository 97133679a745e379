// The worker's order of effects against its stores' durability: a batch's outcomes and the
// message-log records of what it sent are published and its offset committed only once the
// claim writes it made are durable, and a parked send's outcome and record are published and
// its queue entry removed only after the same.
import { afterEach, describe, expect, it } from 'vitest';
import {
  deliveryCodec,
  encodeWithHeader,
  messageCodec,
  SCHEMA_ID_HEADER,
  sendCodec,
} from '../../platform/avro.ts';
import { InMemoryBus } from '../../platform/bus.ts';
import {
  topics as topicNames,
  type Channel,
  type MessageRecord,
  type SendCommand,
} from '../../platform/contracts.ts';
import { silentLogger } from '../../platform/logger.ts';
import { sendCommand } from '../../test/support/delivery-context.ts';
import type { DelayQueue, DelayedSend } from './delay-queue.ts';
import { outcome, type SendPipeline } from './pipeline.ts';
import { createDeliveryWorker } from './worker.ts';

const T = topicNames('w');
const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
});

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A durable() the test opens by hand. */
function heldDurable() {
  const waiting: (() => void)[] = [];
  return {
    durable: () => new Promise<void>((resolve) => waiting.push(resolve)),
    release: () => {
      for (const r of waiting.splice(0)) r();
    },
    pending: () => waiting.length,
  };
}

function memoryQueue(entries: DelayedSend[]): DelayQueue & { removed: string[] } {
  const removed: string[] = [];
  return {
    removed,
    async add(e) {
      entries.push(e);
    },
    async takeDue() {
      return entries.splice(0);
    },
    async remove(e) {
      removed.push(e.send.sendId);
    },
    size: async () => entries.length,
  };
}

/** The message-log record a sent send carries (what the render stage made of it). */
const logged = (send: SendCommand, channel: Channel): MessageRecord => ({
  id: `${send.sendId}:${channel}`,
  sendId: send.sendId,
  userId: send.userId,
  ruleId: send.ruleId,
  campaignId: null,
  category: send.category,
  channel,
  template: send.template,
  templateVersion: null,
  locale: 'en',
  to: 'ada@example.com',
  subject: 'Hello',
  html: '<p>Hello</p>',
  text: 'Hello',
  content: {},
  data: send.data,
  origin: null,
  ts: 1,
});

// Every send is sent at once; the pipeline's Redis writes are what durable() covers.
const pipeline: SendPipeline = {
  async process(send: SendCommand, channel: Channel) {
    return {
      outcomes: [outcome(send, channel, 'sent', { provider: 'p' })],
      dlq: null,
      result: { kind: 'sent', provider: 'p' },
      message: logged(send, channel),
    };
  },
};

function start(queue: DelayQueue, durable: () => Promise<void>) {
  const bus = new InMemoryBus(1);
  const worker = createDeliveryWorker(
    { groupId: 'dlv', concurrency: 4, delayPollMs: 10_000, leaseMs: 1000 },
    {
      bus,
      topics: T,
      pipeline,
      delayQueue: queue,
      durable,
      onUserDeleted: async () => {},
      logger: silentLogger(),
    },
  );
  stops.push(() => worker.stop());
  const sent = () => bus.messages(T.deliveries).map((m) => deliveryCodec.decode(m.value!).sendId);
  const logs = () =>
    bus
      .messages(T.messages)
      .map((m) => messageCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]).sendId);
  const committed = () =>
    bus.committedOffset(
      { groupId: 'dlv', topics: [], eachBatch: async () => {} },
      { topic: T.sends, partition: 0 },
    );
  return { bus, worker, sent, logs, committed };
}

describe('delivery worker and durability', () => {
  it('publishes outcomes and message-log records and commits a batch only after its writes are durable', async () => {
    const held = heldDurable();
    const { bus, worker, sent, logs, committed } = start(memoryQueue([]), held.durable);
    await bus.ensureTopics([
      { topic: T.sends, partitions: 1 },
      { topic: T.events, partitions: 1 },
    ]);
    await worker.start();
    const send = sendCommand({ sendId: 's-batch' });
    await bus
      .publisher()
      .publish(T.sends, [{ key: send.userId, ...encodeWithHeader(sendCodec, send) }]);
    await until(() => held.pending() > 0);
    await new Promise((r) => setTimeout(r, 30));
    expect(sent()).toEqual([]);
    expect(logs()).toEqual([]);
    expect(committed()).toBe(0);
    held.release();
    await until(() => committed() === 1);
    expect(sent()).toEqual(['s-batch']);
    // What was sent is on the messages topic, keyed by the user, before the commit.
    expect(logs()).toEqual(['s-batch']);
    expect(bus.messages(T.messages)[0]!.key).toBe(send.userId);
  });

  it("publishes a parked send's outcome and removes its entry only after the writes are durable", async () => {
    const held = heldDurable();
    const send = sendCommand({ sendId: 's-parked' });
    const queue = memoryQueue([
      { send, channel: 'email', gen: 1, reason: 'quiet hours', dueAt: 0 },
    ]);
    const { worker, sent, logs } = start(queue, held.durable);
    const polling = worker.pollOnce();
    await until(() => held.pending() > 0);
    await new Promise((r) => setTimeout(r, 30));
    expect(sent()).toEqual([]);
    expect(logs()).toEqual([]);
    expect(queue.removed).toEqual([]);
    held.release();
    expect(await polling).toBe(1);
    expect(sent()).toEqual(['s-parked']);
    expect(logs()).toEqual(['s-parked']);
    expect(queue.removed).toEqual(['s-parked']);
  });
});

describe('a batch that fails part-way', () => {
  it('lets the sends already in flight finish before the batch is read again', async () => {
    // Two users in one batch: one send fails at once, the other is at the provider for a while.
    // The retry must not start the slow send a second time while its first call still runs
    // (the claim is this worker's own, so the re-read would take it over and send it again).
    const inFlight = new Set<string>();
    const overlaps: string[] = [];
    const calls: string[] = [];
    let failures = 0;
    const slowPipeline: SendPipeline = {
      async process(send: SendCommand, channel: Channel) {
        calls.push(send.sendId);
        if (inFlight.has(send.sendId)) overlaps.push(send.sendId);
        inFlight.add(send.sendId);
        try {
          if (send.sendId === 's-fails' && failures++ === 0) {
            await new Promise((r) => setTimeout(r, 5));
            throw new Error('claim store away');
          }
          if (send.sendId === 's-slow') await new Promise((r) => setTimeout(r, 150));
          return {
            outcomes: [outcome(send, channel, 'sent', { provider: 'p' })],
            dlq: null,
            result: { kind: 'sent', provider: 'p' },
            message: null,
          };
        } finally {
          inFlight.delete(send.sendId);
        }
      },
    };
    const bus = new InMemoryBus(1);
    const worker = createDeliveryWorker(
      {
        groupId: 'dlv',
        concurrency: 4,
        delayPollMs: 10_000,
        leaseMs: 1000,
        retry: { retryBackoff: { initialMs: 1, maxMs: 1 } },
      },
      {
        bus,
        topics: T,
        pipeline: slowPipeline,
        delayQueue: memoryQueue([]),
        onUserDeleted: async () => {},
        logger: silentLogger(),
      },
    );
    stops.push(() => worker.stop());
    await bus.ensureTopics([
      { topic: T.sends, partitions: 1 },
      { topic: T.events, partitions: 1 },
    ]);
    await worker.start();
    const sends = [
      sendCommand({ sendId: 's-slow', userId: 'u-slow' }),
      sendCommand({ sendId: 's-fails', userId: 'u-fails' }),
    ];
    await bus.publisher().publish(
      T.sends,
      sends.map((s) => ({ key: s.userId, ...encodeWithHeader(sendCodec, s) })),
    );
    const committed = () =>
      bus.committedOffset(
        { groupId: 'dlv', topics: [], eachBatch: async () => {} },
        { topic: T.sends, partition: 0 },
      );
    await until(() => committed() === 2);
    expect(overlaps).toEqual([]);
    expect(calls.filter((id) => id === 's-fails')).toHaveLength(2);
  });
});
