// `lifecycle run <process...>`: the production processes, each built from the one
// validated config, started in order and stopped gracefully on SIGINT/SIGTERM.
import type { Logger } from 'pino';
import type { Config } from '../platform/config.ts';
import { createMetricsRegistry, serveMetrics, type Registry } from '../platform/metrics.ts';
import { KafkaBus, waitForKafka } from '../platform/kafka.ts';
import type { StartRetry } from '../platform/ready.ts';
import { openRedis } from '../platform/redis.ts';
import { internalTopicSpecs } from '../platform/bus.ts';
import { topics } from '../platform/contracts.ts';
import { runIngest, runCdc } from '../ingestion/index.ts';
import { runIngestCluster } from '../ingestion/http/cluster.ts';
import { runEngine } from '../engine/index.ts';
import { runDelivery } from '../delivery/index.ts';
import { runScheduler } from '../engine/scheduler/index.ts';
import { runSink } from '../analytics/index.ts';
import { createApiServer } from './api.ts';

export const PROCESSES = ['ingest', 'engine', 'delivery', 'scheduler', 'sink', 'api'] as const;
export type ProcessName = (typeof PROCESSES)[number];

export interface Running {
  name: string;
  stop(): Promise<void>;
  url?: string;
}

async function runApi(
  config: Readonly<Config>,
  logger: Logger,
  metrics: Registry,
): Promise<Running> {
  const bus = KafkaBus.fromConfig(config, logger);
  await bus.ensureTopics(
    internalTopicSpecs(topics(config.kafka.topicPrefix), config.kafka.partitions),
  );
  // Unsubscribes and preference changes are answered once durable (platform/redis.ts).
  const redis = await openRedis(config, logger);
  const app = await createApiServer(config, {
    redis,
    bus,
    publisher: bus.publisher(),
    logger,
    metrics,
  });
  const url = await app.listen({ host: config.http.host, port: config.http.apiPort });
  return {
    name: 'api',
    url,
    async stop() {
      await app.close();
      await bus.close();
      redis.redis.disconnect();
    },
  };
}

export async function startProcesses(
  names: readonly ProcessName[],
  config: Readonly<Config>,
  logger: Logger,
  opts: { startRetry?: StartRetry } = {},
): Promise<Running[]> {
  // Every process talks to Kafka first: started before it (or while a broker restarts), it
  // waits and says so rather than exiting after kafkajs's few quick retries.
  await waitForKafka(config.kafka, logger, opts.startRetry);
  const registry = createMetricsRegistry({ process: names.join('+') });
  const running: Running[] = [];
  // What /metrics serves: this process's registry, or with ingest workers, theirs added to it.
  let metricsSource: Pick<Registry, 'metrics' | 'contentType'> = registry;
  try {
    for (const name of names) {
      const log = logger.child({ process: name });
      switch (name) {
        case 'ingest': {
          if (config.ingest.workers > 1) {
            const ingest = await runIngestCluster(config, log, registry);
            metricsSource = ingest;
            running.push({ name: 'ingest', url: ingest.url, stop: () => ingest.stop() });
          } else {
            const ingest = await runIngest(config, log, registry);
            running.push({ name: 'ingest', url: ingest.url, stop: () => ingest.stop() });
          }
          if (config.cdc.topics.length > 0) {
            const cdc = await runCdc(config, log, registry);
            running.push({ name: 'cdc', stop: () => cdc.stop() });
          }
          break;
        }
        case 'engine': {
          const engine = await runEngine(config, log, { registry });
          running.push({ name, stop: () => engine.stop() });
          break;
        }
        case 'delivery': {
          const delivery = await runDelivery(config, log, { metrics: registry });
          running.push({ name, stop: () => delivery.stop() });
          break;
        }
        case 'scheduler': {
          const scheduler = await runScheduler(config, log);
          running.push({ name, stop: () => scheduler.stop() });
          break;
        }
        case 'sink': {
          const sink = await runSink(config, log, { metrics: registry });
          running.push({ name, stop: () => sink.stop() });
          break;
        }
        case 'api':
          running.push(await runApi(config, log, registry));
          break;
      }
    }
    if (config.metrics.port > 0) {
      const server = serveMetrics(
        { port: config.metrics.port, host: config.http.host },
        metricsSource,
      );
      running.push({
        name: 'metrics',
        url: `http://${config.http.host}:${config.metrics.port}/metrics`,
        stop: () => new Promise((r) => server.close(() => r())),
      });
    }
  } catch (err) {
    await stopProcesses(running);
    throw err;
  }
  return running;
}

export async function stopProcesses(running: Running[]): Promise<void> {
  for (const r of [...running].reverse()) await r.stop();
}
