// Global setup of the `integration` project: makes sure the real services are there and
// tells the tests where (inject('stack')).
// - A Docker engine is reachable: start the same images as docker-compose.yml with
//   testcontainers, on free ports, and stop them afterwards.
// - Otherwise: use the local stack (scripts/stack), starting it if it does not answer.
// The SMTP sink is the product's own module either way (in-process under Docker).
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import type { StackInfo } from './support/context.ts';
import {
  REPO_ROOT,
  localConnectUrl,
  localSmtpApiUrl,
  localStackEnv,
  readStackEnv,
} from './support/stack-env.ts';
import { createSmtpSink } from '../devtools/smtp-sink.ts';
import { freePort } from './support/ports.ts';
import { Redis, decideDurability, probeRedis } from '../platform/redis.ts';

const BASE_ENV = { NODE_ENV: 'test', LC_LOG_LEVEL: 'warn' };

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (await dockerReachable()) {
    const { info, stop } = await startContainers();
    project.provide('stack', info);
    return stop;
  }
  project.provide('stack', await localStack());
  return async () => {};
}

async function dockerReachable(): Promise<boolean> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await getContainerRuntimeClient();
    return true;
  } catch {
    return false;
  }
}

function runStack(command: 'up' | 'status', quiet: boolean): number {
  const r = spawnSync('bash', [join(REPO_ROOT, 'scripts/stack'), command], {
    cwd: REPO_ROOT,
    stdio: quiet ? 'ignore' : ['ignore', 'inherit', 'inherit'],
  });
  return r.status ?? 1;
}

async function localStack(): Promise<StackInfo> {
  if (runStack('status', true) !== 0 && runStack('up', false) !== 0) {
    throw new Error(
      'the local stack did not come up: see the messages above, `scripts/stack status` and .stack/logs/',
    );
  }
  const s = readStackEnv();
  const env = localStackEnv(s);
  return {
    mode: 'local',
    env: { ...BASE_ENV, ...env, ...(await redisDurabilityEnv(env.LC_REDIS_URL!)) },
    connectUrl: localConnectUrl(s),
    connectPostgres: {
      host: s.STACK_HOST ?? '127.0.0.1',
      port: Number(s.POSTGRES_PORT),
      user: s.POSTGRES_USER ?? 'postgres',
      password: '',
      database: s.POSTGRES_DB ?? 'postgres',
    },
    smtpApiUrl: localSmtpApiUrl(s),
  };
}

// A stack Redis started before scripts/stack ran it with `appendfsync always` keeps its old
// setting until the stack is restarted, and the processes under test would refuse it
// (platform/redis.ts). Rather than change a server other runs share, the tests then accept
// the risk, and say so.
async function redisDurabilityEnv(url: string): Promise<Record<string, string>> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    const { problems } = decideDurability(await probeRedis(redis), 'auto', 'test');
    if (problems.length === 0) return {};
    console.warn(
      `The local stack's Redis was started with older settings: ${problems.join('; ')}.\n` +
        'Integration tests run with LC_REDIS_DURABILITY=none. `scripts/stack down` and `scripts/stack up` restart it with the settings the product requires.',
    );
    return { LC_REDIS_DURABILITY: 'none' };
  } finally {
    redis.disconnect();
  }
}

