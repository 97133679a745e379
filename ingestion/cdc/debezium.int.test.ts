// The PostgreSQL promise, for real: the shipped connector config and mapping (pointed at
// this test's own schema, slot and topics), rows inserted, updated and deleted, Debezium
// through Kafka Connect, and the expected normalised events out; the connector restarted
// mid-stream without a duplicate event id.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isolate, stack } from '../../test/helpers/isolation.ts';
import { waitFor } from '../../test/helpers/wait.ts';
import { KafkaBus } from '../../platform/kafka.ts';
import { eventCodec } from '../../platform/avro.ts';
import { DlqHeaders, SCHEMA_ID_HEADER, topics, type NormalisedEvent } from '../../platform/contracts.ts';
import type { BusConsumer, IncomingMessage } from '../../platform/bus.ts';
import type { Service } from '../../platform/shutdown.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import { checkMapping, type CdcMapping } from './mapping.ts';
import { createCdcProcessor } from './processor.ts';

const iso = isolate('cdc');
const config = iso.config();
/** Names of this test's schema, replication slot and publication ([a-z0-9_]). */
const run = iso.id;
/** Debezium's topic prefix: `<dbTopics>.<schema>.<table>` (apart from our own `<prefix>.events`). */
const dbTopics = `cdc_${run}`;
const logger = silentLogger();
const connectUrl = stack().connectUrl;
/** Where the Connect worker reaches PostgreSQL (inside Docker it is not 127.0.0.1). */
const pg = stack().connectPostgres;

const sql = (statement: string) =>
  execFileSync('psql', [config.postgres.url, '-v', 'ON_ERROR_STOP=1', '-qAt', '-c', statement], { encoding: 'utf8' });

