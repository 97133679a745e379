import { afterEach, describe, expect, it } from 'vitest';
import {
  deliveryCodec,
  encodeWithHeader,
  eventCodec,
  messageCodec,
  sendCodec,
} from '../platform/avro.ts';
import { InMemoryBus, internalTopicSpecs } from '../platform/bus.ts';
import { SCHEMA_ID_HEADER, topics, type NormalisedEvent } from '../platform/contracts.ts';
import { LifecycleError } from '../platform/errors.ts';
import { silentLogger } from '../platform/logger.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import { DELIVERIES, EVENTS, MESSAGES, SENDS } from '../test/support/analytics-fixtures.ts';
import { deliveryRow, eventRow, messageRow, sendRow } from './schema.ts';
import { chunkByMonth, createAnalyticsSink, decodeRecord, type AnalyticsSink } from './sink.ts';
import type { EngineAnalyticsStore, QueryParams } from './store.ts';

describe('decodeRecord', () => {
  it("turns each topic's Avro record into its table row", () => {
    expect(decodeRecord('events', encodeWithHeader(eventCodec, EVENTS[0]!))).toEqual({
      table: 'events',
      row: eventRow(EVENTS[0]!),
    });
    expect(decodeRecord('sends', encodeWithHeader(sendCodec, SENDS[0]!))).toEqual({
      table: 'sends',
      row: sendRow(SENDS[0]!),
    });
    expect(decodeRecord('deliveries', encodeWithHeader(deliveryCodec, DELIVERIES[0]!))).toEqual({
      table: 'deliveries',
      row: deliveryRow(DELIVERIES[0]!),
    });
    expect(decodeRecord('messages', encodeWithHeader(messageCodec, MESSAGES[0]!))).toEqual({
      table: 'messages',
      row: messageRow(MESSAGES[0]!),
    });
  });

  it('reads records without the schema header as the current schema', () => {
    expect(
      decodeRecord('events', { value: eventCodec.encode(EVENTS[1]!), headers: {} }),
    ).toMatchObject({ table: 'events' });
  });

  it.each([
    ['an empty value', 'events', { value: null, headers: {} }, /empty record value/],
    [
      'bytes of another schema',
      'sends',
      encodeWithHeader(eventCodec, EVENTS[0]!),
      /unknown writer schema id/,
    ],
    [
      'garbage bytes',
      'deliveries',
      { value: Buffer.from('hello'), headers: { [SCHEMA_ID_HEADER]: deliveryCodec.schemaId } },
      /not a valid/,
    ],
    [
      'a negative event time',
      'events',
      encodeWithHeader(eventCodec, { ...EVENTS[0]!, ts: -5 }),
      /ts -5 is not an epoch-ms time/,
    ],
    [
      'a time in seconds far in the future',
      'deliveries',
      encodeWithHeader(deliveryCodec, { ...DELIVERIES[0]!, ts: 9_999_999_999_999 }),
      /not an epoch-ms time/,
    ],
    [
      'a negative goal window',
      'sends',
      encodeWithHeader(sendCodec, { ...SENDS[0]!, goal: { event: 'x', withinMs: -1 } }),
      /goal window -1 is negative/,
    ],
    [
      'a message logged before 1970',
      'messages',
      encodeWithHeader(messageCodec, { ...MESSAGES[0]!, ts: -1 }),
      /ts -1 is not an epoch-ms time/,
    ],
    [
      'a negative attempt',
      'deliveries',
      encodeWithHeader(deliveryCodec, { ...DELIVERIES[0]!, attempt: -1 }),
      /attempt -1/,
    ],
  ] as const)('rejects %s with a reason', (_name, topic, message, reason) => {
    const r = decodeRecord(topic, message);
    expect('error' in r && r.error).toMatch(reason);
  });
});

