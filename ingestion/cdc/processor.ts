// The CDC consumer: Debezium topics in, normalised events out on the events topic, keyed
// by userId. A batch is committed only after its events (and its poison records, on the
// DLQ with reason and origin) were acknowledged, so a crash replays rather than loses;
// replayed changes map to the same event ids.
import type { Logger } from 'pino';
import {
  keyBytesOf,
  type Bus,
  type IncomingMessage,
  type OutgoingMessage,
} from '../../platform/bus.ts';
import { createConsumeLoop, stalledHealth, type BatchRetry } from '../../platform/consume.ts';
import { encodeWithHeader, eventCodec } from '../../platform/avro.ts';
import { topics, type NormalisedEvent } from '../../platform/contracts.ts';
import type { Config } from '../../platform/config.ts';
import { errorMessage } from '../../platform/errors.ts';
import { MAX_JSON_DEPTH, jsonDepthExceeds } from '../../platform/json-depth.ts';
import { Counter, type Registry } from '../../platform/metrics.ts';
import type { Service } from '../../platform/shutdown.ts';
import {
  DecodeError,
  decodeChange,
  decodeKey,
  type ChangeRecord,
  type SchemaRegistry,
} from './debezium.ts';
import { mapChange, type MapOutcome } from './mapper.ts';
import type { CdcMapping } from './mapping.ts';

export interface CdcProcessorConfig {
  cdc: Pick<Config['cdc'], 'topics'>;
  kafka: Pick<Config['kafka'], 'topicPrefix'>;
  groupId: string;
  /** How a failing batch is retried before its partition stops (defaults: the consume loop's). */
  retry?: BatchRetry;
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
  return entries.map((t) =>
    t.length > 2 && t.startsWith('/') && t.endsWith('/') ? new RegExp(t.slice(1, -1)) : t,
  );
}

const retriable = (err: unknown) => err instanceof DecodeError && err.retriable;

/** The DLQ stage of records nested deeper than MAX_JSON_DEPTH; other refused records go with stage `cdc`. */
export const CDC_DEPTH_STAGE = 'cdc.depth';

/** What one record becomes: the mapping's outcome, or a dead letter of another stage than `cdc`. */
export type RecordOutcome = MapOutcome | { kind: 'dlq'; reason: string; stage: string };

const tooDeep = (what: string) =>
  `too deep: ${what} nests objects and arrays deeper than ${MAX_JSON_DEPTH} levels, the limit of event data`;

/**
 * Which part of a decoded row change or of its events nests deeper than ingest accepts from
 * apps, or null. A row counts as a message (level 1), so a JSON column of it holds at most
 * MAX_JSON_DEPTH - 1 levels; an event's properties and traits are level 2 as an HTTP
 * message's are. Checked on the decoded row before mapping walks it, and on the events,
 * where JSON columns (text in the record) have been parsed.
 */
function depthRefusal(change: ChangeRecord, events: NormalisedEvent[] | null): string | null {
  if (events === null) {
    if (jsonDepthExceeds(change.after, MAX_JSON_DEPTH)) return tooDeep('the row (after)');
    if (jsonDepthExceeds(change.before, MAX_JSON_DEPTH)) return tooDeep('the row (before)');
    return null;
  }
  for (const e of events) {
    for (const part of ['properties', 'traits'] as const)
      if (jsonDepthExceeds(e[part], MAX_JSON_DEPTH - 1))
        return tooDeep(`the ${part} of event ${JSON.stringify(e.type)}`);
  }
  return null;
}

/**
 * Decodes and maps one Debezium record. Throws only for trouble that retrying can cure (the
 * schema registry unreachable); anything wrong with the record itself is a `dlq` outcome.
 */
export async function processRecord(
  message: IncomingMessage,
  mapping: CdcMapping,
  registry: SchemaRegistry | undefined,
  receivedAt: number,
): Promise<RecordOutcome> {
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
  const rowTooDeep = depthRefusal(change, null);
  if (rowTooDeep !== null) return { kind: 'dlq', reason: rowTooDeep, stage: CDC_DEPTH_STAGE };
  let mapped: MapOutcome;
  try {
    mapped = mapChange(change, mapping, { receivedAt });
  } catch (err) {
    return { kind: 'dlq', reason: `mapping failed: ${errorMessage(err)}` };
  }
  if (mapped.kind !== 'events') return mapped;
  const eventsTooDeep = depthRefusal(change, mapped.events);
  return eventsTooDeep === null
    ? mapped
    : { kind: 'dlq', reason: eventsTooDeep, stage: CDC_DEPTH_STAGE };
}

