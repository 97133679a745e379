// Process entry points: build the real clients from config and start the HTTP ingest API
// or the CDC consumer. `lifecycle run ingest` calls both in one process (runCdc only when
// LC_CDC_TOPICS is set); each can also run alone and scale on its own.
import type { Logger } from 'pino';
import type { Config } from '../platform/config.ts';
import { topics } from '../platform/contracts.ts';
import { internalTopicSpecs } from '../platform/bus.ts';
import { KafkaBus } from '../platform/kafka.ts';
import { createMetricsRegistry, type Registry } from '../platform/metrics.ts';
import { createIngestServer } from './http/server.ts';
import { createCdcProcessor } from './cdc/processor.ts';
import { loadMapping } from './cdc/mapping.ts';
import { createSchemaRegistry } from './cdc/debezium.ts';

export interface RunningUnit {
  /** Graceful: stops accepting, waits for in-flight Kafka acknowledgements or commits, closes clients. */
  stop(): Promise<void>;
  health(): { ok: boolean; details?: Record<string, unknown> };
}

/** Consumer group of the CDC consumer, derived from the topic prefix. */
export const cdcGroupId = (config: Pick<Config, 'kafka'>) => `${config.kafka.topicPrefix}-cdc`;

/**
 * Idempotent producers of the ingest process, with the events topic's partitions sharded
 * across them: with one, the process idles while each produce waits for the broker (kafkajs
 * allows one request in flight per idempotent producer); see README, Performance.
 */
export const INGEST_PRODUCERS = 1;

/** The Kafka bus of the HTTP ingest API. */
export function createIngestBus(config: Pick<Config, 'kafka'>, logger: Logger, producers = INGEST_PRODUCERS): KafkaBus {
  return KafkaBus.fromConfig(config, logger, { producers });
}

export async function runIngest(config: Readonly<Config>, logger: Logger, metrics: Registry = createMetricsRegistry({ labels: { service: 'ingest' } })): Promise<RunningUnit & { url: string }> {
  const bus = createIngestBus(config, logger);
  await bus.ensureTopics(internalTopicSpecs(topics(config.kafka.topicPrefix), config.kafka.partitions));
  const app = await createIngestServer(config, { bus, logger, metrics });
  const url = await app.listen({ host: config.http.host, port: config.http.ingestPort });
  logger.info({ component: 'ingest-http', url }, 'ingest API listening');
  let healthy = true;
  return {
    url,
    async stop() {
      healthy = false;
      await app.close();
      await bus.close();
    },
    health: () => ({ ok: healthy }),
  };
}

export async function runCdc(config: Readonly<Config>, logger: Logger, metrics: Registry = createMetricsRegistry({ labels: { service: 'cdc' } })): Promise<RunningUnit> {
  const mapping = loadMapping(config.cdc.mappingFile);
  const bus = KafkaBus.fromConfig(config, logger);
  const t = topics(config.kafka.topicPrefix);
  await bus.ensureTopics(internalTopicSpecs(t, config.kafka.partitions).filter((s) => s.topic === t.events || s.topic === t.dlq));
  const processor = createCdcProcessor(
    { cdc: config.cdc, kafka: config.kafka, groupId: cdcGroupId(config) },
    { bus, logger, metrics, mapping, ...(config.cdc.schemaRegistryUrl ? { registry: createSchemaRegistry(config.cdc.schemaRegistryUrl) } : {}) },
  );
  await processor.start();
  return {
    async stop() {
      await processor.stop();
      await bus.close();
    },
    health: () => processor.health(),
  };
}
