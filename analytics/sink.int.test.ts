// The sink against the real stack: Avro records produced to Kafka land in the ClickHouse
// server's tables, replays do not double-count, poison records go to the DLQ, and offsets
// are committed only once rows are stored.
import { createServer as createTcpServer, connect, type Server, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import type { Kafka } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deliveryCodec, encodeWithHeader, eventCodec, sendCodec } from '../platform/avro.ts';
import { internalTopicSpecs, type OutgoingMessage } from '../platform/bus.ts';
import { DlqHeaders, SCHEMA_ID_HEADER, topics, type Topics } from '../platform/contracts.ts';
import type { Config } from '../platform/config.ts';
import { KafkaBus } from '../platform/kafka.ts';
import { createLogger, silentLogger } from '../platform/logger.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import { createTestDatabase, type TestDatabase } from '../test/support/clickhouse.ts';
import { isolate } from '../test/support/isolation.ts';
import { consume, testKafka } from '../test/support/kafka.ts';
import { freePort } from '../test/support/ports.ts';
import { waitFor } from '../test/support/wait.ts';
import { DELIVERIES, EVENTS, EXPECTED, SENDS, WINDOW } from '../test/support/analytics-fixtures.ts';
import { deliverabilityByProvider, goalUplift, ruleFunnel } from './queries.ts';
import { ensureSchema } from './schema.ts';
import { createAnalyticsSink, runSink, sinkConfig, type AnalyticsSink } from './sink.ts';

const logger = silentLogger();

function fixtureMessages(): Record<'events' | 'sends' | 'deliveries', OutgoingMessage[]> {
  return {
    events: EVENTS.map((e) => ({ key: e.userId, ...encodeWithHeader(eventCodec, e) })),
    sends: SENDS.map((s) => ({ key: s.userId, ...encodeWithHeader(sendCodec, s) })),
    deliveries: DELIVERIES.map((d) => ({ key: d.userId, ...encodeWithHeader(deliveryCodec, d) })),
  };
}

async function produceFixtures(bus: KafkaBus, t: Topics): Promise<void> {
  const m = fixtureMessages();
  const publisher = bus.publisher();
  await publisher.publish(t.events, m.events);
  await publisher.publish(t.sends, m.sends);
  await publisher.publish(t.deliveries, m.deliveries);
}

async function counts(
  db: TestDatabase,
  table: 'events' | 'sends' | 'deliveries',
): Promise<{ rows: number; ids: number }> {
  const id = table === 'sends' ? 'send_id' : 'id';
  const [r] = await db.store.query<{ rows: number; ids: number }>(
    `SELECT count() AS rows, uniqExact(${id}) AS ids FROM ${db.database}.${table}`,
  );
  return r ?? { rows: 0, ids: 0 };
}

async function committed(kafka: Kafka, groupId: string, topic: string): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const [res] = await admin.fetchOffsets({ groupId, topics: [topic] });
    return (res?.partitions ?? []).reduce((sum, p) => sum + Math.max(0, Number(p.offset)), 0);
  } finally {
    await admin.disconnect();
  }
}

function strip<T extends object>(rows: T[], keys: string[]): Partial<T>[] {
  return rows.map(
    (r) => Object.fromEntries(Object.entries(r).filter(([k]) => !keys.includes(k))) as Partial<T>,
  );
}

