// Invariant 1 and 2 with real processes: the engine runs as its own process, is SIGKILLed
// at random points (several times, some right after it published sends and before it
// committed) and restarted; the sends topic must then hold exactly the sendIds of an
// uninterrupted run of the same engine over the same events (each at least once, identical
// content). The engine publishes with an idempotent producer, not in Kafka transactions, so
// a kill between a publish and its commit leaves the same send command on the topic twice:
// what must hold is the effect. Delivery then reads the topic, and every email of the
// reference arrives exactly once (by Message-ID): a duplicate email fails the test.
// Then a rebalance: one of two engines dies and the other fires its pending timers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { isolate } from '../../test/support/isolation.ts';
import { KafkaBus } from '../../platform/kafka.ts';
import { internalTopicSpecs } from '../../platform/bus.ts';
import { silentLogger } from '../../platform/logger.ts';
import { topics, type NormalisedEvent, type SendCommand } from '../../platform/contracts.ts';
import { deliveryCodec } from '../../platform/avro.ts';
import { generateEvents } from '../../test/support/engine-events.ts';
import { createLogger } from '../../platform/logger.ts';
import { createKeySpace } from '../../platform/keys.ts';
import { createDelivery } from '../../delivery/pipeline/run.ts';
import { createPreferencesStore } from '../../delivery/preferences/store.ts';
import { messageIdFor } from '../../delivery/providers/email.ts';
import { startSink, stopSink } from '../../test/support/delivery-harness.ts';
import {
  compareSends,
  decodeSends,
  delayedRules,
  referenceSends,
  engineEnv,
  eventRecord,
  readTopic,
  sleep,
  spawnEngine,
  namesOf,
  waitDrained,
  partitionEpochs,
  waitAllReassigned,
  type EngineProcess,
} from '../../test/support/engine-harness.ts';

const config = isolate('engine-kill-shared').config();
const logger = silentLogger();
let redis: Redis;
let bus: KafkaBus;
const prefixes: string[] = [];
const children: EngineProcess[] = [];

beforeAll(() => {
  redis = new Redis(config.redis.url, { maxRetriesPerRequest: 3 });
  bus = KafkaBus.fromConfig(config, logger);
});

afterAll(async () => {
  for (const c of children)
    if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
  await bus?.close();
  for (const p of prefixes) {
    const keys = await redis.keys(`${p}*`);
    if (keys.length) await redis.del(...keys);
  }
  redis.disconnect();
});

function spawn(env: Record<string, string>): EngineProcess {
  const e = spawnEngine(env);
  children.push(e);
  return e;
}

const hasEmail = (s: SendCommand) => {
  const user = s.data.user as { email?: unknown } | undefined;
  return typeof user?.email === 'string' && user.email !== '';
};

/**
 * Runs delivery over the sends topic of a finished engine run (the test's own isolation:
 * topics, group, Redis prefix) into a private SMTP sink, and counts each expected email by
 * Message-ID. Every user has opted in to marketing email, so every email send of the
 * reference is expected but the holdouts and those without an address (an order after the
 * user was erased: the engine starts a new, traitless state, and delivery suppresses it).
 */
