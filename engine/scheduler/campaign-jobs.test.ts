// Campaigns through the scheduler and the engine, all in memory (the demo's wiring): a list
// campaign reaches each member the engine knows once, a throttled run is stopped half-way, a
// recurring campaign runs at 10:00 in each user's zone with one run id per local occurrence,
// and a one-off run missed beyond the catch-up window completes without sending.
import { afterEach, describe, expect, it } from 'vitest';
import { InMemoryBus } from '../../platform/bus.ts';
import { encodeWithHeader, eventCodec, sendCodec } from '../../platform/avro.ts';
import {
  SCHEMA_ID_HEADER,
  topics,
  type NormalisedEvent,
  type SendCommand,
} from '../../platform/contracts.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import { compile } from '../../test/support/scenarios.ts';
import { waitFor } from '../../test/support/wait.ts';
import { CAMPAIGN_EVENT, campaignRuleId } from '../core/campaign.ts';
import { createMemoryEngine } from '../runtime/wiring.ts';
import { createMemoryAudienceLists } from '../campaigns/audience.ts';
import { createCampaignRuleSet } from '../campaigns/compile.ts';
import type { Campaign } from '../campaigns/model.ts';
import {
  campaignViewFreshness,
  createCampaignTable,
  createMemoryCampaignLocks,
} from '../campaigns/table.ts';
import { campaignJobs } from './campaign-jobs.ts';
import { createMemoryScheduler } from './memory.ts';
import { fanOutSummary } from './progress.ts';

const PREFIX = 'cj';
const T = topics(PREFIX);
const H = 3_600_000;
const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const s of stops.splice(0).reverse()) await s();
});

const base = compile(
  [],
  [
    {
      id: 'pro',
      conditions: { all: [{ fact: 'user', path: '$.plan', operator: 'equal', value: 'pro' }] },
    },
  ],
);

/** Engine, scheduler and one campaigns view on one in-memory bus; the scheduler's clock is `Date.now() + offset`. */
async function world(opts: { offsetMs?: number; catchUpMs?: number } = {}) {
  const bus = new InMemoryBus(2);
  const clock = () => Date.now() + (opts.offsetMs ?? 0);
  const logger = silentLogger();
  const registry = createMetricsRegistry({ defaults: false });
  const table = createCampaignTable(
    { topics: T },
    { bus, publisher: bus.publisher(), locks: createMemoryCampaignLocks(), logger },
  );
  await table.start();
  stops.push(() => table.stop());
  const lists = createMemoryAudienceLists();
  const rules = createCampaignRuleSet({ base: () => base, campaigns: table, logger });
  const engine = createMemoryEngine(
    { topicPrefix: PREFIX, groupId: 'engine', timerPollMs: 1000, partitions: 2 },
    { bus, ruleSet: rules.current, logger, registry, prepare: campaignViewFreshness(table) },
  );
  await engine.service.start();
  stops.push(() => engine.service.stop());
  const scheduler = createMemoryScheduler(
    {
      topicPrefix: PREFIX,
      groupId: 'scheduler',
      partitions: 2,
      catchUpMs: opts.catchUpMs ?? 6 * H,
      pageSize: 4,
      leaseMs: 30_000,
      tickMs: 50,
    },
    {
      bus,
      ruleSet: () => base,
      logger,
      registry,
      clock,
      jobs: (directory) => () =>
        campaignJobs({ table, lists, directory, defaultRate: 0, logger, clock }),
    },
  );
  await scheduler.service.start();
  stops.push(() => scheduler.service.stop());

  const publish = (events: NormalisedEvent[]) =>
    bus.publisher().publish(
      T.events,
      events.map((e) => ({ key: e.userId, ...encodeWithHeader(eventCodec, e) })),
    );
  const user = (
    userId: string,
    traits: Record<string, unknown>,
    at = Date.now() - 10 * 24 * H,
  ) => ({
    id: `id-${userId}`,
    userId,
    type: 'identify',
    ts: at,
    receivedAt: at,
    source: 'test',
    properties: {},
    traits,
  });
  const sends = (): SendCommand[] =>
    bus.messages(T.sends).map((m) => sendCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]));
  const members = (): NormalisedEvent[] =>
    bus
      .messages(T.events)
      .map((m) => eventCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]))
      .filter((e) => e.type === CAMPAIGN_EVENT);
  const create = async (c: Partial<Campaign> & Pick<Campaign, 'id' | 'audience' | 'schedule'>) => {
    const at = new Date(clock()).toISOString();
    await table.change(c.id, () => ({
      name: c.id,
      state: 'scheduled',
      list: null,
      message: { template: 'weekly_digest', channels: ['email'] },
      throttle: null,
      createdAt: at,
      createdBy: 'test',
      updatedAt: at,
      updatedBy: 'test',
      scheduledAt: at,
      startedAt: null,
      endedAt: null,
      ...c,
    }));
  };
  const progress = async (id: string) =>
    fanOutSummary(await scheduler.progress.load(campaignRuleId(id)));
  return { bus, table, lists, publish, user, sends, members, create, progress, scheduler };
}

