// The whole-pipeline chaos run: the product's processes (ingest with CDC, two engines,
// delivery, sink, scheduler) on the shared local stack with this run's own topics, groups,
// Redis key prefix, ClickHouse database and PostgreSQL schema; a workload over HTTP and CDC;
// the fault injector; then, once everything has drained, the checks against a clean replay
// of the same events through the engine core (`simulate`). Shared services are restarted:
// a run must have the stack to itself.
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { loadConfig } from '../../platform/config.ts';
import { KafkaBus } from '../../platform/kafka.ts';
import { internalTopicSpecs } from '../../platform/bus.ts';
import { silentLogger } from '../../platform/logger.ts';
import { topics } from '../../platform/contracts.ts';
import { createKeySpace } from '../../platform/keys.ts';
import { decideDurability, probeRedis } from '../../platform/redis.ts';
import { createPreferencesStore } from '../../delivery/preferences/store.ts';
import {
  localConnectUrl,
  localSmtpApiUrl,
  localStackEnv,
  readStackEnv,
  REPO_ROOT,
} from '../support/stack-env.ts';
import { connectRequest } from '../support/connect.ts';
import { dropReplication, psql } from '../support/postgres.ts';
import { freePort } from '../support/ports.ts';
import { createSupervisor, type Supervisor } from './processes.ts';
import { startTcpProxy } from './tcp-proxy.ts';
import { createUsersTable, runWorkload } from './workload.ts';
import { createInjector, FAULT_KINDS, longPlan, shortPlan, type FaultKind } from './faults.ts';
import { checkRun, type CheckResult } from './checks.ts';
import { sleep, stream } from './random.ts';

export const CHAOS_RULES = path.join(import.meta.dirname, 'rules');

export interface ChaosOptions {
  long: boolean;
  seed: number;
  /** Faults of a long run (default 1,000; fewer only to try the long profile's mix). */
  faults?: number;
  /** Keep the run's topics, keys, database and schema for a look afterwards. */
  keep?: boolean;
  log?: (line: string) => void;
}

export interface ChaosReport extends CheckResult {
  seed: number;
  profile: 'short' | 'long';
  faults: Record<FaultKind, number>;
  /** Processes that exited without being killed, per process. */
  unplannedExits: Record<string, number>;
  /** Every fault injected, in order, with when and for how long. */
  faultLog: { kind: FaultKind; detail: string; at: string; ms: number }[];
  drainMs: number;
  drained: boolean;
  runMs: number;
  logDir: string;
  table: string;
}

/** The run's names, all derived from one tag ([a-z0-9_]). */
function namesFor(tag: string) {
  return {
    topicPrefix: `lcc.${tag}`,
    groupPrefix: `lcc-${tag}`,
    redisPrefix: `lcc:${tag}:`,
    clickhouseDatabase: `lc_chaos_${tag}`,
    schema: `chaos_${tag}`,
    slot: `chaos_${tag}`,
    cdcTopicPrefix: `cdc_chaos_${tag}`,
  };
}

