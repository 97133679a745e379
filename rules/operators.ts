// Operator semantics shared by the fast evaluator and the json-rules-engine reference. The
// built-ins repeat json-rules-engine 7's definitions (engine-default-operators.js) exactly;
// the custom ones are registered in both evaluators from these functions.
import { tryParseDuration } from './duration.ts';

/** json-rules-engine's numeric fact check `Number.parseFloat(v).toString() !== 'NaN'`, without allocating for numbers. */
export function isNumberLike(v: unknown): boolean {
  if (typeof v === 'number') return v === v;
  return !Number.isNaN(Number.parseFloat(v as string));
}

// JS relational comparison on whatever the fact holds, exactly as json-rules-engine does it.
type Cmp = (a: number, b: number) => boolean;
export const lessThan: Cmp = (a, b) => isNumberLike(a) && a < b;
export const lessThanInclusive: Cmp = (a, b) => isNumberLike(a) && a <= b;
export const greaterThan: Cmp = (a, b) => isNumberLike(a) && a > b;
export const greaterThanInclusive: Cmp = (a, b) => isNumberLike(a) && a >= b;

/** A timestamp fact as epoch ms: a finite number, or a string Date.parse understands (ISO 8601). */
export function toEpochMs(v: unknown): number | null {
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'string') {
    const t = Date.parse(v);
    return Number.isNaN(t) ? null : t;
  }
  return null;
}

/** `exists` with value true: the fact has a value (not missing, not null); with false: it has none. */
export function exists(a: unknown, b: unknown): boolean {
  return b === false ? a === undefined || a === null : a !== undefined && a !== null;
}
export function notExists(a: unknown, b: unknown): boolean {
  return b === false ? a !== undefined && a !== null : a === undefined || a === null;
}

/** Timestamp within the last `d` ms before now (inclusive; future timestamps do not count). */
export function withinLastMs(a: unknown, d: number | null, now: number): boolean {
  if (d === null) return false;
  const t = toEpochMs(a);
  return t !== null && t >= now - d && t <= now;
}
/** Timestamp more than `d` ms before now. */
export function olderThanMs(a: unknown, d: number | null, now: number): boolean {
  if (d === null) return false;
  const t = toEpochMs(a);
  return t !== null && t < now - d;
}
/** Timestamp between now and now + `d` ms (inclusive), e.g. a trial end date. */
export function withinNextMs(a: unknown, d: number | null, now: number): boolean {
  if (d === null) return false;
  const t = toEpochMs(a);
  return t !== null && t >= now && t <= now + d;
}

export function startsWith(a: unknown, b: unknown): boolean {
  return typeof a === 'string' && typeof b === 'string' && a.startsWith(b);
}
export function endsWith(a: unknown, b: unknown): boolean {
  return typeof a === 'string' && typeof b === 'string' && a.endsWith(b);
}

/** Custom operators as json-rules-engine callbacks; `now()` is the evaluation's clock. */
export function customOperatorCallbacks(
  now: () => number,
): Record<string, (a: unknown, b: unknown) => boolean> {
  return {
    exists,
    notExists,
    withinLast: (a, b) => withinLastMs(a, tryParseDuration(b), now()),
    olderThan: (a, b) => olderThanMs(a, tryParseDuration(b), now()),
    withinNext: (a, b) => withinNextMs(a, tryParseDuration(b), now()),
    startsWith,
    endsWith,
  };
}
