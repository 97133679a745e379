// Benchmark: the send API (POST /v1/send) against the ingest API (POST /v1/track) in the same
// run, at the same concurrency, with autocannon. Both answer only once Kafka acknowledged
// (acks=all); a send also reads the user's traits from the engine's state in Redis, checks the
// template, and appends to the audit log, and with an Idempotency-Key claims and completes it
// in Redis. The run checks that the sends topics hold as many sends as were answered 202.
// Reported: sustained req/s, p50/p99, server CPU per request, and send/track ratios.
// Run alone: npx tsx bench/send-api.ts (needs scripts/stack up).
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { internalTopicSpecs } from '../platform/bus.ts';
import { loadConfig, type Config } from '../platform/config.ts';
import { topics } from '../platform/contracts.ts';
import { KafkaBus } from '../platform/kafka.ts';
import { createLogger } from '../platform/logger.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import { openRedis } from '../platform/redis.ts';
import { createIngestServer } from '../ingestion/http/server.ts';
import { createIngestBus } from '../ingestion/http/run.ts';
import { createRedisApiKeyStore, generateToken } from '../access/index.ts';
import { createRedisStateStore } from '../engine/index.ts';
import { emptyState, serializeState } from '../engine/core/state.ts';
import { createApiServer } from '../bin/api.ts';

/** The part of autocannon's API used here (the package ships no types). */
interface CannonOptions {
  url: string;
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  connections?: number;
  duration?: number;
  /** Replaces `[<id>]` in headers and body with a new id per request. */
  idReplacement?: boolean;
}
interface CannonResult {
  '2xx': number;
  non2xx: number;
  errors: number;
  timeouts: number;
  duration: number;
  latency: { p50: number; p99: number };
}
const autocannon = createRequire(import.meta.url)('autocannon') as (
  opts: CannonOptions,
) => Promise<CannonResult>;

const SELF = fileURLToPath(import.meta.url);
const WRITE_KEY = 'bench-write-key';
const DURATION_S = 8;
const CONNECTIONS = 50;
const USER = 'bench-user';

function benchConfig(prefix: string): Readonly<Config> {
  return loadConfig({
    ...process.env,
    LC_TOPIC_PREFIX: prefix,
    LC_REDIS_KEY_PREFIX: `${prefix}:`,
    LC_LOG_LEVEL: 'error',
  });
}

const cpuMicros = () => {
  const c = process.cpuUsage();
  return c.user + c.system;
};

/**
 * Child process: the ingest API and the API process (send API), each with its own Kafka
 * producer as in production, on ephemeral ports; a service key and one user in the engine's
 * state. Prints its URLs and the key as one JSON line, then a CPU reading per `cpu` line.
 */
