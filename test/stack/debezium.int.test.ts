// PostgreSQL -> Debezium -> Kafka is real: a connector created through the Connect REST API
// turns an insert and an update into change events with before/after/op and the source LSN.
import { afterAll, describe, expect, it } from 'vitest';
import { isolate, stack } from '../support/isolation.ts';
import { consume, deleteTopics, testKafka } from '../support/kafka.ts';
import { dropReplication, psql } from '../support/postgres.ts';
import { waitFor } from '../support/wait.ts';

interface ChangeEvent {
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  op: 'c' | 'u' | 'd' | 'r' | 't';
  ts_ms: number;
  source: { lsn: number; txId: number; table: string; schema: string; connector: string };
}

describe('Debezium PostgreSQL connector', () => {
  const iso = isolate('cdc');
  const config = iso.config();
  const info = stack();
  const pg = config.postgres.url;
  const table = `lct_${iso.id}`;
  const slot = `lc_test_${iso.id}`.slice(0, 63);
  const publication = `lc_test_pub_${iso.id}`.slice(0, 63);
  const prefix = `lctcdc_${iso.id}`;
  const connector = `lct-${iso.id}`;
  const topic = `${prefix}.public.${table}`;
  const kafka = testKafka(config);

  const rest = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${info.connectUrl}${path}`, {
      method,
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, body: text === '' ? null : (JSON.parse(text) as unknown) };
  };

  afterAll(async () => {
    await rest('DELETE', `/connectors/${connector}`);
    await waitFor(async () => (await rest('GET', `/connectors/${connector}`)).status === 404, {
      timeout: 30_000,
    });
    await dropReplication(pg, slot, publication);
    await psql(pg, `drop table if exists public.${table}`);
    await deleteTopics(kafka, [topic]);
  });

  it('streams an insert and an update as change events with before/after/op and source.lsn', async () => {
    await psql(
      pg,
      `create table public.${table} (id int primary key, email text not null, plan text, amount numeric(10,2)); alter table public.${table} replica identity full`,
    );
    const created = await rest('POST', '/connectors', {
      name: connector,
      config: {
        'connector.class': 'io.debezium.connector.postgresql.PostgresConnector',
        'plugin.name': 'pgoutput',
        'database.hostname': info.connectPostgres.host,
        'database.port': String(info.connectPostgres.port),
        'database.user': info.connectPostgres.user,
        'database.password': info.connectPostgres.password,
        'database.dbname': info.connectPostgres.database,
        'topic.prefix': prefix,
        'table.include.list': `public.${table}`,
        'slot.name': slot,
        'publication.name': publication,
        'publication.autocreate.mode': 'filtered',
        'snapshot.mode': 'no_data',
        'decimal.handling.mode': 'string',
        'key.converter': 'org.apache.kafka.connect.json.JsonConverter',
        'key.converter.schemas.enable': 'false',
        'value.converter': 'org.apache.kafka.connect.json.JsonConverter',
        'value.converter.schemas.enable': 'false',
      },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    // Streaming starts once the task runs and the slot exists; changes after that are captured.
    await waitFor(
      async () => {
        const s = (await rest('GET', `/connectors/${connector}/status`)).body as {
          tasks?: Array<{ state: string; trace?: string }>;
        } | null;
        const task = s?.tasks?.[0];
        if (task?.state === 'FAILED')
          throw new Error(`connector task failed: ${task.trace?.split('\n')[0]}`);
        return task?.state === 'RUNNING';
      },
      { timeout: 60_000, message: `connector ${connector} not running` },
    );
    await waitFor(
      async () =>
        (await psql(pg, `select 1 from pg_replication_slots where slot_name = '${slot}'`))
          .length === 1,
      { timeout: 60_000, message: `slot ${slot} not created` },
    );

    await psql(
      pg,
      `insert into public.${table} (id, email, plan, amount) values (1, 'ada@example.com', 'trial', 9.50)`,
    );
    await psql(pg, `update public.${table} set plan = 'pro', amount = 19.00 where id = 1`);

    const records = await consume(kafka, topic, iso.group('cdc'), { count: 2, timeout: 90_000 });
    const events = records.map((r) => ({
      key: JSON.parse(r.key!.toString()) as unknown,
      value: JSON.parse(r.value!.toString()) as ChangeEvent,
    }));
    const [insert, update] = events;

    expect(insert!.key).toEqual({ id: 1 });
    expect(insert!.value.op).toBe('c');
    expect(insert!.value.before).toBeNull();
    expect(insert!.value.after).toEqual({
      id: 1,
      email: 'ada@example.com',
      plan: 'trial',
      amount: '9.50',
    });
    expect(insert!.value.source.table).toBe(table);
    expect(insert!.value.source.schema).toBe('public');

    expect(update!.value.op).toBe('u');
    expect(update!.value.before).toEqual({
      id: 1,
      email: 'ada@example.com',
      plan: 'trial',
      amount: '9.50',
    });
    expect(update!.value.after).toEqual({
      id: 1,
      email: 'ada@example.com',
      plan: 'pro',
      amount: '19.00',
    });
    expect(typeof insert!.value.source.lsn).toBe('number');
    expect(update!.value.source.lsn).toBeGreaterThan(insert!.value.source.lsn);
    expect(update!.value.source.txId).toBeGreaterThan(insert!.value.source.txId);
  });
});
