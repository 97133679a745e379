// The CDC consumer on the in-memory bus: a record that cannot be mapped is dead-lettered
// and the stream goes on; only infrastructure (Kafka not acknowledging) stops a batch;
// Avro keys travel as their bytes into event ids and DLQ copies.
import avro from 'avsc';
import { describe, expect, it } from 'vitest';
import { eventCodec } from '../../platform/avro.ts';
import { InMemoryBus, type Bus, type OutgoingMessage } from '../../platform/bus.ts';
import { DlqHeaders, SCHEMA_ID_HEADER } from '../../platform/contracts.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import type { SchemaRegistry } from './debezium.ts';
import { cdcEventId } from './mapper.ts';
import { loadMapping, type CdcMapping } from './mapping.ts';
import { createCdcProcessor } from './processor.ts';

const NOW = 1_780_000_000_000;
const TOPIC = 'appdb.public.users';
const mapping = loadMapping('ingestion/cdc-mapping.example.json');
const source = (lsn: number) => ({
  connector: 'postgresql',
  name: 'appdb',
  db: 'app',
  schema: 'public',
  table: 'users',
  lsn,
  txId: 7,
  ts_ms: NOW - 1000,
  snapshot: 'false',
});
const user = (id: number) => ({
  id,
  email: `u${id}@example.com`,
  plan: 'trial',
  first_name: 'Ann',
  password_hash: 'x',
  created_at: 1_700_000_000_123_456,
  trial_ends_at: null,
  email_verified: false,
  signup_source: 'ads',
});
const json = (v: unknown) => Buffer.from(JSON.stringify(v));

function start(
  bus: Pick<Bus, 'consumer' | 'publisher'>,
  m: CdcMapping = mapping,
  registry?: SchemaRegistry,
) {
  return createCdcProcessor(
    { cdc: { topics: ['/^appdb\\./'] }, kafka: { topicPrefix: 'lc' }, groupId: 'cdc-test' },
    {
      bus,
      logger: silentLogger(),
      metrics: createMetricsRegistry({ defaults: false }),
      mapping: m,
      clock: () => NOW,
      ...(registry ? { registry } : {}),
    },
  );
}

async function until(what: string, check: () => boolean, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const committed = (bus: InMemoryBus) =>
  bus.committedOffset(
    { groupId: 'cdc-test', topics: [], eachBatch: async () => {} },
    { topic: TOPIC, partition: 0 },
  );
const decoded = (bus: InMemoryBus) =>
  bus.messages('lc.events').map((m) => eventCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]));

