// The delivery worker: a consumer group on `lifecycle.sends` feeding the policy chain, the
// poller of the durable delay queue (quiet hours, retries), and a consumer of deletions on
// `lifecycle.events` (right to be forgotten). Outcomes are published to
// `lifecycle.deliveries` before the batch's offset is committed, so a crash replays the
// batch and the claims turn the replay into re-emitted outcomes, not new messages.
import type { Logger } from 'pino';
import type { Bus, IncomingMessage, Publisher } from '../../platform/bus.ts';
import { sendToDlq } from '../../platform/bus.ts';
import { deliveryCodec, encodeWithHeader, eventCodec, sendCodec } from '../../platform/avro.ts';
import type { Channel, DeliveryOutcome, SendCommand, Topics } from '../../platform/contracts.ts';
import { SCHEMA_ID_HEADER } from '../../platform/contracts.ts';
import { errorMessage } from '../../platform/errors.ts';
import type { Service } from '../../platform/shutdown.ts';
import type { DelayQueue, DelayedSend } from './delay-queue.ts';
import type { SendPipeline } from './pipeline.ts';

export interface WorkerConfig {
  groupId: string;
  concurrency: number;
  delayPollMs: number;
  leaseMs: number;
}


export interface WorkerDeps {
  bus: Bus;
  topics: Topics;
  pipeline: SendPipeline;
  delayQueue: DelayQueue;
  /** Called for `user_deleted` events. */
  onUserDeleted(userId: string, at: number): Promise<void>;
  logger: Logger;
  health?: () => Record<string, unknown>;
  /** Clock of the delay queue's due times (the same as the policy chain's). */
  now?: () => number;
}

/** Runs `fn` over items with at most `limit` in flight. */
export async function mapLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const run = async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, run));
}

export function publishOutcomes(publisher: Publisher, topic: string, outcomes: DeliveryOutcome[]): Promise<void> {
  if (outcomes.length === 0) return Promise.resolve();
  return publisher.publish(
    topic,
    outcomes.map((o) => ({ key: o.userId, ...encodeWithHeader(deliveryCodec, o) })),
  );
}

export function createDeliveryWorker(config: WorkerConfig, deps: WorkerDeps): Service & { pollOnce(): Promise<number> } {
  const { bus, topics, pipeline, delayQueue, logger } = deps;
  const publisher = bus.publisher();
  const log = logger.child({ component: 'delivery-worker' });
  let running = false;
  let wake: (() => void) | null = null;
  let polling: Promise<void> = Promise.resolve();
  let lastBatchAt = 0;

  async function processSend(send: SendCommand, channels: readonly Channel[], resumeGen: number | null, source: IncomingMessage): Promise<DeliveryOutcome[]> {
    const outcomes: DeliveryOutcome[] = [];
    for (const channel of channels) {
      const r = await pipeline.process(send, channel, resumeGen);
      outcomes.push(...r.outcomes);
      if (r.dlq !== null) await sendToDlq(publisher, topics.dlq, source, `${channel}: ${r.dlq}`, 'delivery');
    }
    return outcomes;
  }

  const sends = bus.consumer({
    groupId: config.groupId,
    topics: [topics.sends],
    fromBeginning: true,
    async eachBatch(batch, control) {
      const byUser = new Map<string, { send: SendCommand; message: IncomingMessage }[]>();
      for (const message of batch.messages) {
        try {
          if (!message.value) throw new Error('empty value');
          const send = sendCodec.decode(message.value, message.headers[SCHEMA_ID_HEADER]);
          const list = byUser.get(send.userId) ?? [];
          list.push({ send, message });
          byUser.set(send.userId, list);
        } catch (err) {
          await sendToDlq(publisher, topics.dlq, message, `undecodable send command: ${errorMessage(err)}`, 'delivery.decode');
        }
      }
      // Per user in priority order (a cap slot goes to the higher-priority send); users in parallel.
      const groups = [...byUser.values()].map((l) => l.sort((a, b) => b.send.priority - a.send.priority));
      const outcomes: DeliveryOutcome[] = [];
      const heartbeat = setInterval(() => void control.heartbeat().catch(() => {}), 2000);
      try {
        await mapLimit(groups, config.concurrency, async (group) => {
          for (const { send, message } of group) {
            if (!control.isActive()) return;
            outcomes.push(...(await processSend(send, send.channels, null, message)));
          }
        });
      } finally {
        clearInterval(heartbeat);
      }
      if (!control.isActive()) return;
      await publishOutcomes(publisher, topics.deliveries, outcomes);
      const last = batch.messages[batch.messages.length - 1]!;
      await control.commit((BigInt(last.offset) + 1n).toString());
      lastBatchAt = Date.now();
    },
  });

  const deletions = bus.consumer({
    groupId: `${config.groupId}-erasure`,
    topics: [topics.events],
    fromBeginning: false,
    async eachBatch(batch, control) {
      for (const message of batch.messages) {
        if (!message.value) continue;
        try {
          const event = eventCodec.decode(message.value, message.headers[SCHEMA_ID_HEADER]);
          if (event.type === 'user_deleted') await deps.onUserDeleted(event.userId, event.ts);
        } catch (err) {
          // The engine owns bad events (it routes them to the DLQ); here they are only skipped.
          log.debug({ err: errorMessage(err), offset: message.offset }, 'skipping an undecodable event');
        }
      }
      const last = batch.messages[batch.messages.length - 1]!;
      await control.commit((BigInt(last.offset) + 1n).toString());
    },
  });

  async function handleDue(entry: DelayedSend): Promise<void> {
    const source: IncomingMessage = {
      topic: topics.sends,
      partition: -1,
      offset: 'delay-queue',
      key: entry.send.userId,
      value: sendCodec.encode(entry.send),
      headers: { [SCHEMA_ID_HEADER]: sendCodec.schemaId },
      timestamp: Date.now(),
    };
    const outcomes = await processSend(entry.send, [entry.channel], entry.gen, source);
    await publishOutcomes(publisher, topics.deliveries, outcomes);
    await delayQueue.remove(entry);
  }

  async function pollOnce(): Promise<number> {
    const due = await delayQueue.takeDue((deps.now ?? Date.now)(), 200, config.leaseMs * 2);
    await mapLimit(due, config.concurrency, async (entry) => {
      try {
        await handleDue(entry);
      } catch (err) {
        // The entry stays leased in the queue and comes back when the lease runs out.
        log.error({ err: errorMessage(err), sendId: entry.send.sendId, channel: entry.channel }, 'parked send failed; it will be retried');
      }
    });
    return due.length;
  }

  async function pollLoop(): Promise<void> {
    while (running) {
      let n = 0;
      try {
        n = await pollOnce();
      } catch (err) {
        log.error({ err: errorMessage(err) }, 'delay queue poll failed');
      }
      // Drain without pausing while there is a backlog.
      if (n < 200 && running) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, config.delayPollMs).unref();
        });
      }
    }
  }

  return {
    name: 'delivery',
    pollOnce,
    async start() {
      running = true;
      await sends.start();
      await deletions.start();
      polling = pollLoop();
      log.info({ groupId: config.groupId }, 'delivery worker started');
    },
    async stop() {
      running = false;
      wake?.();
      await polling;
      await sends.stop();
      await deletions.stop();
      log.info('delivery worker stopped');
    },
    health() {
      return { ok: running, details: { lastBatchAt, assignment: sends.assignment().length, ...(deps.health?.() ?? {}) } };
    },
  };
}
