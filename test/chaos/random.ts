// The chaos run's randomness: one seed (printed, and replayed with --seed) decides the
// workload and the faults; each consumer draws from its own stream derived from it.

/** mulberry32: small, fast, good enough for test schedules. Numbers in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An independent stream of `seed` for one purpose (the workload, the faults, ...). */
export function stream(seed: number, purpose: string): () => number {
  let h = seed >>> 0;
  for (const c of purpose) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
  return prng(h);
}

export const between = (rnd: () => number, min: number, max: number) =>
  min + Math.floor(rnd() * (max - min + 1));

export const pick = <T>(rnd: () => number, items: readonly T[]): T =>
  items[Math.floor(rnd() * items.length)]!;

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
