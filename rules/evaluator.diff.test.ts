// Differential test: the compiled evaluator must agree with json-rules-engine on random
// conditions (nested all/any/not, every operator, fact references, odd paths) and random
// facts (missing paths, nulls, arrays, numbers vs numeric strings, timestamps vs ISO strings).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { compileConditions } from './evaluator.ts';
import { referenceEvaluate } from './reference.ts';
import { OPERATORS, type Conditions } from './schema.ts';
import type { Facts } from './types.ts';

const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);
const HOUR = 3_600_000;

// Property names that appear in both facts and paths, so paths hit as often as they miss;
// several need bracket notation, "length" and digits exercise jsonpath-plus's own-property rules.
const NAMES = [
  'plan',
  'a',
  'b',
  'count',
  'first',
  'last',
  'tags',
  'export_done',
  'Feature Used',
  'x.y',
  'n-1',
  '0',
  '1',
  'length',
  'é ü',
  'properties',
  'amount',
  'type',
];
const STRINGS = [
  'trial',
  'paid',
  '',
  '5',
  '5abc',
  ' 7',
  'a',
  'Feature Used',
  'tri',
  'al',
  '1e3',
  'Infinity',
  'NaN',
];
const NUMBERS = [0, -0, 1, -1, 5, 7, 2.5, 1000, 1e21, Number.MAX_SAFE_INTEGER];

const name = fc.constantFrom(...NAMES);
const timestamp = fc.integer({ min: -45 * 24, max: 10 * 24 }).map((h) => NOW + h * HOUR);
const isoString = timestamp.map((t) => new Date(t).toISOString());
const primitive = fc.oneof(
  fc.constantFrom(...STRINGS),
  fc.constantFrom(...NUMBERS),
  fc.integer({ min: -10, max: 10 }),
  fc.boolean(),
  fc.constant(null),
  timestamp,
  isoString,
);

const { json } = fc.letrec<{ json: unknown }>((tie) => ({
  json: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    primitive,
    fc.array(tie('json'), { maxLength: 4 }),
    fc.dictionary(name, tie('json'), { maxKeys: 5, noNullPrototype: true }),
  ),
}));

const eventStats = fc.record(
  {
    count: fc.integer({ min: 0, max: 5 }),
    first: fc.option(timestamp, { nil: null }),
    last: fc.option(timestamp, { nil: null }),
  },
  { noNullPrototype: true },
);

const factsArb: fc.Arbitrary<Facts> = fc.record(
  {
    event: fc.option(
      fc.record(
        {
          id: fc.constant('ev-1'),
          userId: fc.constant('u-1'),
          type: fc.constantFrom('user_registered', 'Feature Used', 'export_done'),
          ts: timestamp,
          receivedAt: timestamp,
          source: fc.constant('http:test'),
          properties: fc.dictionary(name, json, { maxKeys: 5, noNullPrototype: true }),
        },
        { noNullPrototype: true },
      ),
      { nil: null },
    ),
    user: fc.dictionary(name, json, { maxKeys: 6, noNullPrototype: true }),
    stats: fc.dictionary(name, fc.oneof(eventStats, eventStats, json), {
      maxKeys: 6,
      noNullPrototype: true,
    }) as fc.Arbitrary<Facts['stats']>,
    segments: fc.dictionary(name, fc.boolean(), { maxKeys: 4, noNullPrototype: true }),
    rule: fc.record(
      { fires: fc.integer({ min: 0, max: 3 }), lastFiredAt: fc.option(timestamp, { nil: null }) },
      { noNullPrototype: true },
    ),
    now: fc.oneof(fc.constant(NOW), timestamp),
  },
  { noNullPrototype: true },
);

const segment = fc.oneof(
  name.filter((n) => /^[A-Za-z0-9_-]+$/.test(n)).map((n) => `.${n}`),
  name.map((n) => `["${n}"]`),
  name.map((n) => `['${n}']`),
  fc.nat({ max: 3 }).map((i) => `[${i}]`),
);
const path = fc.option(
  fc.array(segment, { maxLength: 3 }).map((segs) => `$${segs.join('')}`),
  { nil: undefined },
);
const factName = fc.constantFrom(
  'event',
  'user',
  'stats',
  'segments',
  'rule',
  'now',
  'unknownFact',
);
const factRef = fc
  .record({ fact: factName, path }, { requiredKeys: ['fact'], noNullPrototype: true })
  .map((r) => (r.path === undefined ? { fact: r.fact } : r));
