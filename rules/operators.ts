// Operator semantics shared by the fast evaluator and the json-rules-engine reference. The
// built-ins repeat json-rules-engine 7's definitions (engine-default-operators.js) exactly;
// the custom ones are registered in both evaluators from these functions.
import { tryParseDuration } from './duration.ts';

/** json-rules-engine's numeric fact check `Number.parseFloat(v).toString() !== 'NaN'`, without allocating for numbers. */
export function isNumberLike(value: unknown): boolean {
  if (typeof value === 'number') return value === value;
  return !Number.isNaN(Number.parseFloat(value as string));
}

// JS relational comparison on whatever the fact holds, exactly as json-rules-engine does it.
type Cmp = (factValue: number, value: number) => boolean;
export const lessThan: Cmp = (a, b) => isNumberLike(a) && a < b;
export const lessThanInclusive: Cmp = (a, b) => isNumberLike(a) && a <= b;
export const greaterThan: Cmp = (a, b) => isNumberLike(a) && a > b;
export const greaterThanInclusive: Cmp = (a, b) => isNumberLike(a) && a >= b;

/** A timestamp fact as epoch ms: a finite number, or a string Date.parse understands (ISO 8601). */
export function toEpochMs(value: unknown): number | null {
  if (typeof value === 'number') return Number.isFinite(value) ? value : null;
  if (typeof value === 'string') {
    const epochMs = Date.parse(value);
    return Number.isNaN(epochMs) ? null : epochMs;
  }
  return null;
}

/** `exists` with value true: the fact has a value (not missing, not null); with false: it has none. */
export function exists(factValue: unknown, value: unknown): boolean {
  return value === false
    ? factValue === undefined || factValue === null
    : factValue !== undefined && factValue !== null;
}
export function notExists(factValue: unknown, value: unknown): boolean {
  return value === false
    ? factValue !== undefined && factValue !== null
    : factValue === undefined || factValue === null;
}

/** Timestamp within the last `durationMs` before now (inclusive; future timestamps do not count). */
export function withinLastMs(factValue: unknown, durationMs: number | null, now: number): boolean {
  if (durationMs === null) return false;
  const timestamp = toEpochMs(factValue);
  return timestamp !== null && timestamp >= now - durationMs && timestamp <= now;
}
/** Timestamp more than `durationMs` before now. */
export function olderThanMs(factValue: unknown, durationMs: number | null, now: number): boolean {
  if (durationMs === null) return false;
  const timestamp = toEpochMs(factValue);
  return timestamp !== null && timestamp < now - durationMs;
}
/** Timestamp between now and now + `durationMs` (inclusive), e.g. a trial end date. */
export function withinNextMs(factValue: unknown, durationMs: number | null, now: number): boolean {
  if (durationMs === null) return false;
  const timestamp = toEpochMs(factValue);
  return timestamp !== null && timestamp >= now && timestamp <= now + durationMs;
}

export function startsWith(factValue: unknown, value: unknown): boolean {
  return typeof factValue === 'string' && typeof value === 'string' && factValue.startsWith(value);
}
export function endsWith(factValue: unknown, value: unknown): boolean {
  return typeof factValue === 'string' && typeof value === 'string' && factValue.endsWith(value);
}

/** Custom operators as json-rules-engine callbacks; `now()` is the evaluation's clock. */
export function customOperatorCallbacks(
  now: () => number,
): Record<string, (factValue: unknown, value: unknown) => boolean> {
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
