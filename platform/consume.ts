// The one consume loop every Kafka-reading process runs (engine, delivery, analytics sink,
// scheduler directory, CDC): decode each record, hand the batch to the stage, write what the
// stage refused to the DLQ with a named stage and reason, keep the group membership alive
// while the stage works, commit last-plus-one, and count every record by outcome.
//
// Order of effects per batch, which the invariants rely on: the stage's own effects are
// durable when its handler returns; then the dead letters are durable; only then is the
// offset committed. A crash anywhere before the commit replays the batch, so a stage must
// make its effects idempotent (event ids, sendIds, fences) and dead letters may repeat.
//
// A batch whose stage fails is retried in place, after a pause that doubles each time
// (`retryBackoff`), heartbeating meanwhile. After `maxBatchAttempts` failures in a row the
// loop stops that partition rather than skip the batch or retry it forever: the partition
// is paused (still assigned, the group stays alive, the other partitions flow), nothing of
// it is committed, an error log names consumer, topic, partition, offset and the last
// error, and `stalled()` reports it, so health turns not ok and
// `lifecycle_consumer_stalled_partitions` counts it. A failure that no retry cures (a bug,
// a deletion the stores refuse) is thus seen and kept, never committed past. Restarting the
// process reads the partition again; a rebalance that takes it away clears it here too,
// and its next owner tries again from the committed offset.
//
// Every few seconds (`lagIntervalMs`) the loop measures how far its group is behind on each
// partition it reads, end offset minus committed offset (`lifecycle_consumer_lag`), when the
// bus can tell both (Kafka and the in-memory bus can): one measure of lag for every
// consumer group, the one the operations board draws.
import type { Logger } from 'pino';
import { performance } from 'node:perf_hooks';
import type {
  Batch,
  BatchControl,
  Bus,
  BusConsumer,
  IncomingMessage,
  Publisher,
  TopicPartition,
} from './bus.ts';
import { sendToDlq } from './bus.ts';
import { errorMessage } from './errors.ts';
import { Counter, Gauge, Histogram, type Registry } from './metrics.ts';

/** A record the decoder refuses, with the reason the DLQ header carries. */
export class RecordRejected extends Error {
  override readonly name = 'RecordRejected';
}

/** One decoded record of a batch, with its result (ok unless the stage says otherwise). */
export interface ConsumedRecord<T> {
  readonly message: IncomingMessage;
  readonly value: T;
}

/** What the stage does with a batch it was handed. */
export interface BatchScope {
  readonly topic: string;
  readonly partition: number;
  /** False once the consumer is stopping or the partition was revoked: stop, the batch is not committed. */
  isActive(): boolean;
  heartbeat(): Promise<void>;
  /** The record goes to the DLQ after the handler returns, before the commit. May be called more than once per record (one per channel, say). */
  deadLetter(message: IncomingMessage, stage: string, reason: string): void;
  /** The record was read and deliberately not acted on; `reason` is a small closed set (it labels a metric). */
  skip(message: IncomingMessage, reason: string): void;
}

/**
 * `commit` (the default): the batch is done. `abandon`: leave the offsets where they are
 * (the partition is no longer ours, or the stage stopped mid-batch); whoever reads the
 * partition next reads the batch again.
 */
export type BatchVerdict = 'commit' | 'abandon';

export interface ConsumeLoopOptions<T> {
  /** Names the loop in metrics (`consumer` label), logs and the DLQ stage of decode failures (`<name>.decode`). */
  name: string;
  groupId: string;
  topics: (string | RegExp)[];
  fromBeginning?: boolean;
  /** False: a done batch moves this process's read position only, nothing is committed for the group (see Subscription). */
  commitOffsets?: boolean;
  concurrency?: number;
  dlqTopic: string;
  /**
   * Turns a record into what the stage works on. Throwing `RecordRejected` (or anything else)
   * refuses the record: it goes to the DLQ, or is skipped when `undecodable` is `skip`
   * (a reader of a topic whose bad records another process dead-letters).
   */
  decode(message: IncomingMessage): T | Promise<T>;
  undecodable?: 'dlq' | 'skip';
  /** The DLQ stage of records the decoder refuses (default `<name>.decode`). */
  decodeStage?: string;
  /** The stage: its effects must be durable when it resolves. Throwing fails the batch: it is retried, and its partition stops after `maxBatchAttempts`. */
  handle(records: ConsumedRecord<T>[], scope: BatchScope): Promise<BatchVerdict | void>;
  onAssigned?(partitions: TopicPartition[]): Promise<void> | void;
  onRevoked?(partitions: TopicPartition[]): Promise<void> | void;
  /** Called with the error of each failed attempt of a batch (for health reporting). */
  onBatchError?(err: unknown, batch: Batch): void;
  /** How often the loop heartbeats while the stage works or waits to retry (default 2 s). */
  heartbeatMs?: number;
  /** Attempts of one batch, failing in a row, after which its partition stops (default 10). */
  maxBatchAttempts?: number;
  /**
   * Pause before the first retry of a failed batch, doubled for each further one up to
   * `maxMs` (default 250 ms up to 60 s: ten attempts span about two minutes, which an
   * infrastructure outage may last before the partition stops).
   */
  retryBackoff?: { initialMs: number; maxMs: number };
  /** How often the group's lag on this process's partitions is measured (default 5 s; 0: never). */
  lagIntervalMs?: number;
}

