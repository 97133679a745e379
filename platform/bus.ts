// The message bus seen by the rooms: publish keyed records, consume partition batches in
// a consumer group with explicit commits and assignment hooks. Kafka (./kafka.ts) is the
// real implementation; InMemoryBus serves unit tests, `simulate` and the demo with the same
// semantics: per-key partitioning, per-partition order, committed offsets per group.
import { createHash } from 'node:crypto';
import { DlqHeaders } from './contracts.ts';

export interface OutgoingMessage {
  key: string | null;
  /** When set, the key written instead of `key`, as these bytes: a dead-lettered record keeps its original (possibly binary) key. */
  keyBytes?: Buffer | null;
  value: Buffer | null;
  headers?: Record<string, string>;
}

export interface IncomingMessage {
  topic: string;
  partition: number;
  offset: string;
  /** The key read as UTF-8 text: what every text key (user ids, JSON) is. */
  key: string | null;
  /**
   * The key's bytes exactly as on the topic. Binary keys (Debezium's Avro keys) survive only
   * here: UTF-8 decoding replaces invalid bytes, so different keys can read as the same text.
   * Both buses set it; a message built by hand may leave it out (see keyBytesOf).
   */
  keyBytes?: Buffer | null;
  value: Buffer | null;
  headers: Record<string, string>;
  timestamp: number;
}

/** A received message's key bytes: as the bus delivered them, else (a message built by hand) its text key's. */
export function keyBytesOf(m: Pick<IncomingMessage, 'key' | 'keyBytes'>): Buffer | null {
  if (m.keyBytes !== undefined) return m.keyBytes;
  return m.key === null ? null : Buffer.from(m.key, 'utf8');
}

/** The key an outgoing message is written with: its bytes when set, else its text. */
export function wireKey(m: Pick<OutgoingMessage, 'key' | 'keyBytes'>): string | Buffer | null {
  return m.keyBytes !== undefined ? m.keyBytes : m.key;
}

export interface Publisher {
  /** Resolves only when the bus has durably accepted every message (Kafka: acks=all). */
  publish(topic: string, messages: OutgoingMessage[]): Promise<void>;
}

export interface TopicPartition {
  topic: string;
  partition: number;
}

export interface BatchControl {
  /** Commit: the next offset to read for this batch's partition is `nextOffset`. */
  commit(nextOffset: string): Promise<void>;
  /** False once the consumer is stopping or the partition was revoked: stop work, don't commit. */
  isActive(): boolean;
  heartbeat(): Promise<void>;
}

export interface Batch {
  topic: string;
  partition: number;
  messages: IncomingMessage[];
}

export interface Subscription {
  groupId: string;
  topics: (string | RegExp)[];
  fromBeginning?: boolean;
  /**
   * False: `commit` only moves this member's read position; nothing is stored for the group.
   * For a reader that reads the whole topic at every start (a view of a compacted topic): its
   * group keeps no offsets, so Kafka forgets it once its member leaves, as `deleteGroup` does at once.
   */
  commitOffsets?: boolean;
  /** Partitions handled at the same time (default 1); each partition's batches stay in order. */
  concurrency?: number;
  /** Called before the first batch of newly assigned partitions. */
  onAssigned?(partitions: TopicPartition[]): Promise<void> | void;
  /** Called when partitions are taken away (rebalance or stop), after their last batch finished. */
  onRevoked?(partitions: TopicPartition[]): Promise<void> | void;
  eachBatch(batch: Batch, control: BatchControl): Promise<void>;
}

export interface BusConsumer {
  start(): Promise<void>;
  /** Graceful: lets the in-flight batch finish, then leaves the group. */
  stop(): Promise<void>;
  assignment(): TopicPartition[];
  /**
   * Stops fetching these partitions while staying in the group: they stay assigned to this
   * member, nothing more of them is handed to `eachBatch`, and their offsets stay where they
   * were committed. As in Kafka's client, a pause outlives a rebalance: whoever paused a
   * partition resumes it when it is revoked, or this member would not read it if it came back.
   */
  pause(partitions: TopicPartition[]): void;
  /** Fetches paused partitions again, from their committed offset. */
  resume(partitions: TopicPartition[]): void;
}

