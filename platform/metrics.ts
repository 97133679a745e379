// Prometheus metrics: one registry per process (passed, not global), default process
// metrics included, so tests can make their own.
import { Registry, collectDefaultMetrics, Counter, Histogram, Gauge } from 'prom-client';

export { Registry, Counter, Histogram, Gauge };

export function createMetricsRegistry(opts: { defaults?: boolean; labels?: Record<string, string> } = {}): Registry {
  const registry = new Registry();
  if (opts.labels) registry.setDefaultLabels(opts.labels);
  if (opts.defaults !== false) collectDefaultMetrics({ register: registry });
  return registry;
}
