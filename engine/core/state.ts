// Per-user state the engine keeps between events: merged traits, per-event-type stats,
// segment memberships, per-rule history and a short window of applied event ids. The
// in-memory shape is what rules read as facts; the stored shape is compact JSON with short
// keys (a typical user stays well under 1 KB).
import type { EventStats } from '../../rules/types.ts';

export interface RuleHistory {
  fires: number;
  lastFiredAt: number | null;
  /** Times the rule matched but did not send because its digest had fewer than `minItems` items. */
  skipped?: number;
  lastSkippedAt?: number;
}

/** One kept event for digests (engine/core/digest.ts): its time and the properties the digests keep. */
export interface DigestItem {
  ts: number;
  properties: Record<string, string | number | boolean>;
}

export interface UserState {
  /** Merged traits (identify, CDC rows, any event carrying `traits`). */
  traits: Record<string, unknown>;
  /**
   * Per event type. Types the loaded rules mention are zero-filled in memory (count 0,
   * first/last null) so conditions such as "never exported" work; zero entries are never stored.
   */
  stats: Record<string, EventStats>;
  /** Segment id -> member, for every loaded segment after an apply. Only `true` is stored. */
  segments: Record<string, boolean>;
  /** Rule id -> history, only for rules that fired for this user (holdout sends included). */
  rules: Record<string, RuleHistory>;
  /** 48-bit hashes of the most recently applied event ids, oldest first (duplicate guard). */
  recent: number[];
  /** Event type -> recent events of the types the loaded rules' digests name, oldest first (absent when none). */
  digest?: Record<string, DigestItem[]>;
  /** Due time of the pending segment recheck timer, if any (see segment-clock.ts). */
  recheckAt?: number;
  /** Bookkeeping of the runtime (last applied partition/offset); the core never reads it. */
  applied?: { p: number; o: string };
}

/** How many recent event ids a state remembers to ignore re-delivered duplicates. */
export const RECENT_IDS = 24;
/**
 * Upper bound of event types whose stats a user keeps. Types that no loaded rule or segment
 * mentions are still tracked (a rule added later sees history), but when a user exceeds the
 * bound the least recently seen unmentioned type is dropped.
 */
export const MAX_TRACKED_TYPES = 64;

/**
 * 2 added the digest items (`d`). A state without them is still written as 1, which every
 * release reads, so only users who have digest items need an engine that knows format 2;
 * both are read.
 */
const FORMAT_VERSION = 2;
const READABLE_VERSIONS: ReadonlySet<unknown> = new Set([1, 2]);

export function emptyState(): UserState {
  return { traits: dict(), stats: dict(), segments: dict(), rules: dict(), recent: [] };
}

/** A map without a prototype, so event types or traits such as `__proto__` stay plain keys. */
export function dict<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}

/**
 * Stored shape: v version, u traits, s stats [count, first, last], g member segments, r rules
 * [fires, last] (+ [skipped, lastSkipped] once a digest was skipped), d digest items per type
 * [ts] or [ts, properties], e recent ids (base64 of 6-byte hashes), k recheck due time, a applied.
 */
interface StoredState {
  v: number;
  u?: Record<string, unknown>;
  s?: Record<string, [number, number | null, number | null]>;
  g?: string[];
  r?: Record<string, [number, number | null] | [number, number | null, number, number]>;
  d?: Record<string, ([number] | [number, Record<string, string | number | boolean>])[]>;
  e?: string;
  k?: number;
  a?: { p: number; o: string };
}

export function toStored(state: UserState): StoredState {
  const out: StoredState = { v: 1 };
  if (hasKeys(state.traits)) out.u = state.traits;
  const s = dict<[number, number | null, number | null]>();
  let anyStats = false;
  for (const type in state.stats) {
    const st = state.stats[type]!;
    if (st.count === 0) continue;
    s[type] = [st.count, st.first, st.last];
    anyStats = true;
  }
  if (anyStats) out.s = s;
  const g: string[] = [];
  for (const id in state.segments) if (state.segments[id] === true) g.push(id);
  if (g.length > 0) out.g = g;
  if (hasKeys(state.rules)) {
    const r = dict<[number, number | null] | [number, number | null, number, number]>();
    for (const id in state.rules) {
      const h = state.rules[id]!;
      r[id] =
        h.skipped !== undefined && h.skipped > 0
          ? [h.fires, h.lastFiredAt, h.skipped, h.lastSkippedAt ?? 0]
          : [h.fires, h.lastFiredAt];
    }
    out.r = r;
  }
  if (state.digest) {
    const d = dict<([number] | [number, Record<string, string | number | boolean>])[]>();
    let any = false;
    for (const type in state.digest) {
      const list = state.digest[type]!;
      if (list.length === 0) continue;
      d[type] = list.map((item) =>
        hasKeys(item.properties) ? [item.ts, item.properties] : [item.ts],
      );
      any = true;
    }
    if (any) {
      out.v = FORMAT_VERSION;
      out.d = d;
    }
  }
  if (state.recent.length > 0) out.e = recentToBase64(state.recent);
  if (state.recheckAt !== undefined) out.k = state.recheckAt;
  if (state.applied) out.a = state.applied;
  return out;
}

