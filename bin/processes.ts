// `lifecycle run <process...>`: the production processes, each built from the one
// validated config, started in order and stopped gracefully on SIGINT/SIGTERM.
import type { Logger } from 'pino';
import type { Config } from '../platform/config.ts';
import { serveOperational } from '../platform/http.ts';
import { createMetricsRegistry, type Registry } from '../platform/metrics.ts';
import { KafkaBus, waitForKafka } from '../platform/kafka.ts';
import type { StartRetry } from '../platform/ready.ts';
import { openRedis } from '../platform/redis.ts';
import { errorMessage } from '../platform/errors.ts';
import { internalTopicSpecs } from '../platform/bus.ts';
import { topics } from '../platform/contracts.ts';
import { runIngest, runCdc } from '../ingestion/index.ts';
import { runIngestCluster } from '../ingestion/http/cluster.ts';
import { runEngine } from '../engine/index.ts';
import { runDelivery } from '../delivery/index.ts';
import { runScheduler } from '../engine/scheduler/index.ts';
import { runSink } from '../analytics/index.ts';
import { createManagedTemplates } from '../delivery/templates/managed.ts';
import { createRedisCoordinator } from '../delivery/templates/store.ts';
import { createApiServer } from './api.ts';

export const PROCESSES = ['ingest', 'engine', 'delivery', 'scheduler', 'sink', 'api'] as const;
export type ProcessName = (typeof PROCESSES)[number];

export interface Running {
  name: string;
  stop(): Promise<void>;
  url?: string;
}

/**
 * How many partitions a topic has, as user search needs it (it reads every partition of the
 * events topic: as many as the topic has, not as configured). Asked at most once a minute;
 * while Kafka cannot say, the last answer (at first `configured`) serves, so a search does
 * not fail on a broker the answer hardly ever needs.
 */
export function partitionCount(
  bus: Pick<KafkaBus, 'endOffsets'>,
  topic: string,
  configured: number,
  logger: Logger,
  now: () => number = Date.now,
): () => Promise<number> {
  let known = { n: configured, at: -Infinity };
  return async () => {
    if (now() - known.at <= 60_000) return known.n;
    const n = await bus
      .endOffsets(topic)
      .then((ends) => ends.size)
      .catch((err: unknown) => {
        logger.warn(
          { err: errorMessage(err), topic, partitions: known.n },
          'the partitions of the topic could not be read; using the last known count',
        );
        return 0;
      });
    known = { n: n > 0 ? n : known.n, at: now() };
    return known.n;
  };
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
  const eventPartitions = partitionCount(
    bus,
    topics(config.kafka.topicPrefix).events,
    config.kafka.partitions,
    logger,
  );
  // Every API instance reads the templates topic before it serves, and numbers versions
  // through Redis, so two instances saving at once never make the same version.
  const templates = createManagedTemplates(
    {
      dir: config.delivery.templatesDir,
      defaultTimezone: config.delivery.defaultTimezone,
      publishFiles: config.delivery.templatesPublishFiles,
      topics: topics(config.kafka.topicPrefix),
      watch: true,
    },
    {
      bus,
      publisher: bus.publisher(),
      coordinator: createRedisCoordinator(redis),
      logger,
      registry: metrics,
    },
  );
  try {
    await templates.start();
  } catch (err) {
    await bus.close();
    redis.redis.disconnect();
    throw err;
  }
  const app = await createApiServer(config, {
    redis,
    bus,
    publisher: bus.publisher(),
    logger,
    metrics,
    eventPartitions,
    templates,
  });
  const url = await app.listen({ host: config.http.host, port: config.http.apiPort });
  return {
    name: 'api',
    url,
    async stop() {
      await app.close();
      await templates.stop();
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
          // On the process's registry: its metrics are served with the others' on /metrics.
          const scheduler = await runScheduler(config, log, { registry });
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
      const server = await serveOperational(
        { port: config.metrics.port, host: config.http.host },
        { metrics: metricsSource, health: () => ({ ok: true }) },
      );
      running.push({
        name: 'metrics',
        url: `http://${config.http.host}:${config.metrics.port}/metrics`,
        stop: () => server.close(),
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
