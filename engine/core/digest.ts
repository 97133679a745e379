// Digests: a rule whose send lists `items` (`{events, within, max, properties}`) is sent the
// user's recent events of those types, newest first, as `data.digest`, and nothing at all when
// there were none in the window ("0 projects updated" is not a digest). The core keeps what
// digests need in the user's state as it reduces events: per collected type the last events
// (at most the largest `max` of the rules listing it) within the longest `within`, each with
// only the properties those rules name, text cut short, so the state stays bounded.
import type { NormalisedEvent } from '../../platform/contracts.ts';
import { parseDuration, type RuleSet } from '../../rules/index.ts';
import { dict, type DigestItem, type UserState } from './state.ts';

/** Characters of a text property an item keeps. */
export const MAX_ITEM_TEXT = 100;
const DEFAULT_MAX = 10;

/** What the loaded rules want kept of one event type. */
export interface CollectSpec {
  /** Items kept at most (the largest `max` of the rules listing the type). */
  keep: number;
  /** Properties kept (every one a rule names for the type). */
  properties: string[];
  /** How far behind the newest item an item is still kept (the longest `within`). */
  withinMs: number;
}

/** What a rule's send asks for: `action.send.items`. */
export interface DigestRequest {
  events: string[];
  within: string;
  max?: number;
  properties?: string[];
}

export interface Digest {
  /** Newest first, at most `max`; every named property present (null when the event lacked it). */
  items: {
    type: string;
    at: string;
    properties: Record<string, string | number | boolean | null>;
  }[];
  /** Items in the window per listed type (as far as the state keeps them). */
  counts: Record<string, number>;
  /** Items in the window, all types. */
  total: number;
  /** More happened than the digest lists: beyond `max`, or older ones the state no longer keeps. */
  more: boolean;
  /** Start of the window (ISO 8601). */
  since: string;
}

const specsByRuleSet = new WeakMap<RuleSet, Map<string, CollectSpec>>();

/** Per event type, what the rules of `rs` want kept; computed once per rule set. */
export function collectSpecs(rs: RuleSet): Map<string, CollectSpec> {
  let specs = specsByRuleSet.get(rs);
  if (specs) return specs;
  specs = new Map();
  for (const rule of rs.rules) {
    const want = rule.def.action.send.items as DigestRequest | undefined;
    if (!want) continue;
    const withinMs = parseDuration(want.within);
    for (const type of want.events) {
      const prev = specs.get(type);
      const properties = new Set([...(prev?.properties ?? []), ...(want.properties ?? [])]);
      specs.set(type, {
        keep: Math.max(prev?.keep ?? 0, want.max ?? DEFAULT_MAX),
        properties: [...properties].sort(),
        withinMs: Math.max(prev?.withinMs ?? 0, withinMs),
      });
    }
  }
  specsByRuleSet.set(rs, specs);
  return specs;
}

/** Files one event of a collected type into the state's items, in time order, within the bounds. */
export function collectItem(
  state: UserState,
  type: string,
  event: NormalisedEvent,
  spec: CollectSpec,
): void {
  const kept = dict<string | number | boolean>();
  for (const name of spec.properties) {
    if (!Object.hasOwn(event.properties, name)) continue;
    const v = event.properties[name];
    if (typeof v === 'string') kept[name] = v.slice(0, MAX_ITEM_TEXT);
    else if ((typeof v === 'number' && Number.isFinite(v)) || typeof v === 'boolean')
      kept[name] = v;
  }
  const items = (state.items ??= dict<DigestItem[]>());
  const list = (items[type] ??= []);
  let at = list.length;
  while (at > 0 && list[at - 1]![0] > event.ts) at--;
  list.splice(at, 0, [event.ts, kept]);
  const horizon = list[list.length - 1]![0] - spec.withinMs;
  let drop = 0;
  while (drop < list.length && list[drop]![0] <= horizon) drop++;
  drop = Math.max(drop, list.length - spec.keep);
  if (drop > 0) list.splice(0, drop);
}

/** The digest a send made at `at` carries: the listed types' items in (at - within, at]. */
export function digestOf(
  state: UserState,
  want: DigestRequest,
  at: number,
  specs: Map<string, CollectSpec>,
): Digest {
  const from = at - parseDuration(want.within);
  const max = want.max ?? DEFAULT_MAX;
  const found: { type: string; item: DigestItem }[] = [];
  const counts: Record<string, number> = {};
  let more = false;
  for (const type of want.events) {
    const list = state.items?.[type] ?? [];
    const inWindow = list.filter(([ts]) => ts > from && ts <= at);
    counts[type] = inWindow.length;
    // The state holds as many as it keeps, all in the window: older ones in it may have gone.
    const spec = specs.get(type);
    if (spec && list.length >= spec.keep && inWindow.length === list.length) more = true;
    for (const item of inWindow) found.push({ type, item });
  }
  found.sort((a, b) => b.item[0] - a.item[0]);
  if (found.length > max) more = true;
  const names = want.properties ?? [];
  return {
    items: found.slice(0, max).map(({ type, item: [ts, props] }) => ({
      type,
      at: new Date(ts).toISOString(),
      properties: Object.fromEntries(names.map((n) => [n, props[n] ?? null])),
    })),
    counts,
    total: found.length,
    more,
    since: new Date(from).toISOString(),
  };
}
