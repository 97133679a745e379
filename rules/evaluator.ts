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

type Getter = (facts: Facts) => unknown;

const ALWAYS: Predicate = () => true;

const FACT_GETTERS: Record<string, Getter> = {
  event: (facts) => facts.event,
  user: (facts) => facts.user,
  stats: (facts) => facts.stats,
  segments: (facts) => facts.segments,
  rule: (facts) => facts.rule,
  now: (facts) => facts.now,
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
    return (facts) => {
      const value = base(facts);
      if (value === null || typeof value !== 'object') return value;
      return Object.hasOwn(value, s0) ? (value as Record<string, unknown>)[s0] : undefined;
    };
  }
  if (segs.length === 2) {
    const s0 = segs[0]!;
    const s1 = segs[1]!;
    return (facts) => {
      const value = base(facts);
      if (value === null || typeof value !== 'object') return value;
      if (!Object.hasOwn(value, s0)) return undefined;
      const inner = (value as Record<string, unknown>)[s0];
      if (!inner || !Object.hasOwn(inner, s1)) return undefined;
      return (inner as Record<string, unknown>)[s1];
    };
  }
  return (facts) => resolvePath(base(facts), segs);
}

function isFactRef(value: unknown): value is { fact: unknown; path?: unknown } {
  return value !== null && typeof value === 'object' && Object.hasOwn(value, 'fact');
}

// Operator applied to a value known only at evaluation time (a fact reference).
const DYNAMIC: Record<string, (factValue: unknown, value: unknown, now: number) => boolean> = {
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
      return negate ? (facts) => !set.has(get(facts)) : (facts) => set.has(get(facts));
    }
    return negate
      ? (facts) => list.indexOf(get(facts)) === -1
      : (facts) => list.indexOf(get(facts)) > -1;
  }
  // json-rules-engine calls value.indexOf(fact): on a string that is a substring search.
  if (typeof list === 'string') {
    return negate
      ? (facts) => list.indexOf(get(facts) as string) === -1
      : (facts) => list.indexOf(get(facts) as string) > -1;
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
  const value = node.value;
  if (
    typeof operator !== 'string' ||
    (!Object.hasOwn(DYNAMIC, operator) && operator !== 'in' && operator !== 'notIn')
  ) {
    throw new ConditionCompileError(
      `${at}.operator`,
      `unknown operator ${JSON.stringify(operator)}`,
    );
  }
  if (isFactRef(value)) {
    if (operator === 'in' || operator === 'notIn') {
      throw new ConditionCompileError(
        `${at}.value`,
        `${operator} needs a list value, not a fact reference`,
      );
    }
    const getValue = compileGetter(value.fact, value.path, `${at}.value`);
    const fn = DYNAMIC[operator]!;
    return (facts) => fn(get(facts), getValue(facts), facts.now);
  }
  switch (operator) {
    case 'equal':
      return (facts) => get(facts) === value;
    case 'notEqual':
      return (facts) => get(facts) !== value;
    case 'in':
      return compileMembership(get, value, false, at);
    case 'notIn':
      return compileMembership(get, value, true, at);
    case 'contains':
      return (facts) => {
        const factValue = get(facts);
        return Array.isArray(factValue) && factValue.indexOf(value) > -1;
      };
    case 'doesNotContain':
      return (facts) => {
        const factValue = get(facts);
        return Array.isArray(factValue) && factValue.indexOf(value) === -1;
      };
    case 'lessThan':
      return (facts) => op.lessThan(get(facts) as number, value as number);
    case 'lessThanInclusive':
      return (facts) => op.lessThanInclusive(get(facts) as number, value as number);
    case 'greaterThan':
      return (facts) => op.greaterThan(get(facts) as number, value as number);
    case 'greaterThanInclusive':
      return (facts) => op.greaterThanInclusive(get(facts) as number, value as number);
    case 'exists':
      return (facts) => op.exists(get(facts), value);
    case 'notExists':
      return (facts) => op.notExists(get(facts), value);
    case 'withinLast': {
      const durationMs = tryParseDuration(value);
      return (facts) => op.withinLastMs(get(facts), durationMs, facts.now);
    }
    case 'olderThan': {
      const durationMs = tryParseDuration(value);
      return (facts) => op.olderThanMs(get(facts), durationMs, facts.now);
    }
    case 'withinNext': {
      const durationMs = tryParseDuration(value);
      return (facts) => op.withinNextMs(get(facts), durationMs, facts.now);
    }
    case 'startsWith':
      return (facts) => op.startsWith(get(facts), value);
    case 'endsWith':
      return (facts) => op.endsWith(get(facts), value);
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
    const [first, second] = parts as [Predicate, Predicate];
    return kind === 'all'
      ? (facts) => first(facts) && second(facts)
      : (facts) => first(facts) || second(facts);
  }
  const count = parts.length;
  return kind === 'all'
    ? (facts) => {
        for (let i = 0; i < count; i++) if (!parts[i]!(facts)) return false;
        return true;
      }
    : (facts) => {
        for (let i = 0; i < count; i++) if (parts[i]!(facts)) return true;
        return false;
      };
}

function compileNode(node: unknown, at: string): Predicate {
  if (node === null || typeof node !== 'object' || Array.isArray(node)) {
    throw new ConditionCompileError(at, 'a condition must be an object');
  }
  const fields = node as Record<string, unknown>;
  // Same precedence as json-rules-engine's Condition.booleanOperator: any, all, not.
  if (Object.hasOwn(fields, 'any')) return compileList(fields.any, 'any', at);
  if (Object.hasOwn(fields, 'all')) return compileList(fields.all, 'all', at);
  if (Object.hasOwn(fields, 'not')) {
    if (Array.isArray(fields.not))
      throw new ConditionCompileError(`${at}.not`, '"not" takes one condition, not a list');
    const negated = compileNode(fields.not, `${at}.not`);
    return (facts) => !negated(facts);
  }
  if (Object.hasOwn(fields, 'condition'))
    throw new ConditionCompileError(
      `${at}.condition`,
      'shared condition references are not supported; use a segment',
    );
  return compileLeaf(fields, at);
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
