import { describe, expect, it } from 'vitest';
import { bindParams, literal } from './store.ts';

describe('literal', () => {
  it.each([
    ['String', "o'brien\\x", "'o\\'brien\\\\x'"],
    ['String', 'line\nbreak\ttab', "'line\\nbreak\\ttab'"],
    ['UInt32', 42, '42'],
    ['Int64', '-9007199254740993', '-9007199254740993'],
    ['UInt64', 12n, '12'],
    ['Float64', 1.5, '1.5'],
    ['Bool', true, '1'],
    ['Date', new Date('2025-03-01T10:00:00Z'), "toDate('2025-03-01')"],
    ['DateTime', new Date('2025-03-01T10:00:00Z'), "toDateTime('2025-03-01 10:00:00')"],
    ['DateTime', Date.UTC(2025, 0, 2, 3, 4, 5), "toDateTime('2025-01-02 03:04:05')"],
    ['Array(String)', ['a', "b'c"], "['a', 'b\\'c']"],
    ['Array(UInt8)', [1, 2], '[1, 2]'],
    ['Nullable(String)', null, 'NULL'],
    ['LowCardinality(String)', 'x', "'x'"],
  ] as const)('%s %s -> %s', (type, value, out) => {
    expect(literal(type, value)).toBe(out);
  });

  it.each([
    ['UInt32', -1],
    ['UInt32', 1.5],
    ['Int32', '1; DROP TABLE x'],
    ['Float64', Number.NaN],
    ['String', 5],
    ['Array(String)', 'x'],
    ['String', null],
    ['Map(String, String)', {}],
    ['DateTime', new Date('nope')],
  ] as const)('refuses %s %s', (type, value) => {
    expect(() => literal(type, value)).toThrow();
  });
});

describe('bindParams', () => {
  it('replaces every placeholder and leaves other braces alone', () => {
    expect(
      bindParams("SELECT {a:String}, {n:UInt8}, '{not a param}' WHERE x = {a:String}", {
        a: "it's",
        n: 3,
      }),
    ).toBe("SELECT 'it\\'s', 3, '{not a param}' WHERE x = 'it\\'s'");
  });

  it('names a missing or ill-typed parameter', () => {
    expect(() => bindParams('SELECT {a:String}', {})).toThrow(/parameter a has no value/);
    expect(() => bindParams('SELECT {n:UInt8}', { n: 'x' })).toThrow(
      /parameter n \(UInt8\): expected an integer/,
    );
  });
});