async function serve(prefix: string): Promise<void> {
  const config = benchConfig(prefix);
  const logger = createLogger({ level: 'error', name: 'bench-send-api' });
  const ingestBus = createIngestBus(config, logger);
  await ingestBus.ensureTopics(internalTopicSpecs(topics(prefix), config.kafka.partitions));
  const ingest = await createIngestServer(
    {
      ingest: { ...config.ingest, rateLimitPerSecond: 100_000_000 },
      auth: { writeKeys: [`bench:${WRITE_KEY}:server`] },
      kafka: { topicPrefix: prefix },
    },
    { bus: ingestBus, logger, metrics: createMetricsRegistry({ defaults: false }) },
  );
  const ingestUrl = await ingest.listen({ host: '127.0.0.1', port: 0 });

  const redis = await openRedis(config, logger);
  const apiBus = KafkaBus.fromConfig(config, logger);
  // The user the sends go to, as the engine would have stored them.
  const state = createRedisStateStore(redis, { eventsTopic: topics(prefix).events });
  const epoch = await state.acquire(0);
  const s = emptyState();
  s.traits = { email: 'bench@example.com', firstName: 'Ada', plan: 'pro', locale: 'en' };
  await state.write(0, epoch, [
    { userId: USER, state: serializeState(s), offset: '1', timerIds: [] },
  ]);
  const token = generateToken();
  await createRedisApiKeyStore(redis).put(
    token,
    { name: 'bench', role: 'service', expiresAt: null, createdBy: 'bench' },
    Date.now(),
  );
  const api = await createApiServer(config, {
    redis,
    publisher: apiBus.publisher(),
    logger,
    metrics: createMetricsRegistry({ defaults: false }),
  });
  const apiUrl = await api.listen({ host: '127.0.0.1', port: 0 });

  process.stdout.write(`${JSON.stringify({ ingestUrl, apiUrl, token })}\n`);
  process.stdin.on('data', (d: Buffer) => {
    for (const line of d.toString().split('\n'))
      if (line === 'cpu') process.stdout.write(`${JSON.stringify({ cpuMicros: cpuMicros() })}\n`);
  });
  process.stdin.on('end', () => {
    void (async () => {
      await ingest.close();
      await api.close();
      await ingestBus.close();
      await apiBus.close();
      // Everything this run wrote to Redis (user state, key, audit records, Idempotency-Keys).
      let cursor = '0';
      do {
        const [next, keys] = await redis.redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length > 0) await redis.redis.del(...keys);
      } while (cursor !== '0');
      redis.redis.disconnect();
      process.exit(0);
    })();
  });
}

/** Starts the server child; it answers on stdout one JSON line at a time. */
async function startServer(prefix: string) {
  const child = spawn(process.execPath, ['--import', 'tsx', SELF, '--serve', prefix], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines: string[] = [];
  let waiting: ((line: string) => void) | null = null;
  let buf = '';
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (!line.startsWith('{')) continue;
      if (waiting) {
        const w = waiting;
        waiting = null;
        w(line);
      } else lines.push(line);
    }
  });
  const exited = new Promise<number | null>((r) => child.once('exit', r));
  const nextLine = () =>
    Promise.race([
      new Promise<string>((resolve) => {
        const queued = lines.shift();
        if (queued !== undefined) return resolve(queued);
        waiting = resolve;
      }),
      exited.then((code) => Promise.reject(new Error(`bench server exited with ${code}`))),
    ]);
  const ready = JSON.parse(await nextLine()) as {
    ingestUrl: string;
    apiUrl: string;
    token: string;
  };
  return {
    ...ready,
    serverCpu: async () => {
      child.stdin.write('cpu\n');
      return (JSON.parse(await nextLine()) as { cpuMicros: number }).cpuMicros;
    },
    close: async () => {
      child.stdin.end();
      await exited;
    },
  };
}

interface Phase {
  name: string;
  requestsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  ok: number;
  non2xx: number;
  errors: number;
  /** CPU time of the server process per answered request. */
  serverCpuMicrosPerRequest: number;
  /** Server CPU time / wall time (1 = one core busy all the time). */
  serverCores: number;
}

async function measure(
  name: string,
  opts: CannonOptions,
  serverCpu: () => Promise<number>,
): Promise<Phase> {
  const cpu0 = await serverCpu();
  const r = await autocannon({ connections: CONNECTIONS, duration: DURATION_S, ...opts });
  const cpu = (await serverCpu()) - cpu0;
  return {
    name,
    requestsPerSec: Math.round(r['2xx'] / r.duration),
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    ok: r['2xx'],
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
    serverCpuMicrosPerRequest: Number((cpu / Math.max(1, r['2xx'])).toFixed(1)),
    serverCores: Number((cpu / 1e6 / r.duration).toFixed(2)),
  };
}

