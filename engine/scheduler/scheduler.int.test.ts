// The scheduler as its own process against the real Kafka and Redis: users in several
// timezones arrive on the events topic, a daily rule at 09:00 in each user's zone has been
// "down" for three days with a two-day catch-up window. The first scheduler is SIGKILLed in
// the middle of a fan-out; two fresh instances then race for the rule's lease. The events
// topic must end up with exactly one schedule.occurrence per user per occurrence of the last
// two days in the user's zone (ids as the engine core derives them), the older occurrence
// skipped with a log line, and only the pages in flight at the kill published twice.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { isolate } from '../../test/support/isolation.ts';
import { waitFor } from '../../test/support/wait.ts';
import { KafkaBus } from '../../platform/kafka.ts';
import { internalTopicSpecs } from '../../platform/bus.ts';
import { encodeWithHeader, eventCodec } from '../../platform/avro.ts';
import { SCHEMA_ID_HEADER, topics, type NormalisedEvent } from '../../platform/contracts.ts';
import { createKeySpace } from '../../platform/keys.ts';
import { silentLogger } from '../../platform/logger.ts';
import { compile } from '../../test/support/scenarios.ts';
import { occurrenceEvent, scheduleOccurrences } from '../core/schedule.ts';
import { readTopic } from '../../test/support/engine-harness.ts';
import { userKeys } from '../runtime/redis-state.ts';
import { emptyState, serializeState } from '../core/state.ts';
import { createRedisDirectory } from './directory.ts';
import { createRedisProgressStore } from './progress.ts';
import { PAGES_IN_FLIGHT } from './scheduler-service.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const DAY = 86_400_000;
const PAGE = 40;
const ZONES = ['Europe/Berlin', 'America/New_York', 'Asia/Kolkata'];
const PER_ZONE = 900;

const iso = isolate('scheduler');
const config = iso.config();
const t = topics(config.kafka.topicPrefix);
const rulesDir = mkdtempSync(path.join(tmpdir(), 'lc-scheduler-rules-'));
let redis: Redis;
let bus: KafkaBus;
const children: ChildProcess[] = [];

interface Proc {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

function spawnScheduler(env: Record<string, string>): Proc {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx/esm', path.join(ROOT, 'engine/scheduler/main.ts')],
    { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.push(child);
  let out = '';
  const keep = (b: Buffer) => {
    out = (out + b.toString()).slice(-200_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return {
    child,
    output: () => out,
    exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))),
  };
}

/** A daily hour whose 09:00-like instant is at least 15 minutes away from now and from now - 2 days in every zone, so the expectation cannot move while the test runs. */
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
      [...ZONES, 'UTC'].some(
        (z) => scheduleOccurrences(rule, at - 15 * 60_000, at + 15 * 60_000, z).length > 0,
      );
    if (!near(now) && !near(now - 2 * DAY) && !near(now - 3 * DAY)) return schedule;
  }
  throw new Error('no suitable hour');
}

