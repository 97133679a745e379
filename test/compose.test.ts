// docker-compose.yml speaks the product's configuration: every LC_* variable it sets is
// one the config schema reads, the product's processes start with a valid config, and the
// host ports are the config defaults (the same as scripts/stack).
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { envVariables, loadConfig } from '../platform/config.ts';
import { readStackEnv, REPO_ROOT } from './support/stack-env.ts';

interface Service {
  image?: string;
  build?: unknown;
  command?: string[];
  ports?: string[];
  environment?: Record<string, string | number | boolean | null> | string[];
  volumes?: string[];
}

const compose = parse(readFileSync(resolve(REPO_ROOT, 'docker-compose.yml'), 'utf8'), {
  merge: true,
}) as {
  services: Record<string, Service>;
};
const services = Object.entries(compose.services);
const known = new Set(envVariables().map((v) => v.env));
const defaults = new Map(envVariables().map((v) => [v.env, v.default]));

function environment(s: Service): Record<string, string> {
  const env = s.environment ?? {};
  const pairs = Array.isArray(env)
    ? env.map((e) => e.split(/=(.*)/s).slice(0, 2) as [string, string])
    : Object.entries(env).map(([k, v]) => [k, v == null ? '' : String(v)] as [string, string]);
  return Object.fromEntries(pairs);
}

/** Compose interpolation as a user with a filled-in .env would see it. */
function interpolate(value: string): string {
  return value.replace(
    /\$\{([A-Z0-9_]+)(?::?([-?])([^}]*))?\}/g,
    (_m, name: string, kind: string | undefined, rest: string | undefined) =>
      kind === '-' ? (rest ?? '') : `compose-test-${name.toLowerCase()}-value`,
  );
}

/** A published port as `[host address:]host port:container port`. */
function published(mapping: string): { address: string; hostPort: number; containerPort: number } {
  const parts = mapping.split(':');
  const [address, host, container] = parts.length === 3 ? parts : ['0.0.0.0', ...parts];
  return { address: address!, hostPort: Number(host), containerPort: Number(container) };
}

function hostPort(service: string, containerPort: number): number {
  const mapping = compose.services[service]?.ports
    ?.map(published)
    .find((p) => p.containerPort === containerPort);
  expect(mapping, `${service} publishes ${containerPort}`).toBeDefined();
  return mapping!.hostPort;
}

