// The engine process: a consumer group on `<prefix>.events`, one writer per partition.
// Per batch: decode (bad records -> DLQ), load the batch's users (one round trip), apply
// the events in order through the core, publish sends and emitted events, schedule
// timers, THEN write state (fenced), THEN commit. A crash anywhere before the commit
// replays the batch: the per-user offset fence skips what was already applied, and what
// was published again carries the same ids (sendId claimed once by delivery).
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { Logger } from 'pino';
import { performance } from 'node:perf_hooks';
import type { Batch, BatchControl, Bus, BusConsumer, IncomingMessage, OutgoingMessage, TopicPartition } from '../../platform/bus.ts';
import { internalTopicSpecs, sendToDlq } from '../../platform/bus.ts';
import { NormalisedEventSchema, SCHEMA_ID_HEADER, topics as topicNames, type NormalisedEvent, type SendCommand } from '../../platform/contracts.ts';
import { encodeWithHeader, eventCodec, sendCodec } from '../../platform/avro.ts';
import { errorMessage } from '../../platform/errors.ts';
import { Counter, Gauge, Histogram, type Registry } from '../../platform/metrics.ts';
import type { Service } from '../../platform/shutdown.ts';
import type { StateStore, Timer, TimerStore, UserWrite } from './stores.ts';
import { startTimerPoller, type TimerPoller } from './timers.ts';

/** What the runtime needs from the engine core (engine/core): a pure reducer. */
export interface CoreResult<S> {
  /** null: erase the user (right to be forgotten). */
  state: S | null;
  sends: SendCommand[];
  timers: Timer[];
  emitted: NormalisedEvent[];
  /** `duplicate`: a recently applied event id; `invalid`: an internal event the core cannot read (see `reason`). */
  status?: string;
  reason?: string;
}

export interface EngineCorePort<S> {
  apply(state: S | null, event: NormalisedEvent, now: number): CoreResult<S>;
}

export interface StateCodecPort<S> {
  serialize(state: S): string;
  deserialize(text: string): S;
}

export interface EngineServiceConfig {
  topicPrefix: string;
  groupId: string;
  timerPollMs: number;
  /** Partitions created for the internal topics when missing. */
  partitions: number;
  /** How often consumer lag is measured (ms). */
  lagIntervalMs?: number;
  /** Create missing topics on start (default true). */
  ensureTopics?: boolean;
  /**
   * Partitions processed at the same time (default: `partitions`, i.e. every owned partition):
   * one partition's I/O overlaps another's CPU work. The client fetches again only when every
   * batch of the last fetch is done, so a smaller value makes a fetch cycle several waves of
   * round trips long, and that cycle is the event-to-send latency under steady load.
   */
  concurrency?: number;
  /** Users whose state this process keeps between batches of the partitions it owns (default 50,000; 0: none). */
  stateCacheSize?: number;
}

export interface EngineServiceDeps<S> {
  bus: Bus;
  state: StateStore;
  timers: TimerStore;
  core: EngineCorePort<S>;
  codec: StateCodecPort<S>;
  logger: Logger;
  registry: Registry;
  /** Wall clock for timer polling; event processing uses the event's own time. */
  clock?: () => number;
  /** Version of the rule set in force at start. */
  ruleSetVersion?: string;
  /** Rules an event is evaluated against (its trigger matches), for the per-rule evaluation counter. */
  evaluatedRules?: (event: NormalisedEvent) => readonly string[];
}

export interface EngineService extends Service {
  /** Records the rule set now in force (hot reload). */
  setRuleSetVersion(version: string): void;
  ruleSetVersion(): string | null;
  ownedPartitions(): number[];
}

interface Working<S> {
  state: S | null;
  /** Offset of the last event applied to this user on this partition (replay fence). */
  fence: bigint | null;
  dirty: boolean;
  offset: string;
  erased: boolean;
  /** Timers scheduled for this user in this batch (an erase drops the earlier ones). */
  timers: Timer[];
}

// Compiled once; it gives the reason when the check below refuses an event.
const eventCheck = TypeCompiler.Compile(NormalisedEventSchema);

// TypeBox's record test: Date and byte arrays are not records.
const isJsonObject = (v: unknown): boolean => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date) && !(v instanceof Uint8Array);
const isNonEmptyString = (v: unknown): boolean => typeof v === 'string' && v.length > 0;

/**
 * NormalisedEventSchema written out by hand: the TypeBox check allocates and walks the
 * schema for every consumed event; this does the same tests directly. It agrees with
 * `eventCheck.Check` (property-tested in engine-service.test.ts), which still gives the
 * reason when an event is refused.
 */