export async function runChaos(opts: ChaosOptions): Promise<ChaosReport> {
  const log = opts.log ?? ((line: string) => console.log(`chaos: ${line}`));
  const profile = opts.long ? 'long' : 'short';
  const started = Date.now();
  const tag = `${(opts.seed >>> 0).toString(36)}_${Date.now().toString(36)}`;
  const names = namesFor(tag);
  const s = readStackEnv();
  const stackEnv = localStackEnv(s);
  const logDir = mkdtempSync(path.join(tmpdir(), `lc-chaos-${tag}-`));
  mkdirSync(logDir, { recursive: true });
  log(
    `seed ${opts.seed} (replay: npm run chaos -- ${opts.long ? '--long ' : ''}--seed ${opts.seed}); profile ${profile}; logs in ${logDir}`,
  );

  const redisUrl = stackEnv.LC_REDIS_URL!;
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null, lazyConnect: true });
  redis.on('error', () => undefined);
  await redis.connect();
  const durability = decideDurability(await probeRedis(redis), 'auto', 'test');

  const proxy = await startTcpProxy({
    targetHost: s.STACK_HOST ?? '127.0.0.1',
    targetPort: Number(s.SMTP_PORT),
    slowMs: 2000,
    random: stream(opts.seed, 'proxy'),
  });
  const ingestPort = await freePort();
  const writeKey = `chaos-${tag}`;
  const cdcTopic = `${names.cdcTopicPrefix}.${names.schema}.users`;
  const mappingFile = path.join(logDir, 'cdc-mapping.json');
  const example = JSON.parse(
    readFileSync(path.join(REPO_ROOT, 'ingestion/cdc-mapping.example.json'), 'utf8'),
  ) as { tables: Record<string, unknown> };
  writeFileSync(
    mappingFile,
    JSON.stringify({
      ...example,
      tables: { [`${names.schema}.users`]: example.tables['public.users'] },
    }),
  );
  const smtpApi = localSmtpApiUrl(s);
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '',
    NODE_ENV: 'test',
    LC_LOG_LEVEL: 'warn',
    ...stackEnv,
    ...(durability.problems.length > 0 ? { LC_REDIS_DURABILITY: 'none' } : {}),
    LC_TOPIC_PREFIX: names.topicPrefix,
    LC_KAFKA_PARTITIONS: '6',
    LC_REDIS_KEY_PREFIX: names.redisPrefix,
    LC_CLICKHOUSE_DATABASE: names.clickhouseDatabase,
    LC_ENGINE_GROUP: `${names.groupPrefix}-engine`,
    LC_DELIVERY_GROUP: `${names.groupPrefix}-delivery`,
    LC_SINK_GROUP: `${names.groupPrefix}-sink`,
    LC_SCHEDULER_GROUP: `${names.groupPrefix}-scheduler`,
    LC_RULES_DIR: CHAOS_RULES,
    LC_TEMPLATES_DIR: path.join(REPO_ROOT, 'templates'),
    LC_INGEST_PORT: String(ingestPort),
    LC_API_PORT: String(await freePort()),
    // The workload is the product's backend: its identifies set email and plan.
    LC_WRITE_KEYS: `chaos:${writeKey}:server`,
    LC_CDC_TOPICS: cdcTopic,
    LC_CDC_MAPPING_FILE: mappingFile,
    LC_SMTP_URLS: `smtp://127.0.0.1:${proxy.port}`,
    LC_SMTP_LOOKUP_URLS: `${smtpApi}/messages?messageId={messageId}`,
    LC_SMTP_LOOKUP_FOUND: '/messages',
    LC_EMAIL_FROM: 'Example <hello@example.com>',
    LC_QUIET_HOURS: '',
    LC_CAPS: 'email:2/10',
    LC_TIMER_POLL_MS: '100',
    LC_DELIVERY_LEASE_MS: '5000',
    LC_RETRY_BASE_MS: '500',
    LC_RETRY_MAX_MS: '5000',
    LC_BREAKER_COOLDOWN_MS: '3000',
    // A relay blackholed for a minute with retries every 5 s must not exhaust the attempts.
    LC_DELIVERY_MAX_ATTEMPTS: '60',
    LC_DELAY_POLL_MS: '200',
    LC_SCHEDULER_TICK_MS: '500',
    LC_SCHEDULER_LEASE_MS: '5000',
    KAFKAJS_NO_PARTITIONER_WARNING: '1',
  };
  const config = loadConfig(env);
  const t = topics(names.topicPrefix);
  const bus = KafkaBus.fromConfig(config, silentLogger());
  await bus.ensureTopics([...internalTopicSpecs(t, 6), { topic: cdcTopic, partitions: 1 }]);

  // The product database side: this run's table, connector, slot and publication.
  const connectUrl = localConnectUrl(s);
  await createUsersTable(config.postgres.url, names.schema);
  const connectorConfig = () => {
    const shipped = JSON.parse(
      readFileSync(path.join(REPO_ROOT, 'ingestion/debezium-connector.example.json'), 'utf8'),
    ) as { config: Record<string, string> };
    return {
      ...shipped.config,
      'database.hostname': s.STACK_HOST ?? '127.0.0.1',
      'database.port': s.POSTGRES_PORT ?? '5432',
      'database.user': s.POSTGRES_USER ?? 'postgres',
      'database.password': '',
      'database.dbname': s.POSTGRES_DB ?? 'postgres',
      'topic.prefix': names.cdcTopicPrefix,
      'table.include.list': `${names.schema}.users`,
      'slot.name': names.slot,
      'publication.name': names.slot,
    };
  };
  const createConnector = async () => {
    for (let i = 0; ; i++) {
      const res = await connectRequest(
        connectUrl,
        'PUT',
        `/connectors/${names.slot}/config`,
        connectorConfig(),
      ).catch((err: unknown) => ({ status: 0, json: String(err) }));
      if (res.status >= 200 && res.status < 300) return;
      if (i > 60)
        throw new Error(`cannot create the connector: ${res.status} ${JSON.stringify(res.json)}`);
      await sleep(1000);
    }
  };
  await createConnector();

  const keys = createKeySpace(names.redisPrefix);
  const preferences = createPreferencesStore({ redis, keys });
  const optIn = async (userId: string) => {
    const at = Date.now();
    for (;;) {
      try {
        await preferences.apply(
          userId,
          {
            records: [
              {
                category: 'marketing',
                channel: 'email',
                record: { granted: true, at, source: 'chaos' },
              },
            ],
          },
          { source: 'chaos', at },
        );
        return;
      } catch {
        await sleep(300); // Redis is restarting
      }
    }
  };

  const supervisor: Supervisor = createSupervisor({
    root: REPO_ROOT,
    logDir,
    env,
    log,
    members: [
      { name: 'ingest', role: 'ingest' },
      { name: 'engine-a', role: 'engine' },
      { name: 'engine-b', role: 'engine' },
      { name: 'delivery', role: 'delivery' },
      { name: 'sink', role: 'sink' },
      { name: 'scheduler', role: 'scheduler' },
    ],
  });
  let report: ChaosReport | undefined;
  try {
    for (const m of supervisor.members) m.start();
    const ingestUrl = `http://127.0.0.1:${ingestPort}`;
    for (let i = 0; ; i++) {
      const ok = await fetch(`${ingestUrl}/health`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) break;
      if (i > 240) throw new Error(`ingest did not answer on ${ingestUrl} (logs: ${logDir})`);
      await sleep(250);
    }
    log('processes up');

    const poisonedKeys: { key: string; topic: string }[] = [];
    const poison = async (round: number) => {
      const targets = [t.events, t.sends, t.deliveries, cdcTopic];
      for (const topic of targets) {
        const key = `poison-${tag}-${round}-${topic}`;
        poisonedKeys.push({ key, topic });
        for (;;) {
          try {
            await bus.publisher().publish(topic, [
              {
                key,
                value: Buffer.from(`\u0000\u00ffnot a record of ${topic} {`, 'utf8'),
                headers: {},
              },
            ]);
            break;
          } catch {
            await sleep(500); // the broker is restarting
          }
        }
      }
      return targets.length;
    };

    const plan = opts.long ? longPlan(opts.seed, opts.faults ?? 1000) : shortPlan(opts.seed, 5);
    let faultsDone = false;
    let faultsEnd = Infinity;
    const workload = runWorkload({
      seed: opts.seed,
      runTag: tag,
      ingestUrl: () => ingestUrl,
      writeKey,
      postgresUrl: config.postgres.url,
      schema: names.schema,
      // A long run lasts hours: a slower stream keeps the SMTP sink and the checks in bounds.
      sessions: opts.long ? 2 : 4,
      userPauseMs: opts.long ? 1000 : 0,
      cdcEvery: 4,
      optIn,
      done: () => faultsDone,
      deadline: () => (faultsDone ? faultsEnd + 120_000 : Infinity),
      log,
    });
    const injector = createInjector({
      seed: opts.seed,
      root: REPO_ROOT,
      supervisor,
      proxy,
      clickhouseDownMs: opts.long ? 60_000 : 15_000,
      smtpFaultMs: opts.long ? [3_000, 20_000] : [4_000, 8_000],
      gapMs: opts.long ? [200, 3_000] : [1_000, 4_000],
      poison,
      afterConnectRestart: createConnector,
      log,
    });
    // Let the workload run a little before the first fault.
    await sleep(3000);
    await injector.run(plan);
    faultsEnd = Date.now();
    faultsDone = true;
    log(`faults done (${injector.done.length}); waiting for the workload to finish`);
    await workload.finished;
    const drainStart = Date.now();
    const drained = await waitDrained({
      bus,
      redis,
      redisPrefix: names.redisPrefix,
      supervisor,
      lags: [
        [env.LC_ENGINE_GROUP!, t.events],
        [env.LC_SCHEDULER_GROUP!, t.events],
        [env.LC_DELIVERY_GROUP!, t.sends],
        [env.LC_SINK_GROUP!, t.events],
        [env.LC_SINK_GROUP!, t.sends],
        [env.LC_SINK_GROUP!, t.deliveries],
        [`${names.topicPrefix}-cdc`, cdcTopic],
      ],
      timeoutMs: opts.long ? 900_000 : 240_000,
      log,
    });
    const drainMs = Date.now() - drainStart;
    log(drained ? `drained in ${drainMs} ms` : `did not drain within ${drainMs} ms`);
    // Graceful stops: every process must finish in-flight work and exit 0.
    const exits = await Promise.all(
      supervisor.members.map(async (m) => [m.name, await m.stop(30_000)] as const),
    );

    const result = await checkRun({
      bus,
      redis,
      redisPrefix: names.redisPrefix,
      topics: t,
      cdcTopic,
      rulesDir: CHAOS_RULES,
      clickhouseUrl: config.clickhouse.url,
      clickhouseDatabase: names.clickhouseDatabase,
      smtpApiUrl: smtpApi,
      workload: workload.stats,
      poisoned: poisonedKeys,
      capPerDay: 2,
    });
    for (const [name, code] of exits)
      if (code !== 0)
        result.failures.push(`${name} did not exit cleanly on SIGTERM (exit code ${code})`);
    if (!drained) result.failures.push('the pipeline did not drain in time');
    const faults = Object.fromEntries(FAULT_KINDS.map((k) => [k, injector.count(k)])) as Record<
      FaultKind,
      number
    >;
    if (!opts.long)
      for (const k of FAULT_KINDS)
        if (faults[k] === 0) result.failures.push(`fault kind never injected: ${k}`);
    const unplannedExits = Object.fromEntries(
      supervisor.members.map((m) => [m.name, m.unplannedExits]),
    );
    report = {
      ...result,
      seed: opts.seed,
      profile,
      faults,
      unplannedExits,
      faultLog: injector.done.map((f) => ({ ...f, at: new Date(f.at).toISOString() })),
      drainMs,
      drained,
      runMs: Date.now() - started,
      logDir,
      table: '',
    };
    report.table = formatTable(report);
    return report;
  } finally {
    await supervisor.stopAll();
    await proxy.close();
    if (!opts.keep) {
      await connectRequest(connectUrl, 'DELETE', `/connectors/${names.slot}`).catch(
        () => undefined,
      );
      await dropReplication(config.postgres.url, names.slot, names.slot).catch((err: unknown) =>
        log(`could not drop the replication slot ${names.slot}: ${String(err)}`),
      );
      await psql(config.postgres.url, `DROP SCHEMA IF EXISTS ${names.schema} CASCADE`).catch(
        () => undefined,
      );
      await fetch(`${config.clickhouse.url}/`, {
        method: 'POST',
        body: `DROP DATABASE IF EXISTS ${names.clickhouseDatabase}`,
      }).catch(() => undefined);
      let cursor = '0';
      do {
        const [next, found] = await redis.scan(
          cursor,
          'MATCH',
          `${names.redisPrefix}*`,
          'COUNT',
          1000,
        );
        cursor = next;
        if (found.length > 0) await redis.del(...found);
      } while (cursor !== '0');
      const admin = bus.kafka.admin();
      await admin.connect();
      await admin.deleteTopics({ topics: [...Object.values(t), cdcTopic] }).catch(() => undefined);
      await admin.disconnect();
    }
    await bus.close();
    redis.disconnect();
  }
}

