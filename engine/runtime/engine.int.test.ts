// The engine on the real Kafka and Redis, in this process: events in -> send commands out,
// a delayed trigger fired by the partition's timer poller, a poison record in the DLQ while
// the partition keeps flowing, metrics and health.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { isolate } from '../../test/support/isolation.ts';
import { KafkaBus } from '../../platform/kafka.ts';
import { createKeySpace } from '../../platform/keys.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import { internalTopicSpecs } from '../../platform/bus.ts';
import { DlqHeaders, SCHEMA_ID_HEADER, type NormalisedEvent } from '../../platform/contracts.ts';
import { eventCodec } from '../../platform/avro.ts';
import { loadRuleSet } from '../../rules/index.ts';
import { createEngineService, type EngineService } from './engine-service.ts';
import { createRedisStateStore } from './redis-state.ts';
import { createRedisTimerStore } from './timers.ts';
import { wireCore } from './wiring.ts';
import {
  TEST_RULES,
  decodeSends,
  eventRecord,
  namesOf,
  readTopic,
  sleep,
} from '../../test/support/engine-harness.ts';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runEngine } from './main.ts';

const iso = isolate('engine');
const config = iso.config();
const logger = silentLogger();
let redis: Redis;
let bus: KafkaBus;
const names = namesOf(config);

const ev = (
  id: string,
  userId: string,
  type: string,
  ts: number,
  extra: Partial<NormalisedEvent> = {},
): NormalisedEvent => ({
  id,
  userId,
  type,
  ts,
  receivedAt: ts,
  source: 'http:test',
  properties: {},
  ...extra,
});

beforeAll(async () => {
  redis = new Redis(config.redis.url, { maxRetriesPerRequest: 3 });
  bus = KafkaBus.fromConfig(config, logger);
  await bus.ensureTopics(internalTopicSpecs(names.topics, 3));
});

