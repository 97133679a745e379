// Deterministic ids: the same inputs give the same id in every process and every replay,
// which is what makes re-delivered events and restarted engines produce each send once.
import * as crypto from 'node:crypto';

// One-shot hashing to hex (Node >= 20.12) is about twice as fast as createHash(); both give the same digest.
const sha256Hex: (text: string) => string =
  typeof crypto.hash === 'function'
    ? (text) => crypto.hash('sha256', text, 'hex')
    : (text) => crypto.createHash('sha256').update(text).digest('hex');
const VARIANT = '89ab89ab89ab89ab';

/** A UUID-shaped id (version 8, "custom") from the SHA-256 of the parts. */
export function deterministicId(...parts: string[]): string {
  // Length-prefix every part so ("ab","c") and ("a","bc") differ.
  let text = '';
  for (const p of parts) text += `${p.length}:${p}`;
  const hex = sha256Hex(text);
  // Version nibble 8; variant bits 10 (the first hex digit of byte 8 becomes 8, 9, a or b).
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-${VARIANT[parseInt(hex[16]!, 16)]}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

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