/** Waits until every group has consumed everything, no timer or delayed delivery is pending, and all processes run. */
async function waitDrained(o: {
  bus: KafkaBus;
  redis: Redis;
  redisPrefix: string;
  supervisor: Supervisor;
  lags: [group: string, topic: string][];
  timeoutMs: number;
  log: (line: string) => void;
}): Promise<boolean> {
  const end = Date.now() + o.timeoutMs;
  let stableSince: number | null = null;
  let lastSaid = 0;
  for (;;) {
    let what = '';
    try {
      for (const m of o.supervisor.members) if (!m.alive()) what += ` ${m.name} not running;`;
      for (const [group, topic] of o.lags) {
        const ends = await o.bus.endOffsets(topic);
        const committed = await o.bus.committedOffsets(group, topic);
        let lag = 0;
        for (const [p, high] of ends)
          lag += Number(high) - Math.max(0, Number(committed.get(p) ?? 0));
        if (lag > 0) what += ` ${group} lags ${lag} on ${topic};`;
      }
      let timers = 0;
      let cursor = '0';
      do {
        const [next, found] = await o.redis.scan(
          cursor,
          'MATCH',
          `${o.redisPrefix}{p*}:*:timers`,
          'COUNT',
          1000,
        );
        cursor = next;
        for (const k of found) timers += await o.redis.zcard(k);
      } while (cursor !== '0');
      if (timers > 0) what += ` ${timers} timers pending;`;
      const delayed = await o.redis.zcard(`${o.redisPrefix}{dlv-delay}:due`);
      if (delayed > 0) what += ` ${delayed} deliveries waiting in the delay queue;`;
    } catch (err) {
      what += ` probe failed: ${String(err)};`;
    }
    if (what === '') {
      stableSince ??= Date.now();
      if (Date.now() - stableSince >= 5000) return true;
    } else stableSince = null;
    if (Date.now() > end) {
      o.log(`not drained:${what}`);
      return false;
    }
    if (what !== '' && Date.now() - lastSaid > 15_000) {
      lastSaid = Date.now();
      o.log(`draining:${what}`);
    }
    await sleep(500);
  }
}

