// The inbox behaviour both implementations (Redis, in-memory) must share; run by
// inbox.memory.test.ts and the Redis integration test.
import { expect, it } from 'vitest';
import type { Inbox, InboxMessage } from '../../delivery/inapp/inbox.ts';

const msg = (id: string, createdAt: number): InboxMessage => ({
  id,
  ruleId: 'r',
  category: 'marketing',
  title: `t-${id}`,
  body: '',
  createdAt,
});

export function inboxContract(
  make: (opts: { maxMessages: number }) => Inbox,
  user: (name: string) => string,
): void {
  it('pages newest first, ties by id, with cursors that survive new arrivals', async () => {
    const inbox = make({ maxMessages: 50 });
    const u = user('pager');
    for (const [id, at] of [
      ['a', 1],
      ['b', 2],
      ['c', 2],
      ['d', 2],
      ['e', 3],
      ['f', 4],
    ] as const) {
      expect(await inbox.add(u, msg(id, at))).toBe(true);
    }
    const first = await inbox.page(u, { limit: 2 });
    expect(first.messages.map((m) => m.id)).toEqual(['f', 'e']);
    await inbox.add(u, msg('z', 9)); // a new message must not shift the next page
    const second = await inbox.page(u, { limit: 2, cursor: first.nextCursor });
    expect(second.messages.map((m) => m.id)).toEqual(['d', 'c']);
    const third = await inbox.page(u, { limit: 2, cursor: second.nextCursor });
    expect(third.messages.map((m) => m.id)).toEqual(['b', 'a']);
    expect(third.nextCursor).toBeNull();
    expect(third.unread).toBe(7);
  });

  it('stores a message id once, caps the inbox and forgets read state of dropped messages', async () => {
    const inbox = make({ maxMessages: 3 });
    const u = user('cap');
    expect(await inbox.add(u, msg('m1', 1))).toBe(true);
    expect(await inbox.add(u, msg('m1', 5))).toBe(false);
    await inbox.markRead(u, ['m1'], 100);
    for (let i = 2; i <= 5; i++) await inbox.add(u, msg(`m${i}`, i));
    const page = await inbox.page(u, { limit: 10 });
    expect(page.messages.map((m) => m.id)).toEqual(['m5', 'm4', 'm3']);
    expect(page.unread).toBe(3);
  });

  it('marks messages read once, ignoring unknown ids, and erases everything', async () => {
    const inbox = make({ maxMessages: 10 });
    const u = user('reader');
    await inbox.add(u, msg('x', 1));
    await inbox.add(u, msg('y', 2));
    expect((await inbox.unreadAmong(u, ['y', 'x', 'x', 'nope'])).map((m) => m.id).sort()).toEqual([
      'x',
      'y',
    ]);
    const fresh = await inbox.markRead(u, ['x', 'x', 'nope'], 500);
    expect((await inbox.unreadAmong(u, ['x', 'y'])).map((m) => [m.id, m.readAt ?? null])).toEqual([
      ['y', null],
    ]);
    expect(fresh.map((m) => [m.id, m.readAt])).toEqual([['x', 500]]);
    expect(await inbox.markRead(u, ['x', 'y'], 600)).toMatchObject([{ id: 'y', readAt: 600 }]);
    expect(await inbox.unread(u)).toBe(0);
    expect((await inbox.page(u)).messages.map((m) => m.readAt)).toEqual([600, 500]);
    await inbox.erase(u);
    expect(await inbox.page(u)).toEqual({ messages: [], nextCursor: null, unread: 0 });
  });
}
