import { describe, expect, it } from 'vitest';
import avro from 'avsc';
import fc from 'fast-check';
import { InMemoryBus, type IncomingMessage } from '../../platform/bus.ts';
import { eventCodec } from '../../platform/avro.ts';
import { DlqHeaders, SCHEMA_ID_HEADER } from '../../platform/contracts.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import { checkMapping, loadMapping, MappingError, type CdcMapping } from './mapping.ts';
import {
  createSchemaRegistry,
  decodeChange,
  inlineReferences,
  type SchemaRegistry,
} from './debezium.ts';
import { losslessLongs } from './lossless.ts';
import { cdcEventId } from './mapper.ts';
import { createCdcProcessor, processRecord } from './processor.ts';
import { convertRow, convertValue } from './values.ts';

const mapping = loadMapping('ingestion/cdc-mapping.example.json');
const NOW = 1_780_000_000_000;
const source = (over: Record<string, unknown> = {}) => ({
  connector: 'postgresql',
  name: 'appdb',
  db: 'app',
  schema: 'public',
  table: 'users',
  lsn: 1000,
  txId: 7,
  ts_ms: 1_779_999_999_000,
  snapshot: 'false',
  ...over,
});
const user = {
  id: 42,
  email: 'a@example.com',
  plan: 'trial',
  first_name: 'Ann',
  password_hash: 'x',
  created_at: 1_700_000_000_123_456,
  trial_ends_at: null,
  email_verified: false,
  signup_source: 'ads',
};
const msg = (value: unknown, key: unknown = { id: 42 }, offset = '0'): IncomingMessage => ({
  topic: 'appdb.public.users',
  partition: 0,
  offset,
  key: key === null ? null : JSON.stringify(key),
  value:
    value === null ? null : Buffer.isBuffer(value) ? value : Buffer.from(JSON.stringify(value)),
  headers: {},
  timestamp: NOW,
});
const map = async (value: unknown, key?: unknown) =>
  processRecord(msg(value, key), mapping, undefined, NOW);

describe('CDC mapping file', () => {
  it('the shipped example is valid', () => {
    expect(checkMapping(mapping)).toEqual([]);
  });

  it('reports each problem with a JSON path', () => {
    const problems = checkMapping({
      source: 'bad name',
      tables: {
        'public.users': {
          userId: 'id',
          insert: { evnt: 'x' },
          update: [{ when: ['a', 'b'], to: 1, event: 'e' }],
        },
        x: { exclude: ['id'] },
      },
    });
    const paths = problems.map((p) => p.path);
    expect(paths).toContain('$.source');
    expect(paths).toContain('$.tables["public.users"].insert.event');
    expect(problems.find((p) => p.path === '$.tables["public.users"].insert.evnt')?.message).toBe(
      'Unexpected property',
    );
    expect(paths).toContain('$.tables.x.userId');
  });

  it('semantic checks: excluded user id, from/to on several columns', () => {
    expect(
      checkMapping({
        source: 's',
        tables: {
          t: { userId: 'id', exclude: ['id'], update: [{ when: ['a', 'b'], to: 1, event: 'e' }] },
        },
      }),
    ).toEqual([
      { path: '$.tables.t.exclude', message: 'the user id column "id" cannot be excluded' },
      { path: '$.tables.t.update[0]', message: '"from"/"to" need a single "when" column' },
    ]);
  });

  it('loadMapping names the file', () => {
    expect(() => loadMapping('package.json')).toThrow(MappingError);
    expect(() => loadMapping('package.json')).toThrow(/^package\.json:\$\.source: /);
  });
});

