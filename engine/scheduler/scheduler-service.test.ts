// The scheduler service on the in-memory bus and stores, with a clock the test moves: the
// directory follows the events, each occurrence reaches each user once, a fan-out that dies
// half-way resumes from its stored position, a held lease keeps other instances out, and
// occurrences older than the catch-up window are skipped.
import { afterEach, describe, expect, it } from 'vitest';
import { InMemoryBus, type Subscription } from '../../platform/bus.ts';
import { encodeWithHeader, eventCodec } from '../../platform/avro.ts';
import { SCHEMA_ID_HEADER, topics, type NormalisedEvent } from '../../platform/contracts.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import { compile } from '../../test/support/scenarios.ts';
import { occurrenceEvent, scheduleOccurrences } from '../core/schedule.ts';
import {
  createMemoryDirectory,
  createMemoryProgressStore,
  createMemoryScheduler,
} from './memory.ts';
import { createSchedulerService, type SchedulerService } from './scheduler-service.ts';

const PREFIX = 'sched';
const EVENTS = topics(PREFIX).events;
const H = 3_600_000;
const START = Date.parse('2026-03-02T10:00:00Z');

const ruleSet = compile([
  {
    id: 'daily',
    category: 'marketing',
    trigger: { schedule: '0 9 * * *', timezone: 'user' },
    action: { send: { template: 't', channels: ['email'] } },
  },
]);
const daily = ruleSet.rules[0]!;

function identify(userId: string, traits: Record<string, unknown>, ts = START): NormalisedEvent {
  return {
    id: `id-${userId}-${ts}-${JSON.stringify(traits)}`,
    userId,
    type: 'identify',
    ts,
    receivedAt: ts,
    source: 'test',
    properties: {},
    traits,
  };
}
function event(userId: string, type: string, ts = START): NormalisedEvent {
  // Deletions come from the product database (CDC), the only origin allowed to erase a user.
  return {
    id: `ev-${userId}-${type}-${ts}`,
    userId,
    type,
    ts,
    receivedAt: ts,
    source: type === 'user_deleted' ? 'cdc:app' : 'test',
    properties: {},
  };
}

interface Harness {
  bus: InMemoryBus;
  directory: ReturnType<typeof createMemoryDirectory>;
  progress: ReturnType<typeof createMemoryProgressStore>;
  clock: { now: number };
  committedOffsets(groupId: string, topic: string): Promise<Map<number, string>>;
  service(opts?: {
    failAfterPublishes?: number;
    publishDelayMs?: number;
    instanceId?: string;
    catchUpMs?: number;
    seed?: () => Promise<unknown>;
  }): SchedulerService;
  publish(events: NormalisedEvent[]): Promise<void>;
  occurrences(): NormalisedEvent[];
  settle(): Promise<void>;
}

const started: SchedulerService[] = [];
afterEach(async () => {
  for (const s of started.splice(0)) await s.stop();
});