// Images and settings mirror docker-compose.yml.
async function startContainers(): Promise<{ info: StackInfo; stop: () => Promise<void> }> {
  const { GenericContainer, Network, Wait } = await import('testcontainers');
  const network = await new Network().start();
  const stops: Array<() => Promise<unknown>> = [async () => network.stop()];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  };
  try {
    // Kafka advertises the host port to tests and `kafka:29092` to Connect, so the host
    // port must be known before the broker starts: pick a free one and bind it.
    const kafkaPort = await freePort();
    const [kafka, postgres, redis, clickhouse] = await Promise.all([
      new GenericContainer('apache/kafka:3.9.1')
        .withNetwork(network)
        .withNetworkAliases('kafka')
        .withExposedPorts({ container: 9092, host: kafkaPort })
        .withEnvironment({
          KAFKA_NODE_ID: '1',
          KAFKA_PROCESS_ROLES: 'broker,controller',
          KAFKA_LISTENERS:
            'PLAINTEXT://0.0.0.0:9092,INTERNAL://0.0.0.0:29092,CONTROLLER://0.0.0.0:9093',
          KAFKA_ADVERTISED_LISTENERS: `PLAINTEXT://127.0.0.1:${kafkaPort},INTERNAL://kafka:29092`,
          KAFKA_LISTENER_SECURITY_PROTOCOL_MAP:
            'PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT',
          KAFKA_INTER_BROKER_LISTENER_NAME: 'INTERNAL',
          KAFKA_CONTROLLER_LISTENER_NAMES: 'CONTROLLER',
          KAFKA_CONTROLLER_QUORUM_VOTERS: '1@localhost:9093',
          KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: '1',
          KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS: '1',
          KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR: '1',
          KAFKA_TRANSACTION_STATE_LOG_MIN_ISR: '1',
          KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS: '0',
          KAFKA_AUTO_CREATE_TOPICS_ENABLE: 'true',
        })
        .withWaitStrategy(Wait.forLogMessage(/Kafka Server started/))
        .withStartupTimeout(180_000)
        .start(),
      new GenericContainer('postgres:15')
        .withNetwork(network)
        .withNetworkAliases('postgres')
        .withExposedPorts(5432)
        .withEnvironment({ POSTGRES_PASSWORD: 'postgres' })
        .withCommand([
          'postgres',
          '-c',
          'wal_level=logical',
          '-c',
          'max_replication_slots=20',
          '-c',
          'max_wal_senders=20',
        ])
        .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
        .start(),
      new GenericContainer('redis:7')
        .withExposedPorts(6379)
        .withCommand([
          'redis-server',
          '--appendonly',
          'yes',
          '--appendfsync',
          'always',
          '--maxmemory-policy',
          'noeviction',
        ])
        .withWaitStrategy(Wait.forLogMessage(/Ready to accept connections/))
        .start(),
      new GenericContainer('clickhouse/clickhouse-server:24.8')
        .withExposedPorts(8123)
        .withEnvironment({
          CLICKHOUSE_USER: 'lifecycle',
          CLICKHOUSE_PASSWORD: 'lifecycle',
          CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT: '1',
        })
        .withWaitStrategy(Wait.forHttp('/ping', 8123).forStatusCode(200))
        .start(),
    ]);
    stops.push(
      () => kafka.stop(),
      () => postgres.stop(),
      () => redis.stop(),
      () => clickhouse.stop(),
    );
    const connect = await new GenericContainer('quay.io/debezium/connect:3.2')
      .withNetwork(network)
      .withExposedPorts(8083)
      .withEnvironment({
        BOOTSTRAP_SERVERS: 'kafka:29092',
        GROUP_ID: 'lifecycle-connect',
        CONFIG_STORAGE_TOPIC: 'connect_configs',
        OFFSET_STORAGE_TOPIC: 'connect_offsets',
        STATUS_STORAGE_TOPIC: 'connect_statuses',
        CONFIG_STORAGE_REPLICATION_FACTOR: '1',
        OFFSET_STORAGE_REPLICATION_FACTOR: '1',
        STATUS_STORAGE_REPLICATION_FACTOR: '1',
      })
      .withWaitStrategy(Wait.forHttp('/connector-plugins', 8083).forStatusCode(200))
      .withStartupTimeout(180_000)
      .start();
    stops.push(() => connect.stop());

    const sinkDir = await mkdtemp(join(tmpdir(), 'lc-smtp-sink-'));
    const sink = createSmtpSink({ port: 0, httpPort: 0, dir: sinkDir });
    await sink.start();
    stops.push(
      () => rm(sinkDir, { recursive: true, force: true }),
      () => sink.stop(),
    );

    const url = (c: { getHost(): string; getMappedPort(p: number): number }, p: number) =>
      `${c.getHost()}:${c.getMappedPort(p)}`;
    const info: StackInfo = {
      mode: 'docker',
      env: {
        ...BASE_ENV,
        LC_KAFKA_BROKERS: `127.0.0.1:${kafkaPort}`,
        LC_REDIS_URL: `redis://${url(redis, 6379)}`,
        LC_CLICKHOUSE_URL: `http://${url(clickhouse, 8123)}`,
        LC_CLICKHOUSE_USER: 'lifecycle',
        LC_CLICKHOUSE_PASSWORD: 'lifecycle',
        LC_POSTGRES_URL: `postgresql://postgres:postgres@${url(postgres, 5432)}/postgres`,
        LC_SMTP_URLS: `smtp://127.0.0.1:${sink.port}`,
      },
      connectUrl: `http://${url(connect, 8083)}`,
      connectPostgres: {
        host: 'postgres',
        port: 5432,
        user: 'postgres',
        password: 'postgres',
        database: 'postgres',
      },
      smtpApiUrl: `http://127.0.0.1:${sink.httpPort}`,
    };
    return { info, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
