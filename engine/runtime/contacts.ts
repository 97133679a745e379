// How support staff find a user by contact: the engine's state is keyed by userId only, so
// the engine files each user under the normalised `email` and `phone` traits it stores for
// them, in the partition of the user (a sorted set under the `{p<N>}` hash tag, written by
// a script that checks the partition owner's epoch, like the timers). The owner derives the
// changes from what it last filed for the user (kept beside the state, `c`) and the state it
// writes, so an index write happens only when a user's contact traits change, and an
// erasure removes everything filed for the user. A search reads every partition's set and
// keeps only users whose stored traits still carry the address.
import type { Redis } from 'ioredis';
import type { KeySpace } from '../../platform/keys.ts';
import { partitionKeys } from './redis-state.ts';
import type { ContactChange, ContactIndex } from './stores.ts';

/** A term files a user under one contact: `e:<email>` or `p:<phone>`. */
export const EMAIL_TERM = 'e:';
export const PHONE_TERM = 'p:';

const MAX_EMAIL = 320;
// Whitespace and control characters never belong to an address (and `\n` separates a term
// from the userId in the index).
const NOT_IN_EMAIL = /[\s\p{Cc}]/u;
// What people write between the digits of a phone number.
const PHONE_PUNCTUATION = /[\s().\-/]/g;
const PHONE = /^\+?\d{5,20}$/;

/** An email address as the index files it: trimmed, lower-cased; null when it is not one. */
export function normaliseEmail(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  const email = value.trim().toLowerCase();
  if (email.length < 3 || email.length > MAX_EMAIL || NOT_IN_EMAIL.test(email)) return null;
  const at = email.lastIndexOf('@');
  if (at <= 0 || at === email.length - 1) return null;
  return email;
}

/**
 * A phone number as the index files it: the digits, with `+` when it is international
 * (`00` taken as `+`), spaces, dots, dashes, slashes and parentheses dropped; null when
 * anything else is in it or it has fewer than 5 or more than 20 digits. A national number
 * (`0170 1234567`) stays national: it matches the same national form, not its `+49` form.
 */
export function normalisePhone(value: unknown): string | null {
  if (typeof value !== 'string' && typeof value !== 'number') return null;
  let phone = String(value).trim().replace(PHONE_PUNCTUATION, '');
  if (phone.startsWith('00')) phone = `+${phone.slice(2)}`;
  return PHONE.test(phone) ? phone : null;
}

/**
 * The terms a user is filed under, from their traits (`email`, `phone`), as one string
 * (terms sorted, `\n`-separated; empty for none): what the engine compares and stores.
 */
export function contactTerms(traits: Readonly<Record<string, unknown>>): string {
  const email = normaliseEmail(traits.email);
  const phone = normalisePhone(traits.phone);
  if (email === null) return phone === null ? '' : PHONE_TERM + phone;
  return phone === null ? EMAIL_TERM + email : `${EMAIL_TERM}${email}\n${PHONE_TERM}${phone}`;
}

/** The terms of a `contactTerms` string. */
export function splitTerms(terms: string | null): string[] {
  return terms ? terms.split('\n') : [];
}

/** What a search text can match: an email address (case-insensitive), a phone number, or both. */
export function queryTerms(query: string): { kind: 'email' | 'phone'; term: string }[] {
  const out: { kind: 'email' | 'phone'; term: string }[] = [];
  const email = query.includes('@') ? normaliseEmail(query) : null;
  if (email !== null) out.push({ kind: 'email', term: EMAIL_TERM + email });
  const phone = normalisePhone(query);
  if (phone !== null) out.push({ kind: 'phone', term: PHONE_TERM + phone });
  return out;
}

/** What to remove from and add to the index for one user whose filed terms change from `before` to `after`. */
export function contactChange(
  userId: string,
  before: string | null,
  after: string,
): ContactChange | null {
  if (before === after) return null;
  const old = splitTerms(before);
  const now = splitTerms(after);
  const remove = old.filter((t) => !now.includes(t));
  const add = now.filter((t) => !old.includes(t));
  return remove.length === 0 && add.length === 0 ? null : { userId, remove, add };
}

const member = (term: string, userId: string) => `${term}\n${userId}`;

// KEYS: epoch, index. ARGV: epoch, then (op, member) pairs, op `+` or `-`.
const UPDATE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do
  if ARGV[i] == '+' then redis.call('ZADD', KEYS[2], 0, ARGV[i + 1])
  else redis.call('ZREM', KEYS[2], ARGV[i + 1]) end
end
return 1
`;

// Members per script call: each call blocks the server while it runs.
const CHUNK = 500;

interface ContactScripts {
  lcContactsUpdate(k1: string, k2: string, ...args: string[]): Promise<number>;
}

/**
 * The contact index in Redis: per partition of the events topic, a sorted set of
 * `<term>\n<userId>` (all score 0, so a term's users are one lexicographic range).
 * `partitions` says how many partitions a search reads (the events topic's).
 */
export function createRedisContactIndex(
  deps: { redis: Redis; keys: KeySpace },
  opts: { eventsTopic: string; partitions: number | (() => Promise<number> | number) },
): ContactIndex {
  const { redis, keys } = deps;
  if (!('lcContactsUpdate' in redis))
    redis.defineCommand('lcContactsUpdate', { numberOfKeys: 2, lua: UPDATE });
  const scripts = redis as unknown as ContactScripts;
  const indexKey = (p: number) => keys.partition(opts.eventsTopic, p, 'contacts');

  return {
    async update(partition, epoch, changes) {
      const args: string[] = [];
      for (const c of changes) {
        for (const t of c.remove) args.push('-', member(t, c.userId));
        for (const t of c.add) args.push('+', member(t, c.userId));
      }
      const k = partitionKeys(keys, opts.eventsTopic, partition);
      for (let i = 0; i < args.length; i += 2 * CHUNK) {
        const ok = await scripts.lcContactsUpdate(
          k.epoch,
          indexKey(partition),
          String(epoch),
          ...args.slice(i, i + 2 * CHUNK),
        );
        if (ok !== 1) return false;
      }
      return true;
    },

    async find(term, limit) {
      const n = typeof opts.partitions === 'number' ? opts.partitions : await opts.partitions();
      const pipe = redis.pipeline();
      for (let p = 0; p < n; p++)
        pipe.zrangebylex(indexKey(p), `[${term}\n`, `(${term}\x0b`, 'LIMIT', 0, limit);
      const ids = new Set<string>();
      for (const [err, members] of (await pipe.exec()) ?? []) {
        if (err) throw err;
        for (const m of members as string[]) ids.add(m.slice(term.length + 1));
      }
      return [...ids].slice(0, limit);
    },
  };
}
