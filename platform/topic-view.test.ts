// The compacted-topic view on the in-memory bus: read your writes, other views follow, a view
// started later reads everything back, tombstones delete, older revisions do not undo newer
// ones, records it cannot read are passed by, and its group leaves nothing behind.
import { afterEach, describe, expect, it } from 'vitest';
import { InMemoryBus } from './bus.ts';
import { ErrorCodes } from './errors.ts';
import { silentLogger } from './logger.ts';
import { createTopicView, type TopicView, type TopicViewCodec } from './topic-view.ts';

interface Doc {
  id: string;
  rev: number;
  text: string;
}

const codec: TopicViewCodec<Doc> = {
  encode: (d) => Buffer.from(JSON.stringify(d)),
  decode(key, value) {
    try {
      const d = JSON.parse(value.toString()) as Doc;
      if (d.id !== key || typeof d.rev !== 'number') return { ok: false, reason: 'bad shape' };
      return { ok: true, value: d };
    } catch {
      return { ok: false, reason: 'not JSON' };
    }
  },
};

const TOPIC = 'tv.docs';
const started: TopicView<Doc>[] = [];
afterEach(async () => {
  for (const v of started.splice(0)) await v.stop();
});

async function open(bus: InMemoryBus, opts: { syncTimeoutMs?: number } = {}) {
  const v = createTopicView<Doc>(
    {
      topic: TOPIC,
      dlqTopic: 'tv.dlq',
      name: 'doc-view',
      codec,
      spec: { topic: TOPIC, partitions: 1, compacted: true },
      supersedes: (next, current) => next.rev >= current.rev,
      ...opts,
    },
    { bus, publisher: bus.publisher(), logger: silentLogger() },
  );
  await v.start();
  started.push(v);
  return v;
}

const doc = (id: string, rev: number, text = `${id}@${rev}`): Doc => ({ id, rev, text });

describe('topic view', () => {
  it('answers a write once its own copy holds it; another view follows; a later one reads it all back', async () => {
    const bus = new InMemoryBus(1);
    const a = await open(bus);
    const b = await open(bus);
    await a.put('d1', doc('d1', 1));
    // Read your writes: no waiting after the answer.
    expect(a.get('d1')).toEqual(doc('d1', 1));
    await a.put('d2', doc('d2', 1));
    await b.syncToEnd();
    expect(b.get('d2')).toEqual(doc('d2', 1));
    const later = await open(bus);
    expect([...later.entries()].map(([k]) => k)).toEqual(['d1', 'd2']);
    expect(later.health()).toEqual({ ok: true, caughtUp: true, entries: 2, stalled: 0 });
  });

  it('deletes a key on a tombstone and tells listeners what it was', async () => {
    const bus = new InMemoryBus(1);
    const a = await open(bus);
    const seen: [string, Doc | undefined, Doc | undefined][] = [];
    a.onChange(() => {
      throw new Error('a broken listener does not stop the others');
    });
    const off = a.onChange((k, v, prev) => seen.push([k, v, prev]));
    await a.put('d1', doc('d1', 1));
    const before = a.version();
    await a.put('d1', null);
    expect(a.get('d1')).toBeUndefined();
    expect(a.size()).toBe(0);
    expect(a.version()).toBe(before + 1);
    expect(seen).toEqual([
      ['d1', doc('d1', 1), undefined],
      ['d1', undefined, doc('d1', 1)],
    ]);
    off();
    await a.put('d3', doc('d3', 1));
    expect(seen).toHaveLength(2);
    // A view started after the tombstone never holds the key.
    const later = await open(bus);
    expect(later.get('d1')).toBeUndefined();
    expect(later.get('d3')).toEqual(doc('d3', 1));
  });

  it('keeps a newer revision when an older record is read after it, and passes by records it cannot read', async () => {
    const bus = new InMemoryBus(1);
    const a = await open(bus);
    await a.put('d1', doc('d1', 2));
    await bus.publisher().publish(TOPIC, [
      { key: 'd1', value: Buffer.from(JSON.stringify(doc('d1', 1))) },
      { key: 'd9', value: Buffer.from('not json') },
      { key: null, value: Buffer.from(JSON.stringify(doc('d8', 1))) },
    ]);
    await a.syncToEnd();
    expect(a.get('d1')).toEqual(doc('d1', 2));
    expect(a.size()).toBe(1);
    expect(a.health().ok).toBe(true);
    expect(bus.messages('tv.dlq')).toHaveLength(0);
  });

  it('reads without committing, in a group of its own that is gone once it stops', async () => {
    const bus = new InMemoryBus(1);
    const a = await open(bus);
    const b = await open(bus);
    expect(a.groupId).not.toBe(b.groupId);
    await a.put('d1', doc('d1', 1));
    await b.syncToEnd();
    expect(bus.groupOffsets(a.groupId, TOPIC).size).toBe(0);
    expect(bus.groupIds()).toEqual(expect.arrayContaining([a.groupId, b.groupId]));
    // Each record applied once although nothing is committed: no re-reads.
    const changes = a.version();
    await new Promise((r) => setTimeout(r, 120));
    expect(a.version()).toBe(changes);
    await a.stop();
    await b.stop();
    expect(bus.groupIds()).not.toContain(a.groupId);
    expect(bus.groupIds()).not.toContain(b.groupId);
  });

  it('refuses with a coded error when a write never shows in its view', async () => {
    const bus = new InMemoryBus(1);
    const a = await open(bus, { syncTimeoutMs: 100 });
    await a.stop();
    await expect(a.put('d1', doc('d1', 1))).rejects.toMatchObject({
      code: ErrorCodes.Unavailable,
      message: expect.stringMatching(
        /did not show in this process's view of tv\.docs within 100 ms/,
      ),
    });
    await expect(a.syncToEnd()).rejects.toMatchObject({ code: ErrorCodes.Unavailable });
  });
});
