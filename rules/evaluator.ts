// The fast evaluator: conditions compile once into plain closures with pre-parsed paths and
// pre-parsed durations; evaluating allocates nothing. Semantics are json-rules-engine 7's
// (allowUndefinedFacts), which evaluator.diff.test.ts checks against the real library.
import type { Conditions } from './schema.ts';
import type { Facts, Predicate } from './types.ts';
import { parsePath, resolvePath } from './path.ts';
import { tryParseDuration } from './duration.ts';
import * as op from './operators.ts';

/** A condition that cannot be compiled; `path` is relative to the conditions root (`$.all[0]`). */
export class ConditionCompileError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
    this.name = 'ConditionCompileError';
  }
}

type Getter = (f: Facts) => unknown;

const ALWAYS: Predicate = () => true;

const FACT_GETTERS: Record<string, Getter> = {
  event: (f) => f.event,
  user: (f) => f.user,
  stats: (f) => f.stats,
  segments: (f) => f.segments,
  rule: (f) => f.rule,
  now: (f) => f.now,
};
// json-rules-engine with allowUndefinedFacts resolves an unknown fact to undefined.
const UNDEFINED_FACT: Getter = () => undefined;

function compileGetter(fact: unknown, path: unknown, at: string): Getter {
  const base =
    typeof fact === 'string' && Object.hasOwn(FACT_GETTERS, fact)
      ? FACT_GETTERS[fact]!
      : UNDEFINED_FACT;
  // The almanac applies a path only when it is truthy.
  if (path === undefined || path === null || path === '') return base;
  if (typeof path !== 'string')
    throw new ConditionCompileError(`${at}.path`, 'path must be a string');
  const parsed = parsePath(path);
  if (!parsed.ok) throw new ConditionCompileError(`${at}.path`, parsed.message);
  const segs = parsed.segments;
  if (segs.length === 0) return base;
  if (segs.length === 1) {
    const s0 = segs[0]!;
    return (f) => {
      const v = base(f);
      if (v === null || typeof v !== 'object') return v;
      return Object.hasOwn(v, s0) ? (v as Record<string, unknown>)[s0] : undefined;
    };
  }
  if (segs.length === 2) {
    const s0 = segs[0]!;
    const s1 = segs[1]!;
    return (f) => {
      const v = base(f);
      if (v === null || typeof v !== 'object') return v;
      if (!Object.hasOwn(v, s0)) return undefined;
      const w = (v as Record<string, unknown>)[s0];
      if (!w || !Object.hasOwn(w, s1)) return undefined;
      return (w as Record<string, unknown>)[s1];
    };
  }
  return (f) => resolvePath(base(f), segs);
}

function isFactRef(v: unknown): v is { fact: unknown; path?: unknown } {
  return v !== null && typeof v === 'object' && Object.hasOwn(v, 'fact');
}

// Operator applied to a value known only at evaluation time (a fact reference).
const DYNAMIC: Record<string, (a: unknown, b: unknown, now: number) => boolean> = {
  equal: (a, b) => a === b,
  notEqual: (a, b) => a !== b,
  contains: (a, b) => Array.isArray(a) && a.indexOf(b) > -1,
  doesNotContain: (a, b) => Array.isArray(a) && a.indexOf(b) === -1,
  lessThan: (a, b) => op.lessThan(a as number, b as number),
  lessThanInclusive: (a, b) => op.lessThanInclusive(a as number, b as number),
  greaterThan: (a, b) => op.greaterThan(a as number, b as number),
  greaterThanInclusive: (a, b) => op.greaterThanInclusive(a as number, b as number),
  exists: op.exists,
  notExists: op.notExists,
  withinLast: (a, b, now) => op.withinLastMs(a, tryParseDuration(b), now),
  olderThan: (a, b, now) => op.olderThanMs(a, tryParseDuration(b), now),
  withinNext: (a, b, now) => op.withinNextMs(a, tryParseDuration(b), now),
  startsWith: op.startsWith,
  endsWith: op.endsWith,
};

// Lists longer than this are looked up in a Set; identical to indexOf for JSON values.
const SET_THRESHOLD = 8;

function compileMembership(get: Getter, list: unknown, negate: boolean, at: string): Predicate {
  if (Array.isArray(list)) {
    if (
      list.length > SET_THRESHOLD &&
      !list.some((x) => typeof x === 'number' && Number.isNaN(x))
    ) {
      const set = new Set<unknown>(list);
      return negate ? (f) => !set.has(get(f)) : (f) => set.has(get(f));
    }
    return negate ? (f) => list.indexOf(get(f)) === -1 : (f) => list.indexOf(get(f)) > -1;
  }
  // json-rules-engine calls value.indexOf(fact): on a string that is a substring search.
  if (typeof list === 'string') {
    return negate
      ? (f) => list.indexOf(get(f) as string) === -1
      : (f) => list.indexOf(get(f) as string) > -1;
  }
  throw new ConditionCompileError(
    `${at}.value`,
    `${negate ? 'notIn' : 'in'} needs a list value, e.g. ["trial", "basic"]`,
  );
}