export interface TopicSpec {
  topic: string;
  partitions: number;
  compacted?: boolean;
  retentionMs?: number;
  /** Largest record the topic takes (Kafka's default is about 1 MB). */
  maxMessageBytes?: number;
}

export interface Bus {
  publisher(): Publisher;
  consumer(subscription: Subscription): BusConsumer;
  ensureTopics(specs: TopicSpec[]): Promise<void>;
  /** Current end offset per partition, for lag metrics and benchmarks. */
  endOffsets(topic: string): Promise<Map<number, string>>;
  /**
   * Forgets a consumer group that has no members left (its committed offsets too). A group
   * that does not exist is no error; one that still has members is left as it is (false).
   */
  deleteGroup(groupId: string): Promise<boolean>;
  close(): Promise<void>;
}

/** Every internal topic the product uses, with its layout. */
/**
 * Records that carry a rendered message or its data (sends, the message log) may be as large as
 * the largest message the product sends (2 MB of HTML with inline images) plus its data.
 */
export const LARGE_RECORD_BYTES = 8 * 1024 * 1024;

export function internalTopicSpecs(
  t: {
    events: string;
    sends: string;
    sendsHigh: string;
    deliveries: string;
    dlq: string;
    campaigns: string;
    templates: string;
    messages: string;
  },
  partitions: number,
): TopicSpec[] {
  return [
    { topic: t.events, partitions },
    { topic: t.sends, partitions, maxMessageBytes: LARGE_RECORD_BYTES },
    { topic: t.sendsHigh, partitions, maxMessageBytes: LARGE_RECORD_BYTES },
    { topic: t.deliveries, partitions },
    {
      topic: t.dlq,
      partitions: Math.max(1, Math.min(partitions, 3)),
      maxMessageBytes: LARGE_RECORD_BYTES,
    },
    { topic: t.campaigns, partitions: 1, compacted: true },
    { topic: t.templates, partitions: 1, compacted: true, maxMessageBytes: LARGE_RECORD_BYTES },
    { topic: t.messages, partitions, maxMessageBytes: LARGE_RECORD_BYTES },
  ];
}

/** Sends a record to the DLQ with the reason and where it came from. */
export async function sendToDlq(
  publisher: Publisher,
  dlqTopic: string,
  message: IncomingMessage,
  reason: string,
  stage: string,
): Promise<void> {
  await publisher.publish(dlqTopic, [
    {
      key: message.key,
      keyBytes: keyBytesOf(message),
      value: message.value,
      headers: {
        ...message.headers,
        [DlqHeaders.reason]: reason.slice(0, 1000),
        [DlqHeaders.stage]: stage,
        [DlqHeaders.sourceTopic]: message.topic,
        [DlqHeaders.sourcePartition]: String(message.partition),
        [DlqHeaders.sourceOffset]: message.offset,
      },
    },
  ]);
}

/** Partition of a key among n partitions: stable, same for every process (a text key and its UTF-8 bytes agree). */
export function partitionFor(key: string | Buffer | null, n: number, roundRobin = 0): number {
  if (key === null) return roundRobin % n;
  return createHash('md5').update(key).digest().readUInt32BE(0) % n;
}

interface MemoryTopic {
  partitions: IncomingMessage[][];
  compacted: boolean;
}

interface MemoryGroup {
  committed: Map<string, number>;
  members: MemoryConsumer[];
}

const tpKey = (tp: TopicPartition) => `${tp.topic}/${tp.partition}`;

class MemoryConsumer implements BusConsumer {
  private running = false;
  private assigned: TopicPartition[] = [];
  private positions = new Map<string, number>();
  private paused = new Set<string>();
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;

  constructor(
    private readonly bus: InMemoryBus,
    readonly sub: Subscription,
  ) {}

  private get commits(): boolean {
    return this.sub.commitOffsets !== false;
  }

  assignment(): TopicPartition[] {
    return [...this.assigned];
  }

  pause(partitions: TopicPartition[]): void {
    for (const tp of partitions) this.paused.add(tpKey(tp));
  }

