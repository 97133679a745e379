// Kafka implementation of the Bus (kafkajs): idempotent producer with acks=all, consumers
// with manual offset commits and assignment hooks, topic admin, pino-backed logging.
import kafkajs, {
  Kafka,
  logLevel,
  type Consumer,
  type Admin,
  type LogEntry,
  type IHeaders,
  type KafkaMessage,
} from 'kafkajs';
import { isUnreachable, whenReady, type StartRetry } from './ready.ts';

// kafkajs is CommonJS: Node's ESM loader sees only some of its names as named exports, so
// these two enums come from the module object (a named import fails outside the test runner).
const { ConfigResourceTypes, ConfigSource } = kafkajs;
import type { Logger } from 'pino';
import type {
  Bus,
  BusConsumer,
  IncomingMessage,
  Publisher,
  Subscription,
  TopicPartition,
  TopicSpec,
} from './bus.ts';
import type { Config } from './config.ts';
import { createShardedPublisher, type ShardedPublisher } from './kafka-publisher.ts';

const MAX_MESSAGE_BYTES = 'max.message.bytes';

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

export function createKafka(
  config: Pick<Config['kafka'], 'brokers' | 'clientId'>,
  logger: Logger,
  retries = 8,
): Kafka {
  return new Kafka({
    clientId: config.clientId,
    brokers: [...config.brokers],
    logLevel: logLevel.WARN,
    logCreator: pinoLogCreator(logger),
    retry: { initialRetryTime: 100, retries },
    connectionTimeout: 3000,
    requestTimeout: 30000,
  });
}

function headersIn(h: IHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!h) return out;
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined) continue;
    const first = Array.isArray(v) ? v[0] : v;
    if (first !== undefined)
      out[k] = Buffer.isBuffer(first) ? first.toString('utf8') : String(first);
  }
  return out;
}

/** A fetched record as the bus hands it over: the key as text and as the bytes it is. */
export function incomingMessage(
  topic: string,
  partition: number,
  m: KafkaMessage,
): IncomingMessage {
  const keyBytes = m.key ?? null;
  return {
    topic,
    partition,
    offset: m.offset,
    key: keyBytes ? keyBytes.toString('utf8') : null,
    keyBytes,
    value: m.value,
    headers: headersIn(m.headers),
    timestamp: Number(m.timestamp),
  };
}

