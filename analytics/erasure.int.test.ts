// The right to be forgotten on both engines: two users' events, sends, deliveries and
// message-log records go through the sink (in-memory bus), then a `user_deleted` for one of them. On the
// ClickHouse server (a mutation, awaited through system.mutations) and on chDB (a
// lightweight delete), that user's rows are gone from every table but the stripped
// deletion event, everyone else's remain, the erasure log has the entry, the deletion
// replayed erases again harmlessly, and rows of the erased user that arrive later are not
// stored again.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  deliveryCodec,
  encodeWithHeader,
  eventCodec,
  messageCodec,
  sendCodec,
} from '../platform/avro.ts';
import { InMemoryBus, internalTopicSpecs } from '../platform/bus.ts';
import { topics, type NormalisedEvent } from '../platform/contracts.ts';
import { silentLogger } from '../platform/logger.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import { DELIVERIES, EVENTS, MESSAGES, SENDS } from '../test/support/analytics-fixtures.ts';
import { createTestDatabase, type TestDatabase } from '../test/support/clickhouse.ts';
import { isolate } from '../test/support/isolation.ts';
import { waitFor } from '../test/support/wait.ts';
import { erasureLog, pendingMutations } from './erasure.ts';
import { ensureSchema } from './schema.ts';
import { createAnalyticsSink } from './sink.ts';
import { createChdbStore, type EngineAnalyticsStore } from './store.ts';

const ERASED = 'u1';
const ID = { events: 'id', sends: 'send_id', deliveries: 'id', messages: 'id' } as const;
type Counts = Record<keyof typeof ID, Record<string, number>>;

async function perUser(store: EngineAnalyticsStore, database: string): Promise<Counts> {
  const out = {} as Counts;
  for (const table of Object.keys(ID) as (keyof typeof ID)[]) {
    const rows = await store.query<{ user_id: string; n: number }>(
      `SELECT user_id, uniqExact(${ID[table]}) AS n FROM ${database}.${table} GROUP BY user_id`,
    );
    out[table] = Object.fromEntries(rows.map((r) => [r.user_id, Number(r.n)]));
  }
  return out;
}

const without = (counts: Record<string, number>, user: string) =>
  Object.fromEntries(Object.entries(counts).filter(([u]) => u !== user));
const eventsCommitted = (bus: InMemoryBus, topic: string) =>
  [...bus.groupOffsets('sink', topic).values()].reduce((a, b) => a + b, 0);

