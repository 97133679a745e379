// Helpers for the runtime's integration tests and benchmark against the real Kafka and
// Redis: unique names, producing events, reading a whole topic back, waiting for the
// engine to drain, and spawning the engine as a separate process that can be SIGKILLed.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { Kafka } from 'kafkajs';
import type { Redis } from 'ioredis';
import { InMemoryBus } from '../../platform/bus.ts';
import type { Config } from '../../platform/config.ts';
import {
  topics,
  SCHEMA_ID_HEADER,
  type NormalisedEvent,
  type SendCommand,
} from '../../platform/contracts.ts';
import { encodeWithHeader, eventCodec, sendCodec } from '../../platform/avro.ts';
import type { KafkaBus } from '../../platform/kafka.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import { loadRuleSet } from '../../rules/index.ts';
import { createMemoryEngine } from '../../engine/runtime/wiring.ts';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const TEST_RULES = path.join(import.meta.dirname, 'engine-rules');

/** Topic prefix, engine group and Redis key prefix of one test or benchmark run. */
export interface RunNames {
  prefix: string;
  groupId: string;
  redisPrefix: string;
  topics: ReturnType<typeof topics>;
}

export function uniqueNames(label: string): RunNames {
  const id = `${label}-${randomUUID().slice(0, 8)}`;
  return {
    prefix: `t.${id}`,
    groupId: `engine-${id}`,
    redisPrefix: `t:${id}:`,
    topics: topics(`t.${id}`),
  };
}

/** The names of a test's isolation (test/support/isolation.ts) or of any config. */
export function namesOf(config: Readonly<Config>): RunNames {
  return {
    prefix: config.kafka.topicPrefix,
    groupId: config.engine.groupId,
    redisPrefix: config.redis.keyPrefix,
    topics: topics(config.kafka.topicPrefix),
  };
}

export function eventRecord(e: NormalisedEvent) {
  return { key: e.userId, ...encodeWithHeader(eventCodec, e) };
}

export interface TopicRecord {
  partition: number;
  offset: string;
  key: string | null;
  value: Buffer | null;
  headers: Record<string, string>;
  timestamp: number;
}

/** Every record of a topic up to its current end, read with a throwaway consumer group. */
export async function readTopic(
  kafka: Kafka,
  topic: string,
  timeoutMs = 30_000,
): Promise<TopicRecord[]> {
  const admin = kafka.admin();
  await admin.connect();
  const ends = new Map(
    (await admin.fetchTopicOffsets(topic)).map((o) => [o.partition, BigInt(o.high)]),
  );
  await admin.disconnect();
  const remaining = new Set([...ends].filter(([, high]) => high > 0n).map(([p]) => p));
  const out: TopicRecord[] = [];
  if (remaining.size === 0) return out;
  const consumer = kafka.consumer({
    groupId: `reader-${randomUUID()}`,
    sessionTimeout: 10_000,
    heartbeatInterval: 1000,
  });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  await consumer.run({
    eachBatch: async ({ batch }) => {
      for (const m of batch.messages) {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(m.headers ?? {}))
          if (v !== undefined) headers[k] = String(Array.isArray(v) ? v[0] : v);
        out.push({
          partition: batch.partition,
          offset: m.offset,
          key: m.key?.toString() ?? null,
          value: m.value,
          headers,
          timestamp: Number(m.timestamp),
        });
        if (BigInt(m.offset) + 1n >= ends.get(batch.partition)!) remaining.delete(batch.partition);
      }
      if (remaining.size === 0) done();
    },
  });
  const timeout = new Promise<void>((_, reject) =>
    setTimeout(() => reject(new Error(`reading ${topic} timed out`)), timeoutMs).unref(),
  );
  try {
    await Promise.race([finished, timeout]);
  } finally {
    await consumer.disconnect();
  }
  return out;
}

export function decodeSends(records: TopicRecord[]): SendCommand[] {
  return records.map((r) => sendCodec.decode(r.value!, r.headers[SCHEMA_ID_HEADER]));
}