async function connect(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${connectUrl}${path}`, {
    method,
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as unknown) : null };
}

const until = <T>(what: string, probe: () => T | undefined | false, timeout = 60_000) =>
  waitFor(probe, { timeout, interval: 200, message: `waiting for ${what}` }) as Promise<T>;

/** The shipped mapping, with its tables moved to this test's schema. */
function testMapping(): CdcMapping {
  const example = JSON.parse(readFileSync('ingestion/cdc-mapping.example.json', 'utf8')) as CdcMapping;
  const tables = Object.fromEntries(Object.entries(example.tables).map(([name, t]) => [name.replace(/^public\./, `${run}.`), t]));
  const mapping = { ...example, tables };
  expect(checkMapping(mapping)).toEqual([]);
  return mapping;
}

/** The shipped connector config, pointed at this test's database objects and topics. */
function testConnector(): Record<string, string> {
  const example = JSON.parse(readFileSync('ingestion/debezium-connector.example.json', 'utf8')) as { config: Record<string, string> };
  return {
    ...example.config,
    'database.hostname': pg.host,
    'database.port': String(pg.port),
    'database.user': pg.user,
    'database.password': pg.password,
    'database.dbname': pg.database,
    'topic.prefix': dbTopics,
    'table.include.list': `${run}.users,${run}.subscriptions`,
    'slot.name': run,
    'publication.name': run,
  };
}

describe('PostgreSQL -> Debezium -> Kafka -> CDC mapping -> normalised events', () => {
  let bus: KafkaBus;
  let processor: Service;
  let reader: BusConsumer;
  const events: { key: string | null; event: NormalisedEvent }[] = [];
  const dead: IncomingMessage[] = [];
  const t = topics(iso.topicPrefix);

  beforeAll(async () => {
    sql(`
      CREATE SCHEMA ${run};
      CREATE TABLE ${run}.users (
        id text PRIMARY KEY, email text, first_name text, plan text NOT NULL, password_hash text,
        signup_source text, email_verified boolean NOT NULL DEFAULT false, visits integer NOT NULL DEFAULT 0,
        created_at timestamp NOT NULL DEFAULT now(), trial_ends_at timestamp);
      CREATE TABLE ${run}.subscriptions (
        id serial PRIMARY KEY, user_id text, plan text NOT NULL, amount numeric(10,2) NOT NULL, currency text NOT NULL,
        status text NOT NULL, started_at timestamp NOT NULL DEFAULT now(), canceled_at timestamp);
      ALTER TABLE ${run}.users REPLICA IDENTITY FULL;
      ALTER TABLE ${run}.subscriptions REPLICA IDENTITY FULL;
      INSERT INTO ${run}.users (id, email, first_name, plan, password_hash, signup_source, created_at)
        VALUES ('u-old', 'old@example.com', 'Olga', 'trial', 'secret-hash', 'seo', '2025-06-01 10:00:00.123456');
      INSERT INTO ${run}.subscriptions (user_id, plan, amount, currency, status) VALUES ('u-old', 'trial', 0, 'EUR', 'active');
    `);
    bus = KafkaBus.fromConfig(config, logger);
    await bus.ensureTopics([
      { topic: t.events, partitions: 3 },
      { topic: t.dlq, partitions: 1 },
    ]);
    const created = await connect('PUT', `/connectors/${run}/config`, testConnector());
    expect(created.status, JSON.stringify(created.json)).toBeLessThan(300);

    processor = createCdcProcessor(
      { cdc: { topics: [`/^${dbTopics}\\./`] }, kafka: { topicPrefix: iso.topicPrefix }, groupId: iso.group('cdc') },
      { bus, logger, metrics: createMetricsRegistry({ defaults: false }), mapping: testMapping() },
    );
    reader = bus.consumer({
      groupId: iso.group('reader'),
      topics: [t.events, t.dlq],
      fromBeginning: true,
      eachBatch: async (batch, control) => {
        for (const m of batch.messages) {
          if (m.topic === t.dlq) dead.push(m);
          else events.push({ key: m.key, event: eventCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]) });
        }
        await control.commit((BigInt(batch.messages.at(-1)!.offset) + 1n).toString());
      },
    });
    // Debezium creates the topics with the snapshot; a regex subscription sees only existing topics.
    const admin = bus.kafka.admin();
    await admin.connect();
    let topicsSeen: string[] = [];
    const deadline = Date.now() + 60_000;
    while (topicsSeen.length < 2 && Date.now() < deadline) {
      topicsSeen = (await admin.listTopics()).filter((n) => n.startsWith(`${dbTopics}.${run}.`));
      if (topicsSeen.length < 2) await new Promise((r) => setTimeout(r, 300));
    }
    await admin.disconnect();
    expect(topicsSeen.sort()).toEqual([`${dbTopics}.${run}.subscriptions`, `${dbTopics}.${run}.users`]);
    await processor.start();
    await reader.start();
  });

  afterAll(async () => {
    await connect('DELETE', `/connectors/${run}`).catch(() => undefined);
    await processor?.stop().catch(() => undefined);
    await reader?.stop().catch(() => undefined);
    await bus?.close().catch(() => undefined);
    // The slot stays active for a moment after the connector stops.
    for (let i = 0; i < 20; i++) {
      try {
        sql(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '${run}'`);
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    sql(`DROP PUBLICATION IF EXISTS ${run}; DROP SCHEMA IF EXISTS ${run} CASCADE;`);
  });

  it('snapshot rows become traits; inserts, updates and deletes become the mapped events; poison goes to the DLQ', async () => {
    const snapshot = await until('snapshot identify', () => events.find((e) => e.event.userId === 'u-old' && e.event.type === 'identify'));
    expect(snapshot.key).toBe('u-old');
    expect(snapshot.event).toMatchObject({
      source: 'cdc:app-db',
      traits: { id: 'u-old', email: 'old@example.com', firstName: 'Olga', plan: 'trial', createdAt: '2025-06-01T10:00:00.123Z', email_verified: false },
    });
    expect(snapshot.event.traits).not.toHaveProperty('password_hash');
    // the snapshot of subscriptions is skipped by the mapping: no event for it
    sql(`
      INSERT INTO ${run}.users (id, email, first_name, plan, password_hash, signup_source) VALUES ('u-new', 'new@example.com', 'Nina', 'trial', 'h', 'ads');
      UPDATE ${run}.users SET plan = 'pro' WHERE id = 'u-old';
      INSERT INTO ${run}.subscriptions (user_id, plan, amount, currency, status) VALUES ('u-new', 'pro', 19.90, 'EUR', 'active');
      UPDATE ${run}.subscriptions SET status = 'canceled', canceled_at = now() WHERE user_id = 'u-new';
      UPDATE ${run}.users SET email_verified = true WHERE id = 'u-new';
      INSERT INTO ${run}.subscriptions (user_id, plan, amount, currency, status) VALUES (NULL, 'pro', 5, 'EUR', 'active');
      DELETE FROM ${run}.users WHERE id = 'u-old';
    `);
    const expected = ['user_registered', 'plan_changed', 'subscription_started', 'subscription_canceled', 'email_verified', 'user_deleted'];
    await until('mapped events', () => expected.every((type) => events.some((e) => e.event.type === type)));
    const byType = (type: string) => events.filter((e) => e.event.type === type).map((e) => e.event);
    expect(byType('user_registered')[0]).toMatchObject({ userId: 'u-new', properties: { plan: 'trial', signup_source: 'ads' }, traits: { email: 'new@example.com', plan: 'trial' } });
    expect(byType('plan_changed')[0]).toMatchObject({ userId: 'u-old', properties: { from: 'trial', to: 'pro' }, traits: { plan: 'pro' } });
    expect(byType('subscription_started')[0]).toMatchObject({ userId: 'u-new', properties: { plan: 'pro', amount: 19.9, currency: 'EUR', status: 'active' } });
    expect(byType('subscription_started')[0]!.traits).toBeUndefined();
    expect(byType('subscription_canceled')[0]).toMatchObject({ userId: 'u-new', properties: { from: 'active', to: 'canceled', amount: 19.9 } });
    expect(byType('email_verified')[0]).toMatchObject({ userId: 'u-new', properties: { from: false, to: true } });
    expect(byType('user_deleted')[0]).toMatchObject({ userId: 'u-old', properties: {} });
    // per-user order follows the database's order
    const oldUser = events.filter((e) => e.event.userId === 'u-old').map((e) => e.event.type);
    expect(oldUser).toEqual(['identify', 'plan_changed', 'user_deleted']);
    const [poison] = await until('DLQ record', () => (dead.length > 0 ? dead : undefined));
    expect(poison!.headers[DlqHeaders.reason]).toMatch(/no user id: column user_id/);
    expect(poison!.headers[DlqHeaders.sourceTopic]).toBe(`${dbTopics}.${run}.subscriptions`);
    expect(poison!.headers[DlqHeaders.sourceOffset]).toMatch(/^\d+$/);
  });

  it('restarting the connector mid-stream produces no duplicate event ids', async () => {
    const before = events.length;
    const updates = 30;
    for (let i = 1; i <= updates; i++) {
      sql(`UPDATE ${run}.users SET visits = ${i} WHERE id = 'u-new'`);
      if (i === 10) {
        const restarted = await connect('POST', `/connectors/${run}/restart?includeTasks=true&onlyFailed=false`);
        expect(restarted.status).toBeLessThan(300);
      }
    }
    const visits = () => events.filter((e) => e.event.userId === 'u-new' && e.event.type === 'identify').map((e) => e.event.traits?.visits as number);
    await until('all visit updates', () => visits().includes(updates), 90_000);
    // give changes the restarted connector might replay time to arrive, then check
    await new Promise((r) => setTimeout(r, 3000));
    expect(new Set(visits())).toEqual(new Set(Array.from({ length: updates }, (_, i) => i + 1)));
    // One event id per change: a change the connector replays after the restart maps to the
    // id it had, with the same content, so consumers that dedupe by id see it once.
    const visitEvents = events.slice(before).filter((e) => e.event.type === 'identify' && e.event.userId === 'u-new');
    const byId = new Map<string, Set<string>>();
    for (const e of visitEvents) {
      const content = JSON.stringify({ ...e.event, receivedAt: 0 });
      byId.set(e.event.id, (byId.get(e.event.id) ?? new Set()).add(content));
    }
    expect(byId.size).toBe(updates);
    for (const contents of byId.values()) expect(contents.size).toBe(1);
  });

  it('re-reading every Debezium record (a CDC consumer that crashed before committing) yields exactly the same event ids', async () => {
    const replayPrefix = `${iso.topicPrefix}.replay`;
    const rt = topics(replayPrefix);
    await bus.ensureTopics([{ topic: rt.events, partitions: 3 }, { topic: rt.dlq, partitions: 1 }]);
    const replay = createCdcProcessor(
      { cdc: { topics: [`/^${dbTopics}\\./`] }, kafka: { topicPrefix: replayPrefix }, groupId: iso.group('cdc-replay') },
      { bus, logger, metrics: createMetricsRegistry({ defaults: false }), mapping: testMapping() },
    );
    const replayed: NormalisedEvent[] = [];
    const replayReader = bus.consumer({
      groupId: iso.group('replay-reader'),
      topics: [rt.events],
      fromBeginning: true,
      eachBatch: async (batch, control) => {
        for (const m of batch.messages) replayed.push(eventCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]));
        await control.commit((BigInt(batch.messages.at(-1)!.offset) + 1n).toString());
      },
    });
    await replay.start();
    await replayReader.start();
    try {
      const original = new Set(events.map((e) => e.event.id));
      await until('replayed events', () => replayed.length >= original.size, 60_000);
      expect(new Set(replayed.map((e) => e.id))).toEqual(original);
    } finally {
      await replay.stop();
      await replayReader.stop();
    }
  });
});

