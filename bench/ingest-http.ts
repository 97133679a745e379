// Benchmark: the Segment-compatible ingest API against a fastify hello-world route served by
// the same process, in the same run, with autocannon. Every ingest response waits for
// Kafka's acknowledgement (acks=all), and the run checks that Kafka holds as many events as
// were answered 2xx. Targets: /v1/batch (100 events per request) >= 50,000 events/s;
// /v1/track >= 10,000 req/s with p99 < 20 ms.
// Run alone: npx tsx bench/ingest-http.ts (needs scripts/stack up).
import cluster from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify from 'fastify';
import { loadConfig } from '../platform/config.ts';
import { topics } from '../platform/contracts.ts';
import { KafkaBus } from '../platform/kafka.ts';
import { createLogger } from '../platform/logger.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import { createIngestServer } from '../ingestion/http/server.ts';
import { createIngestBus, INGEST_PRODUCERS } from '../ingestion/http/run.ts';
import { encodeWithHeader, eventCodec } from '../platform/avro.ts';
import {
  autocannon,
  cpuMicros,
  measure,
  serveLoad,
  startLoadServer,
  type CannonOptions,
  type LoadPhase,
} from './http-load.ts';

const SELF = fileURLToPath(import.meta.url);
const WRITE_KEY = 'bench-write-key';
const DURATION_S = 8;

/** The ingest API of one process on an ephemeral port (shared by every worker of a cluster). */
async function startIngest(prefix: string, producers: number) {
  const config = loadConfig();
  const logger = createLogger({ level: 'error', name: 'bench-ingest' });
  const bus = createIngestBus(config, logger, producers);
  await bus.ensureTopics([{ topic: topics(prefix).events, partitions: config.kafka.partitions }]);
  const ingest = await createIngestServer(
    {
      ingest: { ...config.ingest, rateLimitPerSecond: 100_000_000 },
      auth: { writeKeys: [`bench:${WRITE_KEY}`] },
      kafka: { topicPrefix: prefix },
    },
    { bus, logger, metrics: createMetricsRegistry({ defaults: false }) },
  );
  const url = await ingest.listen({ host: '127.0.0.1', port: 0 });
  return {
    url,
    close: async () => {
      await ingest.close();
      await bus.close();
    },
  };
}

/**
 * Child process: the hello-world route and the ingest API, on ephemeral ports. With
 * `workers` > 1 the ingest API runs in that many cluster workers sharing one port (as
 * several ingest processes behind a load balancer would), and CPU readings add them up.
 */
async function serve(prefix: string, producers: number, workers: number): Promise<void> {
  if (cluster.isWorker) {
    const ingest = await startIngest(prefix, producers);
    process.on('message', (msg: string) => {
      if (msg === 'cpu') process.send!({ cpuMicros: cpuMicros() });
      if (msg === 'close') void ingest.close().then(() => process.exit(0));
    });
    process.send!({ url: ingest.url });
    return;
  }
  const hello = Fastify();
  hello.get('/', async () => ({ hello: 'world' }));
  const helloUrl = await hello.listen({ host: '127.0.0.1', port: 0 });
  let ingestUrl: string;
  let close: () => Promise<void>;
  let cpu: () => Promise<number>;
  if (workers > 1) {
    const forked = Array.from({ length: workers }, () => cluster.fork());
    const urls = await Promise.all(
      forked.map(
        (w) =>
          new Promise<string>((resolve) =>
            w.once('message', (m: { url: string }) => resolve(m.url)),
          ),
      ),
    );
    ingestUrl = urls[0]!;
    cpu = async () => {
      const each = await Promise.all(
        forked.map(
          (w) =>
            new Promise<number>((resolve) => {
              w.once('message', (m: { cpuMicros: number }) => resolve(m.cpuMicros));
              w.send('cpu');
            }),
        ),
      );
      return each.reduce((a, b) => a + b, cpuMicros());
    };
    close = async () => {
      await Promise.all(
        forked.map(
          (w) =>
            new Promise((resolve) => {
              w.once('exit', resolve);
              w.send('close');
            }),
        ),
      );
    };
  } else {
    const ingest = await startIngest(prefix, producers);
    ingestUrl = ingest.url;
    cpu = async () => cpuMicros();
    close = ingest.close;
  }
  // The parent asks for the server's CPU time around each phase.
  serveLoad(
    { ingestUrl, helloUrl },
    {
      cpu,
      close: async () => {
        await close();
        await hello.close();
      },
    },
  );
}