/** Waits until the group has committed everything on the events topic and no timer is pending. */
export async function waitDrained(o: {
  bus: KafkaBus;
  redis: Redis;
  redisPrefix: string;
  groupId: string;
  eventsTopic: string;
  timeoutMs: number;
  stableMs?: number;
}): Promise<void> {
  const end = Date.now() + o.timeoutMs;
  let stableSince: number | null = null;
  for (;;) {
    const ends = await o.bus.endOffsets(o.eventsTopic);
    const committed = await o.bus.committedOffsets(o.groupId, o.eventsTopic);
    const lag = [...ends].reduce(
      (acc, [p, high]) => acc + (Number(high) - Math.max(0, Number(committed.get(p) ?? 0))),
      0,
    );
    const timerKeys = await o.redis.keys(`${o.redisPrefix}{p*}:*:timers`);
    let pending = 0;
    for (const k of timerKeys) pending += await o.redis.zcard(k);
    if (lag === 0 && pending === 0) {
      stableSince ??= Date.now();
      if (Date.now() - stableSince >= (o.stableMs ?? 1500)) return;
    } else stableSince = null;
    if (Date.now() > end)
      throw new Error(`engine did not drain in time (lag ${lag}, pending timers ${pending})`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Environment for an engine child process: the test's LC_* variables plus the runtime test settings. */
export function engineEnv(
  base: Record<string, string>,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    ...base,
    LC_RULES_DIR: TEST_RULES,
    LC_TEMPLATES_DIR: path.join(ROOT, 'templates'),
    LC_TIMER_POLL_MS: '100',
    LC_KAFKA_PARTITIONS: '6',
    LC_LOG_LEVEL: 'warn',
    ...extra,
  };
}

export interface EngineProcess {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

/** Starts `engine/runtime/main.ts` as its own process (as `lifecycle run engine` would). */
export function spawnEngine(env: Record<string, string>): EngineProcess {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx/esm', path.join(ROOT, 'engine/runtime/main.ts')],
    {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  const keep = (b: Buffer) => {
    out = (out + b.toString()).slice(-20_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );
  return { child, output: () => out, exited };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Owner epoch of each partition of the events topic (0: never owned). */
export async function partitionEpochs(
  redis: Redis,
  redisPrefix: string,
  eventsTopic: string,
  partitions: number,
): Promise<number[]> {
  const out: number[] = [];
  for (let p = 0; p < partitions; p++)
    out.push(Number((await redis.get(`${redisPrefix}{p${p}}:${eventsTopic}:epoch`)) ?? 0));
  return out;
}

/** Waits until every partition has a newer owner than in `before` (a restarted engine has joined). */
export async function waitAllReassigned(
  redis: Redis,
  redisPrefix: string,
  eventsTopic: string,
  before: number[],
  timeoutMs = 60_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const now = await partitionEpochs(redis, redisPrefix, eventsTopic, before.length);
    if (now.every((e, i) => e > before[i]!)) return;
    if (Date.now() > end)
      throw new Error(
        `partitions not reassigned in time (${before.join(',')} -> ${now.join(',')})`,
      );
    await sleep(200);
  }
}

/** The same engine over the same events, uninterrupted, on the in-memory bus and stores. */
export async function referenceSends(
  events: NormalisedEvent[],
  partitions: number,
  rulesDir = TEST_RULES,
): Promise<SendCommand[]> {
  const loaded = await loadRuleSet(rulesDir);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
  const rs = loaded.ruleSet;
  const mem = new InMemoryBus(partitions);
  const cfg = { topicPrefix: 'ref', groupId: 'ref', timerPollMs: 20, partitions };
  const { service, stores } = createMemoryEngine(cfg, {
    bus: mem,
    ruleSet: () => rs,
    logger: silentLogger(),
    registry: createMetricsRegistry({ defaults: false }),
  });
  await service.start();
  await mem.publisher().publish('ref.events', events.map(eventRecord));
  const sub = { groupId: 'ref', topics: [], eachBatch: async () => {} };
  for (let stable = 0; stable < 10;) {
    await sleep(50);
    const ends = await mem.endOffsets('ref.events');
    let pending = 0;
    for (let p = 0; p < partitions; p++) pending += await stores.pending(p);
    const drained =
      pending === 0 &&
      [...ends].every(
        ([p, end]) =>
          mem.committedOffset(sub, { topic: 'ref.events', partition: p }) === Number(end),
      );
    stable = drained ? stable + 1 : 0;
  }
  await service.stop();
  return mem
    .messages('ref.sends')
    .map((m) => sendCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]));
}

/** Ids of the rules of `rulesDir` with a delayed trigger. */
export async function delayedRules(rulesDir = TEST_RULES): Promise<Set<string>> {
  const loaded = await loadRuleSet(rulesDir);
  return new Set(
    loaded.ok ? loaded.ruleSet.rules.filter((r) => r.delayMs !== null).map((r) => r.def.id) : [],
  );
}

/** A send snapshot of a delayed trigger holds the traits at fire time, which depends on the wall clock; the rest is fixed by the events. */
export function comparableSend(s: SendCommand, delayed: ReadonlySet<string>): unknown {
  if (!delayed.has(s.ruleId)) return s;
  const { user: _user, ...data } = s.data;
  return { ...s, data };
}

/**
 * How the sends a run put on the topic differ from the reference's: sendIds missing,
 * sendIds the reference does not have, and records whose content differs from the
 * reference's send of the same sendId (duplicate records of one sendId are expected after
 * a crash, and delivery claims them once; different content under one sendId is not).
 */
export function compareSends(
  sends: SendCommand[],
  reference: SendCommand[],
  delayed: ReadonlySet<string>,
) {
  const refById = new Map(reference.map((s) => [s.sendId, s]));
  const ids = new Set(sends.map((s) => s.sendId));
  const differing: { sendId: string; got: unknown; expected: unknown }[] = [];
  for (const s of sends) {
    const ref = refById.get(s.sendId);
    if (!ref) continue;
    const got = comparableSend(s, delayed);
    const expected = comparableSend(ref, delayed);
    if (!isDeepStrictEqual(got, expected)) differing.push({ sendId: s.sendId, got, expected });
  }
  return {
    missing: [...refById.keys()].filter((id) => !ids.has(id)).sort(),
    unexpected: [...ids].filter((id) => !refById.has(id)).sort(),
    differing,
    duplicateRecords: sends.length - ids.size,
  };
}