  resume(partitions: TopicPartition[]): void {
    for (const tp of partitions) {
      const k = tpKey(tp);
      if (!this.paused.delete(k)) continue;
      // As Kafka does after a pause: fetching goes on from the committed offset (a member that
      // does not commit goes on from where it got to).
      if (this.positions.has(k) && this.commits)
        this.positions.set(k, this.bus.committedOffset(this.sub, tp));
    }
    this.notify();
  }

  async start(): Promise<void> {
    this.running = true;
    await this.bus.join(this);
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.notify();
    await this.loop;
    await this.bus.leave(this);
  }

  notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  async setAssignment(next: TopicPartition[]): Promise<void> {
    const key = (tp: TopicPartition) => `${tp.topic}/${tp.partition}`;
    const nextKeys = new Set(next.map(key));
    const prevKeys = new Set(this.assigned.map(key));
    const revoked = this.assigned.filter((tp) => !nextKeys.has(key(tp)));
    const added = next.filter((tp) => !prevKeys.has(key(tp)));
    this.assigned = next;
    for (const tp of revoked) this.positions.delete(key(tp));
    if (revoked.length) await this.sub.onRevoked?.(revoked);
    for (const tp of added) this.positions.set(key(tp), this.bus.committedOffset(this.sub, tp));
    if (added.length) await this.sub.onAssigned?.(added);
  }

  private async run(): Promise<void> {
    while (this.running) {
      let worked = false;
      for (const tp of [...this.assigned]) {
        if (!this.running) break;
        const k = tpKey(tp);
        const pos = this.positions.get(k);
        if (pos === undefined || this.paused.has(k)) continue;
        const log = this.bus.log(tp.topic, tp.partition);
        if (pos >= log.length) continue;
        const messages = log.slice(pos, pos + 500);
        worked = true;
        const stillOwned = () => this.running && this.positions.has(k);
        try {
          await this.sub.eachBatch(
            { topic: tp.topic, partition: tp.partition, messages },
            {
              commit: async (nextOffset) => {
                if (!stillOwned()) return;
                if (this.commits) this.bus.commit(this.sub.groupId, tp, Number(nextOffset));
                else this.positions.set(k, Number(nextOffset));
              },
              isActive: stillOwned,
              heartbeat: async () => {},
            },
          );
        } catch {
          // As kafkajs does: a failed batch is retried from the committed offset, after a pause.
          await new Promise((r) => setTimeout(r, 50));
        }
        // Re-read from the committed offset: what the handler did not commit is redelivered,
        // as with Kafka after a restart.
        if (this.positions.has(k) && this.commits)
          this.positions.set(k, this.bus.committedOffset(this.sub, tp));
      }
      if (!worked && this.running) {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          setTimeout(resolve, 50).unref();
        });
      }
    }
  }
}

/** A single-process bus with Kafka's semantics, for tests, `simulate` and the demo. */
export class InMemoryBus implements Bus {
  private readonly topicsByName = new Map<string, MemoryTopic>();
  private readonly groups = new Map<string, MemoryGroup>();
  private rr = 0;

  constructor(private readonly defaultPartitions = 4) {}

  publisher(): Publisher {
    return {
      publish: async (topic, messages) => {
        const t = this.topic(topic);
        for (const m of messages) {
          const key = wireKey(m);
          const partition = partitionFor(key, t.partitions.length, this.rr++);
          const log = t.partitions[partition]!;
          const keyBytes =
            key === null
              ? null
              : Buffer.isBuffer(key)
                ? Buffer.from(key)
                : Buffer.from(key, 'utf8');
          log.push({
            topic,
            partition,
            offset: String(log.length),
            key: typeof key === 'string' ? key : (keyBytes?.toString('utf8') ?? null),
            keyBytes,
            value: m.value,
            headers: { ...(m.headers ?? {}) },
            timestamp: Date.now(),
          });
        }
        for (const g of this.groups.values()) for (const c of g.members) c.notify();
      },
    };
  }

  consumer(subscription: Subscription): BusConsumer {
    return new MemoryConsumer(this, subscription);
  }

  async ensureTopics(specs: TopicSpec[]): Promise<void> {
    for (const s of specs) this.topic(s.topic, s.partitions, s.compacted);
  }

  async endOffsets(topic: string): Promise<Map<number, string>> {
    const t = this.topic(topic);
    return new Map(t.partitions.map((p, i) => [i, String(p.length)]));
  }