async function deliverEmails(
  iso: ReturnType<typeof isolate>,
  reference: SendCommand[],
  erased: ReadonlySet<string>,
): Promise<{
  expected: number;
  missing: string[];
  unexpected: string[];
  duplicated: string[];
  /** What delivery said of the missing ones: their outcomes on the deliveries topic. */
  missingOutcomes: string[];
}> {
  const sink = await startSink();
  const cfg = iso.config({
    LC_SMTP_URLS: `smtp://127.0.0.1:${sink.port}`,
    LC_EMAIL_FROM: 'Example <hello@example.com>',
    LC_QUIET_HOURS: '',
    LC_CAPS: 'email:none',
    LC_KAFKA_PARTITIONS: '6',
    LC_RETRY_BASE_MS: '300',
    LC_RETRY_MAX_MS: '3000',
  });
  const redisDeps = { redis, keys: createKeySpace(cfg.redis.keyPrefix) };
  const preferences = createPreferencesStore(redisDeps);
  for (const userId of new Set(reference.map((s) => s.userId)))
    await preferences.apply(
      userId,
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
  const owed = reference.filter((s) => !s.holdout && s.channels.includes('email') && hasEmail(s));
  const messageIdOf = (s: SendCommand) => messageIdFor(s.sendId, 'example.com').slice(1, -1);
  // A user erased later in the run is owed nothing, but may get their email: delivery reads
  // the sends and, from the start of the events topic, the erasures side by side, so a send
  // can go out before the later deletion is read (as it would have live). Such an email is
  // neither required nor unexpected; a second copy of it is still a duplicate.
  const mayGet = new Set(owed.filter((s) => erased.has(s.userId)).map(messageIdOf));
  const sendIdOf = new Map(
    owed.filter((s) => !erased.has(s.userId)).map((s) => [messageIdOf(s), s.sendId]),
  );
  const expected = new Set(sendIdOf.keys());
  const delivery = await createDelivery(cfg, createLogger({ level: 'error', name: 'kill-dlv' }));
  try {
    await delivery.start();
    const end = Date.now() + 120_000;
    while (Date.now() < end) {
      const got = new Set(sink.list().map((m) => m.messageId));
      if ([...expected].every((id) => got.has(id))) break;
      await sleep(250);
    }
    // Time for a second copy to arrive if one was sent.
    await sleep(3000);
  } finally {
    await delivery.stop();
  }
  const counts = new Map<string, number>();
  for (const m of sink.list())
    counts.set(m.messageId ?? '', (counts.get(m.messageId ?? '') ?? 0) + 1);
  await stopSink(sink);
  const missing = [...expected].filter((id) => !counts.has(id)).sort();
  const missingSends = new Set(missing.map((id) => sendIdOf.get(id)));
  const missingOutcomes = missing.length
    ? (await readTopic(bus.kafka, topics(cfg.kafka.topicPrefix).deliveries))
        .map((r) => deliveryCodec.decode(r.value!))
        .filter((o) => missingSends.has(o.sendId))
        .map((o) => `${o.sendId} ${o.channel} ${o.status}: ${o.reason ?? ''}`)
    : [];
  return {
    expected: expected.size,
    missing,
    missingOutcomes,
    unexpected: [...counts.keys()].filter((id) => !expected.has(id) && !mayGet.has(id)).sort(),
    duplicated: [...counts]
      .filter(([, n]) => n > 1)
      .map(([id]) => id)
      .sort(),
  };
}

/** Committed offsets of the group on the events topic, summed. */
async function committedTotal(groupId: string, topic: string): Promise<number> {
  const c = await bus.committedOffsets(groupId, topic);
  return [...c.values()].reduce((a, o) => a + Math.max(0, Number(o)), 0);
}

describe('engine process killed and restarted', () => {
  it('produces every send of an uninterrupted run, once per sendId, with identical content', async () => {
    const iso = isolate('engine-kill');
    const names = namesOf(iso.config());
    prefixes.push(names.redisPrefix);
    await bus.ensureTopics(internalTopicSpecs(names.topics, 6));
    const events = generateEvents({
      users: 300,
      events: 3000,
      startTs: Date.now(),
      stepMs: 10,
      seed: 2026,
      deleteShare: 0.05,
      idPrefix: randomUUID().slice(0, 6),
    });
    const env = engineEnv(iso.env);

    // Watch the sends topic live, so some kills land right after a publish (before the commit).
    const tail = bus.kafka.consumer({
      groupId: `tail-${names.groupId}`,
      sessionTimeout: 10_000,
      heartbeatInterval: 1000,
    });
    let onSend: (() => void) | null = null;
    await tail.connect();
    await tail.subscribe({ topics: [names.topics.sends], fromBeginning: true });
    await tail.run({ eachBatch: async () => void onSend?.() });

    const t0 = Date.now();
    let engine = spawn(env);
    const publisher = bus.publisher();
    let produced = 0;
    const producing = (async () => {
      // ~3000 events over ~35 s, in small chunks: the engine sees a live stream.
      for (let i = 0; i < events.length; i += 20) {
        await publisher.publish(names.topics.events, events.slice(i, i + 20).map(eventRecord));
        produced = i + 20;
        await sleep(230);
      }
    })();

    const kills: { at: number; mode: string; committed: number }[] = [];
    for (let k = 0; k < 5; k++) {
      // Kill only once the new process is working (it has committed something).
      const before = await committedTotal(names.groupId, names.topics.events);
      for (
        let i = 0;
        i < 80 && (await committedTotal(names.groupId, names.topics.events)) <= before;
        i++
      )
        await sleep(250);
      let mode: string;
      if (k % 2 === 0) {
        mode = 'right after a publish of sends';
        await new Promise<void>((resolve) => {
          onSend = resolve;
          setTimeout(resolve, 5000).unref();
        });
        onSend = null;
      } else {
        mode = 'random';
        await sleep(100 + Math.floor(Math.random() * 1500));
      }
      engine.child.kill('SIGKILL');
      await engine.exited;
      kills.push({
        at: produced,
        mode,
        committed: await committedTotal(names.groupId, names.topics.events),
      });
      console.log(`kill ${k + 1}: ${mode}, ${produced} events produced, t=${Date.now() - t0} ms`);
      const epochsAtKill = await partitionEpochs(redis, names.redisPrefix, names.topics.events, 6);
      engine = spawn(env);
      if (k === 4)
        await waitAllReassigned(redis, names.redisPrefix, names.topics.events, epochsAtKill);
    }
    await producing;
    await waitDrained({
      bus,
      redis,
      redisPrefix: names.redisPrefix,
      groupId: names.groupId,
      eventsTopic: names.topics.events,
      timeoutMs: 120_000,
    });
    engine.child.kill('SIGTERM');
    expect(await engine.exited).toBe(0);
    await tail.disconnect();

    const records = await readTopic(bus.kafka, names.topics.sends);
    const sends = decodeSends(records);
    const reference = await referenceSends(events, 6);
    const diff = compareSends(sends, reference, await delayedRules());
    const erased = new Set(events.filter((e) => e.type === 'user_deleted').map((e) => e.userId));
    const emails = await deliverEmails(iso, reference, erased);
    console.log(
      `kill test: ${events.length} events, ${kills.length} SIGKILLs (${kills.map((k) => `${k.mode} @${k.committed} committed`).join('; ')}), ` +
        `${reference.length} reference sends, ${sends.length - diff.duplicateRecords} distinct sendIds on the topic, ${diff.duplicateRecords} duplicate records; ` +
        `delivered: ${emails.expected} expected emails, missing ${emails.missing.length}, unexpected ${emails.unexpected.length}, duplicated ${emails.duplicated.length}`,
    );
    expect(new Set(reference.map((s) => s.sendId)).size).toBe(reference.length);
    expect(reference.length).toBeGreaterThan(500);
    expect(new Set(reference.map((s) => s.ruleId))).toEqual(
      new Set(['welcome', 'trial-nudge', 'third-feature-use', 'regular-user', 'big-order']),
    );
    // Duplicate records of one sendId are fine; a sendId missing, one the reference does not
    // have, or one sendId published with different content is not.
    expect(diff.missing, 'sendIds of the reference never published').toEqual([]);
    expect(diff.unexpected, 'sendIds the reference does not have').toEqual([]);
    expect(
      diff.differing,
      'records whose content differs from the reference send of their sendId',
    ).toEqual([]);
    // The effect: each email of the reference delivered exactly once, duplicate records or not.
    expect(emails.expected).toBeGreaterThan(300);
    expect(
      emails.missing,
      `emails of the reference never delivered (${emails.missingOutcomes.join('; ')})`,
    ).toEqual([]);
    expect(emails.unexpected, 'emails the reference does not have').toEqual([]);
    expect(emails.duplicated, 'emails delivered more than once').toEqual([]);
  }, 400_000);

  it("hands a dead engine's partitions, with their pending timers, to the surviving one", async () => {
    const iso = isolate('engine-rebalance');
    const names = namesOf(iso.config());
    prefixes.push(names.redisPrefix);
    await bus.ensureTopics(internalTopicSpecs(names.topics, 6));
    const env = engineEnv(iso.env);
    const a = spawn(env);
    const publisher = bus.publisher();
    const epochs = async () => {
      const out: number[] = [];
      for (let p = 0; p < 6; p++)
        out.push(
          Number(
            (await redis.get(`${names.redisPrefix}{p${p}}:${names.topics.events}:epoch`)) ?? 0,
          ),
        );
      return out;
    };
    for (let i = 0; i < 120 && (await epochs()).some((e) => e === 0); i++) await sleep(250);
    expect(await epochs()).toEqual([1, 1, 1, 1, 1, 1]);
    const b = spawn(env);
    // B's join moves some partitions to it (new epoch 2); A keeps the others (epoch 1).
    for (let i = 0; i < 120 && !(await epochs()).some((e) => e === 2); i++) await sleep(250);
    await sleep(1000);
    const split = await epochs();
    expect(split.filter((e) => e === 2).length).toBeGreaterThan(0);
    expect(split.filter((e) => e === 1).length).toBeGreaterThan(0);

    // 30 trial users; their nudges are due 6 s from now.
    const now = Date.now();
    const regs: NormalisedEvent[] = Array.from({ length: 30 }, (_, i) => ({
      id: `reg-${names.groupId}-${i}`,
      userId: `rb-user-${i}`,
      type: 'user_registered',
      ts: now + 4000,
      receivedAt: now,
      source: 'http:test',
      properties: {},
      traits: { email: `rb-${i}@example.com`, plan: 'trial' },
    }));
    await publisher.publish(names.topics.events, regs.map(eventRecord));
    const pendingTimers = async () => {
      let n = 0;
      for (let p = 0; p < 6; p++)
        n += await redis.zcard(`${names.redisPrefix}{p${p}}:${names.topics.events}:timers`);
      return n;
    };
    for (let i = 0; i < 100 && (await pendingTimers()) < 30; i++) await sleep(100);
    expect(await pendingTimers()).toBe(30);
    a.child.kill('SIGKILL');
    await a.exited;

    await waitDrained({
      bus,
      redis,
      redisPrefix: names.redisPrefix,
      groupId: names.groupId,
      eventsTopic: names.topics.events,
      timeoutMs: 90_000,
    });
    // B now owns every partition: those it took from A carry a newer epoch.
    expect((await epochs()).every((e) => e >= 2)).toBe(true);
    const sends = decodeSends(await readTopic(bus.kafka, names.topics.sends));
    const nudged = new Set(sends.filter((s) => s.ruleId === 'trial-nudge').map((s) => s.userId));
    expect(nudged.size).toBe(30);
    expect(
      sends.filter((s) => s.ruleId === 'trial-nudge').every((s) => s.createdAt === now + 6000),
    ).toBe(true);
    b.child.kill('SIGTERM');
    expect(await b.exited).toBe(0);
  }, 200_000);
});