export function formatTable(r: ChaosReport): string {
  const rows: [string, string][] = [];
  for (const k of FAULT_KINDS) rows.push([`faults: ${k}`, String(r.faults[k])]);
  rows.push(['faults: total', String(Object.values(r.faults).reduce((a, b) => a + b, 0))]);
  rows.push(['events (distinct, HTTP + CDC)', String(r.events)]);
  rows.push(['sends (reference)', String(r.sends)]);
  rows.push(['emails expected', String(r.emailsExpected)]);
  rows.push(['emails arrived', String(r.emailsArrived)]);
  rows.push(['lost', String(r.lost)]);
  rows.push(['duplicated', String(r.duplicated)]);
  rows.push(['unexpected', String(r.unexpected)]);
  rows.push(['poison records dead-lettered', `${r.poisonDeadLettered}/${r.poisonRecords}`]);
  rows.push([
    'unplanned process exits',
    String(Object.values(r.unplannedExits).reduce((a, b) => a + b, 0)),
  ]);
  rows.push([
    'time to drain',
    `${(r.drainMs / 1000).toFixed(1)} s${r.drained ? '' : ' (did not drain)'}`,
  ]);
  rows.push(['run time', `${(r.runMs / 1000).toFixed(0)} s`]);
  rows.push(['seed', String(r.seed)]);
  const w = Math.max(...rows.map(([k]) => k.length));
  const v = Math.max(...rows.map(([, x]) => x.length));
  const line = `+${'-'.repeat(w + 2)}+${'-'.repeat(v + 2)}+`;
  return [
    line,
    ...rows.map(([k, x]) => `| ${k.padEnd(w)} | ${x.padStart(v)} |`),
    line,
    ...(r.failures.length > 0
      ? ['FAILED:', ...r.failures.map((f) => `  - ${f}`)]
      : ['OK: 0 lost, 0 duplicated']),
  ].join('\n');
}
