import { afterEach, describe, expect, it } from 'vitest';
import { InMemoryBus } from '../../platform/bus.ts';
import { topics } from '../../platform/contracts.ts';
import { silentLogger } from '../../platform/logger.ts';
import {
  createMemoryCoordinator,
  createTemplateStore,
  type TemplateCoordinator,
  type TemplateStore,
} from './store.ts';
import { FILES_AUTHOR, contentHash, parseRecordKey, publishedVersion } from './versions.ts';

const T = topics('t');
const started: TemplateStore[] = [];

afterEach(async () => {
  for (const s of started.splice(0)) await s.stop();
});

async function open(
  bus: InMemoryBus,
  coordinator: TemplateCoordinator = createMemoryCoordinator(),
): Promise<TemplateStore> {
  const store = createTemplateStore(
    { topics: T, syncTimeoutMs: 5000 },
    { bus, publisher: bus.publisher(), coordinator, logger: silentLogger() },
  );
  await store.start();
  started.push(store);
  return store;
}

const files = (text: string) => ({
  'sms.en.hbs': text,
  'sample.json': '{"user":{"firstName":"Ada"}}',
});

describe('the templates store', () => {
  it('answers a write once its own view has it, and a process started later reads every record from the beginning', async () => {
    const bus = new InMemoryBus(4);
    const a = await open(bus);
    const v1 = await a.save({ name: 'hi', files: files('v1'), author: 'key_a', message: 'first' });
    // Read your writes: the answer comes after the view applied the record.
    expect(a.latest('hi')).toMatchObject({ version: 1, author: 'key_a', message: 'first' });
    expect(v1.hash).toBe(contentHash(files('v1')));
    await a.save({ name: 'hi', files: files('v2'), author: 'key_b', message: 'second' });
    await a.publish({ name: 'hi', version: 2, channels: ['sms'], actor: 'key_b' });

    const b = await open(bus);
    expect(b.versions('hi').map((v) => [v.version, v.author])).toEqual([
      [1, 'key_a'],
      [2, 'key_b'],
    ]);
    expect(b.version('hi', 1)?.files['sms.en.hbs']).toBe('v1');
    expect(publishedVersion(b.publication('hi'), 'sms', 'de', 'en')).toBe(2);
    expect(b.health()).toMatchObject({ ok: true, caughtUp: true });
  });

  it('keys every version apart so compaction keeps them all, and the publication under one key', async () => {
    const bus = new InMemoryBus(4);
    const a = await open(bus);
    for (const text of ['one', 'two', 'three'])
      await a.save({ name: 'hi', files: files(text), author: 'k', message: text });
    await a.publish({ name: 'hi', version: 3, actor: 'k' });
    await a.publish({ name: 'hi', version: 1, actor: 'k' });
    const keys = bus.messages(T.templates).map((m) => m.key);
    expect(keys).toEqual(['v:hi:1', 'v:hi:2', 'v:hi:3', 'p:hi', 'p:hi']);
    // What compaction keeps (the last record per key) is the whole state.
    const compacted = new Map(bus.messages(T.templates).map((m) => [m.key, m]));
    expect([...compacted.keys()].map(parseRecordKey)).toEqual([
      { kind: 'version', name: 'hi', version: 1 },
      { kind: 'version', name: 'hi', version: 2 },
      { kind: 'version', name: 'hi', version: 3 },
      { kind: 'publication', name: 'hi' },
    ]);
    const last = JSON.parse(compacted.get('p:hi')!.value!.toString()) as {
      channels: Record<string, Record<string, number>>;
    };
    expect(last.channels.sms).toEqual({ '*': 1 });
  });

  it('never hands out one version number twice when two instances save at once', async () => {
    const bus = new InMemoryBus(4);
    const shared = createMemoryCoordinator();
    const [a, b] = [await open(bus, shared), await open(bus, shared)];
    const saves = Array.from({ length: 20 }, (_, i) =>
      (i % 2 ? a : b).save({ name: 'race', files: files(`n${i}`), author: 'k', message: `${i}` }),
    );
    const numbers = (await Promise.all(saves)).map((v) => v.version).sort((x, y) => x - y);
    expect(numbers).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    await expect.poll(() => a.versions('race').length).toBe(20);
    expect(b.versions('race').map((v) => v.message).sort()).toEqual(
      Array.from({ length: 20 }, (_, i) => `${i}`).sort(),
    );
  });

  it('the race is real: numbering from each view alone gives two saves the same number, and the first stays', async () => {
    const bus = new InMemoryBus(4);
    // What each instance would do without a shared counter: one more than it has seen.
    const naive: TemplateCoordinator = {
      ...createMemoryCoordinator(),
      nextVersion: async (_name, stored) => stored + 1,
    };
    const [a, b] = [await open(bus, naive), await open(bus, naive)];
    const [x, y] = await Promise.all([
      a.save({ name: 'race', files: files('from a'), author: 'a', message: 'a' }),
      b.save({ name: 'race', files: files('from b'), author: 'b', message: 'b' }),
    ]);
    expect(x.version).toBe(y.version);
    expect(a.versions('race')).toHaveLength(1);
  });

  it('publishes per channel and locale, and rolls an entry back to the version it had before', async () => {
    const bus = new InMemoryBus(4);
    const s = await open(bus);
    for (const text of ['one', 'two', 'three'])
      await s.save({ name: 'hi', files: files(text), author: 'k', message: text });
    await s.publish({ name: 'hi', version: 1, actor: 'k' });
    const de = await s.publish({ name: 'hi', version: 3, channels: ['sms'], locales: ['de'], actor: 'k' });
    expect(de.changes).toEqual([{ channel: 'sms', locale: 'de', from: null, to: 3 }]);
    await s.publish({ name: 'hi', version: 2, channels: ['sms'], actor: 'k' });
    const pub = () => s.publication('hi');
    expect(publishedVersion(pub(), 'sms', 'de-AT', 'en')).toBe(3);
    expect(publishedVersion(pub(), 'sms', 'fr', 'en')).toBe(2);
    expect(publishedVersion(pub(), 'webhook', 'fr', 'en')).toBe(1);

    const back = await s.rollback({ name: 'hi', channels: ['sms'], actor: 'k' });
    expect(back.changes).toEqual([{ channel: 'sms', locale: '*', from: 2, to: 1 }]);
    expect(publishedVersion(pub(), 'sms', 'fr', 'en')).toBe(1);
    // A rollback never unpublishes: the first publication of an entry has nothing before it.
    for (const locales of [['de'], ['*']])
      await expect(
        s.rollback({ name: 'hi', channels: ['sms'], locales, actor: 'k' }),
      ).rejects.toMatchObject({ code: 'LC_ERR_CONFLICT', message: expect.stringContaining('sms/') });
    expect(publishedVersion(pub(), 'sms', 'de', 'en')).toBe(3);
    await expect(
      s.publish({ name: 'hi', version: 9, actor: 'k' }),
    ).rejects.toMatchObject({ code: 'LC_ERR_NOT_FOUND' });
    await expect(
      s.publish({ name: 'hi', version: 1, channels: ['email'], actor: 'k' }),
    ).rejects.toMatchObject({ code: 'LC_ERR_TEMPLATE_INVALID' });
  });

  it('seeds the folder once across restarts and concurrent starts, and only changed files become versions', async () => {
    const bus = new InMemoryBus(4);
    const shared = createMemoryCoordinator();
    const folders = [{ name: 'hi', files: files('from git') }];
    const [a, b] = [await open(bus, shared), await open(bus, shared)];
    await Promise.all([
      a.seed(folders, { publishChanged: true }),
      b.seed(folders, { publishChanged: true }),
    ]);
    const restarted = await open(bus, shared);
    expect(await restarted.seed(folders, { publishChanged: true })).toEqual({
      created: [],
      published: [],
    });
    expect(restarted.versions('hi').map((v) => [v.version, v.author])).toEqual([[1, FILES_AUTHOR]]);
    expect(publishedVersion(restarted.publication('hi'), 'sms', 'en', 'en')).toBe(1);

    // A marketer's version stands when the files did not change.
    await restarted.save({ name: 'hi', files: files('edited'), author: 'key_m', message: 'm' });
    await restarted.publish({ name: 'hi', version: 2, actor: 'key_m' });
    const again = await open(bus, shared);
    await again.seed(folders, { publishChanged: true });
    expect(again.latest('hi')?.version).toBe(2);
    expect(publishedVersion(again.publication('hi'), 'sms', 'en', 'en')).toBe(2);

    // A changed file becomes a version, published when the team opted for it...
    const changed = [{ name: 'hi', files: files('changed in git') }];
    await again.seed(changed, { publishChanged: true });
    expect(again.latest('hi')).toMatchObject({ version: 3, author: FILES_AUTHOR });
    expect(publishedVersion(again.publication('hi'), 'sms', 'en', 'en')).toBe(3);
    // ...and an older checkout restarting does not bring its files back.
    await again.seed(folders, { publishChanged: true });
    expect(again.latest('hi')?.version).toBe(3);
    // Without the option a changed file is stored but not published.
    await again.seed([{ name: 'hi', files: files('draft in git') }], { publishChanged: false });
    expect(again.latest('hi')?.version).toBe(4);
    expect(publishedVersion(again.publication('hi'), 'sms', 'en', 'en')).toBe(3);
  });
});
