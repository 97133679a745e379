// The delivery worker: a consumer group on `lifecycle.sends` feeding the policy chain (and
// one on `lifecycle.sends.high`, the send API's high-priority sends, read apart), the poller
// of the durable delay queue (quiet hours, retries), and a consumer of deletions on
// `lifecycle.events` (right to be forgotten, and the `marketing_opt_in` trait of identifies). The batch's Redis writes (claims, caps, parked
// sends) are made durable, then the message-log records of what it sent are published to
// `lifecycle.messages` and its outcomes to `lifecycle.deliveries`, then its offset is
// committed: a crash of the process replays the batch and the claims turn the
// replay into re-emitted outcomes, not new messages; a crash of Redis after the commit
// cannot take back a claim the commit relied on.
import type { Logger } from 'pino';
import type { Bus, IncomingMessage, Publisher } from '../../platform/bus.ts';
import { sendToDlq } from '../../platform/bus.ts';
import {
  deliveryCodec,
  encodeWithHeader,
  eventCodec,
  messageCodec,
  sendCodec,
} from '../../platform/avro.ts';
import type {
  Channel,
  DeliveryOutcome,
  MessageRecord,
  NormalisedEvent,
  SendCommand,
  Topics,
} from '../../platform/contracts.ts';
import { reservedTypeRefusal, SCHEMA_ID_HEADER } from '../../platform/contracts.ts';
import {
  createConsumeLoop,
  RecordRejected,
  stalledHealth,
  type BatchRetry,
  type ConsumedRecord,
  type ConsumeLoopDeps,
  type ConsumeLoopOptions,
} from '../../platform/consume.ts';
import { errorMessage } from '../../platform/errors.ts';
import { createMetricsRegistry, type Registry } from '../../platform/metrics.ts';
import type { Durable } from '../../platform/redis.ts';
import type { Service } from '../../platform/shutdown.ts';
import type { DelayQueue, DelayedSend } from './delay-queue.ts';
import type { SendPipeline } from './pipeline.ts';
import { carriesOptIn } from '../optin/identify.ts';

export interface WorkerConfig {
  groupId: string;
  concurrency: number;
  delayPollMs: number;
  leaseMs: number;
  /** How the consume loops retry a failing batch before stopping its partition (defaults: the loop's). */
  retry?: BatchRetry;
}

export interface WorkerDeps {
  bus: Bus;
  topics: Topics;
  pipeline: SendPipeline;
  delayQueue: DelayQueue;
  /** Called for `user_deleted` events. */
  onUserDeleted(userId: string, at: number): Promise<void>;
  /** Called for `identify` events that carry the `marketing_opt_in` trait (double opt-in). */
  onOptInTrait?(event: NormalisedEvent): Promise<void>;
  logger: Logger;
  health?: () => Record<string, unknown>;
  /** Clock of the delay queue's due times (the same as the policy chain's). */
  now?: () => number;
  /** Where the consume loops count records and batches; a private registry when absent. */
  metrics?: Registry;
  /**
   * Resolves once the claim, cap and delay-queue writes made so far survive a Redis crash
   * (`RedisDeps.durable`); awaited before outcomes are published and offsets committed.
   * Absent: the stores' acknowledgement is enough (in-memory stores).
   */
  durable?: Durable;
}

/**
 * Runs `fn` over items with at most `limit` in flight. When one fails, no further item is
 * started, and the failure is thrown only once every call already started has settled: a
 * delivery batch that fails is read again, and a send still at the provider when that
 * happens would be taken over by this same worker and sent a second time.
 */
export async function mapLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failed = false;
  const run = async () => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        await fn(items[i]!);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const settled = await Promise.allSettled(
    Array.from({ length: Math.min(limit, items.length) }, run),
  );
  const rejected = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (rejected) throw rejected.reason;
}

export function publishOutcomes(
  publisher: Publisher,
  topic: string,
  outcomes: DeliveryOutcome[],
): Promise<void> {
  if (outcomes.length === 0) return Promise.resolve();
  return publisher.publish(
    topic,
    outcomes.map((o) => ({ key: o.userId, ...encodeWithHeader(deliveryCodec, o) })),
  );
}

