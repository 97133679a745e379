// The in-app inbox: every in-app message is kept per user in Redis (so users who were
// offline see it later), newest first, capped, with read state. Keys share the user's hash
// tag: `{userId}:inbox` (sorted set, score = createdAt), `{userId}:inbox:msg` (id -> JSON),
// `{userId}:inbox:read` (id -> readAt).
import type { Redis } from 'ioredis';
import type { KeySpace } from '../../platform/keys.ts';

export interface InboxMessage {
  /** The sendId: a retried send lands on the same entry. */
  id: string;
  ruleId: string;
  category: string;
  title: string;
  body: string;
  url?: string;
  data?: Record<string, unknown>;
  createdAt: number;
  readAt?: number | null;
}

export interface InboxPage {
  messages: InboxMessage[];
  /** Pass back as `cursor` for the next (older) page; null at the end. */
  nextCursor: string | null;
  unread: number;
}

export interface Inbox {
  /** Stores the message; false when it was already there (same id). */
  add(userId: string, message: InboxMessage): Promise<boolean>;
  page(userId: string, opts?: { cursor?: string | null; limit?: number }): Promise<InboxPage>;
  /** Those of `ids` that are in the inbox and not read yet (marks nothing). */
  unreadAmong(userId: string, ids: string[]): Promise<InboxMessage[]>;
  /** Marks messages read; returns those that were unread until now (each becomes one event). */
  markRead(userId: string, ids: string[], now?: number): Promise<InboxMessage[]>;
  unread(userId: string): Promise<number>;
  /** Deletes the user's inbox (right to be forgotten). */
  erase(userId: string): Promise<void>;
}

export interface InboxOptions {
  /** Messages kept per user; older ones are dropped. */
  maxMessages?: number;
  /** The inbox expires after this long without a new message. */
  ttlMs?: number;
}

const ADD = `
local added = redis.call('ZADD', KEYS[1], 'NX', ARGV[1], ARGV[2])
if added == 1 then redis.call('HSET', KEYS[2], ARGV[2], ARGV[3]) end
local n = redis.call('ZCARD', KEYS[1])
local cap = tonumber(ARGV[4])
if n > cap then
  local old = redis.call('ZRANGE', KEYS[1], 0, n - cap - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - cap - 1)
  redis.call('HDEL', KEYS[2], unpack(old))
  redis.call('HDEL', KEYS[3], unpack(old))
end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[5]) end
return added`;

export const MAX_PAGE = 100;

function encodeCursor(score: number, id: string): string {
  return Buffer.from(JSON.stringify([score, id])).toString('base64url');
}

export function decodeCursor(cursor: string): { score: number; id: string } | null {
  try {
    const v: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(v) && typeof v[0] === 'number' && typeof v[1] === 'string')
      return { score: v[0], id: v[1] };
  } catch {
    // fall through
  }
  return null;
}

export function createInbox(
  deps: { redis: Redis; keys: KeySpace },
  opts: InboxOptions = {},
): Inbox {
  const { redis, keys } = deps;
  const max = opts.maxMessages ?? 200;
  const ttl = opts.ttlMs ?? 90 * 24 * 3600_000;
  const k = (userId: string) => ({
    z: keys.user(userId, 'inbox'),
    msg: keys.user(userId, 'inbox:msg'),
    read: keys.user(userId, 'inbox:read'),
  });

  async function hydrate(userId: string, ids: string[]): Promise<InboxMessage[]> {
    if (ids.length === 0) return [];
    const { msg, read } = k(userId);
    const [bodies, reads] = await Promise.all([
      redis.hmget(msg, ...ids),
      redis.hmget(read, ...ids),
    ]);
    const out: InboxMessage[] = [];
    ids.forEach((_id, i) => {
      const json = bodies[i];
      if (!json) return;
      const m = JSON.parse(json) as InboxMessage;
      const r = reads[i];
      out.push({ ...m, readAt: r ? Number(r) : null });
    });
    return out;
  }

  async function unread(userId: string): Promise<number> {
    const { z, read } = k(userId);
    const [total, seen] = await Promise.all([redis.zcard(z), redis.hlen(read)]);
    return Math.max(0, total - seen);
  }

  return {
    async add(userId, message) {
      const { z, msg, read } = k(userId);
      const { readAt: _ignored, ...stored } = message;
      const added = await redis.eval(
        ADD,
        3,
        z,
        msg,
        read,
        String(message.createdAt),
        message.id,
        JSON.stringify(stored),
        String(max),
        String(ttl),
      );
      return added === 1;
    },

    async page(userId, options = {}) {
      const limit = Math.max(1, Math.min(MAX_PAGE, Math.floor(options.limit ?? 20)));
      const { z } = k(userId);
      const cursor = options.cursor ? decodeCursor(options.cursor) : null;
      let entries: { id: string; score: number }[];
      const pairs = (flat: string[]) => {
        const out: { id: string; score: number }[] = [];
        for (let i = 0; i + 1 < flat.length; i += 2)
          out.push({ id: flat[i]!, score: Number(flat[i + 1]) });
        return out;
      };
      if (!cursor) {
        entries = pairs(
          await redis.zrevrangebyscore(z, '+inf', '-inf', 'WITHSCORES', 'LIMIT', 0, limit + 1),
        );
      } else {
        // Entries with the cursor's score come in reverse id order; skip those up to the cursor.
        const same = await redis.zcount(z, cursor.score, cursor.score);
        const raw = pairs(
          await redis.zrevrangebyscore(
            z,
            cursor.score,
            '-inf',
            'WITHSCORES',
            'LIMIT',
            0,
            limit + 1 + same,
          ),
        );
        entries = raw.filter(
          (e) => e.score < cursor.score || (e.score === cursor.score && e.id < cursor.id),
        );
      }
      const more = entries.length > limit;
      const pageEntries = entries.slice(0, limit);
      const last = pageEntries[pageEntries.length - 1];
      const [messages, count] = await Promise.all([
        hydrate(
          userId,
          pageEntries.map((e) => e.id),
        ),
        unread(userId),
      ]);
      return {
        messages,
        nextCursor: more && last ? encodeCursor(last.score, last.id) : null,
        unread: count,
      };
    },

    async unreadAmong(userId, ids) {
      const unique = [...new Set(ids)]
        .filter((id) => typeof id === 'string' && id !== '')
        .slice(0, MAX_PAGE);
      if (unique.length === 0) return [];
      const { z, read } = k(userId);
      const [scores, readAt] = await Promise.all([
        Promise.all(unique.map((id) => redis.zscore(z, id))),
        redis.hmget(read, ...unique),
      ]);
      return hydrate(
        userId,
        unique.filter((_id, i) => scores[i] !== null && readAt[i] === null),
      );
    },

    async markRead(userId, ids, now = Date.now()) {
      const unique = [...new Set(ids)]
        .filter((id) => typeof id === 'string' && id !== '')
        .slice(0, MAX_PAGE);
      if (unique.length === 0) return [];
      const { z, read } = k(userId);
      const scores = await Promise.all(unique.map((id) => redis.zscore(z, id)));
      const present = unique.filter((_id, i) => scores[i] !== null);
      const fresh: string[] = [];
      const results = await Promise.all(present.map((id) => redis.hsetnx(read, id, String(now))));
      results.forEach((r, i) => r === 1 && fresh.push(present[i]!));
      return (await hydrate(userId, fresh)).map((m) => ({ ...m, readAt: now }));
    },

    unread,

    async erase(userId) {
      const { z, msg, read } = k(userId);
      await redis.del(z, msg, read);
    },
  };
}