function compileLeaf(node: Record<string, unknown>, at: string): Predicate {
  for (const key of ['fact', 'operator', 'value']) {
    if (!Object.hasOwn(node, key))
      throw new ConditionCompileError(at, `a condition needs "${key}"`);
  }
  const get = compileGetter(node.fact, node.path, at);
  const operator = node.operator;
  const b = node.value;
  if (
    typeof operator !== 'string' ||
    (!Object.hasOwn(DYNAMIC, operator) && operator !== 'in' && operator !== 'notIn')
  ) {
    throw new ConditionCompileError(
      `${at}.operator`,
      `unknown operator ${JSON.stringify(operator)}`,
    );
  }
  if (isFactRef(b)) {
    if (operator === 'in' || operator === 'notIn') {
      throw new ConditionCompileError(
        `${at}.value`,
        `${operator} needs a list value, not a fact reference`,
      );
    }
    const getB = compileGetter(b.fact, b.path, `${at}.value`);
    const fn = DYNAMIC[operator]!;
    return (f) => fn(get(f), getB(f), f.now);
  }
  switch (operator) {
    case 'equal':
      return (f) => get(f) === b;
    case 'notEqual':
      return (f) => get(f) !== b;
    case 'in':
      return compileMembership(get, b, false, at);
    case 'notIn':
      return compileMembership(get, b, true, at);
    case 'contains':
      return (f) => {
        const a = get(f);
        return Array.isArray(a) && a.indexOf(b) > -1;
      };
    case 'doesNotContain':
      return (f) => {
        const a = get(f);
        return Array.isArray(a) && a.indexOf(b) === -1;
      };
    case 'lessThan':
      return (f) => op.lessThan(get(f) as number, b as number);
    case 'lessThanInclusive':
      return (f) => op.lessThanInclusive(get(f) as number, b as number);
    case 'greaterThan':
      return (f) => op.greaterThan(get(f) as number, b as number);
    case 'greaterThanInclusive':
      return (f) => op.greaterThanInclusive(get(f) as number, b as number);
    case 'exists':
      return (f) => op.exists(get(f), b);
    case 'notExists':
      return (f) => op.notExists(get(f), b);
    case 'withinLast': {
      const d = tryParseDuration(b);
      return (f) => op.withinLastMs(get(f), d, f.now);
    }
    case 'olderThan': {
      const d = tryParseDuration(b);
      return (f) => op.olderThanMs(get(f), d, f.now);
    }
    case 'withinNext': {
      const d = tryParseDuration(b);
      return (f) => op.withinNextMs(get(f), d, f.now);
    }
    case 'startsWith':
      return (f) => op.startsWith(get(f), b);
    case 'endsWith':
      return (f) => op.endsWith(get(f), b);
  }
  throw new ConditionCompileError(`${at}.operator`, `unknown operator ${JSON.stringify(operator)}`);
}

function compileList(list: unknown, kind: 'all' | 'any', at: string): Predicate {
  if (!Array.isArray(list))
    throw new ConditionCompileError(`${at}.${kind}`, `"${kind}" must be a list`);
  const parts = list.map((c, i) => compileNode(c, `${at}.${kind}[${i}]`));
  // json-rules-engine: an empty "all" and an empty "any" are both true.
  if (parts.length === 0) return ALWAYS;
  if (parts.length === 1) return parts[0]!;
  if (parts.length === 2) {
    const [p, q] = parts as [Predicate, Predicate];
    return kind === 'all' ? (f) => p(f) && q(f) : (f) => p(f) || q(f);
  }
  const n = parts.length;
  return kind === 'all'
    ? (f) => {
        for (let i = 0; i < n; i++) if (!parts[i]!(f)) return false;
        return true;
      }
    : (f) => {
        for (let i = 0; i < n; i++) if (parts[i]!(f)) return true;
        return false;
      };
}

function compileNode(node: unknown, at: string): Predicate {
  if (node === null || typeof node !== 'object' || Array.isArray(node)) {
    throw new ConditionCompileError(at, 'a condition must be an object');
  }
  const n = node as Record<string, unknown>;
  // Same precedence as json-rules-engine's Condition.booleanOperator: any, all, not.
  if (Object.hasOwn(n, 'any')) return compileList(n.any, 'any', at);
  if (Object.hasOwn(n, 'all')) return compileList(n.all, 'all', at);
  if (Object.hasOwn(n, 'not')) {
    if (Array.isArray(n.not))
      throw new ConditionCompileError(`${at}.not`, '"not" takes one condition, not a list');
    const p = compileNode(n.not, `${at}.not`);
    return (f) => !p(f);
  }
  if (Object.hasOwn(n, 'condition'))
    throw new ConditionCompileError(
      `${at}.condition`,
      'shared condition references are not supported; use a segment',
    );
  return compileLeaf(n, at);
}

/** Compiles conditions (root: all, any or not) into a predicate; throws ConditionCompileError. */
export function compileConditions(conditions: Conditions): Predicate {
  const root = conditions as unknown;
  if (
    root === null ||
    typeof root !== 'object' ||
    !['all', 'any', 'not'].some((k) => Object.hasOwn(root, k))
  ) {
    throw new ConditionCompileError('$', 'conditions must start with "all", "any" or "not"');
  }
  return compileNode(root, '$');
}
