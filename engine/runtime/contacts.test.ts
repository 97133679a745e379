// The contact index of the staff lookup: how emails and phone numbers are normalised, and
// how the engine (in-memory wiring) keeps the index as users' traits change and are erased.
import { describe, expect, it } from 'vitest';
import { InMemoryBus, partitionFor } from '../../platform/bus.ts';
import { topics, type NormalisedEvent } from '../../platform/contracts.ts';
import { encodeWithHeader, eventCodec } from '../../platform/avro.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import { silentLogger } from '../../platform/logger.ts';
import { loadRuleSet, type RuleSet } from '../../rules/index.ts';
import { emptyState, serializeState } from '../core/state.ts';
import {
  contactChange,
  contactTerms,
  normaliseEmail,
  normalisePhone,
  queryTerms,
} from './contacts.ts';
import { createEngineService } from './engine-service.ts';
import { MemoryStores, type ContactChange } from './stores.ts';
import { createUserDirectory } from './user-view.ts';
import { wireCore } from './wiring.ts';

describe('contact normalisation', () => {
  it.each([
    ['Ada@Example.COM', 'ada@example.com'],
    ['  ada@example.com\t', 'ada@example.com'],
    ['a.b+tag@sub.example.org', 'a.b+tag@sub.example.org'],
    ['no-at-sign', null],
    ['@example.com', null],
    ['ada@', null],
    ['ada @example.com', null],
    ['ada@exa\nmple.com', null],
    [42, null],
    [null, null],
  ])('email %j -> %j', (input, expected) => {
    expect(normaliseEmail(input)).toBe(expected);
  });

  it.each([
    ['+49 170 123-4567', '+491701234567'],
    ['+49 (170) 123.45/67', '+491701234567'],
    ['0049 170 1234567', '+491701234567'],
    ['0170 1234567', '01701234567'],
    [4915112345678, '4915112345678'],
    ['1234', null],
    ['+49 170 CALL-ME', null],
    ['12345678901234567890123', null],
    ['', null],
    [undefined, null],
  ])('phone %j -> %j', (input, expected) => {
    expect(normalisePhone(input)).toBe(expected);
  });

  it('files a user under their email and phone, sorted, one string to compare', () => {
    expect(contactTerms({ email: 'Ada@Example.com', phone: '+44 20 7946 0000' })).toBe(
      'e:ada@example.com\np:+442079460000',
    );
    expect(contactTerms({ phone: '+44 20 7946 0000' })).toBe('p:+442079460000');
    expect(contactTerms({ email: 'not an address' })).toBe('');
    expect(contactTerms({})).toBe('');
  });

  it('reads a search text as an email, a phone number, both or neither', () => {
    expect(queryTerms(' ADA@example.com ')).toEqual([{ kind: 'email', term: 'e:ada@example.com' }]);
    expect(queryTerms('+49 170 1234567')).toEqual([{ kind: 'phone', term: 'p:+491701234567' }]);
    expect(queryTerms('user-42')).toEqual([]);
    expect(queryTerms('12345')).toEqual([{ kind: 'phone', term: 'p:12345' }]);
  });

  it('changes only the terms that differ', () => {
    expect(contactChange('u', 'e:a@x.io\np:12345', 'e:b@x.io\np:12345')).toEqual({
      userId: 'u',
      remove: ['e:a@x.io'],
      add: ['e:b@x.io'],
    });
    expect(contactChange('u', null, 'e:a@x.io')).toEqual({
      userId: 'u',
      remove: [],
      add: ['e:a@x.io'],
    });
    expect(contactChange('u', 'e:a@x.io', '')).toEqual({
      userId: 'u',
      remove: ['e:a@x.io'],
      add: [],
    });
    expect(contactChange('u', 'e:a@x.io', 'e:a@x.io')).toBeNull();
    expect(contactChange('u', null, '')).toBeNull();
  });
});

const RULES = new URL('../../test/support/engine-rules', import.meta.url).pathname;
const T = topics('mem');

async function ruleSet(): Promise<RuleSet> {
  const r = await loadRuleSet(RULES);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.ruleSet;
}

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
  source: 'test',
  properties: {},
  ...extra,
});

