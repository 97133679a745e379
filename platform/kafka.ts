// Kafka implementation of the Bus (kafkajs): idempotent producer with acks=all, consumers
// with manual offset commits and assignment hooks, topic admin, pino-backed logging.
import {
  Kafka,
  Partitioners,
  logLevel,
  type Consumer,
  type Producer,
  type Admin,
  type LogEntry,
  type IHeaders,
} from 'kafkajs';
import type { Logger } from 'pino';
import type {
  Bus,
  BusConsumer,
  IncomingMessage,
  OutgoingMessage,
  Publisher,
  Subscription,
  TopicPartition,
  TopicSpec,
} from './bus.ts';
import type { Config } from './config.ts';
import { LifecycleError } from './errors.ts';

/** Routes kafkajs's own logs into pino at the matching level. */
export function pinoLogCreator(logger: Logger) {
  return () =>
    ({ namespace, level, label, log }: LogEntry) => {
      const { message, ...extra } = log;
      const child = { component: 'kafkajs', namespace, ...extra };
      if (level === logLevel.ERROR) logger.error(child, message);
      else if (level === logLevel.WARN) logger.warn(child, message);
      else if (level === logLevel.INFO) logger.info(child, message);
      else logger.debug({ ...child, label }, message);
    };
}

export function createKafka(config: Pick<Config['kafka'], 'brokers' | 'clientId'>, logger: Logger): Kafka {
  return new Kafka({
    clientId: config.clientId,
    brokers: [...config.brokers],
    logLevel: logLevel.WARN,
    logCreator: pinoLogCreator(logger),
    retry: { initialRetryTime: 100, retries: 8 },
    connectionTimeout: 3000,
    requestTimeout: 30000,
  });
}

function headersOut(h: Record<string, string> | undefined): IHeaders | undefined {
  return h && Object.keys(h).length > 0 ? h : undefined;
}

function headersIn(h: IHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!h) return out;
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined) continue;
    const first = Array.isArray(v) ? v[0] : v;
    if (first !== undefined) out[k] = Buffer.isBuffer(first) ? first.toString('utf8') : String(first);
  }
  return out;
}

class KafkaConsumer implements BusConsumer {
  private consumer: Consumer | null = null;
  private assigned: TopicPartition[] = [];
  private running = false;

  constructor(
    private readonly kafka: Kafka,
    private readonly sub: Subscription,
    private readonly logger: Logger,
    private readonly options: { sessionTimeout?: number; maxBytesPerPartition?: number },
  ) {}

  assignment(): TopicPartition[] {
    return [...this.assigned];
  }

