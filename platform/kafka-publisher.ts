// The Kafka side of Bus.publish: idempotent producers with acks=all, one request in flight
// per producer, concurrent publishes coalesced into the next request.
//
// kafkajs's idempotent producer breaks (OUT_OF_ORDER_SEQUENCE_NUMBER, kafkajs#598) when
// send() calls overlap, so each producer has one request in flight at a time. It can also be
// left refusing every request after a broker restart (its sequence numbers no longer match
// the broker's producer state), so a producer whose request failed is replaced by a new one
// (a new producer id, sequences from zero). The records of the failed request were not
// acknowledged: the caller publishes them again (the consume loop reads its batch again), and
// whatever the broker had kept of them shows downstream as duplicate records, which consumers
// collapse by id (event ids, sendIds). To keep
// the broker and this process busy at the same time, a publisher may run several
// producers ("lanes"); partitions are sharded across them (partition p always goes
// through lane p % lanes), so a partition's records still leave in arrival order through
// a single producer and per-key order holds. The partition is computed here with the
// same Java-compatible murmur2 kafkajs's default partitioner uses (same key -> same
// partition as every other producer of the topic), which also spares kafkajs its 64-bit
// emulated hash per record.
import type { IHeaders, Kafka, Producer } from 'kafkajs';
import { Partitioners } from 'kafkajs';
import type { Logger } from 'pino';
import { wireKey, type OutgoingMessage, type Publisher } from './bus.ts';
import { ErrorCodes, LifecycleError } from './errors.ts';

/** Requests stay under the broker's default record-batch limit (message.max.bytes, 1 MB). */
const REQUEST_BYTES = 512 * 1024;
/** How long a topic's partition count is trusted (kafkajs's own metadata max age). */
const PARTITION_COUNT_TTL_MS = 5 * 60_000;