describe('Debezium values', () => {
  it.each([
    [
      1_700_000_000_123_456,
      { name: 'io.debezium.time.MicroTimestamp' },
      '2023-11-14T22:13:20.123Z',
    ],
    [1_700_000_000_123, { name: 'io.debezium.time.Timestamp' }, '2023-11-14T22:13:20.123Z'],
    [
      '2023-11-14T22:13:20.123456Z',
      { name: 'io.debezium.time.ZonedTimestamp' },
      '2023-11-14T22:13:20.123Z',
    ],
    [19_675, { name: 'io.debezium.time.Date' }, '2023-11-14'],
    ['AYag', { name: 'org.apache.kafka.connect.data.Decimal', scale: 2 }, 1000],
    [{ scale: 1, value: '/w==' }, { name: 'io.debezium.data.VariableScaleDecimal' }, -0.1],
    ['{"a":1}', { name: 'io.debezium.data.Json' }, { a: 1 }],
    ['19.99', { declared: 'decimal' as const }, 19.99],
    ['19.90', { sourceType: 'NUMERIC' }, 19.9],
    ['19.90', {}, '19.90'],
    [1_700_000_000_123_456, { declared: 'timestamp-micros' as const }, '2023-11-14T22:13:20.123Z'],
    [1_700_000_000_123_456, { declared: 'timestamp' as const }, '2023-11-14T22:13:20.123Z'],
    [null, { declared: 'decimal' as const }, null],
  ])('%j as %j -> %j', (v, enc, expected) => {
    expect(convertValue(v, enc)).toEqual(expected);
  });

  const micros = { name: 'io.debezium.time.MicroTimestamp' };
  const decimal2 = { name: 'org.apache.kafka.connect.data.Decimal', scale: 2 };
  it.each([
    // PostgreSQL's infinity / -infinity as Debezium writes them (epoch micros beyond any Date),
    // as a number, as the decimal string the lossless decoders give, and as bigint.
    [9_223_372_036_825_200_000, micros, 'infinity'],
    ['9223372036825200000', micros, 'infinity'],
    [-9_223_372_036_832_400_000n, micros, '-infinity'],
    ['-9223372036832400000', { name: 'io.debezium.time.Timestamp' }, '-infinity'],
    ['infinity', { name: 'io.debezium.time.ZonedTimestamp' }, 'infinity'],
    [2_147_483_647, { name: 'io.debezium.time.Date' }, 'infinity'],
    [-2_147_483_648, { declared: 'date-days' as const }, '-infinity'],
    // the last millisecond a Date holds is still a time
    [8_640_000_000_000_000_000, micros, '+275760-09-13T00:00:00.000Z'],
    [8_640_000_000_000_001_000, micros, 'infinity'],
    // before 1970, micros and nanos round down to the millisecond, as Date does
    [-1, micros, '1969-12-31T23:59:59.999Z'],
    ['1700000000123456789', { name: 'io.debezium.time.NanoTimestamp' }, '2023-11-14T22:13:20.123Z'],
    [1_700_000_000_123, { declared: 'timestamp-millis' as const }, '2023-11-14T22:13:20.123Z'],
    ['1700000000123456789', { declared: 'timestamp-nanos' as const }, '2023-11-14T22:13:20.123Z'],
    ['1700000000123456789', { declared: 'timestamp' as const }, '2023-11-14T22:13:20.123Z'],
    [19_675, { declared: 'date-days' as const }, '2023-11-14'],
    // Decimal bytes, base64 in JSON: "0000" is the bytes d3 4d 34, not the number 0
    ['0000', decimal2, -29293.56],
    ['AAAA', decimal2, 0],
    [Buffer.from('01869f', 'hex'), decimal2, 999.99],
    // beyond 15 significant digits a decimal keeps every digit as a string
    ['GiSbHxCgbJav8g==', { ...decimal2, scale: 4 }, '12345678901234567890.1234'],
    [
      { scale: 0, value: 'GiSbHxCgbJav8g==' },
      { name: 'io.debezium.data.VariableScaleDecimal' },
      '123456789012345678901234',
    ],
    ['12345678901234567890.12', { declared: 'decimal' as const }, '12345678901234567890.12'],
    ['123456789012345.67', { sourceType: 'NUMERIC' }, '123456789012345.67'],
    ['-0.00', { sourceType: 'NUMERIC' }, 0],
    ['NaN', { sourceType: 'NUMERIC' }, 'NaN'],
    // declared numbers: text to number without losing digits
    ['42', { declared: 'number' as const }, 42],
    ['9007199254740993', { declared: 'number' as const }, '9007199254740993'],
    ['9007199254740991', { declared: 'number' as const }, 9_007_199_254_740_991],
    ['abc', { declared: 'number' as const }, 'abc'],
    // booleans as PostgreSQL, JSON and integers write them
    ['t', { declared: 'boolean' as const }, true],
    ['false', { declared: 'boolean' as const }, false],
    [1, { declared: 'boolean' as const }, true],
    ['yes', { declared: 'boolean' as const }, 'yes'],
    ['{"a":[1,null]}', { declared: 'json' as const }, { a: [1, null] }],
    ['{not json', { declared: 'json' as const }, '{not json'],
    [42, { declared: 'string' as const }, '42'],
    // large integers outside declared columns stay decimal strings; bigints the same
    ['1234567890123456789', {}, '1234567890123456789'],
    [1_234_567_890_123_456_789n, {}, '1234567890123456789'],
    [42n, {}, 42],
  ])('%s as %j -> %j (range, precision, declared types)', (v, enc, expected) => {
    expect(convertValue(v, enc)).toEqual(expected);
  });
});