  async start(): Promise<void> {
    const consumer = this.kafka.consumer({
      groupId: this.sub.groupId,
      sessionTimeout: this.options.sessionTimeout ?? 10_000,
      heartbeatInterval: 1000,
      rebalanceTimeout: 20_000,
      maxBytesPerPartition: this.options.maxBytesPerPartition ?? 1_048_576,
      allowAutoTopicCreation: false,
      retry: { retries: 10 },
    });
    this.consumer = consumer;
    // kafkajs reports the new assignment on every join; the difference to the previous
    // one is what was revoked and what was added.
    let pending: Promise<void> = Promise.resolve();
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      const next: TopicPartition[] = Object.entries(e.payload.memberAssignment).flatMap(([topic, ps]) =>
        (ps as number[]).map((partition) => ({ topic, partition })),
      );
      pending = pending.then(() => this.applyAssignment(next)).catch((err: unknown) => {
        this.logger.error({ err }, 'assignment hook failed');
      });
    });
    await consumer.connect();
    await consumer.subscribe({ topics: this.sub.topics, fromBeginning: this.sub.fromBeginning ?? true });
    this.running = true;
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.sub.concurrency ?? 1,
      eachBatch: async ({ batch, heartbeat, isRunning, isStale, resolveOffset }) => {
        await pending;
        const messages: IncomingMessage[] = batch.messages.map((m) => ({
          topic: batch.topic,
          partition: batch.partition,
          offset: m.offset,
          key: m.key ? m.key.toString('utf8') : null,
          value: m.value,
          headers: headersIn(m.headers),
          timestamp: Number(m.timestamp),
        }));
        if (messages.length === 0) return;
        const owned = () =>
          isRunning() &&
          !isStale() &&
          this.assigned.some((tp) => tp.topic === batch.topic && tp.partition === batch.partition);
        await this.sub.eachBatch(
          { topic: batch.topic, partition: batch.partition, messages },
          {
            commit: async (nextOffset) => {
              if (!owned()) return;
              resolveOffset((BigInt(nextOffset) - 1n).toString());
              await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: nextOffset }]);
            },
            isActive: owned,
            heartbeat,
          },
        );
      },
    });
  }

  private async applyAssignment(next: TopicPartition[]): Promise<void> {
    const key = (tp: TopicPartition) => `${tp.topic}/${tp.partition}`;
    const nextKeys = new Set(next.map(key));
    const prevKeys = new Set(this.assigned.map(key));
    const revoked = this.assigned.filter((tp) => !nextKeys.has(key(tp)));
    const added = next.filter((tp) => !prevKeys.has(key(tp)));
    this.assigned = next;
    if (revoked.length) await this.sub.onRevoked?.(revoked);
    if (added.length) await this.sub.onAssigned?.(added);
  }

  async stop(): Promise<void> {
    if (!this.consumer) return;
    const c = this.consumer;
    this.consumer = null;
    this.running = false;
    await c.disconnect();
    const revoked = this.assigned;
    this.assigned = [];
    if (revoked.length) await this.sub.onRevoked?.(revoked);
  }

  isRunning(): boolean {
    return this.running;
  }
}

export class KafkaBus implements Bus {
  private producer: Producer | null = null;
  private producerReady: Promise<Producer> | null = null;
  private admin: Admin | null = null;
  private readonly consumers = new Set<BusConsumer>();

  constructor(
    readonly kafka: Kafka,
    private readonly logger: Logger,
    private readonly options: { replicationFactor?: number; sessionTimeout?: number } = {},
  ) {}

  static fromConfig(config: Pick<Config, 'kafka'>, logger: Logger): KafkaBus {
    return new KafkaBus(createKafka(config.kafka, logger), logger, {
      replicationFactor: config.kafka.replicationFactor,
    });
  }

  private async getProducer(): Promise<Producer> {
    this.producerReady ??= (async () => {
      const p = this.kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
      await p.connect();
      this.producer = p;
      return p;
    })().catch((err: unknown) => {
      this.producerReady = null;
      throw new LifecycleError('LC_ERR_KAFKA_UNAVAILABLE', `cannot connect to Kafka: ${(err as Error).message}`, {
        retriable: true,
        status: 503,
        cause: err,
      });
    });
    return this.producerReady;
  }

  publisher(): Publisher {
    return {
      publish: (topic: string, messages: OutgoingMessage[]) => {
        if (messages.length === 0) return Promise.resolve();
        return new Promise<void>((resolve, reject) => {
          this.pendingSends.push({ topic, messages, resolve, reject });
          void this.flushSends();
        });
      },
    };
  }

  // kafkajs's idempotent producer breaks (OUT_OF_ORDER_SEQUENCE_NUMBER, kafkajs#598) when
  // send() calls overlap, so one request is in flight at a time; publishes that arrive
  // meanwhile are coalesced into the next request, in arrival order. Requests stay under
  // the broker's default record-batch limit (message.max.bytes, 1 MB).
  private readonly pendingSends: { topic: string; messages: OutgoingMessage[]; resolve: () => void; reject: (err: unknown) => void }[] = [];
  private flushing = false;

