// The engine process: a consumer group on `<prefix>.events`, one writer per partition, on
// the shared consume loop. Per batch, in phases: decode (bad records -> DLQ), load the
// batch's users (one round trip), apply the events in order through the core, publish
// sends and emitted events, schedule timers and file changed contacts for the staff lookup,
// THEN write state (fenced), THEN wait until
// those writes are on Redis's disk, THEN commit. A crash anywhere before the commit
// replays the batch: the per-user offset fence skips what was already applied, and what
// was published again carries the same ids (sendId claimed once by delivery). A Redis
// crash after the commit loses nothing the commit relied on.
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { Logger } from 'pino';
import type { Bus, IncomingMessage, OutgoingMessage, TopicPartition } from '../../platform/bus.ts';
import { internalTopicSpecs } from '../../platform/bus.ts';
import {
  createConsumeLoop,
  RecordRejected,
  stalledHealth,
  type BatchRetry,
  type BatchScope,
  type BatchVerdict,
  type ConsumeLoop,
  type ConsumedRecord,
} from '../../platform/consume.ts';
import {
  NormalisedEventSchema,
  reservedTypeRefusal,
  SCHEMA_ID_HEADER,
  topics as topicNames,
  type NormalisedEvent,
  type SendCommand,
} from '../../platform/contracts.ts';
import { encodeWithHeader, eventCodec, sendCodec } from '../../platform/avro.ts';
import { errorMessage } from '../../platform/errors.ts';
import { jsonDepthExceeds } from '../../platform/json-depth.ts';
import { Counter, Gauge, type Registry } from '../../platform/metrics.ts';
import type { Durable } from '../../platform/redis.ts';
import type { Service } from '../../platform/shutdown.ts';
import type {
  ContactChange,
  ContactIndex,
  StateStore,
  Timer,
  TimerStore,
  UserWrite,
} from './stores.ts';
import { contactChange } from './contacts.ts';
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
  /** How a failing batch is retried before its partition stops (defaults: the consume loop's). */
  retry?: BatchRetry;
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
  /**
   * The staff lookup's index of users by contact (./contacts.ts). With `contactTerms` (the
   * terms a state files its user under), each batch files the users whose terms changed,
   * fenced like the timers, and stores the terms beside the state.
   */
  contacts?: ContactIndex;
  contactTerms?: (state: S) => string;
  /**
   * Awaited before a batch is applied, with its events: brings what the rule set is made of up
   * to date for them (the campaigns view, for members of a campaign it does not know yet).
   */
  prepare?: (events: readonly NormalisedEvent[]) => Promise<void>;
  /**
   * Resolves once the state and timer writes made so far survive a crash of their store
   * (Redis: `RedisDeps.durable`); awaited before each commit. Absent: the store's
   * acknowledgement is enough (in-memory stores).
   */
  durable?: Durable;
  /**
   * How long batches of a fenced-out partition may keep coming before this process takes the
   * partition again under a new epoch (default 90 s: beyond a rebalance, so the group still
   * assigning it here means no other member holds it). Fencing hands a partition on during a
   * rebalance; batches that keep coming long after mean the ownership record was lost (a store
   * wiped or restored from an older copy) and the partition would otherwise stall for good.
   */
  reclaimFencedAfterMs?: number;
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
  /** The contact terms the user is filed under (null: never filed). */
  filed: string | null;
  /** The terms of the state this batch writes, once computed. */
  terms: string | null;
}

// Compiled once; it gives the reason when the check below refuses an event.
const eventCheck = TypeCompiler.Compile(NormalisedEventSchema);

// TypeBox's record test: Date and byte arrays are not records.
const isJsonObject = (v: unknown): boolean =>
  typeof v === 'object' &&
  v !== null &&
  !Array.isArray(v) &&
  !(v instanceof Date) &&
  !(v instanceof Uint8Array);
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

/**
 * Levels of objects and arrays an event may nest for the engine to act on it (the event
 * object is level 1, its properties, traits and context level 2). Ingest and CDC let in 32;
 * the margin is for what the engine wraps around an event (a timer carries its trigger in
 * its properties). Deeper data would be merged into a state and copied into sends that every
 * later read and write has to walk.
 */
export const ENGINE_MAX_JSON_DEPTH = 64;

