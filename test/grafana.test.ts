// Grafana and Prometheus of docker-compose.yml, checked without Docker: every provisioning
// file parses; every SQL of the Grafana boards names only tables and columns that
// analytics/schema.ts creates; every PromQL expression names only metrics (and labels) that
// the code registers; Prometheus scrapes every product process on its metrics port by its
// compose service name; and the generated analytics boards are what the specs in
// dashboards/*.json give today.
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Fastify from 'fastify';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { erasureLogDdl, TABLES, tableDdl } from '../analytics/schema.ts';
import { CLICKHOUSE_PLUGIN } from '../dashboards/grafana.ts';
import {
  GRAFANA_DASHBOARDS_DIR,
  GRAFANA_OPTIONS,
  renderGrafanaDashboards,
} from '../dashboards/generate-grafana.ts';
import { InMemoryBus } from '../platform/bus.ts';
import { createConsumeLoop } from '../platform/consume.ts';
import { setupHttpKit } from '../platform/http.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import {
  promqlNames,
  registeredMetrics,
  seriesNames,
  type RegisteredMetric,
} from './support/promql-names.ts';
import { sqlNameProblems, tablesOfDdl } from './support/sql-names.ts';
import { REPO_ROOT } from './support/stack-env.ts';

const read = (path: string) => readFileSync(resolve(REPO_ROOT, path), 'utf8');
const yamlFile = (path: string) => parse(read(path), { merge: true }) as Record<string, unknown>;
const jsonFiles = (dir: string) =>
  readdirSync(resolve(REPO_ROOT, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.json'))
    .map((f) => ({ file: join(dir, f), json: JSON.parse(read(join(dir, f))) as Board }));

interface Service {
  image?: string;
  command?: string[];
  ports?: string[];
  environment?: Record<string, string | null>;
  volumes?: string[];
  depends_on?: string[] | Record<string, unknown>;
}
interface Target {
  refId: string;
  datasource: { type: string; uid: string };
  rawSql?: string;
  expr?: string;
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  targets?: Target[];
  panels?: Panel[];
}
interface Board {
  uid: string;
  title: string;
  panels: Panel[];
  templating?: { list: { name: string; datasource?: { uid: string }; query?: unknown }[] };
}

const compose = yamlFile('docker-compose.yml') as { services: Record<string, Service> };
const services = compose.services;
const env = (name: string) => services[name]?.environment ?? {};
/** Services that run a product process (`lifecycle run <process>`). */
const productServices = Object.entries(services).filter(([, s]) => s.command?.[0] === 'run');
const datasources = (
  yamlFile('deploy/grafana/provisioning/datasources/lifecycle.yml') as {
    datasources: {
      uid: string;
      type: string;
      url?: string;
      jsonData?: Record<string, unknown>;
      secureJsonData?: Record<string, string>;
    }[];
  }
).datasources;
const providers = (
  yamlFile('deploy/grafana/provisioning/dashboards/lifecycle.yml') as {
    providers: { type: string; options: { path: string; foldersFromFilesStructure?: boolean } }[];
  }
).providers;
const prometheus = yamlFile('deploy/prometheus/prometheus.yml') as {
  scrape_configs: {
    job_name: string;
    metrics_path?: string;
    static_configs: { targets: string[] }[];
  }[];
};
const boards = jsonFiles('deploy/grafana/dashboards');

const database = String(env('api').LC_CLICKHOUSE_DATABASE);
const tables = tablesOfDdl([...TABLES.map((t) => tableDdl(database)[t]), erasureLogDdl(database)]);
const sqlCheck = { database, tables };

function targets(board: Board): (Target & { panel: string })[] {
  const all = board.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
  return all.flatMap((p) =>
    (p.targets ?? []).map((t) => ({ ...t, panel: `${board.uid}: ${p.title}` })),
  );
}

/** Container path of a bind mount of `service` whose source is `source`. */
function mountTarget(service: string, source: string): string | undefined {
  for (const v of services[service]?.volumes ?? []) {
    const [from, to] = v.split(':');
    if (from === source) return to;
  }
  return undefined;
}

/** Every metric the product registers, with the runtime's default ones (process_*, nodejs_*). */
async function knownMetrics(): Promise<Map<string, RegisteredMetric>> {
  const found = await registeredMetrics(REPO_ROOT, [
    'platform',
    'access',
    'rules',
    'engine',
    'ingestion',
    'delivery',
    'analytics',
    'dashboards',
    'admin',
    'bin',
  ]);
  const defaults = await createMetricsRegistry({ process: 'x' }).getMetricsAsJSON();
  for (const m of defaults)
    found.set(m.name, {
      name: m.name,
      type: m.type as unknown as RegisteredMetric['type'],
      labels: Object.keys(m.values[0]?.labels ?? {}),
      file: 'prom-client default metrics',
    });
  return found;
}

/** What an expression names that the code does not register, in words. */
function promqlProblems(expr: string, metrics: Map<string, RegisteredMetric>): string[] {
  const series = new Map<string, RegisteredMetric>();
  for (const m of metrics.values()) for (const s of seriesNames(m.name, m.type)) series.set(s, m);
  // Prometheus's own series of every scrape.
  const scrape = new Set(['up', 'scrape_duration_seconds', 'scrape_samples_scraped']);
  const names = promqlNames(expr);
  const problems: string[] = [];
  const labels = new Set(['job', 'instance', 'process']);
  if (names.metrics.length === 0) problems.push(`${expr}: names no metric`);
  for (const name of names.metrics) {
    const m = series.get(name);
    if (m) {
      for (const l of m.labels) labels.add(l);
      if (m.type === 'histogram' && name.endsWith('_bucket')) labels.add('le');
    } else if (!scrape.has(name)) problems.push(`metric ${name} is registered nowhere in the code`);
  }
  for (const l of names.labels)
    if (!labels.has(l)) problems.push(`label ${l} is on none of ${names.metrics.join(', ')}`);
  return problems;
}

describe('the checks themselves', () => {
  it('find a misspelt table or column, and pass the tables and columns that exist', () => {
    const ok = `SELECT toDate(ts) AS day, uniqExact(send_id, channel) AS messages FROM ${database}.deliveries WHERE ts_ms >= toUnixTimestamp64Milli($__fromTime_ms) AND $__conditionalAll(has([\${rule:singlequote}], rule_id), $rule) AND status = 'sent' GROUP BY day`;
    expect(sqlNameProblems(ok, sqlCheck)).toEqual([]);
    // A missing table leaves its columns unread too.
    expect(sqlNameProblems(ok.replace('.deliveries', '.delivery'), sqlCheck)).toEqual(
      expect.arrayContaining([expect.stringContaining('no table delivery')]),
    );
    expect(sqlNameProblems(ok.replace('send_id, channel', 'send_id, chanel'), sqlCheck)).toEqual([
      expect.stringContaining('column chanel'),
    ]);
    expect(sqlNameProblems(ok.replace(`${database}.`, 'other.'), sqlCheck)).toEqual(
      expect.arrayContaining([expect.stringContaining('not other')]),
    );
  });

  it('find a misspelt metric or label, and pass those the code registers', async () => {
    const metrics = await knownMetrics();
    const ok =
      'histogram_quantile(0.99, sum by (le, consumer) (rate(lifecycle_consumer_batch_seconds_bucket{consumer=~"$consumer"}[$__rate_interval])))';
    expect(promqlProblems(ok, metrics)).toEqual([]);
    expect(promqlProblems(ok.replace('batch_seconds', 'batch_second'), metrics)).toEqual(
      expect.arrayContaining([
        expect.stringContaining(
          'metric lifecycle_consumer_batch_second_bucket is registered nowhere',
        ),
      ]),
    );
    expect(promqlProblems(ok.replace('le, consumer', 'le, consumr'), metrics)).toEqual([
      expect.stringContaining('label consumr'),
    ]);
    // A histogram is stored as _bucket, _sum and _count, a counter under its own name.
    expect(promqlProblems('rate(lifecycle_consumer_batch_seconds[5m])', metrics)).toHaveLength(1);
    expect(promqlProblems('rate(lifecycle_consumer_dlq_total[5m])', metrics)).toEqual([]);
  });

  it('read the metrics the code registers as a registry sees them', async () => {
    const metrics = await knownMetrics();
    // The scan finds every metric of the modules below exactly as they register it.
    const registry = createMetricsRegistry({ defaults: false });
    const bus = new InMemoryBus(1);
    createConsumeLoop(
      {
        name: 'probe',
        groupId: 'probe',
        topics: ['t'],
        dlqTopic: 'dlq',
        decode: () => null,
        handle: async () => undefined,
      },
      { bus, publisher: bus.publisher(), logger: pino({ level: 'silent' }), registry },
    );
    await setupHttpKit(Fastify(), { metrics: registry });
    const live = await registry.getMetricsAsJSON();
    expect(live.length).toBeGreaterThan(5);
    for (const m of live)
      expect(metrics.get(m.name), m.name).toMatchObject({ name: m.name, type: m.type });
    for (const name of [
      'lifecycle_engine_sends_total',
      'lifecycle_delivery_outcomes_total',
      'lifecycle_sink_rows_total',
      'lifecycle_ingest_events_total',
      'lifecycle_scheduler_events_published_total',
      'process_resident_memory_bytes',
    ])
      expect(metrics.has(name), name).toBe(true);
    expect(metrics.get('lifecycle_consumer_lag')?.labels).toEqual([
      'consumer',
      'group',
      'topic',
      'partition',
    ]);
  });
});

describe('Grafana provisioning', () => {
  it('parses every provisioning file and dashboard, and serves them from where compose mounts them', () => {
    expect(datasources.map((d) => d.uid).sort()).toEqual([
      'lifecycle-clickhouse',
      'lifecycle-prometheus',
    ]);
    expect(boards.map((b) => b.file).sort()).toEqual([
      'deploy/grafana/dashboards/analytics/deliverability.json',
      'deploy/grafana/dashboards/analytics/lifecycle.json',
      'deploy/grafana/dashboards/analytics/retention-churn.json',
      'deploy/grafana/dashboards/operations/operations.json',
    ]);
    expect(new Set(boards.map((b) => b.json.uid)).size).toBe(boards.length);
    expect(mountTarget('grafana', './deploy/grafana/provisioning')).toBe(
      '/etc/grafana/provisioning',
    );
    const [provider] = providers;
    expect(provider).toMatchObject({ type: 'file', options: { foldersFromFilesStructure: true } });
    expect(mountTarget('grafana', './deploy/grafana/dashboards')).toBe(provider!.options.path);
    expect(env('grafana').GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH).toBe(
      `${provider!.options.path}/operations/operations.json`,
    );
  });

  it('installs the ClickHouse plugin and reads ClickHouse as a read-only user, never as the product', () => {
    expect(String(env('grafana').GF_INSTALL_PLUGINS)).toMatch(
      new RegExp(`^${CLICKHOUSE_PLUGIN}( \\d+\\.\\d+\\.\\d+)?$`),
    );
    const ch = datasources.find((d) => d.type === CLICKHOUSE_PLUGIN)!;
    expect(ch.uid).toBe(GRAFANA_OPTIONS.datasourceUid);
    expect(services[String(ch.jsonData?.host)]?.image).toMatch(/^clickhouse\/clickhouse-server:/);
    expect(ch.jsonData).toMatchObject({
      port: 9000,
      protocol: 'native',
      defaultDatabase: database,
    });
    expect(ch.jsonData?.username).not.toBe(env('api').LC_CLICKHOUSE_USER);
    // The user Grafana logs in as is the read-only one compose gives ClickHouse.
    const users = read('deploy/clickhouse/users.d/grafana.xml');
    expect(mountTarget('clickhouse', './deploy/clickhouse/users.d/grafana.xml')).toBe(
      '/etc/clickhouse-server/users.d/grafana.xml',
    );
    expect(users).toContain(`<${String(ch.jsonData?.username)}>`);
    expect(users).toMatch(/<readonly>1<\/readonly>/);
    expect(users).toContain(`GRANT SELECT ON ${database}.*`);
    const password = /from_env="(\w+)"/.exec(users)?.[1];
    expect(ch.secureJsonData?.password).toBe(`\${${password}}`);
    for (const service of ['clickhouse', 'grafana'])
      expect(String(env(service)[password!]), service).toContain(`\${${password}:?`);
    expect(String(env('grafana').GF_SECURITY_ADMIN_PASSWORD)).toContain(
      '${GRAFANA_ADMIN_PASSWORD:?',
    );
  });

  it('points the Prometheus data source at the prometheus service, whose config compose mounts', () => {
    const prom = datasources.find((d) => d.type === 'prometheus')!;
    const url = new URL(prom.url!);
    expect(services[url.hostname]?.image).toMatch(/^prom\/prometheus:/);
    expect(services[url.hostname]?.ports).toContain(`127.0.0.1:${url.port}:${url.port}`);
    expect(mountTarget('prometheus', './deploy/prometheus/prometheus.yml')).toBe(
      '/etc/prometheus/prometheus.yml',
    );
    expect(services.grafana?.depends_on).toHaveProperty('prometheus');
    expect(services.grafana?.depends_on).toHaveProperty('clickhouse');
  });

  it('names a provisioned data source in every panel and query', () => {
    const uids = new Set(datasources.map((d) => d.uid));
    for (const { json } of boards) {
      for (const t of targets(json)) expect(uids.has(t.datasource.uid), t.panel).toBe(true);
      for (const v of json.templating?.list ?? [])
        if (v.datasource) expect(uids.has(v.datasource.uid), v.name).toBe(true);
    }
  });

  it('reads only tables and columns that analytics/schema.ts creates, in the database compose configures', () => {
    expect(database).toBe(GRAFANA_OPTIONS.database);
    let checked = 0;
    for (const { json } of boards) {
      for (const t of targets(json).filter((t) => t.rawSql !== undefined)) {
        expect(sqlNameProblems(t.rawSql!, sqlCheck), t.panel).toEqual([]);
        checked++;
      }
      for (const v of json.templating?.list ?? []) {
        const sql = (v.query as { rawSql?: string } | undefined)?.rawSql;
        if (sql) expect(sqlNameProblems(sql, sqlCheck), v.name).toEqual([]);
      }
    }
    expect(checked).toBeGreaterThan(10);
  });

  it('queries only metrics and labels the code registers', async () => {
    const metrics = await knownMetrics();
    let checked = 0;
    for (const { json } of boards) {
      for (const t of targets(json).filter((t) => t.expr !== undefined)) {
        expect(promqlProblems(t.expr!, metrics), `${t.panel}: ${t.expr}`).toEqual([]);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(10);
    // The operations board shows what it promises.
    const ops = boards.find((b) => b.json.uid === 'lifecycle-operations')!.json;
    const exprs = targets(ops).map((t) => t.expr ?? '');
    for (const metric of [
      'lifecycle_consumer_lag',
      'lifecycle_consumer_records_total',
      'lifecycle_consumer_dlq_total',
      'lifecycle_consumer_batch_failures_total',
      'lifecycle_delivery_outcomes_total',
      'lifecycle_http_request_seconds_bucket',
    ])
      expect(
        exprs.some((e) => promqlNames(e).metrics.includes(metric)),
        metric,
      ).toBe(true);
  });

  it('has the generated analytics boards up to date with dashboards/*.json', async () => {
    const expected = await renderGrafanaDashboards();
    const committed = readdirSync(GRAFANA_DASHBOARDS_DIR).filter((f) => f.endsWith('.json'));
    expect(committed.sort(), 'run npm run grafana:dashboards').toEqual([...expected.keys()].sort());
    for (const [name, text] of expected)
      expect(
        readFileSync(join(GRAFANA_DASHBOARDS_DIR, name), 'utf8'),
        `${name} is stale: run npm run grafana:dashboards`,
      ).toBe(text);
  });
});

describe('Prometheus', () => {
  it('scrapes every product process on its metrics port by its compose service name, and nothing else', () => {
    const scraped = prometheus.scrape_configs.flatMap((job) =>
      job.static_configs.flatMap((c) => c.targets.map((t) => ({ job, target: t }))),
    );
    const expected = productServices.map(([name, s]) => {
      const port = String(s.environment?.LC_METRICS_PORT ?? '');
      expect(Number(port), `${name} serves /metrics (LC_METRICS_PORT)`).toBeGreaterThan(0);
      return `${name}:${port}`;
    });
    expect(scraped.map((s) => s.target).sort()).toEqual(expected.sort());
    for (const { job } of scraped) expect(job.metrics_path ?? '/metrics').toBe('/metrics');
    // The boards' `job` matchers name the job that scrapes them.
    const jobs = new Set(prometheus.scrape_configs.map((j) => j.job_name));
    for (const { json } of boards)
      for (const t of targets(json))
        for (const m of (t.expr ?? '').matchAll(/job="([^"]+)"/g))
          expect(jobs.has(m[1]!), t.panel).toBe(true);
    expect(services.prometheus?.depends_on).toEqual(
      expect.arrayContaining(productServices.map(([name]) => name)),
    );
  });
});
