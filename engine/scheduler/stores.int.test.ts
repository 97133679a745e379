// The scheduler's Redis scripts against a real Redis: the directory files, moves and removes
// users and pages a zone without mixing in zones that share a prefix; the rule lease lets one
// instance at a time move the progress, and a lapsed lease passes to the next.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { isolate } from '../../test/support/isolation.ts';
import { createKeySpace } from '../../platform/keys.ts';
import { createRedisDirectory, DIRECTORY_SHARDS, type UserDirectory } from './directory.ts';
import type { DirectoryChange } from './plan.ts';
import { createRedisProgressStore } from './progress.ts';

const config = isolate('scheduler-stores').config();
let redis: Redis;

beforeAll(() => {
  redis = new Redis(config.redis.url, { maxRetriesPerRequest: 3 });
});

afterAll(async () => {
  const keys = await redis.keys(`${config.redis.keyPrefix}*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
});

async function everyone(
  directory: UserDirectory,
  zone: string | null,
  limit: number,
): Promise<string[]> {
  const out: string[] = [];
  for (let shard = 0; shard < DIRECTORY_SHARDS; shard++) {
    let cursor: string | null = null;
    do {
      const page = await directory.page(shard, zone, cursor, limit);
      expect(page.userIds.length).toBeLessThanOrEqual(limit);
      out.push(...page.userIds);
      cursor = page.cursor;
    } while (cursor !== null);
  }
  return out.sort();
}

describe('scheduler stores on Redis', () => {
  it('directory: files, moves and removes users; pages one zone exactly', async () => {
    const directory = createRedisDirectory(redis, createKeySpace(`${config.redis.keyPrefix}dir:`));
    const changes = new Map<string, DirectoryChange>();
    for (let i = 0; i < 300; i++)
      changes.set(`u${i}`, {
        op: 'set',
        zone: i % 3 === 0 ? 'Etc/GMT+1' : i % 3 === 1 ? 'Etc/GMT+10' : 'UTC',
      });
    expect(await directory.apply(changes)).toBe(300);
    // Again: nothing changes.
    expect(await directory.apply(changes)).toBe(0);
    const gmt1 = [...changes]
      .filter(([, c]) => c.op === 'set' && c.zone === 'Etc/GMT+1')
      .map(([u]) => u)
      .sort();
    for (const limit of [1, 2, 7, 1000])
      expect(await everyone(directory, 'Etc/GMT+1', limit)).toEqual(gmt1);
    expect((await everyone(directory, null, 5)).length).toBe(300);

    await directory.apply(
      new Map<string, DirectoryChange>([
        ['u0', { op: 'set', zone: 'Asia/Tokyo' }], // moves
        ['u3', { op: 'touch' }], // known: stays
        ['u6', { op: 'add', zone: 'Asia/Tokyo' }], // known: stays
        ['u9', { op: 'delete' }],
        ['new', { op: 'touch' }],
        ['seeded', { op: 'add', zone: 'Asia/Tokyo' }],
      ]),
    );
    expect(await directory.zoneOf('u0')).toBe('Asia/Tokyo');
    expect(await directory.zoneOf('u3')).toBe('Etc/GMT+1');
    expect(await directory.zoneOf('u6')).toBe('Etc/GMT+1');
    expect(await directory.zoneOf('u9')).toBeNull();
    expect(await directory.zoneOf('new')).toBe('UTC');
    expect(await everyone(directory, 'Asia/Tokyo', 2)).toEqual(['seeded', 'u0']);
    expect(await everyone(directory, 'Etc/GMT+1', 3)).toEqual(
      gmt1.filter((u) => u !== 'u0' && u !== 'u9'),
    );
    expect(await directory.size()).toBe(301); // one removed, two added
    expect([...(await directory.zones())]).toEqual([
      ['Asia/Tokyo', 0],
      ['Etc/GMT+1', 0],
      ['Etc/GMT+10', 0],
      ['UTC', 0],
    ]);
    await directory.apply(new Map([['kiwi', { op: 'set', zone: 'Pacific/Auckland' }]]), 12345);
    await directory.apply(new Map([['kiwi2', { op: 'set', zone: 'Pacific/Auckland' }]]), 99999);
    expect((await directory.zones()).get('Pacific/Auckland')).toBe(12345);
  });

  it('progress: only the lease holder moves the progress; a lapsed lease passes on', async () => {
    const store = createRedisProgressStore(redis, createKeySpace(`${config.redis.keyPrefix}prog:`));
    expect(await store.initSince('r{1}', 1000)).toBe(1000);
    expect(await store.initSince('r{1}', 2000)).toBe(1000);
    expect(await store.acquire('r{1}', 'a', 300)).toBe(true);
    expect(await store.acquire('r{1}', 'b', 300)).toBe(false);
    expect(await store.acquire('r{1}', 'a', 300)).toBe(true); // renewal
    expect(await store.save('r{1}', 'a', 300, 'z:UTC', { w: 1, at: 5, s: 2, c: 'UTC\nu1' })).toBe(
      true,
    );
    expect(await store.save('r{1}', 'b', 300, 'z:UTC', { w: 9 })).toBe(false);
    expect((await store.load('r{1}')).zones.get('z:UTC')).toEqual({
      w: 1,
      at: 5,
      s: 2,
      c: 'UTC\nu1',
    });

    await new Promise((r) => setTimeout(r, 400));
    expect(await store.acquire('r{1}', 'b', 5000)).toBe(true);
    // The old holder, back from a pause, can no longer write.
    expect(await store.save('r{1}', 'a', 300, 'z:UTC', { w: 2 })).toBe(false);
    expect(await store.save('r{1}', 'b', 5000, 'z:UTC', { w: 5 })).toBe(true);
    await store.release('r{1}', 'a'); // not the holder: no effect
    expect(await store.acquire('r{1}', 'c', 300)).toBe(false);
    await store.release('r{1}', 'b');
    expect(await store.acquire('r{1}', 'c', 300)).toBe(true);

    await store.markDisabled('r{1}', 7777);
    expect(await store.load('r{1}')).toEqual({
      since: 1000,
      disabledAt: 7777,
      zones: new Map([['z:UTC', { w: 5 }]]),
    });
  });
});
