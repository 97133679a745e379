// Engine benchmark on the local Kafka + Redis. Same run, same topic, two consumers:
//   1. raw kafkajs consume of N pre-filled events (eachBatch, no work): the baseline;
//      then the same with Avro decoding only, as a further reference point;
//   2. the engine (Redis state, example rules, sends published, fenced writes, commits).
// Target: engine >= 50% of raw. Then the event-to-send latency at a paced 2,000 events/s
// (producer record timestamp -> send record timestamp), target p99 <= 100 ms.
// `npm run bench -- engine [--events=N] [--engine-procs=K]`; writes bench/results/engine.json.
// N (default 200,000) has N/5 users, the mix of the original 50,000 events of 10,000 users;
// a raw consume of 50,000 events lasts ~0.1 s, too short to be steady. With K > 1 the
// engine runs in K child processes of one consumer group (this file with `--worker`),
// released together once the group has settled, so a rebalance is not in the measurement.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fork, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { loadConfig } from '../platform/config.ts';
import { createLogger } from '../platform/logger.ts';
import { KafkaBus } from '../platform/kafka.ts';
import {
  internalTopicSpecs,
  type Batch,
  type BatchControl,
  type Bus,
  type Subscription,
} from '../platform/bus.ts';
import { createKeySpace } from '../platform/keys.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import { topics } from '../platform/contracts.ts';
import { eventCodec } from '../platform/avro.ts';
import { loadRuleSet } from '../rules/index.ts';
import { createEngineService } from '../engine/runtime/engine-service.ts';
import { createRedisStateStore } from '../engine/runtime/redis-state.ts';
import { createRedisTimerStore } from '../engine/runtime/timers.ts';
import { createRedisContactIndex } from '../engine/runtime/contacts.ts';
import { wireCore } from '../engine/runtime/wiring.ts';
import { generateEvents } from '../test/support/engine-events.ts';
import { decodeSends, eventRecord, readTopic, sleep } from '../test/support/engine-harness.ts';

function flag(name: string, fallback: number): number {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  const v = arg ? Number(arg.slice(name.length + 3)) : fallback;
  if (!Number.isInteger(v) || v <= 0) throw new Error(`--${name} must be a positive integer`);
  return v;
}

const N = flag('events', 200_000);
const USERS = Math.max(1, Math.round(N / 5));
const ENGINE_PROCS = flag('engine-procs', 1);
const PARTITIONS = 6;
const PACED_RATE = 2000;
const PACED_SECONDS = 10;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[
    Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  ]!;
}

/**
 * Wraps a bus so the benchmark sees when the first batch starts (wall and process CPU) and
 * when `target` events were handled. While `gate.open` is false, batches are handed back
 * unprocessed and uncommitted (kafkajs fetches them again), so several processes can join
 * the group before any of them starts working.
 */
function timedBus(
  bus: Bus,
  target: number,
  gate: { open: boolean } = { open: true },
  onBatch?: (count: number, batches: number) => void,
) {
  const t = { first: 0, done: 0, count: 0, batches: 0, cpuAtFirst: process.cpuUsage() };
  let resolve!: () => void;
  const finished = new Promise<void>((r) => (resolve = r));
  const wrapped: Bus = {
    publisher: () => bus.publisher(),
    ensureTopics: (s) => bus.ensureTopics(s),
    endOffsets: (topic) => bus.endOffsets(topic),
    deleteGroup: (groupId) => bus.deleteGroup(groupId),
    close: () => bus.close(),
    consumer: (sub: Subscription) =>
      bus.consumer({
        ...sub,
        eachBatch: async (batch: Batch, control: BatchControl) => {
          if (!gate.open) {
            // Each pass fetches and decodes the batch again: wait long enough to keep that cheap.
            await sleep(250);
            await control.heartbeat().catch(() => undefined);
            return;
          }
          if (!t.first) {
            t.first = performance.now();
            t.cpuAtFirst = process.cpuUsage();
          }
          await sub.eachBatch(batch, control);
          t.count += batch.messages.length;
          if (!t.done) t.batches++;
          onBatch?.(t.count, t.batches);
          if (t.count >= target && !t.done) {
            t.done = performance.now();
            resolve();
          }
        },
      }),
  };
  return { bus: wrapped, t, finished };
}

