// The Avro promise, for real: the shipped Avro connector config (Apicurio's AvroConverter
// writing the Confluent wire format, schemas registered in the stack's Apicurio registry)
// and the shipped mapping, pointed at this test's own schema, slot and topics; rows
// inserted, updated and deleted go through Debezium and Kafka Connect, and the CDC consumer
// (started as the product starts it, from LC_* variables with LC_SCHEMA_REGISTRY_URL) turns
// them into the same normalised events as the JSON test, values decoded to proper types.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isolate, stack } from '../../test/support/isolation.ts';
import { deleteTopics, testKafka } from '../../test/support/kafka.ts';
import { readStackEnv } from '../../test/support/stack-env.ts';
import { waitFor } from '../../test/support/wait.ts';
import { connectRequest } from '../../test/support/connect.ts';
import { dropReplication } from '../../test/support/postgres.ts';
import { KafkaBus } from '../../platform/kafka.ts';
import { eventCodec } from '../../platform/avro.ts';
import {
  DlqHeaders,
  SCHEMA_ID_HEADER,
  topics,
  type NormalisedEvent,
} from '../../platform/contracts.ts';
import type { BusConsumer, IncomingMessage } from '../../platform/bus.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import { checkMapping, type CdcMapping } from './mapping.ts';
import type { RunningUnit } from '../../platform/main.ts';
import { runCdc } from '../run.ts';

/**
 * The registry's addresses, or why there is none: scripts/stack runs Apicurio (and gives the
 * Connect worker its AvroConverter); the testcontainers stack has neither.
 */
function registry(): { convertersUrl: string; consumerUrl: string } | { missing: string } {
  if (stack().mode !== 'local')
    return {
      missing:
        'the testcontainers stack (Docker) has no schema registry and no Avro converter in its Connect image',
    };
  const s = readStackEnv();
  const base = `http://${s.STACK_HOST ?? '127.0.0.1'}:${s.SCHEMA_REGISTRY_PORT}`;
  if (!s.SCHEMA_REGISTRY_PORT)
    throw new Error(
      'scripts/stack.env has no SCHEMA_REGISTRY_PORT: the local stack must run the schema registry',
    );
  // Apicurio's own API for its converter; the Confluent-compatible one for our consumer.
  return { convertersUrl: `${base}/apis/registry/v2`, consumerUrl: `${base}/apis/ccompat/v7` };
}

const where = registry();
const reason = 'missing' in where ? where.missing : '';