afterAll(async () => {
  await bus?.close();
  const keys = await redis.keys(`${names.redisPrefix}*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
});

describe('engine on Kafka and Redis', () => {
  let service: EngineService;

  it('sends, fires a delayed trigger, and dead-letters a poison record while the partition keeps flowing', async () => {
    const loaded = await loadRuleSet(TEST_RULES);
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
    const rs = loaded.ruleSet;
    const registry = createMetricsRegistry({ defaults: false });
    const keys = createKeySpace(names.redisPrefix);
    const wiring = wireCore(() => rs);
    service = createEngineService(
      {
        topicPrefix: names.prefix,
        groupId: names.groupId,
        timerPollMs: 100,
        partitions: 3,
        lagIntervalMs: 200,
      },
      {
        bus,
        state: createRedisStateStore({ redis, keys }, { eventsTopic: names.topics.events }),
        timers: createRedisTimerStore({ redis, keys }, { eventsTopic: names.topics.events }),
        ...wiring,
        logger,
        registry,
        ruleSetVersion: rs.version,
      },
    );
    await service.start();

    const now = Date.now();
    const pub = bus.publisher();
    await pub.publish(names.topics.events, [
      eventRecord(
        ev('reg-1', 'ada', 'user_registered', now, {
          traits: { email: 'ada@example.com', plan: 'trial' },
        }),
      ),
      // Poison: bytes that are not an event, on the same key (so the same partition).
      {
        key: 'ada',
        value: Buffer.from([0xff, 0x00, 0x13, 0x37]),
        headers: { [SCHEMA_ID_HEADER]: eventCodec.schemaId },
      },
      eventRecord(ev('ord-1', 'ada', 'order_completed', now + 10, { properties: { amount: 99 } })),
      eventRecord(
        ev('reg-2', 'bob', 'user_registered', now, {
          traits: { email: 'bob@example.com', plan: 'pro' },
        }),
      ),
    ]);

    // Immediate sends first, then the 2s delayed nudge for the trial user.
    let sends = decodeSends(await readTopic(bus.kafka, names.topics.sends));
    for (let i = 0; i < 60 && !sends.some((s) => s.ruleId === 'trial-nudge'); i++) {
      await sleep(250);
      sends = decodeSends(await readTopic(bus.kafka, names.topics.sends));
    }
    const sendRecords = await readTopic(bus.kafka, names.topics.sends);
    expect(sendRecords.every((r) => r.headers[SCHEMA_ID_HEADER] && r.key)).toBe(true);
    expect(sends.map((s) => `${s.ruleId}:${s.userId}`).sort()).toEqual([
      'big-order:ada',
      'trial-nudge:ada',
      'welcome:ada',
      'welcome:bob',
    ]);
    const nudge = sends.find((s) => s.ruleId === 'trial-nudge')!;
    expect(nudge.triggeredBy).toEqual({ eventId: 'reg-1', eventType: 'user_registered' });
    expect(nudge.createdAt).toBe(now + 2000);
    // Every send of ada sits on ada's partition (keyed by userId).
    const adaPartitions = new Set(
      sendRecords.filter((r) => r.key === 'ada').map((r) => r.partition),
    );
    expect(adaPartitions.size).toBe(1);

    const dlq = await readTopic(bus.kafka, names.topics.dlq);
    expect(dlq).toHaveLength(1);
    expect(dlq[0]!.headers[DlqHeaders.reason]).toMatch(/^undecodable event/);
    expect(dlq[0]!.headers[DlqHeaders.sourceTopic]).toBe(names.topics.events);
    expect(dlq[0]!.value).toEqual(Buffer.from([0xff, 0x00, 0x13, 0x37]));

    // The timer became a timer.fired event on the events topic and was removed.
    const events = (await readTopic(bus.kafka, names.topics.events)).filter(
      (r) => r.value && r.value[0] !== 0xff,
    );
    expect(events.map((r) => eventCodec.decode(r.value!).type)).toContain('timer.fired');

    await sleep(400);
    const metrics = await registry.getMetricsAsJSON();
    const value = (name: string, labels: Record<string, string> = {}) =>
      metrics
        .find((m) => m.name === name)
        ?.values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value;
    expect(value('lifecycle_engine_rule_fires_total', { rule: 'welcome' })).toBe(2);
    expect(
      value('lifecycle_engine_rule_evaluations_total', { rule: 'trial-nudge' }),
    ).toBeGreaterThanOrEqual(3);
    expect(
      value('lifecycle_consumer_dlq_total', { consumer: 'engine', stage: 'engine.decode' }),
    ).toBe(1);
    expect(value('lifecycle_engine_rule_set_info', { version: rs.version })).toBe(1);
    expect(value('lifecycle_engine_consumer_lag')).toBe(0);
    expect(service.health()).toMatchObject({
      ok: true,
      details: { ruleSetVersion: rs.version, partitions: [0, 1, 2] },
    });
    await service.stop();
  });

  it('runEngine hot-reloads rules: a valid edit takes effect, an invalid one keeps the last good set', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'lc-rules-'));
    await cp(TEST_RULES, dir, { recursive: true });
    const cfg = isolate('engine-reload').config({
      LC_RULES_DIR: dir,
      LC_TIMER_POLL_MS: '100',
      LC_KAFKA_PARTITIONS: '2',
    });
    const n = namesOf(cfg);
    const engine = await runEngine(cfg, logger, {
      registry: createMetricsRegistry({ defaults: false }),
    });
    try {
      const first = engine.service.ruleSetVersion();
      expect(first).toMatch(/\S/);
      const until = async (cond: () => boolean, what: string) => {
        for (let i = 0; i < 100 && !cond(); i++) await sleep(100);
        if (!cond()) throw new Error(`timed out waiting for ${what}`);
      };

      // An invalid edit is rejected: the version stays.
      await writeFile(path.join(dir, 'broken.json'), '{ "id": "broken", "category": "marketing", ');
      await sleep(1500);
      expect(engine.service.ruleSetVersion()).toBe(first);

      // A valid new rule is swapped in and fires on the next event.
      await rm(path.join(dir, 'broken.json'));
      await writeFile(
        path.join(dir, 'upgrade-thanks.json'),
        JSON.stringify({
          id: 'upgrade-thanks',
          category: 'transactional',
          trigger: { event: 'subscription_started' },
          action: { send: { template: 'welcome', channels: ['email'] } },
        }),
      );
      await until(() => engine.service.ruleSetVersion() !== first, 'the new rule set');
      expect(engine.service.health()).toMatchObject({
        ok: true,
        details: { ruleSetVersion: engine.service.ruleSetVersion() },
      });
      const metrics = await engine.registry.getMetricsAsJSON();
      const info = metrics.find((m) => m.name === 'lifecycle_engine_rule_set_info')!.values;
      expect(info).toEqual([
        expect.objectContaining({ labels: { version: engine.service.ruleSetVersion() }, value: 1 }),
      ]);

      await bus.ensureTopics(internalTopicSpecs(n.topics, 2));
      await bus
        .publisher()
        .publish(n.topics.events, [
          eventRecord(ev('sub-1', 'cleo', 'subscription_started', Date.now())),
        ]);
      let sends = decodeSends(await readTopic(bus.kafka, n.topics.sends));
      for (let i = 0; i < 60 && sends.length === 0; i++) {
        await sleep(250);
        sends = decodeSends(await readTopic(bus.kafka, n.topics.sends));
      }
      expect(sends.map((s) => s.ruleId)).toEqual(['upgrade-thanks']);
    } finally {
      await engine.stop();
      await rm(dir, { recursive: true, force: true });
      const keys = await redis.keys(`${n.redisPrefix}*`);
      if (keys.length) await redis.del(...keys);
    }
  });
});