/** The engine as the benchmark runs it, in this process or in a `--worker` child. */
async function startEngine(
  names: { prefix: string; redisPrefix: string; groupId: string },
  opts: { gate?: { open: boolean }; onBatch?: (count: number, batches: number) => void } = {},
) {
  const config = loadConfig();
  const logger = createLogger({ level: 'warn', name: 'bench-engine' });
  const loaded = await loadRuleSet(config.engine.rulesDir);
  if (!loaded.ok) throw new Error(`rules in ${config.engine.rulesDir} are invalid`);
  const ruleSet = loaded.ruleSet;
  const T = topics(names.prefix);
  const redis = new Redis(config.redis.url, {
    maxRetriesPerRequest: 3,
    enableAutoPipelining: true,
  });
  const bus = KafkaBus.fromConfig(config, logger);
  const registry = createMetricsRegistry({ defaults: false });
  const keys = createKeySpace(names.redisPrefix);
  const timed = timedBus(bus, N, opts.gate, opts.onBatch);
  const service = createEngineService(
    {
      topicPrefix: names.prefix,
      groupId: names.groupId,
      timerPollMs: config.engine.timerPollMs,
      partitions: PARTITIONS,
      ensureTopics: false,
    },
    {
      bus: timed.bus,
      state: createRedisStateStore({ redis, keys }, { eventsTopic: T.events }),
      timers: createRedisTimerStore({ redis, keys }, { eventsTopic: T.events }),
      contacts: createRedisContactIndex(
        { redis, keys },
        { eventsTopic: T.events, partitions: PARTITIONS },
      ),
      ...wireCore(() => ruleSet),
      logger,
      registry,
      ruleSetVersion: ruleSet.version,
    },
  );
  await service.start();
  return {
    service,
    timed,
    async stop() {
      await service.stop();
      await bus.close();
      redis.disconnect();
    },
  };
}

type WorkerReport =
  | { kind: 'owned'; partitions: number }
  | { kind: 'progress'; count: number; batches: number; at: number; cpuMs: number; first: number }
  | { kind: 'stopped' };

/** A `--worker` child: the engine of one process of the group, reporting over IPC. */
async function worker(prefix: string, redisPrefix: string, groupId: string): Promise<void> {
  const send = (r: WorkerReport) => process.send?.(r);
  const gate = { open: false };
  // performance.timeOrigin + now(): a clock the parent can compare across processes.
  const abs = () => performance.timeOrigin + performance.now();
  let first = 0;
  let cpu0 = process.cpuUsage();
  const engine = await startEngine(
    { prefix, redisPrefix, groupId },
    {
      gate,
      onBatch: (count, batches) => {
        const c = process.cpuUsage(cpu0);
        send({
          kind: 'progress',
          count,
          batches,
          at: abs(),
          cpuMs: (c.user + c.system) / 1000,
          first,
        });
      },
    },
  );
  const owned = setInterval(
    () => send({ kind: 'owned', partitions: engine.service.ownedPartitions().length }),
    100,
  );
  process.on('message', (m: string) => {
    if (m === 'go') {
      clearInterval(owned);
      cpu0 = process.cpuUsage();
      first = abs();
      gate.open = true;
    } else if (m === 'stop') {
      void (async () => {
        await engine.stop();
        send({ kind: 'stopped' });
        process.exit(0);
      })();
    }
  });
}

const liveChildren: ChildProcess[] = [];

