// Prometheus metrics: one registry per process (passed, not global), default process
// metrics included, so tests can make their own. Every process serves them (and /health) on
// the HTTP kit: servers with `operationalRoutes`, workers with `serveOperational` (platform/http.ts).
import { Registry, collectDefaultMetrics, Counter, Histogram, Gauge } from 'prom-client';

export { Registry, Counter, Histogram, Gauge };

/**
 * Every series of a product process carries one default label, `process` (engine, delivery,
 * ingest, `engine+delivery` for `lifecycle run` of several), and every metric name starts
 * with `lifecycle_` (the runtime's standard `process_*` and `nodejs_*` series keep their
 * conventional names), so one Prometheus job scrapes every process alike.
 */
export function createMetricsRegistry(
  opts: { defaults?: boolean; process?: string } = {},
): Registry {
  const registry = new Registry();
  if (opts.process) registry.setDefaultLabels({ process: opts.process });
  if (opts.defaults !== false) collectDefaultMetrics({ register: registry });
  return registry;
}

/**
 * What `/health` answers on every server and worker endpoint: `ok` decides the status
 * (200, or 503 so load balancers and orchestrators take the process out), the other
 * fields say why.
 */
export interface HealthReport {
  readonly ok: boolean;
  readonly [detail: string]: unknown;
}

export const healthStatus = (report: HealthReport): 200 | 503 => (report.ok ? 200 : 503);
