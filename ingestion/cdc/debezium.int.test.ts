// The PostgreSQL promise, for real: the shipped connector config and mapping (pointed at
// this test's own schema, slot and topics), rows inserted, updated and deleted, Debezium
// through Kafka Connect, and the expected normalised events out; a Connect worker killed
// (SIGKILL) mid-stream and started again without a duplicate event id or a lost row.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isolate, stack } from '../../test/support/isolation.ts';
import { deleteTopics, testKafka } from '../../test/support/kafka.ts';
import { REPO_ROOT, readStackEnv } from '../../test/support/stack-env.ts';
import { waitFor } from '../../test/support/wait.ts';
import { KafkaBus } from '../../platform/kafka.ts';
import { eventCodec } from '../../platform/avro.ts';
import {
  DlqHeaders,
  SCHEMA_ID_HEADER,
  topics,
  type NormalisedEvent,
} from '../../platform/contracts.ts';
import type { BusConsumer, IncomingMessage } from '../../platform/bus.ts';
import type { Service } from '../../platform/shutdown.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import { checkMapping, type CdcMapping } from './mapping.ts';
import { createCdcProcessor } from './processor.ts';
import { freePort } from '../../test/support/ports.ts';
import { connectRequest } from '../../test/support/connect.ts';
import { dropReplication } from '../../test/support/postgres.ts';

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
  execFileSync('psql', [config.postgres.url, '-v', 'ON_ERROR_STOP=1', '-qAt', '-c', statement], {
    encoding: 'utf8',
  });

const connect = (method: string, path: string, body?: unknown, base = connectUrl) =>
  connectRequest(base, method, path, body);

const until = <T>(what: string, probe: () => T | undefined | false, timeout = 60_000) =>
  waitFor(probe, { timeout, interval: 200, message: `waiting for ${what}` }) as Promise<T>;

/** The shipped mapping, with its tables moved to this test's schema. */
function testMapping(): CdcMapping {
  const example = JSON.parse(
    readFileSync('ingestion/cdc-mapping.example.json', 'utf8'),
  ) as CdcMapping;
  const tables = Object.fromEntries(
    Object.entries(example.tables).map(([name, t]) => [name.replace(/^public\./, `${run}.`), t]),
  );
  const mapping = { ...example, tables };
  expect(checkMapping(mapping)).toEqual([]);
  return mapping;
}

