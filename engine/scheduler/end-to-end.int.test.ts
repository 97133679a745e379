// The production path of a recurring campaign on the real Kafka and Redis: events in, the
// scheduler fans occurrences out, the distributed engine decides. A "pro users' digest at
// 09:00 in their own zone" rule must send exactly once per occurrence to each pro user who
// did not opt out and used a feature in the day before, attributed to that occurrence, with
// the feature uses of that day as its digest, and to nobody else.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { isolate } from '../../test/support/isolation.ts';
import { waitFor } from '../../test/support/wait.ts';
import { KafkaBus } from '../../platform/kafka.ts';
import { internalTopicSpecs } from '../../platform/bus.ts';
import { encodeWithHeader, eventCodec, sendCodec } from '../../platform/avro.ts';
import {
  SCHEMA_ID_HEADER,
  topics,
  type NormalisedEvent,
  type SendCommand,
} from '../../platform/contracts.ts';
import { createKeySpace } from '../../platform/keys.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import { compile } from '../../test/support/scenarios.ts';
import { occurrenceEvent, scheduleOccurrences } from '../core/schedule.ts';
import { runEngine, type RunningEngine } from '../runtime/main.ts';
import { readTopic } from '../../test/support/engine-harness.ts';
import { createRedisProgressStore } from './progress.ts';
import { runScheduler, type RunningScheduler } from './main.ts';

const DAY = 86_400_000;
const ZONES = ['Europe/Berlin', 'America/New_York'];
const dir = mkdtempSync(path.join(tmpdir(), 'lc-scheduler-e2e-'));
const running: (RunningEngine | RunningScheduler)[] = [];
let redis: Redis | null = null;
let bus: KafkaBus | null = null;
let keyPrefix: string | null = null;

afterAll(async () => {
  for (const r of running.reverse()) await r.stop().catch(() => {});
  await bus?.close();
  rmSync(dir, { recursive: true, force: true });
  if (redis && keyPrefix) {
    const keys = await redis.keys(`${keyPrefix}*`);
    if (keys.length) await redis.del(...keys);
  }
  redis?.disconnect();
});

/** A daily hour whose instants are at least 15 minutes away from now and from two days ago in every zone. */
function pickSchedule(now: number): string {
  for (let hour = 0; hour < 24; hour++) {
    const schedule = `0 ${hour} * * *`;
    const rule = compile([
      {
        id: 'probe',
        category: 'marketing',
        trigger: { schedule, timezone: 'user' },
        action: { send: { template: 't', channels: ['email'] } },
      },
    ]).rules[0]!;
    const near = (at: number) =>
      ZONES.some(
        (z) => scheduleOccurrences(rule, at - 15 * 60_000, at + 15 * 60_000, z).length > 0,
      );
    if (!near(now) && !near(now - 2 * DAY)) return schedule;
  }
  throw new Error('no suitable hour');
}