export function isWellFormedEvent(e: unknown): e is NormalisedEvent {
  if (!isJsonObject(e)) return false;
  const o = e as Record<string, unknown>;
  return (
    isNonEmptyString(o.id) &&
    isNonEmptyString(o.userId) &&
    isNonEmptyString(o.type) &&
    typeof o.source === 'string' &&
    Number.isInteger(o.ts) &&
    Number.isInteger(o.receivedAt) &&
    isJsonObject(o.properties) &&
    (o.anonymousId === undefined || typeof o.anonymousId === 'string') &&
    (o.traits === undefined || isJsonObject(o.traits)) &&
    (o.context === undefined || isJsonObject(o.context))
  );
}

/** Thrown when this process is no longer the owner of a partition (a newer epoch exists). */
class FencedOut extends Error {
  constructor(
    message: string,
    readonly epoch: number,
  ) {
    super(message);
  }
}

function engineMetrics(registry: Registry) {
  return {
    events: new Counter({ name: 'lc_engine_events_total', help: 'Events consumed by the engine, by outcome (applied, replay_skipped, ignored, dlq).', labelNames: ['outcome'], registers: [registry] }),
    batchSeconds: new Histogram({
      name: 'lc_engine_batch_seconds',
      help: 'Time to process one batch, from decode to commit.',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    batchSize: new Histogram({ name: 'lc_engine_batch_events', help: 'Events per batch.', buckets: [1, 10, 50, 100, 250, 500, 1000, 2500, 5000], registers: [registry] }),
    evaluations: new Counter({ name: 'lc_engine_rule_evaluations_total', help: 'Rule evaluations, per rule.', labelNames: ['rule'], registers: [registry] }),
    fires: new Counter({ name: 'lc_engine_rule_fires_total', help: 'Send commands produced, per rule (holdouts included).', labelNames: ['rule'], registers: [registry] }),
    sends: new Counter({ name: 'lc_engine_sends_total', help: 'Send commands published.', registers: [registry] }),
    dlq: new Counter({ name: 'lc_engine_dlq_total', help: 'Records sent to the DLQ, by stage.', labelNames: ['stage'], registers: [registry] }),
    timersScheduled: new Counter({ name: 'lc_engine_timers_scheduled_total', help: 'Timers scheduled.', registers: [registry] }),
    timersFired: new Counter({ name: 'lc_engine_timers_fired_total', help: 'Timers fired (published as timer.fired events).', registers: [registry] }),
    fenced: new Counter({ name: 'lc_engine_fenced_total', help: 'Batches abandoned because a newer owner holds the partition.', registers: [registry] }),
    lag: new Gauge({ name: 'lc_engine_consumer_lag', help: 'End offset minus committed offset, per owned partition.', labelNames: ['partition'], registers: [registry] }),
    ruleSet: new Gauge({ name: 'lc_engine_rule_set_info', help: 'The rule set version in force (value 1).', labelNames: ['version'], registers: [registry] }),
    owned: new Gauge({ name: 'lc_engine_partitions_owned', help: 'Partitions this process owns.', registers: [registry] }),
  };
}

export function createEngineService<S>(config: EngineServiceConfig, deps: EngineServiceDeps<S>): EngineService {
  const t = topicNames(config.topicPrefix);
  const log = deps.logger.child({ component: 'engine', topic: t.events });
  const metrics = engineMetrics(deps.registry);
  const clock = deps.clock ?? Date.now;
  const publisher = deps.bus.publisher();
  const epochs = new Map<number, number>();
  const pollers = new Map<number, TimerPoller>();
  const committed = new Map<number, string>();
  let consumer: BusConsumer | null = null;
  let lagTimer: NodeJS.Timeout | null = null;
  let running = false;
  let version: string | null = null;
  let lastBatchAt: number | null = null;
  let lastError: string | null = null;
  // The partition owner is the only writer of its users, so the state it last wrote under
  // its current epoch is the stored state: a hit skips the load and the parse. Entries
  // leave the cache while their batch runs and come back only after the write succeeded.
  const cache = new Map<string, { state: S | null; partition: number; epoch: number; offset: string | null }>();
  const cacheMax = config.stateCacheSize ?? 50_000;

  const setRuleSetVersion = (v: string) => {
    if (v === version) return;
    metrics.ruleSet.reset();
    metrics.ruleSet.set({ version: v }, 1);
    log.info({ ruleSetVersion: v, previous: version }, 'rule set in force');
    version = v;
  };
  if (deps.ruleSetVersion) setRuleSetVersion(deps.ruleSetVersion);

  const startPoller = (partition: number, epoch: number) => {
    pollers.set(
      partition,
      startTimerPoller({
        partition,
        epoch,
        store: deps.timers,
        publisher,
        eventsTopic: t.events,
        pollMs: config.timerPollMs,
        clock,
        logger: log.child({ partition }),
        onFired: (n) => metrics.timersFired.inc(n),
        onFenced: () => loseOwnership(partition, epoch),
      }),
    );
  };

  // Only the epoch that was fenced out is given up: the partition may already be assigned
  // to this process again under a newer one.
  const loseOwnership = (partition: number, epoch: number) => {
    if (epochs.get(partition) !== epoch) return;
    epochs.delete(partition);
    const poller = pollers.get(partition);
    pollers.delete(partition);
    if (poller) void poller.stop();
  };

  const onAssigned = async (tps: TopicPartition[]) => {
    for (const tp of tps) {
      if (tp.topic !== t.events) continue;
      await pollers.get(tp.partition)?.stop();
      const epoch = await deps.state.acquire(tp.partition);
      epochs.set(tp.partition, epoch);
      startPoller(tp.partition, epoch);
      log.info({ partition: tp.partition, epoch }, 'partition assigned');
    }
    metrics.owned.set(epochs.size);
  };

  const onRevoked = async (tps: TopicPartition[]) => {
    for (const tp of tps) {
      if (tp.topic !== t.events) continue;
      const poller = pollers.get(tp.partition);
      pollers.delete(tp.partition);
      epochs.delete(tp.partition);
      committed.delete(tp.partition);
      metrics.lag.remove({ partition: String(tp.partition) });
      await poller?.stop();
      log.info({ partition: tp.partition }, 'partition revoked');
    }
    metrics.owned.set(epochs.size);
  };

  const decode = (m: IncomingMessage): { event: NormalisedEvent } | { reason: string } => {
    if (m.value === null) return { reason: 'empty record value' };
    let event: NormalisedEvent;
    try {
      event = eventCodec.decode(m.value, m.headers[SCHEMA_ID_HEADER]);
    } catch (err) {
      return { reason: `undecodable event: ${errorMessage(err)}` };
    }
    if (!isWellFormedEvent(event)) {
      const first = eventCheck.Errors(event).First();
      return { reason: `invalid event: ${first ? `${first.path || '/'} ${first.message}` : 'schema mismatch'}` };
    }
    // Per-user order and the single writer rely on key = userId.
    if (m.key !== event.userId) return { reason: `record key ${JSON.stringify(m.key)} does not match the event's userId` };
    return { event };
  };

  interface DeadLetter {
    m: IncomingMessage;
    reason: string;
    stage: string;
  }
  const publishDlq = async (items: DeadLetter[]) => {
    await Promise.all(items.map((d) => sendToDlq(publisher, t.dlq, d.m, d.reason, d.stage)));
    for (const d of items) log.warn({ partition: d.m.partition, offset: d.m.offset, stage: d.stage, reason: d.reason }, 'record sent to the DLQ');
  };

  const processBatch = async (batch: Batch, control: BatchControl) => {
    const started = performance.now();
    const partition = batch.partition;
    const epoch = epochs.get(partition);
    if (epoch === undefined) {
      // Assignment hooks run before batches; a partition without an epoch was fenced out
      // and is about to be revoked. Back off instead of re-reading it in a tight loop.
      log.warn({ partition }, 'batch for a partition this process does not own; skipped');
      await new Promise((r) => setTimeout(r, 500));
      await control.heartbeat().catch(() => undefined);
      return;
    }

    const dead: DeadLetter[] = [];
    const decoded: { m: IncomingMessage; event: NormalisedEvent }[] = [];
    for (const m of batch.messages) {
      const r = decode(m);
      if ('reason' in r) dead.push({ m, reason: r.reason, stage: 'engine.decode' });
      else decoded.push({ m, event: r.event });
    }

    const userIds = [...new Set(decoded.map((d) => d.event.userId))];
    const working = new Map<string, Working<S>>();
    const misses: string[] = [];
    for (const id of userIds) {
      const c = cache.get(id);
      cache.delete(id);
      if (c && c.partition === partition && c.epoch === epoch) {
        working.set(id, { state: c.state, fence: c.offset === null ? null : BigInt(c.offset), dirty: false, offset: '', erased: false, timers: [] });
      } else misses.push(id);
    }
    const stored = await deps.state.load(misses);
    const unreadable = new Map<string, string>();
    for (const id of misses) {
      const s = stored.get(id);
      let state: S | null = null;
      try {
        state = s?.state ? deps.codec.deserialize(s.state) : null;
      } catch (err) {
        // A corrupt record must not stop the partition: its user's events go to the DLQ.
        unreadable.set(id, errorMessage(err));
      }
      working.set(id, {
        state,
        fence: s && s.partition === partition && s.offset !== null ? BigInt(s.offset) : null,
        dirty: false,
        offset: '',
        erased: false,
        timers: [],
      });
    }

    const sends: SendCommand[] = [];
    const emitted: NormalisedEvent[] = [];
    let applied = 0;
    let skipped = 0;
    let ignored = 0;
    const fires = new Map<string, number>();
    const evaluations = new Map<string, number>();
    const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
    for (const { m, event } of decoded) {
      const w = working.get(event.userId)!;
      const bad = unreadable.get(event.userId);
      if (bad !== undefined) {
        dead.push({ m, reason: `stored user state unreadable: ${bad}`, stage: 'engine.state' });
        continue;
      }
      if (w.fence !== null && BigInt(m.offset) <= w.fence) {
        skipped++;
        continue;
      }
      let result: CoreResult<S>;
      try {
        // The engine's clock for an event is the event's own time (a timer's due time for
        // timer.fired): replays and `simulate` then decide exactly as the first run did.
        result = deps.core.apply(w.state, event, event.ts);
      } catch (err) {
        dead.push({ m, reason: `engine core failed: ${errorMessage(err)}`, stage: 'engine.apply' });
        continue;
      }
      if (result.status === 'invalid') {
        dead.push({ m, reason: `invalid engine event: ${result.reason ?? 'not understood'}`, stage: 'engine.apply' });
        continue;
      }
      if (result.status === 'duplicate') {
        skipped++;
        continue;
      }
      // Nothing changed (an emitted segment event coming back, a timer for a user who is
      // gone): no state write, and a replay finds the same.
      if (result.status === 'ignored' || result.status === 'no-user') {
        ignored++;
        continue;
      }
      applied++;
      w.dirty = true;
      w.offset = m.offset;
      if (result.state === null && w.state !== null) {
        // Erased: timers scheduled earlier in this batch for the user are dropped too.
        w.erased = true;
        w.timers = [];
      }
      w.state = result.state;
      for (const s of result.sends) {
        sends.push(s);
        bump(fires, s.ruleId);
      }
      if (deps.evaluatedRules) for (const r of deps.evaluatedRules(event)) bump(evaluations, r);
      for (const x of result.timers) w.timers.push(x);
      emitted.push(...result.emitted);
    }

    if (!control.isActive()) return;
    const timers: Timer[] = [];
    for (const w of working.values()) for (const x of w.timers) timers.push(x);
    const sendRecords: OutgoingMessage[] = sends.map((s) => ({ key: s.userId, ...encodeWithHeader(sendCodec, s) }));
    const eventRecords: OutgoingMessage[] = emitted.map((e) => ({ key: e.userId, ...encodeWithHeader(eventCodec, e) }));
    // Sends, emitted events and timers are all durable before the state that records them
    // is written. The timer script also checks the partition's epoch: a stale owner stops
    // there, before any state write.
    const durable = Promise.all([
      publishDlq(dead),
      publisher.publish(t.sends, sendRecords),
      publisher.publish(t.events, eventRecords),
      deps.timers.schedule(partition, epoch, timers),
    ]);
    // The states are serialised while the records above are on their way; they are written
    // only once those are durable.
    const writes: UserWrite[] = [];
    for (const [userId, w] of working) {
      if (!w.dirty) continue;
      const timerIds = w.timers.map((x) => x.id);
      if (w.erased && w.state !== null) writes.push({ userId, state: null, offset: w.offset, timerIds: [] });
      writes.push({ userId, state: w.state === null ? null : deps.codec.serialize(w.state), offset: w.offset, timerIds });
    }
    // Observed by the await below; this only keeps a failure during serialisation from leaving it unobserved.
    durable.catch(() => undefined);
    const [, , , scheduled] = await durable;
    if (!scheduled) throw new FencedOut(`partition ${partition}: epoch ${epoch} is no longer current`, epoch);
    if (!control.isActive()) return;

    const written = await deps.state.write(partition, epoch, writes);
    if (written.refused.length > 0) throw new FencedOut(`partition ${partition}: ${written.refused.length} user writes refused under epoch ${epoch}`, epoch);
    if (written.erasedTimers.length > 0) await deps.timers.remove(partition, epoch, written.erasedTimers);
    if (cacheMax > 0) {
      for (const [userId, w] of working) {
        if (unreadable.has(userId)) continue;
        cache.set(userId, { state: w.state, partition, epoch, offset: w.dirty ? w.offset : w.fence === null ? null : w.fence.toString() });
      }
      for (const k of cache.keys()) {
        if (cache.size <= cacheMax) break;
        cache.delete(k);
      }
    }

    const last = batch.messages[batch.messages.length - 1]!;
    const next = (BigInt(last.offset) + 1n).toString();
    if (!control.isActive()) return;
    await control.commit(next);
    committed.set(partition, next);

    lastBatchAt = clock();
    // Counted once committed, so a replayed batch is not counted twice.
    metrics.events.inc({ outcome: 'applied' }, applied);
    if (dead.length) metrics.events.inc({ outcome: 'dlq' }, dead.length);
    for (const d of dead) metrics.dlq.inc({ stage: d.stage });
    for (const [rule, n] of fires) metrics.fires.inc({ rule }, n);
    for (const [rule, n] of evaluations) metrics.evaluations.inc({ rule }, n);
    if (skipped) metrics.events.inc({ outcome: 'replay_skipped' }, skipped);
    if (ignored) metrics.events.inc({ outcome: 'ignored' }, ignored);
    metrics.sends.inc(sends.length);
    metrics.timersScheduled.inc(timers.length);
    metrics.batchSize.observe(batch.messages.length);
    metrics.batchSeconds.observe((performance.now() - started) / 1000);
  };

  const eachBatch = async (batch: Batch, control: BatchControl) => {
    try {
      await processBatch(batch, control);
      lastError = null;
    } catch (err) {
      if (err instanceof FencedOut) {
        metrics.fenced.inc();
        log.warn({ partition: batch.partition, err: err.message }, 'a newer owner holds the partition; batch abandoned');
        loseOwnership(batch.partition, err.epoch);
        return;
      }
      lastError = errorMessage(err);
      log.error({ partition: batch.partition, err: lastError }, 'batch failed; it will be retried');
      throw err;
    }
  };

  const measureLag = async () => {
    const owned = [...epochs.keys()];
    if (owned.length === 0) return;
    const ends = await deps.bus.endOffsets(t.events);
    const fromBroker = (deps.bus as Partial<{ committedOffsets(g: string, topic: string): Promise<Map<number, string>> }>).committedOffsets;
    const commits = fromBroker ? await fromBroker.call(deps.bus, config.groupId, t.events) : committed;
    for (const p of owned) {
      const end = ends.get(p);
      const c = commits.get(p) ?? committed.get(p);
      if (end === undefined) continue;
      const lag = c === undefined || Number(c) < 0 ? Number(end) : Number(end) - Number(c);
      metrics.lag.set({ partition: String(p) }, Math.max(0, lag));
    }
  };

  return {
    name: 'engine',
    async start() {
      if (config.ensureTopics !== false) await deps.bus.ensureTopics(internalTopicSpecs(t, config.partitions));
      consumer = deps.bus.consumer({
        groupId: config.groupId,
        topics: [t.events],
        fromBeginning: true,
        concurrency: config.concurrency ?? config.partitions,
        onAssigned,
        onRevoked,
        eachBatch,
      });
      await consumer.start();
      running = true;
      const every = config.lagIntervalMs ?? 5000;
      lagTimer = setInterval(() => {
        measureLag().catch((err: unknown) => log.debug({ err: errorMessage(err) }, 'lag measurement failed'));
      }, every);
      lagTimer.unref();
      log.info({ groupId: config.groupId, ruleSetVersion: version }, 'engine started');
    },
    async stop() {
      if (!running) return;
      running = false;
      if (lagTimer) clearInterval(lagTimer);
      lagTimer = null;
      await consumer?.stop();
      consumer = null;
      for (const [p, poller] of [...pollers]) {
        pollers.delete(p);
        await poller.stop();
      }
      epochs.clear();
      log.info('engine stopped');
    },
    health() {
      return {
        ok: running && lastError === null,
        details: { ruleSetVersion: version, partitions: [...epochs.keys()].sort((a, b) => a - b), lastBatchAt, lastError },
      };
    },
    setRuleSetVersion,
    ruleSetVersion: () => version,
    ownedPartitions: () => [...epochs.keys()].sort((a, b) => a - b),
  };
}
