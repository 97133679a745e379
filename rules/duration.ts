// Durations as product owners write them in rule files: "90s", "15m", "12h", "3d", "2w".
const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;

export const DURATION_PATTERN = '^[0-9]+(s|m|h|d|w)$';
const DURATION_RE = /^([0-9]+)(s|m|h|d|w)$/;

export const DURATION_HINT =
  'use a whole number followed by s, m, h, d or w (e.g. "90s", "15m", "12h", "3d", "2w")';

/** Milliseconds of a duration such as "3d"; throws on anything else. */
export function parseDuration(text: string): number {
  const ms = tryParseDuration(text);
  if (ms === null) throw new Error(`invalid duration ${JSON.stringify(text)}: ${DURATION_HINT}`);
  return ms;
}

/** Like parseDuration, but null instead of an exception (for the evaluators' hot path). */
export function tryParseDuration(text: unknown): number | null {
  if (typeof text !== 'string') return null;
  const match = DURATION_RE.exec(text);
  if (!match) return null;
  const amount = Number(match[1]);
  const ms = amount * UNIT_MS[match[2] as keyof typeof UNIT_MS];
  return Number.isSafeInteger(ms) ? ms : null;
}