/** A phase at this benchmark's length: `connections` as given, `DURATION_S` unless given. */
const phase = (
  name: string,
  opts: CannonOptions & { connections: number },
  serverCpu: () => Promise<number>,
  eventsPerRequest: number,
): Promise<LoadPhase> =>
  measure(name, { duration: DURATION_S, ...opts }, serverCpu, eventsPerRequest);

/** The server child: the hello-world route and the ingest API in `workers` processes. */
const startServer = (prefix: string, workers: number) =>
  startLoadServer<{ ingestUrl: string; helloUrl: string }>(SELF, [
    '--serve',
    prefix,
    '--workers',
    String(workers),
  ]);

export async function run() {
  const config = loadConfig();
  const prefix = `bench-ingest-${randomBytes(3).toString('hex')}`;
  const server = await startServer(prefix, 1);
  const { ready: urls, serverCpu } = server;
  const auth = {
    authorization: `Basic ${Buffer.from(`${WRITE_KEY}:`).toString('base64')}`,
    'content-type': 'application/json',
  };
  const track = JSON.stringify({
    userId: 'bench-user',
    event: 'Feature Used',
    properties: { feature: 'export', plan: 'pro' },
    context: { library: { name: 'bench' } },
  });
  const batch = JSON.stringify({
    batch: Array.from({ length: 100 }, (_, i) => ({
      type: 'track',
      userId: `bench-user-${i % 37}`,
      event: 'Feature Used',
      properties: { feature: 'export', n: i },
    })),
  });
  const phases: LoadPhase[] = [];
  try {
    await autocannon({
      url: `${urls.ingestUrl}/v1/track`,
      method: 'POST',
      headers: auth,
      body: track,
      connections: 20,
      duration: 2,
    });
    phases.push(
      await phase('hello-world GET /', { url: urls.helloUrl, connections: 50 }, serverCpu, 0),
    );
    phases.push(
      await phase(
        'POST /v1/track',
        {
          url: `${urls.ingestUrl}/v1/track`,
          method: 'POST',
          headers: auth,
          body: track,
          connections: 50,
        },
        serverCpu,
        1,
      ),
    );
    phases.push(
      await phase(
        'POST /v1/batch (100 events)',
        {
          url: `${urls.ingestUrl}/v1/batch`,
          method: 'POST',
          headers: auth,
          body: batch,
          connections: 16,
        },
        serverCpu,
        100,
      ),
    );
  } finally {
    await server.close();
  }
  // The same batch load on the API in two cluster workers (two ingest processes sharing a
  // port, as two replicas behind a load balancer), writing to the same topic.
  const pair = await startServer(prefix, 2);
  let twoWorkers: LoadPhase;
  try {
    await autocannon({
      url: `${pair.ready.ingestUrl}/v1/batch`,
      method: 'POST',
      headers: auth,
      body: batch,
      connections: 8,
      duration: 2,
    });
    twoWorkers = await phase(
      'POST /v1/batch, 2 workers',
      {
        url: `${pair.ready.ingestUrl}/v1/batch`,
        method: 'POST',
        headers: auth,
        body: batch,
        connections: 16,
      },
      pair.serverCpu,
      100,
    );
  } finally {
    await pair.close();
  }

  // Every 2xx answer must be in Kafka (warm-up included).
  const bus = KafkaBus.fromConfig(config, createLogger({ level: 'error' }));
  const offsets = await bus.endOffsets(topics(prefix).events);
  // Reference: what this machine's Kafka client and broker take when nothing else runs:
  // the same events published straight through the bus, 1000 per produce, one at a time.
  const rawTopic = `${prefix}-raw`;
  await bus.ensureTopics([{ topic: rawTopic, partitions: config.kafka.partitions }]);
  const publisher = bus.publisher();
  const sample = {
    id: '',
    userId: '',
    type: 'Feature Used',
    ts: Date.now(),
    receivedAt: Date.now(),
    source: 'http:bench:client',
    properties: { feature: 'export', n: 1 },
  };
  const rawMessages = Array.from({ length: 1000 }, (_, i) => ({
    key: `bench-user-${i % 37}`,
    ...encodeWithHeader(eventCodec, { ...sample, id: `e${i}`, userId: `bench-user-${i % 37}` }),
  }));
  await publisher.publish(rawTopic, rawMessages);
  const rawCpu0 = process.cpuUsage();
  const rawStart = performance.now();
  let rawCount = 0;
  while (performance.now() - rawStart < 4000) {
    await publisher.publish(rawTopic, rawMessages);
    rawCount += rawMessages.length;
  }
  const rawPublishPerSec = Math.round(rawCount / ((performance.now() - rawStart) / 1000));
  const rawCpu = process.cpuUsage(rawCpu0);
  const rawCpuMicrosPerEvent = Number(((rawCpu.user + rawCpu.system) / rawCount).toFixed(1));
  const admin = bus.kafka.admin();
  await admin.connect();
  await admin.deleteTopics({ topics: [topics(prefix).events, rawTopic] }).catch(() => undefined);
  await admin.disconnect();
  await bus.close();
  const inKafka = [...offsets.values()].reduce((a, b) => a + Number(b), 0);
  const [hello, single, batched] = phases as [LoadPhase, LoadPhase, LoadPhase];
  const answered = single.ok + batched.ok * 100 + twoWorkers.ok * 100;
  const targets = {
    batchEventsPerSec: {
      target: 50_000,
      value: batched.eventsPerSec,
      met: batched.eventsPerSec >= 50_000,
    },
    trackRequestsPerSec: {
      target: 10_000,
      value: single.requestsPerSec,
      met: single.requestsPerSec >= 10_000,
    },
    trackP99Ms: { target: 20, value: single.p99Ms, met: single.p99Ms < 20 },
  };
  const result = {
    at: new Date().toISOString(),
    node: process.version,
    durationSeconds: DURATION_S,
    phases,
    batchTwoWorkers: twoWorkers,
    batchTwoWorkersVsRawKafkaPublish: Number(
      (twoWorkers.eventsPerSec / rawPublishPerSec).toFixed(3),
    ),
    trackVsHelloWorld: Number((single.requestsPerSec / hello.requestsPerSec).toFixed(3)),
    rawKafkaPublishEventsPerSec: rawPublishPerSec,
    rawKafkaPublishCpuMicrosPerEvent: rawCpuMicrosPerEvent,
    batchVsRawKafkaPublish: Number((batched.eventsPerSec / rawPublishPerSec).toFixed(3)),
    kafka: {
      eventsInTopic: inKafka,
      answered2xxDuringMeasurement: answered,
      allAnsweredEventsStored: inKafka >= answered,
    },
    targets,
    passed: Object.values(targets).every((t) => t.met) && inKafka >= answered,
  };
  const dir = path.join(path.dirname(SELF), 'results');
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'ingest-http.json'), `${JSON.stringify(result, null, 2)}\n`);
  for (const p of [...phases, twoWorkers]) {
    console.log(
      `${p.name.padEnd(28)} ${String(p.requestsPerSec).padStart(7)} req/s  ${p.eventsPerSec ? `${String(p.eventsPerSec).padStart(7)} events/s  ` : ''.padEnd(18)}p50 ${p.p50Ms} ms  p99 ${p.p99Ms} ms  server ${p.serverCpuMicrosPerUnit} µs CPU/${p.eventsPerSec ? 'event' : 'req'}, ${p.serverCores} cores  (non-2xx ${p.non2xx}, errors ${p.errors})`,
    );
  }
  console.log(
    `raw Kafka publish (1000/produce, no HTTP): ${rawPublishPerSec} events/s, ${rawCpuMicrosPerEvent} µs CPU/event; batch ingest reaches ${result.batchVsRawKafkaPublish}x of it`,
  );
  console.log(
    `track vs hello-world: ${result.trackVsHelloWorld}x; Kafka holds ${inKafka} events for ${answered} answered in the measured phases`,
  );
  for (const [k, t] of Object.entries(targets))
    console.log(
      `${k}: ${t.value} (target ${k === 'trackP99Ms' ? '<' : '>='} ${t.target}) ${t.met ? 'met' : 'NOT met'}`,
    );
  return result;
}

if (process.argv[1] === SELF) {
  const i = process.argv.indexOf('--serve');
  const p = process.argv.indexOf('--producers');
  const w = process.argv.indexOf('--workers');
  if (i > 0)
    await serve(
      process.argv[i + 1]!,
      p > 0 ? Number(process.argv[p + 1]) : INGEST_PRODUCERS,
      w > 0 ? Number(process.argv[w + 1]) : 1,
    );
  else await run();
}
