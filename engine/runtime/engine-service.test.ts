// The engine service on the in-memory bus and stores (the embedded wiring): the batch
// pipeline, the DLQ, delayed triggers, erasure, redelivery without duplicate sends, and
// the per-partition fence.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { InMemoryBus } from '../../platform/bus.ts';
import {
  topics,
  DlqHeaders,
  NormalisedEventSchema,
  SCHEMA_ID_HEADER,
  type NormalisedEvent,
  type SendCommand,
} from '../../platform/contracts.ts';
import { encodeWithHeader, eventCodec, sendCodec } from '../../platform/avro.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import { silentLogger } from '../../platform/logger.ts';
import { loadRuleSet, type RuleSet } from '../../rules/index.ts';
import { createMemoryEngine, wireCore } from './wiring.ts';
import { createEngineService, isWellFormedEvent } from './engine-service.ts';
import { MemoryStores } from './stores.ts';
import { generateEvents } from '../../test/support/engine-events.ts';

const RULES = new URL('../../test/support/engine-rules', import.meta.url).pathname;
const T = topics('mem');
const config = {
  topicPrefix: 'mem',
  groupId: 'engine',
  timerPollMs: 20,
  partitions: 4,
  ensureTopics: true,
};

async function ruleSet(): Promise<RuleSet> {
  const r = await loadRuleSet(RULES);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.ruleSet;
}

const record = (e: NormalisedEvent) => ({ key: e.userId, ...encodeWithHeader(eventCodec, e) });
const sendsOf = (bus: InMemoryBus): SendCommand[] =>
  bus.messages(T.sends).map((m) => sendCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]));

