// The embedded mode (`lifecycle demo`): the same sink over the in-memory bus writes into
// chDB, and the analysts' queries read the same numbers there.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChdbStore, type EngineAnalyticsStore } from './store.ts';
import { deliveryCodec, encodeWithHeader, eventCodec, sendCodec } from '../platform/avro.ts';
import { InMemoryBus, internalTopicSpecs } from '../platform/bus.ts';
import { DlqHeaders, topics } from '../platform/contracts.ts';
import { silentLogger } from '../platform/logger.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import { waitFor } from '../test/support/wait.ts';
import { DELIVERIES, EVENTS, EXPECTED, SENDS, WINDOW } from '../test/support/analytics-fixtures.ts';
import { goalUplift, ruleFunnel } from './queries.ts';
import { ensureSchema } from './schema.ts';
import { createAnalyticsSink } from './sink.ts';

describe('analytics sink in the embedded mode (in-memory bus, chDB)', () => {
  const t = topics('demo');
  const database = 'lifecycle_embedded';
  let dir: string;
  let store: EngineAnalyticsStore;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lc-chdb-sink-'));
    store = await createChdbStore({ path: dir });
    await ensureSchema(store, database, { payloadTtlDays: 30 });
  });

  afterAll(async () => {
    await store?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('stores the records, sends a poison record to the DLQ, and the queries agree', async () => {
    const bus = new InMemoryBus(2);
    await bus.ensureTopics(internalTopicSpecs(t, 2));
    const sink = createAnalyticsSink(
      { groupId: 'sink', topicPrefix: 'demo', database, flushIntervalMs: 100 },
      { bus, store, logger: silentLogger(), metrics: createMetricsRegistry({ defaults: false }) },
    );
    await sink.start();
    const publisher = bus.publisher();
    await publisher.publish(t.events, [
      { key: 'x', value: Buffer.from([1, 2, 3]) },
      ...EVENTS.map((e) => ({ key: e.userId, ...encodeWithHeader(eventCodec, e) })),
    ]);
    await publisher.publish(
      t.sends,
      SENDS.map((s) => ({ key: s.userId, ...encodeWithHeader(sendCodec, s) })),
    );
    await publisher.publish(
      t.deliveries,
      DELIVERIES.map((d) => ({ key: d.userId, ...encodeWithHeader(deliveryCodec, d) })),
    );
    await waitFor(
      async () => {
        const [r] = await store.query<{ n: number }>(
          `SELECT (SELECT uniqExact(id) FROM ${database}.events) + (SELECT uniqExact(send_id) FROM ${database}.sends) + (SELECT uniqExact(id) FROM ${database}.deliveries) AS n`,
        );
        return r?.n === EVENTS.length + SENDS.length + DELIVERIES.length;
      },
      { timeout: 30_000, interval: 100, message: 'rows did not reach chDB' },
    );
    const dlq = bus.messages(t.dlq);
    expect(dlq).toHaveLength(1);
    expect(dlq[0]!.headers[DlqHeaders.sourceTopic]).toBe(t.events);
    expect(dlq[0]!.headers[DlqHeaders.reason]).toMatch(/not a valid/);
    await sink.stop();
    await bus.close();

    const funnel = await ruleFunnel(store, database, WINDOW);
    expect(funnel.map(({ rates: _rates, ...rest }) => rest)).toEqual(EXPECTED.funnel);
    const [uplift] = await goalUplift(store, database, WINDOW);
    expect({
      treated: { n: uplift?.treated.n, x: uplift?.treated.x },
      holdout: { n: uplift?.holdout.n, x: uplift?.holdout.x },
    }).toEqual({
      treated: EXPECTED.uplift.treated,
      holdout: EXPECTED.uplift.holdout,
    });
  });
  it('a backfill spanning more months than one insert may touch is stored whole', async () => {
    const bus = new InMemoryBus(1);
    await bus.ensureTopics(internalTopicSpecs(t, 1));
    const sink = createAnalyticsSink(
      {
        groupId: 'sink-backfill',
        topicPrefix: 'demo',
        database,
        flushIntervalMs: 100,
        maxBatchRows: 10_000,
      },
      { bus, store, logger: silentLogger(), metrics: createMetricsRegistry({ defaults: false }) },
    );
    // 150 monthly partitions in one batch: ClickHouse refuses more than 100 per insert.
    const old = Array.from({ length: 150 }, (_, i) => {
      const ts = Date.UTC(2001, i, 10);
      return {
        id: `backfill-${i}`,
        userId: `old-${i % 7}`,
        type: 'order_placed',
        ts,
        receivedAt: ts,
        source: 'cdc:shop',
        properties: { n: i },
      };
    });
    await bus.publisher().publish(
      t.events,
      old.map((e) => ({ key: e.userId, ...encodeWithHeader(eventCodec, e) })),
    );
    await sink.start();
    await waitFor(
      async () => {
        const [r] = await store.query<{ n: number; months: number }>(
          `SELECT uniqExact(id) AS n, uniqExact(toYYYYMM(ts)) AS months FROM ${database}.events WHERE type = 'order_placed'`,
        );
        return r?.n === 150 && r.months === 150;
      },
      { timeout: 30_000, interval: 100, message: 'backfill not stored' },
    );
    expect(sink.health().ok).toBe(true);
    await sink.stop();
    await bus.close();
  });
});