/** K engine processes of one group, released together; resolves when they handled N events between them. */
async function startWorkers(
  k: number,
  names: { prefix: string; redisPrefix: string; groupId: string },
) {
  const children: ChildProcess[] = [];
  const owned = new Map<ChildProcess, number>();
  const progress = new Map<
    ChildProcess,
    { count: number; batches: number; at: number; cpuMs: number; first: number }
  >();
  const stopped = new Set<ChildProcess>();
  let atN: { seconds: number; cpuMs: number; batches: number } | null = null;
  let onN!: () => void;
  let failed!: (err: Error) => void;
  const reachedN = new Promise<void>((resolve, reject) => {
    onN = resolve;
    failed = reject;
  });
  // Observed when the caller awaits reachedN; this keeps an early exit from being an unhandled rejection meanwhile.
  reachedN.catch(() => undefined);
  for (let i = 0; i < k; i++) {
    const child = fork(
      import.meta.filename,
      ['--worker', names.prefix, names.redisPrefix, names.groupId, `--events=${N}`],
      {
        execArgv: ['--import', 'tsx'],
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      },
    );
    children.push(child);
    liveChildren.push(child);
    child.on('exit', (code) => {
      if (!atN)
        failed(
          new Error(
            `engine process ${child.pid} exited (code ${code}) before the group handled ${N} events`,
          ),
        );
    });
    child.on('message', (r: WorkerReport) => {
      if (r.kind === 'owned') owned.set(child, r.partitions);
      else if (r.kind === 'stopped') stopped.add(child);
      else {
        progress.set(child, r);
        const all = [...progress.values()];
        if (!atN && all.reduce((a, p) => a + p.count, 0) >= N) {
          const first = Math.min(...all.map((p) => p.first));
          atN = {
            seconds: (r.at - first) / 1000,
            cpuMs: all.reduce((a, p) => a + p.cpuMs, 0),
            batches: all.reduce((a, p) => a + p.batches, 0),
          };
          onN();
        }
      }
    });
  }
  // Released once every process owns partitions and the split has held for a second.
  let stableSince = 0;
  for (let i = 0; i < 600; i++) {
    const counts = children.map((c) => owned.get(c) ?? 0);
    const settled = counts.every((n) => n > 0) && counts.reduce((a, b) => a + b, 0) === PARTITIONS;
    if (!settled) stableSince = 0;
    else if (!stableSince) stableSince = Date.now();
    else if (Date.now() - stableSince >= 1000) break;
    await sleep(100);
  }
  for (const c of children) c.send('go');
  return {
    reachedN: reachedN.then(() => atN!),
    async stop(): Promise<void> {
      for (const c of children) c.send('stop');
      for (let i = 0; i < 300 && stopped.size < children.length; i++) await sleep(100);
      for (const c of children) if (c.exitCode === null) c.kill();
    },
  };
}