/** Everything the test shows, on one engine. */
async function erasesOneUser(
  store: EngineAnalyticsStore,
  database: string,
  method: 'mutation' | 'lightweight_delete',
): Promise<void> {
  const t = topics('erasure');
  const bus = new InMemoryBus(2);
  await bus.ensureTopics(internalTopicSpecs(t, 2));
  const sink = createAnalyticsSink(
    { groupId: 'sink', topicPrefix: 'erasure', database, flushIntervalMs: 100 },
    { bus, store, logger: silentLogger(), metrics: createMetricsRegistry({ defaults: false }) },
  );
  const sinks = [sink];
  await sink.start();
  try {
    const publisher = bus.publisher();
    await publisher.publish(
      t.events,
      EVENTS.map((e) => ({ key: e.userId, ...encodeWithHeader(eventCodec, e) })),
    );
    await publisher.publish(
      t.sends,
      SENDS.map((s) => ({ key: s.userId, ...encodeWithHeader(sendCodec, s) })),
    );
    await publisher.publish(
      t.deliveries,
      DELIVERIES.map((d) => ({ key: d.userId, ...encodeWithHeader(deliveryCodec, d) })),
    );
    await publisher.publish(
      t.messages,
      MESSAGES.map((m) => ({ key: m.userId, ...encodeWithHeader(messageCodec, m) })),
    );
    await waitFor(
      async () => {
        const c = await perUser(store, database);
        const total = (x: Record<string, number>) => Object.values(x).reduce((a, b) => a + b, 0);
        return (
          total(c.events) === EVENTS.length &&
          total(c.sends) === SENDS.length &&
          total(c.deliveries) === DELIVERIES.length &&
          total(c.messages) === MESSAGES.length
        );
      },
      { timeout: 30_000, interval: 100, message: 'fixture rows not stored' },
    );
    const before = await perUser(store, database);
    expect([
      before.events[ERASED],
      before.sends[ERASED],
      before.deliveries[ERASED],
      before.messages[ERASED],
    ]).toEqual([3, 1, 3, 1]);

    const deletion: NormalisedEvent = {
      id: `cdc:appdb:users:${ERASED}:d`,
      userId: ERASED,
      anonymousId: 'anon-1',
      type: 'user_deleted',
      ts: Date.UTC(2026, 3, 1),
      receivedAt: Date.UTC(2026, 3, 1, 0, 0, 1),
      source: 'cdc:appdb',
      properties: { reason: 'asked by email' },
      context: { ip: '203.0.113.9' },
    };
    const deleteAgain = () =>
      publisher.publish(t.events, [{ key: ERASED, ...encodeWithHeader(eventCodec, deletion) }]);
    await deleteAgain();
    await waitFor(() => eventsCommitted(bus, t.events) === EVENTS.length + 1, {
      timeout: 30_000,
      message: 'deletion not committed',
    });
    // The offset is committed once the erasure is decided; a server applies it in the background.
    await waitFor(async () => (await pendingMutations(store, database)).length === 0, {
      timeout: 60_000,
      interval: 200,
      message: 'erasure mutations not done',
    });

    const after = await perUser(store, database);
    expect(after.sends[ERASED]).toBeUndefined();
    expect(after.deliveries[ERASED]).toBeUndefined();
    expect(after.messages[ERASED]).toBeUndefined();
    expect(
      await store.query(
        `SELECT id, type, source, ts_ms, anonymous_id, properties, traits, context FROM ${database}.events WHERE user_id = {user:String}`,
        { user: ERASED },
      ),
    ).toEqual([
      {
        id: deletion.id,
        type: 'user_deleted',
        source: 'cdc:appdb',
        ts_ms: deletion.ts,
        anonymous_id: '',
        properties: '{}',
        traits: '',
        context: '',
      },
    ]);
    for (const table of Object.keys(ID) as (keyof typeof ID)[])
      expect(without(after[table], ERASED)).toEqual(without(before[table], ERASED));

    const [entry, ...older] = await erasureLog(store, database, { userId: ERASED });
    expect(older).toEqual([]);
    expect(entry).toEqual({
      userId: ERASED,
      requestId: deletion.id,
      source: 'cdc:appdb',
      requestedAt: deletion.ts,
      erasedAt: expect.any(Number) as number,
      method,
      rows: { events: 3, sends: 1, deliveries: 3, messages: 1 },
    });
    expect(await erasureLog(store, database, { userId: 'u2' })).toEqual([]);

    // The deletion read again (a replay): erased again, nothing left to find, logged again.
    await deleteAgain();
    await waitFor(() => eventsCommitted(bus, t.events) === EVENTS.length + 2, {
      timeout: 30_000,
      message: 'replayed deletion not committed',
    });
    const log = await erasureLog(store, database);
    expect(log.map((e) => [e.userId, e.rows])).toEqual([
      [ERASED, { events: 0, sends: 0, deliveries: 0, messages: 0 }],
      [ERASED, { events: 3, sends: 1, deliveries: 3, messages: 1 }],
    ]);
    const replayed = await perUser(store, database);
    expect(replayed.events[ERASED]).toBe(1);
    for (const table of Object.keys(ID) as (keyof typeof ID)[])
      expect(without(replayed[table], ERASED)).toEqual(without(before[table], ERASED));
    expect(sink.health().ok).toBe(true);

    // Rows of the erased user still in flight arrive after the erasure: none is stored again,
    // neither by this sink nor by a new one (a restart, another instance) that knows the
    // erasure only from the log. A mutation would not reach rows inserted after it.
    let late = 0;
    const arriveLate = async () => {
      late++;
      const e = EVENTS.find((x) => x.userId === ERASED)!;
      const s = SENDS.find((x) => x.userId === ERASED)!;
      const d = DELIVERIES.find((x) => x.userId === ERASED)!;
      const m = MESSAGES.find((x) => x.userId === ERASED)!;
      await publisher.publish(t.events, [
        { key: ERASED, ...encodeWithHeader(eventCodec, { ...e, id: `late-${late}` }) },
      ]);
      await publisher.publish(t.sends, [
        { key: ERASED, ...encodeWithHeader(sendCodec, { ...s, sendId: `late-send-${late}` }) },
      ]);
      await publisher.publish(t.deliveries, [
        { key: ERASED, ...encodeWithHeader(deliveryCodec, { ...d, id: `late-outcome-${late}` }) },
      ]);
      await publisher.publish(t.messages, [
        { key: ERASED, ...encodeWithHeader(messageCodec, { ...m, id: `late-message-${late}` }) },
      ]);
      await waitFor(
        () =>
          eventsCommitted(bus, t.events) === EVENTS.length + 2 + late &&
          eventsCommitted(bus, t.sends) === SENDS.length + late &&
          eventsCommitted(bus, t.deliveries) === DELIVERIES.length + late &&
          eventsCommitted(bus, t.messages) === MESSAGES.length + late,
        { timeout: 30_000, message: 'late rows not committed' },
      );
      await waitFor(async () => (await pendingMutations(store, database)).length === 0, {
        timeout: 60_000,
        interval: 200,
        message: 'mutations not done',
      });
      const now = await perUser(store, database);
      expect([
        now.events[ERASED],
        now.sends[ERASED],
        now.deliveries[ERASED],
        now.messages[ERASED],
      ]).toEqual([1, undefined, undefined, undefined]);
    };
    await arriveLate();
    await sink.stop();
    sinks.push(
      createAnalyticsSink(
        { groupId: 'sink', topicPrefix: 'erasure', database, flushIntervalMs: 100 },
        { bus, store, logger: silentLogger(), metrics: createMetricsRegistry({ defaults: false }) },
      ),
    );
    await sinks.at(-1)!.start();
    await arriveLate();
  } finally {
    for (const s of sinks) await s.stop();
    await bus.close();
  }
}

describe('erasure on the ClickHouse server', () => {
  const iso = isolate('erasure');
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase(iso.config());
    await ensureSchema(db.store, db.database, { payloadTtlDays: 30 });
  });

  afterAll(async () => {
    await db?.drop();
  });

  it("removes the deleted user's rows from every table with a mutation and logs it", async () => {
    expect(db.store.backend).toBe('server');
    await erasesOneUser(db.store, db.database, 'mutation');
  });
});

describe('erasure on chDB (embedded mode)', () => {
  const database = 'lifecycle_erasure';
  let dir: string;
  let store: EngineAnalyticsStore;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lc-chdb-erasure-'));
    store = await createChdbStore({ path: dir });
    await ensureSchema(store, database, { payloadTtlDays: 30 });
  });

  afterAll(async () => {
    await store?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("removes the deleted user's rows from every table with a lightweight delete and logs it", async () => {
    await erasesOneUser(store, database, 'lightweight_delete');
  });
});
