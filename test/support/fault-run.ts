// A whole-pipeline run for the fault tests (test/faults/): the engine and delivery as child
// processes (as `lifecycle run engine|delivery` would run them), fed a known stream of events
// with once-per-user rules, delayed sends, a holdout and unsubscribes, sending email into a
// private SMTP sink. The expected outcome comes from the same engine run uninterrupted over
// the same events (referenceSends), less holdouts and the marketing sends of users who
// unsubscribed before them. After the run settles, `verdict()` counts every email the sink
// received by Message-ID against it: missing, unexpected and duplicated.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path, { join } from 'node:path';
import { Redis } from 'ioredis';
import type { SendCommand, NormalisedEvent } from '../../platform/contracts.ts';
import { internalTopicSpecs } from '../../platform/bus.ts';
import { KafkaBus } from '../../platform/kafka.ts';
import { createKeySpace } from '../../platform/keys.ts';
import { createLogger } from '../../platform/logger.ts';
import { createPreferencesStore } from '../../delivery/preferences/store.ts';
import { messageIdFor } from '../../delivery/providers/email.ts';
import type { SmtpSink } from '../../devtools/smtp-sink.ts';
import { startSink, stopSink } from './delivery-harness.ts';
import { generateEvents } from './engine-events.ts';
import {
  compareSends,
  decodeSends,
  delayedRules,
  engineEnv,
  eventRecord,
  namesOf,
  readTopic,
  referenceSends,
  ROOT,
  sleep,
  waitDrained,
} from './engine-harness.ts';
import { isolate } from './isolation.ts';

export const FAULT_RULES = path.join(import.meta.dirname, 'fault-rules');
const PARTITIONS = 6;
const FROM_DOMAIN = 'example.com';

export interface FaultRunOptions {
  label: string;
  /** Redis of the run (default: the stack's, under the run's own key prefix). */
  redisUrl?: string;
  /** Kafka of the run (default: the stack's, under the run's own topic prefix). */
  kafkaBrokers?: string;
  /** Extra variables of both processes (LC_REDIS_DURABILITY=none for a Redis that cannot promise). */
  env?: Record<string, string>;
  users?: number;
  events?: number;
  /** Events per publish, and the pause between publishes: the stream's length in time. */
  chunk?: number;
  pauseMs?: number;
  /** Share of users who unsubscribe from everything right before they register. */
  unsubscribeShare?: number;
}

export interface Verdict {
  expected: number;
  received: number;
  distinct: number;
  missing: string[];
  unexpected: string[];
  duplicated: string[];
  /** The sends topic against the reference (duplicate records are allowed there). */
  sends: ReturnType<typeof compareSends>;
  holdouts: number;
  unsubscribed: number;
}

export interface ServiceProcess {
  child: ChildProcess;
  exited: Promise<number | null>;
  log: string;
}

export interface FaultRun {
  id: string;
  env: Record<string, string>;
  bus: KafkaBus;
  redis: Redis;
  sink: SmtpSink & { dir: string };
  logDir: string;
  events: NormalisedEvent[];
  startEngine(): ServiceProcess;
  startDelivery(): ServiceProcess;
  /**
   * Publishes the events in chunks (retrying while Kafka is away); each user of the
   * unsubscribe share unsubscribes, acknowledged, right before the chunk holding their
   * registration. `onUnsubscribed` runs after each acknowledgement.
   */
  produce(hooks?: { onUnsubscribed?: () => Promise<void> | void }): Promise<void>;
  /**
   * Waits for the engine to drain and every expected email to arrive, then a little more.
   * Resolves with the reason the engine did not drain in time, or null when it did.
   */
  settle(timeoutMs: number): Promise<string | null>;
  verdict(): Promise<Verdict>;
  close(): Promise<void>;
}

