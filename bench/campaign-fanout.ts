// Benchmark: campaign fan-out through the real scheduler on the local stack (Kafka, Redis).
// A directory of N users (1,000,000 by default) is filled in pipelined batches; a campaign
// over a filter audience (the directory, paged by its 64 shards: the fastest audience the
// scheduler has) is written `scheduled` to run now, and the scheduler process code
// (`runScheduler`, what `lifecycle run scheduler` runs) fans it out. Measured: users/s from
// the campaign's write to the last `campaign.member` event acknowledged on the events topic
// (counted by its end offsets), the process CPU per user, and exactly one event per user with
// its deterministic id. Baseline in the same run: raw kafkajs produce of N pre-encoded records
// of the same size to a topic of the same partitions (idempotent, acks=all, one request in
// flight, as the product's publisher). Then a throttled campaign over an uploaded list of a
// smaller audience: its achieved rate over the steady part against the rate it sets.
// Run alone: npx tsx bench/campaign-fanout.ts [--users N] [--throttled-users N] [--rate R]
// (or LC_BENCH_USERS, LC_BENCH_THROTTLED_USERS, LC_BENCH_RATE); needs scripts/stack up.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Partitioners } from 'kafkajs';
import { encodeWithHeader, eventCodec } from '../platform/avro.ts';
import { loadConfig } from '../platform/config.ts';
import { SCHEMA_ID_HEADER, topics } from '../platform/contracts.ts';
import { KafkaBus } from '../platform/kafka.ts';
import { createLogger } from '../platform/logger.ts';
import { createRedis } from '../platform/redis.ts';
import {
  campaignMemberEvent,
  campaignMemberEventId,
  campaignRunId,
} from '../engine/core/campaign.ts';
import { createRedisAudienceLists } from '../engine/campaigns/audience.ts';
import type { Audience, Campaign } from '../engine/campaigns/model.ts';
import { createRedisDirectory } from '../engine/scheduler/directory.ts';
import type { DirectoryChange } from '../engine/scheduler/plan.ts';
import { runScheduler, type RunningScheduler } from '../engine/scheduler/main.ts';

const SELF = fileURLToPath(import.meta.url);
/** Target of the issue: members written into the events topic per second, unthrottled. */
const TARGET_USERS_PER_SEC = 20_000;
/** A throttled run's steady rate stays this close to the rate it sets. */
const TARGET_RATE_DEVIATION = 0.05;
/** Users per directory write, and writes in flight while filling. */
const FILL_CHUNK = 10_000;
const FILL_IN_FLIGHT = 4;
/** Records per raw produce request of the baseline (about 0.5 MB, under the publisher's 1 MB). */
const BASELINE_CHUNK = 2_000;
/** How often the events topic's end offsets are read while a campaign runs. */
const POLL_MS = 50;
/** The steady part of a throttled run: between these shares of its audience. */
const STEADY_FROM = 0.1;
const STEADY_TO = 0.9;

