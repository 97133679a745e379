// Benchmark: CDC mapping throughput. A topic is pre-filled with Debezium change records (JsonConverter,
// no schemas: inserts, plan changes, trait updates, snapshot reads) for the shipped example
// mapping; the CDC consumer then decodes, maps, publishes the events (acks=all) and commits.
// Reported: records/s through the whole consumer, and records/s of decode+map alone in the
// same run (the consumer's ceiling without Kafka).
// Run alone: npx tsx bench/cdc.ts (needs scripts/stack up).
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { IncomingMessage, OutgoingMessage } from '../platform/bus.ts';
import { loadConfig } from '../platform/config.ts';
import { topics } from '../platform/contracts.ts';
import { KafkaBus } from '../platform/kafka.ts';
import { createLogger } from '../platform/logger.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import { loadMapping } from '../ingestion/cdc/mapping.ts';
import { createCdcProcessor, processRecord } from '../ingestion/cdc/processor.ts';

const SELF = fileURLToPath(import.meta.url);
const RECORDS = 40_000;
const PLANS = ['trial', 'basic', 'pro', 'family'];

function records(n: number): OutgoingMessage[] {
  const out: OutgoingMessage[] = [];
  const created = 1_760_000_000_000_000;
  for (let i = 0; i < n; i++) {
    const id = `user-${i % 5000}`;
    const row = {
      id,
      email: `${id}@example.com`,
      first_name: 'Ann',
      plan: PLANS[i % 4],
      password_hash: 'x',
      signup_source: 'ads',
      email_verified: i % 3 === 0,
      visits: i,
      created_at: created + i,
      trial_ends_at: null,
    };
    const kind = i % 10;
    const op = kind < 5 ? 'c' : kind < 9 ? 'u' : 'r';
    const before =
      op === 'u' ? { ...row, plan: kind < 7 ? PLANS[(i + 1) % 4] : row.plan, visits: i - 1 } : null;
    const value = {
      before,
      after: row,
      source: {
        version: '3.2.3.Final',
        connector: 'postgresql',
        name: 'app',
        ts_ms: 1_780_000_000_000 + i,
        snapshot: op === 'r' ? 'true' : 'false',
        db: 'app',
        schema: 'public',
        table: 'users',
        txId: 1000 + i,
        lsn: 50_000_000 + i * 64,
      },
      op,
      ts_ms: 1_780_000_000_000 + i,
    };
    out.push({ key: JSON.stringify({ id }), value: Buffer.from(JSON.stringify(value)) });
  }
  return out;
}

export async function run() {
  const config = loadConfig();
  const logger = createLogger({ level: 'error', name: 'bench-cdc' });
  const mapping = loadMapping(
    path.join(path.dirname(SELF), '..', 'ingestion', 'cdc-mapping.example.json'),
  );
  const run = `bench-cdc-${randomBytes(3).toString('hex')}`;
  const input = `${run}-db.public.users`;
  const t = topics(run);
  const bus = KafkaBus.fromConfig(config, logger);
  const messages = records(RECORDS);
  try {
    await bus.ensureTopics([
      { topic: input, partitions: 3 },
      { topic: t.events, partitions: config.kafka.partitions },
      { topic: t.dlq, partitions: 1 },
    ]);
    const publisher = bus.publisher();
    for (let i = 0; i < messages.length; i += 2000)
      await publisher.publish(input, messages.slice(i, i + 2000));

    // Decode + map alone, same records, same process.
    const incoming: IncomingMessage[] = messages.map((m, i) => ({
      topic: input,
      partition: 0,
      offset: String(i),
      key: m.key,
      value: m.value,
      headers: {},
      timestamp: 0,
    }));
    let events = 0;
    const mapStart = performance.now();
    for (const m of incoming) {
      const o = await processRecord(m, mapping, undefined, Date.now());
      if (o.kind === 'events') events += o.events.length;
    }
    const mapSeconds = (performance.now() - mapStart) / 1000;

    // The whole consumer: Kafka in, events out with acks=all, offsets committed.
    const groupId = `${run}-cdc`;
    const processor = createCdcProcessor(
      { cdc: { topics: [input] }, kafka: { topicPrefix: run }, groupId },
      { bus, logger, metrics: createMetricsRegistry({ defaults: false }), mapping },
    );
    const started = performance.now();
    await processor.start();
    let committed = 0;
    let first: { at: number; committed: number } | null = null;
    const deadline = Date.now() + 120_000;
    while (committed < RECORDS && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      const offsets = await bus.committedOffsets(groupId, input);
      committed = [...offsets.values()].reduce((a, b) => a + Math.max(0, Number(b)), 0);
      if (!first && committed > 0) first = { at: performance.now(), committed };
    }
    const ended = performance.now();
    const pipelineSeconds = (ended - started) / 1000;
    await processor.stop();
    const out = [...(await bus.endOffsets(t.events)).values()].reduce((a, b) => a + Number(b), 0);

    const result = {
      at: new Date().toISOString(),
      node: process.version,
      records: RECORDS,
      eventsPerPass: events,
      decodeAndMapRecordsPerSec: Math.round(RECORDS / mapSeconds),
      consumerRecordsPerSec: Math.round(committed / pipelineSeconds),
      // after the first commit: the group has joined and batches are flowing
      consumerSteadyRecordsPerSec: first
        ? Math.round((committed - first.committed) / ((ended - first.at) / 1000))
        : 0,
      consumerSecondsIncludingGroupJoin: Number(pipelineSeconds.toFixed(2)),
      eventsPublished: out,
      allRecordsCommitted: committed >= RECORDS,
      allEventsPublished: out >= events,
    };
    const dir = path.join(path.dirname(SELF), 'results');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'cdc.json'), `${JSON.stringify(result, null, 2)}\n`);
    console.log(
      `decode + map only:   ${result.decodeAndMapRecordsPerSec} records/s (${events} events from ${RECORDS} records)`,
    );
    console.log(
      `CDC consumer:        ${result.consumerSteadyRecordsPerSec} records/s once flowing, ${result.consumerRecordsPerSec} records/s including the group join (${result.consumerSecondsIncludingGroupJoin} s); Kafka in, events acked, offsets committed`,
    );
    console.log(
      `events on the topic: ${out} (expected ${events}); all records committed: ${result.allRecordsCommitted}`,
    );
    return result;
  } finally {
    const admin = bus.kafka.admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [input, t.events, t.dlq] }).catch(() => undefined);
    await admin.disconnect();
    await bus.close();
  }
}

if (process.argv[1] === SELF) await run();