/** The DLQ stage of events the engine cannot encode what it makes of them (too deep, or a send or event the codec refuses). */
export const ENCODE_STAGE = 'engine.encode';

function depthRefusal(event: NormalisedEvent): string | null {
  for (const part of ['properties', 'traits', 'context'] as const)
    if (jsonDepthExceeds(event[part], ENGINE_MAX_JSON_DEPTH - 1))
      return `too deep: the event's ${part} nest objects and arrays deeper than ${ENGINE_MAX_JSON_DEPTH} levels, more than the engine stores and sends`;
  return null;
}

/**
 * An event that failed after the core had begun to fold it into its user's state (in
 * place): its sends or emitted events cannot be encoded, or the core threw. The batch is
 * applied again from the stored states, with this record dead-lettered.
 */
class PoisonedEvent extends Error {
  constructor(
    readonly record: IncomingMessage,
    readonly stage: string,
    readonly reason: string,
  ) {
    super(reason);
  }
}

/** Dead letters and skips of one pass over a batch, handed to the consume loop only once a pass succeeds. */
interface Outcomes {
  deadLetter(message: IncomingMessage, stage: string, reason: string): void;
  skip(message: IncomingMessage, reason: string): void;
}

function bufferedOutcomes(): Outcomes & { flush(scope: BatchScope): void } {
  const letters: [IncomingMessage, string, string][] = [];
  const skips: [IncomingMessage, string][] = [];
  return {
    deadLetter: (message, stage, reason) => letters.push([message, stage, reason]),
    skip: (message, reason) => skips.push([message, reason]),
    flush(scope) {
      for (const [m, stage, reason] of letters) scope.deadLetter(m, stage, reason);
      for (const [m, reason] of skips) scope.skip(m, reason);
    },
  };
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
    evaluations: new Counter({
      name: 'lifecycle_engine_rule_evaluations_total',
      help: 'Rule evaluations, per rule.',
      labelNames: ['rule'],
      registers: [registry],
    }),
    fires: new Counter({
      name: 'lifecycle_engine_rule_fires_total',
      help: 'Send commands produced, per rule (holdouts included).',
      labelNames: ['rule'],
      registers: [registry],
    }),
    sends: new Counter({
      name: 'lifecycle_engine_sends_total',
      help: 'Send commands published.',
      registers: [registry],
    }),
    timersScheduled: new Counter({
      name: 'lifecycle_engine_timers_scheduled_total',
      help: 'Timers scheduled.',
      registers: [registry],
    }),
    timersFired: new Counter({
      name: 'lifecycle_engine_timers_fired_total',
      help: 'Timers fired (published as timer.fired events).',
      registers: [registry],
    }),
    fenced: new Counter({
      name: 'lifecycle_engine_fenced_total',
      help: 'Batches abandoned because a newer owner holds the partition.',
      registers: [registry],
    }),
    lag: new Gauge({
      name: 'lifecycle_engine_consumer_lag',
      help: 'End offset minus committed offset, per owned partition.',
      labelNames: ['partition'],
      registers: [registry],
    }),
    ruleSet: new Gauge({
      name: 'lifecycle_engine_rule_set_info',
      help: 'The rule set version in force (value 1).',
      labelNames: ['version'],
      registers: [registry],
    }),
    owned: new Gauge({
      name: 'lifecycle_engine_partitions_owned',
      help: 'Partitions this process owns.',
      registers: [registry],
    }),
  };
}

