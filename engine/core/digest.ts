// Digests: the recent events a rule's `action.send.digest` names, kept per user and handed to
// the template as the send's `digest` data. Only the types some loaded rule's digest names are
// kept, each bounded by count and age (the widest any of those rules asks for) and all of them
// together by MAX_DIGEST_ITEMS, so the stored state stays small.
import type { NormalisedEvent } from '../../platform/contracts.ts';
import type { CompiledDigest, DigestKeep } from '../../rules/types.ts';
import { DIGEST_LIMITS } from '../../rules/index.ts';
import { dict, type DigestItem, type UserState } from './state.ts';

/** Items a user keeps over every digest type together; the oldest go first. */
export const MAX_DIGEST_ITEMS = 100;
/** Items a user keeps of one type, so a digest can count up to this many. */
export const MAX_DIGEST_COUNTED: number = DIGEST_LIMITS.maxItems;
/** A kept text property is cut to this many characters (a digest lists names, not documents). */
export const MAX_DIGEST_TEXT = 120;

/** One listed event in the send's data. */
export interface DigestEntry {
  type: string;
  /** Epoch ms of the event. */
  ts: number;
  properties: Record<string, string | number | boolean>;
}

/** What the template receives as `digest`. */
export interface DigestData {
  /** The rule's window as written ("7d") and its bounds in epoch ms: (from, to]. */
  window: string;
  from: number;
  to: number;
  /** Items in the window (over every type, as kept). */
  total: number;
  /** The newest `maxItems` of them, newest first. */
  items: DigestEntry[];
  /** True when the window held more items than `items` lists. */
  more: boolean;
  /** Per type with items in the window, in the rule's order: how many, and those of `items`. */
  types: {
    type: string;
    count: number;
    /** The user may have done it more often than the engine keeps: `count` is a lower bound. */
    atLeast: boolean;
    items: DigestEntry[];
  }[];
}

/**
 * Records an event the loaded rules' digests name (a no-op for any other type), then applies
 * the type's bounds: items older than its window against the newest one, and beyond its count.
 */
export function keepDigestItem(
  state: UserState,
  event: NormalisedEvent,
  digestKeep: ReadonlyMap<string, DigestKeep>,
): void {
  const keep = digestKeep.get(event.type);
  if (!keep) return;
  const digest = (state.digest ??= dict<DigestItem[]>());
  const list = (digest[event.type] ??= []);
  const item: DigestItem = { ts: event.ts, properties: keptProperties(event, keep.properties) };
  // Events arrive in per-user order but their timestamps may not: keep the list sorted by time.
  let at = list.length;
  while (at > 0 && list[at - 1]!.ts > item.ts) at--;
  list.splice(at, 0, item);
  boundList(list, keep);
  if (list.length === 0) delete digest[event.type];
  boundTotal(digest);
}

/** After a rule set change: types no digest names any more are forgotten, the rest re-bounded. */
export function fitDigestToRuleSet(
  state: UserState,
  digestKeep: ReadonlyMap<string, DigestKeep>,
): void {
  const digest = state.digest;
  if (!digest) return;
  for (const type in digest) {
    const keep = digestKeep.get(type);
    if (keep) boundList(digest[type]!, keep);
    if (!keep || digest[type]!.length === 0) delete digest[type];
  }
  boundTotal(digest);
  if (!hasKeys(digest)) delete state.digest;
}

/** The digest of one rule at `at` (the send's time), from what the state keeps. */
export function digestData(state: UserState, digest: CompiledDigest, at: number): DigestData {
  const from = at - digest.windowMs;
  // The bound over every type drops the oldest items of any type: when it is reached inside
  // the window, any type may have lost some.
  let kept = 0;
  let oldest = Infinity;
  for (const type in state.digest ?? {}) {
    const list = state.digest![type]!;
    kept += list.length;
    oldest = Math.min(oldest, list[0]?.ts ?? Infinity);
  }
  const truncatedAll = kept >= MAX_DIGEST_ITEMS && oldest > from;
  const all: DigestEntry[] = [];
  const perType: DigestData['types'] = [];
  for (const type of digest.events) {
    const list = state.digest?.[type];
    if (!list) continue;
    let count = 0;
    for (const item of list) {
      if (item.ts <= from || item.ts > at) continue;
      count++;
      all.push({ type, ts: item.ts, properties: { ...item.properties } });
    }
    if (count === 0) continue;
    // A full list whose oldest item is inside the window may have dropped older ones.
    const atLeast = truncatedAll || (list.length >= MAX_DIGEST_COUNTED && list[0]!.ts > from);
    perType.push({ type, count, atLeast, items: [] });
  }
  // Newest first; the rule's order of types breaks ties, so the choice is deterministic.
  const order = new Map(digest.events.map((t, i) => [t, i]));
  all.sort((a, b) => b.ts - a.ts || order.get(a.type)! - order.get(b.type)!);
  const items = all.slice(0, digest.maxItems);
  for (const entry of items) perType.find((t) => t.type === entry.type)!.items.push(entry);
  return {
    window: digest.window,
    from,
    to: at,
    total: all.length,
    items,
    more: all.length > items.length,
    types: perType,
  };
}

function keptProperties(
  event: NormalisedEvent,
  names: readonly string[],
): Record<string, string | number | boolean> {
  const out = dict<string | number | boolean>();
  const props = event.properties;
  for (const name of names) {
    if (!Object.hasOwn(props, name)) continue;
    const v = props[name];
    if (typeof v === 'string')
      out[name] = v.length > MAX_DIGEST_TEXT ? v.slice(0, MAX_DIGEST_TEXT) : v;
    else if ((typeof v === 'number' && Number.isFinite(v)) || typeof v === 'boolean') out[name] = v;
  }
  return out;
}

/**
 * Age, then count: at most MAX_DIGEST_COUNTED items of a type, so counts stay exact up to
 * there; only the newest `maxItems` (all a digest can list of one type) keep their properties.
 */
function boundList(list: DigestItem[], keep: DigestKeep): void {
  if (list.length === 0) return;
  const newest = list[list.length - 1]!.ts;
  let drop = 0;
  while (drop < list.length && list[drop]!.ts <= newest - keep.maxAgeMs) drop++;
  drop = Math.max(drop, list.length - MAX_DIGEST_COUNTED);
  if (drop > 0) list.splice(0, drop);
  for (let i = list.length - keep.maxItems - 1; i >= 0; i--)
    if (hasKeys(list[i]!.properties)) list[i]!.properties = dict();
}

/** Over every type together: drops the oldest items beyond MAX_DIGEST_ITEMS. */
function boundTotal(digest: Record<string, DigestItem[]>): void {
  let total = 0;
  for (const type in digest) total += digest[type]!.length;
  while (total > MAX_DIGEST_ITEMS) {
    let oldestType: string | null = null;
    for (const type in digest) {
      const first = digest[type]![0]!;
      if (oldestType === null || first.ts < digest[oldestType]![0]!.ts) oldestType = type;
    }
    const list = digest[oldestType!]!;
    list.shift();
    if (list.length === 0) delete digest[oldestType!];
    total--;
  }
}

function hasKeys(o: Record<string, unknown>): boolean {
  for (const _ in o) return true;
  return false;
}