function option(name: string, env: string, fallback: number): number {
  const argv = process.argv;
  let raw: string | undefined;
  const i = argv.indexOf(`--${name}`);
  if (i >= 0) raw = argv[i + 1];
  const eq = argv.find((a) => a.startsWith(`--${name}=`));
  if (eq) raw = eq.slice(name.length + 3);
  raw ??= process.env[env];
  if (raw === undefined) return fallback;
  const n = Number(raw.replace(/_/g, ''));
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`--${name} (${env}) must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

const userId = (i: number) => `user-${String(i).padStart(7, '0')}`;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const round = (n: number, d = 0) => Number(n.toFixed(d));

function sum(offsets: Map<number, string>): number {
  let n = 0;
  for (const o of offsets.values()) n += Number(o);
  return n;
}

function campaignRecord(
  id: string,
  audience: Audience,
  perSecond: number | null,
  listSize: number,
): Omit<Campaign, 'revision'> {
  const now = new Date().toISOString();
  return {
    id,
    name: `bench ${id}`,
    state: 'scheduled',
    audience,
    list:
      audience.type === 'list'
        ? { rows: listSize, accepted: listSize, duplicates: 0, rejected: 0, uploadedAt: now }
        : null,
    message: { template: 'welcome', channels: ['email'] },
    schedule: { type: 'now' },
    throttle: perSecond === null ? null : { perSecond },
    createdAt: now,
    createdBy: 'bench',
    updatedAt: now,
    updatedBy: 'bench',
    scheduledAt: now,
    startedAt: null,
    endedAt: null,
  };
}

export async function run(): Promise<unknown> {
  const USERS = option('users', 'LC_BENCH_USERS', 1_000_000);
  const THROTTLED = Math.min(USERS, option('throttled-users', 'LC_BENCH_THROTTLED_USERS', 100_000));
  const RATE = option('rate', 'LC_BENCH_RATE', 5_000);
  const id = randomUUID().slice(0, 8);
  const prefix = `bench.cfan.${id}`;
  const redisPrefix = `bench:cfan:${id}:`;
  // No rule files: a schedule rule of the example rules must not fan out beside the campaigns.
  const rulesDir = mkdtempSync(path.join(tmpdir(), 'lc-bench-cfan-'));
  const config = loadConfig({
    ...process.env,
    LC_TOPIC_PREFIX: prefix,
    LC_REDIS_KEY_PREFIX: redisPrefix,
    LC_SCHEDULER_GROUP: `bench-cfan-${id}-scheduler`,
    LC_RULES_DIR: rulesDir,
    LC_CAMPAIGN_RATE: '0',
    LC_SCHEDULER_TICK_MS: '100',
    LC_LOG_LEVEL: 'warn',
  });
  const T = topics(prefix);
  const baselineTopic = `${prefix}.baseline`;
  const partitions = config.kafka.partitions;
  const logger = createLogger({ level: 'warn', name: 'bench-campaign-fanout' });
  const bus = KafkaBus.fromConfig(config, logger);
  const { redis, keys } = createRedis(config.redis, logger);
  const admin = bus.kafka.admin();
  await admin.connect();
  let scheduler: RunningScheduler | null = null;
  const groups: string[] = [config.engine.schedulerGroup];
  try {
    // 1. The directory, pipelined: FILL_IN_FLIGHT writes of FILL_CHUNK users at once.
    const directory = createRedisDirectory(redis, keys);
    const fillStart = performance.now();
    for (let i = 0; i < USERS; i += FILL_CHUNK * FILL_IN_FLIGHT) {
      const writes: Promise<number>[] = [];
      for (let k = 0; k < FILL_IN_FLIGHT; k++) {
        const from = i + k * FILL_CHUNK;
        if (from >= USERS) break;
        const changes = new Map<string, DirectoryChange>();
        for (let j = from; j < Math.min(USERS, from + FILL_CHUNK); j++)
          changes.set(userId(j), { op: 'set', zone: 'UTC' });
        writes.push(directory.apply(changes));
      }
      await Promise.all(writes);
    }
    const fillSeconds = (performance.now() - fillStart) / 1000;
    const filed = await directory.count(null);
    if (filed !== USERS) throw new Error(`the directory holds ${filed} users, not ${USERS}`);
    console.log(
      `directory: ${USERS} users filed in ${fillSeconds.toFixed(1)} s (${Math.round(USERS / fillSeconds)}/s)`,
    );

    // 2. The scheduler, as `lifecycle run scheduler` starts it; it creates the topics.
    scheduler = await runScheduler(config, logger);
    const sched = scheduler;
    const events = () => bus.endOffsets(T.events).then(sum);

    /** Writes the campaign `scheduled` to run now; resolves when its members are all on the topic. */
    async function fanOut(
      campaignId: string,
      audience: Audience,
      perSecond: number | null,
      expected: number,
    ) {
      const before = await events();
      const samples: { t: number; n: number }[] = [];
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      await sched.campaigns.change(campaignId, () =>
        campaignRecord(campaignId, audience, perSecond, expected),
      );
      const deadline = t0 + Math.max(600_000, (expected / (perSecond ?? 2_000)) * 3_000);
      let n = 0;
      for (;;) {
        n = (await events()) - before;
        const t = performance.now();
        samples.push({ t, n });
        if (n >= expected) break;
        if (t > deadline)
          throw new Error(
            `campaign ${campaignId}: ${n} of ${expected} member events after ${Math.round((t - t0) / 1000)} s`,
          );
        await sleep(POLL_MS);
      }
      const seconds = (samples[samples.length - 1]!.t - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      // The scheduler marks the campaign completed after its last page.
      let completed = false;
      for (let i = 0; i < 100 && !completed; i++) {
        completed = sched.campaigns.get(campaignId)?.state === 'completed';
        if (!completed) await sleep(100);
      }
      const first = samples.find((s) => s.n > 0)!;
      return {
        seconds,
        samples,
        t0,
        firstEventAfterSeconds: (first.t - t0) / 1000,
        cpuMicros: cpu.user + cpu.system,
        completed,
        startedAt: sched.campaigns.get(campaignId)?.startedAt ?? null,
        extra: (await events()) - before - expected,
      };
    }

    // 3. The unthrottled campaign over the directory.
    const mainId = `bench-${id}`;
    const main = await fanOut(
      mainId,
      {
        type: 'filter',
        conditions: { all: [{ fact: 'user', path: '$.plan', operator: 'equal', value: 'pro' }] },
      },
      null,
      USERS,
    );
    const usersPerSec = USERS / main.seconds;
    console.log(
      `campaign fan-out:   ${Math.round(usersPerSec)} users/s (${USERS} users in ${main.seconds.toFixed(1)} s from the campaign's write, first member after ${main.firstEventAfterSeconds.toFixed(2)} s), process CPU ${(main.cpuMicros / USERS).toFixed(1)} µs/user`,
    );

    // 4. Exactly one member event per user, with the campaign's deterministic id.
    const runId = campaignRunId(Date.parse(sched.campaigns.get(mainId)!.scheduledAt!), null);
    const verify = await verifyMembers(
      bus,
      T.events,
      `bench-cfan-${id}-verify`,
      mainId,
      runId,
      USERS,
    );
    groups.push(`bench-cfan-${id}-verify`);
    console.log(
      `member events:      ${verify.records} on the topic, ${verify.distinctUsers} distinct users, ${verify.wrongIds} ids not the deterministic one, ${verify.unknownUsers} unknown users`,
    );

    // 5. Baseline: raw kafkajs produce of as many records of the same size.
    await bus.ensureTopics([{ topic: baselineTopic, partitions }]);
    const at = Date.now();
    const sample = campaignMemberEvent(mainId, runId, userId(0), at, at);
    const value = encodeWithHeader(eventCodec, sample).value;
    const producer = bus.kafka.producer({
      createPartitioner: Partitioners.DefaultPartitioner,
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await producer.connect();
    let baselineSeconds: number;
    try {
      const b0 = performance.now();
      for (let i = 0; i < USERS; i += BASELINE_CHUNK) {
        const messages = [];
        for (let j = i; j < Math.min(USERS, i + BASELINE_CHUNK); j++)
          messages.push({
            key: userId(j),
            value,
            headers: { [SCHEMA_ID_HEADER]: eventCodec.schemaId },
          });
        await producer.send({ topic: baselineTopic, acks: -1, messages });
      }
      baselineSeconds = (performance.now() - b0) / 1000;
    } finally {
      await producer.disconnect();
    }
    const baselineRecords = sum(await bus.endOffsets(baselineTopic));
    const baselinePerSec = USERS / baselineSeconds;
    console.log(
      `raw kafkajs produce: ${Math.round(baselinePerSec)} records/s (${baselineRecords} records of ${value.length} bytes in ${baselineSeconds.toFixed(1)} s)`,
    );

    // 6. The throttled campaign over an uploaded list of the first THROTTLED users.
    const throttledId = `bench-${id}-throttled`;
    const lists = createRedisAudienceLists({ redis, keys });
    await lists.replace(
      throttledId,
      Array.from({ length: THROTTLED }, (_, i) => userId(i)),
    );
    const thr = await fanOut(throttledId, { type: 'list' }, RATE, THROTTLED);
    const from = thr.samples.find((s) => s.n >= THROTTLED * STEADY_FROM)!;
    const to = thr.samples.find((s) => s.n >= THROTTLED * STEADY_TO)!;
    const steadyRate = ((to.n - from.n) / (to.t - from.t)) * 1000;
    const deviation = steadyRate / RATE - 1;
    console.log(
      `throttled campaign: ${Math.round(steadyRate)} users/s over the steady part (${Math.round(STEADY_FROM * 100)}-${Math.round(STEADY_TO * 100)}% of ${THROTTLED} users) at a set rate of ${RATE}/s: ${(deviation * 100).toFixed(2)}%; whole run ${Math.round(THROTTLED / thr.seconds)} users/s`,
    );

    const exact =
      verify.records === USERS &&
      verify.distinctUsers === USERS &&
      verify.wrongIds === 0 &&
      verify.unknownUsers === 0 &&
      main.extra === 0;
    const result = {
      at: new Date().toISOString(),
      machine: { cores: cpus().length, loadAverage: loadavg().map((l) => round(l, 2)) },
      users: USERS,
      partitions,
      pageSize: config.engine.schedulerPageSize,
      audience: 'filter (the directory, 64 shards)',
      directoryFillSeconds: round(fillSeconds, 2),
      directoryFillUsersPerSec: Math.round(USERS / fillSeconds),
      campaign: {
        seconds: round(main.seconds, 2),
        usersPerSec: Math.round(usersPerSec),
        firstMemberAfterSeconds: round(main.firstEventAfterSeconds, 2),
        usersPerSecFromFirstMember: Math.round(
          USERS / (main.seconds - main.firstEventAfterSeconds),
        ),
        processCpuMicrosPerUser: round(main.cpuMicros / USERS, 2),
        completed: main.completed,
        memberEvents: verify.records,
        distinctUsers: verify.distinctUsers,
        wrongIds: verify.wrongIds,
        unknownUsers: verify.unknownUsers,
        exactlyOnePerUser: exact,
      },
      baseline: {
        what: 'raw kafkajs produce, idempotent, acks=all, one request in flight',
        recordBytes: value.length,
        recordsPerBatch: BASELINE_CHUNK,
        records: baselineRecords,
        seconds: round(baselineSeconds, 2),
        recordsPerSec: Math.round(baselinePerSec),
      },
      ratio: round(usersPerSec / baselinePerSec, 3),
      throttled: {
        users: THROTTLED,
        audience: 'list',
        setRate: RATE,
        steadyUsersPerSec: Math.round(steadyRate),
        steadyShare: [STEADY_FROM, STEADY_TO],
        deviation: round(deviation, 4),
        wholeRunUsersPerSec: Math.round(THROTTLED / thr.seconds),
        seconds: round(thr.seconds, 2),
        completed: thr.completed,
        extraEvents: thr.extra,
      },
      targets: {
        usersPerSec: TARGET_USERS_PER_SEC,
        usersPerSecMet: usersPerSec >= TARGET_USERS_PER_SEC,
        exactlyOnePerUserMet: exact,
        throttleDeviation: TARGET_RATE_DEVIATION,
        throttleMet: Math.abs(deviation) <= TARGET_RATE_DEVIATION && thr.extra === 0,
      },
    };
    const yes = (b: boolean) => (b ? 'met' : 'NOT met');
    console.log(
      `targets: ≥ ${TARGET_USERS_PER_SEC} users/s ${yes(result.targets.usersPerSecMet)}; exactly one member event per user ${yes(exact)}; throttle within ${TARGET_RATE_DEVIATION * 100}% ${yes(result.targets.throttleMet)}; ratio to raw produce ${result.ratio}`,
    );
    const dir = path.join(path.dirname(SELF), 'results');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'campaign-fanout.json'), JSON.stringify(result, null, 2));
    return result;
  } finally {
    await scheduler?.stop().catch(() => undefined);
    const own = (await admin.listTopics()).filter((t) => t.startsWith(`${prefix}.`));
    if (own.length > 0) await admin.deleteTopics({ topics: own }).catch(() => undefined);
    // The campaign view's group is named after its topic.
    const views = await admin
      .listGroups()
      .then((l) => l.groups.map((g) => g.groupId).filter((g) => g.startsWith(`${prefix}.`)))
      .catch(() => []);
    await admin.deleteGroups([...groups, ...views]).catch(() => undefined);
    await admin.disconnect();
    await bus.close();
    for (let cursor = '0'; ;) {
      const [next, found] = await redis.scan(cursor, 'MATCH', `${redisPrefix}*`, 'COUNT', 1000);
      if (found.length > 0) await redis.del(...found);
      cursor = next;
      if (cursor === '0') break;
    }
    await redis.quit();
    rmSync(rulesDir, { recursive: true, force: true });
  }
}