beforeAll(() => {
  redis = new Redis(config.redis.url, { maxRetriesPerRequest: 3 });
  bus = KafkaBus.fromConfig(config, silentLogger());
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await bus?.close();
  const keys = await redis.keys(`${config.redis.keyPrefix}*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
  rmSync(rulesDir, { recursive: true, force: true });
});

describe('scheduler process', () => {
  it('publishes one occurrence event per user per occurrence in their zone, across a SIGKILL mid fan-out and a lease race', async () => {
    const now = Date.now();
    const schedule = pickSchedule(now);
    const ruleDef = {
      id: 'daily-digest',
      category: 'marketing',
      trigger: { schedule, timezone: 'user' },
      action: { send: { template: 'digest', channels: ['email'] } },
    };
    writeFileSync(path.join(rulesDir, 'daily-digest.json'), JSON.stringify(ruleDef));
    const rule = compile([ruleDef]).rules[0]!;
    // Topics created while other test files create theirs sometimes miss a leader at first: try again.
    await waitFor(() => bus!.ensureTopics(internalTopicSpecs(t, 6)).then(() => true), {
      timeout: 60_000,
      interval: 1000,
      message: 'cannot create the topics',
    });

    // The audience: 900 users in each of three zones, one without a zone (UTC), one with an
    // unknown zone (UTC), one who moved from Tokyo to Berlin, one deleted.
    const audience = new Map<string, string[]>([...ZONES, 'UTC'].map((z) => [z, []]));
    const events: NormalisedEvent[] = [];
    const ev = (
      userId: string,
      type: string,
      traits?: Record<string, unknown>,
      dt = 0,
    ): NormalisedEvent => ({
      // They arrived before the scheduler went down.
      id: `${iso.id}-${userId}-${type}-${dt}`,
      userId,
      type,
      ts: now - 4 * DAY + dt,
      receivedAt: now - 4 * DAY + dt,
      source: type === 'user_deleted' ? 'cdc:app' : 'test',
      properties: {},
      ...(traits ? { traits } : {}),
    });
    for (const zone of ZONES) {
      for (let i = 0; i < PER_ZONE; i++) {
        const userId = `${zone.split('/')[1]!.toLowerCase()}-${i}`;
        events.push(ev(userId, 'identify', { timezone: zone, plan: 'trial' }));
        audience.get(zone)!.push(userId);
      }
    }
    events.push(ev('plain', 'signup'), ev('martian', 'identify', { timezone: 'Mars/Olympus' }));
    audience.get('UTC')!.push('plain', 'martian');
    events.push(
      ev('moved', 'identify', { timezone: 'Asia/Tokyo' }),
      ev('moved', 'identify', { timezone: 'Europe/Berlin' }, 1),
    );
    audience.get('Europe/Berlin')!.push('moved');
    events.push(
      ev('gone', 'identify', { timezone: 'Europe/Berlin' }),
      ev('gone', 'user_deleted', undefined, 1),
    );
    // Users the topic no longer holds (quiet for longer than its retention) exist only in the
    // engine's state; the scheduler seeds them into its directory. A tombstone is not a user.
    const keys = createKeySpace(config.redis.keyPrefix);
    for (let i = 0; i < 5; i++) {
      const state = emptyState();
      state.traits.timezone = 'Asia/Kolkata';
      await redis.hset(
        userKeys(keys, `quiet-${i}`).state,
        's',
        serializeState(state),
        'p',
        '0',
        'e',
        '1',
        'o',
        '0',
      );
      audience.get('Asia/Kolkata')!.push(`quiet-${i}`);
    }
    await redis.hset(userKeys(keys, 'tombstone').state, 'p', '0', 'e', '1', 'o', '5');
    const publisher = bus.publisher();
    for (let i = 0; i < events.length; i += 500) {
      const records = events
        .slice(i, i + 500)
        .map((e) => ({ key: e.userId, ...encodeWithHeader(eventCodec, e) }));
      // A topic just created may not be known to every broker connection yet: retry until it is.
      await waitFor(() => publisher.publish(t.events, records).then(() => true), {
        timeout: 30_000,
        interval: 500,
        message: 'cannot publish the events',
      });
    }

    // The scheduler first saw the rule three days ago and has been down since; the catch-up window is two days.
    const progress = createRedisProgressStore(redis, keys);
    await progress.initSince('daily-digest', now - 3 * DAY);
    const expected = new Set<string>();
    const lastOccurrence = new Map<string, number>();
    for (const [zone, users] of audience) {
      const times = scheduleOccurrences(rule, now - 2 * DAY, now, zone);
      expect(times.length).toBe(2);
      lastOccurrence.set(zone, times[times.length - 1]!);
      for (const at of times)
        for (const u of users) expected.add(`${u}@${new Date(at).toISOString()}`);
    }

    const env = {
      ...iso.env,
      LC_RULES_DIR: rulesDir,
      LC_KAFKA_PARTITIONS: '6',
      LC_SCHEDULER_GROUP: iso.group('scheduler'),
      LC_SCHEDULER_PAGE_SIZE: String(PAGE),
      LC_SCHEDULER_TICK_MS: '200',
      LC_SCHEDULER_LEASE_MS: '3000',
      LC_SCHEDULER_CATCHUP_MS: String(2 * DAY),
      LC_LOG_LEVEL: 'info',
    };

    // First instance: killed once it is well into a zone's fan-out.
    const first = spawnScheduler(env);
    await waitFor(
      async () => {
        const p = await progress.load('daily-digest');
        return [...p.zones.values()].some((z) => z.at !== undefined && (z.s ?? 0) >= 20);
      },
      {
        timeout: 90_000,
        interval: 15,
        message: `the first scheduler never got into a fan-out; its output:\n${first.output().slice(-3000)}`,
      },
    );
    first.child.kill('SIGKILL');
    await first.exited;
    const atKill = await progress.load('daily-digest');
    expect([...atKill.zones.values()].some((z) => z.at !== undefined)).toBe(true);
    expect(first.output()).toContain(
      'skipping schedule occurrences older than the catch-up window',
    );

    // The directory holds everyone but the deleted user, each under the zone their schedule runs in.
    const directory = createRedisDirectory(redis, keys);
    expect(await directory.size()).toBe(ZONES.length * PER_ZONE + 3 + 5);
    expect(await directory.zoneOf('quiet-3')).toBe('Asia/Kolkata');
    expect(await directory.zoneOf('tombstone')).toBeNull();
    expect(await directory.zoneOf('moved')).toBe('Europe/Berlin');
    expect(await directory.zoneOf('martian')).toBe('UTC');
    expect(await directory.zoneOf('gone')).toBeNull();

    // Two fresh instances race for the rule; the lease lets one fan out at a time, from the stored position.
    const second = spawnScheduler(env);
    const third = spawnScheduler(env);
    await waitFor(
      async () => {
        const p = await progress.load('daily-digest');
        return [...lastOccurrence].every(([zone, last]) => {
          const z = p.zones.get(`z:${zone}`);
          return z !== undefined && z.at === undefined && z.w >= last;
        });
      },
      {
        timeout: 90_000,
        interval: 100,
        message: `the fan-out did not finish; output:\n${second.output().slice(-3000)}\n${third.output().slice(-3000)}`,
      },
    );
    second.child.kill('SIGTERM');
    third.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
    expect(await third.exited).toBe(0);

    const records = (await readTopic(bus.kafka, t.events, 60_000))
      .map((r) => ({ r, e: eventCodec.decode(r.value!, r.headers[SCHEMA_ID_HEADER]) }))
      .filter(({ e }) => e.type === 'schedule.occurrence');
    const got = records.map(({ e }) => `${e.userId}@${String(e.properties.occurrence)}`);
    const distinct = new Set(got);
    expect(distinct.size).toBe(expected.size);
    expect([...distinct].filter((x) => !expected.has(x))).toEqual([]);
    for (const { r, e } of records) {
      expect(r.key).toBe(e.userId);
      expect(e.id).toBe(occurrenceEvent('daily-digest', e.userId, e.ts).id);
      expect(e.properties).toEqual({
        ruleId: 'daily-digest',
        occurrence: new Date(e.ts).toISOString(),
      });
    }
    // The kill can repeat the pages that were in flight when it died; the lease race repeats nothing.
    const duplicates = got.length - distinct.size;
    expect(duplicates).toBeLessThanOrEqual(PAGE * PAGES_IN_FLIGHT);
    console.log(
      `scheduler kill test: ${expected.size} occurrence events expected, ${got.length} published, ${duplicates} duplicates`,
    );
  });
});
