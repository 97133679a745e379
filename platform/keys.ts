// Redis key layout. Every key of one user shares the hash tag `{userId}` so a user's
// state lives in one Redis Cluster slot (multi-key scripts stay legal); per-partition
// keys (timers, fences) use `{p<N>}`.
//
// A hash tag must not contain braces (Redis would hash a different part of the key), so
// ids are written with `%`, `{` and `}` percent-encoded: one-to-one, so two user ids never
// share a key (replacing braces with `_` made `a{1`, `a}1` and `a_1` one user), and ids
// without those three characters keep the keys they always had.

export interface KeySpace {
  user(userId: string, kind: string): string;
  partition(topic: string, partition: number, kind: string): string;
  global(kind: string): string;
}

const ESCAPES: Record<string, string> = { '%': '%25', '{': '%7B', '}': '%7D' };
const UNESCAPES: Record<string, string> = { '%25': '%', '%7B': '{', '%7D': '}' };

/** The hash-tag form of an id: injective, brace-free. */
export function encodeTag(id: string): string {
  return id.replace(/[%{}]/g, (c) => ESCAPES[c]!);
}

/** The id a hash tag was made from (the inverse of encodeTag). */
export function decodeTag(tag: string): string {
  return tag.replace(/%(25|7B|7D)/g, (c) => UNESCAPES[c]!);
}

export function createKeySpace(prefix: string): KeySpace {
  return {
    user: (userId, kind) => `${prefix}{${encodeTag(userId)}}:${kind}`,
    partition: (topic, partition, kind) => `${prefix}{p${partition}}:${encodeTag(topic)}:${kind}`,
    global: (kind) => `${prefix}${kind}`,
  };
}