/** Reads the events topic once: its records' keys, and each record's id against the deterministic one. */
async function verifyMembers(
  bus: KafkaBus,
  topic: string,
  groupId: string,
  campaignId: string,
  runId: string,
  expected: number,
) {
  const seen = new Set<string>();
  let records = 0;
  let wrongIds = 0;
  let unknownUsers = 0;
  const consumer = bus.kafka.consumer({ groupId, maxBytesPerPartition: 4 * 1024 * 1024 });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    let resolveDone!: () => void;
    const done = new Promise<void>((r) => (resolveDone = r));
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          records++;
          const key = m.key?.toString() ?? '';
          if (!/^user-\d{7}$/.test(key) || Number(key.slice(5)) >= expected) unknownUsers++;
          seen.add(key);
          const event = eventCodec.decode(m.value!, m.headers?.[SCHEMA_ID_HEADER]?.toString());
          if (event.id !== campaignMemberEventId(campaignId, runId, key) || event.userId !== key)
            wrongIds++;
        }
        if (records >= expected) resolveDone();
      },
    });
    const timeout = setTimeout(resolveDone, 300_000);
    await done;
    clearTimeout(timeout);
    // Anything beyond `expected` already fetched is counted; a short wait lets a late extra show.
    await sleep(1000);
  } finally {
    await consumer.disconnect();
  }
  return { records, distinctUsers: seen.size, wrongIds, unknownUsers };
}

if (process.argv[1] === SELF) await run();
