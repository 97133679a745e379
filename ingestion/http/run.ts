// Process entry of the HTTP ingest API: its Kafka bus from config, the server on the
// ingest port, and a graceful stop. Each worker of the ingest cluster runs one.
import type { Logger } from 'pino';
import type { Config } from '../../platform/config.ts';
import { topics } from '../../platform/contracts.ts';
import { internalTopicSpecs } from '../../platform/bus.ts';
import { KafkaBus } from '../../platform/kafka.ts';
import type { RunningUnit } from '../../platform/main.ts';
import { createMetricsRegistry, type Registry } from '../../platform/metrics.ts';
import { createIngestServer } from './server.ts';

/**
 * Idempotent producers of the ingest process, with the events topic's partitions sharded
 * across them: with one, the process idles while each produce waits for the broker (kafkajs
 * allows one request in flight per idempotent producer); see README, Performance.
 */
export const INGEST_PRODUCERS = 1;

/** The Kafka bus of the HTTP ingest API. */
export function createIngestBus(
  config: Pick<Config, 'kafka'>,
  logger: Logger,
  producers = INGEST_PRODUCERS,
): KafkaBus {
  return KafkaBus.fromConfig(config, logger, { producers });
}

export async function runIngest(
  config: Readonly<Config>,
  logger: Logger,
  metrics: Registry = createMetricsRegistry({ process: 'ingest' }),
): Promise<RunningUnit & { url: string }> {
  const bus = createIngestBus(config, logger);
  await bus.ensureTopics(
    internalTopicSpecs(topics(config.kafka.topicPrefix), config.kafka.partitions),
  );
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