/** In-process twin of the Redis inbox (same order, cap, cursors and read state) for the demo and tests. */
export function createMemoryInbox(opts: InboxOptions = {}): Inbox {
  const max = opts.maxMessages ?? 200;
  const boxes = new Map<string, { entries: InboxMessage[]; read: Map<string, number> }>();
  const box = (userId: string) => {
    let b = boxes.get(userId);
    if (!b) boxes.set(userId, (b = { entries: [], read: new Map() }));
    return b;
  };
  // Newest first; equal times by id descending, as ZREVRANGEBYSCORE orders them.
  const newerFirst = (a: InboxMessage, b: InboxMessage) =>
    b.createdAt - a.createdAt || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
  const view = (b: { read: Map<string, number> }, m: InboxMessage): InboxMessage => ({
    ...structuredClone(m),
    readAt: b.read.get(m.id) ?? null,
  });
  const unreadOf = (b: { entries: InboxMessage[]; read: Map<string, number> }) =>
    b.entries.length - b.read.size;

  return {
    async add(userId, message) {
      const b = box(userId);
      if (b.entries.some((m) => m.id === message.id)) return false;
      const { readAt: _ignored, ...stored } = message;
      b.entries.push(structuredClone(stored));
      b.entries.sort(newerFirst);
      for (const dropped of b.entries.splice(max)) b.read.delete(dropped.id);
      return true;
    },
    async page(userId, options = {}) {
      const limit = Math.max(1, Math.min(MAX_PAGE, Math.floor(options.limit ?? 20)));
      const b = box(userId);
      const cursor = options.cursor ? decodeCursor(options.cursor) : null;
      const after = cursor
        ? b.entries.filter(
            (m) => m.createdAt < cursor.score || (m.createdAt === cursor.score && m.id < cursor.id),
          )
        : b.entries;
      const page = after.slice(0, limit);
      const last = page[page.length - 1];
      return {
        messages: page.map((m) => view(b, m)),
        nextCursor: after.length > limit && last ? encodeCursor(last.createdAt, last.id) : null,
        unread: unreadOf(b),
      };
    },
    async unreadAmong(userId, ids) {
      const b = box(userId);
      return [...new Set(ids)].slice(0, MAX_PAGE).flatMap((id) => {
        const m = b.entries.find((e) => e.id === id);
        return m && !b.read.has(id) ? [view(b, m)] : [];
      });
    },
    async markRead(userId, ids, now = Date.now()) {
      const b = box(userId);
      const fresh: InboxMessage[] = [];
      for (const id of [...new Set(ids)].slice(0, MAX_PAGE)) {
        const m = b.entries.find((e) => e.id === id);
        if (!m || b.read.has(id)) continue;
        b.read.set(id, now);
        fresh.push(view(b, m));
      }
      return fresh;
    },
    async unread(userId) {
      return unreadOf(box(userId));
    },
    async erase(userId) {
      boxes.delete(userId);
    },
  };
}