describe('campaign fan-out', () => {
  it('reaches each member of a list once, the engine sending to those it knows, then completes', async () => {
    const w = await world();
    await w.publish([
      w.user('ada', { plan: 'pro' }),
      w.user('bert', { plan: 'free' }),
      w.user('chen', { plan: 'pro' }),
      w.user('dora', { plan: 'pro' }),
    ]);
    await w.lists.replace('news', ['ada', 'bert', 'chen', 'ghost']);
    await w.create({ id: 'news', audience: { type: 'list' }, schedule: { type: 'now' } });
    await waitFor(() => w.table.get('news')?.state === 'completed', { timeout: 10_000 });
    await waitFor(() => w.sends().length >= 3, { timeout: 10_000 });
    await new Promise((r) => setTimeout(r, 300));
    expect(
      w
        .sends()
        .map((s) => s.userId)
        .sort(),
    ).toEqual(['ada', 'bert', 'chen']);
    expect(new Set(w.sends().map((s) => s.campaignId))).toEqual(new Set(['news']));
    expect(
      w
        .members()
        .map((e) => e.userId)
        .sort(),
    ).toEqual(['ada', 'bert', 'chen', 'ghost']);
    const c = w.table.get('news')!;
    expect(c.startedAt).not.toBeNull();
    expect(c.endedAt).not.toBeNull();
    expect(await w.progress('news')).toEqual({
      runs: 1,
      skippedRuns: 0,
      planned: 4,
      fannedOut: 4,
      inProgress: [],
    });
  });

  it('stops a throttled run before its next page, and the engine drops members already out', async () => {
    const w = await world();
    const users = Array.from({ length: 60 }, (_, i) =>
      w.user(`u${String(i).padStart(2, '0')}`, { plan: 'pro' }),
    );
    await w.publish(users);
    await w.create({
      id: 'slow',
      audience: { type: 'segment', segment: 'pro' },
      schedule: { type: 'now' },
      throttle: { perSecond: 20 },
    });
    await waitFor(async () => (await w.progress('slow')).fannedOut >= 8, { timeout: 10_000 });
    await w.table.change('slow', (cur) => ({
      ...cur!,
      state: 'stopped',
      endedAt: new Date().toISOString(),
    }));
    const atStop = (await w.progress('slow')).fannedOut;
    await new Promise((r) => setTimeout(r, 1000));
    const later = await w.progress('slow');
    // At most the page that was waiting for its turn when the stop came.
    expect(later.fannedOut - atStop).toBeLessThanOrEqual(4);
    expect(later.fannedOut).toBeLessThan(30);
    expect(w.members().length).toBe(later.fannedOut);
    const sent = w.sends().length;
    expect(sent).toBeLessThanOrEqual(later.fannedOut);
    await new Promise((r) => setTimeout(r, 500));
    expect(w.sends().length).toBe(sent);
    expect(w.table.get('slow')?.state).toBe('stopped');
  });

  it("runs a recurring campaign at 10:00 in each user's zone, once per local occurrence", async () => {
    // The scheduler's clock: Friday 4 December 2026, 11:00 in Berlin (10:00Z), 05:00 in New York.
    const friday = Date.parse('2026-12-04T10:00:00Z');
    const w = await world({ offsetMs: friday - Date.now() });
    await w.publish([
      w.user('berlin-1', { plan: 'pro', timezone: 'Europe/Berlin' }, friday - 10 * 24 * H),
      w.user('berlin-2', { plan: 'free', timezone: 'Europe/Berlin' }, friday - 10 * 24 * H),
      w.user('ny-1', { plan: 'pro', timezone: 'America/New_York' }, friday - 10 * 24 * H),
    ]);
    await w.table.change('weekly', () => ({
      id: 'weekly',
      name: 'weekly',
      state: 'scheduled',
      audience: { type: 'segment', segment: 'pro' },
      list: null,
      message: { template: 'weekly_digest', channels: ['email'] },
      schedule: { type: 'recurring', cron: '0 10 * * 5', timezone: 'user' },
      throttle: null,
      createdAt: '2026-12-02T10:00:00.000Z',
      createdBy: 'test',
      updatedAt: '2026-12-02T10:00:00.000Z',
      updatedBy: 'test',
      scheduledAt: '2026-12-02T10:00:00.000Z',
      startedAt: null,
      endedAt: null,
    }));
    await waitFor(() => w.members().length >= 2, { timeout: 10_000 });
    await new Promise((r) => setTimeout(r, 500));
    // Berlin's Friday 10:00 (09:00Z) has come, New York's (15:00Z) has not.
    expect(
      w.members().map((e) => [e.userId, e.properties.runId, new Date(e.ts).toISOString()]),
    ).toEqual(
      expect.arrayContaining([
        ['berlin-1', '2026-12-04T10:00', '2026-12-04T09:00:00.000Z'],
        ['berlin-2', '2026-12-04T10:00', '2026-12-04T09:00:00.000Z'],
      ]),
    );
    expect(w.members()).toHaveLength(2);
    await waitFor(() => w.sends().length >= 1, { timeout: 10_000 });
    expect(w.sends().map((s) => [s.userId, s.createdAt])).toEqual([
      ['berlin-1', Date.parse('2026-12-04T09:00:00Z')],
    ]);
    expect(w.table.get('weekly')?.state).toBe('running');
    expect((await w.progress('weekly')).runs).toBe(1);
  });

  it('completes a one-off run missed by more than the catch-up window without sending it', async () => {
    const w = await world({ catchUpMs: H });
    await w.publish([w.user('ada', { plan: 'pro' })]);
    const at = new Date(Date.now() - 2 * H).toISOString();
    await w.create({
      id: 'missed',
      audience: { type: 'segment', segment: 'pro' },
      schedule: { type: 'at', at },
      scheduledAt: new Date(Date.now() - 3 * H).toISOString(),
    });
    await waitFor(() => w.table.get('missed')?.state === 'completed', { timeout: 10_000 });
    expect(w.members()).toEqual([]);
    expect(await w.progress('missed')).toMatchObject({ runs: 0, skippedRuns: 1, fannedOut: 0 });
  });
});
