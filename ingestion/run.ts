// Process entry of the CDC consumer: build the real clients from config and start it.
// `lifecycle run ingest` runs it beside the HTTP ingest API (http/run.ts) in one process
// (only when LC_CDC_TOPICS is set); each can also run alone and scale on its own.
import type { Logger } from 'pino';
import type { Config } from '../platform/config.ts';
import { topics } from '../platform/contracts.ts';
import { internalTopicSpecs } from '../platform/bus.ts';
import { KafkaBus } from '../platform/kafka.ts';
import type { RunningUnit } from '../platform/main.ts';
import { createMetricsRegistry, type Registry } from '../platform/metrics.ts';
import { createCdcProcessor } from './cdc/processor.ts';
import { loadMapping } from './cdc/mapping.ts';
import { createSchemaRegistry } from './cdc/debezium.ts';

/** Consumer group of the CDC consumer, derived from the topic prefix. */
export const cdcGroupId = (config: Pick<Config, 'kafka'>) => `${config.kafka.topicPrefix}-cdc`;

export async function runCdc(
  config: Readonly<Config>,
  logger: Logger,
  metrics: Registry = createMetricsRegistry({ process: 'cdc' }),
): Promise<RunningUnit> {
  const mapping = loadMapping(config.cdc.mappingFile);
  const bus = KafkaBus.fromConfig(config, logger);
  const t = topics(config.kafka.topicPrefix);
  await bus.ensureTopics(
    internalTopicSpecs(t, config.kafka.partitions).filter(
      (s) => s.topic === t.events || s.topic === t.dlq,
    ),
  );
  const processor = createCdcProcessor(
    { cdc: config.cdc, kafka: config.kafka, groupId: cdcGroupId(config) },
    {
      bus,
      logger,
      metrics,
      mapping,
      ...(config.cdc.schemaRegistryUrl
        ? { registry: createSchemaRegistry(config.cdc.schemaRegistryUrl) }
        : {}),
    },
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