/** How a service's loops retry a failing batch before they stop its partition (tests make it quick). */
export type BatchRetry = Pick<ConsumeLoopOptions<unknown>, 'maxBatchAttempts' | 'retryBackoff'>;

/** A partition the loop stopped reading because one batch kept failing. */
export interface StalledPartition {
  topic: string;
  partition: number;
  /** First offset of the batch that failed: where reading would resume. */
  offset: string;
  attempts: number;
  /** The last attempt's error. */
  error: string;
  /** When the partition was stopped (epoch ms). */
  since: number;
}

/** Where the loop reads its lag: the partitions' end offsets and the group's committed ones. */
export interface LagSource {
  endOffsets(topic: string): Promise<Map<number, string>>;
  committedOffsets(groupId: string, topic: string): Promise<Map<number, string>>;
}

export interface ConsumeLoopDeps {
  /** The lag is measured when the bus is also a LagSource (both buses are). */
  bus: Pick<Bus, 'consumer'> & Partial<LagSource>;
  publisher: Publisher;
  logger: Logger;
  registry: Registry;
}

export interface ConsumeLoop extends BusConsumer {
  /** When the last batch was committed (epoch ms), null before the first. */
  lastCommitAt(): number | null;
  /** The error of the last batch, null once a batch succeeds again. */
  lastError(): string | null;
  /** The offsets this process committed on `topic`, per partition it still owns (for lag where the bus cannot tell). */
  committedOffsets(topic: string): Map<number, string>;
  /** Partitions stopped because a batch kept failing; services report them in health (not ok while any). */
  stalled(): StalledPartition[];
}

/** Health of a service's loops: not ok while any partition is stalled, with what and why in the details. */
export function stalledHealth(
  loops: readonly (Pick<ConsumeLoop, 'stalled'> | null | undefined)[],
): { ok: boolean; stalled: (StalledPartition & { reason: string })[] } {
  const stalled = loops
    .flatMap((l) => l?.stalled() ?? [])
    .map((s) => ({
      ...s,
      reason: `${s.topic}[${s.partition}] stopped at offset ${s.offset} after ${s.attempts} failed attempts: ${s.error}; restart the process to read it again`,
    }));
  return { ok: stalled.length === 0, stalled };
}

// Metrics are per registry, shared by every loop of a process (one `consumer` label each).
const metricsByRegistry = new WeakMap<Registry, ReturnType<typeof createConsumeMetrics>>();

