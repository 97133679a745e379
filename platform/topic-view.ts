// A compacted topic materialised in memory, like a small replicated table: every process that
// needs it reads the topic from the beginning, serves only once it holds every record that was
// on the topic when it started, then keeps following it. A write answers only once this
// process's own copy holds it (read your writes), so a caller that writes and then reads sees
// its write. A record with no value (a tombstone) deletes its key.
//
// Every process reads every record, so each reads in a consumer group of its own. The group
// is there only to have the partitions assigned: it never commits (each start reads the topic
// from the beginning anyway), so Kafka keeps no offsets for it and forgets it once its member
// has left; stop() deletes it at once.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Bus, IncomingMessage, Publisher, TopicSpec } from './bus.ts';
import { createConsumeLoop, type ConsumeLoop } from './consume.ts';
import { ErrorCodes, LifecycleError, errorMessage } from './errors.ts';
import { createMetricsRegistry, type Registry } from './metrics.ts';

/** A record's value, or why this version of the product does not understand it. */
export type ViewDecoded<V> = { ok: true; value: V } | { ok: false; reason: string };

/** How a view's values are written to and read from the topic (keys are text). */
export interface TopicViewCodec<V> {
  encode(value: V): Buffer;
  /** A tombstone never reaches it: a record without a value deletes its key. */
  decode(key: string, value: Buffer): ViewDecoded<V>;
}

export interface TopicViewConfig<V> {
  topic: string;
  /** Where the consume loop would dead-letter (a view passes records it cannot read by instead: every process reads them). */
  dlqTopic: string;
  /** Names the view's consumer in metrics and logs (e.g. `template-view`). */
  name: string;
  codec: TopicViewCodec<V>;
  /** The topic's layout, created at start when given (a compacted topic). */
  spec?: TopicSpec;
  /** This process's own group (default: a new one, see topicViewGroup). */
  groupId?: string;
  /**
   * Whether `next` replaces `current` under the same key (default: always). A replayed older
   * revision must not undo a newer one.
   */
  supersedes?(next: V, current: V, key: string): boolean;
  /** Longest wait for a write, or a catch-up, to show in this view (default 30 s). */
  syncTimeoutMs?: number;
  /** Longest wait for the first read of the whole topic at start (default 120 s: joining a group may take a while). */
  startTimeoutMs?: number;
}

export interface TopicViewDeps {
  /** `deleteGroup`, where the bus has it, forgets the view's group at stop. */
  bus: Pick<Bus, 'consumer' | 'endOffsets' | 'ensureTopics'> & Partial<Pick<Bus, 'deleteGroup'>>;
  publisher: Publisher;
  logger: Logger;
  registry?: Registry;
}

export type TopicViewListener<V> = (
  key: string,
  value: V | undefined,
  previous: V | undefined,
) => void;

export interface TopicView<V> {
  /** Reads the topic from the beginning; resolves once the view holds every record that was on it. */
  start(): Promise<void>;
  /** Stops following the topic and forgets its group; what was read stays readable. */
  stop(): Promise<void>;
  health(): { ok: boolean; caughtUp: boolean; entries: number; stalled: number };
  get(key: string): V | undefined;
  /** Every key with its current value, in the order first written. */
  entries(): IterableIterator<[string, V]>;
  size(): number;
  /** Increments with every applied change (a cheap "did anything change" for caches). */
  version(): number;
  /** Resolves once the view has applied every record the topic held when called. */
  syncToEnd(): Promise<void>;
  /**
   * Writes `value` under `key` (null: a tombstone, which deletes it) and resolves once this
   * view has applied the record. `what` names it in the error of a write that never shows.
   */
  put(key: string, value: V | null, what?: string): Promise<void>;
  /** Called after each applied change, with the value before (undefined: there was none; after a tombstone, value is undefined). */
  onChange(listener: TopicViewListener<V>): () => void;
  /** The consumer group this view reads in. */
  readonly groupId: string;
}

/** A consumer group of this process alone, so it reads every record of the topic. */
export const topicViewGroup = (topic: string): string =>
  `${topic}-view-${randomUUID().slice(0, 12)}`;

const WRITE_ID_HEADER = 'lc-write-id';

/** What the loop hands the view: the message, decoded in the stage so a refusal is passed by, not dead-lettered. */
type Read<V> =
  { kind: 'value'; value: V } | { kind: 'tombstone' } | { kind: 'skip'; reason: string };

