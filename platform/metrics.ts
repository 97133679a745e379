// Prometheus metrics: one registry per process (passed, not global), default process
// metrics included, so tests can make their own.
import { createServer, type Server } from 'node:http';
import { SECURITY_HEADERS } from './security-headers.ts';
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

/**
 * A bare HTTP endpoint for worker processes (no fastify): `/metrics` in Prometheus text
 * format and `/health` (the HealthReport of `health()`). Fastify servers get the same two
 * from platform/http.ts.
 */
export function serveMetrics(
  opts: { port: number; host: string },
  registry: Pick<Registry, 'metrics' | 'contentType'>,
  health: () => HealthReport = () => ({ ok: true }),
): Server {
  const server = createServer((req, res) => {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
    if (req.url === '/metrics') {
      registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
        () => res.writeHead(500).end(),
      );
    } else if (req.url === '/health') {
      const h = health();
      res.writeHead(healthStatus(h), { 'content-type': 'application/json' }).end(JSON.stringify(h));
    } else {
      res.writeHead(404).end();
    }
  });
  server.listen(opts.port, opts.host);
  return server;
}