export async function run(): Promise<unknown> {
  const config = loadConfig();
  const logger = createLogger({ level: 'warn', name: 'bench-engine' });
  const id = randomUUID().slice(0, 8);
  const prefix = `bench.${id}`;
  const T = topics(prefix);
  const redisPrefix = `bench:${id}:`;
  const groupId = `engine-${id}`;
  const redis = new Redis(config.redis.url, {
    maxRetriesPerRequest: 3,
    enableAutoPipelining: true,
  });
  const producerBus = KafkaBus.fromConfig(config, logger);
  const started = Date.now();
  try {
    await producerBus.ensureTopics(internalTopicSpecs(T, PARTITIONS));
    const loaded = await loadRuleSet(config.engine.rulesDir);
    if (!loaded.ok) throw new Error(`rules in ${config.engine.rulesDir} are invalid`);
    const ruleSet = loaded.ruleSet;

    // 1. Pre-fill.
    const events = generateEvents({
      users: USERS,
      events: N,
      startTs: Date.now() - 3_600_000,
      stepMs: 1,
      seed: 11,
      deleteShare: 0.01,
      idPrefix: `b${id}`,
    });
    const pub = producerBus.publisher();
    const fillStart = performance.now();
    for (let i = 0; i < events.length; i += 5000) {
      const chunk = events.slice(i, i + 5000);
      await Promise.all(
        [0, 1, 2, 3, 4].map((k) =>
          pub.publish(T.events, chunk.slice(k * 1000, (k + 1) * 1000).map(eventRecord)),
        ),
      );
    }
    const fillSeconds = (performance.now() - fillStart) / 1000;

    // 2. Raw kafkajs consume of the same topic: no work (the baseline), then Avro decode only.
    // Wall time and this process's CPU from the first batch to the N-th event.
    const consumeAll = async (group: string, work: (value: Buffer | null) => void) => {
      const t = { first: 0, done: 0, count: 0, cpu0: process.cpuUsage(), cpuMs: 0 };
      const consumer = producerBus.kafka.consumer({
        groupId: group,
        sessionTimeout: 10_000,
        heartbeatInterval: 1000,
        maxBytesPerPartition: 1_048_576,
      });
      await consumer.connect();
      await consumer.subscribe({ topics: [T.events], fromBeginning: true });
      await new Promise<void>((resolve) => {
        void consumer.run({
          autoCommit: false,
          eachBatch: async ({ batch }) => {
            if (!t.first) {
              t.first = performance.now();
              t.cpu0 = process.cpuUsage();
            }
            for (const m of batch.messages) work(m.value);
            t.count += batch.messages.length;
            if (t.count >= N && !t.done) {
              t.done = performance.now();
              const c = process.cpuUsage(t.cpu0);
              t.cpuMs = (c.user + c.system) / 1000;
              resolve();
            }
          },
        });
      });
      await consumer.disconnect();
      return { rate: N / ((t.done - t.first) / 1000), cpuMsPer1k: t.cpuMs / (N / 1000) };
    };
    const raw = await consumeAll(`raw-${id}`, () => {});
    const rawDecode = await consumeAll(`raw-decode-${id}`, (v) => {
      if (v) eventCodec.decode(v);
    });
    const rawRate = raw.rate;
    const decodeRate = rawDecode.rate;

    // 3. The engine over the same topic, in this process or in ENGINE_PROCS processes.
    let engineRate: number;
    let engineCpuMsPer1k: number;
    let batchCount: number;
    let stopEngine: () => Promise<void>;
    if (ENGINE_PROCS === 1) {
      const engine = await startEngine({ prefix, redisPrefix, groupId });
      await engine.timed.finished;
      engineRate = N / ((engine.timed.t.done - engine.timed.t.first) / 1000);
      // CPU time of this process (the engine alone runs in it now): steadier than wall time
      // on a shared machine. Kafka's and Redis's own CPU are not in it.
      const cpu = process.cpuUsage(engine.timed.t.cpuAtFirst);
      engineCpuMsPer1k = (cpu.user + cpu.system) / 1000 / (N / 1000);
      batchCount = engine.timed.t.batches;
      stopEngine = () => engine.stop();
    } else {
      const workers = await startWorkers(ENGINE_PROCS, { prefix, redisPrefix, groupId });
      const atN = await workers.reachedN;
      engineRate = N / atN.seconds;
      engineCpuMsPer1k = atN.cpuMs / (N / 1000);
      batchCount = atN.batches;
      stopEngine = () => workers.stop();
    }
    const throughputSends = [...(await producerBus.endOffsets(T.sends)).values()].reduce(
      (a, b) => a + Number(b),
      0,
    );

    // The engine also consumes what it emitted (segment events): let it catch up first.
    for (let i = 0; i < 600; i++) {
      const ends = await producerBus.endOffsets(T.events);
      const committed = await producerBus.committedOffsets(groupId, T.events);
      if ([...ends].every(([p, end]) => committed.get(p) === end)) break;
      await sleep(100);
    }

    // 4. Paced latency: the known users go on (a failed payment sends at once) and new users
    // sign up (a welcome sends at once), one event in twenty from a new user.
    const ongoing = generateEvents({
      users: USERS,
      events: PACED_RATE * PACED_SECONDS,
      startTs: Date.now(),
      stepMs: 0,
      seed: 12,
      idPrefix: `p${id}`,
      alreadyRegistered: true,
    });
    const signups = generateEvents({
      users: 400,
      events: (PACED_RATE * PACED_SECONDS) / 20,
      startTs: Date.now(),
      stepMs: 0,
      seed: 13,
      idPrefix: `n${id}`,
      userPrefix: `new-${id}-`,
    });
    const paced = ongoing.map((e, i) => (i % 20 === 19 ? (signups[(i - 19) / 20] ?? e) : e));
    const producedAt = new Map<string, number>();
    const tick = 10;
    const perTick = (PACED_RATE * tick) / 1000;
    const pacedStart = performance.now();
    for (let i = 0; i < paced.length; i += perTick) {
      const due = pacedStart + (i / perTick) * tick;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      const chunk = paced
        .slice(i, i + perTick)
        .map((e) => ({ ...e, ts: Date.now(), receivedAt: Date.now() }));
      for (const e of chunk) producedAt.set(e.id, 0);
      void pub.publish(T.events, chunk.map(eventRecord));
    }
    const pacedSeconds = (performance.now() - pacedStart) / 1000;
    await sleep(2000);
    await stopEngine();

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
      engineProcesses: ENGINE_PROCS,
      rawConsumeCpuMsPer1kEvents: Number(raw.cpuMsPer1k.toFixed(2)),
      rawConsumeWithDecodeCpuMsPer1kEvents: Number(rawDecode.cpuMsPer1k.toFixed(2)),
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
        latencyMs: {
          p50: percentile(latencies, 50),
          p90: percentile(latencies, 90),
          p99: percentile(latencies, 99),
          max: latencies[latencies.length - 1] ?? NaN,
        },
        afterWarmupLatencyMs: {
          sends: steady.length,
          p50: percentile(steady, 50),
          p99: percentile(steady, 99),
          max: steady[steady.length - 1] ?? NaN,
        },
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
        `engine: ${N} events, ${USERS} users, ${PARTITIONS} partitions, rules ${config.engine.rulesDir}, ${ENGINE_PROCS} engine process(es)`,
        `  raw kafkajs consume   ${result.rawConsumeEventsPerSecond.toLocaleString('en')} events/s, CPU ${result.rawConsumeCpuMsPer1kEvents} ms per 1,000 events`,
        `  raw consume + decode  ${result.rawConsumeWithDecodeEventsPerSecond.toLocaleString('en')} events/s, CPU ${result.rawConsumeWithDecodeCpuMsPer1kEvents} ms per 1,000 events`,
        `  engine                ${result.engineEventsPerSecond.toLocaleString('en')} events/s (${(result.engineToRawRatio * 100).toFixed(1)}% of raw, target >= 50%) in ${batchCount} batches, ${throughputSends} sends`,
        `                        ${(result.engineToRawWithDecodeRatio * 100).toFixed(1)}% of raw + decode; engine CPU ${result.engineCpuMsPer1kEvents} ms per 1,000 events`,
        `  paced ${result.paced.achievedEventsPerSecond} events/s: event->send p50 ${result.paced.latencyMs.p50} ms, p99 ${result.paced.latencyMs.p99} ms (target <= 100), max ${result.paced.latencyMs.max} ms over ${latencies.length} sends`,
        `    after a 2 s warm-up: p50 ${result.paced.afterWarmupLatencyMs.p50} ms, p99 ${result.paced.afterWarmupLatencyMs.p99} ms over ${steady.length} sends`,
      ].join('\n'),
    );
    return result;
  } finally {
    for (const c of liveChildren) if (c.exitCode === null) c.kill();
    await producerBus.close();
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
  const w = process.argv.indexOf('--worker');
  if (w >= 0) await worker(process.argv[w + 1]!, process.argv[w + 2]!, process.argv[w + 3]!);
  else {
    await run();
    process.exit(0);
  }
}
