// Engine benchmark on the local Kafka + Redis. Same run, same topic, two consumers:
//   1. raw kafkajs consume of N pre-filled events (eachBatch, no work): the baseline;
//   2. the engine (Redis state, example rules, sends published, fenced writes, commits).
// Target: engine >= 50% of raw. Then the event-to-send latency at a paced 2,000 events/s
// (producer record timestamp -> send record timestamp), target p99 <= 100 ms.
// `npm run bench -- engine`; writes bench/results/engine.json.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { loadConfig } from '../platform/config.ts';
import { createLogger } from '../platform/logger.ts';
import { KafkaBus } from '../platform/kafka.ts';
import { internalTopicSpecs, type Batch, type BatchControl, type Bus, type Subscription } from '../platform/bus.ts';
import { createKeySpace } from '../platform/keys.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import { topics } from '../platform/contracts.ts';
import { eventCodec } from '../platform/avro.ts';
import { loadRuleSet } from '../rules/index.ts';
import { createEngineService } from '../engine/runtime/engine-service.ts';
import { createRedisStateStore } from '../engine/runtime/redis-state.ts';
import { createRedisTimerStore } from '../engine/runtime/timers.ts';
import { wireCore } from '../engine/runtime/wiring.ts';
import { generateEvents } from '../engine/runtime/testdata/generate.ts';
import { decodeSends, eventRecord, readTopic, sleep } from '../engine/runtime/testdata/harness.ts';

const N = 50_000;
const USERS = 10_000;
const PARTITIONS = 6;
const PACED_RATE = 2000;
const PACED_SECONDS = 10;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** Wraps a bus so the benchmark sees when the first batch starts and when N events were handled. */
function timedBus(bus: Bus, target: number) {
  const t = { first: 0, done: 0, count: 0 };
  let resolve!: () => void;
  const finished = new Promise<void>((r) => (resolve = r));
  const wrapped: Bus = {
    publisher: () => bus.publisher(),
    ensureTopics: (s) => bus.ensureTopics(s),
    endOffsets: (topic) => bus.endOffsets(topic),
    close: () => bus.close(),
    consumer: (sub: Subscription) =>
      bus.consumer({
        ...sub,
        eachBatch: async (batch: Batch, control: BatchControl) => {
          t.first ||= performance.now();
          await sub.eachBatch(batch, control);
          t.count += batch.messages.length;
          if (t.count >= target && !t.done) {
            t.done = performance.now();
            resolve();
          }
        },
      }),
  };
  return { bus: wrapped, t, finished };
}

