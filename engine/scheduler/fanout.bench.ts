// Fan-out throughput on the local Kafka + Redis: N users in the directory, one fixed-zone
// rule with one due occurrence, one scheduler instance; reports occurrence events per second.
// `npx tsx engine/scheduler/fanout.bench.ts [users]`.
import { randomUUID } from 'node:crypto';
import { loadConfig } from '../../platform/config.ts';
import { createLogger } from '../../platform/logger.ts';
import { KafkaBus } from '../../platform/kafka.ts';
import { createRedis } from '../../platform/redis.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import { compileRuleSet } from '../../rules/index.ts';
import { createRedisDirectory } from './directory.ts';
import type { DirectoryChange } from './plan.ts';
import { createRedisProgressStore } from './progress.ts';
import { createSchedulerService } from './scheduler-service.ts';

const USERS = Number(process.argv[2] ?? 100_000);
const run = randomUUID().slice(0, 8);
const config = loadConfig(undefined, {
  'kafka.topicPrefix': `bench.sched.${run}`,
  'redis.keyPrefix': `bench:sched:${run}:`,
  'log.level': 'warn',
});
const logger = createLogger({ level: 'warn', name: 'bench' });
const compiled = compileRuleSet([
  {
    file: 'r.json',
    content: {
      id: 'bench',
      category: 'marketing',
      trigger: { schedule: '* * * * *', timezone: 'UTC' },
      action: { send: { template: 't', channels: ['email'] } },
    },
  },
]);
if (!compiled.ok) throw new Error('rule does not compile');
const ruleSet = compiled.ruleSet;
const bus = KafkaBus.fromConfig(config, logger);
const { redis, keys } = createRedis(config.redis, logger);
const directory = createRedisDirectory(redis, keys);
const progress = createRedisProgressStore(redis, keys);
try {
  for (let i = 0; i < USERS; i += 5000) {
    const changes = new Map<string, DirectoryChange>();
    for (let j = i; j < Math.min(USERS, i + 5000); j++)
      changes.set(`user-${j}`, { op: 'set', zone: 'UTC' });
    await directory.apply(changes);
  }
  const now = Date.now();
  await progress.initSince('bench', now - 120_000);
  const registry = createMetricsRegistry({ defaults: false });
  const service = createSchedulerService(
    {
      topicPrefix: config.kafka.topicPrefix,
      groupId: `bench-${run}`,
      partitions: 6,
      catchUpMs: 60_000,
      pageSize: config.engine.schedulerPageSize,
      leaseMs: 30_000,
      tickMs: 3_600_000,
    },
    {
      bus,
      directory,
      progress,
      ruleSet: () => ruleSet,
      committedOffsets: (g, t) => bus.committedOffsets(g, t),
      logger,
      registry,
    },
  );
  await service.start();
  // The events topic is empty, so the directory is in sync at once; a 60 s window holds exactly one minute boundary.
  const target = Math.floor(now / 60_000) * 60_000;
  const t0 = performance.now();
  // The service's own ticker may hold the run; tick() then returns at once and the loop polls.
  for (let i = 0; i < 1200; i++) {
    await service.tick();
    const z = (await progress.load('bench')).zones.get('all:UTC');
    if (z && z.at === undefined && z.w >= target) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const seconds = (performance.now() - t0) / 1000;
  const published =
    (
      await registry.getSingleMetric('lifecycle_scheduler_events_published_total')?.get()
    )?.values.reduce((a, v) => a + v.value, 0) ?? 0;
  console.log(
    JSON.stringify({
      users: USERS,
      pageSize: config.engine.schedulerPageSize,
      published,
      seconds: Number(seconds.toFixed(2)),
      eventsPerSecond: Math.round(published / seconds),
    }),
  );
  await service.stop();
  const admin = bus.kafka.admin();
  await admin.connect();
  await admin.deleteTopics({
    topics: (await admin.listTopics()).filter((x) => x.startsWith(config.kafka.topicPrefix)),
  });
  await admin.disconnect();
} finally {
  await bus.close();
  const stale = await redis.keys(`${config.redis.keyPrefix}*`);
  if (stale.length) await redis.del(...stale);
  await redis.quit();
}