describe('CDC processor: bad records never stop the stream', () => {
  it('PostgreSQL infinity is a value, a record that cannot be mapped goes to the DLQ, and the good ones around it come out', async () => {
    const bus = new InMemoryBus(1);
    await bus.ensureTopics([{ topic: TOPIC, partitions: 1 }]);
    // 'infinity' timestamps arrive as epoch micros beyond any Date; written by hand, as Debezium does.
    const infinity = Buffer.from(
      JSON.stringify({
        before: null,
        after: { ...user(43), trial_ends_at: 0 },
        source: source(1001),
        op: 'c',
      }).replace('"trial_ends_at":0', '"trial_ends_at":9223372036825200000'),
    );
    // A JSON value nested deeper than any encoder's stack: mapping it cannot succeed, retrying cannot help.
    const deep = Buffer.from(
      JSON.stringify({
        before: null,
        after: { ...user(44), prefs: 0 },
        source: source(1002),
        op: 'c',
      }).replace('"prefs":0', `"prefs":${'['.repeat(200_000)}${']'.repeat(200_000)}`),
    );
    await bus.publisher().publish(TOPIC, [
      {
        key: '{"id":42}',
        value: json({ before: null, after: user(42), source: source(1000), op: 'c' }),
      },
      { key: '{"id":43}', value: infinity },
      { key: '{"id":44}', value: deep },
      {
        key: '{"id":42}',
        value: json({
          before: user(42),
          after: { ...user(42), plan: 'pro' },
          source: source(1010),
          op: 'u',
        }),
      },
    ]);
    const p = start(bus);
    await p.start();
    await until('the batch to be committed', () => committed(bus) === 4);
    expect(p.health()).toMatchObject({ ok: true, details: { lastError: null } });
    await p.stop();
    expect(p.health().ok).toBe(false);

    const events = decoded(bus);
    expect(events.map((e) => [e.userId, e.type])).toEqual([
      ['42', 'user_registered'],
      ['43', 'user_registered'],
      ['42', 'plan_changed'],
    ]);
    expect(events[1]!.traits).toMatchObject({
      trial_ends_at: 'infinity',
      createdAt: '2023-11-14T22:13:20.123Z',
    });
    const dlq = bus.messages('lc.dlq');
    expect(dlq).toHaveLength(1);
    expect(dlq[0]!.value).toEqual(deep);
    expect(dlq[0]!.keyBytes).toEqual(Buffer.from('{"id":44}'));
    expect(dlq[0]!.headers).toMatchObject({
      [DlqHeaders.sourceTopic]: TOPIC,
      [DlqHeaders.sourcePartition]: '0',
      [DlqHeaders.sourceOffset]: '2',
      [DlqHeaders.stage]: 'cdc.depth',
    });
    expect(dlq[0]!.headers[DlqHeaders.reason]).toMatch(
      /^too deep: the row \(after\) nests objects and arrays deeper than 32 levels/,
    );
  });

  it('a row or a JSON column nested deeper than ingest accepts goes to the DLQ (stage cdc.depth), the rows around it come out', async () => {
    const bus = new InMemoryBus(1);
    await bus.ensureTopics([{ topic: TOPIC, partitions: 1 }]);
    const withPrefs: CdcMapping = {
      ...mapping,
      tables: {
        ...mapping.tables,
        'public.users': { ...mapping.tables['public.users']!, columns: { prefs: 'json' } },
      },
    };
    // 40 levels: far from any stack limit, so nothing but the cap keeps it out of the pipeline.
    const nested = (levels: number): unknown => (levels === 0 ? 1 : { a: nested(levels - 1) });
    const row = (id: number, lsn: number, prefs: unknown) =>
      json({ before: null, after: { ...user(id), prefs }, source: source(lsn), op: 'c' });
    await bus.publisher().publish(TOPIC, [
      { key: '{"id":50}', value: row(50, 2000, { theme: 'dark' }) },
      // A JSON column as Debezium writes it: text, parsed by the mapping.
      { key: '{"id":51}', value: row(51, 2001, JSON.stringify(nested(40))) },
      // A nested value in the row itself.
      { key: '{"id":52}', value: row(52, 2002, nested(40)) },
      // Just within the limit: the traits object is level 2, so the column holds 30 more.
      { key: '{"id":53}', value: row(53, 2003, JSON.stringify(nested(30))) },
    ]);
    const p = start(bus, withPrefs);
    await p.start();
    await until('the batch to be committed', () => committed(bus) === 4);
    await p.stop();
    expect(decoded(bus).map((e) => e.userId)).toEqual(['50', '53']);
    const dlq = bus.messages('lc.dlq');
    expect(dlq.map((m) => m.headers[DlqHeaders.sourceOffset])).toEqual(['1', '2']);
    expect(dlq.map((m) => m.headers[DlqHeaders.stage])).toEqual(['cdc.depth', 'cdc.depth']);
    expect(dlq[0]!.headers[DlqHeaders.reason]).toBe(
      'too deep: the traits of event "user_registered" nests objects and arrays deeper than 32 levels, the limit of event data',
    );
    expect(dlq[1]!.headers[DlqHeaders.reason]).toBe(
      'too deep: the row (after) nests objects and arrays deeper than 32 levels, the limit of event data',
    );
  });

  it('an update whose comparison would overflow the mapping is refused before mapping (stage cdc.depth)', async () => {
    const bus = new InMemoryBus(1);
    await bus.ensureTopics([{ topic: TOPIC, partitions: 1 }]);
    const prefs: CdcMapping = {
      source: 'app-db',
      tables: {
        'public.users': {
          userId: 'id',
          traits: ['plan'],
          update: [{ when: 'prefs', event: 'prefs_changed', properties: false }],
        },
      },
    };
    const deepUpdate = Buffer.from(
      JSON.stringify({
        before: { ...user(44), prefs: 1 },
        after: { ...user(44), prefs: 0 },
        source: source(2000),
        op: 'u',
      }).replace('"prefs":0', `"prefs":${'['.repeat(200_000)}${']'.repeat(200_000)}`),
    );
    await bus.publisher().publish(TOPIC, [
      { key: '{"id":44}', value: deepUpdate },
      {
        key: '{"id":42}',
        value: json({
          before: { ...user(42), prefs: 1 },
          after: { ...user(42), prefs: 2 },
          source: source(2001),
          op: 'u',
        }),
      },
    ]);
    const p = start(bus, prefs);
    await p.start();
    await until('the batch to be committed', () => committed(bus) === 2);
    await p.stop();
    expect(decoded(bus).map((e) => [e.userId, e.type])).toEqual([['42', 'prefs_changed']]);
    expect(
      bus
        .messages('lc.dlq')
        .map((m) => [
          m.headers[DlqHeaders.sourceOffset],
          m.headers[DlqHeaders.stage],
          m.headers[DlqHeaders.reason],
        ]),
    ).toEqual([['0', 'cdc.depth', expect.stringMatching(/^too deep: the row \(after\)/)]]);
  });

  it('Kafka not acknowledging stops the batch: nothing committed, health says why, and it flows again once Kafka is back', async () => {
    const inner = new InMemoryBus(1);
    await inner.ensureTopics([{ topic: TOPIC, partitions: 1 }]);
    await inner.publisher().publish(TOPIC, [
      {
        key: '{"id":42}',
        value: json({ before: null, after: user(42), source: source(1000), op: 'c' }),
      },
      { key: '{"id":43}', value: Buffer.from('garbage') },
    ]);
    let kafkaDown = true;
    let refused = 0;
    const bus: Pick<Bus, 'consumer' | 'publisher'> = {
      consumer: (s) => inner.consumer(s),
      publisher: () => {
        const real = inner.publisher();
        return {
          publish: async (topic: string, messages: OutgoingMessage[]) => {
            if (kafkaDown) {
              refused++;
              throw new Error(`KafkaJSNumberOfRetriesExceeded: ${topic} not acknowledged`);
            }
            await real.publish(topic, messages);
          },
        };
      },
    };
    const p = start(bus);
    await p.start();
    await until('a refused produce', () => refused >= 2 && !p.health().ok);
    expect(p.health().details).toMatchObject({
      lastError: expect.stringMatching(/not acknowledged/),
    });
    expect(committed(inner)).toBe(0);
    expect(inner.messages('lc.events')).toHaveLength(0);
    kafkaDown = false;
    await until('the batch to be committed', () => committed(inner) === 2);
    expect(p.health()).toMatchObject({ ok: true, details: { lastError: null } });
    await p.stop();
    expect(decoded(inner).map((e) => e.type)).toEqual(['user_registered']);
    expect(inner.messages('lc.dlq').map((m) => m.headers[DlqHeaders.reason])).toEqual([
      expect.stringMatching(/^unparseable/),
    ]);
  });
});

