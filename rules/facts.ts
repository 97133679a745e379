// Helpers for building the facts conditions read, so every engine adapter fills them alike.
import type { EventStats } from './types.ts';

const NEVER: EventStats = Object.freeze({ count: 0, first: null, last: null });

/**
 * The user's stats with every event type the rule set mentions present: types the user
 * never did read as {count: 0, first: null, last: null}, so "never exported" is
 * `stats.export_done.count equal 0` rather than a missing path.
 */
export function completeStats(
  eventTypes: Iterable<string>,
  stats: Readonly<Record<string, EventStats>>,
): Record<string, EventStats> {
  const out: Record<string, EventStats> = {};
  for (const eventType of eventTypes) out[eventType] = NEVER;
  for (const [eventType, eventStats] of Object.entries(stats)) out[eventType] = eventStats;
  return out;
}