export function serializeState(state: UserState): string {
  // JSON.stringify of the small stored object is faster end to end than building the text by
  // hand: concatenation leaves a rope that is flattened again when the text is written or parsed.
  return JSON.stringify(toStored(state));
}

function recentToBase64(recent: number[]): string {
  const buf = Buffer.allocUnsafe(recent.length * 6);
  for (let i = 0; i < recent.length; i++) buf.writeUIntBE(recent[i]!, i * 6, 6);
  return buf.toString('base64');
}

export class StateFormatError extends Error {
  override name = 'StateFormatError';
}

export function deserializeState(text: string): UserState {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new StateFormatError(`user state is not JSON: ${(err as Error).message}`);
  }
  return fromStored(raw);
}

export function fromStored(raw: unknown): UserState {
  if (!isObject(raw) || !READABLE_VERSIONS.has(raw.v))
    throw new StateFormatError(
      `unsupported user state format (v=${isObject(raw) ? String(raw.v) : typeof raw})`,
    );
  const state = emptyState();
  if (isObject(raw.u)) for (const k of Object.keys(raw.u)) state.traits[k] = raw.u[k];
  if (isObject(raw.s)) {
    for (const type of Object.keys(raw.s)) {
      const t = raw.s[type];
      if (Array.isArray(t) && typeof t[0] === 'number')
        state.stats[type] = { count: t[0], first: numOrNull(t[1]), last: numOrNull(t[2]) };
    }
  }
  if (Array.isArray(raw.g))
    for (const id of raw.g) if (typeof id === 'string') state.segments[id] = true;
  if (isObject(raw.r)) {
    for (const id of Object.keys(raw.r)) {
      const h = raw.r[id];
      if (Array.isArray(h) && typeof h[0] === 'number') {
        const history: RuleHistory = { fires: h[0], lastFiredAt: numOrNull(h[1]) };
        if (typeof h[2] === 'number' && h[2] > 0 && typeof h[3] === 'number') {
          history.skipped = h[2];
          history.lastSkippedAt = h[3];
        }
        state.rules[id] = history;
      }
    }
  }
  if (raw.v === 2 && isObject(raw.d)) {
    const digest = dict<DigestItem[]>();
    for (const type of Object.keys(raw.d)) {
      const list = raw.d[type];
      if (!Array.isArray(list)) continue;
      const items: DigestItem[] = [];
      for (const entry of list) {
        if (!Array.isArray(entry) || typeof entry[0] !== 'number') continue;
        const properties = dict<string | number | boolean>();
        if (isObject(entry[1]))
          for (const k of Object.keys(entry[1])) {
            const v = entry[1][k];
            if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean')
              properties[k] = v;
          }
        items.push({ ts: entry[0], properties });
      }
      if (items.length > 0) digest[type] = items;
    }
    if (hasKeys(digest)) state.digest = digest;
  }
  if (typeof raw.e === 'string') {
    const buf = Buffer.from(raw.e, 'base64');
    for (let i = 0; i + 6 <= buf.length; i += 6) state.recent.push(buf.readUIntBE(i, 6));
  }
  if (typeof raw.k === 'number') state.recheckAt = raw.k;
  if (isObject(raw.a) && typeof raw.a.p === 'number' && typeof raw.a.o === 'string')
    state.applied = { p: raw.a.p, o: raw.a.o };
  return state;
}

/** A deep copy (through the stored form), for callers that must keep the state before an apply. */
export function cloneState(state: UserState): UserState {
  return fromStored(JSON.parse(JSON.stringify(toStored(state))));
}

function hasKeys(o: Record<string, unknown>): boolean {
  for (const _ in o) return true;
  return false;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function numOrNull(v: unknown): number | null {
  return typeof v === 'number' ? v : null;
}