export function createEngineService<S>(
  config: EngineServiceConfig,
  deps: EngineServiceDeps<S>,
): EngineService {
  const topic = topicNames(config.topicPrefix);
  const log = deps.logger.child({ component: 'engine', topic: topic.events });
  const metrics = engineMetrics(deps.registry);
  const clock = deps.clock ?? Date.now;
  const writesDurable = deps.durable ?? (async () => {});
  const publisher = deps.bus.publisher();
  const epochs = new Map<number, number>();
  const pollers = new Map<number, TimerPoller>();
  // Partitions this process lost by fencing but is still handed batches of: since when.
  const unownedSince = new Map<number, number>();
  const reclaimAfterMs = deps.reclaimFencedAfterMs ?? 90_000;
  let consumer: ConsumeLoop | null = null;
  let lagTimer: NodeJS.Timeout | null = null;
  let running = false;
  let version: string | null = null;
  let lastBatchAt: number | null = null;
  // The partition owner is the only writer of its users, so the state it last wrote under
  // its current epoch is the stored state: a hit skips the load and the parse. Entries
  // leave the cache while their batch runs and come back only after the write succeeded.
  const cache = new Map<
    string,
    {
      state: S | null;
      partition: number;
      epoch: number;
      offset: string | null;
      filed: string | null;
    }
  >();
  const contacts =
    deps.contacts && deps.contactTerms
      ? { index: deps.contacts, termsOf: deps.contactTerms }
      : null;
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
        eventsTopic: topic.events,
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
      if (tp.topic !== topic.events) continue;
      await pollers.get(tp.partition)?.stop();
      unownedSince.delete(tp.partition);
      const epoch = await deps.state.acquire(tp.partition);
      // An epoch lost in a store crash would be handed out again, to a second owner.
      await writesDurable();
      epochs.set(tp.partition, epoch);
      startPoller(tp.partition, epoch);
      log.info({ partition: tp.partition, epoch }, 'partition assigned');
    }
    metrics.owned.set(epochs.size);
  };

  const onRevoked = async (tps: TopicPartition[]) => {
    for (const tp of tps) {
      if (tp.topic !== topic.events) continue;
      const poller = pollers.get(tp.partition);
      pollers.delete(tp.partition);
      epochs.delete(tp.partition);
      unownedSince.delete(tp.partition);
      metrics.lag.remove({ partition: String(tp.partition) });
      await poller?.stop();
      log.info({ partition: tp.partition }, 'partition revoked');
    }
    metrics.owned.set(epochs.size);
  };

  // Phase 1, decode (the consume loop dead-letters what this refuses).
  const decode = (m: IncomingMessage): NormalisedEvent => {
    if (m.value === null) throw new RecordRejected('empty record value');
    let event: NormalisedEvent;
    try {
      event = eventCodec.decode(m.value, m.headers[SCHEMA_ID_HEADER]);
    } catch (err) {
      throw new RecordRejected(`undecodable event: ${errorMessage(err)}`);
    }
    if (!isWellFormedEvent(event)) {
      const first = eventCheck.Errors(event).First();
      throw new RecordRejected(
        `invalid event: ${first ? `${first.path || '/'} ${first.message}` : 'schema mismatch'}`,
      );
    }
    // Per-user order and the single writer rely on key = userId.
    if (m.key !== event.userId)
      throw new RecordRejected(
        `record key ${JSON.stringify(m.key)} does not match the event's userId`,
      );
    // A reserved type is acted on only from the process that makes it (platform/contracts.ts).
    const refusal = reservedTypeRefusal(event);
    if (refusal !== null) throw new RecordRejected(refusal);
    return event;
  };

  // Phase 2, load: the batch's users from this owner's cache, the rest in one round trip.
  // Returns the users whose stored state cannot be read, with why.
  const loadUsers = async (
    records: ConsumedRecord<NormalisedEvent>[],
    partition: number,
    epoch: number,
    working: Map<string, Working<S>>,
  ) => {
    const misses: string[] = [];
    for (const { value: event } of records) {
      const userId = event.userId;
      if (working.has(userId)) continue;
      const cached = cache.get(userId);
      cache.delete(userId);
      if (cached && cached.partition === partition && cached.epoch === epoch) {
        const fence = cached.offset === null ? null : BigInt(cached.offset);
        working.set(userId, {
          state: cached.state,
          fence,
          dirty: false,
          offset: '',
          erased: false,
          timers: [],
          filed: cached.filed,
          terms: null,
        });
      } else {
        // A placeholder keeps the user's place (and dedupes misses) until the load answers.
        working.set(userId, {
          state: null,
          fence: null,
          dirty: false,
          offset: '',
          erased: false,
          timers: [],
          filed: null,
          terms: null,
        });
        misses.push(userId);
      }
    }
    const stored = await deps.state.load(misses);
    const unreadable = new Map<string, string>();
    for (const userId of misses) {
      const record = stored.get(userId);
      const user = working.get(userId)!;
      try {
        user.state = record?.state ? deps.codec.deserialize(record.state) : null;
      } catch (err) {
        // A corrupt record must not stop the partition: its user's events go to the DLQ.
        unreadable.set(userId, errorMessage(err));
      }
      user.fence =
        record && record.partition === partition && record.offset !== null
          ? BigInt(record.offset)
          : null;
      user.filed = record?.contacts ?? null;
    }
    return unreadable;
  };

  // Phase 3, apply: the events in offset order through the core, each one's sends and
  // emitted events encoded at once, so an event whose effects cannot be written is known
  // before anything is published (PoisonedEvent).
  const applyEvents = (
    records: ConsumedRecord<NormalisedEvent>[],
    working: Map<string, Working<S>>,
    unreadable: Map<string, string>,
    poisoned: ReadonlyMap<IncomingMessage, { stage: string; reason: string }>,
    scope: Outcomes,
  ) => {
    const effects = {
      sends: [] as SendCommand[],
      sendRecords: [] as OutgoingMessage[],
      eventRecords: [] as OutgoingMessage[],
      applied: 0,
      fires: new Map<string, number>(),
      evaluations: new Map<string, number>(),
    };
    const bump = (counts: Map<string, number>, key: string) =>
      counts.set(key, (counts.get(key) ?? 0) + 1);
    for (const { message, value: event } of records) {
      const user = working.get(event.userId)!;
      const unreadableWhy = unreadable.get(event.userId);
      if (unreadableWhy !== undefined) {
        scope.deadLetter(message, 'engine.state', `stored user state unreadable: ${unreadableWhy}`);
        continue;
      }
      if (user.fence !== null && BigInt(message.offset) <= user.fence) {
        scope.skip(message, 'replay');
        continue;
      }
      const poison = poisoned.get(message);
      if (poison !== undefined) {
        scope.deadLetter(message, poison.stage, poison.reason);
        continue;
      }
      const tooDeep = depthRefusal(event);
      if (tooDeep !== null) {
        scope.deadLetter(message, ENCODE_STAGE, tooDeep);
        continue;
      }
      let result: CoreResult<S>;
      try {
        // The engine's clock for an event is the event's own time (a timer's due time for
        // timer.fired): replays and `simulate` then decide exactly as the first run did.
        result = deps.core.apply(user.state, event, event.ts);
      } catch (err) {
        throw new PoisonedEvent(
          message,
          'engine.apply',
          `engine core failed: ${errorMessage(err)}`,
        );
      }
      if (result.status === 'invalid') {
        scope.deadLetter(
          message,
          'engine.apply',
          `invalid engine event: ${result.reason ?? 'not understood'}`,
        );
        continue;
      }
      if (result.status === 'duplicate') {
        scope.skip(message, 'replay');
        continue;
      }
      // Nothing changed (an emitted segment event coming back, a timer for a user who is
      // gone): no state write, and a replay finds the same.
      if (result.status === 'ignored' || result.status === 'no-user') {
        scope.skip(message, 'ignored');
        continue;
      }
      try {
        for (const send of result.sends)
          effects.sendRecords.push({ key: send.userId, ...encodeWithHeader(sendCodec, send) });
        for (const e of result.emitted)
          effects.eventRecords.push({ key: e.userId, ...encodeWithHeader(eventCodec, e) });
      } catch (err) {
        throw new PoisonedEvent(
          message,
          ENCODE_STAGE,
          `what the engine made of the event cannot be encoded: ${errorMessage(err)}`,
        );
      }
      effects.applied++;
      user.dirty = true;
      user.offset = message.offset;
      if (result.state === null && user.state !== null) {
        // Erased: timers scheduled earlier in this batch for the user are dropped too.
        user.erased = true;
        user.timers = [];
      }
      user.state = result.state;
      for (const send of result.sends) {
        effects.sends.push(send);
        bump(effects.fires, send.ruleId);
      }
      if (deps.evaluatedRules)
        for (const ruleId of deps.evaluatedRules(event)) bump(effects.evaluations, ruleId);
      for (const timer of result.timers) user.timers.push(timer);
    }
    return effects;
  };

  // Phase 4, publish and schedule: sends, emitted events, timers and contact changes are all
  // durable before the state that records them is written. The timer and contact scripts
  // also check the partition's epoch: a stale owner stops there, before any state write. The
  // states are serialised while the records are on their way.
  const publishEffects = async (
    partition: number,
    epoch: number,
    effects: ReturnType<typeof applyEvents>,
    working: Map<string, Working<S>>,
  ) => {
    const timers: Timer[] = [];
    for (const user of working.values()) for (const timer of user.timers) timers.push(timer);
    // Only users whose contact terms changed cost an index write; the terms are compared
    // with what was filed (stored beside the state), so a replay finds the same changes.
    const filings: ContactChange[] = [];
    if (contacts)
      for (const [userId, user] of working) {
        if (!user.dirty) continue;
        user.terms = user.state === null ? '' : contacts.termsOf(user.state);
        const change = contactChange(userId, user.filed, user.terms);
        if (change) filings.push(change);
      }
    const durable = Promise.all([
      publisher.publish(topic.sends, effects.sendRecords),
      publisher.publish(topic.events, effects.eventRecords),
      deps.timers.schedule(partition, epoch, timers),
      filings.length > 0 ? contacts!.index.update(partition, epoch, filings) : true,
    ]);
    const writes: UserWrite[] = [];
    for (const [userId, user] of working) {
      if (!user.dirty) continue;
      const timerIds = user.timers.map((timer) => timer.id);
      if (user.erased && user.state !== null)
        writes.push({ userId, state: null, offset: user.offset, timerIds: [] });
      writes.push({
        userId,
        state: user.state === null ? null : deps.codec.serialize(user.state),
        offset: user.offset,
        timerIds,
        ...(user.terms !== null ? { contacts: user.terms } : {}),
      });
    }
    // Observed by the await below; this only keeps a failure during serialisation from leaving it unobserved.
    durable.catch(() => undefined);
    const [, , scheduled, filed] = await durable;
    if (!scheduled || !filed)
      throw new FencedOut(`partition ${partition}: epoch ${epoch} is no longer current`, epoch);
    return { writes, timersScheduled: timers.length };
  };

  // Phase 5, write: the users' state, fenced; then they return to the cache.
  const writeStates = async (
    partition: number,
    epoch: number,
    writes: UserWrite[],
    working: Map<string, Working<S>>,
    unreadable: Map<string, string>,
  ) => {
    const written = await deps.state.write(partition, epoch, writes);
    if (written.refused.length > 0)
      throw new FencedOut(
        `partition ${partition}: ${written.refused.length} user writes refused under epoch ${epoch}`,
        epoch,
      );
    if (written.erasedTimers.length > 0)
      await deps.timers.remove(partition, epoch, written.erasedTimers);
    if (cacheMax <= 0) return;
    for (const [userId, user] of working) {
      if (unreadable.has(userId)) continue;
      cache.set(userId, {
        state: user.state,
        partition,
        epoch,
        offset: user.dirty ? user.offset : user.fence === null ? null : user.fence.toString(),
        filed: user.terms ?? user.filed,
      });
    }
    for (const userId of cache.keys()) {
      if (cache.size <= cacheMax) break;
      cache.delete(userId);
    }
  };

  // One batch: load, apply, publish and schedule, write, make the writes durable. The
  // consume loop decoded it before (phase 1) and commits it after (phase 7), once the dead
  // letters are durable too.
  const handleBatch = async (
    records: ConsumedRecord<NormalisedEvent>[],
    scope: BatchScope,
  ): Promise<BatchVerdict> => {
    const { partition } = scope;
    let epoch = epochs.get(partition);
    if (epoch === undefined) {
      // Assignment hooks run before batches; a partition without an epoch was fenced out
      // and is about to be revoked. Back off instead of re-reading it in a tight loop.
      const since = unownedSince.get(partition) ?? clock();
      unownedSince.set(partition, since);
      if (clock() - since < reclaimAfterMs) {
        log.warn({ partition }, 'batch for a partition this process does not own; skipped');
        await new Promise((resolve) => setTimeout(resolve, 500));
        await scope.heartbeat().catch(() => undefined);
        return 'abandon';
      }
      epoch = await deps.state.acquire(partition);
      await writesDurable();
      unownedSince.delete(partition);
      epochs.set(partition, epoch);
      startPoller(partition, epoch);
      metrics.owned.set(epochs.size);
      log.error(
        { partition, epoch, fencedForMs: clock() - since },
        'partition still assigned here long after it was fenced out (was its ownership record lost?): taken again under a new epoch',
      );
    }
    try {
      if (deps.prepare) await deps.prepare(records.map((r) => r.value));
      // Events that failed halfway through the core or whose effects cannot be encoded: each
      // found sends the batch through load and apply again (the core changes states in
      // place), with it dead-lettered this time.
      const poisoned = new Map<IncomingMessage, { stage: string; reason: string }>();
      let working: Map<string, Working<S>>;
      let unreadable: Map<string, string>;
      let effects: ReturnType<typeof applyEvents>;
      for (;;) {
        working = new Map<string, Working<S>>();
        unreadable = await loadUsers(records, partition, epoch, working);
        const outcomes = bufferedOutcomes();
        try {
          effects = applyEvents(records, working, unreadable, poisoned, outcomes);
        } catch (err) {
          if (!(err instanceof PoisonedEvent)) throw err;
          poisoned.set(err.record, { stage: err.stage, reason: err.reason });
          log.warn(
            { partition, offset: err.record.offset, stage: err.stage, reason: err.reason },
            'event cannot be applied; applying the batch again without it',
          );
          continue;
        }
        outcomes.flush(scope);
        break;
      }
      if (!scope.isActive()) return 'abandon';
      const { writes, timersScheduled } = await publishEffects(partition, epoch, effects, working);
      if (!scope.isActive()) return 'abandon';
      await writeStates(partition, epoch, writes, working, unreadable);
      // Phase 6: the commit below tells Kafka never to hand these events out again, so the
      // state, rule history and timers they produced must outlive a store crash first.
      await writesDurable();
      lastBatchAt = clock();
      // Counted before the commit: a batch that fails between here and the commit is read
      // again, but its sends were published and count as such.
      for (const [ruleId, n] of effects.fires) metrics.fires.inc({ rule: ruleId }, n);
      for (const [ruleId, n] of effects.evaluations) metrics.evaluations.inc({ rule: ruleId }, n);
      metrics.sends.inc(effects.sends.length);
      metrics.timersScheduled.inc(timersScheduled);
      return 'commit';
    } catch (err) {
      if (!(err instanceof FencedOut)) throw err;
      metrics.fenced.inc();
      log.warn(
        { partition, err: err.message },
        'a newer owner holds the partition; batch abandoned',
      );
      loseOwnership(partition, err.epoch);
      return 'abandon';
    }
  };

  const measureLag = async () => {
    const owned = [...epochs.keys()];
    if (owned.length === 0) return;
    const ends = await deps.bus.endOffsets(topic.events);
    const fromBroker = (
      deps.bus as Partial<{
        committedOffsets(g: string, topic: string): Promise<Map<number, string>>;
      }>
    ).committedOffsets;
    const committed = consumer?.committedOffsets(topic.events) ?? new Map<number, string>();
    const commits = fromBroker
      ? await fromBroker.call(deps.bus, config.groupId, topic.events)
      : committed;
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
      if (config.ensureTopics !== false)
        await deps.bus.ensureTopics(internalTopicSpecs(topic, config.partitions));
      consumer = createConsumeLoop(
        {
          name: 'engine',
          groupId: config.groupId,
          topics: [topic.events],
          fromBeginning: true,
          concurrency: config.concurrency ?? config.partitions,
          dlqTopic: topic.dlq,
          decode,
          handle: handleBatch,
          onAssigned,
          onRevoked,
          ...config.retry,
        },
        { bus: deps.bus, publisher, logger: deps.logger, registry: deps.registry },
      );
      await consumer.start();
      running = true;
      const every = config.lagIntervalMs ?? 5000;
      lagTimer = setInterval(() => {
        measureLag().catch((err: unknown) =>
          log.debug({ err: errorMessage(err) }, 'lag measurement failed'),
        );
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
      const loop = stalledHealth([consumer]);
      return {
        ok: running && (consumer?.lastError() ?? null) === null && loop.ok,
        details: {
          ruleSetVersion: version,
          partitions: [...epochs.keys()].sort((a, b) => a - b),
          fencedButAssigned: [...unownedSince.keys()].sort((a, b) => a - b),
          lastBatchAt,
          lastError: consumer?.lastError() ?? null,
          stalled: loop.stalled,
        },
      };
    },
    setRuleSetVersion,
    ruleSetVersion: () => version,
    ownedPartitions: () => [...epochs.keys()].sort((a, b) => a - b),
  };
}