/** Message-log records, keyed by userId like every topic of a user's data. */
export function publishMessageRecords(
  publisher: Publisher,
  topic: string,
  records: MessageRecord[],
): Promise<void> {
  if (records.length === 0) return Promise.resolve();
  return publisher.publish(
    topic,
    records.map((m) => ({ key: m.userId, ...encodeWithHeader(messageCodec, m) })),
  );
}

export function createDeliveryWorker(
  config: WorkerConfig,
  deps: WorkerDeps,
): Service & { pollOnce(): Promise<number> } {
  const { bus, topics, pipeline, delayQueue, logger } = deps;
  const writesDurable = deps.durable ?? (async () => {});
  const publisher = bus.publisher();
  const log = logger.child({ component: 'delivery-worker' });
  let running = false;
  let wake: (() => void) | null = null;
  let polling: Promise<void> = Promise.resolve();
  let lastBatchAt = 0;

  // A channel the chain refuses for good goes to the DLQ: through the consume loop for a
  // record of the sends topic, directly for a send parked in the delay queue.
  type DeadLetter = (
    source: IncomingMessage,
    stage: string,
    reason: string,
  ) => void | Promise<void>;
  async function processSend(
    send: SendCommand,
    channels: readonly Channel[],
    resumeGen: number | null,
    source: IncomingMessage,
    deadLetter: DeadLetter,
    into: Decided,
  ): Promise<void> {
    for (const channel of channels) {
      const result = await pipeline.process(send, channel, resumeGen);
      into.outcomes.push(...result.outcomes);
      if (result.message) into.messages.push(result.message);
      if (result.dlq !== null) await deadLetter(source, 'delivery', `${channel}: ${result.dlq}`);
    }
  }
  const deadLetterNow: DeadLetter = (source, stage, reason) =>
    sendToDlq(publisher, topics.dlq, source, reason, stage);

  /** What a batch decided: its outcomes, and the message-log records of what it sent. */
  interface Decided {
    outcomes: DeliveryOutcome[];
    messages: MessageRecord[];
  }
  // Both before the commit: a crash replays the batch, and the claims re-emit the outcomes.
  // The records go first, so an outcome `sent` read downstream has its content on the way.
  async function publishDecided(decided: Decided): Promise<void> {
    await publishMessageRecords(publisher, topics.messages, decided.messages);
    await publishOutcomes(publisher, topics.deliveries, decided.outcomes);
  }

  const loopDeps = {
    bus,
    publisher,
    logger,
    registry: deps.metrics ?? createMetricsRegistry({ defaults: false }),
  };
  // The sends topic and the high-priority sends topic (the send API's `priority: high`) are
  // read the same way, each with a consumer group of its own: a high-priority send never
  // waits behind the rules' backlog on the sends topic.
  const readSends = (options: ConsumeLoopOptions<SendCommand>, deps: ConsumeLoopDeps) => ({
    sends: createConsumeLoop(options, deps),
    highSends: createConsumeLoop(
      {
        ...options,
        name: 'delivery-high',
        groupId: `${options.groupId}-high`,
        topics: [topics.sendsHigh],
      },
      deps,
    ),
  });
  const { sends, highSends } = readSends(
    {
      name: 'delivery',
      groupId: config.groupId,
      topics: [topics.sends],
      fromBeginning: true,
      dlqTopic: topics.dlq,
      ...config.retry,
      decode(message) {
        if (!message.value) throw new RecordRejected('undecodable send command: empty value');
        try {
          return sendCodec.decode(message.value, message.headers[SCHEMA_ID_HEADER]);
        } catch (err) {
          throw new RecordRejected(`undecodable send command: ${errorMessage(err)}`);
        }
      },
      async handle(records, scope) {
        const byUser = new Map<string, ConsumedRecord<SendCommand>[]>();
        for (const record of records) {
          const list = byUser.get(record.value.userId) ?? [];
          list.push(record);
          byUser.set(record.value.userId, list);
        }
        // Per user in priority order (a cap slot goes to the higher-priority send); users in parallel.
        const groups = [...byUser.values()].map((list) =>
          list.sort((a, b) => b.value.priority - a.value.priority),
        );
        const decided: Decided = { outcomes: [], messages: [] };
        const deadLetter: DeadLetter = (source, stage, reason) =>
          scope.deadLetter(source, stage, reason);
        await mapLimit(groups, config.concurrency, async (group) => {
          for (const { value: send, message } of group) {
            if (!scope.isActive()) return;
            await processSend(send, send.channels, null, message, deadLetter, decided);
          }
        });
        if (!scope.isActive()) return 'abandon';
        // A `sent` outcome or a committed offset must never outlive the claim that says so.
        await writesDurable();
        await publishDecided(decided);
        lastBatchAt = Date.now();
        return 'commit';
      },
    },
    loopDeps,
  );

  // Bad events are the engine's to dead-letter; this reader passes them by. Anything else
  // failing (the preference store away) fails the batch, which is retried: an erasure is
  // never committed past without having happened. One that keeps failing stops its
  // partition, and health says so until the process is restarted. A new group (the first
  // deploy of delivery, or a renamed LC_DELIVERY_GROUP) reads the events topic from the
  // earliest offset kept: a deletion published before delivery ever ran is honoured too.
  const deletions = createConsumeLoop<NormalisedEvent>(
    {
      name: 'delivery-erasure',
      groupId: `${config.groupId}-erasure`,
      topics: [topics.events],
      fromBeginning: true,
      dlqTopic: topics.dlq,
      undecodable: 'skip',
      ...config.retry,
      decode(message) {
        if (!message.value) throw new RecordRejected('empty value');
        return eventCodec.decode(message.value, message.headers[SCHEMA_ID_HEADER]);
      },
      async handle(records, scope) {
        for (const { value: event, message } of records) {
          // Only the product database erases a user: an app cannot send this type (platform/contracts.ts).
          if (event.type === 'user_deleted' && reservedTypeRefusal(event) === null)
            await deps.onUserDeleted(event.userId, event.ts);
          else if (deps.onOptInTrait && carriesOptIn(event)) await deps.onOptInTrait(event);
          else scope.skip(message, 'not_a_deletion');
        }
      },
    },
    loopDeps,
  );

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
    const decided: Decided = { outcomes: [], messages: [] };
    await processSend(entry.send, [entry.channel], entry.gen, source, deadLetterNow, decided);
    // The claim's new state (sent, or parked again under a new entry) must be durable before
    // the outcome says so and this entry leaves the queue: losing it would send again.
    await writesDurable();
    await publishDecided(decided);
    await delayQueue.remove(entry);
  }

  async function pollOnce(): Promise<number> {
    const due = await delayQueue.takeDue((deps.now ?? Date.now)(), 200, config.leaseMs * 2);
    await mapLimit(due, config.concurrency, async (entry) => {
      try {
        await handleDue(entry);
      } catch (err) {
        // The entry stays leased in the queue and comes back when the lease runs out.
        log.error(
          { err: errorMessage(err), sendId: entry.send.sendId, channel: entry.channel },
          'parked send failed; it will be retried',
        );
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
      await highSends.start();
      await deletions.start();
      polling = pollLoop();
      log.info({ groupId: config.groupId }, 'delivery worker started');
    },
    async stop() {
      running = false;
      wake?.();
      await polling;
      await sends.stop();
      await highSends.stop();
      await deletions.stop();
      log.info('delivery worker stopped');
    },
    health() {
      const loops = stalledHealth([sends, highSends, deletions]);
      return {
        ok: running && loops.ok,
        details: {
          lastBatchAt,
          assignment: sends.assignment().length,
          stalled: loops.stalled,
          ...(deps.health?.() ?? {}),
        },
      };
    },
  };
}
