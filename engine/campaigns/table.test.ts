// The campaigns table on the in-memory bus: a change answers once the writer's view holds it,
// other views follow, writers of one campaign take turns on the latest state, a view started
// later reads everything back, and records it cannot read are passed by.
import { afterEach, describe, expect, it } from 'vitest';
import { InMemoryBus } from '../../platform/bus.ts';
import { topics } from '../../platform/contracts.ts';
import { silentLogger } from '../../platform/logger.ts';
import { campaignMemberEvent } from '../core/campaign.ts';
import type { Campaign } from './model.ts';
import {
  campaignViewFreshness,
  createCampaignTable,
  createMemoryCampaignLocks,
  type CampaignTable,
} from './table.ts';

const T = topics('tbl');
const started: CampaignTable[] = [];
afterEach(async () => {
  for (const t of started.splice(0)) await t.stop();
});

function draft(id: string, name = 'Friday news'): Omit<Campaign, 'revision'> {
  return {
    id,
    name,
    state: 'draft',
    audience: { type: 'list' },
    list: null,
    message: { template: 'weekly_digest', channels: ['email'] },
    schedule: { type: 'now' },
    throttle: null,
    createdAt: '2026-12-01T10:00:00.000Z',
    createdBy: 'key_1',
    updatedAt: '2026-12-01T10:00:00.000Z',
    updatedBy: 'key_1',
    scheduledAt: null,
    startedAt: null,
    endedAt: null,
  };
}

async function view(bus: InMemoryBus, locks = createMemoryCampaignLocks()) {
  const t = createCampaignTable(
    { topics: T },
    { bus, publisher: bus.publisher(), locks, logger: silentLogger() },
  );
  await t.start();
  started.push(t);
  return t;
}

describe('campaigns table', () => {
  it('answers a change once its own view holds it, and numbers revisions', async () => {
    const bus = new InMemoryBus(1);
    const a = await view(bus);
    const created = await a.change('c1', () => draft('c1'));
    expect(created).toMatchObject({ changed: true, before: undefined });
    expect(a.get('c1')).toEqual({ ...draft('c1'), revision: 1 });
    const v = a.version();
    const renamed = await a.change('c1', (cur) => ({ ...cur!, name: 'Renamed' }));
    expect(renamed.before?.revision).toBe(1);
    expect(renamed.after).toMatchObject({ name: 'Renamed', revision: 2 });
    expect(a.version()).toBeGreaterThan(v);
    // Nothing to change: nothing written.
    const same = await a.change('c1', () => null);
    expect(same).toMatchObject({ changed: false, after: { revision: 2 } });
    expect(bus.messages(T.campaigns)).toHaveLength(2);
  });

  it('lets writers in two processes take turns on the latest state', async () => {
    const bus = new InMemoryBus(1);
    const locks = createMemoryCampaignLocks();
    const a = await view(bus, locks);
    const b = await view(bus, locks);
    await a.change('c1', () => draft('c1'));
    // Each adds one to a counter kept in the name: none may be lost.
    await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        (i % 2 ? a : b).change('c1', (cur) => ({
          ...cur!,
          name: `${Number(cur!.name.split(' ').pop()) + 1 || 1}`,
        })),
      ),
    );
    await a.syncToEnd();
    await b.syncToEnd();
    expect(a.get('c1')).toMatchObject({ name: '10', revision: 11 });
    expect(b.get('c1')).toEqual(a.get('c1'));
  });

  it('reads the topic back when started later, passing by records it cannot read', async () => {
    const bus = new InMemoryBus(1);
    const a = await view(bus);
    await a.change('c1', () => draft('c1'));
    await a.change('c2', () => ({ ...draft('c2'), createdAt: '2026-12-02T10:00:00.000Z' }));
    await bus.publisher().publish(T.campaigns, [
      { key: 'c3', value: Buffer.from('{"id":"c3"}') },
      { key: 'c4', value: Buffer.from('not json') },
    ]);
    const later = await view(bus);
    expect(later.list().map((c) => c.id)).toEqual(['c2', 'c1']);
    expect(later.health()).toMatchObject({ ok: true, caughtUp: true, campaigns: 2 });
  });

  it('keeps a newer revision when an older record is read after it', async () => {
    const bus = new InMemoryBus(1);
    const a = await view(bus);
    await a.change('c1', () => draft('c1'));
    await a.change('c1', (cur) => ({ ...cur!, name: 'second' }));
    await bus
      .publisher()
      .publish(T.campaigns, [
        { key: 'c1', value: Buffer.from(JSON.stringify({ ...draft('c1'), revision: 1 })) },
      ]);
    await a.syncToEnd();
    expect(a.get('c1')).toMatchObject({ name: 'second', revision: 2 });
  });

  it('makes the engine catch up before members of a campaign it does not know, and before live ones now and then', async () => {
    const bus = new InMemoryBus(1);
    const writer = await view(bus);
    const reader = createCampaignTable(
      { topics: T },
      { bus, publisher: bus.publisher(), logger: silentLogger() },
    );
    await reader.start();
    started.push(reader);
    expect(() => reader.change('x', () => null)).toThrow(/read-only/);
    const clock = { now: 0 };
    let syncs = 0;
    const counted = {
      get: reader.get,
      syncToEnd: async () => {
        syncs++;
        await reader.syncToEnd();
      },
    };
    const ready = campaignViewFreshness(counted, { maxAgeMs: 500, clock: () => clock.now });
    await writer.change('c1', () => ({ ...draft('c1'), state: 'running' }));
    const member = campaignMemberEvent('c1', 'r', 'u1', 0);
    // Whatever the reader's own consumer has read so far, after this it knows the campaign.
    await ready([member]);
    expect(reader.get('c1')?.state).toBe('running');
    const after = syncs;
    await ready([member]);
    expect(syncs).toBe(after);
    clock.now = 501;
    await ready([member]);
    expect(syncs).toBe(after + 1);
    // Other events never wait for the view.
    clock.now = 10_000;
    await ready([{ ...member, type: 'identify' }]);
    expect(syncs).toBe(after + 1);
  });
});
