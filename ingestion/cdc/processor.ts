// The CDC consumer: Debezium topics in, normalised events out on the events topic, keyed
// by userId. A batch is committed only after its events (and its poison records, on the
// DLQ with reason and origin) were acknowledged, so a crash replays rather than loses;
// replayed changes map to the same event ids.
import type { Logger } from 'pino';
import { keyBytesOf, type Batch, type BatchControl, type Bus, type IncomingMessage, type OutgoingMessage } from '../../platform/bus.ts';
import { encodeWithHeader, eventCodec } from '../../platform/avro.ts';
import { DlqHeaders, topics, type NormalisedEvent } from '../../platform/contracts.ts';
import type { Config } from '../../platform/config.ts';
import { errorMessage } from '../../platform/errors.ts';
import { Counter, Histogram, type Registry } from '../../platform/metrics.ts';
import type { Service } from '../../platform/shutdown.ts';
import { DecodeError, decodeChange, decodeKey, type ChangeRecord, type SchemaRegistry } from './debezium.ts';
import { mapChange, type MapOutcome } from './mapper.ts';
import type { CdcMapping } from './mapping.ts';

export interface CdcProcessorConfig {
  cdc: Pick<Config['cdc'], 'topics'>;
  kafka: Pick<Config['kafka'], 'topicPrefix'>;
  groupId: string;
}

export interface CdcDeps {
  bus: Pick<Bus, 'consumer' | 'publisher'>;
  logger: Logger;
  metrics: Registry;
  mapping: CdcMapping;
  registry?: SchemaRegistry;
  clock?: () => number;
}

/** `LC_CDC_TOPICS` entries: names, or regular expressions between slashes. */
export function parseTopicList(entries: readonly string[]): (string | RegExp)[] {
  return entries.map((t) => (t.length > 2 && t.startsWith('/') && t.endsWith('/') ? new RegExp(t.slice(1, -1)) : t));
}

const retriable = (err: unknown) => err instanceof DecodeError && err.retriable;

/**
 * Decodes and maps one Debezium record. Throws only for trouble that retrying can cure (the
 * schema registry unreachable); anything wrong with the record itself is a `dlq` outcome.
 */
export async function processRecord(message: IncomingMessage, mapping: CdcMapping, registry: SchemaRegistry | undefined, receivedAt: number): Promise<MapOutcome> {
  let change: ChangeRecord | null;
  try {
    // The key's bytes as they are (Avro keys are binary). An undecodable key is dropped and
    // the row itself identifies the change in the event id.
    const key = await decodeKey(keyBytesOf(message), registry).catch((err: unknown) => {
      if (retriable(err)) throw err;
      return null;
    });
    change = await decodeChange(message.value, key, registry);
  } catch (err) {
    if (retriable(err)) throw err;
    return { kind: 'dlq', reason: `unparseable: ${errorMessage(err)}` };
  }
  if (change === null) return { kind: 'skip', reason: 'tombstone' };
  try {
    return mapChange(change, mapping, { receivedAt });
  } catch (err) {
    return { kind: 'dlq', reason: `mapping failed: ${errorMessage(err)}` };
  }
}

/** The records of one record's events, or why one of them cannot be encoded (a JSON column nested too deeply, ...). */
function encodeEvents(events: NormalisedEvent[]): { records: OutgoingMessage[] } | { reason: string } {
  try {
    return { records: events.map((e) => ({ key: e.userId, ...encodeWithHeader(eventCodec, e) })) };
  } catch (err) {
    return { reason: `mapping failed: event not encodable: ${errorMessage(err)}` };
  }
}