describe('Debezium with the JSON converter schemas enabled: column types come from the records', () => {
  const name = `${run}_s`;
  const prefix = `cdc_${name}`;
  let bus: KafkaBus;
  let processor: Service;
  let reader: BusConsumer;
  const events: NormalisedEvent[] = [];

  beforeAll(async () => {
    sql(`
      CREATE SCHEMA ${name};
      CREATE TABLE ${name}.accounts (id text PRIMARY KEY, plan text, balance numeric(12,2), created_at timestamp, renews_at timestamptz, birthday date, prefs jsonb);
      ALTER TABLE ${name}.accounts REPLICA IDENTITY FULL;
    `);
    bus = KafkaBus.fromConfig(config, logger);
    const t = topics(`${iso.topicPrefix}.schemas`);
    await bus.ensureTopics([{ topic: t.events, partitions: 1 }, { topic: t.dlq, partitions: 1 }, { topic: `${prefix}.${name}.accounts`, partitions: 1 }]);
    const created = await connect('PUT', `/connectors/${name}/config`, {
      ...testConnector(),
      'topic.prefix': prefix,
      'table.include.list': `${name}.accounts`,
      'slot.name': name,
      'publication.name': name,
      'key.converter.schemas.enable': 'true',
      'value.converter.schemas.enable': 'true',
      'column.propagate.source.type': `${name}\\.accounts\\.balance`,
    });
    expect(created.status, JSON.stringify(created.json)).toBeLessThan(300);
    const mapping: CdcMapping = { source: 'billing', tables: { [`${name}.accounts`]: { userId: 'id', insert: { event: 'account_opened', properties: false } } } };
    processor = createCdcProcessor(
      { cdc: { topics: [`${prefix}.${name}.accounts`] }, kafka: { topicPrefix: `${iso.topicPrefix}.schemas` }, groupId: iso.group('schemas-cdc') },
      { bus, logger, metrics: createMetricsRegistry({ defaults: false }), mapping },
    );
    reader = bus.consumer({
      groupId: iso.group('schemas-reader'),
      topics: [t.events],
      fromBeginning: true,
      eachBatch: async (batch, control) => {
        for (const m of batch.messages) events.push(eventCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]));
        await control.commit((BigInt(batch.messages.at(-1)!.offset) + 1n).toString());
      },
    });
    await processor.start();
    await reader.start();
  });

  afterAll(async () => {
    await connect('DELETE', `/connectors/${name}`).catch(() => undefined);
    await processor?.stop().catch(() => undefined);
    await reader?.stop().catch(() => undefined);
    await bus?.close().catch(() => undefined);
    for (let i = 0; i < 20; i++) {
      try {
        sql(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '${name}'`);
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    sql(`DROP PUBLICATION IF EXISTS ${name}; DROP SCHEMA IF EXISTS ${name} CASCADE;`);
  });

  it('timestamps, dates, decimals and JSON columns become proper values without any column declared', async () => {
    // Wait for the task to run and its (empty) snapshot to end, so the insert is streamed as an insert.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const status = await connect('GET', `/connectors/${name}/status`);
      const tasks = (status.json as { tasks?: { state: string }[] } | null)?.tasks ?? [];
      if (tasks.length > 0 && tasks.every((x) => x.state === 'RUNNING')) break;
      if (Date.now() > deadline) throw new Error(`connector not running: ${JSON.stringify(status.json)}`);
      await new Promise((r) => setTimeout(r, 300));
    }
    await new Promise((r) => setTimeout(r, 2000));
    sql(`INSERT INTO ${name}.accounts VALUES ('acc-1', 'pro', 1234.50, '2025-06-01 10:00:00.123456', '2026-01-01 00:00:00+02', '1990-05-17', '{"lang": "de"}')`);
    const opened = await until('account_opened', () => events.find((e) => e.type === 'account_opened'));
    expect(opened).toMatchObject({
      userId: 'acc-1',
      source: 'cdc:billing',
      traits: {
        id: 'acc-1',
        plan: 'pro',
        balance: 1234.5,
        created_at: '2025-06-01T10:00:00.123Z',
        renews_at: '2025-12-31T22:00:00.000Z',
        birthday: '1990-05-17',
        prefs: { lang: 'de' },
      },
    });
  });
});