describe.skipIf(reason !== '')(
  `Avro (Confluent wire format via Apicurio): PostgreSQL -> Debezium -> Kafka -> CDC -> normalised events${reason ? ` [skipped: ${reason}]` : ''}`,
  () => {
    const urls = where as { convertersUrl: string; consumerUrl: string };
    const iso = isolate('cdc_avro');
    const run = iso.id;
    const dbTopics = `cdca_${run}`;
    const tableTopics = [
      `${dbTopics}.${run}.users`,
      `${dbTopics}.${run}.subscriptions`,
      `${dbTopics}.${run}.accounts`,
    ];
    const logger = silentLogger();
    const t = topics(iso.topicPrefix);
    const config = iso.config();
    const connectUrl = stack().connectUrl;
    const pg = stack().connectPostgres;
    const dir = mkdtempSync(join(tmpdir(), `${run}-`));
    let bus: KafkaBus;
    let cdc: RunningUnit | undefined;
    let reader: BusConsumer;
    const events: { key: string | null; event: NormalisedEvent }[] = [];
    const dead: IncomingMessage[] = [];

    const sql = (statement: string) =>
      execFileSync(
        'psql',
        [config.postgres.url, '-v', 'ON_ERROR_STOP=1', '-qAt', '-c', statement],
        { encoding: 'utf8' },
      );
    const until = <T>(
      what: string,
      probe: () => T | undefined | false | Promise<T | undefined | false>,
      timeout = 60_000,
    ) => waitFor(probe, { timeout, interval: 200, message: `waiting for ${what}` }) as Promise<T>;

    const connect = (method: string, path: string, body?: unknown) =>
      connectRequest(connectUrl, method, path, body);

    /** The shipped Avro connector config, pointed at this test's database objects, topics and the stack's registry. */
    function testConnector(): Record<string, string> {
      const example = JSON.parse(
        readFileSync('ingestion/debezium-connector-avro.example.json', 'utf8'),
      ) as { config: Record<string, string> };
      expect(example.config['value.converter']).toBe(
        'io.apicurio.registry.utils.converter.AvroConverter',
      );
      expect(example.config['value.converter.apicurio.registry.as-confluent']).toBe('true');
      return {
        ...example.config,
        'database.hostname': pg.host,
        'database.port': String(pg.port),
        'database.user': pg.user,
        'database.password': pg.password,
        'database.dbname': pg.database,
        'topic.prefix': dbTopics,
        'table.include.list': `${run}.users,${run}.subscriptions,${run}.accounts`,
        'slot.name': run,
        'publication.name': run,
        'key.converter.apicurio.registry.url': urls.convertersUrl,
        'value.converter.apicurio.registry.url': urls.convertersUrl,
      };
    }

    /**
     * The shipped mapping, with its tables moved to this test's schema, and one table keyed by
     * integers whose snapshot rows become events: all its rows share the snapshot's log
     * position, so only the Avro key tells their event ids apart.
     */
    function testMapping(): CdcMapping {
      const example = JSON.parse(
        readFileSync('ingestion/cdc-mapping.example.json', 'utf8'),
      ) as CdcMapping;
      const tables = Object.fromEntries(
        Object.entries(example.tables).map(([name, tb]) => [
          name.replace(/^public\./, `${run}.`),
          tb,
        ]),
      );
      tables[`${run}.accounts`] = {
        userId: 'owner',
        snapshot: 'events',
        insert: { event: 'account_imported', properties: ['id', 'credit'] },
      };
      const mapping = { ...example, tables };
      expect(checkMapping(mapping)).toEqual([]);
      return mapping;
    }

    beforeAll(async () => {
      const answer = await fetch(`${urls.consumerUrl}/subjects`).catch(
        (err: unknown) => err as Error,
      );
      if (answer instanceof Error || !answer.ok) {
        throw new Error(
          `the local stack's schema registry does not answer at ${urls.consumerUrl} (${answer instanceof Error ? answer.message : answer.status}): run scripts/stack up, see scripts/stack status and .stack/logs/registry.log`,
        );
      }
      sql(`
      CREATE SCHEMA ${run};
      CREATE TABLE ${run}.users (
        id text PRIMARY KEY, email text, first_name text, plan text NOT NULL, password_hash text,
        signup_source text, email_verified boolean NOT NULL DEFAULT false, visits integer NOT NULL DEFAULT 0,
        created_at timestamp NOT NULL DEFAULT now(), trial_ends_at timestamp,
        renews_at timestamptz, birthday date, balance numeric(12,2), prefs jsonb);
      CREATE TABLE ${run}.subscriptions (
        id serial PRIMARY KEY, user_id text, plan text NOT NULL, amount numeric(10,2) NOT NULL, currency text NOT NULL,
        status text NOT NULL, started_at timestamp NOT NULL DEFAULT now(), canceled_at timestamp);
      ALTER TABLE ${run}.users REPLICA IDENTITY FULL;
      ALTER TABLE ${run}.subscriptions REPLICA IDENTITY FULL;
      INSERT INTO ${run}.users (id, email, first_name, plan, password_hash, signup_source, created_at, renews_at, birthday, balance, prefs)
        VALUES ('u-old', 'old@example.com', 'Olga', 'trial', 'secret-hash', 'seo', '2025-06-01 10:00:00.123456',
                '2026-01-01 00:00:00+02', '1990-05-17', -1234.5, '{"lang": "de", "tags": ["a"]}');
      INSERT INTO ${run}.subscriptions (user_id, plan, amount, currency, status) VALUES ('u-old', 'trial', 0, 'EUR', 'active');
      -- Keys 64 and up are Avro varints with bytes that are not UTF-8 on their own.
      CREATE TABLE ${run}.accounts (id integer PRIMARY KEY, owner text NOT NULL, credit numeric(8,3));
      INSERT INTO ${run}.accounts VALUES (64, 'u-acc', 1.5), (65, 'u-acc', 2.25), (300, 'u-acc', -0.125);
    `);
      bus = KafkaBus.fromConfig(config, logger);
      // Created up front so the consumer's regex subscription sees them before Debezium writes.
      await bus.ensureTopics([
        { topic: t.events, partitions: 3 },
        { topic: t.dlq, partitions: 1 },
        ...tableTopics.map((topic) => ({ topic, partitions: 1 })),
      ]);
      const created = await connect('PUT', `/connectors/${run}/config`, testConnector());
      expect(created.status, JSON.stringify(created.json)).toBeLessThan(300);

      const mappingFile = join(dir, 'mapping.json');
      writeFileSync(mappingFile, JSON.stringify(testMapping()));
      // As the product runs it: the registry and everything else from LC_* variables.
      cdc = await runCdc(
        iso.config({
          LC_CDC_TOPICS: `/^${dbTopics.replace(/\./g, '\\.')}\\./`,
          LC_CDC_MAPPING_FILE: mappingFile,
          LC_SCHEMA_REGISTRY_URL: urls.consumerUrl,
        }),
        logger,
        createMetricsRegistry({ defaults: false }),
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
      await reader.start();
    });

    afterAll(async () => {
      await connect('DELETE', `/connectors/${run}`).catch(() => undefined);
      await cdc?.stop().catch(() => undefined);
      await reader?.stop().catch(() => undefined);
      await bus?.close().catch(() => undefined);
      // The slot stays active for a moment after the connector stops.
      await dropReplication(config.postgres.url, run, run);
      sql(`DROP SCHEMA IF EXISTS ${run} CASCADE;`);
      await deleteTopics(testKafka(config), [...tableTopics, t.events, t.dlq]).catch(
        () => undefined,
      );
      rmSync(dir, { recursive: true, force: true });
    });

    it('the records on the topics are Avro in the Confluent wire format, their schemas in the registry', async () => {
      const consumer = bus.consumer({
        groupId: iso.group('raw'),
        topics: [tableTopics[0]!],
        fromBeginning: true,
        eachBatch: async (batch, control) => {
          raw.push(...batch.messages);
          await control.commit((BigInt(batch.messages.at(-1)!.offset) + 1n).toString());
        },
      });
      const raw: IncomingMessage[] = [];
      await consumer.start();
      try {
        const [first] = await until('a users record', () => (raw.length > 0 ? raw : undefined));
        const value = first!.value!;
        expect(value[0]).toBe(0);
        const id = value.readInt32BE(1);
        const res = await fetch(`${urls.consumerUrl}/schemas/ids/${id}`);
        expect(res.status).toBe(200);
        const body = (await res.json()) as { schema: string; references?: { name: string }[] };
        expect(JSON.parse(body.schema)).toMatchObject({ type: 'record', name: 'Envelope' });
        // Apicurio registers Debezium's source record as a subject of its own and refers to it.
        expect(body.references?.map((r) => r.name)).toContain(
          'io.debezium.connector.postgresql.Source',
        );
      } finally {
        await consumer.stop();
      }
    });

    it('snapshot rows of an integer-keyed table: each its own event id, from the decoded Avro key', async () => {
      const imported = await until('three account_imported events', () => {
        const found = events.filter((e) => e.event.type === 'account_imported');
        return found.length >= 3 ? found : undefined;
      });
      expect(
        imported.map((e) => e.event.properties).sort((a, b) => Number(a.id) - Number(b.id)),
      ).toEqual([
        { id: 64, credit: 1.5 },
        { id: 65, credit: 2.25 },
        { id: 300, credit: -0.125 },
      ]);
      expect(new Set(imported.map((e) => e.event.id)).size).toBe(3);
    });

    it('snapshot rows become traits with typed values; inserts, updates and deletes become the mapped events; poison goes to the DLQ', async () => {
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
          visits: 0,
          renews_at: '2025-12-31T22:00:00.000Z',
          birthday: '1990-05-17',
          balance: -1234.5,
          prefs: { lang: 'de', tags: ['a'] },
        },
      });
      expect(snapshot.event.traits).not.toHaveProperty('password_hash');
      expect(snapshot.event.traits).toHaveProperty('trial_ends_at', null);
      sql(`
      INSERT INTO ${run}.users (id, email, first_name, plan, password_hash, signup_source) VALUES ('u-new', 'new@example.com', 'Nina', 'trial', 'h', 'ads');
      UPDATE ${run}.users SET plan = 'pro', balance = 99.99 WHERE id = 'u-old';
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
        traits: { email: 'new@example.com', plan: 'trial', email_verified: false },
      });
      expect(byType('plan_changed')[0]).toMatchObject({
        userId: 'u-old',
        properties: { from: 'trial', to: 'pro' },
        traits: { plan: 'pro', balance: 99.99, birthday: '1990-05-17' },
      });
      expect(byType('subscription_started')[0]).toMatchObject({
        userId: 'u-new',
        properties: { plan: 'pro', amount: 19.9, currency: 'EUR', status: 'active' },
      });
      expect(typeof byType('subscription_started')[0]!.properties!.id).toBe('number');
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
      expect(events.filter((e) => e.event.userId === 'u-old').map((e) => e.event.type)).toEqual([
        'identify',
        'plan_changed',
        'user_deleted',
      ]);
      const [poison] = await until('DLQ record', () => (dead.length > 0 ? dead : undefined));
      expect(poison!.headers[DlqHeaders.reason]).toMatch(/no user id: column user_id/);
      expect(poison!.headers[DlqHeaders.sourceTopic]).toBe(`${dbTopics}.${run}.subscriptions`);
      // nothing else was dead-lettered: every Avro record decoded
      await new Promise((r) => setTimeout(r, 1000));
      expect(dead.map((m) => m.headers[DlqHeaders.reason])).toEqual([
        poison!.headers[DlqHeaders.reason],
      ]);
    });
  },
);