describe('decodeRecord of a deletion', () => {
  it('keeps what makes the request auditable and drops what else it carried', () => {
    const deletion: NormalisedEvent = {
      id: 'd1',
      userId: 'u1',
      anonymousId: 'a1',
      type: 'user_deleted',
      ts: 1_780_000_000_000,
      receivedAt: 1_780_000_000_000,
      source: 'http:app',
      properties: { reason: 'asked' },
      context: { ip: '203.0.113.9' },
    };
    expect(decodeRecord('events', encodeWithHeader(eventCodec, deletion))).toEqual({
      table: 'events',
      row: { ...eventRow(deletion), anonymous_id: '', properties: '{}', traits: '', context: '' },
    });
  });
});

describe('the sink erases a deleted user', () => {
  const t = topics('lc');
  const sinks: AnalyticsSink[] = [];
  afterEach(async () => {
    for (const s of sinks.splice(0)) await s.stop();
  });

  type Call = {
    op: 'command' | 'insert' | 'query';
    sql: string;
    params?: QueryParams | undefined;
    rows?: object[];
    committed: number | undefined;
  };

  /** A store that records what the sink asks, answering counts with 2 rows; the first `failErasures` deletes fail. */
  function recordingStore(
    bus: InMemoryBus,
    failErasures = 0,
    erasedInLog: string[] = [],
  ): EngineAnalyticsStore & { calls: Call[] } {
    const calls: Call[] = [];
    const committed = () => bus.groupOffsets('sink', t.events).get(0);
    let failures = failErasures;
    return {
      backend: 'server',
      calls,
      async command(sql, params) {
        if (/DELETE/.test(sql) && failures-- > 0)
          throw new LifecycleError(
            'LC_ERR_ANALYTICS',
            'analytics command failed: connect ECONNREFUSED',
            { retriable: true },
          );
        calls.push({ op: 'command', sql, params, committed: committed() });
      },
      async insert(table, rows) {
        calls.push({ op: 'insert', sql: table, rows, committed: committed() });
      },
      async query<T>(sql: string, params?: QueryParams): Promise<T[]> {
        calls.push({ op: 'query', sql, params, committed: committed() });
        if (sql.includes('version()')) return [{ v: '18.16.1' }] as T[];
        if (sql.includes('count()')) return [{ n: 2 }] as T[];
        if (sql.includes('FROM lc.erasures'))
          return erasedInLog.map((user_id) => ({ user_id, at: 1_770_000_000_000 })) as T[];
        return [];
      },
      async close() {},
    };
  }

  const USER = "ada'; DROP TABLE lc.events --";
  const event = (id: string, userId: string, type: string): NormalisedEvent => ({
    id,
    userId,
    type,
    ts: 1_780_000_000_000,
    receivedAt: 1_780_000_000_100,
    source: 'cdc:appdb',
    properties: {},
  });

  async function run(failErasures: number) {
    const bus = new InMemoryBus(1);
    await bus.ensureTopics(internalTopicSpecs(t, 1));
    const store = recordingStore(bus, failErasures);
    const sink = createAnalyticsSink(
      { groupId: 'sink', topicPrefix: 'lc', database: 'lc', flushIntervalMs: 20, retryMaxMs: 20 },
      { bus, store, logger: silentLogger(), metrics: createMetricsRegistry({ defaults: false }) },
    );
    sinks.push(sink);
    await bus.publisher().publish(
      t.events,
      [
        event('e1', USER, 'login'),
        event('e2', 'bob', 'login'),
        event('d1', USER, 'user_deleted'),
      ].map((e) => ({ key: e.userId, ...encodeWithHeader(eventCodec, e) })),
    );
    await sink.start();
    const end = Date.now() + 5000;
    while (bus.groupOffsets('sink', t.events).get(0) !== 3) {
      if (Date.now() > end) throw new Error('deletion not committed');
      await new Promise((r) => setTimeout(r, 10));
    }
    return { store, sink };
  }

  it('after inserting the batch and before committing it, erases every table by a bound id, then logs the erasure', async () => {
    const { store, sink } = await run(0);
    // Expired message bodies are emptied at start on this (18.16) store: not part of the erasure.
    const calls = store.calls.filter(
      (c) =>
        !c.sql.includes('version()') &&
        !c.sql.includes('FROM lc.erasures') &&
        !c.sql.includes('{cutoff:UInt64}'),
    );
    expect(
      calls.map((c) => `${c.op} ${c.op === 'insert' ? c.sql : c.sql.replace(/ WHERE .*/, '')}`),
    ).toEqual([
      'insert lc.events',
      'query SELECT count() AS n FROM lc.events',
      'command ALTER TABLE lc.events DELETE',
      'query SELECT count() AS n FROM lc.sends',
      'command ALTER TABLE lc.sends DELETE',
      'query SELECT count() AS n FROM lc.deliveries',
      'command ALTER TABLE lc.deliveries DELETE',
      'query SELECT count() AS n FROM lc.messages',
      'command ALTER TABLE lc.messages DELETE',
      'insert lc.erasures',
    ]);
    // Nothing was committed before the erasure was logged.
    expect(calls.every((c) => c.committed === undefined)).toBe(true);
    for (const c of calls.filter((x) => x.op !== 'insert')) {
      expect(c.params).toEqual({ user: USER });
      expect(c.sql).not.toContain('DROP');
    }
    expect(calls.at(-1)!.rows).toEqual([
      {
        user_id: USER,
        request_id: 'd1',
        request_source: 'cdc:appdb',
        requested_at_ms: 1_780_000_000_000,
        requested_at: 1_780_000_000,
        erased_at_ms: expect.any(Number) as number,
        erased_at: expect.any(Number) as number,
        method: 'mutation',
        erased_tables: ['events', 'sends', 'deliveries', 'messages'],
        erased_rows: [2, 2, 2, 2],
      },
    ]);
    expect(sink.health().ok).toBe(true);
  });

  it('retries an erasure ClickHouse refuses and commits the deletion only once it went through', async () => {
    const { store } = await run(2);
    const erasures = store.calls.filter(
      (c) => (c.op === 'command' && !c.sql.includes('{cutoff:UInt64}')) || c.sql === 'lc.erasures',
    );
    expect(erasures.map((c) => c.sql.replace(/ WHERE .*/, ''))).toEqual([
      'ALTER TABLE lc.events DELETE',
      'ALTER TABLE lc.sends DELETE',
      'ALTER TABLE lc.deliveries DELETE',
      'ALTER TABLE lc.messages DELETE',
      'lc.erasures',
    ]);
    expect(erasures.every((c) => c.committed === undefined)).toBe(true);
  });
});