export function createCdcProcessor(config: CdcProcessorConfig, deps: CdcDeps): Service {
  const log = deps.logger.child({ component: 'cdc' });
  const clock = deps.clock ?? Date.now;
  const t = topics(config.kafka.topicPrefix);
  const publisher = deps.bus.publisher();
  const outcomes = new Counter({ name: 'cdc_records_total', help: 'Debezium records by outcome (event, skip, dlq).', labelNames: ['outcome'], registers: [deps.metrics] });
  const eventsOut = new Counter({ name: 'cdc_events_total', help: 'Normalised events emitted from row changes, by table.', labelNames: ['table'], registers: [deps.metrics] });
  const batchSeconds = new Histogram({ name: 'cdc_batch_seconds', help: 'Time to decode, map and publish one batch.', buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5], registers: [deps.metrics] });
  let lastError: string | null = null;
  let running = false;

  const eachBatch = async (batch: Batch, control: BatchControl) => {
    const started = performance.now();
    const receivedAt = clock();
    const events: OutgoingMessage[] = [];
    const dlq: OutgoingMessage[] = [];
    for (const m of batch.messages) {
      let outcome = await processRecord(m, deps.mapping, deps.registry, receivedAt);
      if (outcome.kind === 'events') {
        const encoded = encodeEvents(outcome.events);
        if ('reason' in encoded) {
          outcome = { kind: 'dlq', reason: encoded.reason };
        } else {
          events.push(...encoded.records);
          for (const e of outcome.events) eventsOut.inc({ table: (e.context?.cdc as { table?: string } | undefined)?.table ?? 'unknown' });
        }
      }
      outcomes.inc({ outcome: outcome.kind === 'events' ? 'event' : outcome.kind });
      if (outcome.kind === 'dlq') {
        log.warn({ topic: m.topic, partition: m.partition, offset: m.offset, reason: outcome.reason }, 'CDC record sent to the DLQ');
        dlq.push({
          key: m.key,
          keyBytes: keyBytesOf(m),
          value: m.value,
          headers: {
            ...m.headers,
            [DlqHeaders.reason]: outcome.reason.slice(0, 1000),
            [DlqHeaders.stage]: 'cdc',
            [DlqHeaders.sourceTopic]: m.topic,
            [DlqHeaders.sourcePartition]: String(m.partition),
            [DlqHeaders.sourceOffset]: m.offset,
          },
        });
      }
      if (!control.isActive()) return;
    }
    try {
      await Promise.all([publisher.publish(t.events, events), publisher.publish(t.dlq, dlq)]);
      lastError = null;
    } catch (err) {
      lastError = errorMessage(err);
      throw err;
    }
    const last = batch.messages[batch.messages.length - 1];
    if (last && control.isActive()) await control.commit((BigInt(last.offset) + 1n).toString());
    batchSeconds.observe((performance.now() - started) / 1000);
  };

  const consumer = deps.bus.consumer({
    groupId: config.groupId,
    topics: parseTopicList(config.cdc.topics),
    fromBeginning: true,
    eachBatch: async (batch, control) => {
      try {
        await eachBatch(batch, control);
      } catch (err) {
        lastError = errorMessage(err);
        log.error({ err, topic: batch.topic, partition: batch.partition }, 'CDC batch failed; it will be retried');
        throw err;
      }
    },
  });

  return {
    name: 'cdc',
    async start() {
      if (config.cdc.topics.length === 0) throw new Error('no CDC topics configured (LC_CDC_TOPICS)');
      // Reading our own output as Debezium input would dead-letter every event it writes.
      const own = Object.values(t).filter((name) => parseTopicList(config.cdc.topics).some((p) => (typeof p === 'string' ? p === name : p.test(name))));
      if (own.length > 0) throw new Error(`LC_CDC_TOPICS matches internal topics (${own.join(', ')}): give Debezium a topic.prefix different from LC_TOPIC_PREFIX`);
      await consumer.start();
      running = true;
      log.info({ topics: config.cdc.topics, groupId: config.groupId, tables: Object.keys(deps.mapping.tables) }, 'CDC consumer started');
    },
    async stop() {
      running = false;
      await consumer.stop();
    },
    health() {
      return { ok: running && lastError === null, details: { lastError, assignment: consumer.assignment().length } };
    },
  };
}