async function until<T>(cond: () => Promise<T | false | null | undefined>, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** MemoryStores that count the contact index writes the engine makes. */
class CountingStores extends MemoryStores {
  updates: ContactChange[][] = [];
  override async update(partition: number, epoch: number, changes: ContactChange[]) {
    this.updates.push(changes);
    return super.update(partition, epoch, changes);
  }
}

async function engine() {
  const rs = await ruleSet();
  const bus = new InMemoryBus(4);
  const stores = new CountingStores();
  const wiring = wireCore(() => rs);
  const service = createEngineService(
    { topicPrefix: 'mem', groupId: 'engine', timerPollMs: 20, partitions: 4 },
    {
      bus,
      state: stores,
      timers: stores,
      contacts: stores,
      ...wiring,
      logger: silentLogger(),
      registry: createMetricsRegistry({ defaults: false }),
    },
  );
  await service.start();
  const publish = (...events: NormalisedEvent[]) =>
    bus.publisher().publish(
      T.events,
      events.map((e) => ({ key: e.userId, ...encodeWithHeader(eventCodec, e) })),
    );
  // The event is applied once the user's stored offset fence reaches its record.
  const applied = (userId: string, eventId: string) =>
    until(async () => {
      const record = bus
        .messages(T.events)
        .find((m) => m.key === userId && eventCodec.decode(m.value!).id === eventId);
      const stored = (await stores.load([userId])).get(userId);
      return (
        record !== undefined &&
        stored?.partition === record.partition &&
        BigInt(stored.offset ?? -1) >= BigInt(record.offset)
      );
    });
  return { bus, stores, service, publish, applied, directory: createUserDirectory(stores) };
}

describe('the engine keeps the contact index', () => {
  it('files users as their traits change, answers searches from it, and forgets them on erasure', async () => {
    const { stores, service, publish, applied, directory } = await engine();
    const now = Date.now();
    await publish(
      ev('a1', 'alice', 'identify', now, {
        traits: { email: 'Alice@Example.com', phone: '+49 170 1234567', plan: 'trial' },
      }),
      ev('b1', 'bob', 'identify', now, { traits: { email: 'bob@example.com' } }),
    );
    await applied('alice', 'a1');
    await applied('bob', 'b1');

    const find = async (q: string) =>
      (await directory.find(q, 20)).map((m) => [m.userId, m.matched]);
    expect(await find('alice@example.COM')).toEqual([['alice', ['email']]]);
    expect(await find('0049 (170) 123 4567')).toEqual([['alice', ['phone']]]);
    expect(await find('alice')).toEqual([['alice', ['userId']]]);
    expect(await find('bob@example.com')).toEqual([['bob', ['email']]]);
    expect(await find('nobody@example.com')).toEqual([]);
    expect((await directory.find('alice@example.com', 20))[0]!.traits).toMatchObject({
      plan: 'trial',
    });

    // Events that leave the contact traits alone cost no index write.
    const writes = stores.updates.length;
    await publish(
      ev('a2', 'alice', 'Feature Used', now + 1),
      ev('a3', 'alice', 'identify', now + 2, {
        traits: { plan: 'pro', email: 'ALICE@example.com' },
      }),
    );
    await applied('alice', 'a3');
    expect(stores.updates.length).toBe(writes);

    // A new address replaces the old one in the index itself, not only in the answers.
    await publish(
      ev('a4', 'alice', 'identify', now + 3, { traits: { email: 'alice@new.example' } }),
    );
    await applied('alice', 'a4');
    expect(await find('alice@example.com')).toEqual([]);
    expect(await stores.find('e:alice@example.com', 10)).toEqual([]);
    expect(await find('alice@new.example')).toEqual([['alice', ['email']]]);

    await publish(ev('a5', 'alice', 'user_deleted', now + 4, { source: 'cdc:test' }));
    await until(async () => (await directory.profile('alice')) === null);
    expect(await find('alice@new.example')).toEqual([]);
    expect(await find('+491701234567')).toEqual([]);
    expect(await find('alice')).toEqual([]);
    expect(await stores.find('e:alice@new.example', 10)).toEqual([]);
    expect(await stores.find('p:+491701234567', 10)).toEqual([]);
    expect(await find('bob@example.com')).toEqual([['bob', ['email']]]);
    await service.stop();
  });

  it('files a user stored before the index existed at their next event, contact unchanged', async () => {
    const { stores, service, publish, applied, directory } = await engine();
    // Written as an engine without the index wrote it: no contact terms beside the state.
    const partition = partitionFor('carol', 4);
    const epoch = (await stores.currentEpoch(partition))!;
    const old = emptyState();
    old.traits = { email: 'carol@example.com' };
    await stores.write(partition, epoch, [
      { userId: 'carol', state: serializeState(old), offset: '-1', timerIds: [] },
    ]);
    expect(await directory.find('carol@example.com', 20)).toEqual([]);
    await publish(ev('c1', 'carol', 'Feature Used', Date.now()));
    await applied('carol', 'c1');
    expect((await directory.find('carol@example.com', 20)).map((m) => m.userId)).toEqual(['carol']);
    await service.stop();
  });

  it('a search answers only users whose stored traits carry the address now', async () => {
    const stores = new MemoryStores();
    const epoch = await stores.acquire(1);
    const state = emptyState();
    state.traits = { email: 'dan@now.example' };
    await stores.write(1, epoch, [
      { userId: 'dan', state: serializeState(state), offset: '1', timerIds: [] },
    ]);
    await stores.update(1, epoch, [
      { userId: 'dan', add: ['e:dan@then.example', 'e:dan@now.example'], remove: [] },
      { userId: 'gone', add: ['e:dan@now.example'], remove: [] },
    ]);
    const directory = createUserDirectory(stores);
    expect(await directory.find('dan@then.example', 20)).toEqual([]);
    expect((await directory.find('dan@now.example', 20)).map((m) => m.userId)).toEqual(['dan']);
  });

  it('refuses index writes from an owner that lost the partition', async () => {
    const stores = new MemoryStores();
    const stale = await stores.acquire(2);
    await stores.acquire(2);
    expect(
      await stores.update(2, stale, [{ userId: 'eve', add: ['e:eve@x.io'], remove: [] }]),
    ).toBe(false);
    expect(await stores.find('e:eve@x.io', 10)).toEqual([]);
  });
});

describe('pending timers in the lookup', () => {
  it("shows a user's delayed triggers with the rule, due time and the event that set them", async () => {
    const { service, publish, applied, directory } = await engine();
    // In the future, so the 2 s delay does not run out while the test looks.
    const ts = Date.now() + 3_600_000;
    await publish(
      ev('f1', 'frank', 'user_registered', ts, { traits: { email: 'f@x.io', plan: 'trial' } }),
    );
    await applied('frank', 'f1');
    expect(await directory.pendingTimers('frank')).toEqual([
      {
        id: expect.any(String),
        ruleId: 'trial-nudge',
        fires: 'rule',
        dueAt: ts + 2000,
        trigger: { id: 'f1', type: 'user_registered', ts },
      },
    ]);
    expect(await directory.pendingTimers('nobody')).toBeNull();
    await service.stop();
  });
});