describe('analytics sink on Kafka and the ClickHouse server', () => {
  const iso = isolate('sink');
  let config: Readonly<Config>;
  let t: Topics;
  let bus: KafkaBus;
  let kafka: Kafka;
  let db: TestDatabase;
  const sinks: AnalyticsSink[] = [];

  function startSink(groupId: string, database = db.database): AnalyticsSink {
    const sink = createAnalyticsSink(
      { ...sinkConfig(config), groupId, database, flushIntervalMs: 200, retryMaxMs: 500 },
      { bus, store: db.store, logger, metrics: createMetricsRegistry({ defaults: false }) },
    );
    sinks.push(sink);
    return sink;
  }

  beforeAll(async () => {
    config = iso.config({ LC_KAFKA_PARTITIONS: '3' });
    t = topics(config.kafka.topicPrefix);
    bus = KafkaBus.fromConfig(config, logger);
    kafka = testKafka(config);
    await bus.ensureTopics(internalTopicSpecs(t, 3));
    db = await createTestDatabase(config);
    await ensureSchema(db.store, db.database, { payloadTtlDays: 30 });
  });

  afterAll(async () => {
    for (const s of sinks) await s.stop();
    await bus?.close();
    await db?.drop();
  });

  it('stores what arrives on the three topics, sends poison records to the DLQ and commits', async () => {
    const sink = startSink(config.analytics.groupId);
    await sink.start();
    const publisher = bus.publisher();
    // Poison: bytes that are no Avro event, a delivery written with an unknown schema, an empty value.
    await publisher.publish(t.events, [
      {
        key: 'u-poison',
        value: Buffer.from('{"not":"avro"}'),
        headers: { [SCHEMA_ID_HEADER]: eventCodec.schemaId },
      },
    ]);
    await publisher.publish(t.deliveries, [
      {
        key: 'u-poison',
        value: deliveryCodec.encode(DELIVERIES[0]!),
        headers: { [SCHEMA_ID_HEADER]: 'ffffffffffffffff' },
      },
    ]);
    await publisher.publish(t.sends, [{ key: 'u-poison', value: null }]);
    await produceFixtures(bus, t);

    await waitFor(
      async () => {
        const [e, s, d] = await Promise.all([
          counts(db, 'events'),
          counts(db, 'sends'),
          counts(db, 'deliveries'),
        ]);
        return e.ids === EVENTS.length && s.ids === SENDS.length && d.ids === DELIVERIES.length;
      },
      { timeout: 60_000, interval: 250, message: 'fixture rows did not all reach ClickHouse' },
    );
    expect(await counts(db, 'events')).toEqual({ rows: EVENTS.length, ids: EVENTS.length });

    // A stored row keeps what was sent: times in ms and seconds, JSON payloads, holdout flag.
    const s0 = SENDS.find((s) => s.holdout)!;
    const [row] = await db.store.query<Record<string, unknown>>(
      `SELECT rule_id, holdout, variant, goal_event, goal_within_ms, created_at_ms, toUnixTimestamp(created_at) AS created_s, data, channels FROM ${db.database}.sends WHERE send_id = {id:String}`,
      { id: s0.sendId },
    );
    expect(row).toEqual({
      rule_id: 'r1',
      holdout: 1,
      variant: '',
      goal_event: 'subscription_started',
      goal_within_ms: s0.goal!.withinMs,
      created_at_ms: s0.createdAt,
      created_s: Math.floor(s0.createdAt / 1000),
      data: JSON.stringify(s0.data),
      channels: ['email'],
    });

    const dlq = await consume(kafka, t.dlq, iso.group('dlq-reader'), { count: 3 });
    const reasons = dlq.map((r) => ({
      topic: String(r.headers[DlqHeaders.sourceTopic]),
      stage: String(r.headers[DlqHeaders.stage]),
      reason: String(r.headers[DlqHeaders.reason]),
    }));
    expect(reasons.map((r) => r.topic).sort()).toEqual([t.deliveries, t.events, t.sends].sort());
    expect(reasons.every((r) => r.stage === 'analytics-sink')).toBe(true);
    expect(reasons.find((r) => r.topic === t.deliveries)?.reason).toMatch(
      /schema id ffffffffffffffff/,
    );
    expect(reasons.find((r) => r.topic === t.sends)?.reason).toBe('empty record value');

    // Every offset, poison included, is committed once its rows are stored.
    await waitFor(
      async () =>
        (await committed(kafka, config.analytics.groupId, t.events)) === EVENTS.length + 1,
      { timeout: 20_000, message: 'events offsets not committed' },
    );
    await waitFor(
      async () =>
        (await committed(kafka, config.analytics.groupId, t.deliveries)) === DELIVERIES.length + 1,
      { timeout: 20_000, message: 'deliveries offsets not committed' },
    );
    expect(sink.health().ok).toBe(true);

    const volatile = ['rates', 'relativeUplift', 'ci', 'pValue', 'confidence', 'uplift'];
    expect(strip(await ruleFunnel(db.store, db.database, WINDOW), ['rates'])).toEqual(
      EXPECTED.funnel,
    );
    const uplift = await goalUplift(db.store, db.database, WINDOW);
    expect(
      uplift.map((u) => ({
        ruleId: u.ruleId,
        treated: { n: u.treated.n, x: u.treated.x },
        holdout: { n: u.holdout.n, x: u.holdout.x },
      })),
    ).toEqual([EXPECTED.uplift]);
    expect(strip(await deliverabilityByProvider(db.store, db.database, WINDOW), volatile)).toEqual(
      EXPECTED.deliverability,
    );
    await sink.stop();
  });

  it('a replay (group reset, then the same records produced again) collapses and never double-counts', async () => {
    const before = {
      funnel: await ruleFunnel(db.store, db.database, WINDOW),
      uplift: await goalUplift(db.store, db.database, WINDOW),
    };
    // Merges are not paused here: ClickHouse 18.16 segfaults when tables with stopped merges
    // are dropped later. Duplicates may merge at any moment; no query may count them twice.
    // A new group reads everything from the beginning: what a reset group or a crash before commit does.
    const replay = startSink(iso.group('sink-replay'));
    await replay.start();
    await produceFixtures(bus, t);
    // Committed means inserted: the replay group has stored both rounds.
    for (const [topic, n] of [
      [t.events, EVENTS.length],
      [t.sends, SENDS.length],
      [t.deliveries, DELIVERIES.length],
    ] as const) {
      await waitFor(
        async () => (await committed(kafka, iso.group('sink-replay'), topic)) === 2 * n + 1,
        { timeout: 60_000, interval: 250, message: `replay of ${topic} not stored` },
      );
    }
    await replay.stop();

    // Whatever has merged so far, ids are counted once.
    const deliveries = await counts(db, 'deliveries');
    expect(deliveries.ids).toBe(DELIVERIES.length);
    expect(deliveries.rows).toBeGreaterThanOrEqual(DELIVERIES.length);
    expect(deliveries.rows).toBeLessThanOrEqual(3 * DELIVERIES.length);
    expect((await counts(db, 'sends')).ids).toBe(SENDS.length);
    expect(await ruleFunnel(db.store, db.database, WINDOW)).toEqual(before.funnel);
    expect(await goalUplift(db.store, db.database, WINDOW)).toEqual(before.uplift);

    // A merge collapses them to one row per id.
    for (const table of ['events', 'sends', 'deliveries'] as const)
      await db.store.command(`OPTIMIZE TABLE ${db.database}.${table} FINAL`);
    expect(await counts(db, 'events')).toEqual({ rows: EVENTS.length, ids: EVENTS.length });
    expect(await counts(db, 'sends')).toEqual({ rows: SENDS.length, ids: SENDS.length });
    expect(await counts(db, 'deliveries')).toEqual({
      rows: DELIVERIES.length,
      ids: DELIVERIES.length,
    });
  });

  it('commits nothing while inserts fail, and stores everything once ClickHouse takes rows again', async () => {
    const database = `${db.database}_late`;
    const groupId = iso.group('sink-late');
    const sink = startSink(groupId, database);
    await sink.start();
    // The tables do not exist yet: every insert fails.
    await waitFor(async () => !sink.health().ok, {
      timeout: 30_000,
      message: 'sink did not report the failing inserts',
    });
    expect(await committed(kafka, groupId, t.sends)).toBe(0);
    expect(await committed(kafka, groupId, t.deliveries)).toBe(0);

    await ensureSchema(db.store, database, { payloadTtlDays: 30 });
    try {
      await waitFor(
        async () => {
          const [r] = await db.store.query<{ ids: number }>(
            `SELECT uniqExact(send_id) AS ids FROM ${database}.sends`,
          );
          return r?.ids === SENDS.length;
        },
        {
          timeout: 90_000,
          interval: 500,
          message: 'rows did not arrive after ClickHouse recovered',
        },
      );
      // Offsets of all three produce rounds (+ the poison record) are committed after the recovery.
      await waitFor(
        async () => (await committed(kafka, groupId, t.sends)) === 2 * SENDS.length + 1,
        { timeout: 30_000, message: 'offsets not committed after recovery' },
      );
      expect(strip(await ruleFunnel(db.store, database, WINDOW), ['rates'])).toEqual(
        EXPECTED.funnel,
      );
      await waitFor(() => sink.health().ok, {
        timeout: 10_000,
        message: 'sink health did not recover',
      });
    } finally {
      await sink.stop();
      await db.store.command(`DROP DATABASE IF EXISTS ${database}`);
    }
  });
  it('runSink waits for a ClickHouse that does not answer at start, logging its progress, then consumes', async () => {
    // ClickHouse for this sink is a TCP proxy in front of the stack's server: nothing
    // listens on its port at first, as when the sink starts before ClickHouse.
    const target = new URL(config.clickhouse.url);
    const port = await freePort();
    const sockets = new Set<Socket>();
    let proxy: Server | undefined;
    const openProxy = () =>
      new Promise<void>((resolve, reject) => {
        proxy = createTcpServer((client) => {
          const upstream = connect(Number(target.port), target.hostname);
          for (const sock of [client, upstream]) {
            sockets.add(sock);
            sock.on('close', () => sockets.delete(sock));
            sock.on('error', () => {
              client.destroy();
              upstream.destroy();
            });
          }
          client.pipe(upstream).pipe(client);
        });
        proxy.once('error', reject);
        proxy.listen(port, '127.0.0.1', () => resolve());
      });
    const lines: Record<string, unknown>[] = [];
    let partial = '';
    const log = createLogger(
      { level: 'info' },
      new Writable({
        write(chunk: Buffer, _enc, done) {
          const text = partial + chunk.toString();
          const complete = text.split('\n');
          partial = complete.pop() ?? '';
          for (const line of complete.filter(Boolean)) {
            try {
              lines.push(JSON.parse(line) as Record<string, unknown>);
            } catch {
              lines.push({ msg: line });
            }
          }
          done();
        },
      }),
    );
    const waiting = () => lines.filter((l) => /ClickHouse does not answer/.test(String(l.msg)));

    const database = `${db.database}_waits`;
    const runConfig = iso.config({
      LC_KAFKA_PARTITIONS: '3',
      LC_CLICKHOUSE_URL: `http://127.0.0.1:${port}`,
      LC_CLICKHOUSE_DATABASE: database,
      LC_SINK_GROUP: iso.group('sink-waits'),
    });
    let settled: 'started' | 'failed' | null = null;
    const starting = runSink(runConfig, log, { startRetry: { initialMs: 100, maxMs: 400 } });
    starting.then(
      () => (settled = 'started'),
      () => (settled = 'failed'),
    );
    try {
      await waitFor(() => waiting().length >= 3, {
        timeout: 30_000,
        message: 'the sink did not log that it waits for ClickHouse',
      });
      expect(settled).toBeNull();
      expect(waiting()[0]).toMatchObject({
        at: `http://127.0.0.1:${port}`,
        attempt: 1,
        err: expect.stringMatching(/ECONNREFUSED/) as string,
      });
      expect(waiting().map((l) => l.nextAttemptInMs)).toEqual(
        expect.arrayContaining([100, 200, 400]),
      );

      await openProxy();
      const running = await starting;
      try {
        await waitFor(
          async () => {
            const [r] = await db.store.query<{ ids: number }>(
              `SELECT uniqExact(id) AS ids FROM ${database}.deliveries`,
            );
            return r?.ids === DELIVERIES.length;
          },
          { timeout: 60_000, interval: 250, message: 'the late sink did not store the deliveries' },
        );
        expect(running.health().ok).toBe(true);
        expect(lines.some((l) => /ClickHouse answers: starting/.test(String(l.msg)))).toBe(true);
      } finally {
        await running.stop();
      }
    } finally {
      await starting.catch(() => undefined);
      for (const sock of sockets) sock.destroy();
      await new Promise((r) => (proxy ? proxy.close(r) : r(undefined)));
      await db.store.command(`DROP DATABASE IF EXISTS ${database}`);
    }
  });

  it('runSink (lifecycle run sink) creates its database and tables and stores what arrives', async () => {
    const database = `${db.database}_run`;
    const runConfig = iso.config({
      LC_KAFKA_PARTITIONS: '3',
      LC_CLICKHOUSE_DATABASE: database,
      LC_SINK_GROUP: iso.group('sink-run'),
    });
    const running = await runSink(runConfig, logger);
    try {
      await waitFor(
        async () => {
          const [r] = await db.store.query<{ ids: number }>(
            `SELECT uniqExact(id) AS ids FROM ${database}.deliveries`,
          );
          return r?.ids === DELIVERIES.length;
        },
        { timeout: 60_000, interval: 250, message: 'runSink did not store the deliveries' },
      );
      expect(running.health().ok).toBe(true);
      expect(strip(await deliverabilityByProvider(db.store, database, WINDOW), ['rates'])).toEqual(
        EXPECTED.deliverability,
      );
    } finally {
      await running.stop();
      await db.store.command(`DROP DATABASE IF EXISTS ${database}`);
    }
  });
});