/** kafkajs names paused partitions per topic. */
function byTopic(partitions: TopicPartition[]): { topic: string; partitions: number[] }[] {
  const grouped = new Map<string, number[]>();
  for (const tp of partitions)
    grouped.set(tp.topic, [...(grouped.get(tp.topic) ?? []), tp.partition]);
  return [...grouped].map(([topic, ps]) => ({ topic, partitions: ps }));
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
      const next: TopicPartition[] = Object.entries(e.payload.memberAssignment).flatMap(
        ([topic, ps]) => (ps as number[]).map((partition) => ({ topic, partition })),
      );
      pending = pending
        .then(() => this.applyAssignment(next))
        .catch((err: unknown) => {
          this.logger.error({ err }, 'assignment hook failed');
        });
    });
    await consumer.connect();
    await consumer.subscribe({
      topics: this.sub.topics,
      fromBeginning: this.sub.fromBeginning ?? true,
    });
    this.running = true;
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.sub.concurrency ?? 1,
      eachBatch: async ({ batch, heartbeat, isRunning, isStale, resolveOffset }) => {
        await pending;
        const messages = batch.messages.map((m) =>
          incomingMessage(batch.topic, batch.partition, m),
        );
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
              // A member that does not commit reads on from what it resolved.
              if (this.sub.commitOffsets === false) return;
              await consumer.commitOffsets([
                { topic: batch.topic, partition: batch.partition, offset: nextOffset },
              ]);
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

  pause(partitions: TopicPartition[]): void {
    this.consumer?.pause(byTopic(partitions));
  }

  resume(partitions: TopicPartition[]): void {
    // Revocations reported by stop() arrive after the client is gone: nothing left to resume.
    this.consumer?.resume(byTopic(partitions));
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
  private admin: Admin | null = null;
  private readonly consumers = new Set<BusConsumer>();

  constructor(
    readonly kafka: Kafka,
    private readonly logger: Logger,
    private readonly options: {
      replicationFactor?: number;
      sessionTimeout?: number;
      producers?: number;
      maxBytesPerPartition?: number;
    } = {},
  ) {}

  /**
   * `maxBytesPerPartition`: fetch size of this bus's consumers (default 1 MB); it bounds a batch, so the records in flight.
   * In production (NODE_ENV neither development nor test), a replication factor of 1 is warned about here, at start.
   */
  static fromConfig(
    config: Pick<Config, 'kafka'> & Partial<Pick<Config, 'env'>>,
    logger: Logger,
    options: { producers?: number; maxBytesPerPartition?: number } = {},
  ): KafkaBus {
    if (config.kafka.replicationFactor === 1 && config.env === 'production') {
      logger.warn(
        { replicationFactor: 1 },
        'LC_KAFKA_REPLICATION_FACTOR=1: internal topics are created with one copy of each record, and a lost broker loses events; set 3 on a production cluster',
      );
    }
    return new KafkaBus(createKafka(config.kafka, logger), logger, {
      replicationFactor: config.kafka.replicationFactor,
      ...options,
    });
  }

  private sharded: ShardedPublisher | null = null;

  /**
   * Idempotent producers with acks=all (see kafka-publisher.ts). `producers` > 1 shards the
   * partitions across that many producers, each with its own request in flight.
   */
  publisher(): Publisher {
    this.sharded ??= createShardedPublisher(this.kafka, {
      lanes: this.options.producers ?? 1,
      logger: this.logger,
      partitionCount: async (topic) => {
        const admin = await this.getAdmin();
        const meta = await admin.fetchTopicMetadata({ topics: [topic] });
        return meta.topics[0]?.partitions.length ?? 0;
      },
    });
    return this.sharded;
  }

  consumer(subscription: Subscription): BusConsumer {
    const c = new KafkaConsumer(
      this.kafka,
      subscription,
      this.logger.child({ component: 'consumer', groupId: subscription.groupId }),
      {
        sessionTimeout: this.options.sessionTimeout,
        maxBytesPerPartition: this.options.maxBytesPerPartition,
      },
    );
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
    // A topic created before it was meant to carry large records keeps Kafka's 1 MB limit
    // until raised: a rendered message or send record above it would fail every publish.
    const needLargeRecords = specs.filter((s) => existing.has(s.topic) && s.maxMessageBytes);
    if (needLargeRecords.length > 0) await this.raiseMaxMessageBytes(admin, needLargeRecords);
    const missing = specs.filter((s) => !existing.has(s.topic));
    if (missing.length === 0) return;
    const replicationFactor = this.options.replicationFactor ?? 1;
    await createTopicsWithLeaders(admin, {
      topics: missing.map((s) => ({
        topic: s.topic,
        numPartitions: s.partitions,
        replicationFactor,
        configEntries: [
          // min(2, factor): an acknowledged write (acks=all) is on two brokers whenever the
          // topic has two copies or more, so no event is acknowledged by one broker only (with
          // factor 2 both copies must be in sync). With four copies or more, factor - 1 would
          // stop taking writes at the second lost broker; 2 keeps writing while two are up.
          { name: 'min.insync.replicas', value: String(Math.min(2, replicationFactor)) },
          ...(s.compacted ? [{ name: 'cleanup.policy', value: 'compact' }] : []),
          ...(s.retentionMs ? [{ name: 'retention.ms', value: String(s.retentionMs) }] : []),
          ...(s.maxMessageBytes
            ? [{ name: 'max.message.bytes', value: String(s.maxMessageBytes) }]
            : []),
        ],
      })),
    });
  }

  /**
   * Raises `max.message.bytes` of existing topics to their spec where it is lower (or unset,
   * the broker's ~1 MB default). Kafka's AlterConfigs replaces a topic's whole dynamic
   * config, so the topic's other settings (min.insync.replicas, cleanup.policy, retention)
   * are read first and written back with it. A refusal (no ALTER_CONFIGS permission) is
   * logged with the command an operator can run instead; the process still starts.
   */
  private async raiseMaxMessageBytes(admin: Admin, specs: TopicSpec[]): Promise<void> {
    const described = await admin.describeConfigs({
      includeSynonyms: false,
      resources: specs.map((s) => ({ type: ConfigResourceTypes.TOPIC, name: s.topic })),
    });
    for (const spec of specs) {
      const wanted = spec.maxMessageBytes!;
      const resource = described.resources.find((r) => r.resourceName === spec.topic);
      if (!resource) continue;
      const current = resource.configEntries.find((e) => e.configName === MAX_MESSAGE_BYTES);
      if (current && Number(current.configValue) >= wanted) continue;
      // Only what was set on the topic itself; defaults stay defaults.
      const own = resource.configEntries.filter(
        (e) =>
          e.configName !== MAX_MESSAGE_BYTES &&
          !e.readOnly &&
          !e.isSensitive &&
          (e.configSource === undefined
            ? !e.isDefault
            : e.configSource === ConfigSource.TOPIC_CONFIG),
      );
      try {
        await admin.alterConfigs({
          validateOnly: false,
          resources: [
            {
              type: ConfigResourceTypes.TOPIC,
              name: spec.topic,
              configEntries: [
                ...own.map((e) => ({ name: e.configName, value: e.configValue })),
                { name: MAX_MESSAGE_BYTES, value: String(wanted) },
              ],
            },
          ],
        });
        // The broker applies a topic's new config a moment after it answered: a large record
        // published at once could still meet the old limit.
        const applied = await this.waitForTopicConfig(admin, spec.topic, wanted);
        this.logger[applied ? 'info' : 'warn'](
          { topic: spec.topic, from: current?.configValue ?? null, to: wanted, applied },
          applied
            ? 'raised max.message.bytes of an existing topic so it takes the largest records the product writes'
            : 'raised max.message.bytes of an existing topic, but the broker did not show it yet: records above the old limit may be refused for a moment',
        );
      } catch (err) {
        this.logger.warn(
          { topic: spec.topic, wanted, err: (err as Error).message },
          `cannot raise max.message.bytes of an existing topic: records above ${current?.configValue ?? 'the broker default'} bytes will be refused; run kafka-configs.sh --alter --entity-type topics --entity-name ${spec.topic} --add-config max.message.bytes=${wanted}`,
        );
      }
    }
  }

  /** Whether the broker shows `max.message.bytes` of `topic` at `wanted` or more within about 10 s. */
  private async waitForTopicConfig(admin: Admin, topic: string, wanted: number): Promise<boolean> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const { resources } = await admin.describeConfigs({
        includeSynonyms: false,
        resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
      });
      const value = resources[0]?.configEntries.find((e) => e.configName === MAX_MESSAGE_BYTES);
      if (value && Number(value.configValue) >= wanted) return true;
      if (Date.now() >= deadline) return false;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async endOffsets(topic: string): Promise<Map<number, string>> {
    const admin = await this.getAdmin();
    // kafkajs gives up on the first NOT_LEADER / LEADER_NOT_AVAILABLE, which a partition
    // answers while its leader is being elected (a topic just created, a broker restarting):
    // such retriable answers are asked again, with backoff, for up to about 6 s.
    for (let attempt = 0; ; attempt++) {
      try {
        const offsets = await admin.fetchTopicOffsets(topic);
        return new Map(offsets.map((o) => [o.partition, o.high]));
      } catch (err) {
        if (attempt >= 6 || (err as { retriable?: boolean }).retriable !== true) throw err;
        await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
      }
    }
  }

  async deleteGroup(groupId: string): Promise<boolean> {
    const admin = await this.getAdmin();
    // The coordinator takes a moment to see the last member gone after it left.
    for (let attempt = 0; ; attempt++) {
      try {
        await admin.deleteGroups([groupId]);
        return true;
      } catch (err) {
        const codes = ((err as { groups?: { error?: { type?: string } }[] }).groups ?? []).map(
          (g) => g.error?.type,
        );
        if (codes.includes('GROUP_ID_NOT_FOUND')) return true;
        if (!codes.includes('NON_EMPTY_GROUP')) throw err;
        if (attempt >= 5) return false;
        await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
      }
    }
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
    if (this.sharded) await this.sharded.close();
    this.sharded = null;
    if (this.admin) await this.admin.disconnect();
    this.admin = null;
  }
}

/**
 * Resolves once a broker of the cluster answers (the cluster described), waiting with backoff
 * and a logged line per attempt while none can be reached: a process started before Kafka,
 * or while the broker restarts, starts once it is back instead of exiting. Each attempt is
 * one quick try (kafkajs's own retries off), so the log shows the wait as it happens.
 */
export async function waitForKafka(
  config: Pick<Config['kafka'], 'brokers' | 'clientId'>,
  logger: Logger,
  retry?: StartRetry,
): Promise<void> {
  await whenReady({
    what: 'Kafka',
    at: config.brokers.join(','),
    logger,
    retry,
    meanwhile: 'before starting',
    waitable: isUnreachable,
    attempt: async () => {
      // kafkajs's own connection errors are logged by the attempt's line above, not twice.
      const admin = createKafka(config, logger.child({}, { level: 'fatal' }), 0).admin();
      try {
        await admin.connect();
        await admin.describeCluster();
      } finally {
        await admin.disconnect().catch(() => undefined);
      }
    },
  });
}

/** How long a topic just created may take to show a leader for every partition. */
const TOPIC_LEADERS_WAIT_MS = 30_000;

/**
 * Creates topics and returns once every partition of each has a leader. kafkajs's own wait
 * (`waitForLeaders`) retries only LEADER_NOT_AVAILABLE; right after the controller created a
 * topic the broker may still answer UNKNOWN_TOPIC_OR_PARTITION ("This server does not host
 * this topic-partition") until the metadata reaches it, and that ended the caller's start.
 * Here that answer, and a topic another process created first, mean "not yet": the metadata
 * is asked again until it shows every partition led, or the wait runs out.
 */
export async function createTopicsWithLeaders(
  admin: Pick<Admin, 'createTopics' | 'fetchTopicMetadata'>,
  request: Omit<Parameters<Admin['createTopics']>[0], 'waitForLeaders'>,
  opts: { timeoutMs?: number; pollMs?: number } = {},
): Promise<void> {
  const names = request.topics.map((t) => t.topic);
  try {
    await admin.createTopics({ ...request, waitForLeaders: true });
    return;
  } catch (err) {
    if (!isMetadataLag(err)) throw err;
  }
  const deadline = Date.now() + (opts.timeoutMs ?? TOPIC_LEADERS_WAIT_MS);
  let last: unknown;
  for (;;) {
    try {
      const { topics } = await admin.fetchTopicMetadata({ topics: names });
      const led = topics.every(
        (t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0),
      );
      if (led && topics.length === names.length) return;
      last = new Error(`topics ${names.join(', ')} have partitions without a leader`);
    } catch (err) {
      if (!isMetadataLag(err)) throw err;
      last = err;
    }
    if (Date.now() >= deadline)
      throw new Error(
        `topics ${names.join(', ')} were created but showed no leader for every partition within ${opts.timeoutMs ?? TOPIC_LEADERS_WAIT_MS} ms: ${(last as Error).message}`,
        { cause: last },
      );
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 100));
  }
}

/** The broker's answers that mean its metadata has not caught up with a topic just created. */
function isMetadataLag(err: unknown): boolean {
  const type = (err as { type?: unknown } | null)?.type;
  return (
    type === 'UNKNOWN_TOPIC_OR_PARTITION' ||
    type === 'LEADER_NOT_AVAILABLE' ||
    type === 'TOPIC_ALREADY_EXISTS'
  );
}
