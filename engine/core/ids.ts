// The engine's deterministic ids (platform/ids.ts): the same inputs give the same id in every
// process and every replay, which is what makes re-delivered events and restarted engines
// produce each send once.
import { deterministicId } from '../../platform/ids.ts';

export { deterministicId };

/** sendId: one per (rule, user, trigger). For delayed triggers the trigger is the original event; for schedules, the occurrence. */
export function sendIdFor(ruleId: string, userId: string, triggerId: string): string {
  return deterministicId('send', ruleId, userId, triggerId);
}

export function timerIdFor(ruleId: string, userId: string, triggerEventId: string): string {
  return deterministicId('timer', ruleId, userId, triggerEventId);
}

export function segmentEventIdFor(
  segmentId: string,
  transition: 'enter' | 'exit',
  userId: string,
  causeEventId: string,
): string {
  return deterministicId('segment', segmentId, transition, userId, causeEventId);
}

export function occurrenceEventIdFor(
  ruleId: string,
  userId: string,
  occurrenceIso: string,
): string {
  return deterministicId('schedule', ruleId, userId, occurrenceIso);
}

/**
 * A fast 48-bit hash (cyrb53 folded to 48 bits) of an event id, for the duplicate window in
 * user state: collisions are about 1 in 10^13 per comparison.
 */
export function eventIdHash(id: string): number {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < id.length; i++) {
    const ch = id.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  // 16 bits of h2 above the 32 bits of h1.
  return (h2 & 0xffff) * 0x1_0000_0000 + (h1 >>> 0);
}