async function until(cond: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

const ev = (
  id: string,
  userId: string,
  type: string,
  ts: number,
  extra: Partial<NormalisedEvent> = {},
): NormalisedEvent => ({
  id,
  userId,
  type,
  ts,
  receivedAt: ts,
  source: 'test',
  properties: {},
  ...extra,
});

describe('engine service (in-memory wiring)', () => {
  it('turns events into sends, fires delayed triggers, and routes bad records to the DLQ without stopping', async () => {
    const rs = await ruleSet();
    const bus = new InMemoryBus(4);
    const { service } = createMemoryEngine(config, {
      bus,
      ruleSet: () => rs,
      logger: silentLogger(),
      registry: createMetricsRegistry({ defaults: false }),
    });
    await service.start();
    const pub = bus.publisher();
    const now = Date.now();
    await pub.publish(T.events, [
      record(
        ev('e1', 'alice', 'user_registered', now - 1500, {
          traits: { email: 'a@example.com', plan: 'trial' },
        }),
      ),
      {
        key: 'alice',
        value: Buffer.from('not avro at all'),
        headers: { [SCHEMA_ID_HEADER]: eventCodec.schemaId },
      },
      { key: 'alice', value: eventCodec.encode({ ...ev('e2', 'alice', 'x', now), id: '' }) },
      record(ev('e3', 'alice', 'order_completed', now, { properties: { amount: 80 } })),
    ]);
    await until(() => sendsOf(bus).some((s) => s.ruleId === 'big-order'));
    const dlq = bus.messages(T.dlq);
    expect(dlq.map((m) => m.headers[DlqHeaders.reason])).toEqual([
      expect.stringMatching(/^undecodable event/),
      expect.stringMatching(/^invalid event: \/id/),
    ]);
    expect(dlq[0]!.headers[DlqHeaders.sourceTopic]).toBe(T.events);

    // The 2s delay was mostly over at publish time: the timer fires on the next polls.
    await until(() => sendsOf(bus).some((s) => s.ruleId === 'trial-nudge'), 5000);
    const nudge = sendsOf(bus).find((s) => s.ruleId === 'trial-nudge')!;
    expect(nudge.triggeredBy).toEqual({ eventId: 'e1', eventType: 'user_registered' });
    expect(nudge.createdAt).toBe(now - 1500 + 2000);
    expect(
      sendsOf(bus)
        .map((s) => s.ruleId)
        .sort(),
    ).toEqual(['big-order', 'trial-nudge', 'welcome']);
    expect(service.health()).toMatchObject({ ok: true, details: { ruleSetVersion: rs.version } });
    await service.stop();
  });

  it('produces the same sends, once each per sendId, when batches fail at any step and are redelivered', async () => {
    const rs = await ruleSet();
    const events = generateEvents({
      users: 6,
      events: 600,
      startTs: Date.now() - 60_000,
      seed: 7,
      deleteShare: 0.3,
    });
    const run = async (faults: boolean) => {
      const bus = new InMemoryBus(4);
      await bus.ensureTopics([{ topic: T.events, partitions: 4 }]);
      // Large parts at once (large batches), then the rest streamed (small batches of users
      // whose state the engine already holds).
      await bus.publisher().publish(T.events, events.slice(0, 300).map(record));
      const stores = new MemoryStores();
      // Few users, many events each: replays reach beyond the core's short duplicate window,
      // so only the per-user offset fence keeps counts right.
      // Crash points: before the timers, between timers and state, after the state write (before the commit).
      let n = 0;
      let calls = 0;
      const kinds = new Set<string>();
      const crash = (kind: string) => {
        calls++;
        if (!faults || n >= 60 || (calls % 5 !== 2 && calls % 7 !== 3)) return false;
        n++;
        kinds.add(kind);
        return true;
      };
      const faulty: MemoryStores = Object.create(stores) as MemoryStores;
      faulty.schedule = async (...a) => {
        if (crash('timers')) throw new Error('crash before timers');
        return stores.schedule(...a);
      };
      faulty.write = async (...a) => {
        if (crash('state')) throw new Error('crash before state');
        const r = await stores.write(...a);
        if (crash('commit')) throw new Error('crash before commit');
        return r;
      };
      const wiring = wireCore(() => rs);
      // Retried quickly: 60 injected crashes, each waiting for its retry.
      const service = createEngineService(
        { ...config, retry: { retryBackoff: { initialMs: 10, maxMs: 100 } } },
        {
          bus,
          state: faulty,
          timers: faulty,
          ...wiring,
          logger: silentLogger(),
          registry: createMetricsRegistry({ defaults: false }),
        },
      );
      await service.start();
      // A second large part once the first is committed: big batches of users the engine holds.
      const committedAll = () =>
        [0, 1, 2, 3].reduce(
          (a, p) =>
            a +
            bus.committedOffset(
              { groupId: 'engine', topics: [], eachBatch: async () => {} },
              { topic: T.events, partition: p },
            ),
          0,
        );
      await until(() => committedAll() >= 300, 15_000);
      await bus.publisher().publish(T.events, events.slice(300, 450).map(record));
      for (let i = 450; i < events.length; i += 10) {
        await bus.publisher().publish(T.events, events.slice(i, i + 10).map(record));
        await new Promise((r) => setTimeout(r, 3));
      }
      await until(async () => {
        const ends = await bus.endOffsets(T.events);
        let pending = 0;
        for (let p = 0; p < 4; p++) pending += await stores.pending(p);
        return (
          pending === 0 &&
          [...ends].every(
            ([p, end]) =>
              bus.committedOffset(
                { groupId: 'engine', topics: [], eachBatch: async () => {} },
                { topic: T.events, partition: p },
              ) === Number(end),
          )
        );
      }, 15_000);
      await service.stop();
      return { sends: sendsOf(bus), crashes: n, kinds };
    };
    const clean = await run(false);
    const replayed = await run(true);
    const byId = (xs: SendCommand[]) => new Map(xs.map((s) => [s.sendId, s]));
    expect(replayed.crashes).toBeGreaterThanOrEqual(5);
    expect([...replayed.kinds].sort()).toEqual(['commit', 'state', 'timers']);
    expect(clean.sends.length).toBeGreaterThan(20);
    expect(new Set(clean.sends.map((s) => s.sendId)).size).toBe(clean.sends.length);
    // Redelivered batches publish some sends again (same sendId, same content); nothing new, nothing missing.
    expect(replayed.sends.length).toBeGreaterThan(clean.sends.length);
    expect([...byId(replayed.sends).keys()].sort()).toEqual([...byId(clean.sends).keys()].sort());
    // A delayed send snapshots traits when its timer fires, which depends on the wall clock.
    const comparable = (x: SendCommand) =>
      x.ruleId === 'trial-nudge' ? { ...x, data: { ...x.data, user: null } } : x;
    for (const s of replayed.sends)
      expect(comparable(s)).toEqual(comparable(byId(clean.sends).get(s.sendId)!));
  }, 40_000);

  it('stops a partition whose state write keeps failing, and health names it', async () => {
    const rs = await ruleSet();
    const bus = new InMemoryBus(2);
    const stores = new MemoryStores();
    const broken: MemoryStores = Object.create(stores) as MemoryStores;
    broken.write = async () => {
      throw new Error('state store refused the write');
    };
    const service = createEngineService(
      {
        ...config,
        partitions: 2,
        retry: { maxBatchAttempts: 2, retryBackoff: { initialMs: 5, maxMs: 5 } },
      },
      {
        bus,
        state: broken,
        timers: broken,
        ...wireCore(() => rs),
        logger: silentLogger(),
        registry: createMetricsRegistry({ defaults: false }),
      },
    );
    await service.start();
    await bus
      .publisher()
      .publish(T.events, [
        record(ev('s1', 'erin', 'order_completed', Date.now(), { properties: { amount: 60 } })),
      ]);
    await until(() => !service.health().ok);
    const partition = bus.messages(T.events)[0]!.partition;
    expect(service.health().details).toMatchObject({
      stalled: [
        {
          topic: T.events,
          partition,
          offset: '0',
          attempts: 2,
          error: 'state store refused the write',
          reason: expect.stringMatching(/restart/) as string,
        },
      ],
    });
    await service.stop();
  });

  it('erases a deleted user and drops their pending timers', async () => {
    const rs = await ruleSet();
    const bus = new InMemoryBus(2);
    const { service, stores } = createMemoryEngine(config, {
      bus,
      ruleSet: () => rs,
      logger: silentLogger(),
      registry: createMetricsRegistry({ defaults: false }),
    });
    await service.start();
    const now = Date.now();
    await bus.publisher().publish(T.events, [
      record(
        ev('r1', 'bob', 'user_registered', now + 60_000, {
          traits: { email: 'b@example.com', plan: 'trial' },
        }),
      ),
    ]);
    await until(async () => (await stores.pending(0)) + (await stores.pending(1)) === 1);
    await bus
      .publisher()
      .publish(T.events, [record(ev('d1', 'bob', 'user_deleted', now, { source: 'cdc:app' }))]);
    await until(async () => (await stores.pending(0)) + (await stores.pending(1)) === 0);
    const loaded = (await stores.load(['bob'])).get('bob');
    expect(loaded?.state).toBeNull();
    await service.stop();
  });

  it('acts on reserved event types only from the process that makes them: forged ones from an app go to the DLQ and change nothing', async () => {
    const rs = await ruleSet();
    const bus = new InMemoryBus(1);
    const { service, stores } = createMemoryEngine(
      { ...config, partitions: 1 },
      {
        bus,
        ruleSet: () => rs,
        logger: silentLogger(),
        registry: createMetricsRegistry({ defaults: false }),
      },
    );
    await service.start();
    const now = Date.now();
    await bus.publisher().publish(T.events, [
      record(
        ev('r1', 'bob', 'user_registered', now, {
          traits: { email: 'b@example.com', plan: 'trial' },
        }),
      ),
    ]);
    await until(async () => (await stores.load(['bob'])).get('bob')?.state != null);
    const forged = [
      ev('f1', 'bob', 'user_deleted', now + 1, { source: 'http:web' }),
      ev('f2', 'bob', 'timer.fired', now + 2, {
        source: 'http:web',
        properties: { ruleId: 'trial-nudge', timerId: 'x' },
      }),
      ev('f3', 'bob', 'message_clicked', now + 3, {
        source: 'http:web',
        properties: { sendId: 's', ruleId: 'welcome' },
      }),
      ev('f4', 'bob', 'schedule.occurrence', now + 4, { source: 'cdc:app' }),
    ];
    await bus.publisher().publish(T.events, forged.map(record));
    await until(() => bus.messages(T.dlq).length === forged.length);
    expect(bus.messages(T.dlq).map((m) => m.headers[DlqHeaders.reason])).toEqual([
      'reserved event type "user_deleted" from source "http:web": only cdc may send it',
      'reserved event type "timer.fired" from source "http:web": only engine may send it',
      'reserved event type "message_clicked" from source "http:web": only tracker may send it',
      'reserved event type "schedule.occurrence" from source "cdc:app": only scheduler may send it',
    ]);
    // bob was not erased, and nothing was sent for the forged events.
    expect((await stores.load(['bob'])).get('bob')?.state).not.toBeNull();
    expect(
      bus
        .messages(T.sends)
        .map((m) => sendCodec.decode(m.value!).triggeredBy.eventId)
        .filter((id) => id.startsWith('f')),
    ).toEqual([]);
    await service.stop();
  });

  it('commits a batch only once its state writes are durable, and reads it again when they could not be made so', async () => {
    const rs = await ruleSet();
    const bus = new InMemoryBus(1);
    const stores = new MemoryStores();
    const sub = { groupId: 'engine', topics: [], eachBatch: async () => {} };
    const committed = () => bus.committedOffset(sub, { topic: T.events, partition: 0 });
    // The store's fsync: held open by the test, or failing (a store that cannot confirm it).
    let waits = 0;
    let release: (() => void) | null = null;
    let failNext = false;
    const durable = () => {
      waits++;
      if (failNext) {
        failNext = false;
        return Promise.reject(new Error('WAITAOF: not fsynced in time'));
      }
      return new Promise<void>((resolve) => (release = resolve));
    };
    const service = createEngineService(
      { ...config, partitions: 1 },
      {
        bus,
        state: stores,
        timers: stores,
        ...wireCore(() => rs),
        durable,
        logger: silentLogger(),
        registry: createMetricsRegistry({ defaults: false }),
      },
    );
    const starting = service.start();
    // The epoch taken on assignment is made durable before the partition is worked on.
    await until(() => release !== null);
    release!();
    release = null;
    await starting;
    const now = Date.now();
    await bus.publisher().publish(T.events, [
      record(
        ev('w1', 'erin', 'user_registered', now, {
          traits: { email: 'e@example.com', plan: 'pro' },
        }),
      ),
    ]);
    await until(() => release !== null);
    // The state is written, but until it is durable the offset stays where it was.
    expect((await stores.load(['erin'])).get('erin')?.offset).toBe('0');
    await new Promise((r) => setTimeout(r, 50));
    expect(committed()).toBe(0);
    release!();
    release = null;
    await until(() => committed() === 1);
    expect(waits).toBe(2);

    // A wait that fails fails the batch: read again (the fence skips the applied event), then committed.
    await bus
      .publisher()
      .publish(T.events, [
        record(ev('w2', 'erin', 'order_completed', now + 1, { properties: { amount: 70 } })),
      ]);
    failNext = true;
    await until(() => release !== null);
    expect(committed()).toBe(1);
    expect(waits).toBe(4);
    release!();
    await until(() => committed() === 2);
    expect(
      sendsOf(bus)
        .map((s) => s.ruleId)
        .sort(),
    ).toEqual(['big-order', 'welcome']);
    await service.stop();
  });

  it('abandons a batch without writing state or committing once a newer owner holds the partition', async () => {
    const rs = await ruleSet();
    const bus = new InMemoryBus(1);
    const registry = createMetricsRegistry({ defaults: false });
    const { service, stores } = createMemoryEngine(
      { ...config, partitions: 1 },
      { bus, ruleSet: () => rs, logger: silentLogger(), registry },
    );
    await service.start();
    const now = Date.now();
    await bus
      .publisher()
      .publish(T.events, [
        record(ev('a1', 'dana', 'order_completed', now, { properties: { amount: 60 } })),
      ]);
    const sub = { groupId: 'engine', topics: [], eachBatch: async () => {} };
    await until(() => bus.committedOffset(sub, { topic: T.events, partition: 0 }) === 1);
    expect(service.ownedPartitions()).toEqual([0]);

    // Another process takes the partition (its epoch is now newer than ours).
    await stores.acquire(0);
    await bus
      .publisher()
      .publish(T.events, [
        record(
          ev('a2', 'dana', 'order_completed', now + 7_200_000, { properties: { amount: 70 } }),
        ),
      ]);
    await until(
      async () =>
        (await registry.getSingleMetric('lifecycle_engine_fenced_total')!.get()).values[0]
          ?.value === 1,
    );
    expect(bus.committedOffset(sub, { topic: T.events, partition: 0 })).toBe(1);
    expect((await stores.load(['dana'])).get('dana')?.offset).toBe('0');
    expect(service.ownedPartitions()).toEqual([]);
    await service.stop();
  });
  it('takes a partition again when it is still assigned here long after it was fenced out (its ownership record lost), instead of stalling', async () => {
    const rs = await ruleSet();
    const bus = new InMemoryBus(1);
    const registry = createMetricsRegistry({ defaults: false });
    const { service, stores } = createMemoryEngine(
      { ...config, partitions: 1 },
      { bus, ruleSet: () => rs, logger: silentLogger(), registry, reclaimFencedAfterMs: 1500 },
    );
    await service.start();
    const now = Date.now();
    await bus
      .publisher()
      .publish(T.events, [
        record(ev('b1', 'erin', 'order_completed', now, { properties: { amount: 60 } })),
      ]);
    const sub = { groupId: 'engine', topics: [], eachBatch: async () => {} };
    await until(() => bus.committedOffset(sub, { topic: T.events, partition: 0 }) === 1);

    // The store no longer holds this process's epoch (wiped, restored from an older copy):
    // the next write is refused, and no other member of the group is assigned the partition.
    await stores.acquire(0);
    await bus
      .publisher()
      .publish(T.events, [
        record(
          ev('b2', 'erin', 'order_completed', now + 7_200_000, { properties: { amount: 70 } }),
        ),
      ]);
    await until(() => service.ownedPartitions().length === 0);
    expect(service.health().details?.fencedButAssigned).toEqual([0]);
    // Past the grace period the partition is taken again and the batch goes through.
    await until(() => bus.committedOffset(sub, { topic: T.events, partition: 0 }) === 2, 10_000);
    expect(service.ownedPartitions()).toEqual([0]);
    expect((await stores.load(['erin'])).get('erin')?.offset).toBe('1');
    expect(service.health().details?.fencedButAssigned).toEqual([]);
    await service.stop();
  });
});

describe('isWellFormedEvent', () => {
  const schemaCheck = TypeCompiler.Compile(NormalisedEventSchema);
  // Each field either valid or one of the ways it can be wrong (missing, empty, wrong type).
  const anything = fc.oneof(
    fc.constant(undefined),
    fc.constant(null),
    fc.constant(''),
    fc.string(),
    fc.integer(),
    fc.double(),
    fc.boolean(),
    fc.constant([]),
    fc.constant(new Date(0)),
    fc.constant(new Uint8Array(2)),
    fc.dictionary(fc.string(), fc.jsonValue()),
  );
  const field = <T>(valid: fc.Arbitrary<T>) =>
    fc.oneof({ arbitrary: valid, weight: 4 }, { arbitrary: anything, weight: 1 });
  const candidate = fc.record(
    {
      id: field(fc.string({ minLength: 1 })),
      userId: field(fc.string({ minLength: 1 })),
      anonymousId: field(fc.string()),
      type: field(fc.string({ minLength: 1 })),
      ts: field(fc.integer()),
      receivedAt: field(fc.maxSafeInteger()),
      source: field(fc.string()),
      properties: field(fc.dictionary(fc.string(), fc.jsonValue())),
      traits: field(fc.dictionary(fc.string(), fc.jsonValue())),
      context: field(fc.dictionary(fc.string(), fc.jsonValue())),
    },
    { requiredKeys: [] },
  );

  it('accepts exactly what the NormalisedEvent schema accepts', () => {
    fc.assert(
      fc.property(fc.oneof(candidate, anything), (value) => {
        expect(isWellFormedEvent(value)).toBe(schemaCheck.Check(value));
      }),
      { numRuns: 5000 },
    );
    // 5,000 runs take about a second alone and several times that beside the integration suite.
  }, 60_000);

  it('accepts the generated stream and refuses an empty user id', () => {
    for (const e of generateEvents({ users: 50, events: 500, startTs: 0, seed: 3 }))
      expect(isWellFormedEvent(e)).toBe(true);
    expect(isWellFormedEvent({ ...ev('e1', 'u1', 'page', 1), userId: '' })).toBe(false);
  });
});

describe('events the engine cannot encode', () => {
  const committed = (bus: InMemoryBus, partition: number) =>
    bus.committedOffset(
      { groupId: 'engine', topics: [], eachBatch: async () => {} },
      { topic: T.events, partition },
    );
  const quickRetry = { maxBatchAttempts: 2, retryBackoff: { initialMs: 5, maxMs: 5 } };
  const nested = (levels: number): unknown => (levels === 0 ? 1 : [nested(levels - 1)]);

  it('an event nested deeper than 64 levels goes to the DLQ (stage engine.encode); the events around it are applied', async () => {
    const rs = await ruleSet();
    const bus = new InMemoryBus(1);
    const { service } = createMemoryEngine(
      { ...config, partitions: 1, retry: quickRetry },
      {
        bus,
        ruleSet: () => rs,
        logger: silentLogger(),
        registry: createMetricsRegistry({ defaults: false }),
      },
    );
    await service.start();
    const now = Date.now();
    // 70 levels: encodable, so only the cap keeps it out of the state and the sends.
    await bus.publisher().publish(T.events, [
      record(ev('d1', 'dora', 'order_completed', now, { properties: { amount: 60 } })),
      record(
        ev('d2', 'dora', 'order_completed', now + 1, {
          properties: { amount: 70, basket: nested(70) },
        }),
      ),
      record(ev('d3', 'dora', 'user_registered', now + 2, { traits: { email: 'd@example.com' } })),
    ]);
    await until(() => committed(bus, 0) === 3);
    expect(sendsOf(bus).map((s) => s.triggeredBy.eventId)).toEqual(['d1', 'd3']);
    const dlq = bus.messages(T.dlq);
    expect(
      dlq.map((m) => [m.headers[DlqHeaders.sourceOffset], m.headers[DlqHeaders.stage]]),
    ).toEqual([['1', 'engine.encode']]);
    expect(dlq[0]!.headers[DlqHeaders.reason]).toBe(
      "too deep: the event's properties nest objects and arrays deeper than 64 levels, more than the engine stores and sends",
    );
    expect(service.health().ok).toBe(true);
    await service.stop();
  });

  it('an event whose send cannot be encoded goes to the DLQ (stage engine.encode) instead of stopping its partition, and leaves no trace in its user state', async () => {
    const bus = new InMemoryBus(1);
    const stores = new MemoryStores();
    interface Counted {
      ids: string[];
    }
    // A core that records the events it folded in, and makes a send no codec can write for a
    // `poison` event, after it has changed the state in place as the real core does.
    const core = {
      apply(state: Counted | null, event: NormalisedEvent) {
        const s = state ?? { ids: [] };
        s.ids.push(event.id);
        const send: SendCommand = {
          sendId: `s-${event.id}`,
          ruleId: 'r',
          userId: event.userId,
          category: 'transactional',
          priority: 1,
          template: 't',
          channels: ['email'],
          variant: null,
          holdout: false,
          triggeredBy: { eventId: event.id, eventType: event.type },
          createdAt: event.ts,
          expiresAt: null,
          data: event.type === 'poison' ? { amount: 10n } : {},
        };
        return { state: s, sends: [send], timers: [], emitted: [] };
      },
    };
    const service = createEngineService(
      { ...config, partitions: 1, retry: quickRetry },
      {
        bus,
        state: stores,
        timers: stores,
        core,
        codec: {
          serialize: (st: Counted) => JSON.stringify(st),
          deserialize: (text: string) => JSON.parse(text) as Counted,
        },
        logger: silentLogger(),
        registry: createMetricsRegistry({ defaults: false }),
      },
    );
    await service.start();
    const now = Date.now();
    await bus
      .publisher()
      .publish(T.events, [
        record(ev('p1', 'pat', 'order_completed', now)),
        record(ev('p2', 'pat', 'poison', now + 1)),
        record(ev('p3', 'pat', 'order_completed', now + 2)),
        record(ev('q1', 'quin', 'order_completed', now + 3)),
      ]);
    await until(() => committed(bus, 0) === 4 || !service.health().ok);
    expect(service.health()).toMatchObject({ ok: true, details: { stalled: [] } });
    expect(sendsOf(bus).map((s) => s.sendId)).toEqual(['s-p1', 's-p3', 's-q1']);
    const dlq = bus.messages(T.dlq);
    expect(
      dlq.map((m) => [m.headers[DlqHeaders.sourceOffset], m.headers[DlqHeaders.stage]]),
    ).toEqual([['1', 'engine.encode']]);
    expect(dlq[0]!.headers[DlqHeaders.reason]).toMatch(
      /^what the engine made of the event cannot be encoded: .*BigInt/,
    );
    const stored = await stores.load(['pat']);
    expect(JSON.parse(stored.get('pat')!.state!)).toEqual({ ids: ['p1', 'p3'] });
    await service.stop();
  });
});