export async function run(): Promise<unknown> {
  const config = loadConfig();
  const logger = createLogger({ level: 'warn', name: 'bench-engine' });
  const id = randomUUID().slice(0, 8);
  const prefix = `bench.${id}`;
  const T = topics(prefix);
  const redisPrefix = `bench:${id}:`;
  const redis = new Redis(config.redis.url, { maxRetriesPerRequest: 3, enableAutoPipelining: true });
  const producerBus = KafkaBus.fromConfig(config, logger);
  const engineBus = KafkaBus.fromConfig(config, logger);
  const started = Date.now();
  try {
    await producerBus.ensureTopics(internalTopicSpecs(T, PARTITIONS));
    const loaded = await loadRuleSet(config.engine.rulesDir);
    if (!loaded.ok) throw new Error(`rules in ${config.engine.rulesDir} are invalid`);
    const ruleSet = loaded.ruleSet;

    // 1. Pre-fill.
    const events = generateEvents({ users: USERS, events: N, startTs: Date.now() - 3_600_000, stepMs: 1, seed: 11, deleteShare: 0.01, idPrefix: `b${id}` });
    const pub = producerBus.publisher();
    const fillStart = performance.now();
    for (let i = 0; i < events.length; i += 5000) {
      const chunk = events.slice(i, i + 5000);
      await Promise.all([0, 1, 2, 3, 4].map((k) => pub.publish(T.events, chunk.slice(k * 1000, (k + 1) * 1000).map(eventRecord))));
    }
    const fillSeconds = (performance.now() - fillStart) / 1000;

    // 2. Raw kafkajs consume of the same topic: no work, then Avro decode only.
    const consumeAll = async (group: string, work: (value: Buffer | null) => void) => {
      const t = { first: 0, done: 0, count: 0 };
      const consumer = producerBus.kafka.consumer({ groupId: group, sessionTimeout: 10_000, heartbeatInterval: 1000, maxBytesPerPartition: 1_048_576 });
      await consumer.connect();
      await consumer.subscribe({ topics: [T.events], fromBeginning: true });
      await new Promise<void>((resolve) => {
        void consumer.run({
          autoCommit: false,
          eachBatch: async ({ batch }) => {
            t.first ||= performance.now();
            for (const m of batch.messages) work(m.value);
            t.count += batch.messages.length;
            if (t.count >= N && !t.done) {
              t.done = performance.now();
              resolve();
            }
          },
        });
      });
      await consumer.disconnect();
      return N / ((t.done - t.first) / 1000);
    };
    const rawRate = await consumeAll(`raw-${id}`, () => {});
    const decodeRate = await consumeAll(`raw-decode-${id}`, (v) => {
      if (v) eventCodec.decode(v);
    });

    // 3. The engine over the same topic.
    const registry = createMetricsRegistry({ defaults: false });
    const keys = createKeySpace(redisPrefix);
    const timed = timedBus(engineBus, N);
    const wiring = wireCore(() => ruleSet);
    const service = createEngineService(
      { topicPrefix: prefix, groupId: `engine-${id}`, timerPollMs: config.engine.timerPollMs, partitions: PARTITIONS, ensureTopics: false },
      {
        bus: timed.bus,
        state: createRedisStateStore({ redis, keys }, { eventsTopic: T.events }),
        timers: createRedisTimerStore({ redis, keys }, { eventsTopic: T.events }),
        ...wiring,
        logger,
        registry,
        ruleSetVersion: ruleSet.version,
      },
    );
    const cpuBefore = process.cpuUsage();
    await service.start();
    await timed.finished;
    const engineRate = N / ((timed.t.done - timed.t.first) / 1000);
    // CPU time of this process (the engine alone runs in it now): steadier than wall time on a
    // shared machine. Kafka's and Redis's own CPU are not in it.
    const cpu = process.cpuUsage(cpuBefore);
    const engineCpuMsPer1k = (cpu.user + cpu.system) / 1000 / (N / 1000);
    const batchMetric = (await registry.getMetricsAsJSON()).find((m) => m.name === 'lc_engine_batch_events');
    const batchCount = batchMetric?.values.find((v) => (v as { metricName?: string }).metricName === 'lc_engine_batch_events_count')?.value ?? 0;
    const sendsAfterThroughput = (await engineBus.endOffsets(T.sends));
    const throughputSends = [...sendsAfterThroughput.values()].reduce((a, b) => a + Number(b), 0);

    // The engine also consumes what it emitted (segment events): let it catch up first.
    for (let i = 0; i < 600; i++) {
      const ends = await engineBus.endOffsets(T.events);
      const committed = await engineBus.committedOffsets(`engine-${id}`, T.events);
      if ([...ends].every(([p, end]) => committed.get(p) === end)) break;
      await sleep(100);
    }

    // 4. Paced latency: the known users go on (a failed payment sends at once) and new users
    // sign up (a welcome sends at once), one event in twenty from a new user.
    const ongoing = generateEvents({ users: USERS, events: PACED_RATE * PACED_SECONDS, startTs: Date.now(), stepMs: 0, seed: 12, idPrefix: `p${id}`, alreadyRegistered: true });
    const signups = generateEvents({ users: 400, events: (PACED_RATE * PACED_SECONDS) / 20, startTs: Date.now(), stepMs: 0, seed: 13, idPrefix: `n${id}`, userPrefix: `new-${id}-` });
    const paced = ongoing.map((e, i) => (i % 20 === 19 ? (signups[(i - 19) / 20] ?? e) : e));
    const producedAt = new Map<string, number>();
    const tick = 10;
    const perTick = (PACED_RATE * tick) / 1000;
    const pacedStart = performance.now();
    for (let i = 0; i < paced.length; i += perTick) {
      const due = pacedStart + (i / perTick) * tick;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      const chunk = paced.slice(i, i + perTick).map((e) => ({ ...e, ts: Date.now(), receivedAt: Date.now() }));
      for (const e of chunk) producedAt.set(e.id, 0);
      void pub.publish(T.events, chunk.map(eventRecord));
    }
    const pacedSeconds = (performance.now() - pacedStart) / 1000;
    await sleep(2000);
    await service.stop();

    // Event record timestamps (producer side) and send record timestamps (engine side).
    const eventRecords = await readTopic(producerBus.kafka, T.events, 60_000);
    for (const r of eventRecords) {
      if (!r.value) continue;
      const e = eventCodec.decode(r.value);
      if (producedAt.has(e.id)) producedAt.set(e.id, r.timestamp);
    }
    const sendRecords = await readTopic(producerBus.kafka, T.sends, 60_000);
    const sends = decodeSends(sendRecords);
    const latencies: number[] = [];
    const steady: number[] = [];
    const pacedT0 = Math.min(...[...producedAt.values()].filter(Boolean));
    sends.forEach((s, i) => {
      const at = producedAt.get(s.triggeredBy.eventId);
      if (!at) return;
      latencies.push(sendRecords[i]!.timestamp - at);
      // After a 2 s warm-up (new code paths, the first burst of sign-ups).
      if (at - pacedT0 >= 2000) steady.push(sendRecords[i]!.timestamp - at);
    });
    latencies.sort((a, b) => a - b);
    steady.sort((a, b) => a - b);

    const result = {
      at: new Date().toISOString(),
      events: N,
      users: USERS,
      partitions: PARTITIONS,
      rules: ruleSet.rules.map((r) => r.def.id),
      prefillSeconds: Number(fillSeconds.toFixed(2)),
      rawConsumeEventsPerSecond: Math.round(rawRate),
      rawConsumeWithDecodeEventsPerSecond: Math.round(decodeRate),
      engineEventsPerSecond: Math.round(engineRate),
      engineToRawRatio: Number((engineRate / rawRate).toFixed(3)),
      engineToRawWithDecodeRatio: Number((engineRate / decodeRate).toFixed(3)),
      engineCpuMsPer1kEvents: Number(engineCpuMsPer1k.toFixed(1)),
      engineBatches: batchCount,
      sendsProduced: throughputSends,
      paced: {
        targetEventsPerSecond: PACED_RATE,
        events: paced.length,
        achievedEventsPerSecond: Math.round(paced.length / pacedSeconds),
        sendsMeasured: latencies.length,
        latencyMs: { p50: percentile(latencies, 50), p90: percentile(latencies, 90), p99: percentile(latencies, 99), max: latencies[latencies.length - 1] ?? NaN },
        afterWarmupLatencyMs: { sends: steady.length, p50: percentile(steady, 50), p99: percentile(steady, 99), max: steady[steady.length - 1] ?? NaN },
      },
      targets: { engineToRawRatio: 0.5, p99Ms: 100 },
      pass: { throughput: engineRate / rawRate >= 0.5, latency: percentile(latencies, 99) <= 100 },
      durationSeconds: Math.round((Date.now() - started) / 1000),
    };
    const dir = path.join(import.meta.dirname, 'results');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'engine.json'), JSON.stringify(result, null, 2));
    console.log(
      [
        `engine: ${N} events, ${USERS} users, ${PARTITIONS} partitions, rules ${config.engine.rulesDir}`,
        `  raw kafkajs consume   ${result.rawConsumeEventsPerSecond.toLocaleString('en')} events/s`,
        `  raw consume + decode  ${result.rawConsumeWithDecodeEventsPerSecond.toLocaleString('en')} events/s`,
        `  engine                ${result.engineEventsPerSecond.toLocaleString('en')} events/s (${(result.engineToRawRatio * 100).toFixed(0)}% of raw, target >= 50%) in ${batchCount} batches, ${throughputSends} sends`,
        `                        ${(result.engineToRawWithDecodeRatio * 100).toFixed(0)}% of raw + decode; engine process CPU ${result.engineCpuMsPer1kEvents} ms per 1,000 events`,
        `  paced ${result.paced.achievedEventsPerSecond} events/s: event->send p50 ${result.paced.latencyMs.p50} ms, p99 ${result.paced.latencyMs.p99} ms (target <= 100), max ${result.paced.latencyMs.max} ms over ${latencies.length} sends`,
        `    after a 2 s warm-up: p50 ${result.paced.afterWarmupLatencyMs.p50} ms, p99 ${result.paced.afterWarmupLatencyMs.p99} ms over ${steady.length} sends`,
      ].join('\n'),
    );
    return result;
  } finally {
    await producerBus.close();
    await engineBus.close();
    const found = await redis.keys(`${redisPrefix}*`);
    for (let i = 0; i < found.length; i += 1000) await redis.del(...found.slice(i, i + 1000));
    redis.disconnect();
    try {
      const admin = producerBus.kafka.admin();
      await admin.connect();
      await admin.deleteTopics({ topics: Object.values(T) });
      await admin.disconnect();
    } catch {
      // Leftover benchmark topics are harmless; the next run uses new names.
    }
  }
}

if (process.argv[1] && import.meta.filename === path.resolve(process.argv[1])) {
  await run();
  process.exit(0);
}
