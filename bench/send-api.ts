// Benchmark: the send API (POST /v1/send) against the ingest API (POST /v1/track) in the same
// run, at the same concurrency, with autocannon. Both answer only once Kafka acknowledged
// (acks=all); a send also reads the user's traits from the engine's state in Redis, checks the
// template, and appends to the audit log, and with an Idempotency-Key claims and completes it
// in Redis. The run checks that the sends topics hold as many sends as were answered 202.
// Reported: sustained req/s, p50/p99, server CPU per request, and send/track ratios.
// Run alone: npx tsx bench/send-api.ts (needs scripts/stack up).
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
import {
  autocannon,
  measure,
  serveLoad,
  startLoadServer,
  type CannonOptions,
  type LoadPhase,
} from './http-load.ts';

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

  serveLoad(
    { ingestUrl, apiUrl, token },
    {
      close: async () => {
        await ingest.close();
        await api.close();
        await ingestBus.close();
        await apiBus.close();
        // Everything this run wrote to Redis (user state, key, audit records, Idempotency-Keys).
        let cursor = '0';
        do {
          const [next, keys] = await redis.redis.scan(
            cursor,
            'MATCH',
            `${prefix}:*`,
            'COUNT',
            1000,
          );
          cursor = next;
          if (keys.length > 0) await redis.redis.del(...keys);
        } while (cursor !== '0');
        redis.redis.disconnect();
      },
    },
  );
}

/** The server child: the ingest API and the API process, a service key and one user. */
const startServer = (prefix: string) =>
  startLoadServer<{ ingestUrl: string; apiUrl: string; token: string }>(SELF, ['--serve', prefix]);

/** A phase at this benchmark's concurrency and length; no request carries events. */
const phase = (name: string, opts: CannonOptions, serverCpu: () => Promise<number>) =>
  measure(name, { connections: CONNECTIONS, duration: DURATION_S, ...opts }, serverCpu);

export async function run() {
  const prefix = `bench-send-${randomBytes(3).toString('hex')}`;
  const config = benchConfig(prefix);
  const server = await startServer(prefix);
  const { ingestUrl, apiUrl, token } = server.ready;
  const track = {
    url: `${ingestUrl}/v1/track`,
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
    url: `${apiUrl}/v1/send`,
    method: 'POST' as const,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: sendBody,
  };
  const phases: LoadPhase[] = [];
  let warmups = 0;
  try {
    // Warm both (JIT, producers connected, topic metadata), then measure each in turn.
    for (const target of [track, send]) {
      const w = await autocannon({ ...target, connections: 10, duration: 2 });
      if (target === send) warmups += w['2xx'];
    }
    phases.push(await phase('POST /v1/track (ingest)', track, server.serverCpu));
    phases.push(await phase('POST /v1/send', send, server.serverCpu));
    phases.push(
      await phase(
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

  const [trackPhase, sendPhase, keyedPhase] = phases as [LoadPhase, LoadPhase, LoadPhase];
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
      `${p.name.padEnd(32)} ${String(p.requestsPerSec).padStart(6)} req/s  p50 ${p.p50Ms} ms  p99 ${p.p99Ms} ms  server ${p.serverCpuMicrosPerUnit} µs CPU/req, ${p.serverCores} cores  (non-2xx ${p.non2xx}, errors ${p.errors})`,
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