/** The shipped connector config, pointed at this test's database objects and topics. */
function testConnector(): Record<string, string> {
  const example = JSON.parse(readFileSync('ingestion/debezium-connector.example.json', 'utf8')) as {
    config: Record<string, string>;
  };
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
      {
        cdc: { topics: [`/^${dbTopics}\\./`] },
        kafka: { topicPrefix: iso.topicPrefix },
        groupId: iso.group('cdc'),
      },
      { bus, logger, metrics: createMetricsRegistry({ defaults: false }), mapping: testMapping() },
    );
    reader = bus.consumer({
      groupId: iso.group('reader'),
      topics: [t.events, t.dlq],
      fromBeginning: true,
      eachBatch: async (batch, control) => {
        for (const m of batch.messages) {
          if (m.topic === t.dlq) dead.push(m);
          else
            events.push({
              key: m.key,
              event: eventCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]),
            });
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
    expect(topicsSeen.sort()).toEqual([
      `${dbTopics}.${run}.subscriptions`,
      `${dbTopics}.${run}.users`,
    ]);
    await processor.start();
    await reader.start();
  });

  afterAll(async () => {
    await connect('DELETE', `/connectors/${run}`).catch(() => undefined);
    await processor?.stop().catch(() => undefined);
    await reader?.stop().catch(() => undefined);
    await bus?.close().catch(() => undefined);
    // The slot stays active for a moment after the connector stops.
    await dropReplication(config.postgres.url, run, run);
    sql(`DROP SCHEMA IF EXISTS ${run} CASCADE;`);
  });

  it('snapshot rows become traits; inserts, updates and deletes become the mapped events; poison goes to the DLQ', async () => {
    const snapshot = await until('snapshot identify', () =>
      events.find((e) => e.event.userId === 'u-old' && e.event.type === 'identify'),
    );
    expect(snapshot.key).toBe('u-old');
    expect(snapshot.event).toMatchObject({
      source: 'cdc:app-db',
      traits: {
        id: 'u-old',
        email: 'old@example.com',
        firstName: 'Olga',
        plan: 'trial',
        createdAt: '2025-06-01T10:00:00.123Z',
        email_verified: false,
      },
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
    const expected = [
      'user_registered',
      'plan_changed',
      'subscription_started',
      'subscription_canceled',
      'email_verified',
      'user_deleted',
    ];
    await until('mapped events', () =>
      expected.every((type) => events.some((e) => e.event.type === type)),
    );
    const byType = (type: string) =>
      events.filter((e) => e.event.type === type).map((e) => e.event);
    expect(byType('user_registered')[0]).toMatchObject({
      userId: 'u-new',
      properties: { plan: 'trial', signup_source: 'ads' },
      traits: { email: 'new@example.com', plan: 'trial' },
    });
    expect(byType('plan_changed')[0]).toMatchObject({
      userId: 'u-old',
      properties: { from: 'trial', to: 'pro' },
      traits: { plan: 'pro' },
    });
    expect(byType('subscription_started')[0]).toMatchObject({
      userId: 'u-new',
      properties: { plan: 'pro', amount: 19.9, currency: 'EUR', status: 'active' },
    });
    expect(byType('subscription_started')[0]!.traits).toBeUndefined();
    expect(byType('subscription_canceled')[0]).toMatchObject({
      userId: 'u-new',
      properties: { from: 'active', to: 'canceled', amount: 19.9 },
    });
    expect(byType('email_verified')[0]).toMatchObject({
      userId: 'u-new',
      properties: { from: false, to: true },
    });
    expect(byType('user_deleted')[0]).toMatchObject({ userId: 'u-old', properties: {} });
    // per-user order follows the database's order
    const oldUser = events.filter((e) => e.event.userId === 'u-old').map((e) => e.event.type);
    expect(oldUser).toEqual(['identify', 'plan_changed', 'user_deleted']);
    const [poison] = await until('DLQ record', () => (dead.length > 0 ? dead : undefined));
    expect(poison!.headers[DlqHeaders.reason]).toMatch(/no user id: column user_id/);
    expect(poison!.headers[DlqHeaders.sourceTopic]).toBe(`${dbTopics}.${run}.subscriptions`);
    expect(poison!.headers[DlqHeaders.sourceOffset]).toMatch(/^\d+$/);
  });

  it('re-reading every Debezium record (a CDC consumer that crashed before committing) yields exactly the same event ids', async () => {
    const replayPrefix = `${iso.topicPrefix}.replay`;
    const rt = topics(replayPrefix);
    await bus.ensureTopics([
      { topic: rt.events, partitions: 3 },
      { topic: rt.dlq, partitions: 1 },
    ]);
    const replay = createCdcProcessor(
      {
        cdc: { topics: [`/^${dbTopics}\\./`] },
        kafka: { topicPrefix: replayPrefix },
        groupId: iso.group('cdc-replay'),
      },
      { bus, logger, metrics: createMetricsRegistry({ defaults: false }), mapping: testMapping() },
    );
    const replayed: NormalisedEvent[] = [];
    const replayReader = bus.consumer({
      groupId: iso.group('replay-reader'),
      topics: [rt.events],
      fromBeginning: true,
      eachBatch: async (batch, control) => {
        for (const m of batch.messages)
          replayed.push(eventCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]));
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
    await bus.ensureTopics([
      { topic: t.events, partitions: 1 },
      { topic: t.dlq, partitions: 1 },
      { topic: `${prefix}.${name}.accounts`, partitions: 1 },
    ]);
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
    const mapping: CdcMapping = {
      source: 'billing',
      tables: {
        [`${name}.accounts`]: {
          userId: 'id',
          insert: { event: 'account_opened', properties: false },
        },
      },
    };
    processor = createCdcProcessor(
      {
        cdc: { topics: [`${prefix}.${name}.accounts`] },
        kafka: { topicPrefix: `${iso.topicPrefix}.schemas` },
        groupId: iso.group('schemas-cdc'),
      },
      { bus, logger, metrics: createMetricsRegistry({ defaults: false }), mapping },
    );
    reader = bus.consumer({
      groupId: iso.group('schemas-reader'),
      topics: [t.events],
      fromBeginning: true,
      eachBatch: async (batch, control) => {
        for (const m of batch.messages)
          events.push(eventCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]));
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
    await dropReplication(config.postgres.url, name, name);
    sql(`DROP SCHEMA IF EXISTS ${name} CASCADE;`);
  });

  it('timestamps, dates, decimals and JSON columns become proper values without any column declared', async () => {
    // Wait for the task to run and its (empty) snapshot to end, so the insert is streamed as an insert.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const status = await connect('GET', `/connectors/${name}/status`);
      const tasks = (status.json as { tasks?: { state: string }[] } | null)?.tasks ?? [];
      if (tasks.length > 0 && tasks.every((x) => x.state === 'RUNNING')) break;
      if (Date.now() > deadline)
        throw new Error(`connector not running: ${JSON.stringify(status.json)}`);
      await new Promise((r) => setTimeout(r, 300));
    }
    await new Promise((r) => setTimeout(r, 2000));
    sql(
      `INSERT INTO ${name}.accounts VALUES ('acc-1', 'pro', 1234.50, '2025-06-01 10:00:00.123456', '2026-01-01 00:00:00+02', '1990-05-17', '{"lang": "de"}')`,
    );
    const opened = await until('account_opened', () =>
      events.find((e) => e.type === 'account_opened'),
    );
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

/** A free TCP port on the loopback interface. */

/**
 * A Kafka Connect worker of this test alone (distributed mode: its own group, config,
 * offset and status topics, REST port), started from the jars and Debezium plugin that
 * scripts/stack installed, so it can be SIGKILLed without touching the shared worker.
 */
function dedicatedConnectWorker(name: string, port: number) {
  const env = readStackEnv();
  const stackDir = join(REPO_ROOT, env.STACK_DIR ?? '.stack');
  const dir = mkdtempSync(join(tmpdir(), `${name}-`));
  const internalTopics = ['configs', 'offsets', 'status'].map((k) => `${name}.connect-${k}`);
  writeFileSync(
    join(dir, 'worker.properties'),
    [
      `bootstrap.servers=${config.kafka.brokers.join(',')}`,
      `group.id=${name}-connect`,
      `config.storage.topic=${internalTopics[0]}`,
      `offset.storage.topic=${internalTopics[1]}`,
      `status.storage.topic=${internalTopics[2]}`,
      'config.storage.replication.factor=1',
      'offset.storage.replication.factor=1',
      'offset.storage.partitions=1',
      'status.storage.replication.factor=1',
      'status.storage.partitions=1',
      // Offsets are committed every 10 s: a kill between two commits makes the restarted
      // connector replay every change since the last one (the case under test).
      'offset.flush.interval.ms=10000',
      // The restarted worker takes its connector back at once instead of waiting for the
      // killed member's share (cooperative rebalancing would wait up to 5 minutes).
      'scheduled.rebalance.max.delay.ms=0',
      'session.timeout.ms=6000',
      'heartbeat.interval.ms=1000',
      'key.converter=org.apache.kafka.connect.json.JsonConverter',
      'value.converter=org.apache.kafka.connect.json.JsonConverter',
      'key.converter.schemas.enable=false',
      'value.converter.schemas.enable=false',
      `plugin.path=${join(stackDir, 'kafka/plugins')}`,
      'plugin.discovery=service_load',
      `listeners=http://127.0.0.1:${port}`,
      'rest.advertised.host.name=127.0.0.1',
      `rest.advertised.port=${port}`,
      '',
    ].join('\n'),
  );
  const url = `http://127.0.0.1:${port}`;
  let proc: ChildProcess | null = null;
  let starts = 0;
  return {
    url,
    internalTopics,
    async start() {
      const log = openSync(join(dir, `worker-${++starts}.log`), 'w');
      proc = spawn(
        'java',
        [
          '-Xms64m',
          '-Xmx384m',
          '-Djava.awt.headless=true',
          `-Dlog4j.configuration=file:${join(stackDir, 'kafka/config/log4j.properties')}`,
          '-cp',
          `${join(stackDir, 'kafka/lib')}/*`,
          'org.apache.kafka.connect.cli.ConnectDistributed',
          join(dir, 'worker.properties'),
        ],
        { stdio: ['ignore', log, log] },
      );
      await waitFor(
        async () => {
          if (proc?.exitCode !== null)
            throw new Error(`Connect worker exited with ${proc?.exitCode}; see ${dir}`);
          const res = await fetch(`${url}/connectors`).catch(() => null);
          return res?.status === 200;
        },
        { timeout: 90_000, interval: 250, message: `Connect worker on ${url} (log in ${dir})` },
      );
    },
    /** SIGKILL: no graceful stop, no final offset commit. */
    async kill() {
      const p = proc;
      proc = null;
      if (!p || p.exitCode !== null) return;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGKILL');
      await exited;
    },
    async stop() {
      const p = proc;
      proc = null;
      if (!p || p.exitCode !== null) return;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
    },
    removeFiles: () => rmSync(dir, { recursive: true, force: true }),
  };
}

const sqlAsync = promisify(execFile);
/** Each statement in its own transaction, in one psql session. */
const sqlEach = (statements: string[]) =>
  sqlAsync('psql', [
    config.postgres.url,
    '-v',
    'ON_ERROR_STOP=1',
    '-qAt',
    ...statements.flatMap((st) => ['-c', st]),
  ]);

describe.skipIf(stack().mode !== 'local')('Connect worker killed (SIGKILL) mid-stream', () => {
  const name = `${run}_k`;
  const t = topics(`${iso.topicPrefix}.killed`);
  const ut = topics(`${iso.topicPrefix}.uninterrupted`);
  const killedTopics = `cdc_${name}`;
  const steadyTopics = `cdc_${name}_u`;
  let worker: ReturnType<typeof dedicatedConnectWorker>;
  let bus: KafkaBus;
  const services: { stop(): Promise<void> }[] = [];
  /** Normalised events of the pipeline whose Connect worker is killed, and of one that runs undisturbed on the shared worker. */
  const killed: NormalisedEvent[] = [];
  const steady: NormalisedEvent[] = [];

  const mapping = (): CdcMapping => ({
    source: 'app-db',
    tables: {
      [`${name}.users`]: {
        userId: 'id',
        insert: { event: 'user_registered', properties: ['plan'] },
        snapshot: 'traits',
      },
    },
  });
  const connector = (prefix: string, slot: string) => ({
    ...testConnector(),
    'topic.prefix': prefix,
    'table.include.list': `${name}.users`,
    'slot.name': slot,
    'publication.name': slot,
  });
  const registered = (list: NormalisedEvent[]) => list.filter((e) => e.type === 'user_registered');

  async function pipeline(
    debeziumPrefix: string,
    out: ReturnType<typeof topics>,
    into: NormalisedEvent[],
    label: string,
  ) {
    const table = `${debeziumPrefix}.${name}.users`;
    // Created up front so the consumer's subscription finds it before the connector writes.
    await bus.ensureTopics([
      { topic: table, partitions: 1 },
      { topic: out.events, partitions: 3 },
      { topic: out.dlq, partitions: 1 },
    ]);
    const processor = createCdcProcessor(
      {
        cdc: { topics: [table] },
        kafka: { topicPrefix: out.events.replace(/\.events$/, '') },
        groupId: iso.group(`${label}-cdc`),
      },
      { bus, logger, metrics: createMetricsRegistry({ defaults: false }), mapping: mapping() },
    );
    const reader = bus.consumer({
      groupId: iso.group(`${label}-reader`),
      topics: [out.events],
      fromBeginning: true,
      eachBatch: async (batch, control) => {
        for (const m of batch.messages)
          into.push(eventCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]));
        await control.commit((BigInt(batch.messages.at(-1)!.offset) + 1n).toString());
      },
    });
    await processor.start();
    await reader.start();
    services.push(processor, reader);
  }

  const offsetsOf = async () =>
    JSON.stringify(
      (await connect('GET', `/connectors/${name}/offsets`, undefined, worker.url)).json,
    );
  const running = async (base: string, connectorName: string) => {
    const status = await connect('GET', `/connectors/${connectorName}/status`, undefined, base);
    const tasks = (status.json as { tasks?: { state: string }[] } | null)?.tasks ?? [];
    return tasks.length > 0 && tasks.every((x) => x.state === 'RUNNING');
  };

  beforeAll(async () => {
    sql(`
      CREATE SCHEMA ${name};
      CREATE TABLE ${name}.users (id text PRIMARY KEY, email text, plan text NOT NULL);
      ALTER TABLE ${name}.users REPLICA IDENTITY FULL;
    `);
    bus = KafkaBus.fromConfig(config, logger);
    worker = dedicatedConnectWorker(name, await freePort());
    await worker.start();
    await pipeline(killedTopics, t, killed, 'killed');
    await pipeline(steadyTopics, ut, steady, 'steady');
    // Connect answers 409 while its group rebalances: retry the creation until accepted.
    await until(
      'connector created on the dedicated worker',
      async () =>
        (
          await connect(
            'PUT',
            `/connectors/${name}/config`,
            connector(killedTopics, name),
            worker.url,
          )
        ).status < 300,
    );
    const created = await connect(
      'PUT',
      `/connectors/${name}_u/config`,
      connector(steadyTopics, `${name}_u`),
    );
    expect(created.status, JSON.stringify(created.json)).toBeLessThan(300);
    await until(
      'both connectors running',
      async () => (await running(worker.url, name)) && (await running(connectUrl, `${name}_u`)),
      90_000,
    );
  });

  afterAll(async () => {
    await connect('DELETE', `/connectors/${name}_u`).catch(() => undefined);
    await worker?.stop().catch(() => undefined);
    for (const s of services) await s.stop().catch(() => undefined);
    await bus?.close().catch(() => undefined);
    for (const slot of [name, `${name}_u`]) await dropReplication(config.postgres.url, slot, slot);
    sql(`DROP SCHEMA IF EXISTS ${name} CASCADE`);
    await deleteTopics(testKafka(config), [
      ...(worker?.internalTopics ?? []),
      `${killedTopics}.${name}.users`,
      `${steadyTopics}.${name}.users`,
      t.events,
      t.dlq,
      ut.events,
      ut.dlq,
    ]).catch(() => undefined);
    worker?.removeFiles();
  });

  it('replays the changes after its last offset commit with the same event ids: no duplicate ids, no lost rows, the same ids as an uninterrupted connector', async () => {
    const insert = (from: number, to: number, pauseMs = 0) =>
      sqlEach(
        Array.from(
          { length: to - from + 1 },
          (_, k) =>
            `INSERT INTO ${name}.users (id, email, plan) VALUES ('k-${from + k}', 'k${from + k}@example.com', 'trial')${pauseMs ? `; SELECT pg_sleep(${pauseMs / 1000})` : ''}`,
        ),
      );
    const seen = (list: NormalisedEvent[], n: number) =>
      new Set(registered(list).map((e) => e.userId)).size >= n;

    // 1..10, then wait for the worker's next offset commit: it covers them.
    await insert(1, 10);
    await until('rows 1-10 through the dedicated worker', () => seen(killed, 10));
    const committed = await offsetsOf();
    await until(
      'an offset commit covering rows 1-10',
      async () => (await offsetsOf()) !== committed,
      30_000,
    );
    const commitSeenAt = Date.now();

    // 11..20 reach Kafka through the worker but are not committed yet when it is killed;
    // 21..40 are written while it is dead and while it restarts.
    await insert(11, 20);
    await until('rows 11-20 through the dedicated worker', () => seen(killed, 20));
    const beforeKill = registered(killed).length;
    const writing = insert(21, 40, 100);
    await worker.kill();
    // The kill must come before the next commit (10 s after the one seen) for rows 11-20 to be replayed.
    expect(Date.now() - commitSeenAt).toBeLessThan(10_000);
    await worker.start();
    await writing;
    await until('rows 1-40 through the restarted worker', () => seen(killed, 40), 120_000);
    await until('rows 1-40 through the uninterrupted connector', () => seen(steady, 40), 60_000);
    // Changes the restarted connector still replays arrive within a moment.
    await new Promise((r) => setTimeout(r, 2000));

    const deliveries = registered(killed);
    const ids = new Map<string, Set<string>>();
    for (const e of deliveries) ids.set(e.userId, (ids.get(e.userId) ?? new Set()).add(e.id));
    // Every row came through, each under exactly one event id however often it was delivered.
    expect([...ids.keys()].sort()).toEqual(
      Array.from({ length: 40 }, (_, k) => `k-${k + 1}`).sort(),
    );
    for (const [user, set] of ids) expect(set.size, user).toBe(1);
    // The kill really forced a replay: rows 11-20 were delivered again after the restart.
    expect(deliveries.length).toBeGreaterThan(40);
    expect(
      deliveries.slice(beforeKill).some((e) => ['k-11', 'k-15', 'k-20'].includes(e.userId)),
    ).toBe(true);
    // And the ids are the ones an uninterrupted connector on the same table produced.
    expect(new Set(deliveries.map((e) => e.id))).toEqual(
      new Set(registered(steady).map((e) => e.id)),
    );
    expect(registered(steady)).toHaveLength(40);
  });
});