function harness(): Harness {
  const bus = new InMemoryBus(4);
  const clock = { now: START };
  const directory = createMemoryDirectory();
  const progress = createMemoryProgressStore(() => clock.now);
  const committedOffsets = async (groupId: string, topic: string) => {
    const sub: Subscription = { groupId, topics: [topic], eachBatch: async () => {} };
    const ends = await bus.endOffsets(topic);
    return new Map(
      [...ends.keys()].map((p) => [p, String(bus.committedOffset(sub, { topic, partition: p }))]),
    );
  };
  return {
    bus,
    directory,
    progress,
    clock,
    committedOffsets,
    service(opts = {}) {
      let publishes = 0;
      const failing = {
        ...bus,
        publisher: () => ({
          publish: async (
            topic: string,
            messages: Parameters<ReturnType<InMemoryBus['publisher']>['publish']>[1],
          ) => {
            if (opts.failAfterPublishes !== undefined && ++publishes > opts.failAfterPublishes)
              throw new Error('broker gone');
            if (opts.publishDelayMs) await new Promise((r) => setTimeout(r, opts.publishDelayMs));
            await bus.publisher().publish(topic, messages);
          },
        }),
        consumer: bus.consumer.bind(bus),
        ensureTopics: bus.ensureTopics.bind(bus),
        endOffsets: bus.endOffsets.bind(bus),
        deleteGroup: bus.deleteGroup.bind(bus),
        close: bus.close.bind(bus),
      };
      const s = createSchedulerService(
        {
          topicPrefix: PREFIX,
          groupId: 'scheduler',
          partitions: 4,
          catchUpMs: opts.catchUpMs ?? 48 * H,
          pageSize: 3,
          leaseMs: 30_000,
          tickMs: 3_600_000,
        },
        {
          bus: failing,
          directory,
          progress,
          ruleSet: () => ruleSet,
          committedOffsets,
          logger: silentLogger(),
          registry: createMetricsRegistry({ defaults: false }),
          clock: () => clock.now,
          ...(opts.instanceId ? { instanceId: opts.instanceId } : {}),
          ...(opts.seed ? { seed: opts.seed } : {}),
        },
      );
      started.push(s);
      return s;
    },
    publish: (events) =>
      bus.publisher().publish(
        EVENTS,
        events.map((e) => ({ key: e.userId, ...encodeWithHeader(eventCodec, e) })),
      ),
    occurrences: () =>
      bus
        .messages(EVENTS)
        .map((m) => eventCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]))
        .filter((e) => e.type === 'schedule.occurrence'),
    async settle() {
      for (let i = 0; i < 50; i++) await new Promise((r) => setTimeout(r, 5));
    },
  };
}

/** Users per zone of the standard audience. */
const AUDIENCE: Record<string, string[]> = {
  'Europe/Berlin': ['b1', 'b2', 'b3', 'b4', 'b5', 'moved'],
  'America/New_York': ['n1', 'n2', 'n3', 'n4'],
  UTC: ['plain', 'martian'],
};

async function seedAudience(h: Harness): Promise<void> {
  const events: NormalisedEvent[] = [];
  for (const u of AUDIENCE['Europe/Berlin']!.filter((u) => u !== 'moved'))
    events.push(identify(u, { timezone: 'Europe/Berlin' }));
  for (const u of AUDIENCE['America/New_York']!)
    events.push(identify(u, { timezone: 'America/New_York' }));
  events.push(event('plain', 'signup'), identify('martian', { timezone: 'Mars/Olympus' }));
  events.push(
    identify('moved', { timezone: 'Asia/Tokyo' }),
    identify('moved', { timezone: 'Europe/Berlin' }, START + 1),
  );
  events.push(
    identify('gone', { timezone: 'Europe/Berlin' }),
    event('gone', 'user_deleted', START + 1),
  );
  await h.publish(events);
}

/** The (user, occurrence) pairs every user of the audience must get between `from` and `to`. */
function expected(from: number, to: number): string[] {
  const out: string[] = [];
  for (const [zone, users] of Object.entries(AUDIENCE))
    for (const at of scheduleOccurrences(daily, from, to, zone))
      for (const u of users) out.push(`${u}@${new Date(at).toISOString()}`);
  return out.sort();
}
const pairs = (events: NormalisedEvent[]) =>
  events.map((e) => `${e.userId}@${String(e.properties.occurrence)}`).sort();