/** Kafka's murmur2 (32-bit, seed 0x9747b28c) of the key's UTF-8 bytes, as the Java client computes it. */
export function murmur2(key: string | Buffer): number {
  let data: Buffer | string = key;
  let length = key.length;
  if (typeof key === 'string') {
    // ASCII keys (the usual user ids) are hashed straight from the string; others from their UTF-8 bytes.
    for (let i = 0; i < key.length; i++) {
      if (key.charCodeAt(i) > 0x7f) {
        data = Buffer.from(key, 'utf8');
        length = data.length;
        break;
      }
    }
  }
  const at: (i: number) => number =
    typeof data === 'string' ? (i) => (data as string).charCodeAt(i) : (i) => (data as Buffer)[i]!;
  const m = 0x5bd1e995;
  let h = 0x9747b28c ^ length;
  const length4 = length & ~3;
  for (let i = 0; i < length4; i += 4) {
    let k = at(i) | (at(i + 1) << 8) | (at(i + 2) << 16) | (at(i + 3) << 24);
    k = Math.imul(k, m);
    k ^= k >>> 24;
    k = Math.imul(k, m);
    h = Math.imul(h, m) ^ k;
  }
  const tail = length & 3;
  if (tail >= 3) h ^= at(length4 + 2) << 16;
  if (tail >= 2) h ^= at(length4 + 1) << 8;
  if (tail >= 1) {
    h ^= at(length4);
    h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

/** The partition kafkajs's DefaultPartitioner (and the Java client) chooses for a key. */
export function partitionForKey(key: string | Buffer, partitions: number): number {
  return (murmur2(key) & 0x7fffffff) % partitions;
}

/** A record as kafkajs takes it, its partition already chosen. */
interface Outgoing {
  key: string | Buffer | null;
  value: Buffer | null;
  headers?: IHeaders;
  partition: number;
}

/** One publish call's share of a lane: resolved when that lane's request is acknowledged. */
interface Part {
  topic: string;
  records: Outgoing[];
  /** Estimated encoded size of each record, to keep requests under the limit. */
  sizes: number[];
  bytes: number;
  done(err?: unknown): void;
}

export interface ShardedPublisherOptions {
  /** Idempotent producers (each with one request in flight); partitions are sharded across them. */
  lanes: number;
  /** Partition count of a topic (from cluster metadata). */
  partitionCount(topic: string): Promise<number>;
  logger: Logger;
}

export interface ShardedPublisher extends Publisher {
  /** Disconnects every producer (publishes still queued are rejected by kafkajs). */
  close(): Promise<void>;
}

function publishError(err: unknown, topic: string): LifecycleError {
  if (err instanceof LifecycleError) return err;
  return new LifecycleError(
    ErrorCodes.KafkaPublish,
    `publish to ${topic} failed: ${(err as Error).message}`,
    {
      retriable: (err as { retriable?: boolean }).retriable ?? true,
      status: 503,
      cause: err,
    },
  );
}

class Lane {
  private producer: Producer | null = null;
  private producerReady: Promise<Producer> | null = null;
  private readonly pending: Part[] = [];
  private flushing = false;

  constructor(
    private readonly kafka: Kafka,
    private readonly logger: Logger,
  ) {}

  private getProducer(): Promise<Producer> {
    this.producerReady ??= (async () => {
      const p = this.kafka.producer({
        createPartitioner: Partitioners.DefaultPartitioner,
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
      });
      await p.connect();
      this.producer = p;
      return p;
    })().catch((err: unknown) => {
      this.producerReady = null;
      throw new LifecycleError(
        ErrorCodes.KafkaUnavailable,
        `cannot connect to Kafka: ${(err as Error).message}`,
        { retriable: true, status: 503, cause: err },
      );
    });
    return this.producerReady;
  }

  push(part: Part): void {
    this.pending.push(part);
    void this.flush();
  }

  private async flush(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.pending.length > 0) {
        // Everything queued while the previous request was in flight, up to the byte limit,
        // goes out as one or more requests, in arrival order.
        const parts: Part[] = [];
        let bytes = 0;
        while (this.pending.length > 0) {
          const next = this.pending[0]!;
          if (parts.length > 0 && bytes + next.bytes > REQUEST_BYTES) break;
          parts.push(this.pending.shift()!);
          bytes += next.bytes;
        }
        const requests: Map<string, Outgoing[]>[] = [];
        let current = new Map<string, Outgoing[]>();
        let currentBytes = 0;
        for (const part of parts) {
          let list = current.get(part.topic);
          for (let i = 0; i < part.records.length; i++) {
            const bytes = part.sizes[i]!;
            if (currentBytes > 0 && currentBytes + bytes > REQUEST_BYTES) {
              requests.push(current);
              current = new Map();
              currentBytes = 0;
              list = undefined;
            }
            if (!list) current.set(part.topic, (list = []));
            list.push(part.records[i]!);
            currentBytes += bytes;
          }
        }
        requests.push(current);
        try {
          const producer = await this.getProducer();
          for (const req of requests) {
            await producer.sendBatch({
              acks: -1,
              topicMessages: [...req].map(([topic, messages]) => ({ topic, messages })),
            });
          }
          for (const part of parts) part.done();
        } catch (err) {
          await this.replaceProducer(err);
          for (const part of parts) part.done(err);
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  /** Drops the producer after a failed request; the next flush connects a new one. */
  private async replaceProducer(err: unknown): Promise<void> {
    const p = this.producer;
    this.producer = null;
    this.producerReady = null;
    if (!p) return;
    this.logger.warn(
      { component: 'kafka-publisher', err: (err as Error).message },
      'a produce request failed; its producer is replaced and the records are published again by the caller',
    );
    await p.disconnect().catch(() => undefined);
  }

  async close(): Promise<void> {
    const p = this.producer;
    this.producer = null;
    this.producerReady = null;
    if (p) await p.disconnect();
  }
}

export function createShardedPublisher(
  kafka: Kafka,
  options: ShardedPublisherOptions,
): ShardedPublisher {
  const lanes = Array.from(
    { length: Math.max(1, options.lanes) },
    () => new Lane(kafka, options.logger),
  );
  const counts = new Map<string, { count: Promise<number>; at: number }>();
  let roundRobin = 0;

  const partitionCount = (topic: string): Promise<number> => {
    const cached = counts.get(topic);
    if (cached && Date.now() - cached.at < PARTITION_COUNT_TTL_MS) return cached.count;
    const count = options.partitionCount(topic).then((n) => {
      if (!(n > 0))
        throw new LifecycleError(
          ErrorCodes.KafkaPublish,
          `topic ${topic} has no partitions (does it exist?)`,
          { retriable: true, status: 503 },
        );
      return n;
    });
    counts.set(topic, { count, at: Date.now() });
    // A failed lookup is not cached: the next publish asks again.
    count.catch(() => {
      if (counts.get(topic)?.count === count) counts.delete(topic);
    });
    return count;
  };

  const hasHeaders = (
    m: OutgoingMessage,
  ): m is OutgoingMessage & { headers: Record<string, string> } => {
    for (const k in m.headers) if (Object.hasOwn(m.headers, k)) return true;
    return false;
  };
  const size = (m: OutgoingMessage) => {
    let b = 70 + (m.value?.length ?? 0) + (wireKey(m)?.length ?? 0);
    if (m.headers) for (const k in m.headers) b += k.length + m.headers[k]!.length + 8;
    return b;
  };

  const publish = async (topic: string, messages: OutgoingMessage[]): Promise<void> => {
    if (messages.length === 0) return;
    let n: number;
    try {
      n = await partitionCount(topic);
    } catch (err) {
      throw publishError(err, topic);
    }
    const parts = new Map<Lane, Part>();
    let outstanding = 0;
    let failed: unknown = null;
    let resolveAll!: () => void;
    let rejectAll!: (err: unknown) => void;
    const all = new Promise<void>((resolve, reject) => {
      resolveAll = resolve;
      rejectAll = reject;
    });
    for (const m of messages) {
      const key = wireKey(m);
      const partition =
        key !== null ? partitionForKey(key, n) : (roundRobin = (roundRobin + 1) % n);
      const lane = lanes[partition % lanes.length]!;
      let part = parts.get(lane);
      if (!part) {
        outstanding++;
        const p: Part = {
          topic,
          records: [],
          sizes: [],
          bytes: 0,
          done: (err?: unknown) => {
            if (err !== undefined && failed === null) failed = err;
            if (--outstanding > 0) return;
            if (failed !== null) rejectAll(publishError(failed, topic));
            else resolveAll();
          },
        };
        parts.set(lane, (part = p));
      }
      const bytes = size(m);
      part.records.push(
        hasHeaders(m)
          ? { key, value: m.value, headers: m.headers, partition }
          : { key, value: m.value, partition },
      );
      part.sizes.push(bytes);
      part.bytes += bytes;
    }
    for (const [lane, part] of parts) lane.push(part);
    return all;
  };

  return {
    publish,
    close: async () => {
      for (const lane of lanes) await lane.close();
    },
  };
}
