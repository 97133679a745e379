// The lossless JSON pre-pass and Avro long: integers beyond 2^53 keep every digit (as
// decimal strings), everything else parses exactly as JSON.parse / avsc would, and no text
// changes from valid to invalid JSON or back.
import avro from 'avsc';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { exactInteger, losslessLongs, parseJsonLossless, quoteUnsafeIntegers } from './lossless.ts';

/** JSON values with bigints standing for integer literals of any size. */
type Big = null | boolean | number | string | bigint | Big[] | { [k: string]: Big };

const bigValue: fc.Arbitrary<Big> = fc.letrec<{ v: Big }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    // Strings that look like the integers around them, with quotes and backslashes to skip over.
    fc.oneof(
      fc.string(),
      fc.bigInt().map((n) => `${n}`),
      fc.constantFrom('a"1234567890123456789', '\\', '\\"', '"', ':12345678901234567890,'),
    ),
    fc.bigInt({ min: -(2n ** 80n), max: 2n ** 80n }),
    fc.constantFrom(
      2n ** 53n - 1n,
      2n ** 53n,
      2n ** 53n + 1n,
      -(2n ** 53n) + 1n,
      -(2n ** 53n),
      9_223_372_036_825_200_000n,
      -9_223_372_036_832_400_000n,
    ),
    fc.array(tie('v'), { maxLength: 5 }),
    fc.dictionary(
      fc.string().filter((k) => k !== '__proto__'),
      tie('v'),
      { maxKeys: 5 },
    ),
  ),
})).v;

const space = fc.constantFrom('', ' ', '\n', '\t ', '\r\n  ');

/** Writes a Big as JSON text, bigints as integer literals, with the given whitespace around tokens. */
function write(v: Big, ws: string): string {
  if (typeof v === 'bigint') return v.toString();
  if (Array.isArray(v)) return `[${ws}${v.map((x) => write(x, ws)).join(`${ws},${ws}`)}${ws}]`;
  if (v !== null && typeof v === 'object')
    return `{${ws}${Object.entries(v)
      .map(([k, x]) => `${JSON.stringify(k)}${ws}:${ws}${write(x, ws)}`)
      .join(`${ws},${ws}`)}${ws}}`;
  return JSON.stringify(v);
}

/**
 * What a lossless parse must return: integer literals as numbers when safe, else as their
 * decimal strings (a double such as 2^60 is written as an integer literal, so it is one).
 */
function expected(v: unknown): unknown {
  if (typeof v === 'bigint') return exactInteger(v);
  if (typeof v === 'number')
    return /^-?\d+$/.test(JSON.stringify(v)) ? exactInteger(BigInt(JSON.stringify(v))) : v;
  if (Array.isArray(v)) return v.map(expected);
  if (v !== null && typeof v === 'object')
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, expected(x)]));
  return v;
}

const outcome = (parse: (t: string) => unknown, text: string) => {
  try {
    return { ok: true, value: parse(text) };
  } catch {
    return { ok: false };
  }
};