describe('scheduler service', () => {
  it('fans each occurrence out to every user of its zone once, and nothing more on later ticks', async () => {
    const h = harness();
    await seedAudience(h);
    const s = h.service();
    await s.start();
    await h.settle();
    expect(Object.fromEntries(h.directory.entries())).toMatchObject({
      moved: 'Europe/Berlin',
      martian: 'UTC',
      plain: 'UTC',
      n1: 'America/New_York',
    });
    expect(await h.directory.zoneOf('gone')).toBeNull();

    await s.tick();
    // The rule was first seen at START (10:00Z): nothing is due yet.
    expect(h.occurrences()).toEqual([]);
    h.clock.now = START + 30 * H; // 3 March 16:00Z: Berlin 08:00Z, UTC 09:00Z and New York 14:00Z are due
    await s.tick();
    await s.tick();
    const got = h.occurrences();
    expect(pairs(got)).toEqual(expected(START, h.clock.now));
    // New York's 09:00 on 2 March (14:00Z) came after the rule was first seen.
    expect(got.length).toBe(16);
    for (const e of got) expect(e.id).toBe(occurrenceEvent('daily', e.userId, e.ts).id);
    expect(
      h.bus
        .messages(EVENTS)
        .filter(
          (m) =>
            m.headers[SCHEMA_ID_HEADER] &&
            eventCodec.decode(m.value!).type === 'schedule.occurrence',
        )
        .every((m) => m.key === eventCodec.decode(m.value!).userId),
    ).toBe(true);
    expect(s.health().details.lastError).toBeNull();
    expect(h.progress.leaseHolder('daily')).toBeNull();
  });

  it('resumes a fan-out that died half-way from its stored page, and publishes nothing twice but that page', async () => {
    const h = harness();
    await seedAudience(h);
    const first = h.service({ failAfterPublishes: 2, instanceId: 'first' });
    await first.start();
    await h.settle();
    await first.tick();
    h.clock.now = START + 30 * H;
    await first.tick();
    expect(first.health().details.lastError).toMatch(/broker gone/);
    const before = h.occurrences().length;
    expect(before).toBeGreaterThan(0);
    expect(before).toBeLessThan(12);
    await first.stop();

    const second = h.service({ instanceId: 'second' });
    await second.start();
    // A new instance first waits for its directory to catch up with the events topic.
    await h.settle();
    await second.tick();
    await second.tick();
    const got = h.occurrences();

    expect([...new Set(pairs(got))]).toEqual(expected(START, h.clock.now));
    // The failed page was never published, so nothing came twice.
    expect(got.length).toBe(new Set(got.map((e) => e.id)).size);
  });

  it('leaves a rule to the instance holding its lease until the lease expires', async () => {
    const h = harness();
    await seedAudience(h);
    const s = h.service({ instanceId: 'me' });
    await s.start();
    await h.settle();
    await s.tick();
    h.clock.now = START + 30 * H;
    expect(await h.progress.acquire('daily', 'someone-else', 30_000)).toBe(true);
    await s.tick();
    expect(h.occurrences()).toEqual([]);
    h.clock.now += 31_000;
    await s.tick();
    await s.tick();
    expect(pairs(h.occurrences())).toEqual(expected(START, START + 30 * H));
  });

  it('skips occurrences older than the catch-up window and catches up the rest', async () => {
    const h = harness();
    await seedAudience(h);
    const s = h.service({ catchUpMs: 24 * H });
    await s.start();
    await h.settle();
    await s.tick();
    h.clock.now = START + 4 * 24 * H; // down for four days
    await s.tick();
    await s.tick();
    // Only 9:00 of the last 24 h in each zone.
    expect(pairs(h.occurrences())).toEqual(expected(h.clock.now - 24 * H, h.clock.now));
    expect(new Set(h.occurrences().map((e) => e.properties.occurrence)).size).toBe(3);
  });

  it('runs embedded on the in-memory bus with createMemoryScheduler', async () => {
    const bus = new InMemoryBus(2);
    const clock = { now: START };
    const { service, directory } = createMemoryScheduler(
      {
        topicPrefix: PREFIX,
        groupId: 'embedded',
        partitions: 2,
        catchUpMs: 48 * H,
        pageSize: 100,
        leaseMs: 30_000,
        tickMs: 3_600_000,
      },
      {
        bus,
        ruleSet: () => ruleSet,
        logger: silentLogger(),
        registry: createMetricsRegistry({ defaults: false }),
        clock: () => clock.now,
      },
    );
    started.push(service);
    await service.start();
    await bus.publisher().publish(
      EVENTS,
      [identify('t1', { timezone: 'Asia/Tokyo' })].map((e) => ({
        key: e.userId,
        ...encodeWithHeader(eventCodec, e),
      })),
    );
    for (let i = 0; i < 100 && (await directory.size()) === 0; i++)
      await new Promise((r) => setTimeout(r, 5));
    await service.tick();
    clock.now = START + 24 * H;
    await service.tick();
    await service.tick();
    const got = bus
      .messages(EVENTS)
      .map((m) => eventCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]))
      .filter((e) => e.type === 'schedule.occurrence');
    // 09:00 in Tokyo is 00:00Z.
    expect(got.map((e) => `${e.userId}@${String(e.properties.occurrence)}`)).toEqual([
      't1@2026-03-03T00:00:00.000Z',
    ]);
    expect(service.health()).toMatchObject({ ok: true, details: { lastError: null } });
  });

  it('fans out nothing until the directory seed has run, and retries a failed seed', async () => {
    const h = harness();
    await seedAudience(h);
    let calls = 0;
    const s = h.service({
      seed: async () => {
        if (++calls === 1) throw new Error('redis busy');
        await h.directory.apply(new Map([['old-timer', { op: 'add', zone: 'Europe/Berlin' }]]));
      },
    });
    await s.start(); // its first pass tries the seed, which fails
    await h.settle();
    expect(calls).toBe(1);
    expect(s.health().details).toMatchObject({ directorySeeded: false, lastError: 'redis busy' });
    await s.tick(); // the seed again; nothing else in this pass
    await h.settle();
    expect(s.health().details.directorySeeded).toBe(true);
    await s.tick(); // the rule is first seen now
    h.clock.now = START + 30 * H;
    await s.tick();
    await s.tick();
    const got = pairs(h.occurrences());
    expect(got).toContain('old-timer@2026-03-03T08:00:00.000Z');
    expect(got.length).toBe(17);
  });

  it('stops a directory partition whose batch keeps failing, and health names it', async () => {
    const h = harness();
    const broken = Object.create(h.directory) as typeof h.directory;
    broken.apply = async () => {
      throw new Error('directory store refused the batch');
    };
    const s = createSchedulerService(
      {
        topicPrefix: PREFIX,
        groupId: 'scheduler',
        partitions: 4,
        catchUpMs: 48 * H,
        pageSize: 3,
        leaseMs: 30_000,
        tickMs: 3_600_000,
        retry: { maxBatchAttempts: 2, retryBackoff: { initialMs: 5, maxMs: 5 } },
      },
      {
        bus: h.bus,
        directory: broken,
        progress: h.progress,
        ruleSet: () => ruleSet,
        committedOffsets: h.committedOffsets,
        logger: silentLogger(),
        registry: createMetricsRegistry({ defaults: false }),
        clock: () => h.clock.now,
      },
    );
    started.push(s);
    await s.start();
    await h.publish([identify('b1', { timezone: 'Europe/Berlin' })]);
    for (let i = 0; i < 200 && s.health().ok; i++) await new Promise((r) => setTimeout(r, 10));
    const partition = h.bus.messages(EVENTS)[0]!.partition;
    expect(s.health()).toMatchObject({
      ok: false,
      details: {
        stalled: [
          {
            topic: EVENTS,
            partition,
            offset: '0',
            attempts: 2,
            error: 'directory store refused the batch',
            reason: expect.stringMatching(/restart/) as string,
          },
        ],
      },
    });
  });

  it('does not send occurrences that fell while the rule was disabled once it is enabled again', async () => {
    const h = harness();
    await seedAudience(h);
    let current = ruleSet;
    const disabledSet = compile([{ ...(daily.def as object), enabled: false }]);
    const s = createSchedulerService(
      {
        topicPrefix: PREFIX,
        groupId: 'scheduler',
        partitions: 4,
        catchUpMs: 48 * H,
        pageSize: 3,
        leaseMs: 30_000,
        tickMs: 3_600_000,
      },
      {
        bus: h.bus,
        directory: h.directory,
        progress: h.progress,
        ruleSet: () => current,
        committedOffsets: h.committedOffsets,
        logger: silentLogger(),
        registry: createMetricsRegistry({ defaults: false }),
        clock: () => h.clock.now,
      },
    );
    started.push(s);
    await s.start();
    await h.settle();
    await s.tick(); // first seen at START
    current = disabledSet;
    h.clock.now = START + 30 * H; // 3 March's occurrences pass while the rule is off
    await s.tick();
    current = ruleSet;
    await s.tick();
    await s.tick();
    expect(h.occurrences()).toEqual([]);
    h.clock.now = START + 47 * H; // 4 March 09:00: Berlin (08:00Z) and UTC (09:00Z) are due again
    await s.tick();
    await s.tick();
    expect(pairs(h.occurrences())).toEqual(expected(START + 30 * H, h.clock.now));
    expect(h.occurrences().length).toBe(8);
  });

  it('waits for the directory to catch up with the events topic before a new occurrence, at most DIRECTORY_WAIT_MS', async () => {
    const h = harness();
    await seedAudience(h);
    const s = createSchedulerService(
      {
        topicPrefix: PREFIX,
        groupId: 'scheduler',
        partitions: 4,
        catchUpMs: 48 * H,
        pageSize: 3,
        leaseMs: 30_000,
        tickMs: 3_600_000,
      },
      {
        bus: h.bus,
        directory: h.directory,
        progress: h.progress,
        ruleSet: () => ruleSet,
        // A directory group that never commits: always behind.
        committedOffsets: async () => new Map(),
        logger: silentLogger(),
        registry: createMetricsRegistry({ defaults: false }),
        clock: () => h.clock.now,
      },
    );
    started.push(s);
    await s.start();
    await h.settle();
    await s.tick();
    h.clock.now = Date.parse('2026-03-03T08:04:00Z'); // Berlin's 09:00 was 4 minutes ago
    await s.tick();
    await s.tick();
    // New York's 2 March 09:00 (14:00Z) has waited long enough; Berlin's has not.
    const ny = AUDIENCE['America/New_York']!.map((u) => `${u}@2026-03-02T14:00:00.000Z`);
    expect(pairs(h.occurrences())).toEqual(ny.sort());
    expect(s.health().details.directorySyncedAt).toBeNull();
    h.clock.now = Date.parse('2026-03-03T08:05:00Z') + 1;
    await s.tick();
    await s.tick();
    expect(pairs(h.occurrences())).toEqual(
      [...ny, ...AUDIENCE['Europe/Berlin']!.map((u) => `${u}@2026-03-03T08:00:00.000Z`)].sort(),
    );
  });

  it('starts a zone new to the directory at its first user, not in its past', async () => {
    const h = harness();
    await seedAudience(h);
    const s = h.service();
    await s.start();
    await h.settle();
    await s.tick();
    // 3 March 10:00Z: Tokyo's 09:00 (00:00Z) passed before its first user arrived.
    h.clock.now = Date.parse('2026-03-03T10:00:00Z');
    const kenji = identify('kenji', { timezone: 'Asia/Tokyo' }, h.clock.now);
    await h.publish([kenji]);
    await h.settle();
    await s.tick();
    await s.tick();
    expect(pairs(h.occurrences()).filter((p) => p.startsWith('kenji@'))).toEqual([]);
    h.clock.now = Date.parse('2026-03-04T00:00:01Z');
    await s.tick();
    await s.tick();
    expect(pairs(h.occurrences()).filter((p) => p.startsWith('kenji@'))).toEqual([
      'kenji@2026-03-04T00:00:00.000Z',
    ]);
  });

  it('stops gracefully in the middle of a fan-out with its position stored after what it published', async () => {
    const h = harness();
    await seedAudience(h);
    const first = h.service({ publishDelayMs: 15, instanceId: 'first' });
    await first.start();
    await h.settle();
    await first.tick();
    h.clock.now = START + 30 * H;
    const ticking = first.tick();
    for (let i = 0; i < 200 && h.occurrences().length === 0; i++)
      await new Promise((r) => setTimeout(r, 2));
    await first.stop();
    await ticking;
    const before = h.occurrences().length;
    expect(before).toBeGreaterThan(0);
    expect(before).toBeLessThan(16);
    expect(h.progress.leaseHolder('daily')).toBeNull();

    const second = h.service({ instanceId: 'second' });
    await second.start();
    await h.settle();
    await second.tick();
    await second.tick();
    const got = h.occurrences();
    expect(pairs(got)).toEqual(expected(START, h.clock.now));
    expect(got.length).toBe(new Set(got.map((e) => e.id)).size);
  });
});
