// The HTTP ingest API in several processes sharing one port (LC_INGEST_WORKERS > 1). One
// Node process turns a batch event into a Kafka record at ~40 µs of CPU, most of it in the
// Kafka client, so a 2-core host ingests more with two processes than with one (see
// ingestion/README.md, Performance). The primary forks the workers (node:cluster shares the
// listening socket), replaces one that dies, adds their metrics up for /metrics, and stops
// them gracefully: each stops accepting, waits for the Kafka acknowledgements of what it
// accepted, then exits. Workers ignore SIGINT/SIGTERM (a terminal's Ctrl-C reaches the whole
// process group): the primary decides when they stop, and a worker whose primary is gone
// stops by itself.
import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import {
  AggregatorRegistry,
  type MetricObjectWithValues,
  type MetricValue,
  type Registry,
} from 'prom-client';
import type { Logger } from 'pino';
import type { Config } from '../../platform/config.ts';
import type { RunningUnit } from '../../platform/main.ts';

/** Messages between the primary and an ingest worker. */
export type ToWorker = { type: 'metrics'; id: number } | { type: 'stop' };
export type FromWorker =
  | { type: 'listening'; url: string }
  | { type: 'failed'; error: string }
  | { type: 'metrics'; id: number; metrics: MetricObjectWithValues<MetricValue<string>>[] };

const WORKER_ENTRY = fileURLToPath(new URL('./worker.ts', import.meta.url));
const STOP_TIMEOUT_MS = 30_000;

/** The per-key rate limit of one worker: the configured one split between the workers (requests are spread evenly). */
export const workerRateLimit = (config: Pick<Config, 'ingest'>) =>
  Math.max(1, Math.ceil(config.ingest.rateLimitPerSecond / config.ingest.workers));

export interface IngestCluster extends RunningUnit {
  url: string;
  /** The primary's registry and every worker's, added up (Prometheus text). */
  metrics(): Promise<string>;
  readonly contentType: Registry['contentType'];
}

export async function runIngestCluster(
  config: Readonly<Config>,
  logger: Logger,
  registry: Registry,
): Promise<IngestCluster> {
  if (!cluster.isPrimary) throw new Error('the ingest cluster is started from the primary process');
  const log = logger.child({ component: 'ingest-cluster' });
  const count = config.ingest.workers;
  cluster.setupPrimary({ exec: WORKER_ENTRY });
  const workers = new Set<Worker>();
  let stopping = false;
  let url = '';
  let nextId = 0;
  const pending = new Map<number, (m: MetricObjectWithValues<MetricValue<string>>[]) => void>();

  const fork = () =>
    new Promise<string>((resolve, reject) => {
      const w = cluster.fork();
      workers.add(w);
      w.on('message', (m: FromWorker) => {
        if (m.type === 'listening') resolve(m.url);
        else if (m.type === 'failed')
          reject(new Error(`ingest worker ${w.process.pid} failed to start: ${m.error}`));
        else if (m.type === 'metrics') pending.get(m.id)?.(m.metrics);
      });
      w.once('exit', (code, signal) => {
        workers.delete(w);
        reject(
          new Error(
            `ingest worker ${w.process.pid} exited during start-up (${signal ?? `code ${code}`})`,
          ),
        );
        if (stopping || !url) return;
        log.error({ pid: w.process.pid, code, signal }, 'ingest worker died; starting another');
        fork().catch((err: unknown) =>
          log.error(
            { err: err instanceof Error ? err.message : String(err) },
            'could not replace an ingest worker',
          ),
        );
      });
    });

  const stop = async () => {
    stopping = true;
    await Promise.all(
      [...workers].map(
        (w) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => {
              log.warn({ pid: w.process.pid }, 'ingest worker did not stop in time; killing it');
              w.process.kill('SIGKILL');
            }, STOP_TIMEOUT_MS);
            w.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            if (w.isConnected()) w.send({ type: 'stop' } satisfies ToWorker);
            else w.process.kill('SIGTERM');
          }),
      ),
    );
  };

  try {
    const urls = await Promise.all(Array.from({ length: count }, fork));
    url = urls[0]!;
  } catch (err) {
    await stop();
    throw err;
  }
  log.info({ url, workers: count }, 'ingest API listening in several processes');

  const workerMetrics = (w: Worker) =>
    new Promise<MetricObjectWithValues<MetricValue<string>>[]>((resolve) => {
      const id = ++nextId;
      const timer = setTimeout(() => {
        pending.delete(id);
        resolve([]);
      }, 2000);
      pending.set(id, (m) => {
        clearTimeout(timer);
        pending.delete(id);
        resolve(m);
      });
      w.send({ type: 'metrics', id } satisfies ToWorker);
    });

  return {
    url,
    contentType: registry.contentType,
    async metrics() {
      const all = await Promise.all([
        registry.getMetricsAsJSON(),
        ...[...workers].filter((w) => w.isConnected()).map(workerMetrics),
      ]);
      return AggregatorRegistry.aggregate(
        all as Parameters<typeof AggregatorRegistry.aggregate>[0],
      ).metrics();
    },
    stop,
    health: () => ({
      ok: !stopping && workers.size === count,
      details: { workers: workers.size, of: count },
    }),
  };
}