describe('row changes -> events', () => {
  it('insert into users: user_registered with traits from after, excluded and renamed columns, stable id', async () => {
    const out = await map({ before: null, after: user, source: source(), op: 'c', ts_ms: NOW });
    expect(out.kind).toBe('events');
    if (out.kind !== 'events') return;
    const [e] = out.events;
    expect(e).toMatchObject({
      userId: '42',
      type: 'user_registered',
      ts: 1_779_999_999_000,
      receivedAt: NOW,
      source: 'cdc:app-db',
      properties: { plan: 'trial', signup_source: 'ads' },
      traits: {
        id: 42,
        email: 'a@example.com',
        plan: 'trial',
        firstName: 'Ann',
        createdAt: '2023-11-14T22:13:20.123Z',
        trial_ends_at: null,
        email_verified: false,
        signup_source: 'ads',
      },
    });
    expect(e!.traits).not.toHaveProperty('password_hash');
    const again = await map({
      before: null,
      after: user,
      source: source(),
      op: 'c',
      ts_ms: NOW + 5000,
    });
    expect(again.kind === 'events' && again.events[0]!.id).toBe(e!.id);
    const otherLsn = await map({
      before: null,
      after: user,
      source: source({ lsn: 1001 }),
      op: 'c',
    });
    expect(otherLsn.kind === 'events' && otherLsn.events[0]!.id).not.toBe(e!.id);
  });

  it('update of plan: plan_changed with from/to and traits; a no-op update is skipped; other columns give identify', async () => {
    const up = await map({
      before: user,
      after: { ...user, plan: 'pro' },
      source: source({ lsn: 2000 }),
      op: 'u',
    });
    expect(
      up.kind === 'events' && up.events.map((e) => [e.type, e.properties, e.traits?.plan]),
    ).toEqual([['plan_changed', { from: 'trial', to: 'pro' }, 'pro']]);
    expect((await map({ before: user, after: user, source: source(), op: 'u' })).kind).toBe('skip');
    const email = await map({
      before: user,
      after: { ...user, email: 'b@example.com' },
      source: source(),
      op: 'u',
    });
    expect(email.kind === 'events' && email.events.map((e) => [e.type, e.traits?.email])).toEqual([
      ['identify', 'b@example.com'],
    ]);
    const verified = await map({
      before: user,
      after: { ...user, email_verified: true },
      source: source(),
      op: 'u',
    });
    expect(
      verified.kind === 'events' && verified.events.map((e) => [e.type, e.properties]),
    ).toEqual([['email_verified', { from: false, to: true }]]);
    // without a before image nothing is known to have changed: traits only
    const noBefore = await map({
      before: null,
      after: { ...user, plan: 'pro' },
      source: source(),
      op: 'u',
    });
    expect(noBefore.kind === 'events' && noBefore.events.map((e) => e.type)).toEqual(['identify']);
  });

  it('delete: user_deleted without traits; snapshot rows: traits only', async () => {
    const del = await map({ before: { id: 42 }, after: null, source: source(), op: 'd' });
    expect(
      del.kind === 'events' && del.events.map((e) => [e.type, e.properties, e.traits]),
    ).toEqual([['user_deleted', {}, undefined]]);
    const snap = await map({
      before: null,
      after: user,
      source: source({ snapshot: 'true' }),
      op: 'r',
    });
    expect(snap.kind === 'events' && snap.events.map((e) => e.type)).toEqual(['identify']);
  });

  it('subscriptions: decimal strings become numbers, cancellation by `to`, snapshot skipped, no traits', async () => {
    const sub = {
      id: 9,
      user_id: 42,
      plan: 'pro',
      amount: '19.90',
      currency: 'EUR',
      status: 'active',
      started_at: 1_700_000_000_000_000,
      canceled_at: null,
    };
    const s = source({ table: 'subscriptions' });
    const ins = await map({ before: null, after: sub, source: s, op: 'c' }, { id: 9 });
    expect(ins.kind === 'events' && ins.events[0]).toMatchObject({
      userId: '42',
      type: 'subscription_started',
      properties: { id: 9, plan: 'pro', amount: 19.9, currency: 'EUR', status: 'active' },
    });
    expect(ins.kind === 'events' && ins.events[0]!.traits).toBeUndefined();
    const cancel = await map(
      { before: sub, after: { ...sub, status: 'canceled' }, source: s, op: 'u' },
      { id: 9 },
    );
    expect(cancel.kind === 'events' && cancel.events.map((e) => [e.type, e.properties])).toEqual([
      [
        'subscription_canceled',
        { id: 9, plan: 'pro', amount: 19.9, currency: 'EUR', from: 'active', to: 'canceled' },
      ],
    ]);
    const paused = await map(
      { before: sub, after: { ...sub, status: 'paused' }, source: s, op: 'u' },
      { id: 9 },
    );
    expect(paused.kind).toBe('skip');
    expect((await map({ before: null, after: sub, source: s, op: 'r' }, { id: 9 })).kind).toBe(
      'skip',
    );
    expect((await map({ before: sub, after: null, source: s, op: 'd' }, { id: 9 })).kind).toBe(
      'skip',
    );
  });

  it('poison: unparseable, not an envelope, unknown table, no user id -> dlq with a reason; tombstones skipped', async () => {
    expect(await processRecord(msg(Buffer.from('{nope')), mapping, undefined, NOW)).toMatchObject({
      kind: 'dlq',
      reason: expect.stringMatching(/^unparseable: not JSON/),
    });
    expect(await map({ hello: 1 })).toMatchObject({
      kind: 'dlq',
      reason: expect.stringMatching(/not a Debezium change event/),
    });
    expect(
      await map({ before: null, after: user, source: source({ table: 'orders' }), op: 'c' }),
    ).toEqual({ kind: 'dlq', reason: 'unknown table public.orders: not in the CDC mapping' });
    expect(
      await map({ before: null, after: { ...user, id: null }, source: source(), op: 'c' }),
    ).toMatchObject({ kind: 'dlq', reason: expect.stringMatching(/no user id/) });
    expect(await map(null)).toEqual({ kind: 'skip', reason: 'tombstone' });
  });

  it('bigint user ids and keys keep every digit: two users JSON.parse would merge stay two', async () => {
    // Written by hand: a JavaScript number cannot hold these ids, JSON text can.
    const record = (id: string) => ({
      ...msg(null),
      key: `{"id":${id}}`,
      value: Buffer.from(
        `{"before":null,"after":{"id":${id},"email":"a@example.com","plan":"trial","visits":9007199254740993},"source":${JSON.stringify(source())},"op":"r"}`,
      ),
    });
    const snapshot: CdcMapping = {
      source: 'app-db',
      tables: {
        'public.users': {
          userId: 'id',
          snapshot: 'events',
          insert: { event: 'user_imported', properties: false },
        },
      },
    };
    const a = await processRecord(record('1234567890123456789'), snapshot, undefined, NOW);
    const b = await processRecord(record('1234567890123456790'), snapshot, undefined, NOW);
    if (a.kind !== 'events' || b.kind !== 'events')
      throw new Error(`expected events, got ${JSON.stringify([a, b])}`);
    expect([a.events[0]!.userId, b.events[0]!.userId]).toEqual([
      '1234567890123456789',
      '1234567890123456790',
    ]);
    expect(a.events[0]!.traits).toMatchObject({
      id: '1234567890123456789',
      visits: '9007199254740993',
    });
    // same log position (a snapshot): only the key tells the rows apart
    expect(a.events[0]!.id).toBe(
      cdcEventId(
        'cdc:app-db',
        'lsn:1000',
        'public.users',
        { id: '1234567890123456789' },
        'user_imported',
      ),
    );
    expect(b.events[0]!.id).not.toBe(a.events[0]!.id);
  });

  it('JSON with schemas enabled: column encodings come from the schema', async () => {
    const row = { id: 42, created_at: 1_700_000_000_123_456, amount: 'AYag' };
    const rowSchema = {
      type: 'struct',
      optional: true,
      name: 'appdb.public.users.Value',
      fields: [
        { field: 'id', type: 'int32' },
        { field: 'created_at', type: 'int64', name: 'io.debezium.time.MicroTimestamp' },
        {
          field: 'amount',
          type: 'bytes',
          name: 'org.apache.kafka.connect.data.Decimal',
          parameters: { scale: '2' },
        },
      ],
    };
    const value = {
      schema: {
        type: 'struct',
        fields: [
          { field: 'before', ...rowSchema },
          { field: 'after', ...rowSchema },
          { field: 'source', type: 'struct' },
          { field: 'op', type: 'string' },
        ],
      },
      payload: { before: null, after: row, source: source(), op: 'c' },
    };
    const noDeclared: CdcMapping = {
      source: 'app-db',
      tables: { users: { userId: 'id', insert: { event: 'user_registered' } } },
    };
    const out = await processRecord(
      msg(value, { schema: { type: 'struct' }, payload: { id: 42 } }),
      noDeclared,
      undefined,
      NOW,
    );
    expect(out.kind === 'events' && out.events[0]!.traits).toEqual({
      id: 42,
      created_at: '2023-11-14T22:13:20.123Z',
      amount: 1000,
    });
  });
});

