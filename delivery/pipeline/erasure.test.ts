// The right to be forgotten in the delivery worker, on the in-memory adapters of the
// embedded demo: a `user_deleted` event is committed only once the erasure happened, and
// an erasure that keeps failing stops its partition (health says which) instead of being
// committed past.
import { afterEach, describe, expect, it } from 'vitest';
import { encodeWithHeader, eventCodec } from '../../platform/avro.ts';
import { InMemoryBus, partitionFor } from '../../platform/bus.ts';
import { loadConfig } from '../../platform/config.ts';
import { topics as topicNames, type NormalisedEvent } from '../../platform/contracts.ts';
import { silentLogger } from '../../platform/logger.ts';
import type { Provider } from '../provider.ts';
import { createMemoryInbox } from '../inapp/inbox.ts';
import { createMemoryDeliveryStores } from './memory-stores.ts';
import { createDelivery, type DeliveryHandle } from './run.ts';

const handles: DeliveryHandle[] = [];
afterEach(async () => {
  for (const h of handles.splice(0)) await h.stop();
});

const PARTITIONS = 2;
const nobody: Provider = {
  name: 'nobody',
  channel: 'email',
  send: async () => ({ status: 'sent' }),
};

const deletionOf = (userId: string): NormalisedEvent => ({
  id: `del-${userId}`,
  userId,
  type: 'user_deleted',
  ts: 1_700_000_000_000,
  receivedAt: 1_700_000_000_000,
  source: 'cdc:appdb',
  properties: {},
});

/**
 * The worker with a preference store whose erasure fails `failures` times (Infinity: always);
 * `before` publishes on the bus before the worker's groups ever ran (a first deploy).
 */
async function start(
  failures: number,
  before: (bus: InMemoryBus) => Promise<void> = async () => {},
) {
  const config = loadConfig(
    {},
    { 'delivery.templatesDir': 'templates', 'kafka.partitions': PARTITIONS },
  );
  const bus = new InMemoryBus(PARTITIONS);
  await before(bus);
  const stores = createMemoryDeliveryStores();
  const t = topicNames(config.kafka.topicPrefix);
  const erasureGroup = `${config.delivery.groupId}-erasure`;
  const committed = (partition: number) => bus.groupOffsets(erasureGroup, t.events).get(partition);
  const attempts: { userId: string; committed: number | undefined }[] = [];
  const erase = stores.preferences.markDeleted.bind(stores.preferences);
  stores.preferences.markDeleted = async (userId, at) => {
    attempts.push({ userId, committed: committed(partitionFor(userId, PARTITIONS)) });
    if (attempts.length <= failures) throw new Error('preference store unreachable');
    await erase(userId, at);
  };
  const inbox = createMemoryInbox();
  const handle = await createDelivery(config, silentLogger(), {
    bus,
    stores,
    inbox,
    providers: new Map([['email', [nobody]]]),
    retry: { maxBatchAttempts: 3, retryBackoff: { initialMs: 10, maxMs: 40 } },
  });
  await handle.start();
  handles.push(handle);
  const deleteUser = async (userId: string) => {
    await bus
      .publisher()
      .publish(t.events, [{ key: userId, ...encodeWithHeader(eventCodec, deletionOf(userId)) }]);
    const log = bus.log(t.events, partitionFor(userId, PARTITIONS));
    return { partition: partitionFor(userId, PARTITIONS), offset: log.length - 1 };
  };
  return { handle, stores, inbox, committed, attempts, deleteUser, eventsTopic: t.events };
}

async function until(probe: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('delivery erasure reader', () => {
  it('honours a deletion published before delivery ever ran: a new group starts at the earliest offset', async () => {
    const eventsTopic = topicNames(loadConfig({}).kafka.topicPrefix).events;
    const d = await start(0, async (bus) => {
      await bus
        .publisher()
        .publish(eventsTopic, [
          { key: 'linus', ...encodeWithHeader(eventCodec, deletionOf('linus')) },
        ]);
    });
    await until(async () => (await d.stores.preferences.suppressions('linus')).deleted !== null);
    expect((await d.stores.preferences.suppressions('linus')).deleted).toEqual({
      reason: 'user_deleted',
      at: 1_700_000_000_000,
    });
    expect(d.committed(partitionFor('linus', PARTITIONS))).toBe(1);
  });

  it("erases the in-app inbox kept in memory beside the stores (the demo's), and only the deleted user's", async () => {
    const d = await start(0);
    const message = (id: string) => ({
      id,
      ruleId: 'r',
      category: 'transactional',
      title: 'Your trial ends soon',
      body: 'Three days left',
      createdAt: 1_700_000_000_000,
    });
    await d.inbox.add('ada', message('s1'));
    await d.inbox.add('bert', message('s2'));
    const { partition, offset } = await d.deleteUser('ada');
    await until(() => d.committed(partition) === offset + 1);
    expect((await d.inbox.page('ada')).messages).toEqual([]);
    expect((await d.inbox.page('bert')).messages.map((m) => m.id)).toEqual(['s2']);
  });

  it('retries an erasure that fails, and commits the deletion only after it happened', async () => {
    const d = await start(2);
    const { partition, offset } = await d.deleteUser('ada');
    await until(() => d.committed(partition) === offset + 1);
    expect((await d.stores.preferences.suppressions('ada')).deleted).toEqual({
      reason: 'user_deleted',
      at: 1_700_000_000_000,
    });
    // Three attempts, none of them after a commit of the deletion.
    expect(d.attempts).toEqual([
      { userId: 'ada', committed: undefined },
      { userId: 'ada', committed: undefined },
      { userId: 'ada', committed: undefined },
    ]);
    expect(d.handle.health().ok).toBe(true);
  });

  it('stops the partition of an erasure that keeps failing: health names it, and the deletion is never committed past', async () => {
    const d = await start(Infinity);
    const { partition, offset } = await d.deleteUser('grace');
    await until(() => !d.handle.health().ok);
    const details = d.handle.health().details as { stalled: Record<string, unknown>[] };
    expect(details.stalled).toEqual([
      expect.objectContaining({
        topic: d.eventsTopic,
        partition,
        offset: String(offset),
        attempts: 3,
        error: 'preference store unreachable',
        reason: expect.stringMatching(/restart the process/) as string,
      }),
    ]);
    // Stopped, not retried forever: no further attempts, no commit.
    await new Promise((r) => setTimeout(r, 150));
    expect(d.attempts).toHaveLength(3);
    expect(d.committed(partition) ?? 0).toBeLessThanOrEqual(offset);
    expect((await d.stores.preferences.suppressions('grace')).deleted).toBeNull();
  });
});
