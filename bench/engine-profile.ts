// The engine's cost on a fixed workload (the benchmark's generated events and the example
// rules), for profiling with `node --import tsx --cpu-prof bench/engine-profile.ts`:
//   core:   decode + apply + serialise once per user per batch of 2,000 (no I/O at all);
//   memory: the engine service on the in-memory bus with in-memory stores;
//   kafka:  the engine service on the local Kafka and Redis (pre-filled topic), as in bench/engine.ts.
// Run: `npx tsx bench/engine-profile.ts [core|memory|kafka] [events] [fetch bytes per partition (kafka)]`.
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { loadConfig } from '../platform/config.ts';
import { KafkaBus } from '../platform/kafka.ts';
import { createKeySpace } from '../platform/keys.ts';
import type { Registry } from '../platform/metrics.ts';
import { createEngineService } from '../engine/runtime/engine-service.ts';
import { createRedisStateStore } from '../engine/runtime/redis-state.ts';
import { createRedisTimerStore } from '../engine/runtime/timers.ts';
import { createRedisContactIndex } from '../engine/runtime/contacts.ts';
import { loadRuleSet } from '../rules/index.ts';
import { InMemoryBus, internalTopicSpecs } from '../platform/bus.ts';
import { topics } from '../platform/contracts.ts';
import { SCHEMA_ID_HEADER } from '../platform/contracts.ts';
import { eventCodec } from '../platform/avro.ts';
import { createLogger } from '../platform/logger.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import { createMemoryEngine, wireCore } from '../engine/runtime/wiring.ts';
import { generateEvents } from '../test/support/engine-events.ts';
import { eventRecord } from '../test/support/engine-harness.ts';
import type { UserState } from '../engine/core/state.ts';

/** Until the engine has handled n events (applied, skipped, ignored or dead-lettered). */
async function waitHandled(registry: Registry, n: number): Promise<void> {
  for (;;) {
    const m = (await registry.getMetricsAsJSON()).find(
      (x) => x.name === 'lifecycle_consumer_records_total',
    );
    if (
      (m?.values ?? [])
        .filter((v) => v.labels.consumer === 'engine')
        .reduce((a, v) => a + v.value, 0) >= n
    )
      return;
    await new Promise((r) => setTimeout(r, 5));
  }
}

const ROOT = path.resolve(import.meta.dirname, '..');
const mode = process.argv[2] ?? 'core';
const N = Number(process.argv[3] ?? 100_000);
const USERS = 10_000;
const BATCH = 2000;

const loaded = await loadRuleSet(path.join(ROOT, 'rules/examples'));
if (!loaded.ok) throw new Error('example rules are invalid');
const ruleSet = loaded.ruleSet;
const events = generateEvents({
  users: USERS,
  events: N,
  startTs: Date.now() - 3_600_000,
  stepMs: 1,
  seed: 11,
  deleteShare: 0.01,
  idPrefix: 'p',
});
const records = events.map(eventRecord);

if (mode === 'core') {
  const { core, codec } = wireCore(() => ruleSet);
  const stored = new Map<string, string>();
  const t0 = performance.now();
  let sends = 0;
  for (let i = 0; i < records.length; i += BATCH) {
    const working = new Map<string, UserState | null>();
    for (const r of records.slice(i, i + BATCH)) {
      const e = eventCodec.decode(r.value, r.headers[SCHEMA_ID_HEADER]);
      let s = working.get(e.userId);
      if (s === undefined) {
        const text = stored.get(e.userId);
        s = text ? codec.deserialize(text) : null;
      }
      const out = core.apply(s, e, e.ts);
      sends += out.sends.length;
      working.set(e.userId, out.state);
    }
    for (const [u, s] of working) {
      if (s === null) stored.delete(u);
      else stored.set(u, codec.serialize(s));
    }
  }
  const secs = (performance.now() - t0) / 1000;
  console.log(
    `core: ${N} events in ${secs.toFixed(2)} s = ${Math.round(N / secs).toLocaleString('en')} events/s, ${sends} sends`,
  );
} else if (mode === 'kafka') {
  const config = loadConfig();
  const logger = createLogger({ level: 'warn', name: 'profile' });
  const id = randomUUID().slice(0, 8);
  const prefix = `profile.${id}`;
  const T = topics(prefix);
  const redis = new Redis(config.redis.url, {
    maxRetriesPerRequest: 3,
    enableAutoPipelining: true,
  });
  const fetchBytes = process.argv[4] ? Number(process.argv[4]) : undefined;
  const bus = KafkaBus.fromConfig(
    config,
    logger,
    fetchBytes ? { maxBytesPerPartition: fetchBytes } : {},
  );
  const keys = createKeySpace(`profile:${id}:`);
  try {
    await bus.ensureTopics(internalTopicSpecs(T, 6));
    const pub = bus.publisher();
    for (let i = 0; i < records.length; i += 5000)
      await pub.publish(T.events, records.slice(i, i + 5000));
    const registry = createMetricsRegistry({ defaults: false });
    const service = createEngineService(
      {
        topicPrefix: prefix,
        groupId: `engine-${id}`,
        timerPollMs: config.engine.timerPollMs,
        partitions: 6,
        ensureTopics: false,
      },
      {
        bus,
        state: createRedisStateStore({ redis, keys }, { eventsTopic: T.events }),
        timers: createRedisTimerStore({ redis, keys }, { eventsTopic: T.events }),
        contacts: createRedisContactIndex(
          { redis, keys },
          { eventsTopic: T.events, partitions: 6 },
        ),
        ...wireCore(() => ruleSet),
        logger,
        registry,
      },
    );
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    // Monotonic microseconds, the clock of .cpuprofile timestamps: to look at the engine's window only.
    const window0 = process.hrtime.bigint() / 1000n;
    await service.start();
    await waitHandled(registry, N);
    const secs = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    console.error(`profile window (µs): ${window0} ${process.hrtime.bigint() / 1000n}`);
    await service.stop();
    console.log(
      `kafka service: ${N} events in ${secs.toFixed(2)} s = ${Math.round(N / secs).toLocaleString('en')} events/s, CPU ${((cpu.user + cpu.system) / 1000 / (N / 1000)).toFixed(1)} ms per 1,000 events`,
    );
  } finally {
    await bus.close();
    const found = await redis.keys(`profile:${id}:*`);
    for (let i = 0; i < found.length; i += 1000) await redis.del(...found.slice(i, i + 1000));
    redis.disconnect();
    const admin = bus.kafka.admin();
    await admin.connect();
    await admin.deleteTopics({ topics: Object.values(T) }).catch(() => undefined);
    await admin.disconnect();
  }
  process.exit(0);
} else {
  const bus = new InMemoryBus(6);
  const T = topics('prof');
  await bus.ensureTopics(internalTopicSpecs(T, 6));
  await bus.publisher().publish(T.events, records);
  const registry = createMetricsRegistry({ defaults: false });
  const { service } = createMemoryEngine(
    {
      topicPrefix: 'prof',
      groupId: 'prof',
      timerPollMs: 60_000,
      partitions: 6,
      ensureTopics: false,
    },
    {
      bus,
      ruleSet: () => ruleSet,
      logger: createLogger({ level: 'warn', name: 'profile' }),
      registry,
    },
  );
  const t0 = performance.now();
  await service.start();
  await waitHandled(registry, N);
  const secs = (performance.now() - t0) / 1000;
  await service.stop();
  console.log(
    `memory service: ${N} events in ${secs.toFixed(2)} s = ${Math.round(N / secs).toLocaleString('en')} events/s`,
  );
}