describe('Avro (Confluent wire format)', () => {
  const rowSchema = {
    type: 'record',
    name: 'Value',
    namespace: 'appdb.public.users',
    fields: [
      { name: 'id', type: 'int' },
      { name: 'plan', type: ['null', 'string'], default: null },
      {
        name: 'created_at',
        type: [
          'null',
          { type: 'long', 'connect.version': 1, 'connect.name': 'io.debezium.time.MicroTimestamp' },
        ],
        default: null,
      },
      {
        name: 'amount',
        type: [
          'null',
          {
            type: 'bytes',
            scale: 2,
            precision: 10,
            'connect.version': 1,
            'connect.parameters': { scale: '2' },
            'connect.name': 'org.apache.kafka.connect.data.Decimal',
            logicalType: 'decimal',
          },
        ],
        default: null,
      },
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
          namespace: 'io.debezium.connector.postgresql',
          fields: [
            { name: 'connector', type: 'string' },
            { name: 'schema', type: 'string' },
            { name: 'table', type: 'string' },
            { name: 'lsn', type: ['null', 'long'] },
            { name: 'ts_ms', type: 'long' },
          ],
        },
      },
      { name: 'op', type: 'string' },
      { name: 'ts_ms', type: ['null', 'long'], default: null },
    ],
  };
  const keySchema = {
    type: 'record',
    name: 'Key',
    namespace: 'appdb.public.users',
    fields: [{ name: 'id', type: 'int' }],
  };
  const wire = (id: number, body: Buffer) => {
    const h = Buffer.alloc(5);
    h.writeInt32BE(id, 1);
    return Buffer.concat([h, body]);
  };
  const schemas = new Map<number, unknown>([
    [11, envelope],
    [12, keySchema],
  ]);
  const registry: SchemaRegistry = {
    schema: async (id) => {
      const s = schemas.get(id);
      if (!s) throw new Error('missing');
      return s;
    },
  };

  it('decodes magic byte + schema id + Avro body, with Debezium types converted', async () => {
    const type = avro.Type.forSchema(envelope as avro.Schema);
    const body = type.toBuffer({
      before: null,
      after: {
        id: 42,
        plan: 'pro',
        created_at: 1_700_000_000_123_456,
        amount: Buffer.from('01869f', 'hex'),
      },
      source: {
        connector: 'postgresql',
        schema: 'public',
        table: 'users',
        lsn: 5000,
        ts_ms: 1_779_999_999_000,
      },
      op: 'c',
      ts_ms: null,
    });
    const key = wire(12, avro.Type.forSchema(keySchema as avro.Schema).toBuffer({ id: 42 }));
    // As the bus delivers it: the key's bytes, and the text they read as.
    const m: IncomingMessage = {
      ...msg(null),
      key: key.toString('utf8'),
      keyBytes: key,
      value: wire(11, body),
    };
    const noDeclared: CdcMapping = {
      source: 'app-db',
      tables: {
        'public.users': { userId: 'id', insert: { event: 'user_registered', properties: false } },
      },
    };
    const out = await processRecord(m, noDeclared, registry, NOW);
    expect(out.kind === 'events' && out.events[0]).toMatchObject({
      userId: '42',
      type: 'user_registered',
      ts: 1_779_999_999_000,
      traits: { id: 42, plan: 'pro', created_at: '2023-11-14T22:13:20.123Z', amount: 999.99 },
    });
    // the decoded key, not the row, is the primary key in the event id
    expect(out.kind === 'events' && out.events[0]!.id).toBe(
      cdcEventId('cdc:app-db', 'lsn:5000', 'public.users', { id: 42 }, 'user_registered'),
    );
    const change = await decodeChange(wire(11, body), null, registry);
    expect(change?.columns.get('amount')).toEqual({
      name: 'org.apache.kafka.connect.data.Decimal',
      scale: 2,
    });
  });

  it("a column the mapping declares `decimal` (as the shipped one does) still reads Avro decimal bytes with the schema's scale", async () => {
    // decimal.handling.mode=precise, the Avro example's: 19.90 arrives as the bytes 0x07c6 (1990, scale 2).
    const body = avro.Type.forSchema(envelope as avro.Schema).toBuffer({
      before: null,
      after: {
        id: 42,
        plan: 'pro',
        created_at: 1_700_000_000_123_456,
        amount: Buffer.from('07c6', 'hex'),
      },
      source: {
        connector: 'postgresql',
        schema: 'public',
        table: 'users',
        lsn: 5001,
        ts_ms: 1_779_999_999_000,
      },
      op: 'c',
      ts_ms: null,
    });
    const declared: CdcMapping = {
      source: 'app-db',
      tables: {
        'public.users': {
          userId: 'id',
          columns: { amount: 'decimal', created_at: 'timestamp-micros' },
          insert: { event: 'user_registered', properties: ['amount', 'created_at'] },
        },
      },
    };
    const out = await processRecord(
      { ...msg(null), key: null, value: wire(11, body) },
      declared,
      registry,
      NOW,
    );
    expect(out.kind === 'events' && out.events[0]!.properties).toEqual({
      amount: 19.9,
      created_at: '2023-11-14T22:13:20.123Z',
    });
    expect(
      convertValue(Buffer.from('07c6', 'hex'), {
        declared: 'decimal',
        name: 'org.apache.kafka.connect.data.Decimal',
        scale: 2,
      }),
    ).toBe(19.9);
    // without a schema a declared type still decides: text decimals as before
    expect(convertRow({ amount: '19.90' }, new Map(), { amount: 'decimal' })).toEqual({
      amount: 19.9,
    });
  });

  it('longs beyond 2^53 (snowflake ids, NanoTimestamp, infinity micros) decode without loss instead of dead-lettering the row', async () => {
    const wide = {
      type: 'record',
      name: 'Envelope',
      namespace: 'appdb.public.accounts',
      fields: [
        {
          name: 'before',
          type: [
            'null',
            {
              type: 'record',
              name: 'Value',
              fields: [
                { name: 'id', type: 'long' },
                {
                  name: 'seen_ns',
                  type: {
                    type: 'long',
                    'connect.version': 1,
                    'connect.name': 'io.debezium.time.NanoTimestamp',
                  },
                },
                {
                  name: 'valid_until',
                  type: {
                    type: 'long',
                    'connect.version': 1,
                    'connect.name': 'io.debezium.time.MicroTimestamp',
                  },
                },
                {
                  name: 'valid_from',
                  type: {
                    type: 'long',
                    'connect.version': 1,
                    'connect.name': 'io.debezium.time.MicroTimestamp',
                  },
                },
              ],
            },
          ],
          default: null,
        },
        { name: 'after', type: ['null', 'Value'], default: null },
        { name: 'source', type: envelope.fields[2]!.type },
        { name: 'op', type: 'string' },
      ],
    };
    const reg: SchemaRegistry = { schema: async () => wide };
    const body = avro.Type.forSchema(wide as avro.Schema, {
      wrapUnions: true,
      typeHook: losslessLongs,
    }).toBuffer({
      before: null,
      after: {
        'appdb.public.accounts.Value': {
          id: '1234567890123456789',
          seen_ns: '1700000000123456789',
          valid_until: '9223372036825200000',
          valid_from: '-9223372036832400000',
        },
      },
      source: {
        connector: 'postgresql',
        schema: 'public',
        table: 'accounts',
        lsn: { long: 5000 },
        ts_ms: 1_779_999_999_000,
      },
      op: 'c',
    });
    const accounts: CdcMapping = {
      source: 'app-db',
      tables: {
        'public.accounts': { userId: 'id', insert: { event: 'account_opened', properties: false } },
      },
    };
    const out = await processRecord({ ...msg(null), value: wire(21, body) }, accounts, reg, NOW);
    expect(out.kind === 'events' && out.events[0]).toMatchObject({
      userId: '1234567890123456789',
      traits: {
        id: '1234567890123456789',
        seen_ns: '2023-11-14T22:13:20.123Z',
        valid_until: 'infinity',
        valid_from: '-infinity',
      },
    });
  });

  it('an unknown schema id is poison (dlq); an unreachable registry is retried, not dead-lettered', async () => {
    const fetch404 = (async () =>
      new Response('{"error_code":40403}', { status: 404 })) as typeof fetch;
    const r404 = createSchemaRegistry('http://registry', fetch404);
    expect(
      await processRecord({ ...msg(null), value: wire(99, Buffer.from([2])) }, mapping, r404, NOW),
    ).toMatchObject({
      kind: 'dlq',
      reason: 'unparseable: schema id 99 not found in the schema registry',
    });
    let calls = 0;
    const down = (async () => {
      calls++;
      throw new TypeError('fetch failed');
    }) as typeof fetch;
    const rDown = createSchemaRegistry('http://registry', down);
    await expect(
      processRecord({ ...msg(null), value: wire(11, Buffer.from([2])) }, mapping, rDown, NOW),
    ).rejects.toThrow(/unreachable/);
    await expect(rDown.schema(11)).rejects.toThrow();
    expect(calls).toBe(2);
  });

  it('garbage bytes as key and value, JSON or Avro-framed with any schema id, become a DLQ or skip outcome, never an exception', async () => {
    const fetch404 = (async () =>
      new Response('{"error_code":40403}', { status: 404 })) as typeof fetch;
    const registries = [undefined, createSchemaRegistry('http://registry', fetch404), registry];
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 200 }),
          fc
            .tuple(
              fc.oneof(fc.constantFrom(11, 12), fc.integer({ min: 0, max: 2 ** 31 - 1 })),
              fc.uint8Array({ maxLength: 120 }),
            )
            .map(([id, body]) => new Uint8Array(wire(id, Buffer.from(body)))),
        ),
        fc.option(fc.uint8Array({ maxLength: 40 })),
        fc.constantFrom(0, 1, 2),
        async (value, key, which) => {
          const message: IncomingMessage = {
            ...msg(null),
            value: Buffer.from(value),
            key: key === null ? null : Buffer.from(key).toString('utf8'),
            keyBytes: key === null ? null : Buffer.from(key),
          };
          const out = await processRecord(message, mapping, registries[which], NOW);
          expect(['dlq', 'skip', 'events']).toContain(out.kind);
          if (out.kind === 'dlq') expect(out.reason.length).toBeGreaterThan(0);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('the registry client caches schemas by id', async () => {
    let calls = 0;
    const ok = (async () => {
      calls++;
      return new Response(JSON.stringify({ schema: JSON.stringify(keySchema) }), { status: 200 });
    }) as typeof fetch;
    const r = createSchemaRegistry('http://registry/', ok);
    await r.schema(12);
    expect(await r.schema(12)).toEqual(keySchema);
    expect(calls).toBe(1);
  });

  // What Debezium's envelope looks like registered through the Apicurio AvroConverter: its
  // `source` record is a separate subject, named by reference (seen on the local stack).
  const sourceSchema = envelope.fields.find((f) => f.name === 'source')!.type as unknown as Record<
    string,
    unknown
  >;
  const envelopeByReference = {
    ...envelope,
    fields: envelope.fields.map((f) =>
      f.name === 'source' ? { ...f, type: 'io.debezium.connector.postgresql.Source' } : f,
    ),
  };
  const sourceRef = {
    name: 'io.debezium.connector.postgresql.Source',
    subject: 'io.debezium.connector.postgresql.Source',
    version: 1,
  };
  const registryServing = (routes: Record<string, unknown>, seen: string[] = []) =>
    (async (url: string | URL | Request) => {
      const path = new URL(String(url)).pathname;
      seen.push(path);
      const body = routes[path];
      return body === undefined
        ? new Response('{"error_code":40403}', { status: 404 })
        : new Response(JSON.stringify(body), { status: 200 });
    }) as typeof fetch;

  it('schema references (Apicurio registers the Debezium source record apart) are fetched by subject and version and inlined', async () => {
    const seen: string[] = [];
    const r = createSchemaRegistry(
      'http://registry/apis/ccompat/v7',
      registryServing(
        {
          '/apis/ccompat/v7/schemas/ids/21': {
            schema: JSON.stringify(envelopeByReference),
            references: [sourceRef],
          },
          '/apis/ccompat/v7/subjects/io.debezium.connector.postgresql.Source/versions/1': {
            subject: sourceRef.subject,
            version: 1,
            id: 20,
            schema: JSON.stringify(sourceSchema),
            references: [],
          },
        },
        seen,
      ),
    );
    const body = avro.Type.forSchema(envelope as avro.Schema, { wrapUnions: 'auto' }).toBuffer({
      before: null,
      after: {
        id: 42,
        plan: 'pro',
        created_at: 1_700_000_000_123_456,
        amount: Buffer.from([0x01, 0x86, 0xa0]),
      },
      source: {
        connector: 'postgresql',
        schema: 'public',
        table: 'users',
        lsn: 77,
        ts_ms: 1_779_999_999_000,
      },
      op: 'c',
      ts_ms: null,
    });
    const change = await decodeChange(wire(21, body), null, r);
    expect(change).toMatchObject({
      op: 'c',
      table: 'users',
      schema: 'public',
      source: { lsn: 77 },
    });
    expect(convertRow(change!.after!, change!.columns, undefined)).toEqual({
      id: 42,
      plan: 'pro',
      created_at: '2023-11-14T22:13:20.123Z',
      amount: 1000,
    });
    // a second record of the same schema asks the registry nothing
    await decodeChange(wire(21, body), null, r);
    expect(seen).toEqual([
      '/apis/ccompat/v7/schemas/ids/21',
      '/apis/ccompat/v7/subjects/io.debezium.connector.postgresql.Source/versions/1',
    ]);
  });

  it('a missing referenced subject is poison naming it; an unreachable registry while fetching a reference is retried', async () => {
    const missing = createSchemaRegistry(
      'http://registry',
      registryServing({
        '/schemas/ids/21': { schema: JSON.stringify(envelopeByReference), references: [sourceRef] },
      }),
    );
    expect(
      await processRecord(
        { ...msg(null), value: wire(21, Buffer.from([0])) },
        mapping,
        missing,
        NOW,
      ),
    ).toEqual({
      kind: 'dlq',
      reason:
        'unparseable: subject io.debezium.connector.postgresql.Source version 1 (a schema reference) not found in the schema registry',
    });
    let down = true;
    const serve = registryServing({
      '/schemas/ids/21': { schema: JSON.stringify(envelopeByReference), references: [sourceRef] },
      '/subjects/io.debezium.connector.postgresql.Source/versions/1': {
        schema: JSON.stringify(sourceSchema),
      },
    });
    const flaky = (async (url: string | URL | Request) => {
      if (down && String(url).includes('/subjects/')) throw new TypeError('fetch failed');
      return serve(url);
    }) as typeof fetch;
    const r = createSchemaRegistry('http://registry', flaky);
    await expect(r.schema(21)).rejects.toMatchObject({
      retriable: true,
      message: 'schema registry unreachable: fetch failed',
    });
    down = false;
    expect(await r.schema(21)).toMatchObject({
      name: 'Envelope',
      fields: expect.arrayContaining([{ name: 'source', type: sourceSchema }]),
    });
  });

  it('inlineReferences defines each referenced type once, at its first use, resolving short names in their namespace', () => {
    const money = {
      type: 'record',
      name: 'Money',
      namespace: 'billing',
      fields: [{ name: 'cents', type: 'long' }],
    };
    const schema = {
      type: 'record',
      name: 'Order',
      namespace: 'billing',
      fields: [
        { name: 'total', type: 'Money' },
        { name: 'refunds', type: { type: 'array', items: 'billing.Money' } },
        { name: 'tip', type: ['null', 'Money'] },
        { name: 'note', type: 'string' },
      ],
    };
    const inlined = inlineReferences(schema, new Map([['billing.Money', money]])) as typeof schema;
    expect(inlined.fields.map((f) => f.type)).toEqual([
      money,
      { type: 'array', items: 'billing.Money' },
      ['null', 'Money'],
      'string',
    ]);
    expect(
      avro.Type.forSchema(inlined as avro.Schema).isValid({
        total: { cents: 1 },
        refunds: [{ cents: 2 }],
        tip: null,
        note: 'n',
      }),
    ).toBe(true);
    // a schema that already defines the type keeps its own definition
    const defined = {
      ...schema,
      fields: [
        { name: 'total', type: money },
        { name: 'tip', type: 'Money' },
      ],
    };
    expect(
      inlineReferences(defined, new Map([['billing.Money', { ...money, doc: 'other' }]])),
    ).toEqual(defined);
    // the string "Money" outside the billing namespace is another type
    const elsewhere = {
      type: 'record',
      name: 'X',
      namespace: 'shop',
      fields: [{ name: 'm', type: 'Money' }],
    };
    expect(inlineReferences(elsewhere, new Map([['billing.Money', money]]))).toEqual(elsewhere);
  });
});