export function createTopicView<V>(config: TopicViewConfig<V>, deps: TopicViewDeps): TopicView<V> {
  const { topic, codec } = config;
  const log = deps.logger.child({ component: config.name, topic });
  const groupId = config.groupId ?? topicViewGroup(topic);
  const syncTimeoutMs = config.syncTimeoutMs ?? 30_000;
  const supersedes = config.supersedes ?? (() => true);
  const values = new Map<string, V>();
  const listeners = new Set<TopicViewListener<V>>();
  const writeWaiters = new Map<string, () => void>();
  // Per partition: the next offset to apply. Waiters wait for every partition they name.
  const applied = new Map<number, bigint>();
  const offsetWaiters = new Set<{ targets: Map<number, bigint>; resolve: () => void }>();
  let changes = 0;
  let caughtUp = false;
  let loop: ConsumeLoop | null = null;

  const reached = (targets: Map<number, bigint>) =>
    [...targets].every(([p, end]) => (applied.get(p) ?? 0n) >= end);

  function notify(key: string, value: V | undefined, previous: V | undefined): void {
    changes++;
    for (const l of listeners) {
      try {
        l(key, value, previous);
      } catch (err) {
        log.warn({ err: errorMessage(err), key }, 'view change listener failed');
      }
    }
  }

  function read(message: IncomingMessage): Read<V> {
    if (message.key === null) return { kind: 'skip', reason: 'no key' };
    if (!message.value) return { kind: 'tombstone' };
    const decoded = codec.decode(message.key, message.value);
    return decoded.ok
      ? { kind: 'value', value: decoded.value }
      : { kind: 'skip', reason: decoded.reason };
  }

  function apply(r: Read<V>, message: IncomingMessage): void {
    const key = message.key;
    if (key !== null && r.kind !== 'skip') {
      const prev = values.get(key);
      if (r.kind === 'tombstone') {
        if (values.delete(key)) notify(key, undefined, prev);
      } else if (prev === undefined || supersedes(r.value, prev, key)) {
        values.set(key, r.value);
        notify(key, r.value, prev);
      }
    }
    const writeId = message.headers[WRITE_ID_HEADER];
    if (writeId) {
      writeWaiters.get(writeId)?.();
      writeWaiters.delete(writeId);
    }
    applied.set(message.partition, BigInt(message.offset) + 1n);
    for (const w of [...offsetWaiters]) {
      if (reached(w.targets)) {
        offsetWaiters.delete(w);
        w.resolve();
      }
    }
  }

  const timeout = <T>(p: Promise<T>, what: string, cancel: () => void, ms: number): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => {
        cancel();
        reject(
          new LifecycleError(
            ErrorCodes.Unavailable,
            `${what} did not show in this process's view of ${topic} within ${ms} ms; check that Kafka is reachable and retry`,
            { retriable: true },
          ),
        );
      }, ms);
      p.then(
        (v) => {
          clearTimeout(t);
          resolve(v);
        },
        (err: unknown) => {
          clearTimeout(t);
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });

  async function syncToEnd(ms = syncTimeoutMs): Promise<void> {
    const ends = await deps.bus.endOffsets(topic);
    const targets = new Map([...ends].map(([p, end]) => [p, BigInt(end)]));
    if (reached(targets)) return;
    const waiter = { targets, resolve: () => {} };
    await timeout(
      new Promise<void>((resolve) => {
        waiter.resolve = resolve;
        offsetWaiters.add(waiter);
      }),
      'the end of the topic',
      () => offsetWaiters.delete(waiter),
      ms,
    );
  }

  async function put(key: string, value: V | null, what = `record "${key}"`): Promise<void> {
    const writeId = randomUUID();
    const seen = new Promise<void>((resolve) => writeWaiters.set(writeId, resolve));
    try {
      await deps.publisher.publish(topic, [
        {
          key,
          value: value === null ? null : codec.encode(value),
          headers: { [WRITE_ID_HEADER]: writeId },
        },
      ]);
    } catch (err) {
      writeWaiters.delete(writeId);
      throw err;
    }
    await timeout(seen, what, () => writeWaiters.delete(writeId), syncTimeoutMs);
  }

  return {
    groupId,
    async start() {
      if (config.spec) await deps.bus.ensureTopics([config.spec]);
      loop = createConsumeLoop<IncomingMessage>(
        {
          name: config.name,
          groupId,
          topics: [topic],
          fromBeginning: true,
          commitOffsets: false,
          dlqTopic: config.dlqTopic,
          decode: (message) => message,
          async handle(records, scope) {
            for (const { message } of records) {
              const r = read(message);
              if (r.kind === 'skip') {
                // Every process reads every record: one this version cannot read is passed by
                // here (and logged), not dead-lettered once per process.
                log.warn(
                  { key: message.key, offset: message.offset, reason: r.reason },
                  'record not understood; skipped',
                );
                scope.skip(message, 'not_understood');
              }
              apply(r, message);
            }
          },
        },
        {
          bus: deps.bus,
          publisher: deps.publisher,
          logger: deps.logger,
          registry: deps.registry ?? createMetricsRegistry({ defaults: false }),
        },
      );
      await loop.start();
      await syncToEnd(config.startTimeoutMs ?? 120_000);
      caughtUp = true;
    },
    async stop() {
      if (!loop) return;
      await loop.stop();
      loop = null;
      try {
        if (deps.bus.deleteGroup && !(await deps.bus.deleteGroup(groupId)))
          log.warn({ groupId }, 'the view group still has members; left for Kafka to expire');
      } catch (err) {
        // Harmless: a group without offsets is expired by Kafka on its own.
        log.warn({ groupId, err: errorMessage(err) }, 'could not delete the view group');
      }
    },
    health() {
      const stalled = loop?.stalled().length ?? 0;
      return { ok: caughtUp && stalled === 0, caughtUp, entries: values.size, stalled };
    },
    get: (key) => values.get(key),
    entries: () => values.entries(),
    size: () => values.size,
    version: () => changes,
    syncToEnd: () => syncToEnd(),
    put,
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