describe('lossless JSON', () => {
  it('keeps every digit of integers beyond 2^53; safe integers, fractions and strings are untouched', () => {
    expect(parseJsonLossless('{"id":1234567890123456789,"other":1234567890123456790}')).toEqual({
      id: '1234567890123456789',
      other: '1234567890123456790',
    });
    // What JSON.parse does with them: both become the same number.
    expect(JSON.parse('[1234567890123456789,1234567890123456790]')).toEqual([
      1234567890123456800, 1234567890123456800,
    ]);
    expect(
      parseJsonLossless(
        '[9007199254740991, 9007199254740992, -9007199254740991, -9007199254740992, 1234567890123456789.5, 12345678901234567890e0]',
      ),
    ).toEqual([
      9007199254740991,
      '9007199254740992',
      -9007199254740991,
      '-9007199254740992',
      Number('1234567890123456789.5'),
      Number('12345678901234567890e0'),
    ]);
    expect(parseJsonLossless('{"s":"x\\"1234567890123456789","n":9223372036825200000}')).toEqual({
      s: 'x"1234567890123456789',
      n: '9223372036825200000',
    });
    expect(quoteUnsafeIntegers('{"ts":1700000000123456}')).toBe('{"ts":1700000000123456}');
  });

  it('invalid JSON stays invalid: numeric keys, leading zeros, digits glued to other tokens', () => {
    for (const bad of [
      '{12345678901234567890:1}',
      '[01234567890123456789]',
      '[12345678901234567890x]',
      '["a 12345678901234567890]',
      '12345678901234567890"',
      '[1,]',
    ])
      expect(() => parseJsonLossless(bad), bad).toThrow(SyntaxError);
  });

  it('linear in the text: escaped quotes in an unterminated string, long whitespace, long digit runs', () => {
    const started = performance.now();
    expect(() => parseJsonLossless(`["${'\\"'.repeat(300_000)}1234567890123456789`)).toThrow(
      SyntaxError,
    );
    expect(
      parseJsonLossless(`[${' '.repeat(300_000)}1234567890123456789${' '.repeat(300_000)}]`),
    ).toEqual(['1234567890123456789']);
    expect(() => parseJsonLossless(`[${'1'.repeat(300_000)}x]`)).toThrow(SyntaxError);
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it('property: any JSON text with integers of any size parses to the exact values', () => {
    fc.assert(
      fc.property(bigValue, space, (v, ws) => {
        expect(parseJsonLossless(write(v, ws))).toEqual(expected(v));
      }),
      { numRuns: 500 },
    );
  });

  it('property: any other JSON text parses exactly as JSON.parse parses it', () => {
    fc.assert(
      fc.property(fc.json(), (text) => {
        expect(parseJsonLossless(text)).toEqual(expected(JSON.parse(text)));
      }),
      { numRuns: 500 },
    );
  });

  it('property: a text is valid JSON for the lossless parse exactly when it is for JSON.parse', () => {
    const token = fc.constantFrom(
      '"',
      '\\',
      '[',
      ']',
      '{',
      '}',
      ',',
      ':',
      ' ',
      '-',
      '.',
      'e',
      '0',
      '1',
      'a',
      'true',
      'null',
      '12345678901234567890',
      '9007199254740993',
      '9007199254740991',
    );
    const texts = fc.oneof(
      fc.array(token, { maxLength: 12 }).map((t) => t.join('')),
      // Valid texts with one character inserted or removed somewhere.
      fc
        .tuple(
          bigValue,
          space,
          fc.nat(),
          fc.option(fc.constantFrom('"', ',', ':', '[', ']', '}', '-', '0', '\\')),
        )
        .map(([v, ws, at, ch]) => {
          const text = write(v, ws);
          const i = text.length === 0 ? 0 : at % text.length;
          return ch === null
            ? text.slice(0, i) + text.slice(i + 1)
            : text.slice(0, i) + ch + text.slice(i);
        }),
    );
    fc.assert(
      fc.property(texts, (text) => {
        const lossless = outcome(parseJsonLossless, text);
        expect(lossless.ok).toBe(outcome(JSON.parse, text).ok);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('lossless Avro long', () => {
  const schema = {
    type: 'record',
    name: 'Row',
    fields: [
      { name: 'n', type: 'long' },
      { name: 'm', type: ['null', 'long'] },
      { name: 'ns', type: { type: 'long', 'connect.name': 'io.debezium.time.NanoTimestamp' } },
    ],
  } as const;
  const lossless = avro.Type.forSchema(schema as unknown as avro.Schema, {
    wrapUnions: 'auto',
    typeHook: losslessLongs,
  });

  it('decodes longs beyond 2^53 as decimal strings (avsc refuses them by default), safe ones as numbers', () => {
    const buf = lossless.toBuffer({ n: '9223372036825200000', m: 42, ns: '1700000000123456789' });
    expect(() =>
      avro.Type.forSchema(schema as unknown as avro.Schema, { wrapUnions: 'auto' }).fromBuffer(buf),
    ).toThrow(/precision loss/);
    expect(lossless.fromBuffer(buf)).toEqual({
      n: '9223372036825200000',
      m: 42,
      ns: '1700000000123456789',
    });
  });

  it('property: every 64-bit integer round-trips exactly', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), (n) => {
        const decoded = lossless.fromBuffer(lossless.toBuffer({ n, m: null, ns: n })) as {
          n: number | string;
          ns: number | string;
        };
        expect(decoded.n).toEqual(exactInteger(n));
        expect(decoded.ns).toEqual(exactInteger(n));
        expect(BigInt(decoded.n)).toBe(n);
      }),
      { numRuns: 500 },
    );
  });
});
