// A single-node KRaft Kafka broker of a test's own: the stack's jars (scripts/stack installs
// them in .stack/kafka/lib), the stack's broker settings, free ports and a log directory in
// a temporary folder. A test can stop it (SIGTERM, or SIGKILL) and start it again on the same
// directory and ports without touching the stack's broker that other tests share.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { freePort } from './ports.ts';
import { REPO_ROOT, readStackEnv } from './stack-env.ts';

export interface PrivateKafka {
  /** `127.0.0.1:<port>`, for LC_KAFKA_BROKERS. */
  readonly brokers: string;
  readonly port: number;
  readonly dir: string;
  /** The broker's output so far (last 20 kB), for failure messages. */
  output(): string;
  /** Stops the broker (SIGTERM: a controlled shutdown; SIGKILL: none) and waits for it to exit. */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** Starts the broker again on the same ports and log directory; resolves once it serves metadata. */
  restart(): Promise<void>;
  /** Kills the broker and removes its directory. */
  close(): Promise<void>;
}

export interface PrivateKafkaOptions {
  /** JVM heap (default 256m: the machine is shared). */
  heap?: string;
}

function libDir(): string {
  const s = readStackEnv();
  const dir = join(REPO_ROOT, s.STACK_DIR ?? '.stack', 'kafka', 'lib');
  if (!existsSync(dir))
    throw new Error(`no Kafka jars in ${dir}: run scripts/stack up once to install them`);
  return dir;
}

/** Whether the broker on `port` answers a metadata request. */
async function serves(brokers: string): Promise<boolean> {
  const kafka = new Kafka({
    clientId: 'private-kafka-probe',
    brokers: [brokers],
    logLevel: logLevel.NOTHING,
    connectionTimeout: 1000,
    requestTimeout: 3000,
    retry: { retries: 0 },
  });
  const admin = kafka.admin({ retry: { retries: 0 } });
  try {
    await admin.connect();
    await admin.describeCluster();
    return true;
  } catch {
    return false;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

export async function startPrivateKafka(options: PrivateKafkaOptions = {}): Promise<PrivateKafka> {
  const lib = libDir();
  const port = await freePort();
  const controllerPort = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'lc-kafka-'));
  const logDir = join(dir, 'data');
  const props = join(dir, 'server.properties');
  const log4j = join(dir, 'log4j.properties');
  await writeFile(
    props,
    [
      'process.roles=broker,controller',
      'node.id=1',
      `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
      `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
      `advertised.listeners=PLAINTEXT://127.0.0.1:${port}`,
      'controller.listener.names=CONTROLLER',
      'inter.broker.listener.name=PLAINTEXT',
      'listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
      `log.dirs=${logDir}`,
      'num.partitions=1',
      'num.network.threads=2',
      'num.io.threads=2',
      'auto.create.topics.enable=false',
      'offsets.topic.replication.factor=1',
      'offsets.topic.num.partitions=1',
      'transaction.state.log.replication.factor=1',
      'transaction.state.log.min.isr=1',
      'transaction.state.log.num.partitions=1',
      'group.initial.rebalance.delay.ms=0',
      'log.segment.bytes=16777216',
      '',
    ].join('\n'),
  );
  await writeFile(
    log4j,
    [
      'log4j.rootLogger=WARN, stdout',
      'log4j.appender.stdout=org.apache.log4j.ConsoleAppender',
      'log4j.appender.stdout.layout=org.apache.log4j.PatternLayout',
      'log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n',
      'log4j.logger.kafka.server.BrokerServer=INFO',
      '',
    ].join('\n'),
  );
  const clusterId = randomBytes(16).toString('base64url');
  const jvm = [`-Dlog4j.configuration=file:${log4j}`, '-cp', `${lib}/*`];
  const format = spawnSync(
    'java',
    [...jvm, 'kafka.tools.StorageTool', 'format', '-t', clusterId, '-c', props],
    { encoding: 'utf8' },
  );
  if (format.status !== 0) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(
      `formatting the private broker's storage failed:\n${format.stdout}${format.stderr}`,
    );
  }

  const brokers = `127.0.0.1:${port}`;
  let child: ChildProcess | null = null;
  let out = '';
  const launch = async () => {
    const c = spawn(
      'java',
      [
        '-Xms64m',
        `-Xmx${options.heap ?? '256m'}`,
        '-XX:+UseG1GC',
        '-XX:MaxGCPauseMillis=20',
        '-Djava.awt.headless=true',
        ...jvm,
        'kafka.Kafka',
        props,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const keep = (b: Buffer) => {
      out = (out + b.toString()).slice(-20_000);
    };
    c.stdout!.on('data', keep);
    c.stderr!.on('data', keep);
    child = c;
    const end = Date.now() + 90_000;
    while (Date.now() < end) {
      if (c.exitCode !== null || c.signalCode !== null)
        throw new Error(`private Kafka broker on port ${port} exited while starting:\n${out}`);
      if (await serves(brokers)) return;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`private Kafka broker on port ${port} did not answer within 90 s:\n${out}`);
  };
  const stop = async (signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM') => {
    const c = child;
    child = null;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill(signal);
    // A controlled shutdown that hangs is ended the hard way.
    const hard = setTimeout(() => c.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(hard);
  };
  try {
    await launch();
  } catch (err) {
    await stop('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    brokers,
    port,
    dir,
    output: () => out,
    stop,
    restart: launch,
    async close() {
      await stop('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    },
  };
}