function spawnService(
  entry: string,
  env: Record<string, string>,
  logDir: string,
  name: string,
): ServiceProcess {
  const child = spawn(process.execPath, ['--import', 'tsx/esm', path.join(ROOT, entry)], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = join(logDir, `${name}.log`);
  const out = createWriteStream(log, { flags: 'a' });
  child.stdout!.pipe(out);
  child.stderr!.pipe(out);
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );
  return { child, exited, log };
}

export async function createFaultRun(o: FaultRunOptions): Promise<FaultRun> {
  const iso = isolate(o.label);
  const env: Record<string, string> = {
    ...iso.env,
    ...(o.redisUrl ? { LC_REDIS_URL: o.redisUrl } : {}),
    ...(o.kafkaBrokers ? { LC_KAFKA_BROKERS: o.kafkaBrokers } : {}),
    ...o.env,
  };
  const config = iso.config(env);
  const names = namesOf(config);
  const logger = createLogger({ level: 'error', name: o.label });
  const bus = KafkaBus.fromConfig(config, logger);
  await bus.ensureTopics(internalTopicSpecs(names.topics, PARTITIONS));
  const redis = new Redis(config.redis.url, { maxRetriesPerRequest: 20 });
  redis.on('error', () => undefined);
  const sink = await startSink({ http: true });
  const logDir = await mkdtemp(join(tmpdir(), `lc-${o.label}-`));
  const serviceEnv = engineEnv(
    { ...(process.env as Record<string, string>), ...env },
    {
      LC_RULES_DIR: FAULT_RULES,
      LC_KAFKA_PARTITIONS: String(PARTITIONS),
      LC_SMTP_URLS: `smtp://127.0.0.1:${sink.port}`,
      LC_SMTP_LOOKUP_URLS: `http://127.0.0.1:${sink.httpPort}/messages?messageId={messageId}`,
      LC_SMTP_LOOKUP_FOUND: '/messages',
      LC_EMAIL_FROM: `Example <hello@${FROM_DOMAIN}>`,
      LC_QUIET_HOURS: '',
      LC_CAPS: 'email:none',
      LC_DELIVERY_LEASE_MS: '3000',
      LC_SMTP_SEND_TIMEOUT_MS: '2500',
      LC_DELIVERY_CONCURRENCY: '8',
      LC_DELAY_POLL_MS: '200',
      LC_RETRY_BASE_MS: '300',
      LC_RETRY_MAX_MS: '3000',
      LC_DELIVERY_MAX_ATTEMPTS: '20',
      KAFKAJS_NO_PARTITIONER_WARNING: '1',
    },
  );
  const events = generateEvents({
    users: o.users ?? 150,
    events: o.events ?? 1500,
    startTs: Date.now(),
    stepMs: 10,
    seed: 7,
    deleteShare: 0,
    idPrefix: randomUUID().slice(0, 6),
    userPrefix: `${iso.id}-u`,
  });
  // Every user has opted in to marketing email before the stream starts; the unsubscribe
  // share withdraws it all, right before registering (a lost unsubscribe sends their nudge).
  const users = [...new Set(events.map((e) => e.userId))];
  const share = o.unsubscribeShare ?? 0.2;
  const unsubscribing = new Set(users.filter((_, i) => i % Math.round(1 / share) === 0));
  const preferences = createPreferencesStore({
    redis,
    keys: createKeySpace(config.redis.keyPrefix),
  });
  const unsubscribed = new Set<string>();
  const retrying = async <T>(what: () => Promise<T>): Promise<T> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await what();
      } catch (err) {
        if (attempt >= 120) throw err;
        await sleep(250);
      }
    }
  };
  for (const u of users)
    await preferences.apply(
      u,
      {
        records: [
          {
            category: 'marketing',
            channel: 'email',
            record: { granted: true, at: 0, source: 'test' },
          },
        ],
      },
      { source: 'test', at: Date.now() },
    );
  let reference: SendCommand[] | null = null;
  const expectedIds = async () => {
    reference ??= await referenceSends(events, PARTITIONS, FAULT_RULES);
    const expected = reference.filter(
      (s) =>
        !s.holdout &&
        !(s.category === 'marketing' && unsubscribed.has(s.userId)) &&
        s.channels.includes('email'),
    );
    return {
      ids: new Set(expected.map((s) => messageIdFor(s.sendId, FROM_DOMAIN).slice(1, -1))),
      reference,
    };
  };
  const children: ServiceProcess[] = [];

  return {
    id: iso.id,
    env: serviceEnv,
    bus,
    redis,
    sink,
    logDir,
    events,
    startEngine() {
      const p = spawnService('engine/runtime/main.ts', serviceEnv, logDir, 'engine');
      children.push(p);
      return p;
    },
    startDelivery() {
      const p = spawnService('delivery/pipeline/main.ts', serviceEnv, logDir, 'delivery');
      children.push(p);
      return p;
    },
    async produce(hooks = {}) {
      const publisher = bus.publisher();
      const chunk = o.chunk ?? 20;
      for (let i = 0; i < events.length; i += chunk) {
        const slice = events.slice(i, i + chunk);
        for (const e of slice) {
          if (e.type !== 'user_registered' || !unsubscribing.has(e.userId)) continue;
          // The unsubscribe is answered once it is durable; from then on it must hold.
          await retrying(() =>
            preferences.apply(
              e.userId,
              { unsubscribedAll: true, records: [] },
              {
                source: 'test',
                at: Date.now(),
              },
            ),
          );
          unsubscribed.add(e.userId);
          await hooks.onUnsubscribed?.();
        }
        for (let attempt = 1; ; attempt++) {
          try {
            await publisher.publish(names.topics.events, slice.map(eventRecord));
            break;
          } catch (err) {
            // Kafka may be away on purpose (kafkajs then gives up as non-retriable): ask again.
            if (attempt >= 240) throw err;
            await sleep(250);
          }
        }
        await sleep(o.pauseMs ?? 250);
      }
    },
    async settle(timeoutMs) {
      const end = Date.now() + timeoutMs;
      let stuck: string | null = null;
      try {
        await waitDrained({
          bus,
          redis,
          redisPrefix: names.redisPrefix,
          groupId: names.groupId,
          eventsTopic: names.topics.events,
          timeoutMs,
        });
      } catch (err) {
        stuck = (err as Error).message;
      }
      const { ids } = await expectedIds();
      while (Date.now() < end) {
        const got = new Set(sink.list().map((m) => m.messageId));
        if ([...ids].every((id) => got.has(id))) break;
        await sleep(250);
      }
      // Time for a straggler or a second copy to arrive before counting.
      await sleep(3000);
      return stuck;
    },
    async verdict() {
      const { ids, reference } = await expectedIds();
      const counts = new Map<string, number>();
      for (const m of sink.list())
        counts.set(m.messageId ?? '', (counts.get(m.messageId ?? '') ?? 0) + 1);
      const sends = decodeSends(await readTopic(bus.kafka, names.topics.sends));
      return {
        expected: ids.size,
        received: sink.list().length,
        distinct: counts.size,
        missing: [...ids].filter((id) => !counts.has(id)).sort(),
        unexpected: [...counts.keys()].filter((id) => !ids.has(id)).sort(),
        duplicated: [...counts]
          .filter(([, n]) => n > 1)
          .map(([id]) => id)
          .sort(),
        sends: compareSends(sends, reference, await delayedRules(FAULT_RULES)),
        holdouts: reference.filter((s) => s.holdout).length,
        unsubscribed: unsubscribed.size,
      };
    },
    async close() {
      for (const c of children)
        if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
      await Promise.all(children.map((c) => c.exited));
      await bus.close().catch(() => undefined);
      const keys = await redis.keys(`${config.redis.keyPrefix}*`).catch(() => [] as string[]);
      if (keys.length) await redis.del(...keys).catch(() => undefined);
      redis.disconnect();
      await stopSink(sink);
    },
  };
}