describe('docker-compose.yml', () => {
  it('sets only LC_* variables that platform/config.ts reads', () => {
    const seen = services.flatMap(([name, s]) =>
      Object.keys(environment(s))
        .filter((k) => k.startsWith('LC_'))
        .map((k) => `${name}:${k}`),
    );
    expect(seen.length).toBeGreaterThan(0);
    const unknown = seen.filter((entry) => !known.has(entry.split(':')[1]!));
    expect(unknown).toEqual([]);
  });

  it('runs each product process with a configuration that loads', () => {
    const processes = services.filter(([, s]) => s.command?.[0] === 'run');
    expect(processes.map(([, s]) => s.command![1]).sort()).toEqual([
      'api',
      'delivery',
      'engine',
      'ingest',
      'scheduler',
      'sink',
    ]);
    for (const [name, s] of processes) {
      const env = Object.fromEntries(
        Object.entries(environment(s)).map(([k, v]) => [k, interpolate(v)]),
      );
      expect(() => loadConfig(env), name).not.toThrow();
      expect(s.build, name).toBeDefined();
    }
  });

  it('publishes the services on the host ports of the config defaults', () => {
    const url = (env: string) => new URL(String(defaults.get(env)));
    expect(hostPort('kafka', 19092)).toBe(
      Number((defaults.get('LC_KAFKA_BROKERS') as string[])[0]!.split(':')[1]),
    );
    expect(hostPort('redis', 6379)).toBe(Number(url('LC_REDIS_URL').port));
    expect(hostPort('clickhouse', 8123)).toBe(Number(url('LC_CLICKHOUSE_URL').port));
    expect(hostPort('postgres', 5432)).toBe(Number(url('LC_POSTGRES_URL').port));
    expect(hostPort('mailpit', 1025)).toBe(
      Number(new URL((defaults.get('LC_SMTP_URLS') as string[])[0]!).port),
    );
    expect(hostPort('api', 8089)).toBe(defaults.get('LC_API_PORT'));
    expect(hostPort('ingest', 8088)).toBe(defaults.get('LC_INGEST_PORT'));
  });

  it('gives the CDC consumer (run by the ingest process) the mapping folder, mapping file and schema registry, and keeps the shared settings', () => {
    const ingest = compose.services.ingest!;
    const env = environment(ingest);
    // A user's .env reaches the process; without one the mapping is read from the mounted folder.
    expect(env.LC_CDC_MAPPING_FILE).toMatch(/^\$\{LC_CDC_MAPPING_FILE:-[^}]+\}$/);
    expect(env.LC_SCHEMA_REGISTRY_URL).toMatch(/^\$\{LC_SCHEMA_REGISTRY_URL:-[^}]*\}$/);
    // By default Avro topics are read through the registry service, whose converter Connect loads.
    const registry = new URL(interpolate(env.LC_SCHEMA_REGISTRY_URL!));
    expect(compose.services[registry.hostname], `a ${registry.hostname} service`).toBeDefined();
    expect(registry.pathname).toMatch(/^\/apis\/ccompat\/v[67]$/);
    expect(hostPort(registry.hostname, Number(registry.port))).toBe(
      Number(readStackEnv().SCHEMA_REGISTRY_PORT),
    );
    expect(environment(compose.services.connect!).ENABLE_APICURIO_CONVERTERS).toBe('true');
    const mappingFile = interpolate(env.LC_CDC_MAPPING_FILE!);
    const mounts = (ingest.volumes ?? []).map((v) => {
      const [source, target, mode] = v.split(':');
      return { source, target, mode };
    });
    const mount = mounts.find((m) => m.target && mappingFile.startsWith(`${m.target}/`));
    expect(mount, `a volume holding ${mappingFile}`).toEqual({
      source: './cdc',
      target: '/app/cdc',
      mode: 'ro',
    });
    // The ingest service's own environment is the shared one plus these, not a replacement of it.
    const shared = environment(compose.services.engine!);
    expect(env).toMatchObject(shared);
    for (const other of ['engine', 'delivery', 'sink', 'scheduler', 'api'])
      expect(environment(compose.services[other]!), other).not.toHaveProperty(
        'LC_CDC_MAPPING_FILE',
      );
  });

  it('has the database the example connector reads, and the docs send connectors to the published Connect port', () => {
    const connector = JSON.parse(
      readFileSync(resolve(REPO_ROOT, 'ingestion/debezium-connector.example.json'), 'utf8'),
    ) as { config: Record<string, string> };
    const postgres = environment(compose.services.postgres!);
    expect(postgres.POSTGRES_DB ?? 'postgres').toBe(connector.config['database.dbname']);
    const connectPort = hostPort('connect', 8083);
    expect(connectPort).toBe(18083);
    for (const file of ['ingestion/README.md', 'docker-compose.yml']) {
      const text = readFileSync(resolve(REPO_ROOT, file), 'utf8');
      const ports = [...text.matchAll(/(?:localhost|127\.0\.0\.1):(\d+)\/connectors/g)].map((m) =>
        Number(m[1]),
      );
      expect(
        ports.filter((p) => p !== connectPort),
        `${file}: Connect URLs`,
      ).toEqual([]);
    }
    expect(readFileSync(resolve(REPO_ROOT, 'ingestion/README.md'), 'utf8')).toContain(
      `localhost:${connectPort}/connectors/app-db/config`,
    );
  });

  it("publishes the infrastructure on 127.0.0.1 only: only the product's own authenticated HTTP ports face the network", () => {
    const facing = services.flatMap(([name, s]) =>
      (s.ports ?? [])
        .map(published)
        .filter((p) => p.address !== '127.0.0.1')
        .map((p) => `${name}:${p.hostPort}`),
    );
    expect(facing.sort()).toEqual(['api:8089', 'ingest:8088']);
  });

  it('gives every data store a password that the user must set (no default, no literal), and the product the same one', () => {
    const required = (value: string | undefined, variable: string) =>
      expect(value ?? '').toContain(`\${${variable}:?`);
    const redis = compose.services.redis!;
    const command = redis.command ?? [];
    required(command[command.indexOf('--requirepass') + 1], 'REDIS_PASSWORD');
    const env = environment(compose.services.engine!);
    required(env.LC_REDIS_URL, 'REDIS_PASSWORD');
    expect(new URL(interpolate(env.LC_REDIS_URL!)).password).not.toBe('');
    required(environment(compose.services.postgres!).POSTGRES_PASSWORD, 'POSTGRES_PASSWORD');
    required(env.LC_POSTGRES_URL, 'POSTGRES_PASSWORD');
    required(
      environment(compose.services.clickhouse!).CLICKHOUSE_PASSWORD,
      'LC_CLICKHOUSE_PASSWORD',
    );
    required(env.LC_CLICKHOUSE_PASSWORD, 'LC_CLICKHOUSE_PASSWORD');
    expect(env.NODE_ENV).toBe('production');
  });

  it('pins the versions the local stack uses', () => {
    expect(compose.services.kafka?.image).toBe('apache/kafka:3.9.1');
    expect(compose.services.connect?.image).toMatch(/^quay\.io\/debezium\/connect:3\.2/);
    expect(compose.services.postgres?.command).toContain('wal_level=logical');
    expect(compose.services.redis?.command).toEqual(
      expect.arrayContaining([
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--maxmemory-policy',
        'noeviction',
      ]),
    );
  });
});