  private async flushSends(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    const LIMIT = 512 * 1024;
    const size = (m: OutgoingMessage) =>
      70 + (m.value?.length ?? 0) + (m.key?.length ?? 0) + Object.entries(m.headers ?? {}).reduce((a, [k, v]) => a + k.length + v.length + 8, 0);
    try {
      while (this.pendingSends.length > 0) {
        const items: typeof this.pendingSends = [];
        let bytes = 0;
        while (this.pendingSends.length > 0) {
          const next = this.pendingSends[0]!;
          const b = next.messages.reduce((a, m) => a + size(m), 0);
          if (items.length > 0 && bytes + b > LIMIT) break;
          items.push(this.pendingSends.shift()!);
          bytes += b;
        }
        type Out = { key: string | null; value: Buffer | null; headers?: IHeaders };
        const requests: Map<string, Out[]>[] = [];
        let current = new Map<string, Out[]>();
        let currentBytes = 0;
        for (const item of items) {
          for (const m of item.messages) {
            const b = size(m);
            if (currentBytes > 0 && currentBytes + b > LIMIT) {
              requests.push(current);
              current = new Map();
              currentBytes = 0;
            }
            let list = current.get(item.topic);
            if (!list) current.set(item.topic, (list = []));
            const headers = headersOut(m.headers);
            list.push(headers ? { key: m.key, value: m.value, headers } : { key: m.key, value: m.value });
            currentBytes += b;
          }
        }
        requests.push(current);
        try {
          const producer = await this.getProducer();
          for (const r of requests) await producer.sendBatch({ acks: -1, topicMessages: [...r].map(([topic, messages]) => ({ topic, messages })) });
          for (const item of items) item.resolve();
        } catch (err) {
          for (const item of items) {
            item.reject(
              err instanceof LifecycleError
                ? err
                : new LifecycleError('LC_ERR_KAFKA_PUBLISH', `publish to ${item.topic} failed: ${(err as Error).message}`, {
                    retriable: (err as { retriable?: boolean }).retriable ?? true,
                    status: 503,
                    cause: err,
                  }),
            );
          }
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  consumer(subscription: Subscription): BusConsumer {
    const c = new KafkaConsumer(this.kafka, subscription, this.logger.child({ component: 'consumer', groupId: subscription.groupId }), {
      sessionTimeout: this.options.sessionTimeout,
    });
    this.consumers.add(c);
    return c;
  }

  private async getAdmin(): Promise<Admin> {
    if (!this.admin) {
      const a = this.kafka.admin();
      await a.connect();
      this.admin = a;
    }
    return this.admin;
  }

  async ensureTopics(specs: TopicSpec[]): Promise<void> {
    const admin = await this.getAdmin();
    const existing = new Set(await admin.listTopics());
    const missing = specs.filter((s) => !existing.has(s.topic));
    if (missing.length === 0) return;
    await admin.createTopics({
      waitForLeaders: true,
      topics: missing.map((s) => ({
        topic: s.topic,
        numPartitions: s.partitions,
        replicationFactor: this.options.replicationFactor ?? 1,
        configEntries: [
          ...(s.compacted ? [{ name: 'cleanup.policy', value: 'compact' }] : []),
          ...(s.retentionMs ? [{ name: 'retention.ms', value: String(s.retentionMs) }] : []),
        ],
      })),
    });
  }

  async endOffsets(topic: string): Promise<Map<number, string>> {
    const admin = await this.getAdmin();
    const offsets = await admin.fetchTopicOffsets(topic);
    return new Map(offsets.map((o) => [o.partition, o.high]));
  }

  /** Committed offsets of a group, for lag metrics. */
  async committedOffsets(groupId: string, topic: string): Promise<Map<number, string>> {
    const admin = await this.getAdmin();
    const res = await admin.fetchOffsets({ groupId, topics: [topic] });
    return new Map((res[0]?.partitions ?? []).map((p) => [p.partition, p.offset]));
  }

  async close(): Promise<void> {
    for (const c of this.consumers) await c.stop();
    this.consumers.clear();
    if (this.producer) await this.producer.disconnect();
    this.producer = null;
    this.producerReady = null;
    if (this.admin) await this.admin.disconnect();
    this.admin = null;
  }
}