describe('CDC processor on the bus', () => {
  it('publishes events keyed by userId, dead-letters poison with reason and origin, commits, and keeps flowing', async () => {
    const bus = new InMemoryBus(1);
    const pub = bus.publisher();
    await bus.ensureTopics([{ topic: 'appdb.public.users', partitions: 1 }]);
    const p = createCdcProcessor(
      { cdc: { topics: ['/^appdb\\./'] }, kafka: { topicPrefix: 'lc' }, groupId: 'cdc-test' },
      {
        bus,
        logger: silentLogger(),
        metrics: createMetricsRegistry({ defaults: false }),
        mapping,
        clock: () => NOW,
      },
    );
    await pub.publish('appdb.public.users', [
      {
        key: '{"id":42}',
        value: Buffer.from(
          JSON.stringify({ before: null, after: user, source: source(), op: 'c' }),
        ),
      },
      { key: '{"id":42}', value: Buffer.from('garbage') },
      { key: '{"id":42}', value: null },
      {
        key: '{"id":42}',
        value: Buffer.from(
          JSON.stringify({
            before: user,
            after: { ...user, plan: 'pro' },
            source: source({ lsn: 1010 }),
            op: 'u',
          }),
        ),
      },
    ]);
    await p.start();
    const committed = () =>
      bus.committedOffset(
        { groupId: 'cdc-test', topics: [], eachBatch: async () => {} },
        { topic: 'appdb.public.users', partition: 0 },
      );
    const deadline = Date.now() + 5000;
    while (committed() < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    // a dead-lettered record is no failure of the consumer; stopped, it is no longer healthy
    expect(p.health()).toMatchObject({ ok: true, details: { lastError: null } });
    await p.stop();
    expect(p.health().ok).toBe(false);
    const events = bus
      .messages('lc.events')
      .map((m) => ({ key: m.key, e: eventCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]) }));
    expect(events.map((x) => [x.key, x.e.type])).toEqual([
      ['42', 'user_registered'],
      ['42', 'plan_changed'],
    ]);
    const [dead] = bus.messages('lc.dlq');
    expect(dead!.value!.toString()).toBe('garbage');
    expect(dead!.headers).toMatchObject({
      [DlqHeaders.sourceTopic]: 'appdb.public.users',
      [DlqHeaders.sourcePartition]: '0',
      [DlqHeaders.sourceOffset]: '1',
      [DlqHeaders.stage]: 'cdc',
    });
    expect(dead!.headers[DlqHeaders.reason]).toMatch(/^unparseable/);
    expect(dead!.keyBytes).toEqual(Buffer.from('{"id":42}'));
    expect(committed()).toBe(4);
  });
});