const duration = fc.constantFrom(
  '90s',
  '15m',
  '12h',
  '1d',
  '3d',
  '7d',
  '30d',
  '2w',
  '0s',
  '3 days',
  5,
);

function valueFor(operator: string): fc.Arbitrary<unknown> {
  switch (operator) {
    case 'in':
    case 'notIn':
      return fc.oneof(fc.array(primitive, { maxLength: 12 }), fc.constantFrom(...STRINGS));
    case 'exists':
    case 'notExists':
      return fc.oneof(fc.boolean(), fc.boolean(), primitive, factRef);
    case 'withinLast':
    case 'olderThan':
    case 'withinNext':
      return fc.oneof(duration, duration, factRef);
    default:
      return fc.oneof(primitive, primitive, factRef);
  }
}

const leaf = fc
  .record({ fact: factName, path, operator: fc.constantFrom(...OPERATORS) })
  .chain((comparison) =>
    valueFor(comparison.operator).map((value) =>
      comparison.path === undefined
        ? { fact: comparison.fact, operator: comparison.operator, value }
        : { ...comparison, value },
    ),
  );

const { node } = fc.letrec<{ node: unknown }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    leaf,
    fc.record({ all: fc.array(tie('node'), { maxLength: 4 }) }),
    fc.record({ any: fc.array(tie('node'), { maxLength: 4 }) }),
    fc.record({ not: tie('node') }),
  ),
}));
const conditionsArb = fc.oneof(
  fc.record({ all: fc.array(node, { maxLength: 5 }) }),
  fc.record({ any: fc.array(node, { maxLength: 5 }) }),
  fc.record({ not: node }),
) as fc.Arbitrary<Conditions>;

describe('compiled evaluator vs json-rules-engine', () => {
  it('agrees on random conditions and facts', async () => {
    await fc.assert(
      fc.asyncProperty(
        conditionsArb,
        fc.array(factsArb, { minLength: 1, maxLength: 3 }),
        async (conditions, factsList) => {
          const predicate = compileConditions(conditions);
          for (const facts of factsList) {
            expect(predicate(facts)).toBe(await referenceEvaluate(conditions, facts));
          }
        },
      ),
      { numRuns: 2500 },
    );
  }, 120_000);

  it('agrees on single comparisons against hand-picked edge cases', async () => {
    // Each fact value, path and operator with a matching-looking value: the cases the random
    // search finds only rarely (numeric strings, arrays in numeric operators, ISO dates,
    // own properties of strings and arrays, falsy values on the way down a path).
    const values: unknown[] = [
      undefined,
      null,
      0,
      5,
      '5',
      '5abc',
      '',
      'abc',
      [],
      [5],
      ['trial'],
      { a: 0, length: 2 },
      'trial',
      true,
      false,
      NOW - HOUR,
      new Date(NOW - HOUR).toISOString(),
      'not a date',
    ];
    const paths = ['$.v', '$.v.length', '$.v[0]', '$.v.a', '$["v"].length', '$'];
    const comparands: Record<string, unknown[]> = {
      default: [5, '5', 'trial', null, 0, true, 2],
      in: [['trial', 5, 0], 'trial,paid', []],
      notIn: [['trial', 5, 0], 'trial,paid', []],
      exists: [true, false],
      notExists: [true, false],
      withinLast: ['2h', '30m', 'x'],
      olderThan: ['2h', '30m'],
      withinNext: ['2h'],
    };
    for (const operator of OPERATORS) {
      for (const path of paths) {
        for (const userValue of values) {
          for (const value of comparands[operator] ?? comparands.default!) {
            const conditions = { all: [{ fact: 'user', path, operator, value }] } as Conditions;
            const facts: Facts = {
              event: null,
              user: userValue === undefined ? {} : { v: userValue },
              stats: {},
              segments: {},
              rule: { fires: 0, lastFiredAt: null },
              now: NOW,
            };
            const expected = await referenceEvaluate(conditions, facts);
            expect({
              operator,
              path,
              userValue,
              value,
              result: compileConditions(conditions)(facts),
            }).toEqual({ operator, path, userValue, value, result: expected });
          }
        }
      }
    }
  }, 60_000);
});
