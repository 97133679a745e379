// How deeply event data may nest. JSON.parse reads any depth, but what walks the value
// afterwards recursively (JSON.stringify in the Avro codecs, comparisons, the rules' path
// lookups) overflows the stack a few thousand levels down, far from where the value came
// in, and a record that can never be encoded stalls whoever has to write it. Ingest and
// CDC refuse deeper data at the door; nothing a product sends needs more.

/** Levels of objects and arrays one message (an HTTP call, a CDC row) may nest: `{}` is one level, `{"a": []}` two. */
export const MAX_JSON_DEPTH = 32;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJECT = 0x7b;
const OPEN_ARRAY = 0x5b;
const CLOSE_OBJECT = 0x7d;
const CLOSE_ARRAY = 0x5d;

/**
 * True when a JSON text nests objects and arrays more than `limit` levels deep. Scans the
 * text without parsing it (strings are skipped whole, brackets inside them do not count),
 * so it can run before anything builds or walks the value. Malformed text is not judged
 * here: JSON.parse refuses it next.
 */
export function jsonTextDepthExceeds(text: string, limit: number): boolean {
  let depth = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      // The string ends at the next quote not escaped by an odd run of backslashes.
      let end = i;
      for (;;) {
        end = text.indexOf('"', end + 1);
        if (end < 0) return false;
        let k = end - 1;
        while (text.charCodeAt(k) === BACKSLASH) k--;
        if ((end - 1 - k) % 2 === 0) break;
      }
      i = end;
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (++depth > limit) return true;
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      depth--;
    }
  }
  return false;
}

/**
 * True when a parsed value nests objects and arrays more than `limit` levels deep. The walk
 * stops at `limit + 1` levels, so it is safe on a value of any depth.
 */
export function jsonDepthExceeds(value: unknown, limit: number): boolean {
  if (typeof value !== 'object' || value === null) return false;
  if (limit <= 0) return true;
  if (Array.isArray(value)) {
    for (const item of value) if (jsonDepthExceeds(item, limit - 1)) return true;
    return false;
  }
  const o = value as Record<string, unknown>;
  for (const key in o) if (jsonDepthExceeds(o[key], limit - 1)) return true;
  return false;
}