export async function run() {
  const prefix = `bench-send-${randomBytes(3).toString('hex')}`;
  const config = benchConfig(prefix);
  const server = await startServer(prefix);
  const track = {
    url: `${server.ingestUrl}/v1/track`,
    method: 'POST' as const,
    headers: {
      authorization: `Basic ${Buffer.from(`${WRITE_KEY}:`).toString('base64')}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify({
      userId: USER,
      event: 'Order Placed',
      properties: { orderId: 'o-1', amount: 49, currency: 'EUR' },
    }),
  };
  const sendBody = JSON.stringify({
    template: 'payment_failed',
    userId: USER,
    category: 'transactional',
    channels: ['email'],
    data: { event: { properties: { amount: 49, currency: 'EUR', orderId: 'o-1' } } },
  });
  const send = {
    url: `${server.apiUrl}/v1/send`,
    method: 'POST' as const,
    headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' },
    body: sendBody,
  };
  const phases: Phase[] = [];
  let warmups = 0;
  try {
    // Warm both (JIT, producers connected, topic metadata), then measure each in turn.
    for (const target of [track, send]) {
      const w = await autocannon({ ...target, connections: 10, duration: 2 });
      if (target === send) warmups += w['2xx'];
    }
    phases.push(await measure('POST /v1/track (ingest)', track, server.serverCpu));
    phases.push(await measure('POST /v1/send', send, server.serverCpu));
    phases.push(
      await measure(
        'POST /v1/send, Idempotency-Key',
        {
          ...send,
          headers: { ...send.headers, 'idempotency-key': 'bench-[<id>]' },
          idReplacement: true,
        },
        server.serverCpu,
      ),
    );
  } finally {
    await server.close();
  }

  // Every 202 must be a send on the sends topic (warm-up included).
  const bus = KafkaBus.fromConfig(config, createLogger({ level: 'error' }));
  const t = topics(prefix);
  const offsets = await bus.endOffsets(t.sends);
  const inKafka = [...offsets.values()].reduce((a, b) => a + Number(b), 0);
  const admin = bus.kafka.admin();
  await admin.connect();
  await admin
    .deleteTopics({ topics: internalTopicSpecs(t, config.kafka.partitions).map((s) => s.topic) })
    .catch(() => undefined);
  await admin.disconnect();
  await bus.close();

  const [trackPhase, sendPhase, keyedPhase] = phases as [Phase, Phase, Phase];
  const answered = warmups + sendPhase.ok + keyedPhase.ok;
  const result = {
    at: new Date().toISOString(),
    node: process.version,
    durationSeconds: DURATION_S,
    connections: CONNECTIONS,
    phases,
    sendVsTrack: Number((sendPhase.requestsPerSec / trackPhase.requestsPerSec).toFixed(3)),
    keyedSendVsTrack: Number((keyedPhase.requestsPerSec / trackPhase.requestsPerSec).toFixed(3)),
    kafka: {
      sendsInTopic: inKafka,
      answered202: answered,
      allAnsweredSendsStored: inKafka >= answered,
    },
    passed: inKafka >= answered && sendPhase.non2xx === 0 && keyedPhase.non2xx === 0,
  };
  const dir = path.join(path.dirname(SELF), 'results');
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'send-api.json'), `${JSON.stringify(result, null, 2)}\n`);
  for (const p of phases)
    console.log(
      `${p.name.padEnd(32)} ${String(p.requestsPerSec).padStart(6)} req/s  p50 ${p.p50Ms} ms  p99 ${p.p99Ms} ms  server ${p.serverCpuMicrosPerRequest} µs CPU/req, ${p.serverCores} cores  (non-2xx ${p.non2xx}, errors ${p.errors})`,
    );
  console.log(
    `send vs track: ${result.sendVsTrack}x; with Idempotency-Key: ${result.keyedSendVsTrack}x; Kafka holds ${inKafka} sends for ${answered} answered 202`,
  );
  return result;
}

if (process.argv[1] === SELF) {
  const i = process.argv.indexOf('--serve');
  if (i > 0) await serve(process.argv[i + 1]!);
  else await run();
}