  async deleteGroup(groupId: string): Promise<boolean> {
    const g = this.groups.get(groupId);
    if (!g) return true;
    if (g.members.length > 0) return false;
    this.groups.delete(groupId);
    return true;
  }

  /** The groups the bus knows: with members or committed offsets (tests). */
  groupIds(): string[] {
    return [...this.groups.keys()];
  }

  async close(): Promise<void> {
    for (const g of this.groups.values()) for (const c of [...g.members]) await c.stop();
  }

  /** All messages of a topic in partition order (tests and the demo's inspectors). */
  messages(topic: string): IncomingMessage[] {
    return this.topic(topic).partitions.flat();
  }

  log(topic: string, partition: number): IncomingMessage[] {
    return this.topic(topic).partitions[partition] ?? [];
  }

  committedOffset(sub: Subscription, tp: TopicPartition): number {
    // Read without creating the group: only members and commits make one.
    const c = this.groups.get(sub.groupId)?.committed.get(`${tp.topic}/${tp.partition}`);
    if (c !== undefined) return c;
    return sub.fromBeginning === false ? this.log(tp.topic, tp.partition).length : 0;
  }

  /** A group's committed offsets on a topic as the next offset to read, per partition that has one (lag metrics). */
  async committedOffsets(groupId: string, topic: string): Promise<Map<number, string>> {
    return new Map([...this.groupOffsets(groupId, topic)].map(([p, next]) => [p, String(next)]));
  }

  /** A group's committed offsets on a topic, per partition that has one (tests and the demo's inspectors). */
  groupOffsets(groupId: string, topic: string): Map<number, number> {
    const out = new Map<number, number>();
    for (const [k, next] of this.groups.get(groupId)?.committed ?? []) {
      const slash = k.lastIndexOf('/');
      if (k.slice(0, slash) === topic) out.set(Number(k.slice(slash + 1)), next);
    }
    return out;
  }

  commit(groupId: string, tp: TopicPartition, next: number): void {
    this.group(groupId).committed.set(`${tp.topic}/${tp.partition}`, next);
  }

  async join(c: MemoryConsumer): Promise<void> {
    const g = this.group(c.sub.groupId);
    g.members.push(c);
    await this.rebalance(g);
  }

  async leave(c: MemoryConsumer): Promise<void> {
    const g = this.group(c.sub.groupId);
    g.members = g.members.filter((m) => m !== c);
    await c.setAssignment([]);
    await this.rebalance(g);
    // As Kafka does: a group without members or offsets is forgotten.
    if (g.members.length === 0 && g.committed.size === 0 && this.groups.get(c.sub.groupId) === g)
      this.groups.delete(c.sub.groupId);
  }

  private async rebalance(g: MemoryGroup): Promise<void> {
    const members = g.members;
    if (members.length === 0) return;
    const first = members[0]!;
    const all: TopicPartition[] = [];
    for (const [name, t] of this.topicsByName) {
      if (!first.sub.topics.some((s) => (typeof s === 'string' ? s === name : s.test(name))))
        continue;
      t.partitions.forEach((_, partition) => all.push({ topic: name, partition }));
    }
    const plan = members.map(() => [] as TopicPartition[]);
    all.forEach((tp, i) => plan[i % members.length]!.push(tp));
    // Revoke first everywhere, then assign, so no partition ever has two owners.
    for (const [i, m] of members.entries()) {
      const keep = m
        .assignment()
        .filter((tp) => plan[i]!.some((p) => p.topic === tp.topic && p.partition === tp.partition));
      await m.setAssignment(keep);
    }
    for (const [i, m] of members.entries()) await m.setAssignment(plan[i]!);
  }

  private group(id: string): MemoryGroup {
    let g = this.groups.get(id);
    if (!g) {
      g = { committed: new Map(), members: [] };
      this.groups.set(id, g);
    }
    return g;
  }

  private topic(name: string, partitions = this.defaultPartitions, compacted = false): MemoryTopic {
    let t = this.topicsByName.get(name);
    if (!t) {
      t = { partitions: Array.from({ length: partitions }, () => []), compacted };
      this.topicsByName.set(name, t);
    }
    return t;
  }
}