describe('recurring campaign through scheduler and engine', () => {
  it('sends once per occurrence to each eligible user, in their zone, and to nobody else', async () => {
    const iso = isolate('scheduler-e2e');
    const now = Date.now();
    const schedule = pickSchedule(now);
    const ruleDef = {
      id: 'pro-digest',
      category: 'marketing',
      trigger: { schedule, timezone: 'user', segment: 'pro' },
      conditions: {
        not: { fact: 'user', path: '$.digest_opt_out', operator: 'equal', value: true },
      },
      action: {
        send: {
          template: 'weekly_digest',
          channels: ['email'],
          digest: { events: ['Feature Used'], window: '1d', properties: ['feature'] },
        },
      },
    };
    mkdirSync(path.join(dir, 'segments'));
    writeFileSync(path.join(dir, 'pro-digest.json'), JSON.stringify(ruleDef));
    writeFileSync(
      path.join(dir, 'segments', 'pro.json'),
      JSON.stringify({
        id: 'pro',
        conditions: { all: [{ fact: 'user', path: '$.plan', operator: 'equal', value: 'pro' }] },
      }),
    );
    const config = iso.config({
      LC_RULES_DIR: dir,
      LC_TEMPLATES_DIR: path.join(dir, 'no-templates'),
      LC_KAFKA_PARTITIONS: '3',
      LC_SCHEDULER_GROUP: iso.group('scheduler'),
      LC_SCHEDULER_TICK_MS: '200',
      LC_SCHEDULER_PAGE_SIZE: '7',
      LC_SCHEDULER_CATCHUP_MS: String(2 * DAY),
    });
    const logger = silentLogger();
    bus = KafkaBus.fromConfig(config, logger);
    redis = new Redis(config.redis.url, { maxRetriesPerRequest: 3 });
    keyPrefix = config.redis.keyPrefix;
    const t = topics(config.kafka.topicPrefix);
    // Topics created while other test files create theirs sometimes miss a leader at first: try again.
    await waitFor(() => bus!.ensureTopics(internalTopicSpecs(t, 3)).then(() => true), {
      timeout: 60_000,
      interval: 1000,
      message: 'cannot create the topics',
    });

    const rule = compile(
      [ruleDef],
      [
        {
          id: 'pro',
          conditions: { all: [{ fact: 'user', path: '$.plan', operator: 'equal', value: 'pro' }] },
        },
      ],
    ).rules[0]!;

    // 15 users per zone: every third is on the free plan, one pro user opted out of digests,
    // every fifth used no feature (nothing to tell: skipped). The others used one a day and a
    // half before the first occurrence (outside both windows) and one in the day before each.
    const events: NormalisedEvent[] = [];
    const event = (userId: string, type: string, ts: number, extra: Partial<NormalisedEvent>) =>
      events.push({
        id: `${iso.id}-${userId}-${events.length}`,
        userId,
        type,
        ts,
        receivedAt: ts,
        source: 'test',
        properties: {},
        ...extra,
      });
    /** occurrence event id -> the send's user, time and the one item its digest must list. */
    const expected = new Map<
      string,
      { userId: string; at: number; used: number; feature: string }
    >();
    for (const zone of ZONES) {
      for (let i = 0; i < 15; i++) {
        const userId = `${zone.split('/')[1]!.toLowerCase()}-${i}`;
        const plan = i % 3 === 0 ? 'free' : 'pro';
        const optOut = i === 1;
        const idle = i % 5 === 2;
        event(userId, 'identify', now - 4 * DAY + i, {
          traits: { timezone: zone, plan, ...(optOut ? { digest_opt_out: true } : {}) },
        });
        if (idle) continue;
        const times = scheduleOccurrences(rule, now - 2 * DAY, now, zone);
        expect(times.length).toBe(2);
        event(userId, 'Feature Used', times[0]! - 36 * 3_600_000, {
          properties: { feature: 'too-old' },
        });
        times.forEach((at, n) => {
          const used = at - (n + 1) * 3_600_000;
          const feature = `${userId}-${n}`;
          event(userId, 'Feature Used', used, { properties: { feature, secret: 'not kept' } });
          if (plan === 'pro' && !optOut)
            expected.set(occurrenceEvent('pro-digest', userId, at).id, {
              userId,
              at,
              used,
              feature,
            });
        });
      }
    }
    expect(expected.size).toBe(2 * 2 * 7);
    // A topic just created may not be known to every broker connection yet: retry until it is.
    const records = events.map((e) => ({ key: e.userId, ...encodeWithHeader(eventCodec, e) }));
    await waitFor(
      () =>
        bus!
          .publisher()
          .publish(t.events, records)
          .then(() => true),
      { timeout: 30_000, interval: 500, message: 'cannot publish the events' },
    );
    await createRedisProgressStore(redis, createKeySpace(config.redis.keyPrefix)).initSince(
      'pro-digest',
      now - 2 * DAY - 60 * 60_000,
    );

    running.push(
      await runEngine(config, logger, { registry: createMetricsRegistry({ defaults: false }) }),
    );
    running.push(
      await runScheduler(config, logger, { registry: createMetricsRegistry({ defaults: false }) }),
    );

    const read = async (): Promise<SendCommand[]> =>
      (await bus!.endOffsets(t.sends)).size === 0
        ? []
        : (await readTopic(bus!.kafka, t.sends)).map((r) =>
            sendCodec.decode(r.value!, r.headers[SCHEMA_ID_HEADER]),
          );
    await waitFor(async () => new Set((await read()).map((s) => s.sendId)).size >= expected.size, {
      timeout: 90_000,
      interval: 1000,
      message: 'the sends did not arrive',
    });
    // Let anything extra that is under way arrive too.
    await new Promise((r) => setTimeout(r, 3000));
    const sends = await read();
    const byId = new Map(sends.map((s) => [s.sendId, s]));
    expect(byId.size).toBe(expected.size);
    for (const s of byId.values()) {
      const want = expected.get(s.triggeredBy.eventId);
      expect(want, `unexpected send to ${s.userId} for ${s.triggeredBy.eventId}`).toBeDefined();
      expect(s).toMatchObject({
        ruleId: 'pro-digest',
        userId: want!.userId,
        createdAt: want!.at,
        triggeredBy: { eventType: 'schedule.occurrence' },
        template: 'weekly_digest',
      });
      expect(s.data.digest).toMatchObject({
        window: '1d',
        to: want!.at,
        total: 1,
        items: [{ type: 'Feature Used', ts: want!.used, properties: { feature: want!.feature } }],
        types: [{ type: 'Feature Used', count: 1 }],
      });
    }
  });
});