describe('CDC processor: a batch that keeps failing', () => {
  it('stops its partition after the last attempt: nothing committed, health names the partition', async () => {
    const inner = new InMemoryBus(1);
    await inner.ensureTopics([{ topic: TOPIC, partitions: 1 }]);
    await inner.publisher().publish(TOPIC, [
      {
        key: '{"id":42}',
        value: json({ before: null, after: user(42), source: source(1000), op: 'c' }),
      },
    ]);
    let refused = 0;
    const bus: Pick<Bus, 'consumer' | 'publisher'> = {
      consumer: (s) => inner.consumer(s),
      publisher: () => ({
        publish: async () => {
          refused++;
          throw new Error('KafkaJSNumberOfRetriesExceeded: not acknowledged');
        },
      }),
    };
    const p = createCdcProcessor(
      {
        cdc: { topics: ['/^appdb\\./'] },
        kafka: { topicPrefix: 'lc' },
        groupId: 'cdc-test',
        retry: { maxBatchAttempts: 3, retryBackoff: { initialMs: 5, maxMs: 5 } },
      },
      {
        bus,
        logger: silentLogger(),
        metrics: createMetricsRegistry({ defaults: false }),
        mapping,
        clock: () => NOW,
      },
    );
    await p.start();
    await until(
      'the partition to stop',
      () => (p.health().details?.stalled as unknown[] | undefined)?.length === 1,
    );
    expect(p.health()).toMatchObject({
      ok: false,
      details: {
        stalled: [
          {
            topic: TOPIC,
            partition: 0,
            offset: '0',
            attempts: 3,
            error: expect.stringMatching(/not acknowledged/) as string,
          },
        ],
      },
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(refused).toBe(3);
    expect(committed(inner)).toBe(0);
    await p.stop();
  });
});

describe('CDC processor: Avro keys', () => {
  const keySchema = {
    type: 'record',
    name: 'Key',
    namespace: 'appdb.public.users',
    fields: [{ name: 'id', type: 'int' }],
  };
  const rowSchema = {
    type: 'record',
    name: 'Value',
    namespace: 'appdb.public.users',
    fields: [
      { name: 'id', type: 'int' },
      { name: 'plan', type: 'string' },
    ],
  };
  const envelope = {
    type: 'record',
    name: 'Envelope',
    namespace: 'appdb.public.users',
    fields: [
      { name: 'before', type: ['null', rowSchema], default: null },
      { name: 'after', type: ['null', 'Value'], default: null },
      {
        name: 'source',
        type: {
          type: 'record',
          name: 'Source',
          fields: [
            { name: 'connector', type: 'string' },
            { name: 'schema', type: 'string' },
            { name: 'table', type: 'string' },
            { name: 'lsn', type: 'long' },
            { name: 'ts_ms', type: 'long' },
          ],
        },
      },
      { name: 'op', type: 'string' },
    ],
  };
  const schemas = new Map<number, unknown>([
    [11, envelope],
    [12, keySchema],
  ]);
  const registry: SchemaRegistry = {
    schema: async (id) => schemas.get(id) ?? Promise.reject(new Error(`no schema ${id}`)),
  };
  const wire = (id: number, body: Buffer) => {
    const h = Buffer.alloc(5);
    h.writeInt32BE(id, 1);
    return Buffer.concat([h, body]);
  };
  const key = (id: number) =>
    wire(12, avro.Type.forSchema(keySchema as avro.Schema).toBuffer({ id }));
  const row = (id: number, table = 'users') =>
    wire(
      11,
      avro.Type.forSchema(envelope as avro.Schema).toBuffer({
        before: null,
        after: { id, plan: 'pro' },
        source: { connector: 'postgresql', schema: 'public', table, lsn: 777, ts_ms: NOW - 1000 },
        op: 'r',
      }),
    );
  /** What a Kafka producer writes and the consumer reads: the bytes, and the text they read as. */
  const binary = (bytes: Buffer): Pick<OutgoingMessage, 'key' | 'keyBytes'> => ({
    key: bytes.toString('utf8'),
    keyBytes: bytes,
  });

  it('snapshot rows 200 and 201 (same log position) get the event ids of their own keys; a dead-lettered record keeps its key bytes', async () => {
    // As UTF-8 text both keys read the same: only the bytes tell the rows apart.
    expect(key(200).toString('utf8')).toBe(key(201).toString('utf8'));
    const bus = new InMemoryBus(1);
    await bus.ensureTopics([{ topic: TOPIC, partitions: 1 }]);
    await bus.publisher().publish(TOPIC, [
      { ...binary(key(200)), value: row(200) },
      { ...binary(key(201)), value: row(201) },
      { ...binary(key(202)), value: row(202, 'orders') },
    ]);
    // A table mapped by its primary key alone: only the key can tell the two snapshot rows apart.
    const byKey: CdcMapping = {
      source: 'app-db',
      tables: {
        'public.users': {
          userId: 'plan',
          traits: false,
          snapshot: 'events',
          insert: { event: 'user_imported', properties: false },
        },
      },
    };
    const p = start(bus, byKey, registry);
    await p.start();
    await until('the batch to be committed', () => committed(bus) === 3);
    await p.stop();
    const ids = bus
      .messages('lc.events')
      .map((m) => eventCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]).id);
    expect(ids).toEqual(
      [200, 201].map((id) =>
        cdcEventId('cdc:app-db', 'lsn:777', 'public.users', { id }, 'user_imported'),
      ),
    );
    const [dead] = bus.messages('lc.dlq');
    expect(dead!.headers[DlqHeaders.reason]).toMatch(/^unknown table public\.orders/);
    expect(dead!.keyBytes).toEqual(key(202));
  });
});