/** The records of one record's events, or why one of them cannot be encoded (a JSON column nested too deeply, ...). */
function encodeEvents(
  events: NormalisedEvent[],
): { records: OutgoingMessage[] } | { reason: string } {
  try {
    return { records: events.map((e) => ({ key: e.userId, ...encodeWithHeader(eventCodec, e) })) };
  } catch (err) {
    return { reason: `mapping failed: event not encodable: ${errorMessage(err)}` };
  }
}

export function createCdcProcessor(config: CdcProcessorConfig, deps: CdcDeps): Service {
  const log = deps.logger.child({ component: 'cdc' });
  const clock = deps.clock ?? Date.now;
  const topic = topics(config.kafka.topicPrefix);
  const publisher = deps.bus.publisher();
  const eventsOut = new Counter({
    name: 'lifecycle_cdc_events_total',
    help: 'Normalised events emitted from row changes, by table.',
    labelNames: ['table'],
    registers: [deps.metrics],
  });
  let running = false;

  // Records are decoded and mapped in the stage, not the loop's decoder: a schema registry
  // out of reach must fail the batch (read again later), which only the stage can decide.
  const consumer = createConsumeLoop<IncomingMessage>(
    {
      name: 'cdc',
      groupId: config.groupId,
      topics: parseTopicList(config.cdc.topics),
      fromBeginning: true,
      dlqTopic: topic.dlq,
      ...config.retry,
      decode: (message) => message,
      async handle(records, scope) {
        const receivedAt = clock();
        const events: OutgoingMessage[] = [];
        const emitted: string[] = [];
        for (const { message } of records) {
          let outcome = await processRecord(message, deps.mapping, deps.registry, receivedAt);
          if (outcome.kind === 'events') {
            const encoded = encodeEvents(outcome.events);
            if ('reason' in encoded) {
              outcome = { kind: 'dlq', reason: encoded.reason };
            } else {
              events.push(...encoded.records);
              for (const e of outcome.events)
                emitted.push(
                  (e.context?.cdc as { table?: string } | undefined)?.table ?? 'unknown',
                );
            }
          }
          if (outcome.kind === 'dlq')
            scope.deadLetter(message, 'stage' in outcome ? outcome.stage : 'cdc', outcome.reason);
          else if (outcome.kind === 'skip') scope.skip(message, outcome.reason);
          if (!scope.isActive()) return 'abandon';
        }
        await publisher.publish(topic.events, events);
        for (const table of emitted) eventsOut.inc({ table });
        return 'commit';
      },
    },
    { bus: deps.bus, publisher, logger: deps.logger, registry: deps.metrics },
  );

  return {
    name: 'cdc',
    async start() {
      if (config.cdc.topics.length === 0)
        throw new Error('no CDC topics configured (LC_CDC_TOPICS)');
      // Reading our own output as Debezium input would dead-letter every event it writes.
      const own = Object.values(topic).filter((name) =>
        parseTopicList(config.cdc.topics).some((p) =>
          typeof p === 'string' ? p === name : p.test(name),
        ),
      );
      if (own.length > 0)
        throw new Error(
          `LC_CDC_TOPICS matches internal topics (${own.join(', ')}): give Debezium a topic.prefix different from LC_TOPIC_PREFIX`,
        );
      await consumer.start();
      running = true;
      log.info(
        {
          topics: config.cdc.topics,
          groupId: config.groupId,
          tables: Object.keys(deps.mapping.tables),
        },
        'CDC consumer started',
      );
    },
    async stop() {
      running = false;
      await consumer.stop();
    },
    health() {
      const lastError = consumer.lastError();
      const loop = stalledHealth([consumer]);
      return {
        ok: running && lastError === null && loop.ok,
        details: { lastError, assignment: consumer.assignment().length, stalled: loop.stalled },
      };
    },
  };
}
