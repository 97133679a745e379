// Redis key layout. Every key of one user shares the hash tag `{userId}` so a user's
// state lives in one Redis Cluster slot (multi-key scripts stay legal); per-partition
// keys (timers, fences) use `{p<N>}`.

export interface KeySpace {
  user(userId: string, kind: string): string;
  partition(topic: string, partition: number, kind: string): string;
  global(kind: string): string;
}

export function createKeySpace(prefix: string): KeySpace {
  // A hash tag must not contain braces, or Redis would pick a different slot.
  const tag = (s: string) => s.replace(/[{}]/g, '_');
  return {
    user: (userId, kind) => `${prefix}{${tag(userId)}}:${kind}`,
    partition: (topic, partition, kind) => `${prefix}{p${partition}}:${tag(topic)}:${kind}`,
    global: (kind) => `${prefix}${kind}`,
  };
}
