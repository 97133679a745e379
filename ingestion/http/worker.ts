// One worker of the ingest cluster (ingestion/http/cluster.ts): the HTTP ingest API with its
// own Kafka producer, on the port the workers share.
import cluster from 'node:cluster';
import { loadConfig } from '../../platform/config.ts';
import { createLogger } from '../../platform/logger.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import { errorMessage } from '../../platform/errors.ts';
import { runIngest } from './run.ts';
import { workerRateLimit, type FromWorker, type ToWorker } from './cluster.ts';

if (!cluster.isWorker)
  throw new Error(
    'ingestion/http/worker.ts runs as a worker of the ingest cluster (LC_INGEST_WORKERS > 1)',
  );
const send = (m: FromWorker) => process.send!(m);

// The primary decides when workers stop (a terminal's Ctrl-C reaches every process).
process.on('SIGINT', () => {});
process.on('SIGTERM', () => {});

const base = loadConfig();
// This worker's share of the per-key rate limit.
const config: typeof base = {
  ...base,
  ingest: { ...base.ingest, rateLimitPerSecond: workerRateLimit(base) },
};
const logger = createLogger({ level: config.log.level, name: 'ingest' }).child({
  worker: cluster.worker!.id,
});
const registry = createMetricsRegistry({ process: 'ingest' });

let stopping: Promise<void> | null = null;
try {
  const unit = await runIngest(config, logger, registry);
  const stop = () =>
    (stopping ??= unit.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err: errorMessage(err) }, 'ingest worker stopped with an error');
        process.exit(1);
      },
    ));
  process.on('message', (m: ToWorker) => {
    if (m.type === 'stop') void stop();
    else if (m.type === 'metrics')
      void registry
        .getMetricsAsJSON()
        .then((metrics) => send({ type: 'metrics', id: m.id, metrics }));
  });
  // The primary is gone: finish what was accepted and leave.
  process.on('disconnect', () => void stop());
  send({ type: 'listening', url: unit.url });
} catch (err) {
  send({ type: 'failed', error: errorMessage(err) });
  process.exit(1);
}
