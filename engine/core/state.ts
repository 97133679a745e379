// Per-user state the engine keeps between events: merged traits, per-event-type stats,
// segment memberships, per-rule history and a short window of applied event ids. The
// in-memory shape is what rules read as facts; the stored shape is compact JSON with short
// keys (a typical user stays well under 1 KB).
import type { EventStats } from '../../rules/types.ts';

export interface RuleHistory {
  fires: number;
  lastFiredAt: number | null;
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

const FORMAT_VERSION = 1;

export function emptyState(): UserState {
  return { traits: dict(), stats: dict(), segments: dict(), rules: dict(), recent: [] };
}

/** A map without a prototype, so event types or traits such as `__proto__` stay plain keys. */
export function dict<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}

/** Stored shape: v version, u traits, s stats [count, first, last], g member segments, r rules [fires, last], e recent ids (base64 of 6-byte hashes), k recheck due time, a applied. */
interface StoredState {
  v: number;
  u?: Record<string, unknown>;
  s?: Record<string, [number, number | null, number | null]>;
  g?: string[];
  r?: Record<string, [number, number | null]>;
  e?: string;
  k?: number;
  a?: { p: number; o: string };
}

export function toStored(state: UserState): StoredState {
  const out: StoredState = { v: FORMAT_VERSION };
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
    const r = dict<[number, number | null]>();
    for (const id in state.rules) {
      const h = state.rules[id]!;
      r[id] = [h.fires, h.lastFiredAt];
    }
    out.r = r;
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
  if (!isObject(raw) || raw.v !== FORMAT_VERSION)
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
      if (Array.isArray(h) && typeof h[0] === 'number')
        state.rules[id] = { fires: h[0], lastFiredAt: numOrNull(h[1]) };
    }
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