function createConsumeMetrics(registry: Registry) {
  return {
    records: new Counter({
      name: 'lifecycle_consumer_records_total',
      help: 'Records consumed and committed, by consumer and outcome (ok, skip, dlq); skip carries its reason.',
      labelNames: ['consumer', 'outcome', 'reason'],
      registers: [registry],
    }),
    deadLetters: new Counter({
      name: 'lifecycle_consumer_dlq_total',
      help: 'Records sent to the DLQ, by consumer and stage.',
      labelNames: ['consumer', 'stage'],
      registers: [registry],
    }),
    batchSeconds: new Histogram({
      name: 'lifecycle_consumer_batch_seconds',
      help: 'Time to process one batch, from decode to commit, by consumer.',
      labelNames: ['consumer'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    batchRecords: new Histogram({
      name: 'lifecycle_consumer_batch_records',
      help: 'Records per batch, by consumer.',
      labelNames: ['consumer'],
      buckets: [1, 10, 50, 100, 250, 500, 1000, 2500, 5000],
      registers: [registry],
    }),
    failedBatches: new Counter({
      name: 'lifecycle_consumer_batch_failures_total',
      help: 'Failed attempts of a batch (each is retried until its partition stops), by consumer.',
      labelNames: ['consumer'],
      registers: [registry],
    }),
    lag: new Gauge({
      name: 'lifecycle_consumer_lag',
      help: 'Records the group has not committed yet (end offset minus committed offset), per partition this process reads, by consumer, group and topic; measured every few seconds.',
      labelNames: ['consumer', 'group', 'topic', 'partition'],
      registers: [registry],
    }),
    stalledPartitions: new Gauge({
      name: 'lifecycle_consumer_stalled_partitions',
      help: 'Partitions stopped after a batch failed maxBatchAttempts times in a row, by consumer; restart the process to read them again.',
      labelNames: ['consumer'],
      registers: [registry],
    }),
  };
}

function consumeMetrics(registry: Registry) {
  let metrics = metricsByRegistry.get(registry);
  if (!metrics) metricsByRegistry.set(registry, (metrics = createConsumeMetrics(registry)));
  return metrics;
}

interface DeadLetter {
  message: IncomingMessage;
  stage: string;
  reason: string;
}

/** The next offset to read after `batch`: its last offset plus one. */
export function nextOffset(batch: Pick<Batch, 'messages'>): string | null {
  const last = batch.messages[batch.messages.length - 1];
  return last ? (BigInt(last.offset) + 1n).toString() : null;
}

export function createConsumeLoop<T>(
  options: ConsumeLoopOptions<T>,
  deps: ConsumeLoopDeps,
): ConsumeLoop {
  const { name } = options;
  const log = deps.logger.child({ component: name });
  const metrics = consumeMetrics(deps.registry);
  const heartbeatMs = options.heartbeatMs ?? 2000;
  const undecodable = options.undecodable ?? 'dlq';
  const decodeStage = options.decodeStage ?? `${name}.decode`;
  const maxAttempts = Math.max(1, options.maxBatchAttempts ?? 10);
  const backoff = options.retryBackoff ?? { initialMs: 250, maxMs: 60_000 };
  let lastCommitAt: number | null = null;
  let lastError: string | null = null;
  const committed = new Map<string, Map<number, string>>();
  // Per topic/partition: failed attempts in a row of its current batch, and the stopped ones.
  const failures = new Map<string, number>();
  const stalled = new Map<string, StalledPartition>();
  const tpKey = (tp: TopicPartition) => `${tp.topic}/${tp.partition}`;
  metrics.stalledPartitions.set({ consumer: name }, 0);
  const lagLabels = (tp: TopicPartition) => ({
    consumer: name,
    group: options.groupId,
    topic: tp.topic,
    partition: String(tp.partition),
  });
  const lagIntervalMs = options.lagIntervalMs ?? 5000;
  let lagTimer: NodeJS.Timeout | null = null;

  const writeDeadLetters = async (letters: DeadLetter[]) => {
    if (letters.length === 0) return;
    await Promise.all(
      letters.map((d) => sendToDlq(deps.publisher, options.dlqTopic, d.message, d.reason, d.stage)),
    );
    for (const d of letters)
      log.warn(
        {
          topic: d.message.topic,
          partition: d.message.partition,
          offset: d.message.offset,
          stage: d.stage,
          reason: d.reason,
        },
        'record sent to the DLQ',
      );
  };

  const processBatch = async (batch: Batch, control: BatchControl) => {
    const started = performance.now();
    const letters: DeadLetter[] = [];
    const skips = new Map<string, number>();
    const refused = new Set<IncomingMessage>();
    const records: ConsumedRecord<T>[] = [];
    for (const message of batch.messages) {
      try {
        const decoded = options.decode(message);
        // Awaited only when the decoder is asynchronous: the engine's is not, and a microtask per record shows.
        records.push({ message, value: decoded instanceof Promise ? await decoded : decoded });
      } catch (err) {
        if (undecodable === 'skip') {
          skips.set('undecodable', (skips.get('undecodable') ?? 0) + 1);
          log.debug(
            { partition: message.partition, offset: message.offset, reason: errorMessage(err) },
            'undecodable record skipped',
          );
        } else {
          letters.push({
            message,
            stage: decodeStage,
            reason:
              err instanceof RecordRejected
                ? err.message
                : `undecodable record: ${errorMessage(err)}`,
          });
          refused.add(message);
        }
      }
    }

    const scope: BatchScope = {
      topic: batch.topic,
      partition: batch.partition,
      isActive: () => control.isActive(),
      heartbeat: () => control.heartbeat(),
      deadLetter(message, stage, reason) {
        letters.push({ message, stage, reason });
        refused.add(message);
      },
      skip(_message, reason) {
        skips.set(reason, (skips.get(reason) ?? 0) + 1);
      },
    };

    let verdict: BatchVerdict | void;
    // The group must not think this member is dead while a slow stage (ClickHouse away, a
    // slow provider) works: kafkajs heartbeats only between batches on its own.
    const beating = setInterval(() => void control.heartbeat().catch(() => undefined), heartbeatMs);
    try {
      verdict = await options.handle(records, scope);
    } finally {
      clearInterval(beating);
    }
    if (verdict === 'abandon' || !control.isActive()) return;
    await writeDeadLetters(letters);
    const next = nextOffset(batch);
    if (next === null || !control.isActive()) return;
    await control.commit(next);
    lastCommitAt = Date.now();
    let ofTopic = committed.get(batch.topic);
    if (!ofTopic) committed.set(batch.topic, (ofTopic = new Map()));
    ofTopic.set(batch.partition, next);

    // Counted once committed, so a replayed batch is not counted twice.
    let skipped = 0;
    for (const [reason, n] of skips) {
      metrics.records.inc({ consumer: name, outcome: 'skip', reason }, n);
      skipped += n;
    }
    if (refused.size > 0)
      metrics.records.inc({ consumer: name, outcome: 'dlq', reason: '' }, refused.size);
    const ok = batch.messages.length - refused.size - skipped;
    if (ok > 0) metrics.records.inc({ consumer: name, outcome: 'ok', reason: '' }, ok);
    for (const d of letters) metrics.deadLetters.inc({ consumer: name, stage: d.stage });
    metrics.batchRecords.observe({ consumer: name }, batch.messages.length);
    metrics.batchSeconds.observe({ consumer: name }, (performance.now() - started) / 1000);
  };

  /**
   * Waits `ms` before a retry, heartbeating. False when the wait was cut short: the consumer
   * is stopping, the partition was revoked, or the group is rebalancing (a heartbeat
   * refused), in which case the batch is left for whoever reads the partition next.
   */
  const pauseBeforeRetry = async (ms: number, control: BatchControl): Promise<boolean> => {
    const end = Date.now() + ms;
    let nextBeat = Date.now() + heartbeatMs;
    while (Date.now() < end) {
      if (!control.isActive()) return false;
      if (Date.now() >= nextBeat) {
        nextBeat = Date.now() + heartbeatMs;
        try {
          await control.heartbeat();
        } catch {
          return false;
        }
      }
      await new Promise((r) =>
        setTimeout(r, Math.max(0, Math.min(50, end - Date.now(), nextBeat - Date.now()))),
      );
    }
    return control.isActive();
  };

  const stall = (batch: Batch, attempts: number, error: string) => {
    const offset = batch.messages[0]?.offset ?? '';
    const tp = { topic: batch.topic, partition: batch.partition };
    stalled.set(tpKey(tp), { ...tp, offset, attempts, error, since: Date.now() });
    metrics.stalledPartitions.set({ consumer: name }, stalled.size);
    consumer.pause([tp]);
    log.error(
      {
        consumer: name,
        topic: batch.topic,
        partition: batch.partition,
        offset,
        attempts,
        err: error,
      },
      'partition stopped: its batch failed every attempt and is not committed; restart the process to read it again',
    );
  };

  const clearStalled = (partitions: TopicPartition[]) => {
    const paused = partitions.filter((tp) => stalled.delete(tpKey(tp)));
    for (const tp of partitions) failures.delete(tpKey(tp));
    if (paused.length === 0) return;
    metrics.stalledPartitions.set({ consumer: name }, stalled.size);
    // The client keeps a pause across rebalances: were the partition dealt back to this
    // process, it would otherwise never be read.
    consumer.resume(paused);
  };

  const consumer = deps.bus.consumer({
    groupId: options.groupId,
    topics: options.topics,
    ...(options.fromBeginning !== undefined ? { fromBeginning: options.fromBeginning } : {}),
    ...(options.commitOffsets !== undefined ? { commitOffsets: options.commitOffsets } : {}),
    ...(options.concurrency !== undefined ? { concurrency: options.concurrency } : {}),
    ...(options.onAssigned ? { onAssigned: options.onAssigned } : {}),
    async onRevoked(partitions) {
      for (const tp of partitions) {
        committed.get(tp.topic)?.delete(tp.partition);
        metrics.lag.remove(lagLabels(tp));
      }
      clearStalled(partitions);
      await options.onRevoked?.(partitions);
    },
    async eachBatch(batch, control) {
      const key = tpKey(batch);
      // A batch fetched before the partition was paused.
      if (stalled.has(key)) return;
      for (;;) {
        try {
          await processBatch(batch, control);
          failures.delete(key);
          lastError = null;
          return;
        } catch (err) {
          lastError = errorMessage(err);
          metrics.failedBatches.inc({ consumer: name });
          options.onBatchError?.(err, batch);
          if (!control.isActive()) {
            log.warn(
              { topic: batch.topic, partition: batch.partition, err: lastError },
              'batch failed while the partition was let go; its next reader reads it again',
            );
            return;
          }
          const attempts = (failures.get(key) ?? 0) + 1;
          failures.set(key, attempts);
          if (attempts >= maxAttempts) {
            stall(batch, attempts, lastError);
            return;
          }
          const delayMs = Math.min(backoff.maxMs, backoff.initialMs * 2 ** (attempts - 1));
          log.error(
            {
              topic: batch.topic,
              partition: batch.partition,
              offset: batch.messages[0]?.offset,
              attempt: attempts,
              maxAttempts,
              delayMs,
              err: lastError,
            },
            'batch failed; retrying',
          );
          if (!(await pauseBeforeRetry(delayMs, control))) return;
        }
      }
    },
  });

  const { endOffsets, committedOffsets } = deps.bus;
  const lagSource: LagSource | null =
    endOffsets && committedOffsets
      ? {
          endOffsets: (topic) => endOffsets.call(deps.bus, topic),
          committedOffsets: (group, topic) => committedOffsets.call(deps.bus, group, topic),
        }
      : null;

  /** End offset minus the group's committed offset (or this process's own, if newer). */
  const measureLag = async (source: LagSource) => {
    const byTopic = new Map<string, number[]>();
    for (const tp of consumer.assignment())
      byTopic.set(tp.topic, [...(byTopic.get(tp.topic) ?? []), tp.partition]);
    for (const [topic, partitions] of byTopic) {
      const [ends, ofGroup] = await Promise.all([
        source.endOffsets(topic),
        source.committedOffsets(options.groupId, topic),
      ]);
      // Revoked while this was measured: its series is gone and stays gone.
      const still = new Set(consumer.assignment().map(tpKey));
      for (const partition of partitions) {
        const end = ends.get(partition);
        if (end === undefined || !still.has(tpKey({ topic, partition }))) continue;
        const position = Math.max(
          Number(ofGroup.get(partition) ?? -1),
          Number(committed.get(topic)?.get(partition) ?? -1),
        );
        // Nothing committed yet: the whole partition is ahead of the group.
        const lag = position < 0 ? Number(end) : Number(end) - position;
        metrics.lag.set(lagLabels({ topic, partition }), Math.max(0, lag));
      }
    }
  };

  return {
    async start() {
      await consumer.start();
      if (lagSource && lagIntervalMs > 0 && !lagTimer) {
        lagTimer = setInterval(() => {
          measureLag(lagSource).catch((err: unknown) =>
            log.debug({ err: errorMessage(err) }, 'lag measurement failed'),
          );
        }, lagIntervalMs);
        lagTimer.unref();
      }
    },
    async stop() {
      if (lagTimer) clearInterval(lagTimer);
      lagTimer = null;
      await consumer.stop();
    },
    assignment: () => consumer.assignment(),
    pause: (partitions) => consumer.pause(partitions),
    resume: (partitions) => consumer.resume(partitions),
    lastCommitAt: () => lastCommitAt,
    lastError: () => lastError,
    committedOffsets: (topic) => new Map(committed.get(topic) ?? []),
    stalled: () => [...stalled.values()].map((s) => ({ ...s })),
  };
}