describe('the sink after an erasure', () => {
  const t = topics('lc');
  const sinks: AnalyticsSink[] = [];
  afterEach(async () => {
    for (const s of sinks.splice(0)) await s.stop();
  });
  const event = (id: string, userId: string, type: string): NormalisedEvent => ({
    id,
    userId,
    type,
    ts: 1_780_000_000_000,
    receivedAt: 1_780_000_000_100,
    source: 'cdc:appdb',
    properties: {},
  });

  it('drops rows that arrive later for a user it erased or the erasure log names, and keeps the deletion rows', async () => {
    const bus = new InMemoryBus(1);
    await bus.ensureTopics(internalTopicSpecs(t, 1));
    const inserted: Record<string, object[]> = {};
    const logReads: QueryParams[] = [];
    // The log names a user erased before this sink started (by another instance, or before a restart).
    const store: EngineAnalyticsStore = {
      backend: 'server',
      async command() {},
      async insert(table, rows) {
        (inserted[table] ??= []).push(...rows);
      },
      async query<T>(sql: string, params?: QueryParams): Promise<T[]> {
        if (sql.includes('version()')) return [{ v: '18.16.1' }] as T[];
        if (sql.includes('count()')) return [{ n: 1 }] as T[];
        if (sql.includes('FROM lc.erasures')) {
          logReads.push(params ?? {});
          return [{ user_id: 'erased-before', at: 1_770_000_000_000 }] as T[];
        }
        return [];
      },
      async close() {},
    };
    const metrics = createMetricsRegistry({ defaults: false });
    const sink = createAnalyticsSink(
      { groupId: 'sink', topicPrefix: 'lc', database: 'lc', flushIntervalMs: 20, retryMaxMs: 20 },
      { bus, store, logger: silentLogger(), metrics },
    );
    sinks.push(sink);
    const publishEvents = (events: NormalisedEvent[]) =>
      bus.publisher().publish(
        t.events,
        events.map((e) => ({ key: e.userId, ...encodeWithHeader(eventCodec, e) })),
      );
    const committed = async (topic: string, n: number) => {
      const end = Date.now() + 5000;
      while (bus.groupOffsets('sink', topic).get(0) !== n) {
        if (Date.now() > end) throw new Error(`${topic} not committed to ${n}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    await publishEvents([
      event('e1', 'ada', 'login'),
      event('e2', 'erased-before', 'login'),
      event('d1', 'ada', 'user_deleted'),
    ]);
    await sink.start();
    await committed(t.events, 3);
    // In flight when ada was erased: an event, a send and its outcome; and a replayed deletion.
    await publishEvents([
      event('e3', 'ada', 'page'),
      event('e4', 'bob', 'page'),
      event('d2', 'erased-before', 'user_deleted'),
    ]);
    await bus
      .publisher()
      .publish(t.sends, [
        { key: 'ada', ...encodeWithHeader(sendCodec, { ...SENDS[0]!, userId: 'ada' }) },
      ]);
    await bus.publisher().publish(t.deliveries, [
      {
        key: 'ada',
        ...encodeWithHeader(deliveryCodec, { ...DELIVERIES[0]!, userId: 'ada' }),
      },
    ]);
    await committed(t.events, 6);
    await committed(t.sends, 1);
    await committed(t.deliveries, 1);

    const ids = (table: string) => (inserted[table] ?? []).map((r) => (r as { id: string }).id);
    // e1 went in before its user's deletion (and was erased with it); nothing of ada after it.
    expect(ids('lc.events')).toEqual(['e1', 'd1', 'e4', 'd2']);
    expect(inserted['lc.sends'] ?? []).toEqual([]);
    expect(inserted['lc.deliveries'] ?? []).toEqual([]);
    expect(logReads[0]).toEqual({ since: 0 });
    const dropped = (await metrics.getMetricsAsJSON()).find(
      (m) => m.name === 'lifecycle_sink_erased_rows_dropped_total',
    );
    expect(
      Object.fromEntries(dropped!.values.map((v) => [String(v.labels.table), v.value])),
    ).toEqual({ events: 2, sends: 1, deliveries: 1 });
  });
});

describe('chunkByMonth', () => {
  const at = (iso: string) => ({ ts: Date.parse(iso) / 1000 });

  it('keeps a batch whole when it spans few months', () => {
    const rows = [
      at('2025-01-31T23:59:59Z'),
      at('2025-02-01T00:00:00Z'),
      at('2025-01-05T00:00:00Z'),
    ];
    expect(chunkByMonth(rows, (r) => r.ts)).toEqual([rows]);
    expect(chunkByMonth([], (r: { ts: number }) => r.ts)).toEqual([]);
  });

  it('splits a backfill over many years into inserts of at most maxMonths partitions, losing nothing', () => {
    const rows = Array.from({ length: 240 }, (_, i) =>
      at(new Date(Date.UTC(2000, i, 15)).toISOString()),
    );
    const chunks = chunkByMonth(rows, (r) => r.ts, 50);
    expect(chunks).toHaveLength(5);
    for (const c of chunks) {
      const months = new Set(c.map((r) => new Date(r.ts * 1000).toISOString().slice(0, 7)));
      expect(months.size).toBeLessThanOrEqual(50);
    }
    expect(
      chunks
        .flat()
        .map((r) => r.ts)
        .sort(),
    ).toEqual(rows.map((r) => r.ts).sort());
  });
});

describe('message bodies past their TTL', () => {
  const t = topics('lc');
  const sinks: AnalyticsSink[] = [];
  afterEach(async () => {
    for (const s of sinks.splice(0)) await s.stop();
  });

  /** A store of the given engine version whose message log holds `expired` rows with old bodies. */
  function storeOf(version: string, expired: number) {
    const commands: { sql: string; params: QueryParams | undefined }[] = [];
    const store: EngineAnalyticsStore = {
      backend: 'server',
      async command(sql, params) {
        commands.push({ sql, params });
      },
      async insert() {},
      async query<T>(sql: string): Promise<T[]> {
        if (sql.includes('version()')) return [{ v: version }] as T[];
        if (sql.includes('count()')) return [{ n: expired }] as T[];
        return [];
      },
      async close() {},
    };
    return { store, commands };
  }

  async function start(version: string, expired: number) {
    const bus = new InMemoryBus(1);
    await bus.ensureTopics(internalTopicSpecs(t, 1));
    const { store, commands } = storeOf(version, expired);
    const now = Date.UTC(2026, 5, 1);
    const sink = createAnalyticsSink(
      {
        groupId: 'sink',
        topicPrefix: 'lc',
        database: 'lc',
        messageBodyTtlDays: 7,
        bodyExpiryEveryMs: 20,
        now: () => now,
      },
      { bus, store, logger: silentLogger(), metrics: createMetricsRegistry({ defaults: false }) },
    );
    sinks.push(sink);
    await sink.start();
    await new Promise((r) => setTimeout(r, 100));
    return { commands, now };
  }

  it('are emptied by the sink where the engine has no column TTL, at start and then on schedule', async () => {
    const { commands, now } = await start('18.16.1', 3);
    const updates = commands.filter((c) => c.sql.includes('UPDATE'));
    expect(updates.length).toBeGreaterThanOrEqual(2);
    expect(updates[0]!.sql).toMatch(
      /^ALTER TABLE lc\.messages UPDATE subject = '', html = '', text = '', content = '', data = '' WHERE ts_ms < \{cutoff:UInt64\}/,
    );
    expect(updates[0]!.params).toEqual({ cutoff: now - 7 * 86_400_000 });
  });

  it('are left to the column TTL where the engine has one, and no mutation is made when none expired', async () => {
    expect((await start('24.3.1.2672', 3)).commands).toEqual([]);
    expect((await start('18.16.1', 0)).commands).toEqual([]);
  });
});

describe('the sink and the send API', () => {
  const t = topics('lc');
  const sinks: AnalyticsSink[] = [];
  afterEach(async () => {
    for (const s of sinks.splice(0)) await s.stop();
  });

  it('stores the high-priority sends topic in the sends table, with who asked and the pinned template version', async () => {
    const bus = new InMemoryBus(1);
    await bus.ensureTopics(internalTopicSpecs(t, 1));
    const inserted: Record<string, object[]> = {};
    const store: EngineAnalyticsStore = {
      backend: 'server',
      async command() {},
      async insert(table, rows) {
        (inserted[table] ??= []).push(...rows);
      },
      async query<T>(sql: string): Promise<T[]> {
        if (sql.includes('version()')) return [{ v: '18.16.1' }] as T[];
        return [];
      },
      async close() {},
    };
    const sink = createAnalyticsSink(
      { groupId: 'sink', topicPrefix: 'lc', database: 'lc', flushIntervalMs: 20, retryMaxMs: 20 },
      { bus, store, logger: silentLogger(), metrics: createMetricsRegistry({ defaults: false }) },
    );
    sinks.push(sink);
    const api = {
      ...SENDS[0]!,
      sendId: 'api-1',
      ruleId: 'api',
      priority: 1000,
      origin: 'api:key_backend',
      templateVersion: 3,
    };
    await bus
      .publisher()
      .publish(t.sendsHigh, [{ key: api.userId, ...encodeWithHeader(sendCodec, api) }]);
    await sink.start();
    const end = Date.now() + 5000;
    while (!inserted['lc.sends']) {
      if (Date.now() > end) throw new Error('no sends row');
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(inserted['lc.sends']).toEqual([
      expect.objectContaining({
        send_id: 'api-1',
        rule_id: 'api',
        priority: 1000,
        origin: 'api:key_backend',
        template_version: 3,
      }),
    ]);
  });
});
